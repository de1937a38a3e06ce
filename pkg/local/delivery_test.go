package local

import (
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/posthorn/posthorn/pkg/agent"
	"github.com/posthorn/posthorn/pkg/config"
	"github.com/posthorn/posthorn/pkg/mbox"
)

// The test binary is also the worker program: run as "worker HOST" it
// serves its parent as cmd/local does. As root, workers run as other users,
// so the binary is copied where they can run it.
func TestMain(m *testing.M) {
	if len(os.Args) == 3 && os.Args[1] == WorkerArg {
		if err := RunWorker(os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	cleanup := func() {}
	if os.Geteuid() == 0 {
		dir, err := os.MkdirTemp("", "posthorn-local-test-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Chmod(dir, 0755)
		exe, _ := os.Executable()
		b, err := os.ReadFile(exe)
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, "local.test"), b, 0755)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		executable = func() (string, error) { return filepath.Join(dir, "local.test"), nil }
		cleanup = func() { os.RemoveAll(dir) }
	}
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// open makes the test's folder reachable by the users workers run as.
func openUp(t *testing.T, dir string) {
	for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0755)
	}
}

// cmdUser is who runs the commands and writes the files of the test's
// aliases file: default_privs (nobody) when it belongs to root, else the
// test's own user.
func cmdUser(t *testing.T) *user.User {
	name := "nobody"
	if os.Geteuid() != 0 {
		me, _ := user.Current()
		name = me.Username
	}
	u, err := user.Lookup(name)
	if err != nil {
		t.Skip(err)
	}
	return u
}

// mboxUser is a system user whose mailbox the tests write: as root one
// that is not root (so a worker with the mail group writes it), otherwise
// the test's own user.
func mboxUser(t *testing.T) *user.User {
	if os.Geteuid() == 0 {
		u, err := user.Lookup("daemon")
		if err != nil {
			t.Skip(err)
		}
		return u
	}
	u, _ := user.Current()
	return u
}

func mboxFixture(t *testing.T, tweak func(*config.Config)) *fixture {
	f := newFixture(t, func(c *config.Config) {
		c.Local.HomeMailbox = ""
		c.Local.LockTimeout = config.Duration(300 * time.Millisecond)
		if tweak != nil {
			tweak(c)
		}
	})
	spoolDir := f.cfg.Local.MailSpoolDir
	os.Mkdir(spoolDir, 0775)
	if g, err := user.LookupGroup("mail"); err == nil && os.Geteuid() == 0 {
		// Debian's /var/mail: 2775 root:mail.
		gid, _ := strconv.Atoi(g.Gid)
		os.Chown(spoolDir, 0, gid)
		os.Chmod(spoolDir, 0775|os.ModeSetgid)
	}
	openUp(t, filepath.Dir(spoolDir))
	return f
}

