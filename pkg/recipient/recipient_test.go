package recipient

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posthorn/posthorn/pkg/aliases"
	"github.com/posthorn/posthorn/pkg/config"
	"github.com/posthorn/posthorn/pkg/maillog"
	"github.com/posthorn/posthorn/pkg/userdb"
)

// The tests use system users every Debian system has.
func sysUser(t *testing.T, name string) *user.User {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Skipf("system user %s: %v", name, err)
	}
	return u
}

type env struct {
	t   *testing.T
	dir string
	cfg *config.Config
	r   *Resolver

	mu     sync.Mutex
	files  map[string]string // a path the resolver opens -> the test's file
	opened []OpenRequest
}

// open stands in for the local agent's workers: it opens the test's files
// (mapped paths, or anything under the test's folder) with this process's
// rights and records what was asked; any other path does not exist.
func (e *env) open(req OpenRequest) (*os.File, error) {
	e.mu.Lock()
	e.opened = append(e.opened, req)
	p, ok := e.files[req.Path]
	e.mu.Unlock()
	if !ok {
		if !strings.HasPrefix(req.Path, e.dir+"/") {
			return nil, &fs.PathError{Op: "open", Path: req.Path, Err: fs.ErrNotExist}
		}
		p = req.Path
	}
	return OpenFile(OpenRequest{Path: p, NoFollow: req.NoFollow})
}

func newEnv(t *testing.T, aliasesText, usersText string) *env {
	sysUser(t, "root")
	sysUser(t, "daemon")
	dir := t.TempDir()
	cfg := config.Defaults()
	cfg.Hostname = "mx.example.test"
	cfg.LocalDomains = []string{"mx.example.test", "example.test", "localhost"}
	cfg.AliasFile = filepath.Join(dir, "aliases")
	cfg.Local.MailSpoolDir = filepath.Join(dir, "mail")
	cfg.Virtual.Domains = []string{"virtual.test"}
	cfg.Virtual.UsersFile = filepath.Join(dir, "users")
	cfg.Virtual.Mailbox = filepath.Join(dir, "vmail", "%d", "%n", "Maildir")
	cfg.Virtual.User, cfg.Virtual.Group = "", ""
	e := &env{t: t, dir: dir, cfg: cfg, files: map[string]string{}}
	if aliasesText != "" {
		e.write("aliases", aliasesText)
	}
	if usersText != "" {
		e.write("users", usersText)
	}
	e.r = New(cfg)
	e.r.SetOpener(e.open)
	return e
}

// write replaces a file the way editors and newaliases do: a new inode.
func (e *env) write(name, content string) {
	e.t.Helper()
	p := filepath.Join(e.dir, name)
	if err := os.WriteFile(p+".new", []byte(content), 0644); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Rename(p+".new", p); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) resolve(local, domain string) ([]Target, error) {
	e.t.Helper()
	ts, err := e.r.Resolve(local, domain)
	sort.Slice(ts, func(i, j int) bool { return fmt.Sprint(ts[i]) < fmt.Sprint(ts[j]) })
	return ts, err
}

func (e *env) mbox(name, domain string) Target {
	u := sysUser(e.t, name)
	var uid, gid int
	fmt.Sscan(u.Uid, &uid)
	fmt.Sscan(u.Gid, &gid)
	return Target{Kind: Mbox, Address: name + "@" + domain, User: name, UID: uid, GID: gid,
		Path: filepath.Join(e.cfg.Local.MailSpoolDir, name)}
}

// dest is a command or file named by the test's aliases file, which
// belongs to whoever runs the test: as root, default_privs (nobody) runs
// it; otherwise the test's own user.
func (e *env) dest(k Kind, self, path, via string) Target {
	e.t.Helper()
	name := "nobody"
	if os.Geteuid() != 0 {
		me, _ := user.Current()
		name = me.Username
	}
	return e.destAs(k, self, path, via, name)
}

