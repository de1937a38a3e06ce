package mime

import (
	"bytes"
	"sort"
	"strconv"
	"strings"
)

// Param is a Content-Type or Content-Disposition parameter as BODYSTRUCTURE
// lists it: RFC 2231 sections (name*0, name*1*, ...) are joined into one
// parameter, but the value is not decoded. A joined parameter that had
// extended sections is named "name*" and its value keeps the
// charset'language'%XX form; Part.Param decodes it.
type Param struct {
	Name, Value string
}

// param reads one ";" attribute "=" value (RFC 2045 §5.1).
func (l *lexer) param() (name, value []byte, r int) {
	if !l.more() {
		return nil, nil, 0
	}
	if l.s[l.i] != ';' {
		return nil, nil, -1
	}
	l.i++
	if l.skipCFWS() <= 0 {
		return nil, nil, -1
	}
	name, r = l.token(nil)
	if r <= 0 || l.s[l.i] != '=' {
		return nil, nil, -1
	}
	l.i++
	value = []byte{}
	switch r = l.skipCFWS(); {
	case r <= 0:
		// No value.
	case l.s[l.i] == '"':
		value, r = l.quoted(value)
	case l.s[l.i] == '=':
		// Unquoted RFC 2047 word (name==?utf-8?b?...?=) from broken
		// mailers: take it up to the next separator.
		start := l.i
		for l.i < len(l.s) && !bytes.ContainsRune([]byte("; \t\r\n"), rune(l.s[l.i])) {
			l.i++
		}
		value = append(value, l.s[start:l.i]...)
	default:
		value, r = l.token(value)
	}
	if r < 0 {
		return nil, nil, -1
	}
	return name, value, 1
}

// section is one RFC 2231 §3 parameter section.
type section struct {
	name     string // without the "*n*" suffix
	index    int
	extended bool // "*" after the index: the value is %-encoded
	value    string
}

// parseParams reads the parameters that follow a Content-Type or
// Content-Disposition value. Syntax errors skip to the next ";". At most
// MaxParams parameters (sections counted singly) are read; the rest are
// ignored, which bounds the sort below.
func parseParams(l *lexer, st *stats) []Param {
	var plain []Param
	var secs []section
	for n := 0; n < MaxParams; {
		name, value, r := l.param()
		if r == 0 {
			break
		}
		if r < 0 {
			if !l.more() {
				break
			}
			l.i++
			continue
		}
		n++
		if st != nil {
			st.params++
		}
		if s, ok := splitSection(string(name), string(value)); ok {
			secs = append(secs, s)
		} else {
			plain = append(plain, Param{string(name), string(value)})
		}
	}
	if len(secs) == 0 {
		return plain
	}
	return append(plain, joinSections(secs)...)
}

// splitSection recognises the RFC 2231 name*, name*n and name*n* forms.
func splitSection(name, value string) (section, bool) {
	star := strings.IndexByte(name, '*')
	if star < 0 {
		return section{}, false
	}
	s := section{name: name[:star], value: value}
	rest := name[star+1:]
	if rest == "" {
		// "name*=charset'lang'value": one extended section.
		s.extended = true
		return s, true
	}
	digits := 0
	for digits < len(rest) && rest[digits] >= '0' && rest[digits] <= '9' {
		digits++
	}
	if digits > 6 {
		// No real message has a million sections; keep it as written.
		return section{}, false
	}
	if digits > 0 {
		s.index, _ = strconv.Atoi(rest[:digits])
	}
	rest = rest[digits:]
	if strings.HasPrefix(rest, "*") {
		s.extended = true
		rest = rest[1:]
	}
	if rest != "" {
		return section{}, false
	}
	return s, true
}

