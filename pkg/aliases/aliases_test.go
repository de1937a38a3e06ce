package aliases

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const debian = `# See man 5 aliases for format
postmaster:    root
# a comment between entries

Root:	alice, bob@example.org,
	"|/usr/bin/procmail -a \"x,y\"",
  # a comment inside an entry is skipped too
	/var/log/mail-archive
"x y":  :include:/etc/mail/x-y.list
list : "joe smith"@example.org ,, carol,
trailing:a#not-a-comment
`

func TestParsePostfixRules(t *testing.T) {
	m, err := Parse(strings.NewReader(debian), "aliases")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"postmaster": {"root"},
		"root":       {"alice", "bob@example.org", `|/usr/bin/procmail -a "x,y"`, "/var/log/mail-archive"},
		"x y":        {":include:/etc/mail/x-y.list"},
		"list":       {"joe smith@example.org", "carol"},
		"trailing":   {"a#not-a-comment"},
	}
	if m.Len() != len(want) {
		t.Errorf("Len = %d, want %d", m.Len(), len(want))
	}
	for name, targets := range want {
		got, ok := m.Lookup(name)
		if !ok || !reflect.DeepEqual(got, targets) {
			t.Errorf("Lookup(%q) = %q %v, want %q", name, got, ok, targets)
		}
	}
	for _, name := range []string{"ROOT", "PostMaster", "X Y"} {
		if _, ok := m.Lookup(name); !ok {
			t.Errorf("Lookup(%q) is not case-insensitive", name)
		}
	}
	if _, ok := m.Lookup("nobody"); ok {
		t.Error("Lookup of a missing name succeeded")
	}
}

func TestParseCRLFAndEmpty(t *testing.T) {
	m, err := Parse(strings.NewReader("a: b,\r\n\tc\r\n"), "x")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := m.Lookup("a"); !reflect.DeepEqual(got, []string{"b", "c"}) {
		t.Fatalf("a = %q", got)
	}
	m, err = Parse(strings.NewReader(""), "x")
	if err != nil || m.Len() != 0 {
		t.Fatalf("empty file: %v %d", err, m.Len())
	}
	var nilMap *Map
	if _, ok := nilMap.Lookup("a"); ok || nilMap.Len() != 0 {
		t.Fatal("nil Map is not empty")
	}
}

func TestParseErrorsCarryFileAndLine(t *testing.T) {
	cases := []struct{ in, want string }{
		{"a: b\nno colon here\n", "f:2: missing ':'"},
		{"a: b\n\nb:\n", `f:3: alias "b" has no targets`},
		{"a: b\n\nb: ,, ,\n", `f:3: alias "b" has no targets`},
		{"  a: b\n", "f:1: continuation line without an alias"},
		{": b\n", "f:1: empty alias name"},
		{`"": b` + "\n", "f:1: empty alias name"},
		{"x y: b\n", `f:1: alias name "x y" must be quoted`},
		{`"x y" b` + "\n", `f:1: missing ':' after alias name "x y"`},
		{`"x y: b` + "\n", "f:1: unterminated quote"},
		{"a: \"b, c\n", `f:1: alias "a": unterminated quote`},
		{"a: b\n# c\nA: c\n\td\n", `f:3: duplicate alias "a" (first defined at line 1)`},
		{"a: b\x00c\n", `f:1: control character '\x00'`},
		{"a: b, \"\"\n", `f:1: alias "a": empty target ""`},
		{"a: b\rc\n", `f:1: control character '\r'`},
	}
	for _, c := range cases {
		_, err := Parse(strings.NewReader(c.in), "f")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q) = %v, want %q", c.in, err, c.want)
		}
	}
}

