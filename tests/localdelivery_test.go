package tests

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/posthorn/posthorn/pkg/config"
	"github.com/posthorn/posthorn/pkg/mbox"
)

// Local delivery as a Debian host expects it: mbox in the mail spool read
// by mail(1), aliases to commands, files and :include: lists, ~/.forward,
// loops, virtual aliases and catch-alls.

func ldNeedRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to deliver as other users (CI runs as root)")
	}
}

// ldSystem is a system whose local daemon runs as root and writes mbox
// files in a spool folder laid out as Debian's /var/mail (2775 root:mail).
func ldSystem(t *testing.T, tweak func(c *config.Config)) (*System, string) {
	t.Helper()
	os.Chmod(binDir, 0755) // workers run the local program as other users
	var spool string
	s := NewSystem(t, func(c *config.Config) {
		c.Local.HomeMailbox = ""
		c.Local.DeliveryUser = "root"
		// Never the host's /var/mail: a folder of the instance.
		c.Local.MailSpoolDir = filepath.Join(filepath.Dir(c.SpoolDir), "mail")
		if tweak != nil {
			tweak(c)
		}
	})
	for d := s.Dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0755)
	}
	spool = s.Cfg.Local.MailSpoolDir
	if err := os.MkdirAll(spool, 0755); err != nil {
		t.Fatal(err)
	}
	g, err := user.LookupGroup("mail")
	if err != nil {
		t.Skip("no group mail on this system")
	}
	gid, _ := strconv.Atoi(g.Gid)
	os.Chown(spool, 0, gid)
	os.Chmod(spool, 0775|os.ModeSetgid)
	return s, spool
}

// ldSend sends msg to each recipient over SMTP, one transaction each, and
// fails the test on any refusal.
func ldSend(t *testing.T, s *System, from string, rcpts []string, msg string) {
	t.Helper()
	if err := ldTrySend(s, from, rcpts, msg); err != nil {
		t.Fatal(err)
	}
}

func ldTrySend(s *System, from string, rcpts []string, msg string) error {
	var py strings.Builder
	py.WriteString("import os, smtplib\ns = smtplib.SMTP(os.environ['SMTP_HOST'], int(os.environ['SMTP_PORT']))\n")
	for _, r := range rcpts {
		fmt.Fprintf(&py, "print(s.sendmail(%q, [%q], %q.encode()))\n", from, r, strings.ReplaceAll(msg, "\n", "\r\n"))
	}
	py.WriteString("s.quit()\n")
	out, err := s.Python(py.String())
	if err != nil || strings.Count(out, "{}") != len(rcpts) {
		return fmt.Errorf("sending to %v: %v\n%s\nlog:\n%s", rcpts, err, out, tail(s.Log(), 30))
	}
	return nil
}

