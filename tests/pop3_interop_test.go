package tests

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/posthorn/posthorn/pkg/config"
)

// crlfToLF turns a POP3 transfer's line ends into the Maildir's.
func crlfToLF(s string) string { return strings.ReplaceAll(s, "\r\n", "\n") }

// messageBodies returns a Maildir's message contents, sorted.
func messageBodies(maildir string) []string {
	var out []string
	for _, m := range Messages(maildir) {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}

// TestCurlPOP3 downloads and deletes mail with curl's POP3 client: RETR of
// each message over plain POP3 (the content is the Maildir file's, dot
// unstuffed), UIDL and LIST, DELE of one message, and over POP3S and STLS.
func TestCurlPOP3(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
	s := StartSystem(t, nil)
	user, pass := "curly@example.test", "pw-curly@example.test"
	s.AddUser(user)
	if _, err := s.Python(`
import os, smtplib
s = smtplib.SMTP(os.environ["SMTP_HOST"], int(os.environ["SMTP_PORT"]))
for i in range(3):
    s.sendmail("a@example.org", ["curly@example.test"], b"Subject: curl %d\r\n\r\n.line with a dot\r\n..two dots\r\nbody %d\r\n" % (i, i))
s.quit()
`); err != nil {
		t.Fatal(err)
	}
	maildir := s.Maildir("curly")
	s.WaitMessages(maildir, 3, 15*time.Second)
	stored := messageBodies(maildir)
	plain, tlsPort := portOf(s.Cfg.POP3.Listen[0]), portOf(s.Cfg.POP3.ListenTLS[0])

	curl := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("curl", append([]string{"--silent", "--show-error", "--max-time", "20", "-u", user + ":" + pass}, args...)...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("curl %v: %v\n%s%s\nposthorn log:\n%s", args, err, out, stderr.String(), tail(s.Log(), 20))
		}
		return string(out)
	}

	// LIST and UIDL list three messages.
	list := strings.Split(strings.TrimSpace(crlfToLF(curl("pop3://127.0.0.1:"+plain+"/"))), "\n")
	if len(list) != 3 || !strings.HasPrefix(list[0], "1 ") || !strings.HasPrefix(list[2], "3 ") {
		t.Fatalf("LIST through curl: %q", list)
	}
	uidl := strings.Split(strings.TrimSpace(crlfToLF(curl("-X", "UIDL", "pop3://127.0.0.1:"+plain+"/"))), "\n")
	if len(uidl) != 3 {
		t.Fatalf("UIDL through curl: %q", uidl)
	}
	for i, l := range uidl {
		f := strings.Fields(l)
		if len(f) != 2 || f[0] != []string{"1", "2", "3"}[i] || len(f[1]) != 16 {
			t.Errorf("UIDL line %d through curl: %q", i+1, l)
		}
	}

	// RETR of each message gives the stored content.
	var got, byNumber []string
	for _, n := range []string{"1", "2", "3"} {
		body := curl("pop3://127.0.0.1:" + plain + "/" + n)
		if !strings.Contains(body, "\r\n.line with a dot\r\n..two dots\r\n") {
			t.Errorf("message %s through curl is not dot-unstuffed or not CRLF:\n%q", n, body)
		}
		got = append(got, crlfToLF(body))
	}
	byNumber = append(byNumber, got...)
	sort.Strings(got)
	for i := range stored {
		if crlfToLF(stored[i]) != got[i] {
			t.Errorf("message retrieved by curl differs from the Maildir's:\ncurl:    %q\nMaildir: %q", got[i], stored[i])
		}
	}

	// DELE of message 2 (the QUIT that follows commits it).
	curl("-X", "DELE", "-I", "pop3://127.0.0.1:"+plain+"/2")
	s.WaitFor("the deleted message to leave the Maildir", 10*time.Second, func() bool {
		return len(Messages(maildir)) == 2
	})
	left := strings.Split(strings.TrimSpace(crlfToLF(curl("-X", "UIDL", "pop3://127.0.0.1:"+plain+"/"))), "\n")
	if len(left) != 2 || strings.Fields(left[0])[1] != strings.Fields(uidl[0])[1] || strings.Fields(left[1])[1] != strings.Fields(uidl[2])[1] {
		t.Errorf("UIDL after deleting message 2: %q, want the UIDLs of 1 and 3 of %q", left, uidl)
	}

	// POP3S on the TLS port, and STLS on the plain one.
	for _, url := range []string{"pop3s://127.0.0.1:" + tlsPort + "/1", "pop3://127.0.0.1:" + plain + "/1"} {
		body := curl("--insecure", "--ssl-reqd", url)
		if crlfToLF(body) != byNumber[0] {
			t.Errorf("message 1 over %s: %q, want %q", url, body, byNumber[0])
		}
	}
	curl("--insecure", "-X", "DELE", "-I", "pop3s://127.0.0.1:"+tlsPort+"/1")
	s.WaitFor("the message deleted over POP3S to leave the Maildir", 10*time.Second, func() bool {
		return len(Messages(maildir)) == 1
	})
	remaining := messageBodies(maildir)
	if uidlLeft := strings.Split(strings.TrimSpace(crlfToLF(curl("-X", "UIDL", "pop3://127.0.0.1:"+plain+"/"))), "\n"); len(uidlLeft) != 1 || strings.Fields(uidlLeft[0])[1] != strings.Fields(uidl[2])[1] {
		t.Errorf("UIDL after both deletions: %q, want the third message's of %q", uidlLeft, uidl)
	}
	if body := crlfToLF(curl("pop3://127.0.0.1:" + plain + "/1")); body != crlfToLF(remaining[0]) || body != byNumber[2] {
		t.Errorf("the message left: curl %q, Maildir %q, want the third message %q", body, remaining[0], byNumber[2])
	}
}

