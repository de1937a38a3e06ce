package client

import (
	"bufio"
	"bytes"
)

// MaxLineLength is the longest line sent in DATA, CRLF not counted (RFC
// 5321 §4.5.3.1.6: 1000 octets with CRLF). Longer lines are broken by
// inserting CRLF and a space, as Postfix's smtp_line_length_limit (998)
// does: in a header that makes a folded header, in a body the least
// harmful change.
const MaxLineLength = 998

// dataWriter turns message content into the DATA stream (RFC 5321
// §4.1.1.4, §4.5.2): every line ends in CRLF whatever it ended in before
// (LF, CRLF, or a bare CR), a line starting with '.' gets another, and no
// bare CR or LF is ever sent, so a stored message cannot end the DATA
// early or smuggle a second message to the next hop (HOSTILE-INPUTS 5,
// the "outbound smuggling" of CVE-2023-51764's family).
type dataWriter struct {
	w     *bufio.Writer
	limit int  // MaxLineLength; smaller in fuzzing, to reach the breaking with short inputs
	col   int  // octets written on the current output line
	cr    bool // the last input octet was a CR whose line break is pending
	err   error
}

func newDataWriter(w *bufio.Writer) *dataWriter { return &dataWriter{w: w, limit: MaxLineLength} }

func (d *dataWriter) newline() {
	d.w.WriteString("\r\n")
	d.col = 0
}

func (d *dataWriter) Write(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	n := len(p)
	for len(p) > 0 {
		if d.cr {
			// A CR ends a line, together with the LF that follows it.
			d.cr = false
			d.newline()
			if p[0] == '\n' {
				p = p[1:]
				continue
			}
		}
		i := bytes.IndexAny(p, "\r\n")
		span := p
		if i >= 0 {
			span = p[:i]
		}
		for len(span) > 0 {
			if d.col == 0 && span[0] == '.' {
				d.w.WriteByte('.')
				d.col++
			}
			if d.col >= d.limit {
				d.w.WriteString("\r\n ")
				d.col = 1
			}
			k := min(len(span), d.limit-d.col)
			d.w.Write(span[:k])
			d.col += k
			span = span[k:]
		}
		if i < 0 {
			break
		}
		if p[i] == '\r' {
			d.cr = true
		} else {
			d.newline()
		}
		p = p[i+1:]
	}
	if _, err := d.w.Write(nil); err != nil {
		d.err = err
		return 0, err
	}
	return n, nil
}

// Close ends the last line if it had no line break and writes the
// terminating ".", without flushing.
func (d *dataWriter) Close() error {
	if d.err != nil {
		return d.err
	}
	if d.cr || d.col > 0 {
		d.newline()
	}
	d.w.WriteString(".\r\n")
	return nil
}
