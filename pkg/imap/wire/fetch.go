package wire

import (
	"strconv"
	"strings"
)

// FetchKind is one FETCH data item (RFC 3501 §6.4.5, RFC 3516, RFC 7162).
type FetchKind uint8

// FETCH data items.
const (
	FetchFlags FetchKind = iota
	FetchUID
	FetchInternalDate
	FetchRFC822Size
	FetchEnvelope
	FetchBody          // BODY: non-extensible BODYSTRUCTURE
	FetchBodyStructure // BODYSTRUCTURE
	FetchModSeq
	FetchRFC822       // = BODY[] (sets \Seen)
	FetchRFC822Header // = BODY.PEEK[HEADER], named RFC822.HEADER
	FetchRFC822Text   // = BODY[TEXT], named RFC822.TEXT
	FetchSection      // BODY[...] / BODY.PEEK[...]
	FetchBinary       // BINARY[...] / BINARY.PEEK[...]
	FetchBinarySize   // BINARY.SIZE[...]
)

// FetchItem is one requested data item.
type FetchItem struct {
	Kind    FetchKind
	Peek    bool
	Section Section
}

// Section is a body section specification with an optional partial range.
type Section struct {
	Part    []int
	Spec    string   // "", "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"
	Fields  []string // for HEADER.FIELDS[.NOT], as the client wrote them
	Partial bool
	Offset  uint64
	Count   uint64
}

// String formats the section as it appears in a response, without the
// partial count: "1.2.HEADER.FIELDS (From To)".
func (s *Section) String() string {
	var b strings.Builder
	for i, p := range s.Part {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(strconv.Itoa(p))
	}
	if s.Spec != "" {
		if len(s.Part) > 0 {
			b.WriteByte('.')
		}
		b.WriteString(s.Spec)
	}
	if strings.HasPrefix(s.Spec, "HEADER.FIELDS") {
		b.WriteString(" (")
		for i, f := range s.Fields {
			if i > 0 {
				b.WriteByte(' ')
			}
			writeAString(&b, f)
		}
		b.WriteByte(')')
	}
	return b.String()
}

// writeAString writes s as an atom when it is one, quoted otherwise.
func writeAString(b *strings.Builder, s string) {
	atom := s != ""
	for i := 0; i < len(s); i++ {
		if !isAStringChar(s[i]) {
			atom = false
			break
		}
	}
	if atom {
		b.WriteString(s)
		return
	}
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
}

// FetchArgs are FETCH's arguments.
type FetchArgs struct {
	Items        []FetchItem
	ChangedSince uint64 // RFC 7162 §3.1.4; 0 when absent
	Vanished     bool   // RFC 7162 §3.2.6
}

// fetchArgs parses the data items and modifiers of FETCH.
func (d *Decoder) fetchArgs() (*FetchArgs, error) {
	a := &FetchArgs{}
	if d.peek() == '(' {
		err := d.list(false, func() error {
			it, err := d.fetchAtt()
			a.Items = append(a.Items, it...)
			return err
		})
		if err != nil {
			return nil, err
		}
	} else {
		it, err := d.fetchAtt()
		if err != nil {
			return nil, err
		}
		a.Items = it
	}
	if d.peek() == ' ' {
		d.pos++
		err := d.list(false, func() error {
			kw, err := d.keyword()
			if err != nil {
				return err
			}
			switch kw {
			case "CHANGEDSINCE":
				if err := d.sp(); err != nil {
					return err
				}
				a.ChangedSince, err = d.modSeq(false)
				return err
			case "VANISHED":
				a.Vanished = true
				return nil
			}
			return d.fail("Unknown FETCH modifier.")
		})
		if err != nil {
			return nil, err
		}
	}
	return a, nil
}

// fetchName reads an item name: letters, digits and dots.
func (d *Decoder) fetchName() string {
	s := d.pos
	for d.pos < len(d.line) {
		c := d.line[d.pos]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.') {
			break
		}
		d.pos++
	}
	return strings.ToUpper(string(d.line[s:d.pos]))
}