// ldMbox reads an mbox file; a missing file has no messages.
func ldMbox(t *testing.T, path string) []*mbox.Message {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ms, err := mbox.ReadAll(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return ms
}

func (s *System) ldWaitMbox(t *testing.T, path string, n int) []*mbox.Message {
	t.Helper()
	var ms []*mbox.Message
	s.WaitFor(fmt.Sprintf("%d messages in %s", n, path), 30*time.Second, func() bool {
		ms = ldMbox(t, path)
		return len(ms) >= n
	})
	return ms
}

func (s *System) ldWaitLog(t *testing.T, what string, re *regexp.Regexp) {
	t.Helper()
	s.WaitFor(what, 30*time.Second, func() bool { return re.MatchString(s.Log()) })
}

var ldSubject = regexp.MustCompile(`(?m)^Subject: msg-(\d+)$`)

// ldBody is the body of test message i: lines that say which message
// they belong to, so a message cut or mixed with another shows.
func ldBody(i int) string {
	var b strings.Builder
	for k := 0; k < 20; k++ {
		fmt.Fprintf(&b, "message %d line %d\n", i, k)
	}
	b.WriteString("From the end\n")
	return b.String()
}

// ldIntact checks that text holds message i whole: as mail(1) shows it
// (quoted, with the ">" before "From "), or as the mbox reader returns it
// (unquoted).
func ldIntact(text string, i int, quoted bool) bool {
	body := ldBody(i)
	if quoted {
		body = strings.ReplaceAll(body, "From the end", ">From the end")
	}
	return strings.Contains(text, "Subject: msg-"+strconv.Itoa(i)+"\n") && strings.Contains(text, "\n\n"+body)
}

// TestMboxWithMailx delivers into a spool mbox while mail(1) (bsd-mailx)
// deletes messages from it: mailx takes an fcntl lock and the dotlock
// USER.lock to rewrite the file, as local does to append, so every message
// ends up either deleted by mailx (which printed it whole) or in the file
// whole, never both, never cut. The file is read back with mail -f.
func TestMboxWithMailx(t *testing.T) {
	ldNeedRoot(t)
	mailx, err := exec.LookPath("bsd-mailx")
	if err != nil {
		t.Fatal("bsd-mailx is not installed: make test installs it (apt-get install bsd-mailx)")
	}
	uid, gid, _ := ensureUser(t, "phmbox-test", false)
	s, spool := ldSystem(t, nil)
	s.Start()
	t.Cleanup(s.Stop)
	path := filepath.Join(spool, "phmbox-test")
	// mail(1) runs as the mailbox's user, as a user reads mail: it reads
	// only its own user's mailbox, and liblockfile's set-group-id
	// dotlockfile(1) creates the dotlock in the mail spool for it.
	home := filepath.Join(s.Dir, "mailx-home")
	os.Mkdir(home, 0700)
	os.Chown(home, uid, gid)
	runMailx := func(stdin string, args ...string) string {
		cmd := exec.Command(mailx, append([]string{"-N"}, args...)...)
		cmd.Env = []string{"MAIL=" + path, "HOME=" + home, "MBOX=" + filepath.Join(home, "mbox"), "LC_ALL=C", "PATH=/usr/bin:/bin"}
		cmd.Dir = home
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}}
		cmd.Stdin = strings.NewReader(stdin)
		out, _ := cmd.Output() // "No mail for ..." exits 1
		return string(out)
	}

	const n = 40
	sendDone := make(chan struct{})
	sendErr := make(chan error, n)
	go func() {
		defer close(sendDone)
		var wg sync.WaitGroup
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < n; i += 4 {
					if err := ldTrySend(s, "sender@example.org", []string{"phmbox-test@localhost"},
						fmt.Sprintf("Subject: msg-%d\nFrom: sender@example.org\n\n%s", i, ldBody(i))); err != nil {
						sendErr <- err
					}
				}
			}()
		}
		wg.Wait()
	}()

	// mailx prints and deletes the first message, again and again, while
	// the deliveries go on.
	deleted := map[int]bool{}
	deadline := time.Now().Add(90 * time.Second)
	for {
		out := runMailx("p 1\nd 1\nq\n")
		if m := ldSubject.FindStringSubmatch(out); m != nil {
			i, _ := strconv.Atoi(m[1])
			if deleted[i] {
				t.Fatalf("mailx saw message %d twice", i)
			}
			if !ldIntact(out, i, true) {
				t.Fatalf("mailx printed message %d damaged:\n%s", i, out)
			}
			deleted[i] = true
		}
		select {
		case err := <-sendErr:
			t.Fatal(err)
		case <-sendDone:
		default:
			if time.Now().After(deadline) {
				t.Fatalf("deliveries did not finish\n%s", tail(s.Log(), 30))
			}
			continue
		}
		if s.QueueEmpty() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue empty %v, %d deleted by mailx; last mailx output:\n%s\nlog:\n%s", s.QueueEmpty(), len(deleted), out, tail(s.Log(), 30))
		}
	}

	if len(deleted) == 0 {
		t.Fatal("mailx deleted nothing while the messages arrived")
	}
	// A few more, for mail -f to read back below.
	for i := n; i < n+5; i++ {
		ldSend(t, s, "sender@example.org", []string{"phmbox-test@localhost"},
			fmt.Sprintf("Subject: msg-%d\nFrom: sender@example.org\n\n%s", i, ldBody(i)))
	}
	s.WaitFor("the last deliveries", 30*time.Second, s.QueueEmpty)

	ms := ldMbox(t, path)
	kept := map[int]bool{}
	for _, m := range ms {
		sm := ldSubject.FindStringSubmatch(string(m.Content))
		if sm == nil {
			t.Fatalf("a message without its subject:\n%s", m.Content)
		}
		i, _ := strconv.Atoi(sm[1])
		if kept[i] || deleted[i] {
			t.Fatalf("message %d is there twice, or was deleted and is back", i)
		}
		if !ldIntact(string(m.Content), i, false) {
			t.Fatalf("message %d damaged:\n%s", i, m.Content)
		}
		kept[i] = true
	}
	if len(kept)+len(deleted) != n+5 {
		t.Fatalf("%d kept + %d deleted, want %d", len(kept), len(deleted), n+5)
	}
	t.Logf("mailx deleted %d messages while they arrived, %d stayed", len(deleted), len(kept))

	// mail -f reads the same messages, whole.
	out := runMailx(fmt.Sprintf("p 1-%d\nx\n", len(ms)), "-f", path)
	if got := len(ldSubject.FindAllString(out, -1)); got != len(ms) {
		t.Fatalf("mail -f shows %d messages, the file has %d:\n%s", got, len(ms), out)
	}
	for i := range kept {
		if !ldIntact(out, i, true) {
			t.Errorf("mail -f shows message %d damaged", i)
		}
	}

	// Debian's layout: user:mail 0660, and the dotlock gone.
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	g, _ := user.LookupGroup("mail")
	st := fi.Sys().(*syscall.Stat_t)
	if int(st.Uid) != uid || strconv.Itoa(int(st.Gid)) != g.Gid || fi.Mode().Perm() != 0660 {
		t.Errorf("mailbox %d:%d %v, want phmbox-test:mail 0660", st.Uid, st.Gid, fi.Mode().Perm())
	}
	if _, err := os.Lstat(path + ".lock"); !os.IsNotExist(err) {
		t.Errorf("dotlock left behind: %v", err)
	}
	if !strings.Contains(s.Log(), "to=<phmbox-test@localhost>, relay=local") || !strings.Contains(s.Log(), "status=sent (delivered to mailbox)") {
		t.Errorf("log:\n%s", tail(s.Log(), 20))
	}
}