func readMbox(t *testing.T, path string) []*mbox.Message {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	ms, err := mbox.ReadAll(fh)
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

func TestMboxDelivery(t *testing.T) {
	f := mboxFixture(t, nil)
	u := mboxUser(t)
	path := filepath.Join(f.cfg.Local.MailSpoolDir, u.Username)
	for i, sender := range []string{"s@example.org", ""} {
		rep := f.deliverMsg(t, sender, u.Username+"+x@localhost", fmt.Sprintf("Subject: %d\n\nFrom me\n>From you\n", i))
		if rep.Status != agent.Sent || rep.Text != "delivered to mailbox" {
			t.Fatalf("reply %+v\n%s", rep, f.log)
		}
	}
	ms := readMbox(t, path)
	if len(ms) != 2 {
		t.Fatalf("%d messages", len(ms))
	}
	want := "Return-Path: <s@example.org>\nX-Original-To: " + u.Username + "+x@localhost\nDelivered-To: " + u.Username +
		"@localhost\nSubject: 0\n\nFrom me\n>From you\n"
	if string(ms[0].Content) != want || ms[0].Sender != "s@example.org" || ms[1].Sender != "MAILER-DAEMON" {
		t.Fatalf("got %q from %q", ms[0].Content, ms[0].FromLine)
	}
	raw, _ := os.ReadFile(path)
	if !strings.Contains(string(raw), "\n>From me\n>>From you\n\nFrom MAILER-DAEMON ") {
		t.Errorf("mbox file:\n%s", raw)
	}
	fi, _ := os.Stat(path)
	st := fi.Sys().(*syscall.Stat_t)
	uid, _ := strconv.Atoi(u.Uid)
	if int(st.Uid) != uid {
		t.Errorf("mailbox owned by uid %d, want %d", st.Uid, uid)
	}
	if os.Geteuid() == 0 {
		g, _ := user.LookupGroup("mail")
		if g != nil && (strconv.Itoa(int(st.Gid)) != g.Gid || fi.Mode().Perm() != 0660) {
			t.Errorf("mailbox group %d mode %v, want mail (%s) 0660", st.Gid, fi.Mode().Perm(), g.Gid)
		}
	}
	if _, err := os.Lstat(path + ".lock"); !os.IsNotExist(err) {
		t.Errorf("dotlock left behind: %v", err)
	}
}

func TestMboxUnsafeOrLockedDefers(t *testing.T) {
	f := mboxFixture(t, nil)
	u := mboxUser(t)
	path := filepath.Join(f.cfg.Local.MailSpoolDir, u.Username)
	victim := filepath.Join(filepath.Dir(f.cfg.AliasFile), "victim")
	os.WriteFile(victim, []byte("precious\n"), 0666)
	os.Chmod(victim, 0666) // writable: only the link checks keep it safe

	os.Symlink(victim, path)
	rep := f.deliver(t, "s@x", u.Username+"@localhost")
	if rep.Status != agent.Deferred || rep.DSN != "4.2.0" || !strings.Contains(rep.Text, "symbolic link") {
		t.Errorf("symlink: %+v", rep)
	}
	os.Remove(path)
	os.Link(victim, path)
	rep = f.deliver(t, "s@x", u.Username+"@localhost")
	if rep.Status != agent.Deferred || !strings.Contains(rep.Text, "more than one hard link") {
		t.Errorf("hard link: %+v", rep)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
		t.Fatalf("the linked file was written: %q", b)
	}
	os.Remove(path)

	// Another program holds the dotlock: deferred after lock_timeout.
	os.WriteFile(path+".lock", nil, 0644)
	rep = f.deliver(t, "s@x", u.Username+"@localhost")
	if rep.Status != agent.Deferred || rep.DSN != "4.2.0" || !strings.Contains(rep.Text, "locked by another program") {
		t.Errorf("locked: %+v", rep)
	}
	os.Remove(path + ".lock")
	if rep := f.deliver(t, "s@x", u.Username+"@localhost"); rep.Status != agent.Sent {
		t.Errorf("after unlock: %+v", rep)
	}

	// A mailbox of another owner (possible in a group-writable spool) is
	// left alone, as Postfix's strict_mailbox_ownership.
	if g, err := user.LookupGroup("mail"); err == nil && os.Geteuid() == 0 {
		gid, _ := strconv.Atoi(g.Gid)
		os.Chown(path, 0, gid)
		rep = f.deliver(t, "s@x", u.Username+"@localhost")
		if rep.Status != agent.Deferred || !strings.Contains(rep.Text, "not owned by the recipient") {
			t.Errorf("foreign owner: %+v", rep)
		}
	}
}

// script writes a shell script that records who ran it and what it got.
func script(t *testing.T, dir, name, body string) string {
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0755); err != nil {
		t.Fatal(err)
	}
	return p
}

func outDir(t *testing.T, f *fixture) string {
	d := filepath.Join(filepath.Dir(f.cfg.AliasFile), "out")
	os.Mkdir(d, 0777)
	os.Chmod(d, 0777)
	openUp(t, filepath.Dir(d))
	return d
}

