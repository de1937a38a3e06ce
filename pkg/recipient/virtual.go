package recipient

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/posthorn/posthorn/pkg/aliases"
)

// VirtualMap is a virtual alias file in Postfix's virtual(5) format:
//
//	# comment
//	sales@example.org     alice@example.org, bob
//	info                  root
//	@example.org          catchall@example.org
//	    continued@example.org
//
// The key is the first word of a line; the targets are the rest, separated
// by commas or white space. A line that starts with white space continues
// the previous entry. Keys are user@domain, a bare user (every local
// domain) or @domain (the domain's catch-all), matched case-insensitively.
// Targets are addresses only: virtual(5) has no commands, files or
// includes.
type VirtualMap struct {
	m map[string][]string
}

// Lookup returns the targets of key (lower case).
func (v *VirtualMap) Lookup(key string) ([]string, bool) {
	if v == nil {
		return nil, false
	}
	t, ok := v.m[key]
	return t, ok
}

// Len is the number of keys.
func (v *VirtualMap) Len() int {
	if v == nil {
		return 0
	}
	return len(v.m)
}

// LoadVirtual reads the virtual alias file at path; a missing file is an
// empty map.
func LoadVirtual(path string) (*VirtualMap, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &VirtualMap{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("virtual aliases: %w", err)
	}
	defer f.Close()
	return ParseVirtual(f, path)
}

// ParseVirtual reads a virtual alias file; name is used in errors. The
// limits are those of aliases files (aliases.MaxLineLength per entry,
// aliases.MaxEntries keys, aliases.MaxTargets targets per key).
func ParseVirtual(r io.Reader, name string) (*VirtualMap, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), aliases.MaxLineLength+2)
	v := &VirtualMap{m: map[string][]string{}}
	defined := map[string]int{}
	var entry []byte
	first, lineno := 0, 0
	finish := func() error {
		if entry == nil {
			return nil
		}
		key, targets, err := parseVirtualEntry(string(entry))
		entry = nil
		if err != nil {
			return fmt.Errorf("%s:%d: %w", name, first, err)
		}
		if prev, dup := defined[key]; dup {
			return fmt.Errorf("%s:%d: duplicate key %q (first defined at line %d)", name, first, key, prev)
		}
		if len(v.m) >= aliases.MaxEntries {
			return fmt.Errorf("%s:%d: more than %d keys", name, first, aliases.MaxEntries)
		}
		defined[key] = first
		v.m[key] = targets
		return nil
	}
	for sc.Scan() {
		lineno++
		line := sc.Bytes()
		if len(line) > aliases.MaxLineLength {
			return nil, fmt.Errorf("%s:%d: line longer than %d bytes", name, lineno, aliases.MaxLineLength)
		}
		for _, c := range line {
			if c < 0x20 && c != '\t' || c == 0x7f {
				return nil, fmt.Errorf("%s:%d: control character %q", name, lineno, c)
			}
		}
		trimmed := strings.TrimLeft(string(line), " \t")
		if trimmed == "" || trimmed[0] == '#' {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			if entry == nil {
				return nil, fmt.Errorf("%s:%d: continuation line without a key before it", name, lineno)
			}
			if len(entry)+1+len(line) > aliases.MaxLineLength {
				return nil, fmt.Errorf("%s:%d: entry longer than %d bytes", name, first, aliases.MaxLineLength)
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
			return nil, fmt.Errorf("%s:%d: line longer than %d bytes", name, lineno+1, aliases.MaxLineLength)
		}
		return nil, fmt.Errorf("%s:%d: %w", name, lineno+1, err)
	}
	if err := finish(); err != nil {
		return nil, err
	}
	return v, nil
}

func parseVirtualEntry(s string) (string, []string, error) {
	key, rest := s, ""
	if i := strings.IndexAny(s, " \t"); i >= 0 {
		key, rest = s[:i], s[i+1:]
	}
	key = strings.ToLower(key)
	if err := validKey(key); err != nil {
		return "", nil, err
	}
	var targets []string
	for _, tok := range splitVirtualTargets(rest) {
		// One token, so at most one target; this removes the quotes the
		// way aliases(5) values are unquoted.
		ts, err := aliases.ParseTargets(tok)
		if err != nil {
			return "", nil, fmt.Errorf("key %q: %w", key, err)
		}
		for _, t := range ts {
			if strings.HasPrefix(t, "|") || strings.HasPrefix(t, "/") || strings.HasPrefix(strings.ToLower(t), ":include:") {
				return "", nil, fmt.Errorf("key %q: target %q: virtual aliases name addresses, not commands, files or includes", key, t)
			}
			t = strings.TrimSuffix(strings.TrimPrefix(t, "<"), ">")
			if t == "" || strings.HasPrefix(t, "@") || strings.HasSuffix(t, "@") {
				return "", nil, fmt.Errorf("key %q: target %q is not an address", key, t)
			}
			if len(targets) == aliases.MaxTargets {
				return "", nil, fmt.Errorf("key %q: more than %d targets", key, aliases.MaxTargets)
			}
			targets = append(targets, t)
		}
	}
	if len(targets) == 0 {
		return "", nil, fmt.Errorf("key %q has no targets", key)
	}
	return key, targets, nil
}

func validKey(key string) error {
	if key == "" || key == "@" || strings.HasSuffix(key, "@") || strings.Count(key, "@") > 1 ||
		strings.ContainsAny(key, "\",<>") {
		return fmt.Errorf("%q is not user@domain, user or @domain", key)
	}
	return nil
}

// splitVirtualTargets splits at commas and white space outside double
// quotes.
func splitVirtualTargets(s string) []string {
	var out []string
	start, in := -1, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case in && c == '\\':
			i++
		case c == '"':
			in = !in
			if start < 0 {
				start = i
			}
		case !in && (c == ',' || c == ' ' || c == '\t'):
			if start >= 0 {
				out = append(out, s[start:i])
				start = -1
			}
		default:
			if start < 0 {
				start = i
			}
		}
	}
	if start >= 0 {
		out = append(out, s[start:])
	}
	return out
}