func (e *env) destAs(k Kind, self, path, via, name string) Target {
	e.t.Helper()
	u := sysUser(e.t, name)
	var uid, gid int
	fmt.Sscan(u.Uid, &uid)
	fmt.Sscan(u.Gid, &gid)
	return Target{Kind: k, Address: self, User: u.Username, UID: uid, GID: gid, Path: path, Via: via,
		Home: u.HomeDir, Shell: userShell(u.Username)}
}

func remote(addr string) Target { return Target{Kind: Remote, Address: addr, UID: -1, GID: -1} }

func same(t *testing.T, got []Target, want ...Target) {
	t.Helper()
	sort.Slice(want, func(i, j int) bool { return fmt.Sprint(want[i]) < fmt.Sprint(want[j]) })
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("targets\n got %v\nwant %v", got, want)
	}
}

const testAliases = `postmaster: root
info: daemon
info+sales: bob@remote.example
Root: daemon, Bob@Remote.Example, "|/usr/bin/procmail -a x", /var/log/mail-archive
`

func TestCheckDomains(t *testing.T) {
	e := newEnv(t, testAliases, "alice@virtual.test:{PLAIN}x\n")
	cases := []struct {
		local, domain string
		want          error
	}{
		{"daemon", "example.test", nil},
		{"DAEMON", "EXAMPLE.test.", nil},
		{"daemon", "localhost", nil},
		{"daemon", "", nil}, // unqualified
		{"daemon", "remote.example", ErrNotLocal},
		{"daemon", "virtual.test", ErrUnknownUser}, // system users are not virtual users
		{"alice", "virtual.test", nil},
		{"Alice", "VIRTUAL.TEST", nil},
		{"alice", "example.test", ErrUnknownUser},
		{"no-such-user", "example.test", ErrUnknownUser},
		{"", "example.test", ErrUnknownUser},
		{"../etc/passwd", "example.test", ErrUnknownUser},
		{"info", "example.test", nil},
		{"INFO", "mx.example.test", nil},
		{"alice", "[192.0.2.1]", ErrNotLocal},
	}
	for _, c := range cases {
		if err := e.r.Check(c.local, c.domain); err != c.want {
			t.Errorf("Check(%q, %q) = %v, want %v", c.local, c.domain, err, c.want)
		}
	}
	if _, err := e.r.Resolve("daemon", "remote.example"); err != ErrNotLocal {
		t.Errorf("Resolve of a remote domain = %v", err)
	}
}

func TestRecipientDelimiter(t *testing.T) {
	e := newEnv(t, testAliases, "alice@virtual.test:{PLAIN}x\nbob+x@virtual.test:{PLAIN}x\n")
	for _, a := range [][2]string{{"daemon+lists", "example.test"}, {"alice+lists", "virtual.test"}, {"info+other", "example.test"}} {
		if err := e.r.Check(a[0], a[1]); err != nil {
			t.Errorf("Check(%s@%s) = %v", a[0], a[1], err)
		}
	}
	ts, err := e.resolve("daemon+lists", "example.test")
	if err != nil {
		t.Fatal(err)
	}
	same(t, ts, e.mbox("daemon", "example.test")) // the base address
	// The address as is comes first: info+sales has an alias of its own.
	ts, _ = e.resolve("info+sales", "example.test")
	same(t, ts, remote("bob@remote.example"))
	ts, _ = e.resolve("info+other", "example.test")
	same(t, ts, e.mbox("daemon", "example.test"))
	// A virtual user whose name has the delimiter is found as is.
	ts, _ = e.resolve("bob+x", "virtual.test")
	if len(ts) != 1 || ts[0].Address != "bob+x@virtual.test" {
		t.Fatalf("bob+x: %v", ts)
	}
	ts, _ = e.resolve("alice+x", "virtual.test")
	if len(ts) != 1 || ts[0].Address != "alice@virtual.test" {
		t.Fatalf("alice+x: %v", ts)
	}
	// A delimiter first would leave no user: not split.
	if err := e.r.Check("+daemon", "example.test"); err != ErrUnknownUser {
		t.Errorf("+daemon: %v", err)
	}

	e.cfg.RecipientDelimiter = ""
	if err := e.r.Check("daemon+lists", "example.test"); err != ErrUnknownUser {
		t.Errorf("without a delimiter: %v", err)
	}
	e.cfg.RecipientDelimiter = "+-"
	for _, l := range []string{"daemon-x", "daemon+x"} {
		if err := e.r.Check(l, "example.test"); err != nil {
			t.Errorf("delimiters +-: Check(%s) = %v", l, err)
		}
	}
	// Postfix never splits owner-* and *-request when "-" is a delimiter.
	if got := e.r.base("owner-daemon"); got != "owner-daemon" {
		t.Errorf("base(owner-daemon) = %q", got)
	}
	if got := e.r.base("daemon-request"); got != "daemon-request" {
		t.Errorf("base(daemon-request) = %q", got)
	}
	if got := e.r.base("mailer-daemon"); got != "mailer-daemon" {
		t.Errorf("base(mailer-daemon) = %q", got)
	}
}

