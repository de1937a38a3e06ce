package tests

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/posthorn/posthorn/pkg/config"
)

// startSink runs Postfix's smtp-sink on a free loopback port, dumping every
// transaction into dir.
func startSink(t *testing.T, dir string, extra ...string) int {
	t.Helper()
	bin, err := exec.LookPath("smtp-sink")
	if err != nil {
		if _, err2 := os.Stat("/usr/sbin/smtp-sink"); err2 != nil {
			t.Fatal("smtp-sink (Debian package postfix) is missing: make test installs it")
		}
		bin = "/usr/sbin/smtp-sink"
	}
	port := freePort(t)
	args := []string{"-d", filepath.Join(dir, "%M.")}
	if os.Geteuid() == 0 {
		// smtp-sink refuses to run as root; it writes its dumps as nobody,
		// who must reach dir (t.TempDir's parents are private).
		args = append(args, "-u", "nobody")
		for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
			os.Chmod(d, 0755)
		}
		os.Chmod(dir, 0777)
	}
	args = append(append(args, extra...), fmt.Sprintf("127.0.0.1:%d", port), "10")
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			return port
		}
		if time.Now().After(deadline) {
			t.Fatalf("smtp-sink does not listen: %v %s", err, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func sinkFiles(dir string) []string {
	var out []string
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			out = append(out, string(b))
		}
		return nil
	})
	return out
}

// TestRelayThroughSmartHost sends mail for another domain from a trusted
// network; posthorn's smtp client delivers it to smtp-sink as relayhost,
// and an alias naming a remote address is forwarded the same way.
func TestRelayThroughSmartHost(t *testing.T) {
	dump := t.TempDir()
	port := startSink(t, dump)
	s := StartSystem(t, func(c *config.Config) {
		c.SMTPD.RelayNetworks = []string{"127.0.0.0/8"}
		c.SMTP.Relayhost = fmt.Sprintf("[127.0.0.1]:%d", port)
	})
	os.WriteFile(s.Cfg.AliasFile, []byte("outside: friend@remote.example\n"), 0644)
	out, err := s.Python(`
import os, smtplib
s = smtplib.SMTP(os.environ["SMTP_HOST"], int(os.environ["SMTP_PORT"]))
print(s.sendmail("me@example.test", ["someone@remote.example"], b"Subject: relayed\r\n\r\n.dot line\r\nbody\r\n"))
print(s.sendmail("me@example.test", ["outside@localhost"], b"Subject: forwarded\r\n\r\nvia alias\r\n"))
s.quit()
`)
	if err != nil || out != "{}\n{}\n" {
		t.Fatalf("smtplib: %q %v", out, err)
	}
	var files []string
	s.WaitFor("two messages at the smart host", 30*time.Second, func() bool {
		files = sinkFiles(dump)
		return len(files) >= 2
	})
	all := strings.Join(files, "\n")
	for _, want := range []string{"Subject: relayed", "\n.dot line\n", "Subject: forwarded", "Delivered-To: outside@localhost",
		"someone@remote.example", "friend@remote.example"} {
		if !strings.Contains(all, want) {
			t.Errorf("smart host got no %q:\n%s", want, all)
		}
	}
	s.WaitFor("an empty queue", 15*time.Second, s.QueueEmpty)
	if !strings.Contains(s.Log(), fmt.Sprintf("relay=127.0.0.1[127.0.0.1]:%d", port)) || !strings.Contains(s.Log(), "status=sent (250") {
		t.Errorf("delivery lines:\n%s", tail(s.Log(), 20))
	}
}

// TestRemoteBounce: smtp-sink answers 5xx to RCPT; the message bounces to
// its (local) sender with a delivery status report.
func TestRemoteBounce(t *testing.T) {
	dump := t.TempDir()
	hard := startSink(t, dump, "-f", "RCPT")
	s := StartSystem(t, func(c *config.Config) {
		c.SMTPD.RelayNetworks = []string{"127.0.0.0/8"}
		c.SMTP.Relayhost = fmt.Sprintf("[127.0.0.1]:%d", hard)
	})
	s.AddUser("me@example.test")
	if _, err := s.Python(`
import os, smtplib
s = smtplib.SMTP(os.environ["SMTP_HOST"], int(os.environ["SMTP_PORT"]))
s.sendmail("me@example.test", ["nobody@remote.example"], b"Subject: doomed\r\n\r\nx\r\n")
s.quit()
`); err != nil {
		t.Fatal(err)
	}
	for _, b := range s.WaitMessages(s.Maildir("me"), 1, 30*time.Second) {
		if !strings.Contains(b, "Undelivered Mail Returned to Sender") || !strings.Contains(b, "nobody@remote.example") ||
			!strings.Contains(b, "Status: 5.") {
			t.Fatalf("bounce:\n%s", b)
		}
	}
}
