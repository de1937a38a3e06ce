package mime

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
)

// SectionKind is the part specifier at the end of a section (RFC 3501
// §6.4.5).
type SectionKind uint8

const (
	// SectionAll is the whole message ([]) or the body of a part ([1.2]).
	SectionAll SectionKind = iota
	// SectionHeader is HEADER: the header of the message, or of the
	// message in a message/rfc822 part.
	SectionHeader
	// SectionFields is HEADER.FIELDS (...): the listed fields.
	SectionFields
	// SectionFieldsNot is HEADER.FIELDS.NOT (...): the other fields.
	SectionFieldsNot
	// SectionText is TEXT: the body of the message, or of the message in
	// a message/rfc822 part.
	SectionText
	// SectionMIME is MIME: the header of a body part.
	SectionMIME
)

// SectionSpec is a parsed section-spec.
type SectionSpec struct {
	Path   []int
	Kind   SectionKind
	Fields []string
}

var (
	// ErrBadSection reports a section that does not follow the grammar
	// (the server answers BAD).
	ErrBadSection = errors.New("mime: bad section specifier")
	// ErrNoSection reports a section that does not exist in this
	// message: a part number past the last part, or HEADER/TEXT/MIME
	// where no such thing is. Servers commonly answer NIL.
	ErrNoSection = errors.New("mime: no such section")
)

// ParseSectionSpec parses the text between the brackets of BODY[...], e.g.
// "1.2.HEADER.FIELDS (From To)". Field names may be atoms or quoted strings.
func ParseSectionSpec(s string) (SectionSpec, error) {
	var spec SectionSpec
	for s != "" && s[0] >= '0' && s[0] <= '9' {
		i := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		n, err := strconv.Atoi(s[:i])
		if err != nil || n == 0 || n > MaxParts {
			return spec, ErrBadSection
		}
		spec.Path = append(spec.Path, n)
		s = s[i:]
		if s == "" {
			return spec, nil
		}
		if s[0] != '.' {
			return spec, ErrBadSection
		}
		s = s[1:]
		if s == "" {
			return spec, ErrBadSection
		}
	}
	word, rest := s, ""
	if i := strings.IndexByte(s, ' '); i >= 0 {
		word, rest = s[:i], s[i+1:]
	}
	switch strings.ToUpper(word) {
	case "":
		if len(spec.Path) > 0 {
			return spec, ErrBadSection
		}
		return spec, nil
	case "HEADER":
		spec.Kind = SectionHeader
	case "TEXT":
		spec.Kind = SectionText
	case "MIME":
		if len(spec.Path) == 0 {
			return spec, ErrBadSection
		}
		spec.Kind = SectionMIME
	case "HEADER.FIELDS":
		spec.Kind = SectionFields
	case "HEADER.FIELDS.NOT":
		spec.Kind = SectionFieldsNot
	default:
		return spec, ErrBadSection
	}
	if spec.Kind != SectionFields && spec.Kind != SectionFieldsNot {
		if len(word) != len(s) {
			return spec, ErrBadSection
		}
		return spec, nil
	}
	fields, err := parseFieldList(rest)
	if err != nil {
		return spec, err
	}
	spec.Fields = fields
	return spec, nil
}

// parseFieldList parses header-list: "(" astring *(SP astring) ")".
func parseFieldList(s string) ([]string, error) {
	if len(s) < 2 || s[0] != '(' || s[len(s)-1] != ')' {
		return nil, ErrBadSection
	}
	s = s[1 : len(s)-1]
	var out []string
	for s != "" {
		var f string
		if s[0] == '"' {
			var b strings.Builder
			i := 1
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				b.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, ErrBadSection
			}
			f, s = b.String(), s[i+1:]
		} else {
			i := strings.IndexByte(s, ' ')
			if i < 0 {
				i = len(s)
			}
			f, s = s[:i], s[i:]
		}
		if f == "" {
			return nil, ErrBadSection
		}
		out = append(out, f)
		if s != "" {
			if s[0] != ' ' || len(s) == 1 {
				return nil, ErrBadSection
			}
			s = s[1:]
		}
	}
	if len(out) == 0 {
		return nil, ErrBadSection
	}
	return out, nil
}