func TestPostmasterAlwaysAccepted(t *testing.T) {
	e := newEnv(t, "", "")
	for _, d := range []string{"", "example.test", "localhost", "virtual.test", "VIRTUAL.TEST"} {
		for _, l := range []string{"postmaster", "PostMaster"} {
			if err := e.r.Check(l, d); err != nil {
				t.Errorf("Check(%s@%s) = %v", l, d, err)
			}
		}
	}
	if err := e.r.Check("postmaster", "remote.example"); err != ErrNotLocal {
		t.Errorf("postmaster of a remote domain: %v", err)
	}
	// No aliases at all: the system user root.
	ts, err := e.resolve("postmaster", "virtual.test")
	if err != nil {
		t.Fatal(err)
	}
	same(t, ts, e.mbox("root", "mx.example.test"))
	ts, _ = e.resolve("postmaster", "example.test")
	same(t, ts, e.mbox("root", "example.test"))

	// root's alias applies when postmaster has none.
	e.write("aliases", "root: daemon\n")
	ts, _ = e.resolve("postmaster", "example.test")
	same(t, ts, e.mbox("daemon", "example.test"))

	// postmaster's own alias wins.
	e.write("aliases", "root: daemon\npostmaster: ops@remote.example\n")
	ts, _ = e.resolve("postmaster", "")
	same(t, ts, remote("ops@remote.example"))

	// A virtual domain with its own postmaster user keeps it.
	e.write("users", "postmaster@virtual.test:{PLAIN}x\n")
	ts, _ = e.resolve("postmaster", "virtual.test")
	if len(ts) != 1 || ts[0].Kind != Maildir || ts[0].Address != "postmaster@virtual.test" {
		t.Fatalf("virtual postmaster: %v", ts)
	}
}

func TestSystemUserMailboxes(t *testing.T) {
	e := newEnv(t, "", "")
	d := sysUser(t, "daemon")
	ts, err := e.resolve("daemon", "example.test")
	if err != nil {
		t.Fatal(err)
	}
	same(t, ts, e.mbox("daemon", "example.test"))

	e.cfg.Local.HomeMailbox = "Maildir/"
	ts, _ = e.resolve("daemon", "example.test")
	if len(ts) != 1 || ts[0].Kind != Maildir || ts[0].Path != filepath.Join(d.HomeDir, "Maildir") || ts[0].User != "daemon" {
		t.Fatalf("Maildir: %v", ts)
	}
	e.cfg.Local.HomeMailbox = "Mailbox"
	ts, _ = e.resolve("daemon", "example.test")
	if len(ts) != 1 || ts[0].Kind != Mbox || ts[0].Path != filepath.Join(d.HomeDir, "Mailbox") {
		t.Fatalf("home mbox: %v", ts)
	}
	ts, err = e.resolve("no-such-user", "example.test")
	if ts != nil || !errors.Is(err, ErrUnknownUser) || !strings.Contains(err.Error(), "no-such-user@example.test") {
		t.Fatalf("unknown: %v %v", ts, err)
	}
	e.cfg.Local.HomeMailbox = ""
	ts, _ = e.resolve("daemon", "")
	same(t, ts, e.mbox("daemon", "mx.example.test")) // unqualified: myhostname
}

