package recipient

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"

	"github.com/posthorn/posthorn/pkg/config"
)

// me is the user running the test, whose ~/.forward the tests map to a
// file of their own: as root or not, the file then belongs to its user.
func me(t *testing.T) *user.User {
	u, err := user.Current()
	if err != nil {
		t.Skip(err)
	}
	return u
}

// forward maps ~name/.forward to a test file with content and mode.
func (e *env) forward(u *user.User, content string, mode os.FileMode) string {
	e.t.Helper()
	p := filepath.Join(e.dir, "forward-"+u.Username)
	os.Remove(p)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		e.t.Fatal(err)
	}
	os.Chmod(p, mode)
	e.files[filepath.Join(u.HomeDir, ".forward")] = p
	return p
}

// cmdUser is whose rights run the commands of my .forward: mine, or
// default_privs' when I am root.
func cmdUser(u *user.User) string {
	if u.Uid == "0" {
		return "nobody"
	}
	return u.Username
}

func failures(t *testing.T, err error) []*Failure {
	t.Helper()
	fs, ok := Failures(err)
	if !ok {
		t.Fatalf("not only permanent failures: %v", err)
	}
	return fs
}

func TestDotForward(t *testing.T) {
	e := newEnv(t, "", "")
	u := me(t)
	mbox := e.mbox(u.Username, "example.test")
	e.forward(u, "# my forwards\n\\"+u.Username+", other@Remote.Example\nbob\n\"|/usr/bin/vacation "+u.Username+"\"\n/tmp/copy\n", 0644)
	ts, err := e.resolve(u.Username, "example.test")
	if err != nil {
		t.Fatal(err)
	}
	same(t, ts, mbox,
		Target{Kind: Forward, Address: "other@remote.example", UID: -1, GID: -1},
		Target{Kind: Forward, Address: "bob@example.test", UID: -1, GID: -1},
		e.destAs(Pipe, u.Username+"@example.test", "/usr/bin/vacation "+u.Username, config.FromForward, cmdUser(u)),
		e.destAs(File, u.Username+"@example.test", "/tmp/copy", config.FromForward, cmdUser(u)),
	)
	// The file was opened as the user, never following a link.
	found := false
	for _, r := range e.opened {
		if r.Path == filepath.Join(u.HomeDir, ".forward") {
			found = true
			if fmt.Sprint(r.UID) != u.Uid || fmt.Sprint(r.GID) != u.Gid || !r.NoFollow {
				t.Errorf("opened as %+v", r)
			}
		}
	}
	if !found {
		t.Fatal("~/.forward was not opened")
	}

	// An alias that reaches the user reaches the .forward too; with an
	// extension as well.
	e.write("aliases", "team: "+u.Username+"\n")
	ts, _ = e.resolve("team+x", "example.test")
	if len(ts) != 5 {
		t.Fatalf("through an alias: %v", ts)
	}

	// Empty or only comments: the mailbox.
	for _, content := range []string{"", "# nothing\n\n"} {
		e.forward(u, content, 0600)
		ts, err = e.resolve(u.Username, "example.test")
		if err != nil {
			t.Fatal(err)
		}
		same(t, ts, mbox)
	}
	// Only the user itself, with a domain.
	e.forward(u, u.Username+"@localhost\n", 0600)
	ts, _ = e.resolve(u.Username, "example.test")
	same(t, ts, mbox)
}

// TestDotForwardIgnoredWhenUnsafe is HOSTILE 50: a ~/.forward that is a
// symbolic link, not a regular file, writable by group or others, or owned
// by another user is ignored with a warning, and the mail goes to the
// mailbox.
func TestDotForwardIgnoredWhenUnsafe(t *testing.T) {
	log := captureLog(t)
	e := newEnv(t, "", "")
	u := me(t)
	mbox := e.mbox(u.Username, "example.test")
	fwd := filepath.Join(u.HomeDir, ".forward")
	check := func(what, warning string) {
		t.Helper()
		ts, err := e.resolve(u.Username, "example.test")
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		same(t, ts, mbox)
		if !strings.Contains(log.String(), "warning: ignoring "+fwd+" of "+u.Username+": "+warning) {
			t.Fatalf("%s: log:\n%s", what, log.String())
		}
	}

	real := e.forward(u, "elsewhere@remote.example\n", 0644)
	link := filepath.Join(e.dir, "link")
	os.Symlink(real, link)
	e.files[fwd] = link
	check("symlink", "it is a symbolic link")

	e.forward(u, "elsewhere@remote.example\n", 0664)
	check("group-writable", "writable by group or others (mode 0664)")
	e.forward(u, "elsewhere@remote.example\n", 0606)
	check("world-writable", "writable by group or others (mode 0606)")

	dir := filepath.Join(e.dir, "dir")
	os.Mkdir(dir, 0755)
	e.files[fwd] = dir
	check("folder", "not a regular file")

	big := e.forward(u, strings.Repeat("x@remote.example\n", MaxFileSize/17+1), 0644)
	if fi, _ := os.Stat(big); fi.Size() <= MaxFileSize {
		t.Fatal("the test file is not over the limit")
	}
	check("too big", fmt.Sprintf("larger than %d bytes", MaxFileSize))

	e.forward(u, "a\x00b\n", 0644)
	check("control character", "line 1: control character")

	if os.Geteuid() == 0 {
		p := e.forward(u, "elsewhere@remote.example\n", 0644)
		os.Chown(p, 1, 1)
		check("owned by another user", "owned by uid 1, neither the user nor root")
	}

	// Just under the limit is read.
	e.forward(u, strings.Repeat("#", MaxFileSize-len("x@remote.example\n"))+"\nx@remote.example\n", 0644)
	if fi, _ := os.Stat(e.files[fwd]); fi.Size() > MaxFileSize+1 {
		t.Fatalf("size %d", fi.Size())
	}
}

