package server

import (
	"bufio"
	"io"
	"strings"
)

// Content-Transfer-Encoding decoders for BINARY (RFC 3516) and for
// searching text (RFC 3501 §6.4.4). They are lenient the way mail readers
// are: characters outside the alphabet are skipped, broken escapes are
// kept as they are. Errors come only from the underlying reader.

// newDecoder returns a reader of the decoded content, or nil when the
// encoding is unknown (NO [UNKNOWN-CTE]).
func newDecoder(enc string, r io.Reader) io.Reader {
	switch strings.ToLower(strings.TrimSpace(enc)) {
	case "", "7bit", "8bit", "binary":
		return r
	case "base64":
		return &b64Reader{r: bufio.NewReaderSize(r, 4096)}
	case "quoted-printable":
		return &qpReader{r: bufio.NewReaderSize(r, 4096)}
	}
	return nil
}

var b64val = func() (t [256]int8) {
	for i := range t {
		t[i] = -1
	}
	const a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for i := 0; i < len(a); i++ {
		t[a[i]] = int8(i)
	}
	return t
}()

type b64Reader struct {
	r    *bufio.Reader
	acc  uint32
	bits uint
	done bool
}

func (d *b64Reader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if d.bits >= 8 {
			d.bits -= 8
			p[n] = byte(d.acc >> d.bits)
			d.acc &= 1<<d.bits - 1
			n++
			continue
		}
		if d.done {
			break
		}
		c, err := d.r.ReadByte()
		if err != nil {
			d.done = true
			if err != io.EOF {
				return n, err
			}
			break
		}
		if c == '=' {
			d.done = true // padding ends the data
			continue
		}
		v := b64val[c]
		if v < 0 {
			continue
		}
		d.acc = d.acc<<6 | uint32(v)
		d.bits += 6
	}
	if n == 0 && d.done {
		return 0, io.EOF
	}
	return n, nil
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'F':
		return int(c - 'A' + 10)
	case c >= 'a' && c <= 'f':
		return int(c - 'a' + 10)
	}
	return -1
}

type qpReader struct {
	r       *bufio.Reader
	buf     []byte // decoded line, kept between lines and readers
	pending []byte // the part of buf not yet returned
	err     error
}

// reset makes d read r, keeping its buffer (SEARCH decodes many parts).
func (d *qpReader) reset(r *bufio.Reader) {
	*d = qpReader{r: r, buf: d.buf[:0]}
}

// Read decodes line by line: "=XX" is an octet, "=" at the end of a line
// a soft break, trailing blanks before a line end are dropped (RFC 2045
// §6.7).
func (d *qpReader) Read(p []byte) (int, error) {
	for len(d.pending) == 0 {
		if d.err != nil {
			return 0, d.err
		}
		line, err := d.r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			err = nil
		} else if err != nil {
			d.err = err
		}
		d.buf = d.decode(d.buf[:0], line)
		d.pending = d.buf
	}
	n := copy(p, d.pending)
	d.pending = d.pending[n:]
	return n, nil
}

func (d *qpReader) decode(out, line []byte) []byte {
	hard := false
	if len(line) > 0 && line[len(line)-1] == '\n' {
		line = line[:len(line)-1]
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		hard = true
		for len(line) > 0 && (line[len(line)-1] == ' ' || line[len(line)-1] == '\t') {
			line = line[:len(line)-1]
		}
	}
	for i := 0; i < len(line); i++ {
		c := line[i]
		if c != '=' {
			out = append(out, c)
			continue
		}
		if i == len(line)-1 {
			if hard {
				return out // soft line break
			}
			out = append(out, c)
			continue
		}
		if i+2 < len(line) && unhex(line[i+1]) >= 0 && unhex(line[i+2]) >= 0 {
			out = append(out, byte(unhex(line[i+1])<<4|unhex(line[i+2])))
			i += 2
			continue
		}
		out = append(out, c)
	}
	if hard {
		out = append(out, '\r', '\n')
	}
	return out
}