func TestVirtualUsers(t *testing.T) {
	e := newEnv(t, "", "Alice@Virtual.Test:{PLAIN}x\n..@virtual.test:{PLAIN}x\n")
	ts, err := e.resolve("ALICE+tag", "virtual.test")
	if err != nil {
		t.Fatal(err)
	}
	want := Target{Kind: Maildir, Address: "alice@virtual.test", User: "alice@virtual.test",
		UID: os.Getuid(), GID: os.Getgid(), Path: filepath.Join(e.dir, "vmail/virtual.test/alice/Maildir")}
	same(t, ts, want)

	// A name that would leave the mail folder never becomes a path.
	ts, err = e.resolve("..", "virtual.test")
	if ts != nil || err == nil || !strings.Contains(err.Error(), "cannot be part of a mailbox path") {
		t.Fatalf("..: %v %v", ts, err)
	}
	if _, err := mailboxPath("/v/%d/%n", "a/b", "d"); err == nil {
		t.Fatal("slash in a user name accepted")
	}
	if p, _ := mailboxPath("/v/%u/%%/%x/%", "a", "d"); p != "/v/a@d/%/%x/%" {
		t.Fatalf("template: %q", p)
	}

	ts, err = e.resolve("bob", "virtual.test")
	if ts != nil || !errors.Is(err, ErrUnknownUser) {
		t.Fatalf("unknown virtual user: %v %v", ts, err)
	}

	d := sysUser(t, "daemon")
	e2 := newEnv(t, "", "alice@virtual.test:{PLAIN}x\n")
	e2.cfg.Virtual.User, e2.cfg.Virtual.Group = "daemon", "mail"
	ts, err = e2.resolve("alice", "virtual.test")
	if err != nil {
		t.Fatal(err)
	}
	g, err := user.LookupGroup("mail")
	if err != nil {
		t.Skip(err)
	}
	if fmt.Sprint(ts[0].UID) != d.Uid || fmt.Sprint(ts[0].GID) != g.Gid {
		t.Fatalf("owner %d:%d, want %s:%s", ts[0].UID, ts[0].GID, d.Uid, g.Gid)
	}
	e3 := newEnv(t, "", "alice@virtual.test:{PLAIN}x\n")
	e3.cfg.Virtual.User = "no-such-vmail-user"
	if _, err := e3.resolve("alice", "virtual.test"); err == nil || errors.Is(err, ErrUnknownUser) ||
		!strings.Contains(err.Error(), "virtual.user: user: unknown user no-such-vmail-user") {
		t.Fatalf("missing vmail user: %v", err)
	}
	// Numeric ids work too.
	e4 := newEnv(t, "", "alice@virtual.test:{PLAIN}x\n")
	e4.cfg.Virtual.User, e4.cfg.Virtual.Group = d.Uid, g.Gid
	ts, err = e4.resolve("alice", "virtual.test")
	if err != nil || fmt.Sprint(ts[0].UID) != d.Uid || fmt.Sprint(ts[0].GID) != g.Gid {
		t.Fatalf("numeric owner: %v %v", ts, err)
	}
}

func TestAliasExpansion(t *testing.T) {
	e := newEnv(t, testAliases+`
list: info, root@Example.Test, daemon@localhost, alice@virtual.test, <carol@Remote.Example>
fwd: alice@virtual.test
`, "alice@virtual.test:{PLAIN}x\n")
	ts, err := e.resolve("root", "example.test")
	if err != nil {
		t.Fatal(err)
	}
	same(t, ts,
		e.mbox("daemon", "example.test"),
		remote("Bob@remote.example"), // remote local parts keep their case
		e.dest(Pipe, "root@example.test", "/usr/bin/procmail -a x", config.FromAlias),
		e.dest(File, "root@example.test", "/var/log/mail-archive", config.FromAlias),
	)
	ts, err = e.resolve("list", "example.test")
	if err != nil {
		t.Fatal(err)
	}
	alice := Target{Kind: Maildir, Address: "alice@virtual.test", User: "alice@virtual.test",
		UID: os.Getuid(), GID: os.Getgid(), Path: filepath.Join(e.dir, "vmail/virtual.test/alice/Maildir")}
	same(t, ts,
		e.mbox("daemon", "example.test"),
		e.mbox("daemon", "localhost"), // a different address for Delivered-To
		remote("Bob@remote.example"),
		e.dest(Pipe, "root@example.test", "/usr/bin/procmail -a x", config.FromAlias),
		e.dest(File, "root@example.test", "/var/log/mail-archive", config.FromAlias),
		alice,
		remote("carol@remote.example"),
	)
	ts, _ = e.resolve("fwd", "example.test")
	same(t, ts, alice)
}