// joinSections merges the sections of each parameter in index order (RFC
// 2231 §3: they may arrive in any order). A parameter with a missing or
// repeated index is listed section by section under its original names
// instead, since no joined value would be right.
func joinSections(secs []section) []Param {
	sort.SliceStable(secs, func(i, j int) bool {
		if c := compareFold(secs[i].name, secs[j].name); c != 0 {
			return c < 0
		}
		return secs[i].index < secs[j].index
	})
	var out []Param
	for i := 0; i < len(secs); {
		j, ok, ext := i, true, false
		for ; j < len(secs) && strings.EqualFold(secs[j].name, secs[i].name); j++ {
			if secs[j].index != j-i {
				ok = false
			}
			ext = ext || secs[j].extended
		}
		if !ok {
			for _, s := range secs[i:j] {
				n := s.name + "*" + strconv.Itoa(s.index)
				if s.extended {
					n += "*"
				}
				out = append(out, Param{n, s.value})
			}
			i = j
			continue
		}
		var v strings.Builder
		if ext && !secs[i].extended {
			// The charset'language' prefix belongs to the first
			// section (RFC 2231 §4); an unencoded first section has
			// none, so give it an empty one.
			v.WriteString("''")
		}
		for _, s := range secs[i:j] {
			if ext && !s.extended {
				// An unencoded section inside an encoded value:
				// keep it literal when the whole is %-decoded.
				v.WriteString(strings.ReplaceAll(s.value, "%", "%25"))
			} else {
				v.WriteString(s.value)
			}
		}
		name := secs[i].name
		if ext {
			name += "*"
		}
		out = append(out, Param{name, v.String()})
		i = j
	}
	return out
}

// compareFold compares ASCII strings ignoring case.
func compareFold(a, b string) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		ca, cb := lower(a[i]), lower(b[i])
		if ca != cb {
			if ca < cb {
				return -1
			}
			return 1
		}
	}
	return len(a) - len(b)
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// contentType is a parsed Content-Type field (RFC 2045 §5.1).
type contentType struct {
	typ, sub string
	params   []Param
}

// parseContentType parses a Content-Type value. A value without a valid
// type "/" subtype yields empty type and subtype and no parameters: the
// field is still there, it is just unusable, which is different from a
// missing field that would mean text/plain (RFC 2045 §5.2).
func parseContentType(v []byte, st *stats) contentType {
	l := lexer{s: v}
	if l.skipCFWS() <= 0 {
		return contentType{}
	}
	typ, r := l.token(nil)
	if r <= 0 || len(typ) == 0 || l.s[l.i] != '/' {
		return contentType{}
	}
	l.i++
	if l.skipCFWS() <= 0 {
		return contentType{}
	}
	sub, r := l.token(nil)
	if r < 0 {
		return contentType{}
	}
	return contentType{string(typ), string(sub), parseParams(&l, st)}
}

// parseDisposition parses a Content-Disposition value (RFC 2183).
func parseDisposition(v []byte, st *stats) (string, []Param, bool) {
	l := lexer{s: v}
	l.skipCFWS()
	d, r := l.token(nil)
	if r < 0 {
		return "", nil, false
	}
	return string(d), parseParams(&l, st), true
}

// parseEncoding parses a Content-Transfer-Encoding value (RFC 2045 §6.1): a
// single token and nothing else.
func parseEncoding(v []byte) (string, bool) {
	l := lexer{s: v}
	l.skipCFWS()
	e, r := l.token(nil)
	if r < 0 || l.skipCFWS() != 0 || len(e) == 0 {
		return "", false
	}
	return string(e), true
}

// parseLanguage parses a Content-Language value (RFC 3282 §2): a
// comma-separated list of tags.
func parseLanguage(v []byte) []string {
	l := lexer{s: v}
	l.skipCFWS()
	var tags []string
	for len(tags) < MaxParams {
		tag, r := l.atom(nil)
		if r < 0 {
			break
		}
		tags = append(tags, string(tag))
		if l.peek() != ',' {
			break
		}
		l.i++
		l.skipCFWS()
	}
	return tags
}