// recorder writes a script that records who runs it and what it reads.
func ldRecorder(t *testing.T, dir, name string) string {
	t.Helper()
	out := filepath.Join(dir, name+".out")
	os.Mkdir(out, 0777)
	os.Chmod(out, 0777)
	p := filepath.Join(dir, name)
	body := fmt.Sprintf("#!/bin/sh\nid -u > %[1]s/uid\nenv > %[1]s/env\ncat > %[1]s/stdin\n", out)
	if err := os.WriteFile(p, []byte(body), 0755); err != nil {
		t.Fatal(err)
	}
	return p
}

func ldReadFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func ldReadOut(t *testing.T, dir, name, file string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name+".out", file))
	if err != nil {
		t.Fatalf("%s did not run: %v", name, err)
	}
	return string(b)
}

// TestAliasCommandsFilesAndIncludes: commands in a root-owned aliases file
// run as default_privs (nobody), files are written in mbox format by that
// user, an :include: list delivers to its addresses but not its commands,
// commands that hang are killed and deferred, exit codes follow
// sysexits(3), and mail to root and postmaster reaches root's alias.
func TestAliasCommandsFilesAndIncludes(t *testing.T) {
	ldNeedRoot(t)
	ensureUser(t, "phadmin-test", false)
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip(err)
	}
	s, spool := ldSystem(t, func(c *config.Config) {
		c.Local.CommandTimeLimit = config.Duration(time.Second)
	})
	work := filepath.Join(s.Dir, "work")
	os.Mkdir(work, 0777)
	os.Chmod(work, 0777)
	pipe := ldRecorder(t, work, "pipe")
	inc := ldRecorder(t, work, "inc")
	list := filepath.Join(work, "list.inc")
	os.WriteFile(list, []byte("# the list\nphadmin-test\n\"|"+inc+"\"\n"), 0644)
	aliases := fmt.Sprintf(`postmaster: root
root: phadmin-test
pipe: "|%s"
archive: %s/archive
list: :include:%s
hang: "|echo $$ >> %[4]s/hang.pids; exec sleep 1019"
tempfail: "|echo busy; exit 75"
nouser: "|echo no such luser; exit 67"
`, pipe, work, list, work)
	if err := os.WriteFile(s.Cfg.AliasFile, []byte(aliases), 0644); err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(s.Stop)

	ldSend(t, s, "sender@example.org", []string{"pipe@localhost", "archive@localhost", "list@localhost",
		"root@localhost", "postmaster@localhost", "hang@localhost", "tempfail@localhost", "nouser@localhost"},
		"Subject: aliases\nFrom: sender@example.org\n\nFrom here on\n")

	// The command ran as nobody, with the message on standard input.
	s.WaitFor("the pipe alias", 30*time.Second, func() bool {
		_, err := os.Stat(filepath.Join(work, "pipe.out", "stdin"))
		return err == nil && strings.Contains(s.Log(), "to=<pipe@localhost>")
	})
	if got := strings.TrimSpace(ldReadOut(t, work, "pipe", "uid")); got != nobody.Uid {
		t.Errorf("pipe ran as uid %s, want nobody's %s", got, nobody.Uid)
	}
	stdin := ldReadOut(t, work, "pipe", "stdin")
	if !strings.HasPrefix(stdin, "From sender@example.org ") || !strings.Contains(stdin, "\nDelivered-To: pipe@localhost\n") ||
		!strings.Contains(stdin, "\n\nFrom here on\n") {
		t.Errorf("pipe read:\n%s", stdin)
	}
	if env := ldReadOut(t, work, "pipe", "env"); !strings.Contains(env, "SENDER=sender@example.org\n") || !strings.Contains(env, "RECIPIENT=pipe@localhost\n") {
		t.Errorf("pipe environment:\n%s", env)
	}

	// The file, in mbox format, written by nobody.
	ms := s.ldWaitMbox(t, filepath.Join(work, "archive"), 1)
	if !strings.Contains(string(ms[0].Content), "Delivered-To: archive@localhost\n") || !strings.Contains(string(ms[0].Content), "\n\nFrom here on\n") {
		t.Errorf("archive:\n%s", ms[0].Content)
	}
	if owner, _ := fileOwner(t, filepath.Join(work, "archive")); strconv.Itoa(owner) != nobody.Uid {
		t.Errorf("archive written by uid %d", owner)
	}

	// list, root and postmaster all reach phadmin-test's mailbox; the
	// command in the include file did not run.
	ms = s.ldWaitMbox(t, filepath.Join(spool, "phadmin-test"), 3)
	var to []string
	for _, m := range ms {
		to = append(to, regexp.MustCompile(`X-Original-To: (\S+)`).FindStringSubmatch(string(m.Content))[1])
	}
	if strings.Join(to, " ") == "" || len(ms) != 3 {
		t.Errorf("phadmin-test got %v", to)
	}
	for _, want := range []string{"list@localhost", "root@localhost", "postmaster@localhost"} {
		if !strings.Contains(strings.Join(to, " "), want) {
			t.Errorf("phadmin-test did not get the mail for %s: %v", want, to)
		}
	}
	s.ldWaitLog(t, "the list's restricted command", regexp.MustCompile(`to=<list@localhost>, relay=local, .*status=sent`))
	if _, err := os.Stat(filepath.Join(work, "inc.out", "stdin")); err == nil {
		t.Error("a command in an :include: file ran")
	}

	s.ldWaitLog(t, "the hung command", regexp.MustCompile(`to=<hang@localhost>, relay=local, .*dsn=4\.3\.0, status=deferred \(Command time limit exceeded: "echo \$\$ >> .*; exec sleep 1019"\)`))
	s.ldWaitLog(t, "exit 75", regexp.MustCompile(`to=<tempfail@localhost>, relay=local, .*dsn=4\.3\.0, status=deferred \(temporary failure\. Command output: busy\)`))
	s.ldWaitLog(t, "exit 67", regexp.MustCompile(`to=<nouser@localhost>, relay=local, .*dsn=5\.1\.1, status=bounced \(user unknown\. Command output: no such luser\)`))
	// The command of the first attempt was killed.
	pids := strings.Fields(ldReadFile(t, filepath.Join(work, "hang.pids")))
	s.WaitFor("the hung command to be killed", 10*time.Second, func() bool {
		st, err := os.ReadFile("/proc/" + pids[0] + "/stat")
		return err != nil || strings.Contains(string(st), ") Z ")
	})
	if q, _ := s.Posthorn("", "queue", "list"); !strings.Contains(q, "hang@localhost") || !strings.Contains(q, "tempfail@localhost") {
		t.Errorf("deferred recipients not in the queue:\n%s", q)
	}
}