func TestSelfReferenceDeliversToUser(t *testing.T) {
	e := newEnv(t, "daemon: daemon, copy@remote.example\nDaemon+x: daemon+x\n", "")
	ts, err := e.resolve("daemon", "example.test")
	if err != nil {
		t.Fatal(err)
	}
	same(t, ts, e.mbox("daemon", "example.test"), remote("copy@remote.example"))
	ts, err = e.resolve("daemon+x", "example.test")
	if err != nil {
		t.Fatal(err)
	}
	same(t, ts, e.mbox("daemon", "example.test"))
}

func TestAliasLoopFails(t *testing.T) {
	e := newEnv(t, "a: b\nb: c, daemon\nc: x@remote.example, a\n", "")
	ts, err := e.resolve("a", "example.test")
	if ts != nil || err == nil || !strings.Contains(err.Error(), "alias loop: a -> b -> c -> a") {
		t.Fatalf("loop: %v %v", ts, err)
	}
	if errors.Is(err, ErrUnknownUser) {
		t.Fatal("a loop is not an unknown user")
	}
	// Reaching one alias twice without a cycle is no loop.
	e.write("aliases", "a: b, c\nb: d\nc: d\nd: daemon\n")
	ts, err = e.resolve("a", "example.test")
	if err != nil {
		t.Fatal(err)
	}
	same(t, ts, e.mbox("daemon", "example.test"))
}

func TestLongAliasChainFails(t *testing.T) {
	var b strings.Builder
	for i := 0; i < 1000; i++ {
		fmt.Fprintf(&b, "a%d: a%d\n", i, i+1)
	}
	b.WriteString("a1000: daemon\n")
	e := newEnv(t, b.String(), "")
	start := time.Now()
	ts, err := e.resolve("a0", "example.test")
	if ts != nil || err == nil || !strings.Contains(err.Error(), fmt.Sprintf("nested deeper than %d", MaxDepth)) {
		t.Fatalf("chain: %v %v", ts, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
	// A chain just within the limit works.
	ts, err = e.resolve(fmt.Sprintf("a%d", 1000-MaxDepth+1), "example.test")
	if err != nil {
		t.Fatal(err)
	}
	same(t, ts, e.mbox("daemon", "example.test"))
}

func TestExpansionSizeLimit(t *testing.T) {
	members := func(prefix string, n int) string {
		var m []string
		for i := 0; i < n; i++ {
			m = append(m, fmt.Sprintf("%s%d@remote.example", prefix, i))
		}
		return strings.Join(m, ", ")
	}
	e := newEnv(t, "full: "+members("u", MaxTargets)+"\n"+
		"l1: "+members("v", 600)+"\nl2: "+members("w", 600)+"\nbig: l1, l2\n", "")
	ts, err := e.resolve("full", "example.test")
	if err != nil || len(ts) != MaxTargets {
		t.Fatalf("%d targets: %v", len(ts), err)
	}
	ts, err = e.resolve("big", "example.test")
	if ts != nil || err == nil || !strings.Contains(err.Error(), fmt.Sprintf("more than %d recipients", MaxTargets)) {
		t.Fatalf("big: %d %v", len(ts), err)
	}
}

func TestManyAliasesNamingEachOtherTerminate(t *testing.T) {
	// 300 aliases that each list all 300: every path is a cycle.
	var names []string
	for i := 0; i < 300; i++ {
		names = append(names, fmt.Sprintf("n%d", i))
	}
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "%s: %s\n", n, strings.Join(names, ","))
	}
	e := newEnv(t, b.String(), "")
	if _, err := e.resolve("n0", "example.test"); err == nil {
		t.Fatal("cyclic aliases resolved")
	}
	// Layers that fan out without cycles: each alias is expanded once.
	b.Reset()
	for l := 0; l < 30; l++ {
		fmt.Fprintf(&b, "l%d: l%da, l%db\nl%da: l%d\nl%db: l%d\n", l, l, l, l, l+1, l, l+1)
	}
	b.WriteString("l30: daemon\n")
	e.write("aliases", b.String())
	ts, err := e.resolve("l0", "example.test")
	if err != nil {
		t.Fatal(err)
	}
	same(t, ts, e.mbox("daemon", "example.test"))
}