// fetchAtt parses one fetch-att, expanding the ALL, FAST and FULL macros.
func (d *Decoder) fetchAtt() ([]FetchItem, error) {
	name := d.fetchName()
	simple := func(k FetchKind) ([]FetchItem, error) { return []FetchItem{{Kind: k}}, nil }
	switch name {
	case "ALL":
		return []FetchItem{{Kind: FetchFlags}, {Kind: FetchInternalDate}, {Kind: FetchRFC822Size}, {Kind: FetchEnvelope}}, nil
	case "FAST":
		return []FetchItem{{Kind: FetchFlags}, {Kind: FetchInternalDate}, {Kind: FetchRFC822Size}}, nil
	case "FULL":
		return []FetchItem{{Kind: FetchFlags}, {Kind: FetchInternalDate}, {Kind: FetchRFC822Size}, {Kind: FetchEnvelope}, {Kind: FetchBody}}, nil
	case "FLAGS":
		return simple(FetchFlags)
	case "UID":
		return simple(FetchUID)
	case "INTERNALDATE":
		return simple(FetchInternalDate)
	case "RFC822.SIZE":
		return simple(FetchRFC822Size)
	case "ENVELOPE":
		return simple(FetchEnvelope)
	case "BODYSTRUCTURE":
		return simple(FetchBodyStructure)
	case "MODSEQ":
		return simple(FetchModSeq)
	case "RFC822":
		return simple(FetchRFC822)
	case "RFC822.HEADER":
		return simple(FetchRFC822Header)
	case "RFC822.TEXT":
		return simple(FetchRFC822Text)
	case "BODY", "BODY.PEEK":
		if d.peek() != '[' {
			if name == "BODY.PEEK" {
				return nil, d.fail("BODY.PEEK needs a section.")
			}
			return simple(FetchBody)
		}
		sec, err := d.section(false)
		if err != nil {
			return nil, err
		}
		return []FetchItem{{Kind: FetchSection, Peek: name == "BODY.PEEK", Section: sec}}, nil
	case "BINARY", "BINARY.PEEK", "BINARY.SIZE":
		if d.peek() != '[' {
			return nil, d.fail("BINARY needs a section.")
		}
		sec, err := d.section(true)
		if err != nil {
			return nil, err
		}
		k := FetchBinary
		if name == "BINARY.SIZE" {
			k = FetchBinarySize
			if sec.Partial {
				return nil, d.fail("BINARY.SIZE takes no partial range.")
			}
		}
		return []FetchItem{{Kind: k, Peek: name == "BINARY.PEEK", Section: sec}}, nil
	}
	return nil, d.fail("Invalid fetch attribute.")
}

// section parses "[" section-spec "]" [partial]; binary sections take
// part numbers only (RFC 3516 §4.2).
func (d *Decoder) section(binary bool) (Section, error) {
	var s Section
	d.pos++ // '['
	for d.peek() >= '0' && d.peek() <= '9' {
		n, err := d.nzNumber()
		if err != nil {
			return s, err
		}
		if n > 100000 || len(s.Part) >= 100 {
			return s, d.fail("Invalid section.")
		}
		s.Part = append(s.Part, int(n))
		if d.peek() != '.' {
			break
		}
		d.pos++
		if c := d.peek(); c < '0' || c > '9' {
			break // a section-text follows
		}
	}
	if d.peek() != ']' {
		if binary {
			return s, d.fail("Invalid binary section.")
		}
		if len(s.Part) > 0 && d.line[d.pos-1] != '.' {
			return s, d.fail("Invalid section.")
		}
		spec := d.fetchName()
		switch spec {
		case "HEADER", "TEXT":
		case "MIME":
			if len(s.Part) == 0 {
				return s, d.fail("MIME needs a part number.")
			}
		case "HEADER.FIELDS", "HEADER.FIELDS.NOT":
			if err := d.sp(); err != nil {
				return s, err
			}
			err := d.list(false, func() error {
				f, err := d.astring()
				if err == nil && (f == "" || strings.ContainsAny(f, ": \t")) {
					return d.fail("Invalid header field name.")
				}
				s.Fields = append(s.Fields, f)
				return err
			})
			if err != nil {
				return s, err
			}
		default:
			return s, d.fail("Invalid section.")
		}
		s.Spec = spec
	} else if len(s.Part) > 0 && d.line[d.pos-1] == '.' {
		return s, d.fail("Invalid section.")
	}
	if d.peek() != ']' {
		return s, d.fail("Expected ']'.")
	}
	d.pos++
	if d.peek() == '<' {
		d.pos++
		off, err := d.number(1<<63 - 1)
		if err != nil {
			return s, err
		}
		if d.peek() != '.' {
			return s, d.fail("Invalid partial range.")
		}
		d.pos++
		cnt, err := d.number(1<<63 - 1)
		if err != nil {
			return s, err
		}
		if cnt == 0 {
			return s, d.fail("Partial count must not be zero.")
		}
		if d.peek() != '>' {
			return s, d.fail("Invalid partial range.")
		}
		d.pos++
		s.Partial, s.Offset, s.Count = true, off, cnt
	}
	return s, nil
}
