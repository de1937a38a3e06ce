package auth

import (
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxUsernameLength bounds a login name: a local part of 64 octets, "@"
// and a domain of 255 (RFC 5321 §4.5.3.1.1-2). System user names are far
// shorter.
const MaxUsernameLength = 64 + 1 + 255

// ErrBadUsername is the reason a name is refused before any lookup.
var ErrBadUsername = errors.New("invalid user name")

// localSpecials are the ASCII characters besides letters and digits a
// local part or system user name may contain: RFC 5322 atext without "/"
// (the name may become a path) and "%" (Dovecot expands %-variables, the
// root of CVE-2017-2669), as package userdb allows for virtual users.
// Everything that could end a field in a log line or a filter expression
// ("(),<>[] :;" and blanks) is outside it, so a name can neither break
// out of "pam(NAME,IP)" nor "user=<NAME>" and make fail2ban ban someone
// else (HOSTILE 34).
const localSpecials = ".!#$&'*+=?^_`{|}~-"

// ValidUsername reports whether name may be looked up: a system user name
// or local@domain, valid UTF-8 without control characters, at most
// MaxUsernameLength bytes. The local part holds letters and digits (any
// script, for RFC 6531 addresses) and localSpecials; the domain is ASCII
// (A-labels). A leading "-" is refused (it reads as an option to any
// program that is handed the name), and so are leading, trailing and
// double dots.
func ValidUsername(name string) error {
	if name == "" || len(name) > MaxUsernameLength || !utf8.ValidString(name) {
		return ErrBadUsername
	}
	local, domain, hasAt := strings.Cut(name, "@")
	if local == "" || local[0] == '-' || !validDots(local) {
		return ErrBadUsername
	}
	for _, r := range local {
		switch {
		case r < utf8.RuneSelf:
			if !isAlnum(byte(r)) && !strings.ContainsRune(localSpecials, r) {
				return ErrBadUsername
			}
		case unicode.IsLetter(r) || unicode.IsMark(r) || unicode.IsDigit(r):
		default:
			return ErrBadUsername
		}
	}
	if !hasAt {
		return nil
	}
	if domain == "" || domain[0] == '-' || !validDots(domain) {
		return ErrBadUsername
	}
	for i := 0; i < len(domain); i++ {
		if c := domain[i]; !isAlnum(c) && c != '.' && c != '-' {
			return ErrBadUsername
		}
	}
	return nil
}

func validDots(s string) bool {
	return s[0] != '.' && s[len(s)-1] != '.' && !strings.Contains(s, "..")
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// maxLoggedName is how much of an invalid name a log line shows.
const maxLoggedName = 64

// logName returns name as it may appear in a log line: valid names as
// they are (ValidUsername keeps out every field separator), anything else
// with each byte outside letters, digits and "._-@" shown as "?".
func logName(name string) string {
	if ValidUsername(name) == nil {
		return name
	}
	var b strings.Builder
	for i := 0; i < len(name) && i < maxLoggedName; i++ {
		c := name[i]
		if isAlnum(c) || strings.IndexByte("._-@", c) >= 0 {
			b.WriteByte(c)
		} else {
			b.WriteByte('?')
		}
	}
	if len(name) > maxLoggedName {
		b.WriteString("...")
	}
	return b.String()
}