func TestCommandAlias(t *testing.T) {
	f := newFixture(t, nil)
	out := outDir(t, f)
	rec := script(t, out, "record", "id -u > "+out+"/uid\nid -G > "+out+"/groups\nenv > "+out+"/env\npwd > "+out+"/pwd\ncat > "+out+"/stdin\n")
	os.WriteFile(f.cfg.AliasFile, []byte("rec: \"|"+rec+"\", alice@example.test\n"), 0644)
	rep := f.deliverMsg(t, "a$(touch "+out+"/pwned)`id`@x.example", "Rec+Ext@localhost", "Subject: cmd\n\nFrom here\n")
	if rep.Status != agent.Sent || rep.Text != "delivered to command: "+rec+", delivered to maildir" {
		t.Fatalf("reply %+v\n%s", rep, f.log)
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	u := cmdUser(t)
	if got := strings.TrimSpace(read("uid")); got != u.Uid {
		t.Errorf("ran as uid %s, want %s (%s)", got, u.Uid, u.Username)
	}
	if got := strings.TrimSpace(read("groups")); got != u.Gid {
		t.Errorf("groups %q, want only %s", got, u.Gid)
	}
	stdin := read("stdin")
	if !strings.HasPrefix(stdin, "From a$(touch_") || !strings.Contains(stdin,
		"\nReturn-Path: <a$(touch "+out+"/pwned)`id`@x.example>\nX-Original-To: Rec+Ext@localhost\nDelivered-To: rec@localhost\nSubject: cmd\n\nFrom here\n") ||
		strings.HasSuffix(stdin, "\n\n") {
		t.Errorf("stdin:\n%s", stdin)
	}
	env := read("env")
	for _, want := range []string{"SENDER=a__touch_" + out + "/pwned__id_@x.example", "RECIPIENT=Rec+Ext@localhost",
		"ORIGINAL_RECIPIENT=Rec+Ext@localhost", "LOCAL=rec+ext", "DOMAIN=localhost", "EXTENSION=ext", "USER=rec",
		"LOGNAME=" + u.Username, "HOME=" + u.HomeDir, "PATH=/usr/bin:/bin"} {
		if !strings.Contains(env, want+"\n") {
			t.Errorf("environment lacks %s:\n%s", want, env)
		}
	}
	if strings.TrimSpace(read("pwd")) != "/" {
		t.Errorf("working folder %q", read("pwd"))
	}
	if _, err := os.Stat(filepath.Join(out, "pwned")); err == nil {
		t.Fatal("envelope data reached a shell")
	}
}

func TestCommandResults(t *testing.T) {
	f := newFixture(t, nil)
	long := strings.Repeat("y", 10000)
	os.WriteFile(f.cfg.AliasFile, []byte(`ok: "|cat >/dev/null"
tempfail: "|echo busy; exit 75"
nouser: "|echo no such luser; echo second line; exit 67"
status1: "|exit 1"
enhanced4: "|echo 4.7.1 try again later; exit 1"
enhanced5: "|echo 5.2.2 mailbox full; exit 75"
signal: "|kill -9 $$"
chatty: "|printf '%s\n' `+long+`; yes | head -c 1000000; exit 69"
noinput: "|exit 0"
mix: alice@example.test, "|exit 67"
`), 0644)
	for _, c := range []struct{ rcpt, status, dsn, text string }{
		{"ok", agent.Sent, "2.0.0", "delivered to command: cat >/dev/null"},
		{"tempfail", agent.Deferred, "4.3.0", "temporary failure. Command output: busy"},
		{"nouser", agent.Bounced, "5.1.1", "user unknown. Command output: no such luser"},
		{"status1", agent.Bounced, "5.3.0", `Command died with status 1: "exit 1"`},
		{"enhanced4", agent.Deferred, "4.7.1", "try again later"},
		{"enhanced5", agent.Bounced, "5.2.2", "mailbox full"},
		{"signal", agent.Deferred, "4.3.0", `Command died with signal 9: "kill -9 $$"`},
		{"chatty", agent.Bounced, "5.3.0", "service unavailable. Command output: " + long[:maxReasonOutput]},
		{"noinput", agent.Sent, "2.0.0", "delivered to command: exit 0"},
	} {
		rep := f.deliverMsg(t, "s@x", c.rcpt+"@localhost", "Subject: x\n\n"+strings.Repeat("body line\n", 20000))
		if rep.Status != c.status || rep.DSN != c.dsn || rep.Text != c.text {
			t.Errorf("%s: %s %s %q, want %s %s %q", c.rcpt, rep.Status, rep.DSN, rep.Text, c.status, c.dsn, c.text)
		}
	}
	// A command that bounces while another part of the alias is delivered
	// is reported to the sender; the recipient is done.
	rep := f.deliver(t, "s@x", "mix@localhost")
	if rep.Status != agent.Sent || len(rep.Partial) != 1 || rep.Partial[0].DSN != "5.1.1" || rep.Partial[0].Text != "user unknown" {
		t.Fatalf("mix: %+v", rep)
	}
}

// procsWithArg lists processes whose command line has arg.
func procsWithArg(arg string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if strings.Contains(string(cmdline), "\x00"+arg+"\x00") && !strings.Contains(string(st), ") Z ") {
			pids = append(pids, pid)
		}
	}
	return pids
}