// withoutFetchmailReceived removes the Received header fetchmail adds
// (above the message's first Received header), or returns "" if there is
// none.
func withoutFetchmailReceived(msg string) string {
	i := strings.Index(msg, "Received: from 127.0.0.1 [127.0.0.1]\n")
	if i < 0 {
		return ""
	}
	j := i + strings.Index(msg[i:], "\n") + 1
	for j < len(msg) && msg[j] == '\t' {
		j += strings.Index(msg[j:], "\n") + 1
	}
	if !strings.Contains(msg[i:j], "with POP3 (fetchmail-") {
		return ""
	}
	return msg[:i] + msg[j:]
}

// TestFetchmail downloads mail with fetchmail into an MDA and deletes it
// on the server (--nokeep): first over plain POP3 upgraded with STLS, then
// over POP3S; a last run finds nothing new.
func TestFetchmail(t *testing.T) {
	if _, err := exec.LookPath("fetchmail"); err != nil {
		t.Skip("fetchmail not installed")
	}
	s := StartSystem(t, nil)
	user, pass := "fetcher@example.test", "pw-fetcher@example.test"
	s.AddUser(user)
	maildir := s.Maildir("fetcher")
	dir := t.TempDir()
	out := filepath.Join(dir, "delivered")
	if err := os.Mkdir(out, 0700); err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(dir, "fetchmailhome")
	if err := os.Mkdir(home, 0700); err != nil {
		t.Fatal(err)
	}
	fetch := func(what, port, ssl string, wantCode int) string {
		t.Helper()
		rc := filepath.Join(dir, "fetchmailrc")
		conf := fmt.Sprintf("set no syslog\npoll 127.0.0.1 protocol pop3 port %s:\n  user %q password %q\n  %s no sslcertck\n  no rewrite\n  mda \"cat > $(mktemp %s/msg.XXXXXX)\"\n",
			port, user, pass, ssl, out)
		if err := os.WriteFile(rc, []byte(conf), 0600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("fetchmail", "-f", rc, "-v", "--nosyslog", "--nokeep", "--nodetach")
		cmd.Env = append(os.Environ(), "FETCHMAILHOME="+home, "HOME="+dir)
		b, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("fetchmail (%s): %v", what, err)
		}
		if code != wantCode {
			t.Fatalf("fetchmail (%s): exit status %d, want %d\n%s\nposthorn log:\n%s", what, code, wantCode, b, tail(s.Log(), 20))
		}
		return string(b)
	}
	delivered := func() []string {
		var msgs []string
		ents, _ := os.ReadDir(out)
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(out, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			msgs = append(msgs, string(b))
		}
		sort.Strings(msgs)
		return msgs
	}
	// check verifies that every message that was in the Maildir reached the
	// MDA whole (but for fetchmail's Received header), once.
	check := func(what string, stored []string, log string) {
		t.Helper()
		got := delivered()
		if len(got) != len(stored) {
			t.Fatalf("%s: %d messages delivered to the MDA, want %d\n%s", what, len(got), len(stored), log)
		}
		for _, m := range stored {
			n := 0
			for _, g := range got {
				if withoutFetchmailReceived(g) == crlfToLF(m) {
					n++
				}
			}
			if n != 1 {
				t.Errorf("%s: the Maildir message\n%q\nreached the MDA %d times; delivered:\n%q", what, m, n, got)
			}
		}
		s.WaitFor("the Maildir to be empty after fetchmail --nokeep", 10*time.Second, func() bool {
			return len(Messages(maildir)) == 0
		})
	}

	sendMail(t, s, user, 3, "fetch one", "fetch two", "fetch three")
	if _, err := s.Python(`
import os, smtplib
s = smtplib.SMTP(os.environ["SMTP_HOST"], int(os.environ["SMTP_PORT"]))
s.sendmail("a@example.org", ["fetcher@example.test"], b"Subject: dots\r\n\r\n.line with a dot\r\n..two dots\r\n.\r\nafter a lone dot\r\n")
s.quit()
`); err != nil {
		t.Fatal(err)
	}
	s.WaitMessages(maildir, 4, 15*time.Second)
	stored := messageBodies(maildir)
	log := fetch("STLS", portOf(s.Cfg.POP3.Listen[0]), "sslproto 'tls1.2+'", 0)
	if !strings.Contains(log, "STLS") {
		t.Errorf("fetchmail did not use STLS:\n%s", log)
	}
	check("over STLS", stored, log)

	sendMail(t, s, user, 2, "fetch four", "fetch five")
	s.WaitMessages(maildir, 2, 15*time.Second)
	more := messageBodies(maildir)
	log = fetch("POP3S", portOf(s.Cfg.POP3.ListenTLS[0]), "ssl", 0)
	if !strings.Contains(log, "SSL/TLS: using protocol") {
		t.Errorf("fetchmail did not use TLS on the POP3S port:\n%s", log)
	}
	check("over POP3S", append(stored, more...), log)

	// Nothing new: fetchmail exits with status 1 and delivers nothing.
	log = fetch("nothing new", portOf(s.Cfg.POP3.Listen[0]), "sslproto 'tls1.2+'", 1)
	check("a run with nothing new", append(stored, more...), log)
}

