package mailbox

import (
	"bufio"
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
// Message.Size.
func CRLFReader(r io.Reader) io.Reader {
	return &crlfReader{r: bufio.NewReaderSize(r, 32<<10)}
}

type crlfReader struct {
	r      *bufio.Reader
	last   byte
	needLF bool
}

func (c *crlfReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if c.needLF {
			p[n] = '\n'
			n++
			c.needLF = false
			c.last = '\n'
			continue
		}
		b, err := c.r.ReadByte()
		if err != nil {
			if n > 0 {
				return n, nil
			}
			return 0, err
		}
		if b == '\n' && c.last != '\r' {
			p[n] = '\r'
			n++
			c.last = '\r'
			c.needLF = true
			continue
		}
		p[n] = b
		n++
		c.last = b
	}
	return n, nil
}

func bufioWriter(w io.Writer) *bufio.Writer { return bufio.NewWriter(w) }
