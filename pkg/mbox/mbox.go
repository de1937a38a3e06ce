// Package mbox writes and reads Unix mbox files: /var/mail/USER, Debian's
// default mailbox (Debian Policy §11.6), and the files aliases(5) and
// .forward name.
//
// The format is mboxrd: every message starts with a "From sender date"
// separator line, any line of the message that matches ^>*From  gets one
// more ">" (so the reader can undo it exactly), and a blank line follows
// the message. Readers that only know the older mboxo quoting (mutt,
// mail(1), Dovecot) show ">From " lines with their extra ">", as they
// always have.
//
// Append locks the way Debian Policy §11.6 asks, so mutt, mail(1) and
// Dovecot exclude each other and us: an fcntl lock on the mailbox first,
// then the dotlock USER.lock next to it.
package mbox

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"time"
)

// MailerDaemon stands for the null sender <> in a From_ line, as in
// Postfix's local(8).
const MailerDaemon = "MAILER-DAEMON"

// dateLayout is asctime(3) without its newline: the date every mbox reader
// expects after the sender.
const dateLayout = "Mon Jan _2 15:04:05 2006"

// FromLine returns the separator line for a message from sender received
// at t, with its newline. The sender is one word on that line: white space
// and control characters become "_" (the exact sender is in the
// Return-Path header that follows).
func FromLine(sender string, t time.Time) string {
	if sender == "" {
		sender = MailerDaemon
	}
	sender = strings.Map(func(r rune) rune {
		if r <= ' ' || r == 0x7f {
			return '_'
		}
		return r
	}, sender)
	return "From " + sender + " " + t.Format(dateLayout) + "\n"
}

// quoteWriter adds one ">" to every line that matches ^>*From  while
// copying to w. It keeps only the state of the current line, so a message
// of any size streams through.
type quoteWriter struct {
	w io.Writer
	// pending holds the start of a line ("", ">", ">>", ..., or a prefix
	// of ">...From ") until it is known whether the line needs quoting.
	pending []byte
	// atStart is true at the beginning of a line.
	atStart bool
	// last is the last byte written, to end the message with a newline.
	last byte
	n    int64
}

func newQuoteWriter(w io.Writer) *quoteWriter { return &quoteWriter{w: w, atStart: true, last: '\n'} }

var fromWord = []byte("From ")

// Write implements io.Writer.
func (q *quoteWriter) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		if !q.atStart {
			// Copy through the end of this line.
			i := bytes.IndexByte(p, '\n')
			chunk := p
			if i >= 0 {
				chunk = p[:i+1]
				q.atStart = true
			}
			if err := q.out(chunk); err != nil {
				return 0, err
			}
			p = p[len(chunk):]
			continue
		}
		// At the start of a line: collect ">"* then see whether "From "
		// follows.
		c := p[0]
		p = p[1:]
		q.pending = append(q.pending, c)
		if need, done := q.decide(); done {
			if need {
				if err := q.out([]byte{'>'}); err != nil {
					return 0, err
				}
			}
			pend := q.pending
			q.pending = q.pending[:0]
			q.atStart = false
			if err := q.out(pend); err != nil {
				return 0, err
			}
			if pend[len(pend)-1] == '\n' {
				q.atStart = true
			}
		}
	}
	return total, nil
}

// decide looks at the pending start of a line: done once it is known
// whether the line matches ^>*From , need when it does.
func (q *quoteWriter) decide() (need, done bool) {
	s := q.pending
	i := 0
	for i < len(s) && s[i] == '>' {
		i++
	}
	rest := s[i:]
	if len(rest) == 0 {
		return false, false // only ">" so far
	}
	if len(rest) >= len(fromWord) {
		return bytes.HasPrefix(rest, fromWord), true
	}
	if bytes.HasPrefix(fromWord, rest) {
		return false, false // a prefix of "From " so far
	}
	return false, true
}

func (q *quoteWriter) out(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	n, err := q.w.Write(b)
	q.n += int64(n)
	if err != nil {
		return err
	}
	q.last = b[len(b)-1]
	return nil
}

// finish writes a line start still pending (the message ended inside it)
// and a final newline if the message did not end with one.
func (q *quoteWriter) finish() error {
	if len(q.pending) > 0 {
		pend := q.pending
		q.pending = nil
		if err := q.out(pend); err != nil {
			return err
		}
	}
	if q.last != '\n' {
		return q.out([]byte{'\n'})
	}
	return nil
}

// WriteMessage writes one message in mboxrd form to w: the From_ line,
// prefix (header lines the delivery agent adds, written as they are), the
// message with ^>*From  lines quoted and a newline added if its last line
// has none, and the blank line that ends it. It returns the bytes written.
func WriteMessage(w io.Writer, sender string, t time.Time, prefix []byte, msg io.Reader) (int64, error) {
	bw, ok := w.(*bufio.Writer)
	if !ok {
		bw = bufio.NewWriterSize(w, 64<<10)
	}
	n, err := bw.WriteString(FromLine(sender, t))
	total := int64(n)
	if err != nil {
		return total, err
	}
	q := newQuoteWriter(bw)
	if len(prefix) > 0 {
		if err := q.out(prefix); err != nil {
			return total + q.n, err
		}
		if q.last != '\n' {
			if err := q.out([]byte{'\n'}); err != nil {
				return total + q.n, err
			}
		}
	}
	if _, err := io.Copy(q, msg); err != nil {
		return total + q.n, err
	}
	if err := q.finish(); err != nil {
		return total + q.n, err
	}
	if err := q.out([]byte{'\n'}); err != nil {
		return total + q.n, err
	}
	return total + q.n, bw.Flush()
}

// WritePipeMessage writes what local(8) gives a command on its standard
// input: the From_ line, prefix and the message unquoted, with no blank
// line after it.
func WritePipeMessage(w io.Writer, sender string, t time.Time, prefix []byte, msg io.Reader) (int64, error) {
	bw := bufio.NewWriterSize(w, 64<<10)
	n, err := bw.WriteString(FromLine(sender, t))
	total := int64(n)
	if err != nil {
		return total, err
	}
	n, err = bw.Write(prefix)
	total += int64(n)
	if err != nil {
		return total, err
	}
	m, err := io.Copy(bw, msg)
	total += m
	if err != nil {
		return total, err
	}
	return total, bw.Flush()
}