// Section is a located BODY[section]: which octets of the stored message
// it is made of.
type Section struct {
	// Part is the part whose header or body is served.
	Part *Part
	Kind SectionKind
	// Fields lists the field names of HEADER.FIELDS (.NOT).
	Fields []string
	// Offset and Len delimit the octets as stored. For HEADER.FIELDS
	// (.NOT) they delimit the header that is filtered.
	Offset, Len int64
	// Size is the size served, with CRLF line endings; -1 for
	// HEADER.FIELDS (.NOT), whose size Open reports.
	Size int64
}

// Section locates a section given as the text between the brackets of
// BODY[...] (RFC 3501 §6.4.5, RFC 9051 §6.4.5). p must be the part Parse
// returned. A <partial> suffix is the caller's business.
func (p *Part) Section(spec string) (*Section, error) {
	s, err := ParseSectionSpec(spec)
	if err != nil {
		return nil, err
	}
	return p.Locate(s)
}

// Locate locates a parsed section.
func (p *Part) Locate(spec SectionSpec) (*Section, error) {
	part := p
	for i, n := range spec.Path {
		switch {
		case part.kind == kindMultipart:
			if n > len(part.Children) {
				return nil, ErrNoSection
			}
			part = part.Children[n-1]
		case n != 1:
			// A part that is not multipart only has a part 1:
			// itself.
			return nil, ErrNoSection
		}
		if part.kind == kindMessage && i+1 < len(spec.Path) {
			// More numbers address the parts of the
			// encapsulated message.
			part = part.Message
		}
	}
	if len(spec.Path) > 0 {
		switch spec.Kind {
		case SectionHeader, SectionFields, SectionFieldsNot, SectionText:
			if part.kind != kindMessage {
				return nil, ErrNoSection
			}
			part = part.Message
		}
	}
	s := &Section{Part: part, Kind: spec.Kind, Fields: spec.Fields, Size: -1}
	switch spec.Kind {
	case SectionAll:
		if len(spec.Path) == 0 {
			s.Offset, s.Len, s.Size = part.Offset, part.HeaderLen+part.BodyLen, part.Size()
		} else {
			s.Offset, s.Len, s.Size = part.BodyOffset, part.BodyLen, part.BodySize
		}
	case SectionText:
		s.Offset, s.Len, s.Size = part.BodyOffset, part.BodyLen, part.BodySize
	case SectionHeader, SectionMIME:
		s.Offset, s.Len, s.Size = part.Offset, part.HeaderLen, part.HeaderSize
	default:
		s.Offset, s.Len = part.Offset, part.HeaderLen
	}
	return s, nil
}

// Open returns the content of the section read from r, which must hold the
// message given to Parse, with CRLF line endings, and its size.
func (s *Section) Open(r io.ReaderAt) (io.Reader, int64, error) {
	if s.Kind != SectionFields && s.Kind != SectionFieldsNot {
		return NewCRLFReader(io.NewSectionReader(r, s.Offset, s.Len)), s.Size, nil
	}
	h, err := s.Part.Header(r)
	if err != nil {
		return nil, 0, err
	}
	var b []byte
	for _, f := range h.Fields {
		match := false
		for _, n := range s.Fields {
			if f.Name != "" && strings.EqualFold(f.Name, n) {
				match = true
				break
			}
		}
		if match == (s.Kind == SectionFields) {
			b = appendCRLF(b, f.Raw)
			if !bytes.HasSuffix(b, []byte("\n")) {
				b = append(b, "\r\n"...)
			}
		}
	}
	if s.Part.blank {
		b = append(b, "\r\n"...)
	}
	return bytes.NewReader(b), int64(len(b)), nil
}

// appendCRLF appends src with every bare LF turned into CRLF.
func appendCRLF(dst, src []byte) []byte {
	for len(src) > 0 {
		i := bytes.IndexByte(src, '\n')
		if i < 0 {
			return append(dst, src...)
		}
		if i > 0 && src[i-1] == '\r' {
			dst = append(dst, src[:i+1]...)
		} else {
			dst = append(dst, src[:i]...)
			dst = append(dst, '\r', '\n')
		}
		src = src[i+1:]
	}
	return dst
}