func TestLineLengthLimit(t *testing.T) {
	ok := "a: " + strings.Repeat("b", MaxLineLength-3) + "\n"
	if _, err := Parse(strings.NewReader(ok), "f"); err != nil {
		t.Fatalf("line of exactly %d bytes: %v", MaxLineLength, err)
	}
	long := "z: y\na: " + strings.Repeat("b", MaxLineLength) + "\n"
	_, err := Parse(strings.NewReader(long), "f")
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("f:2: line longer than %d bytes", MaxLineLength)) {
		t.Fatalf("err = %v", err)
	}
	huge := "a: " + strings.Repeat("b", 3*MaxLineLength) + "\n"
	if _, err := Parse(strings.NewReader(huge), "f"); err == nil || !strings.Contains(err.Error(), "line longer") {
		t.Fatalf("err = %v", err)
	}
	// Continuation lines count towards the same limit.
	var b strings.Builder
	b.WriteString("a: x\n")
	for b.Len() < MaxLineLength+100 {
		b.WriteString("\t" + strings.Repeat("c", 1000) + ",\n")
	}
	_, err = Parse(strings.NewReader(b.String()), "f")
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("f:1: alias longer than %d bytes", MaxLineLength)) {
		t.Fatalf("err = %v", err)
	}
}

func TestEntryLimit(t *testing.T) {
	var b strings.Builder
	for i := 0; i < MaxEntries; i++ {
		fmt.Fprintf(&b, "a%d: b\n", i)
	}
	m, err := Parse(strings.NewReader(b.String()), "f")
	if err != nil || m.Len() != MaxEntries {
		t.Fatalf("%d entries: %v", MaxEntries, err)
	}
	b.WriteString("one-more: b\n")
	_, err = Parse(strings.NewReader(b.String()), "f")
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("f:%d: more than %d aliases", MaxEntries+1, MaxEntries)) {
		t.Fatalf("err = %v", err)
	}
}

func TestTargetLimit(t *testing.T) {
	items := make([]string, MaxTargets)
	for i := range items {
		items[i] = fmt.Sprintf("u%d", i)
	}
	m, err := Parse(strings.NewReader("list: "+strings.Join(items, ",")+"\n"), "f")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := m.Lookup("list"); len(got) != MaxTargets {
		t.Fatalf("%d targets", len(got))
	}
	_, err = Parse(strings.NewReader("list: "+strings.Join(items, ",")+", extra\n"), "f")
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("f:1: alias \"list\": more than %d targets", MaxTargets)) {
		t.Fatalf("err = %v", err)
	}
}

func TestLoad(t *testing.T) {
	p := filepath.Join(t.TempDir(), "aliases")
	os.WriteFile(p, []byte("postmaster: root\nbad\n"), 0644)
	_, err := Load(p)
	if err == nil || !strings.Contains(err.Error(), p+":2:") {
		t.Fatalf("err = %v", err)
	}
	os.WriteFile(p, []byte("postmaster: root\n"), 0644)
	m, err := Load(p)
	if err != nil || m.Len() != 1 {
		t.Fatal(err)
	}
	if _, err := Load(p + ".missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(debian)
	f.Fuzz(func(t *testing.T, in string) {
		m, err := Parse(strings.NewReader(in), "f")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f:") {
				t.Fatalf("error without file:line: %v", err)
			}
			return
		}
		for name, targets := range m.m {
			if name == "" || name != strings.ToLower(name) {
				t.Fatalf("bad name %q", name)
			}
			if len(targets) == 0 || len(targets) > MaxTargets {
				t.Fatalf("%q has %d targets", name, len(targets))
			}
			for _, tg := range targets {
				if tg == "" || strings.ContainsAny(tg, "\n\x00") {
					t.Fatalf("%q has target %q", name, tg)
				}
			}
		}
	})
}

func TestParseTargets(t *testing.T) {
	got, err := ParseTargets(` alice, "|/usr/bin/procmail -a \"x,y\"" ,, /var/mail/archive, :include:/etc/list, \bob `)
	want := []string{"alice", `|/usr/bin/procmail -a "x,y"`, "/var/mail/archive", ":include:/etc/list", `\bob`}
	if err != nil || strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("%q %v", got, err)
	}
	if got, err := ParseTargets("  # not special here, x"); err != nil || len(got) != 2 {
		t.Fatalf("%q %v", got, err)
	}
	for _, bad := range []string{"a\x00b", "\"open", `a, ""`, "a\rb"} {
		if _, err := ParseTargets(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	many := strings.Repeat("a,", MaxTargets)
	if got, err := ParseTargets(many); err != nil || len(got) != MaxTargets {
		t.Fatalf("%d targets: %v", len(got), err)
	}
	if _, err := ParseTargets(many + "b"); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("%d+1 targets: %v", MaxTargets, err)
	}
}