// pop3StateScript prints, as JSON, a POP3 maildrop's UIDL and LIST lines
// and each message's content. Optional argv[1] is a JSON list of message
// numbers deleted first (the QUIT that follows commits the deletion).
const pop3StateScript = `
import os, poplib, json, sys
p = poplib.POP3("127.0.0.1", int(os.environ["PORT"]), timeout=20)
p.user(os.environ["POP3_USER"]); p.pass_(os.environ["POP3_PASS"])
dele = json.loads(sys.argv[1]) if len(sys.argv) > 1 else []
for n in dele:
    p.dele(n)
if dele:
    p.quit()
    p = poplib.POP3("127.0.0.1", int(os.environ["PORT"]), timeout=20)
    p.user(os.environ["POP3_USER"]); p.pass_(os.environ["POP3_PASS"])
uidl = [l.decode() for l in p.uidl()[1]]
lst = [l.decode() for l in p.list()[1]]
msgs = [b"\r\n".join(p.retr(i + 1)[1]).decode() for i in range(len(lst))]
p.quit()
print(json.dumps({"uidl": uidl, "list": lst, "messages": msgs}))
`

type pop3Drop struct {
	UIDL     []string `json:"uidl"`
	List     []string `json:"list"`
	Messages []string `json:"messages"`
}