func TestPartialFailureKeepsGoodMembers(t *testing.T) {
	e := newEnv(t, "list: daemon, gone, x@remote.example, ghost@virtual.test\n", "")
	ts, err := e.resolve("list", "example.test")
	same(t, ts, e.mbox("daemon", "example.test"), remote("x@remote.example"))
	if !errors.Is(err, ErrUnknownUser) || !strings.Contains(err.Error(), "gone@example.test") ||
		!strings.Contains(err.Error(), "ghost@virtual.test") {
		t.Fatalf("err = %v", err)
	}
}

// syncBuffer collects log lines written from any goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func captureLog(t *testing.T) *syncBuffer {
	var buf syncBuffer
	maillog.Default().SetOutput(&buf)
	t.Cleanup(func() { maillog.Default().SetOutput(os.Stderr) })
	return &buf
}

func TestTablesReloadWhenChanged(t *testing.T) {
	log := captureLog(t)
	e := newEnv(t, "", "") // neither file exists yet
	if err := e.r.Check("sales", "example.test"); err != ErrUnknownUser {
		t.Fatalf("before: %v", err)
	}
	if err := e.r.Check("alice", "virtual.test"); err != ErrUnknownUser {
		t.Fatalf("before: %v", err)
	}
	e.write("aliases", "sales: daemon\n")
	e.write("users", "alice@virtual.test:{PLAIN}x\n")
	if err := e.r.Check("sales", "example.test"); err != nil {
		t.Fatalf("new alias: %v", err)
	}
	if err := e.r.Check("alice", "virtual.test"); err != nil {
		t.Fatalf("new user: %v", err)
	}

	// A broken file keeps the last good version, with one warning.
	e.write("aliases", "sales: daemon\nbroken line\n")
	e.write("users", "alice@virtual.test:{PLAIN}x:bad-uid-name-here\n")
	for i := 0; i < 3; i++ {
		if err := e.r.Check("sales", "example.test"); err != nil {
			t.Fatalf("broken aliases: %v", err)
		}
		if err := e.r.Check("alice", "virtual.test"); err != nil {
			t.Fatalf("broken users: %v", err)
		}
	}
	out := log.String()
	if strings.Count(out, "warning: aliases file: ") != 1 || !strings.Contains(out, "aliases:2: missing ':'") ||
		strings.Count(out, "warning: users file: ") != 1 {
		t.Fatalf("log:\n%s", out)
	}

	// Fixed: the new version is used.
	e.write("aliases", "support: daemon\n")
	if err := e.r.Check("sales", "example.test"); err != ErrUnknownUser {
		t.Fatalf("removed alias: %v", err)
	}
	if err := e.r.Check("support", "example.test"); err != nil {
		t.Fatalf("new alias: %v", err)
	}
	// Removed: an empty table, not the old one.
	os.Remove(filepath.Join(e.dir, "aliases"))
	if err := e.r.Check("support", "example.test"); err != ErrUnknownUser {
		t.Fatalf("deleted file: %v", err)
	}
}

