package server

import (
	"strings"
	"unicode/utf8"

	"github.com/posthorn/posthorn/pkg/imap"
	"github.com/posthorn/posthorn/pkg/imap/utf7"
)

// Mailbox names: the client sends modified UTF-7 (RFC 3501 §5.1.3) or,
// after ENABLE IMAP4rev2 / UTF8=ACCEPT, UTF-8 (RFC 9051 §5.1, RFC 6855
// §3). The store always sees UTF-8. The engine refuses anything that could
// act as a path or fool a store's checks (HOSTILE 42, 43); the store still
// applies its own layout's rules.

const (
	maxNameLen   = 1024 // octets, UTF-8
	maxNameLevel = 255  // octets per hierarchy level, a file name's limit
	maxNameDepth = 32
)

// nameError is a refused mailbox name; Text goes to the client.
type nameError struct{ Text string }

func (e *nameError) Error() string { return e.Text }

// decodeName turns a mailbox argument into a UTF-8 name with INBOX in
// canonical case, without validating its structure.
func (s *session) decodeName(raw string) (string, error) {
	var name string
	if s.utf8Names() {
		if !utf8.ValidString(raw) {
			return "", &nameError{"Mailbox name is not valid UTF-8."}
		}
		name = raw
	} else {
		var err error
		if name, err = utf7.Decode(raw); err != nil {
			return "", &nameError{"Mailbox name is not valid mUTF-7."}
		}
	}
	return s.canonInbox(name), nil
}

// canonInbox spells INBOX, and INBOX as the first level, in upper case:
// INBOX is case-insensitive (RFC 3501 §5.1).
func (s *session) canonInbox(name string) string {
	if imap.IsInbox(name) {
		return imap.Inbox
	}
	if s.user != nil {
		d := string(s.user.Delimiter())
		if len(name) > 6 && imap.IsInbox(name[:5]) && name[5:5+len(d)] == d {
			return imap.Inbox + name[5:]
		}
	}
	return name
}

// checkName validates a UTF-8 mailbox name's structure.
func checkName(name string, delim rune) error {
	if name == "" {
		return &nameError{"Empty mailbox name."}
	}
	if len(name) > maxNameLen {
		return &nameError{"Mailbox name too long."}
	}
	if !utf8.ValidString(name) {
		return &nameError{"Mailbox name is not valid UTF-8."}
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == 0x2028 || r == 0x2029 {
			return &nameError{"Mailbox name contains control characters."}
		}
	}
	switch name[0] {
	case '~':
		return &nameError{"Mailbox name must not begin with '~'."}
	case '#':
		return &nameError{"Mailbox name must not begin with '#'."}
	}
	if delim != '/' && strings.ContainsRune(name, '/') {
		return &nameError{"Name must not have '/' characters."}
	}
	levels := strings.Split(name, string(delim))
	if len(levels) > maxNameDepth {
		return &nameError{"Mailbox name has too many hierarchy levels."}
	}
	for _, l := range levels {
		switch {
		case l == "":
			return &nameError{"Name has an empty hierarchy level."}
		case l == "." || l == "..":
			return &nameError{"Name must not have '.' or '..' as a hierarchy level."}
		case len(l) > maxNameLevel:
			return &nameError{"Mailbox name hierarchy level too long."}
		}
	}
	return nil
}

// mailboxName decodes and validates a mailbox argument; on failure it has
// answered NO and returns ok=false.
func (s *session) mailboxName(tag, raw string) (string, bool) {
	name, err := s.decodeName(raw)
	if err == nil {
		err = checkName(name, s.user.Delimiter())
	}
	if err != nil {
		s.reply(tag, "NO", "[CANNOT] Invalid mailbox name: "+err.Error())
		return "", false
	}
	return name, true
}

// writeName writes a mailbox name as the client expects it.
func (s *session) writeName(name string) {
	if s.utf8Names() {
		s.out.AString(name)
		return
	}
	enc, err := utf7.Encode(name)
	if err != nil {
		// The store gave an invalid name; it cannot be expressed.
		enc = strings.ToValidUTF8(name, "?")
		enc, _ = utf7.Encode(enc)
	}
	s.out.AString(enc)
}
