package mime

import (
	"fmt"
	"strconv"
	"strings"
)

// sexp is a parsed IMAP value: a string (str set), NIL, a number or a list.
type sexp struct {
	list  []sexp
	isLst bool
	str   string
	isStr bool
	num   int64
	isNum bool
	isNil bool
}

// parseSexp parses one IMAP value, checking the lexical rules of RFC 3501
// §4 (quoted strings hold 7-bit text without CR and LF, literals have the
// announced length), and requires nothing after it.
func parseSexp(s string) (sexp, error) {
	v, rest, err := parseValue(s, 0)
	if err != nil {
		return v, err
	}
	if rest != "" {
		return v, fmt.Errorf("trailing %q", rest)
	}
	return v, nil
}

func parseValue(s string, depth int) (sexp, string, error) {
	if depth > 4*MaxDepth+10 {
		return sexp{}, "", fmt.Errorf("too deep")
	}
	if s == "" {
		return sexp{}, "", fmt.Errorf("value expected")
	}
	switch c := s[0]; {
	case c == '(':
		v := sexp{isLst: true}
		s = s[1:]
		for {
			if s == "" {
				return v, "", fmt.Errorf("unbalanced (")
			}
			if s[0] == ')' {
				return v, s[1:], nil
			}
			if len(v.list) > 0 {
				// Lists of bodies are written without spaces.
				if s[0] == ' ' {
					s = s[1:]
				} else if s[0] != '(' || !v.list[len(v.list)-1].isLst {
					return v, "", fmt.Errorf("space expected at %.20q", s)
				}
			}
			e, rest, err := parseValue(s, depth+1)
			if err != nil {
				return v, "", err
			}
			v.list = append(v.list, e)
			s = rest
		}
	case c == '"':
		var b strings.Builder
		for i := 1; i < len(s); i++ {
			switch d := s[i]; {
			case d == '"':
				return sexp{isStr: true, str: b.String()}, s[i+1:], nil
			case d == '\\':
				i++
				if i >= len(s) || s[i] != '"' && s[i] != '\\' {
					return sexp{}, "", fmt.Errorf("bad escape")
				}
				b.WriteByte(s[i])
			case d == '\r' || d == '\n' || d == 0 || d >= 0x80:
				return sexp{}, "", fmt.Errorf("%q in quoted string", d)
			default:
				b.WriteByte(d)
			}
		}
		return sexp{}, "", fmt.Errorf("unterminated quoted string")
	case c == '{':
		end := strings.Index(s, "}\r\n")
		if end < 0 {
			return sexp{}, "", fmt.Errorf("bad literal")
		}
		n, err := strconv.Atoi(s[1:end])
		if err != nil || n < 0 || end+3+n > len(s) {
			return sexp{}, "", fmt.Errorf("bad literal length")
		}
		lit := s[end+3 : end+3+n]
		if strings.IndexByte(lit, 0) >= 0 {
			return sexp{}, "", fmt.Errorf("NUL in literal")
		}
		return sexp{isStr: true, str: lit}, s[end+3+n:], nil
	case strings.HasPrefix(s, "NIL"):
		return sexp{isNil: true}, s[3:], nil
	case c >= '0' && c <= '9':
		i := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		n, err := strconv.ParseInt(s[:i], 10, 64)
		return sexp{isNum: true, num: n}, s[i:], err
	}
	return sexp{}, "", fmt.Errorf("unexpected %.20q", s)
}

func (v sexp) nstring() bool { return v.isNil || v.isStr }

// checkEnvelope checks RFC 3501 §9 envelope.
func checkEnvelope(v sexp) error {
	if !v.isLst || len(v.list) != 10 {
		return fmt.Errorf("envelope of %d items", len(v.list))
	}
	for i, e := range v.list {
		switch i {
		case 0, 1, 8, 9:
			if !e.nstring() {
				return fmt.Errorf("envelope item %d not an nstring", i)
			}
		default:
			if e.isNil {
				continue
			}
			if !e.isLst || len(e.list) == 0 {
				return fmt.Errorf("envelope item %d not an address list", i)
			}
			for _, a := range e.list {
				if !a.isLst || len(a.list) != 4 {
					return fmt.Errorf("bad address")
				}
				for _, f := range a.list {
					if !f.nstring() {
						return fmt.Errorf("bad address field")
					}
				}
			}
		}
	}
	return nil
}

func checkParams(v sexp) error {
	if v.isNil {
		return nil
	}
	if !v.isLst || len(v.list) == 0 || len(v.list)%2 != 0 {
		return fmt.Errorf("bad body-fld-param")
	}
	for _, e := range v.list {
		if !e.isStr {
			return fmt.Errorf("bad parameter")
		}
	}
	return nil
}

// checkExt checks body-fld-dsp SP body-fld-lang SP body-fld-loc.
func checkExt(l []sexp) error {
	if len(l) != 3 {
		return fmt.Errorf("%d extension items", len(l))
	}
	if d := l[0]; !d.isNil && (!d.isLst || len(d.list) != 2 || !d.list[0].isStr || checkParams(d.list[1]) != nil) {
		return fmt.Errorf("bad body-fld-dsp")
	}
	if g := l[1]; !g.isNil && !g.isStr {
		if !g.isLst || len(g.list) == 0 {
			return fmt.Errorf("bad body-fld-lang")
		}
		for _, e := range g.list {
			if !e.isStr {
				return fmt.Errorf("bad language")
			}
		}
	}
	if !l[2].nstring() {
		return fmt.Errorf("bad body-fld-loc")
	}
	return nil
}