func TestCommandTimeLimit(t *testing.T) {
	f := newFixture(t, func(c *config.Config) { c.Local.CommandTimeLimit = config.Duration(500 * time.Millisecond) })
	// The command and a child it leaves behind are both killed: the
	// whole process group goes.
	os.WriteFile(f.cfg.AliasFile, []byte("hang: \"|echo started; sleep 1013 & sleep 1014\"\nlinger: \"|(sleep 1015 &); exit 0\"\n"), 0644)
	for _, c := range []struct{ rcpt, arg string }{{"hang", "1014"}, {"linger", "1015"}} {
		start := time.Now()
		rep := f.deliver(t, "s@x", c.rcpt+"@localhost")
		if rep.Status != agent.Deferred || rep.DSN != "4.3.0" || !strings.HasPrefix(rep.Text, "Command time limit exceeded: ") {
			t.Errorf("%s: %+v", c.rcpt, rep)
		}
		if c.rcpt == "hang" && !strings.HasSuffix(rep.Text, ". Command output: started") {
			t.Errorf("%s: output missing: %q", c.rcpt, rep.Text)
		}
		if el := time.Since(start); el > 10*time.Second {
			t.Errorf("%s: took %v", c.rcpt, el)
		}
		deadline := time.Now().Add(10 * time.Second)
		for len(procsWithArg(c.arg)) > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%s: sleep %s still runs after the time limit", c.rcpt, c.arg)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func TestFileAlias(t *testing.T) {
	f := newFixture(t, nil)
	out := outDir(t, f)
	exe := filepath.Join(out, "program")
	os.WriteFile(exe, []byte("#!/bin/sh\n"), 0755)
	target := filepath.Join(out, "victim")
	os.WriteFile(target, []byte("keep\n"), 0666)
	os.Symlink(target, filepath.Join(out, "link"))
	os.WriteFile(f.cfg.AliasFile, []byte(fmt.Sprintf("archive: %s/archive\nexe: %s\nlink: %s/link\nnull: /dev/null\nmd: %s/md/\n",
		out, exe, out, out)), 0644)

	for i := 0; i < 2; i++ {
		if rep := f.deliverMsg(t, "s@x", "archive@localhost", "Subject: "+strconv.Itoa(i)+"\n\nFrom x\n"); rep.Status != agent.Sent ||
			rep.Text != "delivered to file: "+out+"/archive" {
			t.Fatalf("archive: %+v\n%s", rep, f.log)
		}
	}
	ms := readMbox(t, filepath.Join(out, "archive"))
	if len(ms) != 2 || string(ms[1].Content) != "Return-Path: <s@x>\nX-Original-To: archive@localhost\nDelivered-To: archive@localhost\nSubject: 1\n\nFrom x\n" {
		t.Fatalf("archive: %d messages: %v", len(ms), ms)
	}
	fi, _ := os.Stat(filepath.Join(out, "archive"))
	if u := cmdUser(t); strconv.Itoa(int(fi.Sys().(*syscall.Stat_t).Uid)) != u.Uid || fi.Mode().Perm() != 0600 {
		t.Errorf("archive owner %d mode %v, want %s 0600", fi.Sys().(*syscall.Stat_t).Uid, fi.Mode().Perm(), u.Username)
	}

	// HOSTILE 52: never into a program; never through a link.
	if rep := f.deliver(t, "s@x", "exe@localhost"); rep.Status != agent.Bounced || rep.DSN != "5.7.1" {
		t.Errorf("executable: %+v", rep)
	}
	if rep := f.deliver(t, "s@x", "link@localhost"); rep.Status != agent.Bounced || rep.DSN != "5.2.0" || !strings.Contains(rep.Text, "symbolic link") {
		t.Errorf("symlink: %+v", rep)
	}
	if b, _ := os.ReadFile(exe); string(b) != "#!/bin/sh\n" {
		t.Errorf("program changed: %q", b)
	}
	if b, _ := os.ReadFile(target); string(b) != "keep\n" {
		t.Errorf("link target changed: %q", b)
	}
	if rep := f.deliver(t, "s@x", "null@localhost"); rep.Status != agent.Sent || rep.Text != "delivered to file: /dev/null" {
		t.Errorf("/dev/null: %+v", rep)
	}
	if rep := f.deliver(t, "s@x", "md@localhost"); rep.Status != agent.Sent || len(maildirFiles(t, filepath.Join(out, "md"))) != 1 {
		t.Errorf("maildir file: %+v", rep)
	}
	// HOSTILE 53: a Maildir destination whose new/ points elsewhere.
	elsewhere := filepath.Join(out, "elsewhere")
	os.Mkdir(elsewhere, 0777)
	for _, sub := range []string{"cur", "tmp"} {
		os.MkdirAll(filepath.Join(out, "mdlink", sub), 0777)
	}
	os.Symlink(elsewhere, filepath.Join(out, "mdlink", "new"))
	os.WriteFile(f.cfg.AliasFile, []byte("mdlink: "+out+"/mdlink/\n"), 0644)
	if rep := f.deliver(t, "s@x", "mdlink@localhost"); rep.Status != agent.Deferred || rep.DSN != "4.2.0" {
		t.Errorf("symlinked new/: %+v", rep)
	}
	if ents, _ := os.ReadDir(elsewhere); len(ents) != 0 {
		t.Errorf("delivered through the symlink: %v", ents)
	}
}

func TestSpoolGroup(t *testing.T) {
	dir := t.TempDir()
	gid := os.Getgid()
	for _, c := range []struct {
		mode os.FileMode
		user int
		want bool
	}{
		{0775 | os.ModeSetgid, gid + 1, gid != 0}, // Debian's /var/mail: the folder's group
		{0755, gid + 1, false},                    // not group-writable
		{0777 | os.ModeSticky, gid + 1, false},    // world-writable: anyone may lock
		{0775, gid, false},                        // the user's own group already
	} {
		os.Chmod(dir, c.mode)
		g, ok := spoolGroup(dir, c.user)
		if ok != c.want || ok && g != gid {
			t.Errorf("mode %v, user gid %d: %d %v, want %v", c.mode, c.user, g, ok, c.want)
		}
	}
}

func TestIncludeInAliases(t *testing.T) {
	f := newFixture(t, nil)
	out := outDir(t, f)
	inc := filepath.Join(out, "list.inc")
	os.WriteFile(inc, []byte("# members\nalice@example.test\n\"|touch "+out+"/ran\"\n"), 0644)
	os.WriteFile(f.cfg.AliasFile, []byte("list: :include:"+inc+"\n"), 0644)
	rep := f.deliver(t, "s@x", "list@localhost")
	if rep.Status != agent.Sent || len(rep.Partial) != 1 || rep.Partial[0].DSN != "5.7.1" ||
		!strings.Contains(rep.Partial[0].Text, "mail to command is restricted") {
		t.Fatalf("%+v", rep)
	}
	if _, err := os.Stat(filepath.Join(out, "ran")); err == nil {
		t.Fatal("a command in an :include: file ran")
	}
	if files := maildirFiles(t, filepath.Join(filepath.Dir(f.cfg.Virtual.UsersFile), "mail/example.test/alice/Maildir")); len(files) != 1 {
		t.Fatalf("alice got %d", len(files))
	}
}

func TestDeliveredToLoop(t *testing.T) {
	f := newFixture(t, nil)
	for _, c := range []struct{ rcpt, msg, dsn, loop string }{
		{"alice@example.test", "Delivered-To: alice@example.test\nSubject: x\n\nbody\n", "5.4.6", "alice@example.test"},
		// The mailbox's own address, folded and in another case.
		{"Alice+x@Example.Test", "X: y\ndelivered-to:\n <ALICE@example.test>\nSubject: x\n\nbody\n", "5.4.6", "alice@example.test"},
		{"team@localhost", "Delivered-To: team@localhost\n\n", "5.4.6", "team@localhost"},
		{"alice@example.test", strings.Repeat("Delivered-To: x@y\n", maxDeliveredTo+1) + "\nbody\n", "5.4.6",
			fmt.Sprintf("alice@example.test: more than %d Delivered-To headers", maxDeliveredTo)},
	} {
		rep := f.deliverMsg(t, "s@x", c.rcpt, c.msg)
		if rep.Status != agent.Bounced || rep.DSN != c.dsn || !strings.Contains(rep.Text, "mail forwarding loop for "+c.loop) {
			t.Errorf("%s: %+v", c.rcpt, rep)
		}
	}
	// Delivered-To in the body, or for someone else, is no loop; nor is
	// the limit itself.
	for _, msg := range []string{"Subject: x\n\nDelivered-To: alice@example.test\n",
		"Delivered-To: bob@example.test\n\nbody\n", strings.Repeat("Delivered-To: x@y\n", maxDeliveredTo) + "\nbody\n"} {
		if rep := f.deliverMsg(t, "s@x", "alice@example.test", msg); rep.Status != agent.Sent {
			t.Errorf("%.40q: %+v", msg, rep)
		}
	}
	// One member of a list already had it: the others still get it.
	rep := f.deliverMsg(t, "s@x", "team@localhost", "Delivered-To: bob@example.test\n\nbody\n")
	if rep.Status != agent.Sent || len(rep.Partial) != 1 || rep.Partial[0].Text != "mail forwarding loop for bob@example.test" {
		t.Errorf("list: %+v", rep)
	}
}

func TestVirtualAliasesAndCatchAll(t *testing.T) {
	f := newFixture(t, func(c *config.Config) {
		c.Virtual.AliasFile = filepath.Join(filepath.Dir(c.AliasFile), "virtual")
		os.WriteFile(c.Virtual.AliasFile, []byte("sales@example.test far@Elsewhere.Example, bob@example.test\n@example.test alice@example.test\n"), 0644)
	})
	rep := f.deliver(t, "s@x", "sales@example.test")
	if rep.Status != agent.Sent || strings.Join(rep.Forward, ",") != "far@elsewhere.example" {
		t.Fatalf("sales: %+v", rep)
	}
	if rep := f.deliver(t, "s@x", "whoever@example.test"); rep.Status != agent.Sent {
		t.Fatalf("catch-all: %+v", rep)
	}
	base := filepath.Join(filepath.Dir(f.cfg.Virtual.UsersFile), "mail/example.test")
	if n := len(maildirFiles(t, filepath.Join(base, "alice/Maildir"))); n != 1 {
		t.Errorf("alice (catch-all) got %d", n)
	}
	if n := len(maildirFiles(t, filepath.Join(base, "bob/Maildir"))); n != 1 {
		t.Errorf("bob got %d", n)
	}
}

func TestCommandEnvFilter(t *testing.T) {
	if got := filterEnv("a;b|c`d$e(f)g h\x00é@X.org+-_=:,./%!"); got != "a_b_c_d_e_f_g_h__@X.org+-_=:,./%!" {
		t.Errorf("%q", got)
	}
	if got := firstLine("\n\n  first\tline \x01\nsecond"); got != "first line _" {
		t.Errorf("%q", got)
	}
}

func TestDeliveredToParse(t *testing.T) {
	msg := "Received: x\nDelivered-To: A@B\nDelivered-To:\n\t<c@d>\nX: " + strings.Repeat("z", 100000) + "\nDelivered-To: e@f \n\nDelivered-To: body@x\n"
	seen, err := deliveredTo(strings.NewReader(msg))
	if err != nil || len(seen) != 3 || !seen["a@b"] || !seen["c@d"] || !seen["e@f"] {
		t.Fatalf("%v %v", seen, err)
	}
	if seen, err := deliveredTo(io.LimitReader(strings.NewReader("Delivered-To: x@y"), 100)); err != nil || !seen["x@y"] {
		t.Fatalf("no newline at the end: %v %v", seen, err)
	}
}

// FuzzDeliveredTo reads hostile message headers: it never fails on a
// message in memory except for too many Delivered-To lines, and every
// address it reports is lower case and came from such a line.
func FuzzDeliveredTo(f *testing.F) {
	f.Add("Delivered-To: A@B\n\nbody\n")
	f.Add("delivered-to:\n\t<x@y>\r\nX: y\r\n\r\n")
	f.Add("Delivered-To: a@b\nDelivered-To" + strings.Repeat(" ", 17000) + ": c@d\n")
	f.Add("Delivered-To: a\n b@c\n\n")
	f.Add("Subject: x\n \n\nDelivered-To: not@header\n")
	f.Fuzz(func(t *testing.T, msg string) {
		seen, err := deliveredTo(strings.NewReader(msg))
		if err != nil {
			if err != errTooManyDeliveredTo {
				t.Fatalf("error %v", err)
			}
			return
		}
		if len(seen) > maxDeliveredTo {
			t.Fatalf("%d addresses", len(seen))
		}
		for a := range seen {
			if a != strings.ToLower(a) {
				t.Fatalf("%q not lower case", a)
			}
			unfolded := strings.NewReplacer("\r\n ", " ", "\r\n\t", "\t", "\n ", " ", "\n\t", "\t").Replace(strings.ToLower(msg))
			if a != "" && !strings.Contains(unfolded, a) {
				t.Fatalf("%q is not in the message", a)
			}
		}
	})
}
