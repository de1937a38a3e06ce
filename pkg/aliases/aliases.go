// Package aliases reads aliases(5) files, /etc/aliases, with Postfix's rules:
//
//	# comment
//	postmaster: root
//	root:       alice, bob@example.org,
//	            "|/usr/bin/procmail -a x", /var/log/mail-archive
//	"x y":      :include:/etc/mail/x-y.list
//
// A line that starts with whitespace continues the previous entry; blank
// lines and lines whose first non-blank character is "#" are skipped, also
// inside an entry. Names are matched case-insensitively. Targets are
// returned raw (quotes removed): addresses, "|command", "/file" and
// ":include:/file"; what they mean is the resolver's business.
package aliases

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Limits. Postfix has none for the file itself; these only stop a broken or
// hostile file from exhausting memory while staying far above real ones.
const (
	// MaxLineLength bounds one entry, continuation lines included: a
	// mailing-list alias of a few thousand addresses fits.
	MaxLineLength = 1 << 20
	// MaxEntries bounds the names in one file (Debian's has about 20).
	MaxEntries = 100000
	// MaxTargets bounds the values of one name: Postfix's
	// expansion_size_limit (1000) would refuse a longer list at delivery.
	MaxTargets = 1000
)

// Map is a parsed aliases file: lower-cased name → targets.
type Map struct {
	m map[string][]string
}

// Lookup returns the targets of name, compared case-insensitively.
func (m *Map) Lookup(name string) ([]string, bool) {
	if m == nil {
		return nil, false
	}
	t, ok := m.m[strings.ToLower(name)]
	return t, ok
}

// Len is the number of names.
func (m *Map) Len() int {
	if m == nil {
		return 0
	}
	return len(m.m)
}

// Load parses the aliases file at path.
func Load(path string) (*Map, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("aliases: %w", err)
	}
	defer f.Close()
	return Parse(f, path)
}

// Parse reads an aliases file; name is used in errors ("name:line: ...").
func Parse(r io.Reader, name string) (*Map, error) {
	sc := bufio.NewScanner(r)
	// Room for the line ending, so the explicit check below decides.
	sc.Buffer(make([]byte, 0, 64<<10), MaxLineLength+2)
	m := &Map{m: make(map[string][]string)}
	defined := make(map[string]int) // name → line, to report duplicates
	var entry []byte
	first, lineno := 0, 0

	finish := func() error {
		if entry == nil {
			return nil
		}
		key, targets, err := parseEntry(string(entry))
		entry = nil
		if err != nil {
			return fmt.Errorf("%s:%d: %w", name, first, err)
		}
		if prev, dup := defined[key]; dup {
			return fmt.Errorf("%s:%d: duplicate alias %q (first defined at line %d)", name, first, key, prev)
		}
		if len(m.m) >= MaxEntries {
			return fmt.Errorf("%s:%d: more than %d aliases", name, first, MaxEntries)
		}
		defined[key] = first
		m.m[key] = targets
		return nil
	}

	for sc.Scan() {
		lineno++
		line := sc.Bytes()
		if len(line) > MaxLineLength {
			return nil, fmt.Errorf("%s:%d: line longer than %d bytes", name, lineno, MaxLineLength)
		}
		if i := bytes.IndexFunc(line, isControl); i >= 0 {
			// A NUL or stray CR would mean one thing here and another to a
			// C-string consumer (HOSTILE 14).
			return nil, fmt.Errorf("%s:%d: control character %q", name, lineno, line[i])
		}
		trimmed := strings.TrimLeft(string(line), " \t")
		if trimmed == "" || trimmed[0] == '#' {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			if entry == nil {
				return nil, fmt.Errorf("%s:%d: continuation line without an alias before it", name, lineno)
			}
			if len(entry)+1+len(line) > MaxLineLength {
				return nil, fmt.Errorf("%s:%d: alias longer than %d bytes", name, first, MaxLineLength)
			}
			entry = append(append(entry, ' '), line...)
			continue
		}
		if err := finish(); err != nil {
			return nil, err
		}
		entry = append([]byte(nil), line...)
		first = lineno
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("%s:%d: line longer than %d bytes", name, lineno+1, MaxLineLength)
		}
		return nil, fmt.Errorf("%s:%d: %w", name, lineno+1, err)
	}
	if err := finish(); err != nil {
		return nil, err
	}
	return m, nil
}

