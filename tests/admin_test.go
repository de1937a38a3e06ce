package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/posthorn/posthorn/pkg/config"
)

func TestAliasWithUnknownMemberBouncesThatMember(t *testing.T) {
	s := StartSystem(t, nil)
	os.WriteFile(s.Cfg.AliasFile, []byte("# team list\nteam: bob@example.test,\n  ghost@example.test\n"), 0644)
	s.AddUser("alice@example.test")
	s.AddUser("bob@example.test")
	if _, err := s.Python(`
import os, smtplib
s = smtplib.SMTP(os.environ["SMTP_HOST"], int(os.environ["SMTP_PORT"]))
s.sendmail("alice@example.test", ["team@localhost"], b"Subject: to the team\r\n\r\nhi team\r\n")
s.quit()
`); err != nil {
		t.Fatal(err)
	}
	for _, b := range s.WaitMessages(s.Maildir("bob"), 1, 15*time.Second) {
		if !strings.Contains(b, "Subject: to the team") {
			t.Fatalf("bob got:\n%s", b)
		}
	}
	for _, b := range s.WaitMessages(s.Maildir("alice"), 1, 15*time.Second) {
		for _, want := range []string{"Return-Path: <>", "Subject: Undelivered Mail Returned to Sender",
			"Content-Type: multipart/report; report-type=delivery-status", "Status: 5.1.1", "ghost@example.test",
			"Subject: to the team"} {
			if !strings.Contains(b, want) {
				t.Errorf("bounce lacks %q:\n%s", want, b)
			}
		}
		if strings.Contains(b, "hi team") {
			t.Errorf("bounce carries the original body")
		}
	}
}

func TestAdminCommands(t *testing.T) {
	// Mail for another domain waits in the queue: the test resolver never
	// answers, so delivery is deferred — a deferred message to list.
	s := StartSystem(t, func(c *config.Config) { c.SMTPD.RelayNetworks = []string{"127.0.0.0/8"} })

	if out, err := s.Posthorn("", "status"); err != nil || !strings.Contains(out, "is running") {
		t.Errorf("status: %v %q", err, out)
	}
	if out, err := s.Posthorn("", "check"); err != nil || !strings.Contains(out, "is valid") {
		t.Errorf("check: %v %q", err, out)
	}
	if out, _ := s.Posthorn("", "queue", "list"); out != "Mail queue is empty\n" {
		t.Errorf("empty queue listed as %q", out)
	}

	// Users: add, list, passwd, del; a mismatched retype is refused.
	s.AddUser("u1@example.test")
	s.AddUser("u2@example.test")
	if out, err := s.Posthorn("a\nb\n", "user", "add", "u3@example.test"); err == nil || !strings.Contains(out, "do not match") {
		t.Errorf("mismatched passwords: %v %q", err, out)
	}
	if out, err := s.Posthorn("pw\n", "user", "add", "u1@example.test"); err == nil {
		t.Errorf("duplicate user added: %q", out)
	}
	if out, err := s.Posthorn("pw\n", "user", "add", "x@not-ours.example"); err == nil {
		t.Errorf("user outside the virtual domains added: %q", out)
	}
	if out, err := s.Posthorn("new\nnew\n", "user", "passwd", "u2@example.test"); err != nil {
		t.Errorf("passwd: %v %s", err, out)
	}
	if out, err := s.Posthorn("", "user", "del", "u1@example.test"); err != nil {
		t.Errorf("del: %v %s", err, out)
	}
	if out, _ := s.Posthorn("", "user", "list"); out != "u2@example.test\n" {
		t.Errorf("user list %q", out)
	}
	users, _ := os.ReadFile(s.Cfg.Virtual.UsersFile)
	if !regexp.MustCompile(`(?m)^u2@example.test:\{BLF-CRYPT\}\$2[aby]\$10\$`).Match(users) || strings.Contains(string(users), "new") {
		t.Errorf("users file does not hold a bcrypt hash:\n%s", users)
	}

	// A message that is deferred shows in mailq format with its reason.
	if _, err := s.Python(`
import os, smtplib
s = smtplib.SMTP(os.environ["SMTP_HOST"], int(os.environ["SMTP_PORT"]))
s.sendmail("sender@example.org", ["someone@remote.example"], b"Subject: waits\r\n\r\nx\r\n")
s.quit()
`); err != nil {
		t.Fatal(err)
	}
	var q string
	s.WaitFor("a deferred message in the listing", 15*time.Second, func() bool {
		q, _ = s.Posthorn("", "queue", "list")
		return strings.Contains(q, "someone@remote.example") && strings.Contains(q, ")\n")
	})
	lines := strings.Split(q, "\n")
	if lines[0] != "----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------" ||
		!regexp.MustCompile(`^[0-9A-F]{13}\*?\s+\d+ \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d sender@example\.org$`).MatchString(lines[1]) ||
		!strings.Contains(q, "\n-- 0 Kbytes in 1 Request.\n") || !strings.Contains(q, "  someone@remote.example\n") {
		t.Errorf("queue list:\n%s", q)
	}
	mq, err := exec.Command(filepath.Join(binDir, "mailq"), "-C", s.Config).CombinedOutput()
	if err != nil || string(mq) != q {
		t.Errorf("mailq differs from posthorn queue list: %v\n%s", err, mq)
	}

	// Effective settings: -n shows what this configuration changed.
	if out, err := s.Posthorn("", "config", "-n"); err != nil || !strings.Contains(out, `hostname = "mail.example.test"`) ||
		strings.Contains(out, "message_size_limit") {
		t.Errorf("config -n: %v\n%s", err, out)
	}
	if out, err := s.Posthorn("", "config", "-d"); err != nil || !strings.Contains(out, "message_size_limit = 10240000") {
		t.Errorf("config -d: %v\n%s", err, out)
	}

	// newaliases: a broken file is refused with file:line, a good one counted.
	os.WriteFile(s.Cfg.AliasFile, []byte("postmaster: root\nbroken line without colon\n"), 0644)
	out, err := exec.Command(filepath.Join(binDir, "newaliases"), "-C", s.Config).CombinedOutput()
	if err == nil || !strings.Contains(string(out), s.Cfg.AliasFile+":2") {
		t.Errorf("newaliases on a broken file: %v %q", err, out)
	}
	os.WriteFile(s.Cfg.AliasFile, []byte("postmaster: root\nabuse: root\n"), 0644)
	if out, err := s.Posthorn("", "aliases"); err != nil || !strings.Contains(out, "2 aliases") {
		t.Errorf("posthorn aliases: %v %q", err, out)
	}
}

