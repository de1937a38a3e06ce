package recipient

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/posthorn/posthorn/pkg/aliases"
)

const testVirtual = `# virtual(5)
sales@virtual.test      alice@virtual.test, Far@Remote.Example
info                    daemon
self@virtual.test       self@virtual.test
Team@Virtual.Test       alice@virtual.test
    bob@remote.example  "quoted x"@remote.example
@virtual.test           catch@virtual.test
ops@example.test        postmaster@virtual.test
`

func newVirtualEnv(t *testing.T, virtual string) *env {
	e := newEnv(t, "", "alice@virtual.test:{PLAIN}x\ncatch@virtual.test:{PLAIN}x\nself@virtual.test:{PLAIN}x\n")
	e.write("virtual", virtual)
	e.cfg.Virtual.AliasFile = filepath.Join(e.dir, "virtual")
	e.r = New(e.cfg)
	e.r.SetOpener(e.open)
	return e
}

func (e *env) maildir(user string) Target {
	return Target{Kind: Maildir, Address: user + "@virtual.test", User: user + "@virtual.test",
		UID: os.Getuid(), GID: os.Getgid(), Path: filepath.Join(e.dir, "vmail/virtual.test", user, "Maildir")}
}

func TestVirtualAliasCheck(t *testing.T) {
	e := newVirtualEnv(t, testVirtual)
	for _, c := range []struct {
		local, domain string
		want          error
	}{
		{"sales", "virtual.test", nil},       // no user, but an alias
		{"SALES+x", "VIRTUAL.test", nil},     // extension, case
		{"anyone", "virtual.test", nil},      // the catch-all
		{"alice", "virtual.test", nil},       // a user
		{"info", "example.test", nil},        // a bare key, local domain
		{"info", "localhost", nil},           // every local domain
		{"ops", "example.test", nil},         // user@domain in a local domain
		{"ops", "localhost", ErrUnknownUser}, // only in its own domain
		{"anyone", "example.test", ErrUnknownUser},
		{"sales", "remote.example", ErrNotLocal},
	} {
		if err := e.r.Check(c.local, c.domain); err != c.want {
			t.Errorf("Check(%s@%s) = %v, want %v", c.local, c.domain, err, c.want)
		}
	}
	// Without the catch-all, unknown users are unknown again.
	e2 := newVirtualEnv(t, strings.Replace(testVirtual, "@virtual.test           catch@virtual.test\n", "", 1))
	if err := e2.r.Check("anyone", "virtual.test"); err != ErrUnknownUser {
		t.Errorf("no catch-all: %v", err)
	}
}

func TestVirtualAliasResolve(t *testing.T) {
	e := newVirtualEnv(t, testVirtual)
	ts, err := e.resolve("sales+x", "virtual.test")
	if err != nil {
		t.Fatal(err)
	}
	same(t, ts, e.maildir("alice"), remote("Far@remote.example"))

	ts, _ = e.resolve("team", "virtual.test")
	same(t, ts, e.maildir("alice"), remote("bob@remote.example"), remote("quoted x@remote.example"))

	// Users keep their own mail: the catch-all takes only what matches
	// nothing else.
	ts, _ = e.resolve("alice", "virtual.test")
	same(t, ts, e.maildir("alice"))
	ts, _ = e.resolve("nobody-here", "virtual.test")
	same(t, ts, e.maildir("catch"))
	ts, _ = e.resolve("self", "virtual.test")
	same(t, ts, e.maildir("self"))

	ts, _ = e.resolve("info", "localhost")
	same(t, ts, e.mbox("daemon", "mx.example.test"))

	// Virtual aliases apply again to their targets; postmaster of a
	// virtual domain without such a user is the system's.
	ts, _ = e.resolve("ops", "example.test")
	same(t, ts, e.mbox("root", "mx.example.test"))
}

func TestVirtualAliasFailures(t *testing.T) {
	// A catch-all whose target does not exist: unknown, not caught again.
	e := newVirtualEnv(t, "@virtual.test ghost@virtual.test\n")
	ts, err := e.resolve("x", "virtual.test")
	fs := failures(t, err)
	if ts != nil || len(fs) != 1 || fs[0].DSN != "5.1.1" || !strings.Contains(fs[0].Text, "ghost@virtual.test") {
		t.Fatalf("%v %v", ts, err)
	}
	// A loop defers.
	e = newVirtualEnv(t, "a@virtual.test b@virtual.test\nb@virtual.test a@virtual.test\n")
	if ts, err := e.resolve("a", "virtual.test"); ts != nil || err == nil || !strings.Contains(err.Error(), "alias loop: virtual a@virtual.test -> virtual b@virtual.test -> virtual a@virtual.test") {
		t.Fatalf("loop: %v %v", ts, err)
	}
	// A broken file with no good version before it defers everything in
	// our domains, except postmaster.
	captureLog(t)
	e = newVirtualEnv(t, "broken\n")
	if err := e.r.Check("alice", "virtual.test"); err == nil || err == ErrUnknownUser {
		t.Fatalf("broken file: %v", err)
	}
	if err := e.r.Check("postmaster", "virtual.test"); err != nil {
		t.Fatalf("postmaster: %v", err)
	}
}

