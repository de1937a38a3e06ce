package mailbox

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// IMAP system flags (RFC 3501 §2.3.2) and their Maildir info letters.
const (
	FlagSeen     = `\Seen`
	FlagAnswered = `\Answered`
	FlagFlagged  = `\Flagged`
	FlagDeleted  = `\Deleted`
	FlagDraft    = `\Draft`
	// FlagRecent is session state (RFC 3501); it is never stored.
	FlagRecent = `\Recent`
)

const (
	sysDraft uint8 = 1 << iota
	sysFlagged
	sysAnswered
	sysSeen
	sysDeleted
)

// sysLetters is in ASCII order, the order of letters in a file name.
var sysLetters = [...]struct {
	bit    uint8
	letter byte
	name   string
}{
	{sysDraft, 'D', FlagDraft},
	{sysFlagged, 'F', FlagFlagged},
	{sysAnswered, 'R', FlagAnswered},
	{sysSeen, 'S', FlagSeen},
	{sysDeleted, 'T', FlagDeleted},
}

const (
	maxLetterKeywords = 26 // a..z (MAILDIR_MAX_KEYWORDS)
	// MaxKeywords bounds the keywords one mailbox may define; the 27th and
	// later live only in posthorn.index, as in Dovecot's index.
	MaxKeywords = 256
	// MaxKeywordLen bounds one keyword.
	MaxKeywordLen = 128
)

// validKeyword reports whether k is an IMAP flag-keyword: an atom
// (RFC 3501 §9) not starting with "\".
func validKeyword(k string) bool {
	if k == "" || len(k) > MaxKeywordLen {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c <= 0x20 || c >= 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			return false
		}
	}
	return true
}

// splitFlags separates system flags (as a bit set) from keywords. Flag
// names are matched without regard to case; \Recent is ignored since it
// cannot be stored (RFC 3501 §6.4.6).
func splitFlags(flags []string) (sys uint8, kws []string, err error) {
	for _, f := range flags {
		if strings.HasPrefix(f, `\`) {
			found := false
			for _, s := range sysLetters {
				if strings.EqualFold(f, s.name) {
					sys |= s.bit
					found = true
				}
			}
			if !found && !strings.EqualFold(f, FlagRecent) {
				return 0, nil, fmt.Errorf("mailbox: unknown system flag %q", f)
			}
			continue
		}
		if !validKeyword(f) {
			return 0, nil, fmt.Errorf("mailbox: invalid keyword %q", trunc(f))
		}
		if !slices.ContainsFunc(kws, func(k string) bool { return strings.EqualFold(k, f) }) {
			kws = append(kws, f)
		}
	}
	return sys, kws, nil
}

// infoFlags splits the flag part of a file name's ":2," info into system
// flags and keyword letters. Other letters are ignored here (and kept on
// rename).
func infoFlags(name string) (sys uint8, letters string) {
	_, info, ok := strings.Cut(name, ":2,")
	if !ok {
		return 0, ""
	}
	info, _, _ = strings.Cut(info, ",")
	var lb []byte
	for i := 0; i < len(info); i++ {
		c := info[i]
		switch {
		case c >= 'a' && c <= 'z':
			lb = append(lb, c)
		default:
			for _, s := range sysLetters {
				if s.letter == c {
					sys |= s.bit
				}
			}
		}
	}
	return sys, string(lb)
}

// withFlags returns name with its info set to the given system flags and
// keyword letters, the way Dovecot's maildir_filename_set_flags does it:
// known letters are replaced, unknown ones stay where they were, the
// result is in ASCII order, and anything after a further "," is kept.
func withFlags(name string, sys uint8, letters string) string {
	base, info, _ := strings.Cut(name, ":")
	old := ""
	tail := ""
	if rest, ok := strings.CutPrefix(info, "2,"); ok {
		old = rest
		if i := strings.IndexByte(old, ','); i >= 0 {
			old, tail = old[:i], old[i:]
		}
	}
	kw := []byte(letters)
	slices.Sort(kw)
	kw = slices.Compact(kw)
	var b bytes.Buffer
	b.WriteString(base)
	b.WriteString(":2,")
	left := sys
	emit := func(next int) {
		for _, s := range sysLetters {
			if left&s.bit != 0 && next > int(s.letter) {
				b.WriteByte(s.letter)
				left &^= s.bit
			}
		}
		if kw != nil && next > 'a' {
			b.Write(kw)
			kw = nil
		}
	}
	for i := 0; i < len(old); i++ {
		c := old[i]
		if c == 'D' || c == 'F' || c == 'R' || c == 'S' || c == 'T' || (c >= 'a' && c <= 'z') {
			continue
		}
		emit(int(c))
		b.WriteByte(c)
	}
	emit(256)
	b.WriteString(tail)
	return b.String()
}

// dovecot-keywords (maildir-keywords.c): "<index> <name>" lines, index 0
// being letter "a"; at most 26. Names are looked up without regard to case.
// It is written under the uidlist lock through "dovecot-keywords.lock",
// fsynced and renamed into place, its mtime always growing.

const keywordsFile = "dovecot-keywords"

type keywordTable [maxLetterKeywords]string

// parseKeywords ignores malformed lines, as Dovecot does.
func parseKeywords(data []byte) (t keywordTable) {
	for _, line := range strings.Split(string(data), "\n") {
		num, name, ok := strings.Cut(line, " ")
		if !ok || name == "" {
			continue
		}
		i, err := strconv.Atoi(num)
		if err != nil || i < 0 || i >= maxLetterKeywords || !validKeyword(name) {
			continue
		}
		t[i] = name
	}
	return t
}

func (t *keywordTable) marshal() []byte {
	var b []byte
	for i, n := range t {
		if n != "" {
			b = strconv.AppendInt(b, int64(i), 10)
			b = append(b, ' ')
			b = append(b, n...)
			b = append(b, '\n')
		}
	}
	return b
}

// letter returns the letter of keyword k, or 0.
func (t *keywordTable) letter(k string) byte {
	for i, n := range t {
		if n != "" && strings.EqualFold(n, k) {
			return byte('a' + i)
		}
	}
	return 0
}

// name returns the keyword of a letter; a letter without a name gets
// "unknown-<n>", as Dovecot names it when the file lost the entry.
func (t *keywordTable) name(l byte) string {
	i := int(l - 'a')
	if t[i] != "" {
		return t[i]
	}
	return "unknown-" + strconv.Itoa(i)
}

// free returns the first unused index, or -1.
func (t *keywordTable) free() int {
	for i, n := range t {
		if n == "" {
			return i
		}
	}
	return -1
}
