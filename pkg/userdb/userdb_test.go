package userdb

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func TestLoadMissingFileIsEmpty(t *testing.T) {
	db, err := Load(filepath.Join(t.TempDir(), "users"))
	if err != nil || db.Len() != 0 || len(db.List()) != 0 {
		t.Fatalf("%v %d", err, db.Len())
	}
	if _, ok := db.Lookup("a@b"); ok {
		t.Fatal("found a user in an empty DB")
	}
}

const sample = `# virtual users
alice@example.test:{PLAIN}secret:5000:5000::/var/vmail/example.test/alice::userdb_quota_rule=*:storage=1G
Bob@Example.TEST:{plain}pw
:{PLAIN}skipped-no-name

carol@example.test:{PLAIN}c:root:mail:Carol:/home/carol:/bin/false
alice@example.test:{PLAIN}second-line-ignored
dave@example.test:{PLAIN}d:::::` + "\r\n"

func write(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(p, []byte(content), 0640); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadDovecotPasswdFile(t *testing.T) {
	db, err := Load(write(t, sample))
	if err != nil {
		t.Fatal(err)
	}
	a, ok := db.Lookup("ALICE@example.test")
	if !ok {
		t.Fatal("alice not found")
	}
	want := User{Name: "alice@example.test", Hash: "{PLAIN}secret", UID: 5000, GID: 5000,
		Home: "/var/vmail/example.test/alice", Extra: "userdb_quota_rule=*:storage=1G"}
	if *a != want {
		t.Fatalf("alice = %+v\nwant    %+v", *a, want)
	}
	b, ok := db.Lookup("bob@example.test")
	if !ok || b.Name != "Bob@Example.TEST" || b.UID != -1 || b.GID != -1 || b.Home != "" {
		t.Fatalf("bob = %+v %v", b, ok)
	}
	c, _ := db.Lookup("carol@example.test")
	if c == nil || c.UID != 0 || c.GID != 8 || c.Home != "/home/carol" {
		t.Fatalf("carol (uid and gid by name) = %+v", c)
	}
	d, _ := db.Lookup("dave@example.test")
	if d == nil || d.Hash != "{PLAIN}d" || !d.Verify("d") {
		t.Fatalf("dave (CRLF line) = %+v", d)
	}
	var names []string
	for _, u := range db.List() {
		names = append(names, u.Name)
	}
	if got := strings.Join(names, " "); got != "alice@example.test Bob@Example.TEST carol@example.test alice@example.test dave@example.test" {
		t.Fatalf("List = %s", got)
	}
	if !a.Verify("secret") {
		t.Fatal("the first of two lines for alice must win")
	}
}

func TestLoadErrorsCarryFileAndLine(t *testing.T) {
	cases := []struct{ in, want string }{
		{"a@b:x\nc@d:x:-1\n", ":2: user c@d: uid: \"-1\""},
		{"a@b:x:1:4294967296\n", ":1: user a@b: gid: \"4294967296\" is not a valid id"},
		{"a@b:x:no-such-user-here\n", ":1: user a@b: uid: user: unknown user no-such-user-here"},
		{"a@b:x\x00y\n", `:1: control character '\x00'`},
		{"a@b:x\ry:1\n", `:1: control character '\r'`},
		{"a@b:x\n" + strings.Repeat("x", MaxLineLength+1) + "\n", fmt.Sprintf(":2: line longer than %d bytes", MaxLineLength)},
		{"a@b:x\n" + strings.Repeat("x", 3*MaxLineLength) + "\n", fmt.Sprintf(":2: line longer than %d bytes", MaxLineLength)},
	}
	for _, c := range cases {
		p := write(t, c.in)
		_, err := Load(p)
		if err == nil || !strings.Contains(err.Error(), p+c.want) {
			t.Errorf("Load(%q) = %v, want %q", c.in[:min(len(c.in), 40)], err, c.want)
		}
	}
	ok := "a@b:" + strings.Repeat("x", MaxLineLength-4) + "\n"
	if _, err := Load(write(t, ok)); err != nil {
		t.Fatalf("line of exactly %d bytes: %v", MaxLineLength, err)
	}
}

func TestVerifySchemes(t *testing.T) {
	h, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	bc := string(h)
	y := "$2y$" + bc[4:] // what Dovecot (libxcrypt) writes
	cases := []struct {
		hash, pw string
		ok       bool
	}{
		{"{BLF-CRYPT}" + bc, "pw", true},
		{"{BLF-CRYPT}" + bc, "pW", false},
		{"{blf-crypt}" + y, "pw", true},
		{"{BLF-CRYPT}" + y, "pw\x00junk", false},
		{y, "pw", true}, // no scheme: CRYPT
		{"{CRYPT}" + bc, "pw", true},
		{"{CRYPT}$6$salt$hash", "pw", false}, // SHA512-CRYPT, wrong hash
		{"{BLF-CRYPT}garbage", "pw", false},
		{"{PLAIN}secret", "secret", true},
		{"{plain}secret", "secret", true},
		{"{CLEARTEXT}secret", "secret", true},
		{"{PLAIN}secret", "secre", false},
		{"{PLAIN}secret", "secret\x00", false},
		{"{PLAIN}", "", false},
		{"", "", false},
		{"{SHA512-CRYPT}$6$x$y", "pw", false},
		{"{PLAIN", "pw", false},
		// Cost 31 would take days: refused without hashing.
		{"{BLF-CRYPT}$2a$31$" + bc[7:], "pw", false},
	}
	for _, c := range cases {
		if got := (&User{Hash: c.hash}).Verify(c.pw); got != c.ok {
			t.Errorf("Verify(%q, %q) = %v", c.hash, c.pw, got)
		}
	}
}

func TestAddCreatesFileAndVerifies(t *testing.T) {
	p := filepath.Join(t.TempDir(), "etc", "users")
	if err := Add(p, "Alice@Example.TEST", "correct horse"); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0640 {
		t.Fatalf("mode %v, %v", fi.Mode(), err)
	}
	b, _ := os.ReadFile(p)
	if !strings.HasPrefix(string(b), "alice@example.test:{BLF-CRYPT}$2a$10$") || !strings.HasSuffix(string(b), "::::::\n") {
		t.Fatalf("file = %q", b)
	}
	db, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	u, ok := db.Lookup("alice@example.test")
	if !ok || !u.Verify("correct horse") || u.Verify("wrong") || u.UID != -1 {
		t.Fatalf("user %+v", u)
	}
	if cost, _ := bcrypt.Cost([]byte(strings.TrimPrefix(u.Hash, "{BLF-CRYPT}"))); cost != Cost {
		t.Fatalf("cost %d", cost)
	}
	err = Add(p, "ALICE@example.test", "x")
	if !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("duplicate: %v", err)
	}
	noTempFiles(t, filepath.Dir(p))
}