func TestParseVirtual(t *testing.T) {
	v, err := ParseVirtual(strings.NewReader(testVirtual), "v")
	if err != nil {
		t.Fatal(err)
	}
	if v.Len() != 6 {
		t.Errorf("%d keys", v.Len())
	}
	if ts, ok := v.Lookup("team@virtual.test"); !ok || strings.Join(ts, "|") != "alice@virtual.test|bob@remote.example|quoted x@remote.example" {
		t.Errorf("team: %q", ts)
	}
	for _, c := range []struct{ text, err string }{
		{"a@b |/bin/sh\n", "not commands, files or includes"},
		{"a@b /etc/passwd\n", "not commands, files or includes"},
		{"a@b :include:/x\n", "not commands, files or includes"},
		{"a@b\n", "has no targets"},
		{"a@b c\na@B d\n", "v:2: duplicate key"},
		{"a@ c\n", "is not user@domain"},
		{"a@b@c d\n", "is not user@domain"},
		{"a@b @x\n", "is not an address"},
		{" c\n", "continuation line without a key"},
		{"a@b c\x00\n", "control character"},
		{"a@b \"open\n", "unterminated quote"},
	} {
		if _, err := ParseVirtual(strings.NewReader(c.text), "v"); err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%q: %v, want %q", c.text, err, c.err)
		}
	}
	if v, err := LoadVirtual(filepath.Join(t.TempDir(), "missing")); err != nil || v.Len() != 0 {
		t.Errorf("missing file: %v %v", v, err)
	}
}

func TestParseVirtualLimits(t *testing.T) {
	// aliases.MaxTargets targets, then one more.
	line := "a@b " + strings.Repeat("x@y,", aliases.MaxTargets)
	if v, err := ParseVirtual(strings.NewReader(line+"\n"), "v"); err != nil || len(v.m["a@b"]) != aliases.MaxTargets {
		t.Fatalf("at the limit: %v", err)
	}
	if _, err := ParseVirtual(strings.NewReader(line+"z@y\n"), "v"); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("over the limit: %v", err)
	}
	// An entry of aliases.MaxLineLength bytes, then one more.
	long := "a@b " + strings.Repeat("x", aliases.MaxLineLength-len("a@b "))
	if _, err := ParseVirtual(strings.NewReader(long+"\n"), "v"); err != nil {
		t.Fatalf("longest line: %v", err)
	}
	if _, err := ParseVirtual(strings.NewReader(long+"x\n"), "v"); err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Fatalf("line too long: %v", err)
	}
	if _, err := ParseVirtual(strings.NewReader("a@b c\n"+strings.Repeat(" "+strings.Repeat("x", 1000)+"\n", aliases.MaxLineLength/1000)), "v"); err == nil || !strings.Contains(err.Error(), "entry longer than") {
		t.Fatalf("continued entry too long: %v", err)
	}
	var b strings.Builder
	for i := 0; i < aliases.MaxEntries; i++ {
		fmt.Fprintf(&b, "k%d x\n", i)
	}
	if _, err := ParseVirtual(strings.NewReader(b.String()), "v"); err != nil {
		t.Fatalf("most keys: %v", err)
	}
	b.WriteString("one-more x\n")
	if _, err := ParseVirtual(strings.NewReader(b.String()), "v"); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("too many keys: %v", err)
	}
}

func FuzzParseVirtual(f *testing.F) {
	f.Add(testVirtual)
	f.Add("a@b \"x, y\"@c,d\te\n f\n")
	f.Add("@d x\n#c\n\nu y@z\n")
	f.Fuzz(func(t *testing.T, text string) {
		v, err := ParseVirtual(strings.NewReader(text), "f")
		if err != nil {
			return
		}
		for k, ts := range v.m {
			if k != strings.ToLower(k) || validKey(k) != nil {
				t.Fatalf("key %q", k)
			}
			if len(ts) == 0 || len(ts) > aliases.MaxTargets {
				t.Fatalf("%d targets", len(ts))
			}
			for _, x := range ts {
				if x == "" || strings.HasPrefix(x, "|") || strings.HasPrefix(x, "/") {
					t.Fatalf("target %q", x)
				}
			}
		}
	})
}
