package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// sendmail runs bin/sendmail against the instance with stdin and args.
func (s *System) sendmail(stdin string, args ...string) (string, int) {
	cmd := exec.Command(filepath.Join(binDir, "sendmail"), append([]string{"-C", s.Config}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		s.t.Fatalf("sendmail: %v", err)
	}
	return string(out), code
}

func TestSendmailCronStyle(t *testing.T) {
	s := StartSystem(t, nil)
	s.AddUser("ops@example.test")
	s.AddUser("hidden@example.test")
	// What cron does: sendmail -FCronDaemon -i -B8BITMIME -oem <user>; here
	// with -t as scripts and PHP do, a Bcc, and CRLF input.
	msg := "To: ops@example.test\r\nBcc: hidden@example.test\r\nSubject: Cron <root@host> run-parts\r\n\r\nline 1\r\n.\r\nafter a lone dot\r\n"
	out, code := s.sendmail(msg, "-FCron Daemon", "-i", "-B8BITMIME", "-oem", "-t")
	if code != 0 {
		t.Fatalf("sendmail exit %d: %s", code, out)
	}
	for _, u := range []string{"ops", "hidden"} {
		for _, b := range s.WaitMessages(s.Maildir(u), 1, 15*time.Second) {
			for _, want := range []string{"Received: by mail.example.test (posthorn, from userid ", "From: Cron Daemon <",
				"Date: ", "Message-Id: <", "Subject: Cron <root@host> run-parts\n", "\nline 1\n.\nafter a lone dot\n"} {
				if !strings.Contains(b, want) {
					t.Errorf("%s's copy lacks %q:\n%s", u, want, b)
				}
			}
			if strings.Contains(b, "Bcc:") || strings.Contains(b, "\r") {
				t.Errorf("%s's copy keeps Bcc: or CR:\n%s", u, b)
			}
		}
	}
	if !strings.Contains(s.Log(), "posthorn/pickup[") || !strings.Contains(s.Log(), " uid=") {
		t.Errorf("pickup did not log the submission:\n%s", tail(s.Log(), 10))
	}
	// Without -i a lone dot ends the message (sendmail's default).
	if out, code := s.sendmail("Subject: dot\n\nkept\n.\ndropped\n", "ops@example.test"); code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	msgs := s.WaitMessages(s.Maildir("ops"), 2, 15*time.Second)
	for _, b := range msgs {
		if strings.Contains(b, "Subject: dot") && (strings.Contains(b, "dropped") || !strings.Contains(b, "kept")) {
			t.Errorf("lone dot did not end the input:\n%s", b)
		}
	}
}

func TestSendmailHostileInput(t *testing.T) {
	s := StartSystem(t, nil)
	s.AddUser("ops@example.test")
	if out, code := s.sendmail("Subject: none\n\nno recipients\n", "-t"); code != 64 || !strings.Contains(out, "No recipient addresses found") {
		t.Errorf("no recipients: exit %d %q", code, out)
	}
	if out, code := s.sendmail("x\n", "-F", "Evil\r\nBcc: victim@example.org", "ops@example.test"); code != 64 {
		t.Errorf("header injection through -F: exit %d %q", code, out)
	}
	if out, code := s.sendmail("x\n", "-Z"); code != 64 || !strings.Contains(out, "illegal option") {
		t.Errorf("unknown flag: exit %d %q", code, out)
	}
	if out, code := s.sendmail("x\n", "-oQ/tmp", "-odb", "ops@example.test"); code != 0 {
		t.Errorf("ignored -o options refused: exit %d %q", code, out)
	}
	var to strings.Builder
	to.WriteString("To: ")
	for i := 0; i <= 10000; i++ {
		if i > 0 {
			to.WriteString(",\n ")
		}
		fmt.Fprintf(&to, "u%d@example.org", i)
	}
	if out, code := s.sendmail(to.String()+"\nSubject: many\n\nx\n", "-t"); code == 0 || !strings.Contains(out, "more than 10000 recipients") {
		t.Errorf("10,001 recipients: exit %d %q", code, out)
	}
	if out, code := s.sendmail("x\n", "-bv", "ops@example.test", "x@elsewhere.example"); code != 0 ||
		!strings.Contains(out, "<ops@example.test>: deliverable via local") || !strings.Contains(out, "via smtp") {
		t.Errorf("-bv: exit %d %q", code, out)
	}
	s.WaitFor("the accepted message to leave the queue", 15*time.Second, s.QueueEmpty)
	if out, code := s.sendmail("", "-bp"); code != 0 || !strings.HasPrefix(out, "Mail queue is empty") {
		t.Errorf("-bp: exit %d %q", code, out)
	}
	if out, code := s.sendmail("", "-bi"); code != 0 || !strings.Contains(out, "aliases") {
		t.Errorf("-bi: exit %d %q", code, out)
	}
	if out, code := s.sendmail("", "-q"); code != 0 {
		t.Errorf("-q: exit %d %q", code, out)
	}
}

func TestSendmailWhileDown(t *testing.T) {
	s := NewSystem(t, nil)
	s.Start()
	s.AddUser("ops@example.test")
	s.Stop()
	out, code := s.sendmail("Subject: written while down\n\nqueued later\n", "ops@example.test")
	if code != 0 {
		t.Fatalf("sendmail while down: exit %d %q", code, out)
	}
	ents, _ := os.ReadDir(filepath.Join(s.Cfg.SpoolDir, "maildrop"))
	if len(ents) != 1 {
		t.Fatalf("maildrop holds %d files, want 1", len(ents))
	}
	s.Start()
	t.Cleanup(s.Stop)
	for _, b := range s.WaitMessages(s.Maildir("ops"), 1, 15*time.Second) {
		if !strings.Contains(b, "Subject: written while down") {
			t.Fatalf("got:\n%s", b)
		}
	}
	s.WaitFor("an empty maildrop", 10*time.Second, func() bool {
		ents, _ := os.ReadDir(filepath.Join(s.Cfg.SpoolDir, "maildrop"))
		return len(ents) == 0
	})
}

// TestSendmailIdentity checks, as root, that the submitter is who the
// kernel says: an unprivileged user's mail is logged with its uid, whatever
// it claims, and a maildrop file a user links in from elsewhere is refused.
func TestSendmailIdentity(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run sendmail as another user (CI runs as root)")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatal("setpriv (util-linux) is missing")
	}
	uid, _, _ := ensureUser(t, "phsubmit-test", false)
	os.Chmod(binDir, 0755)
	s := NewSystem(t, nil)
	for d := s.Dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0755)
	}
	s.Start()
	t.Cleanup(s.Stop)
	s.AddUser("ops@example.test")
	cmd := exec.Command("setpriv", "--reuid=phsubmit-test", "--regid=phsubmit-test", "--clear-groups",
		filepath.Join(binDir, "sendmail"), "-C", s.Config, "-f", "root@example.test", "ops@example.test")
	cmd.Stdin = strings.NewReader("Subject: from a user\n\nhello\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sendmail as phsubmit-test: %v %s", err, out)
	}
	for _, b := range s.WaitMessages(s.Maildir("ops"), 1, 15*time.Second) {
		if !strings.Contains(b, fmt.Sprintf("(posthorn, from userid %d)", uid)) {
			t.Errorf("Received: does not name uid %d:\n%s", uid, b)
		}
	}
	if !strings.Contains(s.Log(), fmt.Sprintf(" uid=%d from=<root@example.test>", uid)) {
		t.Errorf("pickup log lacks the real uid:\n%s", tail(s.Log(), 10))
	}

	// A well-formed maildrop file that is also linked elsewhere (so the
	// user could swap what pickup reads) is refused, not queued.
	drop := "posthorn-maildrop 1\nsender a@example.test\nrcpt ops@example.test\n\nSubject: linked\n\nx\n"
	script := fmt.Sprintf("umask 022; printf '%%s' \"$0\" > %[1]s/linked && ln %[1]s/linked %[2]s/0123456789abcdef0123456789abcdef",
		filepath.Join(s.Dir, "userfiles"), filepath.Join(s.Cfg.SpoolDir, "maildrop"))
	os.MkdirAll(filepath.Join(s.Dir, "userfiles"), 0777)
	os.Chmod(filepath.Join(s.Dir, "userfiles"), 0777)
	cmd = exec.Command("setpriv", "--reuid=phsubmit-test", "--regid=phsubmit-test", "--clear-groups", "sh", "-c", script, drop)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("linking into maildrop: %v %s", err, out)
	}
	s.WaitFor("pickup to refuse the linked file", 15*time.Second, func() bool {
		return strings.Contains(s.Log(), "is not a regular file with one link; removed")
	})
	if strings.Contains(s.Log(), "from=<a@example.test>") {
		t.Error("a linked maildrop file was queued")
	}
}
