package server

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"
	"unicode/utf8"

	"github.com/posthorn/posthorn/pkg/imap"
)

// The engine's own text search, used when the store's Message does not
// implement imap.TextMatcher: header fields are unfolded and RFC 2047
// decoded, bodies of text parts are transfer-decoded, UTF-8, US-ASCII and
// ISO-8859-1 are understood (other charsets are matched as they are), and
// matching is a case-insensitive substring test (RFC 3501 §6.4.4).

// maxSearchHeader caps how much of a header block is searched; longer
// header blocks are hostile (Dovecot stops at 10 MB for a whole header).
const maxSearchHeader = 1 << 20

func matchText(msg imap.Message, root *imap.Part, op imap.SearchOp, field, needle string) (bool, error) {
	n := fold(needle)
	switch op {
	case imap.SearchHeader:
		return matchHeader(msg, root, field, n)
	case imap.SearchBody:
		return matchBody(msg, root, n, 0)
	case imap.SearchText:
		if ok, err := matchHeader(msg, root, "", n); ok || err != nil {
			return ok, err
		}
		return matchBody(msg, root, n, 0)
	}
	return false, nil
}

func fold(s string) string { return strings.ToLower(s) }

var wordDecoder = &mime.WordDecoder{CharsetReader: func(charset string, r io.Reader) (io.Reader, error) {
	if isLatin1(charset) {
		return &latin1Reader{r: r}, nil
	}
	return nil, fmt.Errorf("charset %q not supported", charset)
}}

func isLatin1(cs string) bool {
	switch strings.ToLower(cs) {
	case "iso-8859-1", "latin1", "iso_8859-1", "windows-1252", "cp1252":
		return true
	}
	return false
}

// matchHeader searches the fields named field ("" for all of them).
func matchHeader(msg imap.Message, root *imap.Part, field, needle string) (bool, error) {
	size := root.BodyStart - root.HeaderStart
	if size > maxSearchHeader {
		size = maxSearchHeader
	}
	r, err := msg.Reader(root.HeaderStart)
	if err != nil {
		return false, err
	}
	defer r.Close()
	buf := make([]byte, size)
	if _, err := io.ReadFull(r, buf); err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return false, err
	}
	found := false
	eachField(buf, func(name, value []byte) bool {
		if field != "" && !strings.EqualFold(string(bytes.TrimSpace(name)), field) {
			return true
		}
		if needle == "" {
			found = true
			return false
		}
		v := string(value)
		if d, err := wordDecoder.DecodeHeader(v); err == nil {
			v = d
		}
		if strings.Contains(fold(v), needle) {
			found = true
			return false
		}
		return true
	})
	return found, nil
}

// eachField calls fn with each unfolded header field until it returns
// false.
func eachField(h []byte, fn func(name, value []byte) bool) {
	var name, value []byte
	flush := func() bool {
		if name == nil {
			return true
		}
		ok := fn(name, bytes.TrimSpace(value))
		name, value = nil, nil
		return ok
	}
	for len(h) > 0 {
		line := h
		if i := bytes.IndexByte(h, '\n'); i >= 0 {
			line, h = h[:i], h[i+1:]
		} else {
			h = nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			if name != nil {
				value = append(value, ' ')
				value = append(value, bytes.TrimSpace(line)...)
			}
			continue
		}
		if !flush() {
			return
		}
		if i := bytes.IndexByte(line, ':'); i > 0 {
			name = line[:i]
			value = append([]byte(nil), line[i+1:]...)
		}
	}
	flush()
}

// matchBody searches the text parts under p.
func matchBody(msg imap.Message, p *imap.Part, needle string, depth int) (bool, error) {
	if depth > maxStructureDepth {
		return false, nil
	}
	switch {
	case p.IsMultipart():
		for _, c := range p.Parts {
			if ok, err := matchBody(msg, c, needle, depth+1); ok || err != nil {
				return ok, err
			}
		}
		return false, nil
	case p.IsMessage():
		inner := p.Parts[0]
		if ok, err := matchHeader(msg, inner, "", needle); ok || err != nil {
			return ok, err
		}
		return matchBody(msg, inner, needle, depth+1)
	case p.Type != "" && !eqFold(p.Type, "text"):
		return false, nil // attachments are not searched, as without FTS
	}
	r, err := msg.Reader(p.BodyStart)
	if err != nil {
		return false, err
	}
	defer r.Close()
	d := newDecoder(p.Encoding, io.LimitReader(r, p.End-p.BodyStart))
	if d == nil {
		d = io.LimitReader(r, p.End-p.BodyStart)
	}
	latin1 := false
	for _, prm := range p.Params {
		if strings.EqualFold(prm.Name, "charset") && isLatin1(prm.Value) {
			latin1 = true
		}
	}
	if latin1 {
		d = &latin1Reader{r: d}
	}
	return streamContains(d, needle)
}

// streamContains reports whether the folded text of r contains needle,
// reading in chunks with an overlap so matches across chunks are found.
func streamContains(r io.Reader, needle string) (bool, error) {
	if needle == "" {
		return true, nil
	}
	keep := 4*len(needle) + utf8.UTFMax
	buf := make([]byte, max(32*1024, 2*keep))
	carry := 0
	for {
		n, err := r.Read(buf[carry:])
		total := carry + n
		if n > 0 && strings.Contains(fold(string(buf[:total])), needle) {
			return true, nil
		}
		if err == io.EOF {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if total > keep {
			copy(buf, buf[total-keep:total])
			carry = keep
		} else {
			carry = total
		}
	}
}

// latin1Reader converts ISO-8859-1 to UTF-8.
type latin1Reader struct {
	r   io.Reader
	out []byte
	in  [1024]byte
}

func (l *latin1Reader) Read(p []byte) (int, error) {
	for len(l.out) == 0 {
		n, err := l.r.Read(l.in[:])
		for _, c := range l.in[:n] {
			l.out = utf8.AppendRune(l.out, rune(c))
		}
		if n == 0 && err != nil {
			return 0, err
		}
	}
	n := copy(p, l.out)
	l.out = l.out[n:]
	return n, nil
}
