package mailbox

import (
	"bufio"
	"bytes"
	"io"
	"strings"
)

func equalFold(a, b string) bool { return strings.EqualFold(a, b) }

// lfWriter stores what IMAP sends with CRLF line ends as LF, as Dovecot
// does (mail_save_crlf = no). n counts bytes written, lines the LFs that
// the CRLF view will expand (those not already after a CR), so that
// n+lines is RFC822.SIZE.
type lfWriter struct {
	w       *bufio.Writer
	pending bool // a CR waiting to see whether LF follows
	last    byte
	n       int64
	lines   int64
}

func (l *lfWriter) put(c byte) error {
	if c == '\n' && l.last != '\r' {
		l.lines++
	}
	l.last = c
	l.n++
	return l.w.WriteByte(c)
}

func (l *lfWriter) Write(p []byte) (int, error) {
	for i, c := range p {
		if l.pending {
			l.pending = false
			if c == '\n' {
				if err := l.put('\n'); err != nil {
					return i, err
				}
				continue
			}
			if err := l.put('\r'); err != nil {
				return i, err
			}
		}
		if c == '\r' {
			l.pending = true
			continue
		}
		if err := l.put(c); err != nil {
			return i, err
		}
	}
	return len(p), nil
}

// Close writes a CR left at the very end.
func (l *lfWriter) Close() error {
	if l.pending {
		l.pending = false
		return l.put('\r')
	}
	return nil
}

// CRLFReader returns the IMAP view of a stored message: every LF not
// already preceded by CR becomes CRLF, so the bytes read add up to
// Message.Size. It copies whole line segments, not byte by byte: RETR and
// FETCH of large mailboxes spend their time here.
func CRLFReader(r io.Reader) io.Reader {
	return &crlfReader{r: r, buf: make([]byte, 16<<10)}
}

type crlfReader struct {
	r      io.Reader
	buf    []byte
	b      []byte // read from r, not yet returned
	err    error  // r's error, returned once b is drained
	last   byte   // the last byte returned
	needLF bool   // a CR was inserted: its LF comes next
	empty  int    // reads in a row that returned nothing
}

func (c *crlfReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if c.needLF {
			p[n] = '\n'
			n++
			c.needLF, c.last = false, '\n'
			continue
		}
		if len(c.b) == 0 {
			if c.err != nil || n > 0 {
				break // return what there is before reading again
			}
			m, err := c.r.Read(c.buf)
			c.b, c.err = c.buf[:m], err
			if m == 0 && err == nil {
				if c.empty++; c.empty > 100 {
					c.err = io.ErrNoProgress // as bufio.Reader does
				}
			}
			continue
		}
		seg := c.b
		i := bytes.IndexByte(seg, '\n')
		if i >= 0 {
			seg = seg[:i]
		}
		k := copy(p[n:], seg)
		if k > 0 {
			n += k
			c.last = seg[k-1]
			c.b = c.b[k:]
		}
		if k < len(seg) || i < 0 || n == len(p) {
			continue // p is full, or the window needs refilling
		}
		// c.b[0] is an LF.
		c.b = c.b[1:]
		if c.last != '\r' {
			p[n] = '\r'
			c.needLF, c.last = true, '\r'
		} else {
			p[n] = '\n'
			c.last = '\n'
		}
		n++
	}
	if n == 0 && len(c.b) == 0 && !c.needLF && c.err != nil {
		return 0, c.err
	}
	return n, nil
}

func bufioWriter(w io.Writer) *bufio.Writer { return bufio.NewWriter(w) }
