// Package wire reads IMAP commands and writes IMAP responses.
//
// The reader is incremental and bounded: a command is parsed while it
// arrives, every line, literal and command has a size limit that is checked
// before anything is buffered or a continuation request is sent, and after
// an error the rest of the command is skipped exactly as RFC 7888 requires
// (a non-synchronising literal is consumed, never run as commands).
package wire

import (
	"io"
	"sync"
)

// bufSize is the read buffer of a busy connection. An idle one holds none.
const bufSize = 4096

var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// In is a read buffer that lets go of its memory while the connection is
// idle: between commands, when nothing is buffered, it waits for input
// with a 16-byte read into the In itself and takes a pooled buffer only
// once bytes arrive. Ten thousand IDLE sessions then hold no read buffers.
type In struct {
	rd   io.Reader
	buf  *[]byte
	r, w int
	tiny [16]byte
	// Count is the number of octets read so far.
	Count int64
}

// NewIn returns an In reading from rd.
func NewIn(rd io.Reader) *In { return &In{rd: rd} }

// Reset switches to a new source and drops everything buffered. STARTTLS
// uses it: plaintext that arrived behind the STARTTLS command must never
// be read as if it came through TLS (RFC 3207 §4.2, HOSTILE 8).
func (in *In) Reset(rd io.Reader) {
	in.rd = rd
	in.r, in.w = 0, 0
	in.release()
}

// Buffered returns the number of octets read but not consumed.
func (in *In) Buffered() int { return in.w - in.r }

func (in *In) release() {
	if in.buf != nil && in.r == in.w {
		bufPool.Put(in.buf)
		in.buf = nil
		in.r, in.w = 0, 0
	}
}

// Wait blocks until at least one octet is buffered. With nothing buffered
// it returns the read buffer to the pool first. A deadline that interrupts
// Wait loses nothing.
func (in *In) Wait() error {
	if in.r < in.w {
		return nil
	}
	in.release()
	n, err := in.rd.Read(in.tiny[:])
	if n > 0 {
		in.Count += int64(n)
		in.buf = bufPool.Get().(*[]byte)
		in.r, in.w = 0, copy(*in.buf, in.tiny[:n])
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// fill reads more into the buffer; it never returns with nothing new and
// a nil error.
func (in *In) fill() error {
	if in.buf == nil {
		in.buf = bufPool.Get().(*[]byte)
		in.r, in.w = 0, 0
	}
	b := *in.buf
	if in.r > 0 {
		copy(b, b[in.r:in.w])
		in.w -= in.r
		in.r = 0
	}
	for tries := 0; tries < 100; tries++ {
		n, err := in.rd.Read(b[in.w:])
		in.w += n
		in.Count += int64(n)
		if n > 0 {
			return nil
		}
		if err != nil {
			return err
		}
	}
	return io.ErrNoProgress
}

// Read reads buffered octets first, then from the source.
func (in *In) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if in.r == in.w {
		if len(p) >= bufSize {
			// Large reads (literal data) bypass the buffer.
			n, err := in.rd.Read(p)
			in.Count += int64(n)
			return n, err
		}
		if err := in.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, (*in.buf)[in.r:in.w])
	in.r += n
	return n, nil
}

// Discard skips n octets.
func (in *In) Discard(n int64) error {
	for n > 0 {
		if in.r == in.w {
			if err := in.fill(); err != nil {
				return err
			}
		}
		k := int64(in.w - in.r)
		if k > n {
			k = n
		}
		in.r += int(k)
		n -= k
	}
	return nil
}

// errLineTooLong is returned by readLine when no CRLF came within max.
type lineTooLong struct{}

func (lineTooLong) Error() string { return "line too long" }

// ErrLineTooLong reports a command line over the limit. The connection
// cannot be resynchronised and must be closed (Dovecot, mox do the same).
var ErrLineTooLong error = lineTooLong{}

// readLine appends one line without its CRLF to dst. A bare LF also ends a
// line, as in Dovecot, so clients that send LF are understood. It fails
// with ErrLineTooLong once more than max octets came without a line end.
func (in *In) readLine(dst []byte, max int) ([]byte, error) {
	start := len(dst)
	for {
		if in.r == in.w {
			if err := in.fill(); err != nil {
				return dst, err
			}
		}
		b := (*in.buf)[in.r:in.w]
		for i, c := range b {
			if c == '\n' {
				dst = append(dst, b[:i]...)
				in.r += i + 1
				if n := len(dst); n > start && dst[n-1] == '\r' {
					dst = dst[:n-1]
				}
				if len(dst)-start > max {
					return dst, ErrLineTooLong
				}
				return dst, nil
			}
		}
		dst = append(dst, b...)
		in.r = in.w
		// +1 for a CR that may still be followed by LF.
		if len(dst)-start > max+1 {
			return dst, ErrLineTooLong
		}
	}
}

// Preload puts octets that were read from the connection by someone else
// (a login process that handed the connection over) in front of what
// comes next.
func (in *In) Preload(b []byte) {
	if len(b) == 0 {
		return
	}
	rest := []byte(nil)
	if in.buf != nil {
		rest = append(rest, (*in.buf)[in.r:in.w]...)
	}
	n := len(b) + len(rest)
	var buf []byte
	if n <= bufSize {
		if in.buf == nil {
			in.buf = bufPool.Get().(*[]byte)
		}
		buf = *in.buf
	} else {
		buf = make([]byte, n)
		in.buf = &buf
	}
	copy(buf, b)
	copy(buf[len(b):], rest)
	in.r, in.w = 0, n
}

// Take returns and consumes every octet read but not yet consumed, for a
// connection that moves to another process (imap-login handing a session
// to imapd, which gets them back with Preload).
func (in *In) Take() []byte {
	if in.buf == nil || in.r == in.w {
		return nil
	}
	out := append([]byte(nil), (*in.buf)[in.r:in.w]...)
	in.r = in.w
	in.release()
	return out
}
