package server

import (
	"errors"
	"strings"
	"unicode/utf8"
)

// Limits of RFC 3461 on decoded parameter values.
const (
	// MaxEnvIDLen is the longest ENVID (RFC 3461 §4.4: "MUST NOT exceed
	// 100 characters").
	MaxEnvIDLen = 100
	// MaxORCPTLen is the longest ORCPT address (RFC 3461 §4.2: "MUST NOT
	// exceed 500 characters").
	MaxORCPTLen = 500
)

var (
	errXtext   = errors.New("bad xtext")
	errControl = errors.New("control character in parameter")
)

// DecodeXtext decodes xtext (RFC 3461 §4):
//
//	xtext   = *( xchar / hexchar )
//	xchar   = any ASCII CHAR between "!" (33) and "~" (126) inclusive,
//	          except for "+" and "="
//	hexchar = "+" 2(HEXDIG)
//
// The RFC asks for upper-case hex digits; lower case is accepted too, since
// refusing it would protect nothing. Whatever the encoding hides, a decoded
// value with a control character (CR, LF, NUL, DEL and the rest of C0) is an
// error: such a value must never reach a queue file record, a log line or a
// DSN header (HOSTILE 28, Exim CVE-2020-28021 and CVE-2020-28026).
// Octets above 127 decode as they are; callers that need ASCII check.
func DecodeXtext(s string) (string, error) {
	if strings.IndexByte(s, '+') < 0 {
		for i := 0; i < len(s); i++ {
			if c := s[i]; c < '!' || c > '~' || c == '=' {
				return "", errXtext
			}
		}
		return s, nil
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '+':
			if i+2 >= len(s) {
				return "", errXtext
			}
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if !ok1 || !ok2 {
				return "", errXtext
			}
			d := hi<<4 | lo
			if d < 0x20 || d == 0x7f {
				return "", errControl
			}
			b = append(b, d)
			i += 2
		case c < '!' || c > '~' || c == '=':
			return "", errXtext
		default:
			b = append(b, c)
		}
	}
	return string(b), nil
}

// EncodeXtext is the inverse of DecodeXtext, for passing a value on to
// another MTA: "+", "=" and every octet outside "!".."~" become "+XX".
func EncodeXtext(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '!' || c > '~' || c == '+' || c == '=' {
			b.WriteByte('+')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// printableASCII reports whether s is made of octets 0x20..0x7E only.
func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// ParseRet parses the value of RET= (RFC 3461 §4.3): FULL or HDRS, in any
// case, returned upper-case.
func ParseRet(v string) (string, bool) {
	switch u := upperASCII(v); u {
	case "FULL", "HDRS":
		return u, true
	}
	return "", false
}

// ParseEnvID decodes ENVID= (RFC 3461 §4.4): xtext whose decoded value is
// printable US-ASCII of at most MaxEnvIDLen characters.
func ParseEnvID(v string) (string, bool) {
	d, err := DecodeXtext(v)
	if err != nil || d == "" || len(d) > MaxEnvIDLen || !printableASCII(d) {
		return "", false
	}
	return d, true
}

// notifyOrder is the canonical order of NOTIFY keywords.
var notifyOrder = []string{"SUCCESS", "FAILURE", "DELAY"}

// ParseNotify parses NOTIFY= (RFC 3461 §4.1):
//
//	notify-esmtp-value = "NEVER" / 1#notify-list-element
//	notify-list-element = "SUCCESS" / "FAILURE" / "DELAY"
//
// Keywords are case-insensitive; NEVER stands alone and no keyword may
// repeat. The result is "NEVER" or the keywords given, upper-case, in the
// order SUCCESS, FAILURE, DELAY, joined by commas.
func ParseNotify(v string) (string, bool) {
	if upperASCII(v) == "NEVER" {
		return "NEVER", true
	}
	seen := map[string]bool{}
	for _, k := range strings.Split(v, ",") {
		k = upperASCII(k)
		switch k {
		case "SUCCESS", "FAILURE", "DELAY":
		default:
			return "", false
		}
		if seen[k] {
			return "", false
		}
		seen[k] = true
	}
	var out []string
	for _, k := range notifyOrder {
		if seen[k] {
			out = append(out, k)
		}
	}
	return strings.Join(out, ","), true
}

// ParseORCPT parses ORCPT= (RFC 3461 §4.2), "addr-type ; xtext", into
// "addr-type;address" with the address decoded and the type lower-cased.
// addr-type is an atom; the address must not be empty, must fit
// MaxORCPTLen, and must be printable ASCII, except that the "utf-8" type
// (RFC 6533) may carry UTF-8.
func ParseORCPT(v string) (string, bool) {
	typ, addr, ok := strings.Cut(v, ";")
	if !ok || typ == "" || len(typ) > 64 {
		return "", false
	}
	for i := 0; i < len(typ); i++ {
		// atom (RFC 5322 §3.2.3), which never holds ";" or blanks.
		c := typ[i]
		if !isAlnum(c) && strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) < 0 {
			return "", false
		}
	}
	typ = strings.ToLower(typ)
	d, err := DecodeXtext(addr)
	if err != nil || d == "" || len(d) > MaxORCPTLen {
		return "", false
	}
	if !printableASCII(d) {
		if typ != "utf-8" || !utf8.ValidString(d) {
			return "", false
		}
	}
	return typ + ";" + d, true
}