func TestReloadAndStop(t *testing.T) {
	s := StartSystem(t, nil)
	ehloSize := func() string {
		out, err := s.Python(`
import os, smtplib
s = smtplib.SMTP(os.environ["SMTP_HOST"], int(os.environ["SMTP_PORT"]))
s.ehlo("x")
print(s.esmtp_features.get("size"))
s.quit()
`)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out)
	}
	if got := ehloSize(); got != "10240000" {
		t.Fatalf("SIZE %s", got)
	}
	cfg, _ := os.ReadFile(s.Config)
	os.WriteFile(s.Config, []byte(strings.Replace(string(cfg), "message_size_limit = 10240000", "message_size_limit = 2048000", 1)), 0644)
	if out, err := s.Posthorn("", "reload"); err != nil {
		t.Fatalf("reload: %v %s", err, out)
	}
	s.WaitFor("the new size limit", 10*time.Second, func() bool { return ehloSize() == "2048000" })
	if !strings.Contains(s.Log(), "reload -- version") {
		t.Errorf("reload not logged")
	}
	// A broken configuration is refused and the old one stays.
	os.WriteFile(s.Config, []byte("this is not toml ["), 0644)
	s.Posthorn("", "reload")
	pids := s.DaemonPids("smtpd")
	if got := ehloSize(); got != "2048000" {
		t.Errorf("after a bad reload SIZE is %s", got)
	}
	os.WriteFile(s.Config, cfg, 0644)

	// A second master on the same spool refuses to start.
	out, err := exec.Command(filepath.Join(binDir, "master"), "-c", s.Config).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "already running") {
		t.Errorf("second master: %v %q", err, out)
	}
	if p := s.DaemonPids("smtpd"); len(p) != 1 || len(pids) != 1 || p[0] != pids[0] {
		t.Errorf("smtpd changed from %v to %v after a refused second master", pids, p)
	}

	// stop leaves no process behind.
	all := s.DaemonPids("")
	if out, err := s.Posthorn("", "stop"); err != nil {
		t.Fatalf("stop: %v %s", err, out)
	}
	s.WaitFor("master to exit", 20*time.Second, func() bool {
		select {
		case <-s.waited:
			return true
		default:
			return false
		}
	})
	for _, pid := range all {
		if syscall.Kill(pid, 0) == nil {
			if st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil && !strings.Contains(string(st), ") Z ") {
				t.Errorf("process %d still running after stop", pid)
			}
		}
	}
	if out, err := s.Posthorn("", "status"); err == nil {
		t.Errorf("status after stop: %q", out)
	}
}

