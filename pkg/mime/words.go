package mime

import (
	"bytes"
	"strings"
)

// DecodeHeader returns a header field body as UTF-8: unfolded (RFC 5322
// §2.2.3), RFC 2047 encoded words decoded, and the rest read as UTF-8 (RFC
// 6532). Encoded words in unknown charsets keep their octets. Words that are
// not well formed are left as written.
func DecodeHeader(v []byte) string {
	if bytes.IndexByte(v, '\n') >= 0 || bytes.IndexByte(v, '\r') >= 0 {
		u := make([]byte, 0, len(v))
		for _, c := range v {
			if c != '\r' && c != '\n' {
				u = append(u, c)
			}
		}
		v = u
	}
	out := make([]byte, 0, len(v))
	// pending holds decoded octets of adjacent encoded words in one
	// charset, converted together so that a character split between
	// two words survives.
	var pending []byte
	pendingCS := ""
	flush := func() {
		if pending != nil {
			out = toUTF8(out, pending, lookupCharset(pendingCS))
			pending = nil
		}
	}
	lastWord := false // the previous token was an encoded word
	for len(v) > 0 {
		i := bytes.Index(v, []byte("=?"))
		if i < 0 {
			flush()
			out = toUTF8(out, v, csUTF8)
			break
		}
		cs, dec, n, ok := encodedWord(v[i:])
		if !ok {
			flush()
			out = toUTF8(out, v[:i+2], csUTF8)
			v = v[i+2:]
			lastWord = false
			continue
		}
		// RFC 2047 §6.2: white space between adjacent encoded words
		// is not displayed.
		if !(lastWord && isWSP(v[:i])) {
			flush()
			out = toUTF8(out, v[:i], csUTF8)
		}
		if pending != nil && !strings.EqualFold(cs, pendingCS) {
			flush()
		}
		if pending == nil {
			pending, pendingCS = []byte{}, cs
		}
		pending = append(pending, dec...)
		v = v[i+n:]
		lastWord = true
	}
	flush()
	return string(out)
}

func isWSP(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' {
			return false
		}
	}
	return true
}

// encodedWord decodes "=?charset?encoding?text?=" (RFC 2047 §2) at the
// start of b, returning the charset, the decoded octets and the length.
func encodedWord(b []byte) (cs string, dec []byte, n int, ok bool) {
	// b starts with "=?".
	q1 := bytes.IndexByte(b[2:], '?')
	if q1 <= 0 {
		return
	}
	q1 += 2
	if q1+3 > len(b) || b[q1+2] != '?' {
		return
	}
	enc := b[q1+1] | 0x20
	end := bytes.Index(b[q1+3:], []byte("?="))
	if end < 0 {
		return
	}
	text := b[q1+3 : q1+3+end]
	if bytes.ContainsAny(text, " \t") {
		return
	}
	cs = string(b[2:q1])
	if i := strings.IndexByte(cs, '*'); i >= 0 {
		cs = cs[:i] // RFC 2231 §5 language
	}
	switch enc {
	case 'b':
		dec = decodeBase64(nil, text)
	case 'q':
		dec = make([]byte, 0, len(text))
		for i := 0; i < len(text); i++ {
			c := text[i]
			switch {
			case c == '_':
				c = ' '
			case c == '=' && i+2 < len(text) && isHex(text[i+1]) && isHex(text[i+2]):
				c = unhex(text[i+1])<<4 | unhex(text[i+2])
				i += 2
			}
			dec = append(dec, c)
		}
	default:
		return
	}
	return cs, dec, q1 + 3 + end + 2, true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// DecodeParam decodes an RFC 2231 extended value, charset'language'%XX...,
// to UTF-8 (RFC 2231 §4). A value not in that form is returned as UTF-8
// text.
func DecodeParam(v string) string {
	q1 := strings.IndexByte(v, '\'')
	q2 := -1
	if q1 >= 0 {
		q2 = strings.IndexByte(v[q1+1:], '\'')
	}
	if q2 < 0 {
		return string(toUTF8(nil, []byte(v), csUTF8))
	}
	cs, text := v[:q1], v[q1+1+q2+1:]
	raw := make([]byte, 0, len(text))
	for i := 0; i < len(text); i++ {
		c := text[i]
		if c == '%' && i+2 < len(text) && isHex(text[i+1]) && isHex(text[i+2]) {
			c = unhex(text[i+1])<<4 | unhex(text[i+2])
			i += 2
		}
		raw = append(raw, c)
	}
	return string(toUTF8(nil, raw, lookupCharset(cs)))
}

// findParam returns the decoded value of a parameter: the RFC 2231 form
// (name*) is preferred, a plain value is RFC 2047-decoded, as many mailers
// encode file names that way.
func findParam(params []Param, name string) (string, bool) {
	for _, p := range params {
		if len(p.Name) == len(name)+1 && strings.HasSuffix(p.Name, "*") &&
			strings.EqualFold(p.Name[:len(name)], name) {
			return DecodeParam(p.Value), true
		}
	}
	for _, p := range params {
		if strings.EqualFold(p.Name, name) {
			return DecodeHeader([]byte(p.Value)), true
		}
	}
	return "", false
}

// Param returns the decoded value of a Content-Type parameter.
func (p *Part) Param(name string) (string, bool) { return findParam(p.Params, name) }

// DispositionParam returns the decoded value of a Content-Disposition
// parameter.
func (p *Part) DispositionParam(name string) (string, bool) {
	return findParam(p.DispositionParams, name)
}

// Filename returns the part's file name, decoded: the Content-Disposition
// filename (RFC 2183 §2.3), else the Content-Type name. Every decision that
// depends on an attachment's name should use this one reading of it.
func (p *Part) Filename() string {
	if f, ok := p.DispositionParam("filename"); ok {
		return f
	}
	f, _ := p.Param("name")
	return f
}

// Charset returns the charset parameter in lower case; for text parts
// without one, "us-ascii" (RFC 2045 §5.2).
func (p *Part) Charset() string {
	if cs, ok := p.Param("charset"); ok {
		return strings.ToLower(strings.TrimSpace(cs))
	}
	if strings.EqualFold(p.Type, "text") {
		return "us-ascii"
	}
	return ""
}