// TestDotForward: ~/.forward read as its user; its addresses get new
// messages, "\user" the user's own mailbox, its commands run as the user.
// A .forward that is a symbolic link to another user's file is ignored.
func TestDotForward(t *testing.T) {
	ldNeedRoot(t)
	fwdUID, fwdGID, fwdHome := ensureUser(t, "phfwd-test", true)
	ensureUser(t, "phfriend-test", false)
	symUID, symGID, symHome := ensureUser(t, "phsym-test", true)
	s, spool := ldSystem(t, nil)
	work := filepath.Join(s.Dir, "work")
	os.Mkdir(work, 0777)
	os.Chmod(work, 0777)
	rec := ldRecorder(t, work, "fwd")

	fwd := filepath.Join(fwdHome, ".forward")
	os.Remove(fwd)
	os.WriteFile(fwd, []byte("# mine\nphfriend-test, \\phfwd-test\n\"|"+rec+"\"\n"), 0644)
	os.Chown(fwd, fwdUID, fwdGID)
	// A hostile user points ~/.forward at someone else's.
	sym := filepath.Join(symHome, ".forward")
	os.Remove(sym)
	if err := os.Symlink(fwd, sym); err != nil {
		t.Fatal(err)
	}
	os.Lchown(sym, symUID, symGID)
	for _, u := range []string{"phfwd-test", "phfriend-test", "phsym-test"} {
		os.Remove(filepath.Join(spool, u))
	}
	s.Start()
	t.Cleanup(s.Stop)

	ldSend(t, s, "sender@example.org", []string{"phfwd-test@localhost", "phsym-test@localhost"},
		"Subject: forward me\nFrom: sender@example.org\n\nhello\n")

	own := s.ldWaitMbox(t, filepath.Join(spool, "phfwd-test"), 1)
	if !strings.Contains(string(own[0].Content), "Subject: forward me") {
		t.Errorf("phfwd-test's own copy:\n%s", own[0].Content)
	}
	// The forwarded copy is a new message, with Delivered-To for the loop
	// check.
	friend := s.ldWaitMbox(t, filepath.Join(spool, "phfriend-test"), 1)
	if c := string(friend[0].Content); !strings.Contains(c, "Delivered-To: phfwd-test@localhost\n") || !strings.Contains(c, "Delivered-To: phfriend-test@localhost\n") {
		t.Errorf("forwarded copy:\n%s", c)
	}
	s.WaitFor("the .forward command", 30*time.Second, func() bool {
		_, err := os.Stat(filepath.Join(work, "fwd.out", "stdin"))
		return err == nil
	})
	if got := strings.TrimSpace(ldReadOut(t, work, "fwd", "uid")); got != strconv.Itoa(fwdUID) {
		t.Errorf(".forward command ran as uid %s, want phfwd-test's %d", got, fwdUID)
	}
	if env := ldReadOut(t, work, "fwd", "env"); !strings.Contains(env, "HOME="+fwdHome+"\n") || !strings.Contains(env, "LOGNAME=phfwd-test\n") {
		t.Errorf("environment:\n%s", env)
	}

	// The symlinked .forward was ignored: the mail stayed with its user.
	sm := s.ldWaitMbox(t, filepath.Join(spool, "phsym-test"), 1)
	if !strings.Contains(string(sm[0].Content), "Delivered-To: phsym-test@localhost") {
		t.Errorf("phsym-test got:\n%s", sm[0].Content)
	}
	s.ldWaitLog(t, "the warning", regexp.MustCompile(regexp.QuoteMeta("warning: ignoring "+sym+" of phsym-test: it is a symbolic link")))
	s.WaitFor("queue to empty", 30*time.Second, s.QueueEmpty)
	if n := len(ldMbox(t, filepath.Join(spool, "phfriend-test"))); n != 1 {
		t.Errorf("phfriend-test got %d messages: the symlinked .forward was followed", n)
	}
}

