package mime

import (
	"errors"
	"io"
	"strings"
)

// ErrUnknownCTE reports a Content-Transfer-Encoding that cannot be decoded;
// BINARY answers NO [UNKNOWN-CTE] (RFC 3516 §4.3).
var ErrUnknownCTE = errors.New("mime: unknown content-transfer-encoding")

// DecodeBinary returns a reader of src decoded from the named
// Content-Transfer-Encoding (RFC 2045 §6): base64 and quoted-printable are
// decoded, 7bit, 8bit and binary are passed through, anything else is
// ErrUnknownCTE. Decoding is lenient, as mail is: base64 skips octets
// outside its alphabet and stops at padding, quoted-printable keeps a "="
// that starts no valid escape.
func DecodeBinary(encoding string, src io.Reader) (io.Reader, error) {
	switch strings.ToLower(encoding) {
	case "", "7bit", "8bit", "binary":
		return src, nil
	case "base64":
		return &decodeReader{src: src, in: make([]byte, 32<<10), dec: new(b64Decoder)}, nil
	case "quoted-printable":
		return &decodeReader{src: src, in: make([]byte, 32<<10), dec: new(qpDecoder)}, nil
	}
	return nil, ErrUnknownCTE
}

// Body returns the body of the part read from r (the message given to
// Parse) with CRLF line endings, as BODY[section] serves it.
func (p *Part) Body(r io.ReaderAt) io.Reader {
	return NewCRLFReader(io.NewSectionReader(r, p.BodyOffset, p.BodyLen))
}

// Binary returns the body of the part with its Content-Transfer-Encoding
// removed, for BINARY[section] (RFC 3516).
func (p *Part) Binary(r io.ReaderAt) (io.Reader, error) {
	return DecodeBinary(p.TransferEncoding(), p.Body(r))
}

// Text returns the body of the part decoded for SEARCH BODY and TEXT: the
// transfer encoding removed (left as it is when unknown) and, for text
// parts, the charset converted to UTF-8 where NewCharsetReader can.
func (p *Part) Text(r io.ReaderAt) io.Reader {
	body, err := p.Binary(r)
	if err != nil {
		body = p.Body(r)
	}
	if p.kind == kindLeaf && strings.EqualFold(p.Type, "text") {
		return NewCharsetReader(p.Charset(), body)
	}
	return body
}

// decoder turns input octets into output octets, keeping state between
// calls; final is set for the last call.
type decoder interface {
	decode(dst, src []byte, final bool) []byte
}

type decodeReader struct {
	src io.Reader
	in  []byte
	out []byte
	dec decoder
	err error
}

func (d *decodeReader) Read(p []byte) (int, error) {
	for len(d.out) == 0 {
		if d.err != nil {
			return 0, d.err
		}
		n, err := d.src.Read(d.in)
		d.err = err
		d.out = d.dec.decode(d.out[:0], d.in[:n], err != nil)
	}
	k := copy(p, d.out)
	d.out = d.out[k:]
	return k, nil
}

var b64Value = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xFF
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for i := 0; i < len(alphabet); i++ {
		t[alphabet[i]] = byte(i)
	}
	return t
}()

// b64Decoder decodes base64 (RFC 2045 §6.8).
type b64Decoder struct {
	acc  uint32
	n    int
	done bool // padding seen
}

func (d *b64Decoder) decode(dst, src []byte, final bool) []byte {
	for _, c := range src {
		if d.done {
			break
		}
		if c == '=' {
			d.done = true
			break
		}
		v := b64Value[c]
		if v == 0xFF {
			continue
		}
		d.acc = d.acc<<6 | uint32(v)
		d.n++
		if d.n == 4 {
			dst = append(dst, byte(d.acc>>16), byte(d.acc>>8), byte(d.acc))
			d.acc, d.n = 0, 0
		}
	}
	if d.done || final {
		switch d.n {
		case 2:
			dst = append(dst, byte(d.acc>>4))
		case 3:
			dst = append(dst, byte(d.acc>>10), byte(d.acc>>2))
		}
		d.acc, d.n = 0, 0
	}
	return dst
}

func decodeBase64(dst, src []byte) []byte {
	return new(b64Decoder).decode(dst, src, true)
}

// qpDecoder decodes quoted-printable (RFC 2045 §6.7). White space at the
// end of a line is dropped (rule 3: transports may have added it), and
// "=" at the end of a line is a soft line break (rule 5).
type qpDecoder struct {
	ws   []byte // white space not yet known to be inside the line
	held []byte // "=", "=X", "=" + white space or "\r" not yet resolved
}

const maxHeldWS = 4 << 10

func (d *qpDecoder) decode(dst, src []byte, final bool) []byte {
	for _, c := range src {
		dst = d.step(dst, c)
	}
	if final {
		// Trailing white space of the last line goes; an unfinished
		// escape is kept as written.
		dst = append(dst, d.held...)
		d.held, d.ws = d.held[:0], d.ws[:0]
	}
	return dst
}

func (d *qpDecoder) step(dst []byte, c byte) []byte {
	if h := d.held; len(h) > 0 {
		last := h[len(h)-1]
		hexPair := len(h) == 2 && isHex(h[1])
		switch {
		case len(h) == 1 && isHex(c):
			d.held = append(d.held, c)
			return dst
		case hexPair && isHex(c):
			d.held = d.held[:0]
			return append(dst, unhex(h[1])<<4|unhex(c))
		case !hexPair && c == '\n':
			// "=" [white space] [CR] LF: a soft line break.
			d.held = d.held[:0]
			return dst
		case !hexPair && last != '\r' && (c == ' ' || c == '\t' || c == '\r') && len(h) < maxHeldWS:
			d.held = append(d.held, c)
			return dst
		}
		// Not an escape: the held octets are text.
		d.held = d.held[:0]
		for _, x := range h {
			dst = d.plain(dst, x)
		}
		return d.step(dst, c)
	}
	if c == '=' {
		dst = append(dst, d.ws...)
		d.ws = d.ws[:0]
		d.held = append(d.held, c)
		return dst
	}
	return d.plain(dst, c)
}

// plain handles an octet outside escapes.
func (d *qpDecoder) plain(dst []byte, c byte) []byte {
	switch c {
	case ' ', '\t':
		if len(d.ws) >= maxHeldWS {
			dst = append(dst, d.ws...)
			d.ws = d.ws[:0]
		}
		d.ws = append(d.ws, c)
		return dst
	case '\r':
		// Held with the white space: it is dropped with it if an LF
		// follows, and kept otherwise.
		d.ws = append(d.ws, c)
		return dst
	case '\n':
		cr := len(d.ws) > 0 && d.ws[len(d.ws)-1] == '\r'
		d.ws = d.ws[:0]
		if cr {
			dst = append(dst, '\r')
		}
		return append(dst, '\n')
	}
	dst = append(dst, d.ws...)
	d.ws = d.ws[:0]
	return append(dst, c)
}