// NewCRLFReader returns a reader that turns every LF not preceded by CR
// into CRLF: how messages stored with LF line endings are served.
func NewCRLFReader(r io.Reader) io.Reader {
	return &crlfReader{src: r, buf: make([]byte, 32<<10)}
}

type crlfReader struct {
	src    io.Reader
	buf    []byte
	data   []byte // unread input
	prevCR bool
	lf     bool // an LF is owed after an inserted CR
	err    error
}

func (c *crlfReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if c.lf {
			p[n] = '\n'
			n++
			c.lf, c.prevCR = false, false
			continue
		}
		if len(c.data) == 0 {
			if c.err != nil || n > 0 {
				break
			}
			m, err := c.src.Read(c.buf)
			c.data, c.err = c.buf[:m], err
			continue
		}
		// Copy up to and including the next LF, or all.
		i := bytes.IndexByte(c.data, '\n')
		run := c.data
		if i >= 0 {
			run = c.data[:i]
		}
		k := copy(p[n:], run)
		if k > 0 {
			c.prevCR = run[k-1] == '\r'
		}
		n += k
		c.data = c.data[k:]
		if k < len(run) || i < 0 || n == len(p) {
			continue
		}
		// c.data[0] is the LF.
		if !c.prevCR {
			p[n] = '\r'
			c.lf = true
		} else {
			p[n] = '\n'
			c.prevCR = false
		}
		n++
		c.data = c.data[1:]
	}
	if n == 0 && c.err != nil {
		return 0, c.err
	}
	return n, nil
}

// Field is one header field.
type Field struct {
	// Name is the field name as written, "" for a line that is no field
	// (no colon).
	Name string
	// Raw is the field as stored: all its lines with their endings.
	Raw []byte
}

// Value returns the field body unfolded (RFC 5322 §2.2.3) with RFC 2047
// encoded words decoded, as UTF-8.
func (f Field) Value() string {
	i := bytes.IndexByte(f.Raw, ':')
	if i < 0 || f.Name == "" {
		return ""
	}
	return DecodeHeader(bytes.TrimLeft(f.Raw[i+1:], " \t"))
}

// Header is a header split into fields.
type Header struct {
	Fields []Field
}

// Values returns the decoded values of the fields named name, ignoring
// case, in order.
func (h Header) Values(name string) []string {
	var out []string
	for _, f := range h.Fields {
		if f.Name != "" && strings.EqualFold(f.Name, name) {
			out = append(out, f.Value())
		}
	}
	return out
}

// Get returns the decoded value of the first field named name.
func (h Header) Get(name string) (string, bool) {
	for _, f := range h.Fields {
		if f.Name != "" && strings.EqualFold(f.Name, name) {
			return f.Value(), true
		}
	}
	return "", false
}

// Header reads the header of the part from r (the message given to Parse)
// and splits it into fields, recognised as Parse recognises them.
func (p *Part) Header(r io.ReaderAt) (Header, error) {
	b := make([]byte, p.HeaderLen)
	n, err := r.ReadAt(b, p.Offset)
	if n < len(b) {
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return Header{}, err
	}
	return SplitHeader(b), nil
}

// SplitHeader splits a header into fields; it stops at the blank line.
func SplitHeader(b []byte) Header {
	var h Header
	start := -1 // where the field being read starts
	name := ""
	pos := 0
	add := func(end int) {
		if start >= 0 {
			h.Fields = append(h.Fields, Field{Name: name, Raw: b[start:end:end]})
		}
	}
	for pos < len(b) {
		end := len(b)
		if i := bytes.IndexByte(b[pos:], '\n'); i >= 0 {
			end = pos + i + 1
		}
		line := b[pos:end]
		if len(trimEOL(line)) == 0 && line[len(line)-1] == '\n' {
			break
		}
		if (line[0] != ' ' && line[0] != '\t') || start < 0 {
			add(pos)
			start, name = pos, ""
			n := len(line)
			if n > MaxHeaderNameLen+1 {
				n = MaxHeaderNameLen + 1
			}
			if i := bytes.IndexByte(line[:n], ':'); i >= 0 {
				name = string(bytes.TrimRight(line[:i], " \t"))
			}
		}
		pos = end
	}
	add(pos)
	return h
}