func noTempFiles(t *testing.T, dir string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp") {
			t.Fatalf("temporary file %s left behind", e.Name())
		}
	}
}

func TestAddRefusesBadNamesAndPasswords(t *testing.T) {
	p := filepath.Join(t.TempDir(), "users")
	for _, name := range []string{
		"", "alice", "@example.test", "alice@", "a@b@c", "a:b@c", "a@b:c", "a\x00@b", "a\n@b", "a\r@b",
		"a b@c", "../x@d", "a/b@c", "a@b/c", "a%b@c", `a\b@c`, ".a@b", "a.@b", "a..b@c", "a@.b", "a@b..c",
		"a@[1.2.3.4]", strings.Repeat("a", 65) + "@b", "a@" + strings.Repeat("b", 254), "#a@b", "é@b",
	} {
		if err := Add(p, name, "pw"); !errors.Is(err, ErrBadName) {
			t.Errorf("Add(%q) = %v", name, err)
		}
	}
	for _, pw := range []string{"", strings.Repeat("x", 73), "a\x00b"} {
		if err := Add(p, "a@b", pw); !errors.Is(err, ErrBadPassword) {
			t.Errorf("Add with password %q = %v", pw, err)
		}
	}
	if err := Add(p, "a@b", strings.Repeat("x", 72)); err != nil {
		t.Errorf("72-byte password: %v", err)
	}
	if err := Add(p, "o'brien+tag@mail-1.example.test", "pw"); err != nil {
		t.Errorf("valid name: %v", err)
	}
}

const keep = "# managed by hand\r\n" +
	"old@example.test:{PLAIN}x:1000:1000:Old User:/home/old:/bin/sh:quota=1G\n" +
	"   \n" +
	"weird@example.test:{PLAIN}y:no-such-user-here\n" +
	"last@example.test:{PLAIN}z" // no final newline

