package mailbox

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Mailbox names. The IMAP layer hands the store UTF-8 names (IMAP4rev2, or
// IMAP4rev1 names after DecodeUTF7) with "." as the hierarchy separator, as
// Dovecot's default Maildir++ namespace has it. On disk Dovecot keeps the
// name in modified UTF-7 (mailbox_list_utf8 = no): the folder "Entwürfe.2026"
// is the directory ".Entw&APw-rfe.2026" under the Maildir root, INBOX is the
// root itself, and "INBOX.x" is ".INBOX.x" (mailbox-list-maildir.c).

// Sep is the hierarchy separator of a Maildir++ store.
const Sep = '.'

// Inbox is the one name IMAP compares without regard to case (RFC 3501
// §5.1).
const Inbox = "INBOX"

// maxStorageName keeps "." + the on-disk name within NAME_MAX (255).
const maxStorageName = 254

// maxNameLevels bounds the hierarchy depth, as Dovecot's
// MAILBOX_MAX_HIERARCHY_LEVELS does.
const maxNameLevels = 16

// ErrBadName is wrapped by every name validation error.
var ErrBadName = errors.New("mailbox: invalid mailbox name")

// internalNames are directory names with a meaning inside a Maildir; a
// mailbox called that could be confused with them under LAYOUT=fs and is
// refused, as Dovecot's is_internal_name does (HOSTILE 42).
var internalNames = map[string]bool{"cur": true, "new": true, "tmp": true}

func badName(name, why string) error {
	return fmt.Errorf("%w %q: %s", ErrBadName, name, why)
}

// NormalizeName returns name with INBOX spelled in capitals when name is
// INBOX in any case; other names are returned unchanged.
func NormalizeName(name string) string {
	if strings.EqualFold(name, Inbox) {
		return Inbox
	}
	return name
}

// ValidateName checks a UTF-8 mailbox name (HOSTILE 42) and returns it
// normalized. It refuses empty names and components ("a..b", ".a", "a."),
// "/", a leading "~" or "#", control characters, invalid or non-NFC UTF-8,
// components named cur, new or tmp, more than 16 levels, and names whose
// on-disk form would not fit in one directory name. forCreate also refuses
// the LIST wildcards "*" and "%", which Dovecot does not let a client create.
func ValidateName(name string, forCreate bool) (string, error) {
	name = NormalizeName(name)
	if name == "" {
		return "", badName(name, "empty")
	}
	if !utf8.ValidString(name) {
		return "", badName(name, "not UTF-8")
	}
	switch name[0] {
	case '~':
		return "", badName(name, "starts with ~")
	case '#':
		return "", badName(name, "starts with # (namespace prefix)")
	}
	prev := rune(-1)
	for _, r := range name {
		switch {
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
			return "", badName(name, "control character")
		case r == '/':
			return "", badName(name, `contains "/"`)
		case forCreate && (r == '*' || r == '%'):
			return "", badName(name, "contains a LIST wildcard")
		case unicode.Is(unicode.Mn, r) && composes(prev, r):
			return "", badName(name, "not in Unicode NFC")
		}
		prev = r
	}
	comps := strings.Split(name, string(Sep))
	if len(comps) > maxNameLevels {
		return "", badName(name, "too many hierarchy levels")
	}
	for _, c := range comps {
		if c == "" {
			return "", badName(name, "empty hierarchy level")
		}
		if internalNames[c] {
			return "", badName(name, "level named like a Maildir directory")
		}
	}
	if name != Inbox {
		st, _ := EncodeUTF7(name)
		if len(st) > maxStorageName {
			return "", badName(name, "too long")
		}
	}
	return name, nil
}

// composes reports whether base followed by the combining mark m has a
// precomposed form, that is, whether the pair is not NFC. The standard
// library has no normalization tables, so this is deliberately narrow: the
// common diacritics U+0300–U+0327 after an ASCII letter, the pairs that
// Latin-1 and Latin Extended-A precompose. Other non-NFC input passes.
func composes(base, m rune) bool {
	if base < 0 || base > 0x7f || !unicode.IsLetter(base) {
		return false
	}
	return m >= 0x300 && m <= 0x327
}

// storageName is the on-disk (modified UTF-7) form of a valid name.
func storageName(name string) string {
	s, _ := EncodeUTF7(name)
	return s
}

// folderDir is the directory of a valid name relative to the Maildir root:
// "." for INBOX, ".<storage name>" otherwise.
func folderDir(name string) string {
	if name == Inbox {
		return "."
	}
	return "." + storageName(name)
}

// nameFromDir turns a directory entry of the Maildir root into a mailbox
// name, or "" when the entry is not a folder posthorn shows: not starting
// with ".", ".", "..", Dovecot's "..DOVECOT-TRASHED", names that are not
// canonical modified UTF-7 or not valid names (HOSTILE 53, 54), and
// ".INBOX", which would alias INBOX.
func nameFromDir(entry string) string {
	if len(entry) < 2 || entry[0] != '.' || len(entry) > maxStorageName+1 {
		return ""
	}
	name, err := DecodeUTF7(entry[1:])
	if err != nil {
		return ""
	}
	if strings.EqualFold(name, Inbox) {
		return ""
	}
	v, err := ValidateName(name, false)
	if err != nil || v != name {
		return ""
	}
	return name
}

// parentName is the name one level up, or "" at the top.
func parentName(name string) string {
	i := strings.LastIndexByte(name, Sep)
	if i < 0 {
		return ""
	}
	return name[:i]
}