func TestDotForwardCommandsAndFilesAllowed(t *testing.T) {
	e := newEnv(t, "", "")
	u := me(t)
	e.cfg.Local.AllowMailToCommands = []string{config.FromAlias}
	e.cfg.Local.AllowMailToFiles = []string{config.FromAlias}
	e.forward(u, "|/bin/true\n/tmp/x\n", 0644)
	ts, err := e.resolve(u.Username, "example.test")
	fs := failures(t, err)
	if ts != nil || len(fs) != 2 || fs[0].DSN != "5.7.1" ||
		fs[0].Text != "mail to command is restricted: |/bin/true in a .forward file" ||
		fs[1].Text != "mail to file is restricted: /tmp/x in a .forward file" {
		t.Fatalf("%v %q", ts, err)
	}
}

func TestAliasRights(t *testing.T) {
	e := newEnv(t, "cmd: |/bin/cmd\n", "")
	ts, err := e.resolve("cmd", "example.test")
	if err != nil {
		t.Fatal(err)
	}
	same(t, ts, e.dest(Pipe, "cmd@example.test", "/bin/cmd", config.FromAlias))
	if os.Geteuid() != 0 {
		return
	}
	// A root-owned aliases file runs as default_privs, any other as its
	// owner (local(8) DELIVERY RIGHTS).
	if ts[0].User != "nobody" || ts[0].UID == 0 {
		t.Fatalf("root's aliases: %v", ts)
	}
	os.Chown(filepath.Join(e.dir, "aliases"), 1, 1)
	ts, _ = e.resolve("cmd", "example.test")
	same(t, ts, e.destAs(Pipe, "cmd@example.test", "/bin/cmd", config.FromAlias, "daemon"))

	// default_privs must not be root.
	e2 := newEnv(t, "cmd: |/bin/cmd\n", "")
	e2.cfg.Local.DefaultPrivs = "0"
	if _, err := e2.resolve("cmd", "example.test"); err == nil || !strings.Contains(err.Error(), "must not be privileged") {
		t.Fatalf("default_privs root: %v", err)
	}
	e3 := newEnv(t, "cmd: |/bin/cmd\n", "")
	e3.cfg.Local.DefaultPrivs = "no-such-user-here"
	if _, err := e3.resolve("cmd", "example.test"); err == nil || errors.Is(err, ErrUnknownUser) {
		t.Fatalf("default_privs unknown: %v", err)
	}
}