// parseEntry splits `name: value, value` into the lower-cased name and the
// unquoted values.
func parseEntry(s string) (string, []string, error) {
	var key string
	var rest string
	if s[0] == '"' {
		end, err := closingQuote(s)
		if err != nil {
			return "", nil, err
		}
		key = unquote(s[:end+1])
		rest = strings.TrimLeft(s[end+1:], " \t")
		if !strings.HasPrefix(rest, ":") {
			return "", nil, fmt.Errorf("missing ':' after alias name %s", s[:end+1])
		}
		rest = rest[1:]
	} else {
		i := strings.IndexByte(s, ':')
		if i < 0 {
			return "", nil, fmt.Errorf("missing ':' in %q", truncate(s))
		}
		key = strings.TrimRight(s[:i], " \t")
		if strings.ContainsAny(key, " \t\"") {
			return "", nil, fmt.Errorf("alias name %q must be quoted", truncate(key))
		}
		rest = s[i+1:]
	}
	if key == "" {
		return "", nil, fmt.Errorf("empty alias name")
	}
	key = strings.ToLower(key)

	targets, err := ParseTargets(rest)
	if err != nil {
		return "", nil, fmt.Errorf("alias %q: %w", key, err)
	}
	if len(targets) == 0 {
		return "", nil, fmt.Errorf("alias %q has no targets", key)
	}
	return key, targets, nil
}

// ParseTargets splits the right-hand side of an alias, one line of a
// ~/.forward file or of an :include: file, into its targets with the rules
// of Parse: commas outside quotes separate, quotes are removed, empty items
// are skipped. local(8): "Each line in a user's .forward file has the same
// syntax as the right-hand part of an alias."
func ParseTargets(s string) ([]string, error) {
	if i := strings.IndexFunc(s, isControl); i >= 0 {
		return nil, fmt.Errorf("control character %q", s[i])
	}
	var targets []string
	for s != "" {
		item, tail, err := nextItem(s)
		if err != nil {
			return nil, err
		}
		s = tail
		item = strings.Trim(item, " \t")
		if item == "" {
			continue
		}
		if len(targets) == MaxTargets {
			return nil, fmt.Errorf("more than %d targets", MaxTargets)
		}
		if item = unquote(item); item == "" {
			return nil, fmt.Errorf("empty target \"\"")
		}
		targets = append(targets, item)
	}
	return targets, nil
}

// closingQuote returns the index of the quote that closes the one at s[0].
// A backslash escapes the next character, as in RFC 5322 quoted strings.
func closingQuote(s string) (int, error) {
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return i, nil
		}
	}
	return 0, fmt.Errorf("unterminated quote in %q", truncate(s))
}

// nextItem returns the text before the first comma outside quotes and what
// follows that comma.
func nextItem(s string) (item, rest string, err error) {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			end, err := closingQuote(s[i:])
			if err != nil {
				return "", "", err
			}
			i += end
		case ',':
			return s[:i], s[i+1:], nil
		}
	}
	return s, "", nil
}

// unquote removes quotes and the backslashes that escape characters inside
// them, giving Postfix's internal form: "|cmd \"x\"" → |cmd "x" and
// "joe smith"@example.org → joe smith@example.org.
func unquote(s string) string {
	if !strings.Contains(s, `"`) {
		return s
	}
	var b strings.Builder
	in := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			in = !in
		case c == '\\' && in && i+1 < len(s):
			i++
			b.WriteByte(s[i])
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func isControl(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }

// truncate keeps error messages about huge lines short.
func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