// pop3State logs in to a POP3 server on a loopback port, deletes the given
// messages, and returns the maildrop's UIDL and LIST lines and messages.
func pop3State(t *testing.T, port, user, pass string, dele ...int) pop3Drop {
	t.Helper()
	args := []string{"-c", pop3StateScript}
	if len(dele) > 0 {
		b, _ := json.Marshal(dele)
		args = append(args, string(b))
	}
	cmd := exec.Command("python3", args...)
	cmd.Env = append(os.Environ(), "PORT="+port, "POP3_USER="+user, "POP3_PASS="+pass)
	out, err := cmd.Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("pop3 state on port %s: %v\n%s%s", port, err, out, stderr)
	}
	var st pop3Drop
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("pop3 state: %v\n%s", err, out)
	}
	return st
}

// startDovecotPOP3 runs a private Dovecot (pop3d only, plaintext on a
// loopback port, Dovecot 2.3's default UIDL format spelled out) over one
// Maildir, with one user and password, its mail processes running as
// uid:gid. It is stopped when the test ends.
func startDovecotPOP3(t *testing.T, maildir, user, pass string, uid, gid int) (port string, logPath string) {
	t.Helper()
	dir := t.TempDir()
	for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0755)
	}
	p := freePort(t)
	port = fmt.Sprint(p)
	logPath = filepath.Join(dir, "dovecot.log")
	passwd := filepath.Join(dir, "passwd")
	if err := os.WriteFile(passwd, []byte(user+":{PLAIN}"+pass+"\n"), 0644); err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(dir, "home")
	os.MkdirAll(home, 0755)
	os.Chown(home, uid, gid)
	conf := filepath.Join(dir, "dovecot.conf")
	text := fmt.Sprintf(`base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[2]s
info_log_path = %[2]s
protocols = pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:%[3]s
pop3_uidl_format = %%08Xu%%08Xv
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%%u %[4]s
}
userdb {
  driver = static
  args = uid=%[5]d gid=%[6]d home=%[7]s
}
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = %[8]d
  }
  inet_listener pop3s {
    port = 0
  }
}
`, dir, logPath, maildir, passwd, uid, gid, home, p)
	if err := os.WriteFile(conf, []byte(text), 0644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("dovecot", "-F", "-c", conf)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
	dovelog := func() string {
		b, _ := os.ReadFile(logPath)
		return out.String() + string(b)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-done:
			t.Fatalf("dovecot exited at start:\n%s", dovelog())
		default:
		}
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, time.Second)
		if err == nil {
			c.SetDeadline(time.Now().Add(2 * time.Second))
			buf := make([]byte, 256)
			n, _ := c.Read(buf)
			c.Close()
			if strings.HasPrefix(string(buf[:n]), "+OK") {
				return port, logPath
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("dovecot did not answer on port %s within 20 s:\n%s", port, dovelog())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestDovecotPOP3UIDLs runs Debian's Dovecot pop3d and posthorn's pop3d
// over the same Maildir: both list the same UIDLs (Dovecot's default
// %08Xu%08Xv: UID and UIDVALIDITY), sizes and contents, whichever server
// reads a delivery first, and after a deletion through Dovecot.
func TestDovecotPOP3UIDLs(t *testing.T) {
	if _, err := exec.LookPath("dovecot"); err != nil {
		t.Skip("dovecot not installed")
	}
	if _, err := os.Stat("/usr/lib/dovecot/pop3"); err != nil {
		t.Skip("Dovecot's pop3d (dovecot-pop3d) not installed")
	}
	if os.Geteuid() != 0 {
		t.Skip("the test runs Dovecot as root with a separate mail user (CI runs as root)")
	}
	ensureUser(t, "posthorn-test", false)
	vmailUID, vmailGID, _ := ensureUser(t, "phvmail-test", false)
	os.Chmod(binDir, 0755)
	s := NewSystem(t, func(c *config.Config) {
		c.MailOwner = "posthorn-test"
		c.Local.DeliveryUser = "root"
		c.Virtual.User, c.Virtual.Group = "phvmail-test", "phvmail-test"
	})
	for d := s.Dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0755)
	}
	os.MkdirAll(filepath.Join(s.Dir, "mail"), 0750)
	os.Chown(filepath.Join(s.Dir, "mail"), vmailUID, vmailGID)
	s.Start()
	t.Cleanup(s.Stop)
	user, pass := "popdove@example.test", "pw-popdove@example.test"
	s.AddUser(user)
	maildir := s.Maildir("popdove")
	php := portOf(s.Cfg.POP3.Listen[0])

	// Posthorn delivers and lists first, so posthorn assigns the UIDs.
	sendMail(t, s, user, 3, "one", "two", "three")
	s.WaitMessages(maildir, 3, 15*time.Second)
	first := pop3State(t, php, user, pass)
	if len(first.UIDL) != 3 {
		t.Fatalf("posthorn lists %d messages, want 3: %v", len(first.UIDL), first.UIDL)
	}

	dvp, dovelog := startDovecotPOP3(t, maildir, user, pass, vmailUID, vmailGID)
	compare := func(step string, d, p pop3Drop) {
		t.Helper()
		b, _ := os.ReadFile(dovelog)
		if !reflect.DeepEqual(d.UIDL, p.UIDL) {
			t.Errorf("%s: UIDL differs\ndovecot:  %q\nposthorn: %q\ndovecot log:\n%s", step, d.UIDL, p.UIDL, tail(string(b), 20))
		}
		if !reflect.DeepEqual(d.List, p.List) {
			t.Errorf("%s: LIST differs\ndovecot:  %q\nposthorn: %q", step, d.List, p.List)
		}
		if !reflect.DeepEqual(d.Messages, p.Messages) {
			t.Errorf("%s: message contents differ\ndovecot:  %q\nposthorn: %q", step, d.Messages, p.Messages)
		}
	}
	d := pop3State(t, dvp, user, pass)
	compare("posthorn's UIDLs read by dovecot", d, pop3State(t, php, user, pass))
	if !reflect.DeepEqual(d.UIDL, first.UIDL) {
		t.Errorf("the UIDLs changed once dovecot read the Maildir:\nbefore %q\nafter  %q", first.UIDL, d.UIDL)
	}

	// Message 2 deleted through Dovecot: both list the other two, with
	// their UIDLs unchanged.
	d = pop3State(t, dvp, user, pass, 2)
	s.WaitFor("the message deleted by dovecot to leave the Maildir", 10*time.Second, func() bool {
		return len(Messages(maildir)) == 2
	})
	compare("after DELE 2 through dovecot", d, pop3State(t, php, user, pass))
	if want := []string{"1 " + strings.Fields(first.UIDL[0])[1], "2 " + strings.Fields(first.UIDL[2])[1]}; !reflect.DeepEqual(d.UIDL, want) {
		t.Errorf("UIDL after deleting message 2: %q, want %q", d.UIDL, want)
	}

	// New deliveries read by Dovecot first: Dovecot assigns the UIDs.
	sendMail(t, s, user, 2, "four", "five")
	s.WaitMessages(maildir, 4, 15*time.Second)
	d = pop3State(t, dvp, user, pass)
	if len(d.UIDL) != 4 {
		t.Fatalf("dovecot lists %d messages, want 4: %q", len(d.UIDL), d.UIDL)
	}
	compare("new deliveries listed by dovecot first", d, pop3State(t, php, user, pass))

	// And one read by posthorn first.
	sendMail(t, s, user, 1, "six")
	s.WaitMessages(maildir, 5, 15*time.Second)
	p := pop3State(t, php, user, pass)
	if len(p.UIDL) != 5 {
		t.Fatalf("posthorn lists %d messages, want 5: %q", len(p.UIDL), p.UIDL)
	}
	compare("a new delivery listed by posthorn first", pop3State(t, dvp, user, pass), p)

	// A deletion through posthorn, seen by Dovecot.
	p = pop3State(t, php, user, pass, 1)
	s.WaitFor("the message deleted by posthorn to leave the Maildir", 10*time.Second, func() bool {
		return len(Messages(maildir)) == 4
	})
	compare("after DELE 1 through posthorn", pop3State(t, dvp, user, pass), p)
	if b, _ := os.ReadFile(dovelog); strings.Contains(string(b), "Error:") || strings.Contains(string(b), "Warning:") {
		t.Errorf("dovecot logged errors or warnings over posthorn's Maildir:\n%s", b)
	}
	t.Logf("final UIDLs, the same in both servers: %q", p.UIDL)
}