func TestInclude(t *testing.T) {
	e := newEnv(t, "", "")
	inc := filepath.Join(e.dir, "staff.inc")
	os.WriteFile(inc, []byte("# the staff\ndaemon\n  x@remote.example, \"|/bin/list-archive\"\n/var/lib/list\n"), 0644)
	e.write("aliases", "staff: root@remote.example, :include:"+inc+"\n")
	ts, err := e.resolve("staff", "example.test")
	fs := failures(t, err)
	// Commands and files are not allowed in includes by default.
	same(t, ts, remote("root@remote.example"), e.mbox("daemon", "example.test"), remote("x@remote.example"))
	if len(fs) != 2 || fs[0].DSN != "5.7.1" || !strings.Contains(fs[0].Text, "|/bin/list-archive in an :include: file") ||
		!strings.Contains(fs[1].Text, "mail to file is restricted: /var/lib/list") {
		t.Fatalf("%v", err)
	}
	e.cfg.Local.AllowMailToCommands = []string{config.FromAlias, config.FromInclude}
	e.cfg.Local.AllowMailToFiles = []string{config.FromInclude}
	ts, err = e.resolve("staff", "example.test")
	if err != nil {
		t.Fatal(err)
	}
	same(t, ts, remote("root@remote.example"), e.mbox("daemon", "example.test"), remote("x@remote.example"),
		e.dest(Pipe, "staff@example.test", "/bin/list-archive", config.FromInclude),
		e.dest(File, "staff@example.test", "/var/lib/list", config.FromInclude))
	if os.Geteuid() == 0 {
		// In a root-owned aliases file, a non-root include file's owner
		// runs what it names.
		os.Chown(inc, 1, 1)
		ts, _ = e.resolve("staff", "example.test")
		same(t, ts, remote("root@remote.example"), e.mbox("daemon", "example.test"), remote("x@remote.example"),
			e.destAs(Pipe, "staff@example.test", "/bin/list-archive", config.FromInclude, "daemon"),
			e.destAs(File, "staff@example.test", "/var/lib/list", config.FromInclude, "daemon"))
	}

	// An include that includes itself ends.
	self := filepath.Join(e.dir, "self.inc")
	os.WriteFile(self, []byte("daemon, :include:"+self+"\n"), 0644)
	e.write("aliases", "loop: :include:"+self+"\n")
	ts, err = e.resolve("loop", "example.test")
	if err != nil {
		t.Fatalf("self include: %v", err)
	}
	same(t, ts, e.mbox("daemon", "example.test"))

	// Broken includes bounce (5.3.5), the other members are delivered.
	world := filepath.Join(e.dir, "world.inc")
	os.WriteFile(world, []byte("daemon\n"), 0646)
	os.Chmod(world, 0646)
	dir := filepath.Join(e.dir, "folder.inc")
	os.Mkdir(dir, 0755)
	big := filepath.Join(e.dir, "big.inc")
	os.WriteFile(big, []byte(strings.Repeat("daemon\n", MaxFileSize/7+1)), 0644)
	for _, c := range []struct{ member, text string }{
		{":include:relative.inc", "is not an absolute path"},
		{":include:" + filepath.Join(e.dir, "missing.inc"), "no such file or directory"},
		{":include:" + world, "writable by everyone"},
		{":include:" + dir, "not a regular file"},
		{":include:" + big, fmt.Sprintf("larger than %d bytes", MaxFileSize)},
	} {
		e.write("aliases", "list: x@remote.example, "+c.member+"\n")
		ts, err := e.resolve("list", "example.test")
		fs := failures(t, err)
		if len(ts) != 1 || len(fs) != 1 || fs[0].DSN != "5.3.5" || !strings.Contains(fs[0].Text, c.text) {
			t.Errorf("%s: %v %v", c.member, ts, err)
		}
	}
}

func TestIncludeInDotForwardReadAsUser(t *testing.T) {
	e := newEnv(t, "", "")
	u := me(t)
	inc := filepath.Join(e.dir, "mine.inc")
	os.WriteFile(inc, []byte(u.Username+"\nfriend@remote.example\n"), 0644)
	e.forward(u, ":include:"+inc+"\n", 0644)
	ts, err := e.resolve(u.Username, "example.test")
	if err != nil {
		t.Fatal(err)
	}
	same(t, ts, e.mbox(u.Username, "example.test"), Target{Kind: Forward, Address: "friend@remote.example", UID: -1, GID: -1})
	for _, r := range e.opened {
		if r.Path == inc && (fmt.Sprint(r.UID) != u.Uid || r.NoFollow) {
			t.Errorf("include opened as %+v", r)
		}
	}
}

func TestFailuresAndExtension(t *testing.T) {
	if fs, ok := Failures(nil); !ok || fs != nil {
		t.Error("nil")
	}
	a := &Failure{DSN: "5.1.1", Text: "a", err: ErrUnknownUser}
	b := &Failure{DSN: "5.7.1", Text: "b"}
	if fs, ok := Failures(errors.Join(a, errors.Join(b))); !ok || len(fs) != 2 || fs[1] != b {
		t.Errorf("%v %v", fs, ok)
	}
	if _, ok := Failures(errors.Join(a, errors.New("temporary"))); ok {
		t.Error("a temporary error passed as permanent")
	}
	if !errors.Is(errors.Join(b, a), ErrUnknownUser) {
		t.Error("unknown user not found")
	}
	e := newEnv(t, "", "")
	e.cfg.RecipientDelimiter = "+-"
	for l, want := range map[string]string{"alice+x": "x", "alice-y+z": "y+z", "alice": "", "+alice": "", "postmaster+x": "x", "owner-x": ""} {
		if got := e.r.Extension(l); got != want {
			t.Errorf("Extension(%s) = %q, want %q", l, got, want)
		}
	}
}

func TestBackslashUserInAliases(t *testing.T) {
	e := newEnv(t, "daemon: \\daemon, x@remote.example\nops: \\Daemon\n", "")
	ts, err := e.resolve("daemon", "example.test")
	if err != nil {
		t.Fatal(err)
	}
	same(t, ts, e.mbox("daemon", "example.test"), remote("x@remote.example"))
	ts, _ = e.resolve("ops", "example.test")
	same(t, ts, e.mbox("daemon", "example.test"))
	// Its .forward is not read.
	for _, r := range e.opened {
		if strings.HasSuffix(r.Path, "/.forward") {
			t.Errorf("opened %s", r.Path)
		}
	}
}
