package server

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// Errors from the DATA and BDAT readers. ErrBareLF and ErrBareCR leave the
// stream at an unknown position: the only safe reaction is to reply and
// close the connection, so that nothing after them is read as a command.
var (
	ErrBareLF = errors.New("bare <LF> received")
	ErrBareCR = errors.New("bare <CR> received")
	ErrTooBig = errors.New("message file too big")
)

// DataReader reads the text that follows a DATA command up to and including
// the terminating <CRLF>.<CRLF>, and returns it with LF line endings and
// leading dots unstuffed (RFC 5321 §4.5.2).
//
// Only CRLF ends a line. A CR or LF anywhere else is an error: RFC 5321
// §4.1.1.4 forbids treating <LF>.<LF> as the end of data, and a reader that
// accepted any variant of it could be made to end the message where another
// MTA does not (SMTP smuggling, CVE-2023-51764). NUL and 8-bit octets pass
// through unchanged.
//
// Past limit octets of content the reader keeps consuming up to the end of
// data so the session stays in step with the client, returns nothing more,
// and finally reports ErrTooBig instead of io.EOF.
type DataReader struct {
	r       *bufio.Reader
	limit   int64
	n       int64  // content octets seen, including those past the limit
	bol     bool   // at the beginning of a line
	crHeld  bool   // the last fragment ended in CR; its LF must come next
	pending []byte // converted content not yet returned (aliases r's buffer)
	addLF   bool   // an LF is owed after pending
	err     error  // sticky: io.EOF or ErrTooBig after the end, or the failure
}

// NewDataReader returns a reader for the data that starts at r's current
// position, right after the 354 reply. limit <= 0 means no limit.
func NewDataReader(r *bufio.Reader, limit int64) *DataReader {
	return &DataReader{r: r, limit: limit, bol: true}
}

// Size returns how many octets of content (after conversion) were seen,
// including any past the limit.
func (d *DataReader) Size() int64 { return d.n }

// Read implements io.Reader.
func (d *DataReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		switch {
		case len(d.pending) > 0:
			c := copy(p[n:], d.pending)
			d.pending = d.pending[c:]
			n += c
		case d.addLF:
			p[n] = '\n'
			n++
			d.addLF = false
		case d.err != nil:
			return n, d.errAfter(n)
		case n > 0 && d.r.Buffered() == 0:
			// Hand over what we have rather than wait for the network.
			return n, nil
		default:
			d.next()
		}
	}
	return n, nil
}

// errAfter returns the sticky error unless n octets are being returned with
// it: io.Reader allows both, but callers are simpler when an end or failure
// comes with no data.
func (d *DataReader) errAfter(n int) error {
	if n > 0 {
		return nil
	}
	return d.err
}

// next consumes one fragment: a whole line, or a buffer-full of a long line.
func (d *DataReader) next() {
	frag, err := d.r.ReadSlice('\n')
	complete := err == nil
	if err != nil && err != bufio.ErrBufferFull {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		d.err = err
		return
	}
	if d.crHeld {
		// ReadSlice stops at the first LF, so a held CR is completed only by
		// a fragment that is exactly "\n".
		d.crHeld = false
		if frag[0] != '\n' {
			d.err = ErrBareCR
			return
		}
		d.emit(nil, true)
		return
	}
	if d.bol && frag[0] == '.' {
		if complete && len(frag) == 3 && frag[1] == '\r' {
			if d.limit > 0 && d.n > d.limit {
				d.err = ErrTooBig
			} else {
				d.err = io.EOF
			}
			return
		}
		frag = frag[1:] // RFC 5321 §4.5.2: drop the stuffed dot
	}
	body := frag
	if complete {
		if len(body) < 2 || body[len(body)-2] != '\r' {
			d.err = ErrBareLF
			return
		}
		body = body[:len(body)-2]
	} else if len(body) > 0 && body[len(body)-1] == '\r' {
		d.crHeld = true
		body = body[:len(body)-1]
	}
	if bytes.IndexByte(body, '\r') >= 0 {
		d.err = ErrBareCR
		return
	}
	d.emit(body, complete)
}

func (d *DataReader) emit(body []byte, eol bool) {
	d.bol = eol
	d.n += int64(len(body))
	if eol {
		d.n++
	}
	if d.limit > 0 && d.n > d.limit {
		return // discarding: the session learns of it at the end
	}
	d.pending = body
	d.addLF = eol
}

// lineEndings converts CRLF to LF in BDAT chunks, where a CRLF may be split
// between two chunks, and refuses bare CR and LF as DataReader does.
type lineEndings struct {
	crHeld bool
}

// convert appends src with CRLF turned into LF to dst.
func (c *lineEndings) convert(dst, src []byte) ([]byte, error) {
	if c.crHeld && len(src) > 0 {
		if src[0] != '\n' {
			return dst, ErrBareCR
		}
		c.crHeld = false
		dst = append(dst, '\n')
		src = src[1:]
	}
	for len(src) > 0 {
		i := bytes.IndexAny(src, "\r\n")
		if i < 0 {
			return append(dst, src...), nil
		}
		dst = append(dst, src[:i]...)
		if src[i] == '\n' {
			return dst, ErrBareLF
		}
		if i+1 == len(src) {
			c.crHeld = true
			return dst, nil
		}
		if src[i+1] != '\n' {
			return dst, ErrBareCR
		}
		dst = append(dst, '\n')
		src = src[i+2:]
	}
	return dst, nil
}

// finish reports a CR left dangling at the end of the last chunk.
func (c *lineEndings) finish() error {
	if c.crHeld {
		return ErrBareCR
	}
	return nil
}
