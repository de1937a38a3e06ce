package maildir

import (
	"strings"
	"unicode/utf8"
)

// maxNameLen is NAME_MAX on Linux: no longer name can be a file in cur/.
const maxNameLen = 255

// ParseName splits a file name from cur/ or new/ into its unique base, the
// S= (physical) and W= (CRLF) sizes and the flag letters after ":2,"
// (COMPAT §2). A size that is absent is -1: the reader must stat or scan.
//
// The name comes from a folder anyone with access to the mailbox could have
// written to, so it is validated before it is used (HOSTILE 54): ok is false
// for names that are empty, longer than 255 bytes, start with ".", contain
// "/", control characters or invalid UTF-8, have info other than ":2,", flag
// characters other than ASCII letters, or malformed or repeated S=/W=.
// Anything after a further "," in the info is kept by Dovecot and ignored
// here.
func ParseName(name string) (base string, size, vsize int64, flags string, ok bool) {
	size, vsize = -1, -1
	if name == "" || len(name) > maxNameLen || name[0] == '.' || !utf8.ValidString(name) {
		return "", -1, -1, "", false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 0x20 || c == 0x7f || c == '/' {
			return "", -1, -1, "", false
		}
	}
	uniq, info, hasInfo := strings.Cut(name, ":")
	if hasInfo {
		rest, found := strings.CutPrefix(info, "2,")
		if !found {
			return "", -1, -1, "", false
		}
		flags, _, _ = strings.Cut(rest, ",")
		for i := 0; i < len(flags); i++ {
			if c := flags[i]; !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z') {
				return "", -1, -1, "", false
			}
		}
	}
	base, exts, _ := strings.Cut(uniq, ",")
	if base == "" {
		return "", -1, -1, "", false
	}
	for exts != "" {
		var ext string
		ext, exts, _ = strings.Cut(exts, ",")
		var dst *int64
		switch {
		case strings.HasPrefix(ext, "S="):
			dst = &size
		case strings.HasPrefix(ext, "W="):
			dst = &vsize
		default:
			continue // other extensions are not ours to judge
		}
		v, good := parseSize(ext[2:])
		if !good || *dst >= 0 {
			return "", -1, -1, "", false
		}
		*dst = v
	}
	return base, size, vsize, flags, true
}

// parseSize accepts plain decimal digits, at most 18 of them so the value
// cannot overflow int64.
func parseSize(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var v int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	return v, true
}