func TestEditsKeepOtherLinesByteExact(t *testing.T) {
	p := write(t, keep)
	if err := Add(p, "new@example.test", "pw"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	if !strings.HasPrefix(string(b), keep+"\nnew@example.test:{BLF-CRYPT}") {
		t.Fatalf("after Add: %q", b)
	}
	if err := Delete(p, "NEW@example.test"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != keep+"\n" {
		t.Fatalf("after Delete: %q", b)
	}
	if err := Delete(p, "new@example.test"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Delete: %v", err)
	}
	if err := Delete(p, ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Delete of an empty name: %v", err)
	}
	if err := SetPassword(p, "", "pw"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("SetPassword of an empty name: %v", err)
	}
	if b, _ := os.ReadFile(p); string(b) != keep+"\n" {
		t.Fatalf("an empty name touched the comments: %q", b)
	}
	noTempFiles(t, filepath.Dir(p))
}

func TestSetPasswordKeepsOtherFields(t *testing.T) {
	p := write(t, keep)
	if err := SetPassword(p, "Old@Example.test", "new secret"); err != nil {
		t.Fatal(err)
	}
	if err := SetPassword(p, "last@example.test", "other"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	lines := strings.SplitAfter(string(b), "\n")
	if lines[0] != "# managed by hand\r\n" || lines[2] != "   \n" || lines[3] != "weird@example.test:{PLAIN}y:no-such-user-here\n" {
		t.Fatalf("other lines changed: %q", b)
	}
	old := strings.Split(lines[1], ":")
	if old[0] != "old@example.test" || !strings.HasPrefix(old[1], "{BLF-CRYPT}$2a$") ||
		strings.Join(old[2:], ":") != "1000:1000:Old User:/home/old:/bin/sh:quota=1G\n" {
		t.Fatalf("old line: %q", lines[1])
	}
	if !strings.HasPrefix(lines[4], "last@example.test:{BLF-CRYPT}") || strings.HasSuffix(lines[4], "\n") {
		t.Fatalf("last line: %q", lines[4])
	}
	u, err := ParseLine(strings.TrimSuffix(lines[1], "\n"))
	if err != nil || !u.Verify("new secret") || u.Verify("x") {
		t.Fatalf("new password does not verify: %v", err)
	}
	if err := SetPassword(p, "nobody@example.test", "pw"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown user: %v", err)
	}
}

func TestEditsKeepModeAndOwner(t *testing.T) {
	p := write(t, "a@b:{PLAIN}x\n")
	os.Chmod(p, 0600)
	if os.Geteuid() == 0 {
		os.Chown(p, 1, 8) // daemon:mail
	}
	if err := Add(p, "c@d", "pw"); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(p)
	if fi.Mode().Perm() != 0600 {
		t.Fatalf("mode %v", fi.Mode())
	}
	if st := fi.Sys().(*syscall.Stat_t); os.Geteuid() == 0 && (st.Uid != 1 || st.Gid != 8) {
		t.Fatalf("owner %d:%d", st.Uid, st.Gid)
	}
}

func TestEditFollowsSymlink(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real")
	os.WriteFile(real, []byte("a@b:{PLAIN}x\n"), 0640)
	link := filepath.Join(dir, "users")
	os.Symlink("real", link)
	if err := Delete(link, "a@b"); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode().Type() != os.ModeSymlink {
		t.Fatalf("link replaced: %v %v", fi, err)
	}
	if b, _ := os.ReadFile(real); len(b) != 0 {
		t.Fatalf("real = %q", b)
	}
}

func TestConcurrentAddsAreSerialised(t *testing.T) {
	p := filepath.Join(t.TempDir(), "users")
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if err := Add(p, fmt.Sprintf("u%d@example.test", i), "pw"); err != nil {
				t.Error(err)
			}
		}(i)
	}
	wg.Wait()
	db, err := Load(p)
	if err != nil || db.Len() != 8 {
		t.Fatalf("%d users, %v", db.Len(), err)
	}
}

func FuzzParseLine(f *testing.F) {
	for _, l := range strings.Split(sample, "\n") {
		f.Add(l)
	}
	f.Fuzz(func(t *testing.T, line string) {
		u, err := ParseLine(line)
		if err != nil || u == nil {
			return
		}
		if u.Name == "" || strings.ContainsAny(u.Name, ":\n\x00") || strings.Contains(u.Hash, ":") {
			t.Fatalf("bad fields from %q: %+v", line, u)
		}
		if u.UID < -1 || u.GID < -1 {
			t.Fatalf("negative id from %q: %+v", line, u)
		}
		if nameOf([]byte(line)) != strings.ToLower(u.Name) {
			t.Fatalf("nameOf(%q) = %q, ParseLine name %q", line, nameOf([]byte(line)), u.Name)
		}
		if !strings.Contains(u.Hash, "$2") { // bcrypt is slow by design
			u.Verify("pw")
		}
	})
}
