package pop3

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"time"
)

// MaxCommandLine is the longest command line accepted, CRLF included
// (RFC 2449 §4: 255 octets).
const MaxCommandLine = 255

// maxDiscard bounds how much of an overlong line is skipped to find its
// end and stay in step with the client. A client that sends more than this
// without a line end is not speaking POP3, and the connection is closed.
const maxDiscard = 64 << 10

// goodbyeTimeout bounds the write of a session's last line.
const goodbyeTimeout = 5 * time.Second

var (
	errLineTooLong = errors.New("pop3: line too long")
	errLineFlood   = errors.New("pop3: line too long to skip")
)

// lineReader reads CRLF-terminated lines (a bare LF is accepted too) with a
// bound on their length, so that no input makes a line buffer grow.
type lineReader struct {
	br  *bufio.Reader
	buf []byte
}

func newLineReader(r io.Reader) *lineReader {
	return &lineReader{br: bufio.NewReaderSize(r, 4096)}
}

// line returns the next line without its line end. A line longer than max
// octets (line end included) is consumed and reported as errLineTooLong;
// one that is still going maxDiscard octets later as errLineFlood. A
// partial line at EOF is dropped and io.EOF (or the read error) returned.
// The result is valid until the next call.
func (r *lineReader) line(max int) ([]byte, error) {
	r.buf = r.buf[:0]
	n := 0
	tooLong := false
	for {
		frag, err := r.br.ReadSlice('\n')
		n += len(frag)
		if !tooLong && n > max {
			tooLong = true
		}
		if !tooLong {
			r.buf = append(r.buf, frag...)
		}
		if err == nil {
			break
		}
		if err != bufio.ErrBufferFull {
			if err == io.EOF && n > 0 {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if n > max+maxDiscard {
			return nil, errLineFlood
		}
	}
	if tooLong {
		return nil, errLineTooLong
	}
	l := r.buf[:len(r.buf)-1]
	if len(l) > 0 && l[len(l)-1] == '\r' {
		l = l[:len(l)-1]
	}
	return l, nil
}

// buffered is the number of octets read from the connection and not yet
// returned as lines.
func (r *lineReader) buffered() int { return r.br.Buffered() }

// hasLine reports whether a whole line is already buffered: a pipelined
// command (RFC 2449 §6.6) that can be answered before the pending answers
// are sent. A partial line does not count; its end may never come before
// the client sees those answers.
func (r *lineReader) hasLine() bool {
	b, _ := r.br.Peek(r.br.Buffered())
	return bytes.IndexByte(b, '\n') >= 0
}

// take returns and removes everything buffered.
func (r *lineReader) take() []byte {
	b, _ := r.br.Peek(r.br.Buffered())
	out := bytes.Clone(b)
	r.br.Discard(len(b))
	return out
}

// deadlineWriter gives every write to the client its own deadline, so a
// client that stops reading (a RETR it never consumes) cannot hold a
// session forever, while a slow but moving one can fetch a large message.
type deadlineWriter struct {
	c       net.Conn
	timeout time.Duration
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	w.c.SetWriteDeadline(time.Now().Add(w.timeout))
	n, err := w.c.Write(p)
	if err != nil {
		err = &writeError{err}
	}
	return n, err
}

// waker wakes a read or write blocked on conn when ctx ends, by moving its
// deadlines to now; the engine then sees ctx.Err() and says goodbye.
type waker struct {
	stop func() bool
	done chan struct{}
}

func wakeOnDone(ctx context.Context, conn net.Conn) *waker {
	w := &waker{done: make(chan struct{})}
	w.stop = context.AfterFunc(ctx, func() {
		conn.SetDeadline(time.Now())
		close(w.done)
	})
	return w
}

// settled waits, once ctx has ended, until the deadlines have been moved,
// so that a goodbye's own deadline is not overwritten by them.
func (w *waker) settled() { <-w.done }

// writeError marks a failure to send to the client, which ends a session
// without a last word: nothing more can be said.
type writeError struct{ err error }

func (e *writeError) Error() string { return "pop3: write: " + e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

// dotWriter byte-stuffs a multi-line response body (RFC 1939 §3): a line
// that starts with "." gets another one, so only the terminating ".\r\n"
// written by Close can end the response, whatever the message holds
// (HOSTILE 48). Its input must have CRLF line ends (mailbox.CRLFReader).
type dotWriter struct {
	w   *bufio.Writer
	bol bool // at the beginning of a line
	n   int64
}

func newDotWriter(w *bufio.Writer) *dotWriter { return &dotWriter{w: w, bol: true} }

func (d *dotWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		if d.bol && p[0] == '.' {
			if err := d.w.WriteByte('.'); err != nil {
				return written, err
			}
		}
		seg := p
		if i := bytes.IndexByte(p, '\n'); i >= 0 {
			seg = p[:i+1]
			d.bol = true
		} else {
			d.bol = false
		}
		m, err := d.w.Write(seg)
		written += m
		d.n += int64(m)
		if err != nil {
			return written, err
		}
		p = p[len(seg):]
	}
	return written, nil
}

// Close ends the body: a CRLF if the content did not end with one (the
// terminator must be on a line of its own), then ".\r\n".
func (d *dotWriter) Close() error {
	if !d.bol {
		if _, err := d.w.WriteString("\r\n"); err != nil {
			return err
		}
		d.bol = true
	}
	_, err := d.w.WriteString(".\r\n")
	return err
}

// errTopDone stops copying a message once TOP has what it asked for.
var errTopDone = errors.New("pop3: TOP complete")

// topFilter passes on the header, the blank line after it and then only
// lines body lines (RFC 1939 §7, TOP). A message without a blank line is
// all header and is passed on whole.
type topFilter struct {
	w      io.Writer
	lines  int64
	inBody bool
	// col is the position in the current header line: 0 at its start,
	// -1 after a lone CR at its start, 1 anywhere else.
	col int
}

func (t *topFilter) Write(p []byte) (int, error) {
	cut, done := len(p), false
	if t.inBody && t.lines == 0 {
		return 0, errTopDone
	}
	for i := 0; i < len(p); i++ {
		if t.inBody {
			j := bytes.IndexByte(p[i:], '\n')
			if j < 0 {
				break
			}
			i += j
			t.lines--
			if t.lines == 0 {
				cut, done = i+1, true
				break
			}
			continue
		}
		switch c := p[i]; {
		case c == '\n':
			if t.col <= 0 {
				t.inBody = true
				if t.lines == 0 {
					cut, done = i+1, true
				}
			}
			t.col = 0
		case c == '\r' && t.col == 0:
			t.col = -1
		default:
			t.col = 1
		}
		if done {
			break
		}
	}
	n, err := t.w.Write(p[:cut])
	if err != nil {
		return n, err
	}
	if done {
		return n, errTopDone
	}
	return n, nil
}