func TestBrokenTableWithoutGoodVersionDefers(t *testing.T) {
	captureLog(t)
	e := newEnv(t, "no colon\n", "a@virtual.test:x:-5\n")
	for _, a := range [][2]string{{"anyone", "example.test"}, {"a", "virtual.test"}} {
		err := e.r.Check(a[0], a[1])
		if err == nil || err == ErrUnknownUser || err == ErrNotLocal {
			t.Errorf("Check(%s@%s) = %v, want a temporary error", a[0], a[1], err)
		}
		ts, err := e.r.Resolve(a[0], a[1])
		if ts != nil || err == nil || errors.Is(err, ErrUnknownUser) {
			t.Errorf("Resolve(%s@%s) = %v %v", a[0], a[1], ts, err)
		}
	}
	// Postmaster needs no table.
	if err := e.r.Check("postmaster", "example.test"); err != nil {
		t.Fatal(err)
	}
}

func TestConcurrentLookupsDuringReload(t *testing.T) {
	captureLog(t)
	e := newEnv(t, "sales: daemon\n", "")
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := e.r.Check("sales", "example.test"); err != nil {
					t.Error(err)
					return
				}
				if _, err := e.r.Resolve("sales", "example.test"); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for i := 0; i < 50; i++ {
		e.write("aliases", fmt.Sprintf("sales: daemon\nx%d: daemon\n", i))
	}
	close(stop)
	wg.Wait()
}

func TestKindString(t *testing.T) {
	for k, s := range map[Kind]string{Maildir: "maildir", Mbox: "mbox", Remote: "remote", Pipe: "pipe", File: "file", 0: "Kind(0)"} {
		if k.String() != s {
			t.Errorf("%d: %q", int(k), k.String())
		}
	}
}

func BenchmarkCheck(b *testing.B) {
	dir := b.TempDir()
	cfg := config.Defaults()
	cfg.LocalDomains = []string{"example.test"}
	cfg.AliasFile = filepath.Join(dir, "aliases")
	os.WriteFile(cfg.AliasFile, []byte(testAliases), 0644)
	r := New(cfg)
	for i := 0; i < b.N; i++ {
		if err := r.Check("daemon+x", "example.test"); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzResolve(f *testing.F) {
	f.Add(testAliases, "root")
	f.Add("a: b\nb: a\n", "a")
	f.Fuzz(func(t *testing.T, aliasText, local string) {
		al, err := aliases.Parse(strings.NewReader(aliasText), "f")
		if err != nil {
			return
		}
		cfg := config.Defaults()
		cfg.Hostname = "mx.example.test"
		cfg.LocalDomains = []string{"mx.example.test", "example.test"}
		cfg.Virtual.Domains = []string{"virtual.test"}
		cfg.Virtual.UsersFile = ""
		cfg.Virtual.User, cfg.Virtual.Group = "", ""
		r := New(cfg)
		// Any existing file will do as the aliases path: load ignores it.
		r.aliases = cached[*aliasTable]{path: os.Args[0], what: "aliases file",
			load: func(string) (*aliasTable, error) { return &aliasTable{m: al, uid: -1, gid: -1}, nil }}
		r.users = cached[*userdb.DB]{path: "", empty: &userdb.DB{}}
		r.SetOpener(func(req OpenRequest) (*os.File, error) {
			return nil, &fs.PathError{Op: "open", Path: req.Path, Err: fs.ErrNotExist}
		})
		ts, err := r.Resolve(local, "example.test")
		if err == nil && len(ts) == 0 {
			t.Fatal("no targets and no error")
		}
		if len(ts) > MaxTargets {
			t.Fatalf("%d targets", len(ts))
		}
		seen := map[Target]bool{}
		for _, tg := range ts {
			if seen[tg] {
				t.Fatalf("duplicate target %v", tg)
			}
			seen[tg] = true
			if tg.Kind == Remote {
				dom := tg.Address[strings.LastIndexByte(tg.Address, '@')+1:]
				if cfg.IsLocalDomain(dom) || cfg.IsVirtualDomain(dom) {
					t.Fatalf("local address %s resolved as remote", tg.Address)
				}
			}
		}
		if err := r.Check(local, "example.test"); err == ErrNotLocal {
			t.Fatal("local domain reported as not local")
		}
	})
}