// TestForwardingLoopBounced: mail whose header already says it was
// delivered to the recipient is returned (local(8), 5.4.6).
func TestForwardingLoopBounced(t *testing.T) {
	s := StartSystem(t, nil)
	s.AddUser("loop@example.test")
	s.AddUser("sender@example.test")
	ldSend(t, s, "sender@example.test", []string{"loop@example.test"},
		"Delivered-To: loop@example.test\nSubject: round and round\n\nbody\n")
	s.ldWaitLog(t, "the loop", regexp.MustCompile(`to=<loop@example\.test>, relay=local, .*dsn=5\.4\.6, status=bounced \(mail forwarding loop for loop@example\.test\)`))
	for _, b := range s.WaitMessages(s.Maildir("sender"), 1, 30*time.Second) {
		if !strings.Contains(b, "mail forwarding loop for loop@example.test") {
			t.Errorf("bounce:\n%s", b)
		}
	}
	if n := len(Messages(s.Maildir("loop"))); n != 0 {
		t.Errorf("the looping message was delivered (%d)", n)
	}
}

// TestVirtualAliasesAndCatchAll: the virtual alias file makes addresses
// valid at RCPT, sends a remote target on as a new queued message, and a
// catch-all takes unknown addresses of its domain but not existing users'.
func TestVirtualAliasesAndCatchAll(t *testing.T) {
	s := NewSystem(t, func(c *config.Config) {
		c.Virtual.AliasFile = "virtual"
	})
	os.WriteFile(filepath.Join(s.Dir, "virtual"), []byte("# virtual(5)\n@example.test catchall@example.test\nsales@example.test far@remote.example\n"), 0644)
	s.Start()
	t.Cleanup(s.Stop)
	s.AddUser("catchall@example.test")
	s.AddUser("alice@example.test")

	ldSend(t, s, "sender@example.org", []string{"nobody-here@example.test", "alice@example.test", "sales@example.test"},
		"Subject: virtual\n\nbody\n")
	for _, b := range s.WaitMessages(s.Maildir("catchall"), 1, 30*time.Second) {
		if !strings.Contains(b, "X-Original-To: nobody-here@example.test\n") {
			t.Errorf("catch-all got:\n%s", b)
		}
	}
	s.WaitMessages(s.Maildir("alice"), 1, 30*time.Second)
	// The forwarded copy waits in the queue for the remote recipient.
	s.ldWaitLog(t, "the forward", regexp.MustCompile(`to=<sales@example\.test>, relay=local, .*status=sent \(forwarded as new message\)`))
	s.WaitFor("a queued message for far@remote.example", 30*time.Second, func() bool {
		q, _ := s.Posthorn("", "queue", "list")
		return strings.Contains(q, "far@remote.example")
	})
	if n := len(Messages(s.Maildir("catchall"))); n != 1 {
		t.Errorf("catch-all got %d messages, want 1 (alice's and sales' are not its)", n)
	}
	// An address of another domain is still refused.
	out, _ := s.Python(`
import os, smtplib
s = smtplib.SMTP(os.environ["SMTP_HOST"], int(os.environ["SMTP_PORT"]))
s.ehlo("x"); s.mail("a@example.org")
print(s.rcpt("x@elsewhere.example")[0])
s.quit()
`)
	if strings.TrimSpace(out) != "554" {
		t.Errorf("relay: %q", out)
	}
}