func TestQueueOperations(t *testing.T) {
	s := StartSystem(t, func(c *config.Config) { c.SMTPD.RelayNetworks = []string{"127.0.0.0/8"} })
	var ids []string
	for i := 0; i < 3; i++ {
		out, err := s.Python(`
import os, smtplib
s = smtplib.SMTP(os.environ["SMTP_HOST"], int(os.environ["SMTP_PORT"]))
s.ehlo("x"); s.mail("sender@example.org"); s.rcpt("someone@remote.example")
print(s.data(b"Subject: queued\r\n\r\nkept in the queue\r\n")[1].decode())
s.quit()
`)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, queuedAs.FindStringSubmatch(out)[1])
	}
	s.WaitFor("three deferred messages", 15*time.Second, func() bool {
		ents, _ := os.ReadDir(filepath.Join(s.Cfg.SpoolDir, "deferred"))
		return len(ents) == 3
	})

	out, err := s.Posthorn("", "queue", "show", ids[0])
	if err != nil || !strings.Contains(out, "sender: sender@example.org") || !strings.Contains(out, "kept in the queue") ||
		!strings.Contains(out, "(deferred: 4.") {
		t.Errorf("queue show: %v\n%s", err, out)
	}
	// Each operation is logged Postfix-style (to standard error, or syslog).
	if out, err := s.Posthorn("", "queue", "hold", ids[0]); err != nil || !strings.Contains(out, "Placed on hold: 1 message") ||
		!strings.Contains(out, "posthorn/postsuper[") || !strings.Contains(out, ids[0]+": placed on hold") {
		t.Errorf("hold: %v %q", err, out)
	}
	if q, _ := s.Posthorn("", "queue", "list"); !strings.Contains(q, ids[0]+"!") {
		t.Errorf("held message not marked with !:\n%s", q)
	}
	if out, err := s.Posthorn("", "queue", "release", ids[0]); err != nil || !strings.Contains(out, "Released from hold: 1 message") {
		t.Errorf("release: %v %q", err, out)
	}
	if out, err := s.Posthorn(ids[1]+"\n", "queue", "delete", "-"); err != nil || !strings.Contains(out, "Deleted: 1 message") {
		t.Errorf("delete -: %v %q", err, out)
	}
	if out, err := s.Posthorn("", "queue", "delete", "../../etc/passwd"); err == nil {
		t.Errorf("delete accepted a path: %q", out)
	}
	if out, err := s.Posthorn("", "queue", "flush"); err != nil {
		t.Errorf("flush: %v %q", err, out)
	}
	s.WaitFor("the flushed messages to be tried again", 15*time.Second, func() bool {
		return strings.Count(s.Log(), "to=<someone@remote.example>") >= 5
	})
	if out, err := s.Posthorn("", "queue", "delete", "ALL"); err != nil || !strings.Contains(out, "Deleted: 2 messages") {
		t.Errorf("delete ALL: %v %q", err, out)
	}
	s.WaitFor("an empty queue", 10*time.Second, s.QueueEmpty)
}

func TestBarePostmasterReachesTheAlias(t *testing.T) {
	s := StartSystem(t, nil)
	os.WriteFile(s.Cfg.AliasFile, []byte("postmaster: pm@example.test\n"), 0644)
	s.AddUser("pm@example.test")
	out, err := s.Python(`
import os, smtplib
s = smtplib.SMTP(os.environ["SMTP_HOST"], int(os.environ["SMTP_PORT"]))
s.ehlo("x"); s.mail("a@example.org")
print(s.docmd("RCPT TO:<Postmaster>")[0])
print(s.data(b"Subject: to postmaster\r\n\r\nhello\r\n")[0])
s.quit()
`)
	if err != nil || out != "250\n250\n" {
		t.Fatalf("replies %q %v", out, err)
	}
	for _, b := range s.WaitMessages(s.Maildir("pm"), 1, 15*time.Second) {
		if !strings.Contains(b, "Subject: to postmaster") {
			t.Fatalf("got:\n%s", b)
		}
	}
}
