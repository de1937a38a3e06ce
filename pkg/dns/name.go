package dns

import (
	"errors"
	"strings"

	"golang.org/x/net/idna"
)

// Name limits from RFC 1035 §2.3.4 (a name is at most 255 octets on the
// wire, which leaves 253 characters in text form without the final dot).
const (
	maxNameLen  = 253
	maxLabelLen = 63
)

var errBadName = errors.New("not a valid host name")

// ValidHostname reports whether name (with or without a final dot) is a
// host name we are willing to look up or connect to: ASCII letters, digits,
// '-' and '_' in labels of 1 to 63 characters, no label starting or ending
// with '-', at most 253 characters, and a last label that is not all
// digits (that would be an address in disguise). Every name taken from a
// DNS answer passes through here before it is used (a hostile server's
// names must not reach logs, commands or further queries unchecked).
func ValidHostname(name string) bool {
	name = strings.TrimSuffix(name, ".")
	if name == "" || len(name) > maxNameLen {
		return false
	}
	last := ""
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > maxLabelLen {
			return false
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
		last = label
	}
	return strings.Trim(last, "0123456789") != ""
}

// ToASCII returns the lower-case ASCII (A-label) form of a domain, so an
// internationalised domain of an SMTPUTF8 recipient (RFC 6531) can be
// looked up; it fails for names that are not valid host names.
func ToASCII(name string) (string, error) {
	name = strings.TrimSuffix(name, ".")
	ascii := true
	for i := 0; i < len(name); i++ {
		if name[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if !ascii {
		a, err := idna.Lookup.ToASCII(name)
		if err != nil {
			return "", errBadName
		}
		name = a
	}
	if !ValidHostname(name) {
		return "", errBadName
	}
	return strings.ToLower(name), nil
}
