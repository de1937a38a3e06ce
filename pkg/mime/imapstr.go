package mime

import (
	"strconv"
	"strings"
)

// appendString writes s as an IMAP string (RFC 3501 §4.3): quoted when it
// can be, else as a literal. A literal is used for CR, LF and 8-bit octets,
// which a quoted string cannot carry in IMAP4rev1, and when more than four
// characters would need escaping, where the literal is no longer than the
// quoted form.
func appendString(b []byte, s string) []byte {
	specials := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			if specials++; specials > 4 {
				return appendLiteral(b, s)
			}
		case c == '\r' || c == '\n' || c >= 0x80 || c == 0:
			return appendLiteral(b, s)
		}
	}
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return append(b, '"')
}

func appendLiteral(b []byte, s string) []byte {
	if strings.IndexByte(s, 0) >= 0 {
		// Not even a literal may hold NUL (RFC 3501 §9 CHAR8).
		s = strings.ReplaceAll(s, "\x00", "\uFFFD")
	}
	b = append(b, '{')
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, "}\r\n"...)
	return append(b, s...)
}

// appendNStringNoLF writes an nstring from a header value, unfolding it:
// a line break before white space is removed, any other becomes a space.
func appendNStringNoLF(b []byte, s *string) []byte {
	if s == nil {
		return append(b, "NIL"...)
	}
	v := *s
	fold := false
	for i := 0; i < len(v); i++ {
		if v[i] == '\r' || v[i] == '\n' {
			fold = true
			break
		}
	}
	if !fold {
		return appendString(b, v)
	}
	out := make([]byte, 0, len(v))
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c != '\r' && c != '\n' {
			out = append(out, c)
			continue
		}
		if i+1 < len(v) && v[i+1] != ' ' && v[i+1] != '\t' {
			out = append(out, ' ')
		}
	}
	return appendString(b, string(out))
}

// appendHuman writes text meant for people (the subject and display names)
// the way Dovecot does: runs of white space and line breaks become one
// space, leading and trailing ones are dropped, and whatever then differs
// from the original, or holds '"', '\' or 8-bit octets, is sent as a
// literal.
func appendHuman(b []byte, s string) []byte {
	clean := true
	space := true // at the start, white space is dropped
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case ' ':
			if space {
				clean = false
			}
			space = true
		case '\t', '\r', '\n':
			clean = false
			space = true
		case '"', '\\', 0:
			clean = false
			space = false
		default:
			if c >= 0x80 {
				clean = false
			}
			space = false
		}
	}
	if space && len(s) > 0 {
		clean = false
	}
	if clean {
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	out := make([]byte, 0, len(s))
	space = true
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case ' ', '\t', '\r', '\n':
			space = true
		default:
			if space && len(out) > 0 {
				out = append(out, ' ')
			}
			space = false
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return append(b, `""`...)
	}
	return appendLiteral(b, string(out))
}
