package mime

import (
	"bytes"
	"errors"
	"io"
)

// scanner reads a message line by line from an io.ReaderAt through a
// window, so that a 50 MB message is never held in memory; only a header
// line that is interpreted grows the window (up to MaxFieldSize).
//
// It keeps, for its position, the number of LF seen and of LF not preceded
// by CR: the first gives line counts and the second turns stored sizes into
// CRLF sizes.
type scanner struct {
	ra   io.ReaderAt
	size int64
	buf  []byte
	base int64 // offset of buf[0]
	r, w int   // unread octets are buf[r:w]

	lf, bare int64
	lastTerm int // length of the last consumed line's ending: 0, 1 (LF) or 2 (CRLF)
	err      error
}

const windowSize = 64 << 10

// mark is a position with its line-ending counters.
type mark struct {
	off, lf, bare int64
}

func (s *scanner) mark() mark { return mark{s.base + int64(s.r), s.lf, s.bare} }

// beforeTerm is the position before the ending of the last consumed line:
// where a body ends when the next line is a boundary (RFC 2046 §5.1.1: the
// CRLF before "--" belongs to the boundary).
func (s *scanner) beforeTerm() mark {
	m := s.mark()
	switch s.lastTerm {
	case 1:
		m.off--
		m.lf--
		m.bare--
	case 2:
		m.off -= 2
		m.lf--
	}
	return m
}

// eof reports the end of the input; a read error ends it too.
func (s *scanner) eof() bool {
	return s.r == s.w && (s.base+int64(s.w) >= s.size || s.err != nil)
}

// fill reads more input, keeping the unread octets; the window doubles
// when they fill it. It reports whether anything was read.
func (s *scanner) fill() bool {
	end := s.base + int64(s.w)
	if end >= s.size || s.err != nil {
		return false
	}
	if s.r > 0 {
		n := copy(s.buf, s.buf[s.r:s.w])
		s.base += int64(s.r)
		s.r, s.w = 0, n
	}
	if s.w == len(s.buf) {
		n := 2 * len(s.buf)
		if n < windowSize {
			n = windowSize
			if rest := s.size - end; rest < int64(n) {
				// A small message needs no larger window.
				n = int(rest) + 1
			}
		}
		nb := make([]byte, n)
		copy(nb, s.buf[:s.w])
		s.buf = nb
	}
	n := len(s.buf) - s.w
	if rest := s.size - end; int64(n) > rest {
		n = int(rest)
	}
	m, err := s.ra.ReadAt(s.buf[s.w:s.w+n], end)
	s.w += m
	if m < n && err == nil {
		err = io.ErrUnexpectedEOF
	}
	if m < n {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		s.err = err
	}
	return m > 0
}

// ensure makes at least n unread octets available, unless the input ends
// first.
func (s *scanner) ensure(n int) {
	for s.w-s.r < n && s.fill() {
	}
}

// peekLine returns the current line through its LF without consuming it,
// or its first limit octets when it is longer; whole reports that the
// returned octets are the entire line (ending in LF or at the end of input).
func (s *scanner) peekLine(limit int) (line []byte, whole bool) {
	seen := 0
	for {
		avail := s.buf[s.r:s.w]
		end := len(avail)
		if end > limit {
			end = limit
		}
		if i := bytes.IndexByte(avail[seen:end], '\n'); i >= 0 {
			return avail[:seen+i+1], true
		}
		seen = end
		if len(avail) >= limit {
			return avail[:limit], false
		}
		if !s.fill() {
			return s.buf[s.r:s.w], true
		}
	}
}

// dashes reports whether the current line starts with "--".
func (s *scanner) dashes() bool {
	s.ensure(2)
	return s.w-s.r >= 2 && s.buf[s.r] == '-' && s.buf[s.r+1] == '-'
}

// skipLine consumes the current line. It returns the line's length
// without its ending and the last two octets before the ending.
func (s *scanner) skipLine() (n int64, tail [2]byte) {
	var last [3]byte // the last three octets before the LF
	push := func(b []byte) {
		for len(b) > 3 {
			b = b[len(b)-3:]
		}
		for _, c := range b {
			last = [3]byte{last[1], last[2], c}
		}
	}
	for {
		avail := s.buf[s.r:s.w]
		if i := bytes.IndexByte(avail, '\n'); i >= 0 {
			push(avail[:i])
			n += int64(i)
			s.r += i + 1
			s.lf++
			if n > 0 && last[2] == '\r' {
				s.lastTerm = 2
				return n - 1, [2]byte{last[0], last[1]}
			}
			s.bare++
			s.lastTerm = 1
			return n, [2]byte{last[1], last[2]}
		}
		push(avail)
		n += int64(len(avail))
		s.r = s.w
		if !s.fill() {
			s.lastTerm = 0
			return n, [2]byte{last[1], last[2]}
		}
	}
}

// count consumes n octets that end with an LF or at the end of input.
func (s *scanner) count(n int) {
	chunk := s.buf[s.r : s.r+n]
	s.r += n
	switch {
	case n == 0 || chunk[n-1] != '\n':
		s.lastTerm = 0
	case n >= 2 && chunk[n-2] == '\r':
		s.lastTerm = 2
	default:
		s.lastTerm = 1
	}
	if bytes.IndexByte(chunk, '\r') < 0 {
		// LF line endings, as Maildir stores them: all bare.
		lfs := int64(bytes.Count(chunk, []byte{'\n'}))
		s.lf += lfs
		s.bare += lfs
		return
	}
	for i := 0; ; i++ {
		j := bytes.IndexByte(chunk[i:], '\n')
		if j < 0 {
			return
		}
		i += j
		s.lf++
		if i == 0 || chunk[i-1] != '\r' {
			s.bare++
		}
	}
}

// skipToDashes consumes lines until one starts with "--", or to the end of
// the input. Body lines are counted in bulk rather than one by one.
func (s *scanner) skipToDashes() {
	for {
		s.ensure(3)
		avail := s.buf[s.r:s.w]
		if len(avail) == 0 {
			return
		}
		if len(avail) >= 2 && avail[0] == '-' && avail[1] == '-' {
			return
		}
		if i := bytes.Index(avail, []byte("\n--")); i >= 0 {
			s.count(i + 1)
			return
		}
		if j := bytes.LastIndexByte(avail, '\n'); j >= 0 {
			s.count(j + 1)
			// The next line may start in the part of the
			// input not read yet.
			continue
		}
		// A line longer than the window, or the last line.
		if s.base+int64(s.w) >= s.size {
			s.count(len(avail))
			return
		}
		s.skipLine()
	}
}

// skipAll consumes the rest of the input.
func (s *scanner) skipAll() {
	for {
		avail := s.buf[s.r:s.w]
		if len(avail) > 0 {
			// Keep a trailing CR unread so that a CRLF split
			// across reads is counted as one.
			n := len(avail)
			if avail[n-1] == '\r' && s.base+int64(s.w) < s.size {
				n--
			}
			if n > 0 {
				s.count(n)
			}
		}
		if !s.fill() {
			if s.r < s.w {
				s.count(s.w - s.r)
			}
			return
		}
	}
}