// checkBody checks RFC 3501 §9 body (RFC 9051 adds message/global), with
// or without the extension data of BODYSTRUCTURE. It returns the number of
// parts.
func checkBody(v sexp, ext bool) (int, error) {
	if !v.isLst || len(v.list) == 0 {
		return 0, fmt.Errorf("body is not a list")
	}
	l := v.list
	if l[0].isLst {
		parts := 1
		i := 0
		for i < len(l) && l[i].isLst {
			n, err := checkBody(l[i], ext)
			if err != nil {
				return 0, err
			}
			parts += n
			i++
		}
		if i >= len(l) || !l[i].isStr {
			return 0, fmt.Errorf("multipart without subtype")
		}
		rest := l[i+1:]
		if !ext {
			if len(rest) != 0 {
				return 0, fmt.Errorf("extension data in BODY")
			}
			return parts, nil
		}
		if len(rest) != 4 {
			return 0, fmt.Errorf("multipart extension of %d items", len(rest))
		}
		if err := checkParams(rest[0]); err != nil {
			return 0, err
		}
		return parts, checkExt(rest[1:])
	}
	if len(l) < 7 {
		return 0, fmt.Errorf("body-fields too short")
	}
	if !l[0].isStr || !l[1].isStr || !l[2].isNil && checkParams(l[2]) != nil ||
		!l[3].nstring() || !l[4].nstring() || !l[5].isStr || !l[6].isNum {
		return 0, fmt.Errorf("bad body-fields")
	}
	parts := 1
	rest := l[7:]
	typ, sub := strings.ToLower(l[0].str), strings.ToLower(l[1].str)
	switch {
	case typ == "message" && (sub == "rfc822" || sub == "global"):
		if len(rest) < 3 {
			return 0, fmt.Errorf("message part too short")
		}
		if err := checkEnvelope(rest[0]); err != nil {
			return 0, err
		}
		n, err := checkBody(rest[1], ext)
		if err != nil {
			return 0, err
		}
		parts += n
		if !rest[2].isNum {
			return 0, fmt.Errorf("no line count")
		}
		rest = rest[3:]
	case typ == "text":
		if len(rest) < 1 || !rest[0].isNum {
			return 0, fmt.Errorf("text without line count")
		}
		rest = rest[1:]
	}
	if !ext {
		if len(rest) != 0 {
			return 0, fmt.Errorf("extension data in BODY")
		}
		return parts, nil
	}
	if len(rest) != 4 || !rest[0].nstring() {
		return 0, fmt.Errorf("1part extension of %d items", len(rest))
	}
	return parts, checkExt(rest[1:])
}

// checkResponses parses and checks ENVELOPE, BODY and BODYSTRUCTURE of p.
func checkResponses(p *Part) error {
	env, err := parseSexp(p.Envelope())
	if err != nil {
		return fmt.Errorf("ENVELOPE: %v", err)
	}
	if err := checkEnvelope(env); err != nil {
		return fmt.Errorf("ENVELOPE: %v", err)
	}
	for _, ext := range []bool{false, true} {
		bs, err := parseSexp(p.BodyStructure(ext))
		if err != nil {
			return fmt.Errorf("BODYSTRUCTURE(%v): %v", ext, err)
		}
		if _, err := checkBody(bs, ext); err != nil {
			return fmt.Errorf("BODYSTRUCTURE(%v): %v", ext, err)
		}
	}
	return nil
}

// checkOffsets checks that every position reported lies within the
// message and within the part's parent, and that sizes add up.
func checkOffsets(root *Part, size int64) error {
	var err error
	root.Walk(func(p *Part) bool {
		switch {
		case p.Offset < 0 || p.HeaderLen < 0 || p.BodyLen < 0:
			err = fmt.Errorf("negative position")
		case p.BodyOffset != p.Offset+p.HeaderLen || p.BodyOffset+p.BodyLen > size:
			err = fmt.Errorf("part outside the message")
		case p.HeaderSize < p.HeaderLen || p.BodySize < p.BodyLen ||
			p.HeaderSize > 2*p.HeaderLen || p.BodySize > 2*p.BodyLen || p.Lines > p.BodySize:
			err = fmt.Errorf("sizes do not match lengths")
		case p.Parent != nil && (p.Offset < p.Parent.BodyOffset ||
			p.BodyOffset+p.BodyLen > p.Parent.BodyOffset+p.Parent.BodyLen):
			err = fmt.Errorf("part outside its parent")
		case p.Message != nil && (p.Message.Offset != p.BodyOffset || p.Message.Size() != p.BodySize):
			err = fmt.Errorf("message is not the body of its part")
		}
		return err == nil
	})
	if err == nil && root.Offset+root.HeaderLen+root.BodyLen != size {
		err = fmt.Errorf("message does not span the input")
	}
	return err
}
