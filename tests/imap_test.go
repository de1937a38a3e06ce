package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/pkg/config"
)

func portOf(addr string) string { return addr[strings.LastIndex(addr, ":")+1:] }

// imapEnv is what the Python scripts below need to reach the instance.
func imapEnv(s *System) []string {
	return []string{"IMAP_PORT=" + portOf(s.Cfg.IMAP.Listen[0]), "IMAPS_PORT=" + portOf(s.Cfg.IMAP.ListenTLS[0])}
}

// sendMail delivers messages by SMTP and waits until they are in the Maildir.
func sendMail(t *testing.T, s *System, rcpt string, n int, subjects ...string) {
	t.Helper()
	script := `
import os, smtplib, sys
s = smtplib.SMTP(os.environ["SMTP_HOST"], int(os.environ["SMTP_PORT"]))
for subj in sys.argv[1:]:
    s.sendmail("bob@example.org", [os.environ["RCPT"]], ("From: Bob <bob@example.org>\r\nTo: " + os.environ["RCPT"] + "\r\nSubject: " + subj + "\r\n\r\nHello, this is " + subj + ".\r\nThe quick brown fox.\r\n").encode())
s.quit()
`
	cmd := exec.Command("python3", append([]string{"-c", script}, subjects...)...)
	cmd.Env = append(os.Environ(), "SMTP_HOST=127.0.0.1", "SMTP_PORT="+portOf(s.Addr), "RCPT="+rcpt)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("smtplib: %v\n%s", err, out)
	}
}

// TestIMAPWithImaplib drives the whole IMAP service with Python's
// imaplib: plaintext login on loopback, STARTTLS and IMAPS with the
// self-signed certificate, then every common command; IDLE hears of an
// SMTP delivery within a second, and a second session sees the first
// one's changes.
func TestIMAPWithImaplib(t *testing.T) {
	s := StartSystem(t, nil)
	s.AddUser("imapper@example.test")
	// One after the other: two messages queued together may be delivered
	// in either order, and the script below relies on sequence numbers.
	sendMail(t, s, "imapper@example.test", 1, "first message")
	s.WaitMessages(s.Maildir("imapper"), 1, 15*time.Second)
	sendMail(t, s, "imapper@example.test", 1, "second message")
	s.WaitMessages(s.Maildir("imapper"), 2, 15*time.Second)
	out, err := s.Python(`
import os, imaplib, ssl, time, smtplib, sys
def check(cond, what):
    if not cond:
        print("FAIL", what); sys.exit(1)
    print("ok", what)
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
U, P = "imapper@example.test", "pw-imapper@example.test"

# Plaintext on loopback.
m = imaplib.IMAP4("127.0.0.1", int(os.environ["IMAP_PORT"]), timeout=20)
check(m.login(U, P)[0] == "OK", "plain login")
m.logout()

# Wrong password.
m = imaplib.IMAP4("127.0.0.1", int(os.environ["IMAP_PORT"]), timeout=20)
try:
    m.login(U, "wrong"); check(False, "bad password refused")
except imaplib.IMAP4.error as e:
    check("AUTHENTICATIONFAILED" in str(e), "bad password refused")
m.logout()

# IMAPS.
m = imaplib.IMAP4_SSL("127.0.0.1", int(os.environ["IMAPS_PORT"]), ssl_context=ctx, timeout=20)
check(m.login(U, P)[0] == "OK", "imaps login")
m.logout()

# STARTTLS, then the session proper.
m = imaplib.IMAP4("127.0.0.1", int(os.environ["IMAP_PORT"]), timeout=20)
check(m.starttls(ssl_context=ctx)[0] == "OK", "starttls")
check(m.login(U, P)[0] == "OK", "starttls login")
typ, boxes = m.list()
check(typ == "OK" and any(b"INBOX" in b for b in boxes), "list")
typ, data = m.select("INBOX")
check(typ == "OK" and data[0] == b"2", "select: 2 messages")
typ, data = m.fetch("1", "(ENVELOPE BODYSTRUCTURE)")
d = b"".join(x if isinstance(x, bytes) else b"".join(x) for x in data)
check(typ == "OK" and b"first message" in d and b"bob" in d and b'("text" "plain"' in d.lower(), "fetch envelope bodystructure: %r" % d)
typ, data = m.fetch("2", "(BODY.PEEK[])")
check(typ == "OK" and b"Hello, this is second message." in data[0][1] and b"\r\nReceived: " in b"\r\n" + data[0][1], "fetch body[]")
typ, data = m.search(None, "TEXT", "second")
check(data == [b"2"], "search text")
typ, data = m.search(None, "BODY", '"quick brown"')
check(data == [b"1 2"], "search body")
typ, data = m.store("1", "+FLAGS", "(\\Flagged $Work)")
check(typ == "OK" and b"\\Flagged" in data[0] and b"$Work" in data[0], "store flags")
check(m.create("Archive")[0] == "OK", "create")
typ, data = m.copy("1", "Archive")
check(typ == "OK", "copy")
typ, data = m.uid("MOVE", "2", "Archive")
check(typ == "OK", "move")
m.store("1", "+FLAGS", "(\\Deleted)")
typ, data = m.expunge()
check(typ == "OK" and data[-1] == b"1", "expunge: %r" % data)
typ, data = m.status("Archive", "(MESSAGES)")
check(b"MESSAGES 2" in data[0], "status after copy and move")
typ, data = m.append("Archive", "(\\Seen)", None, b"Subject: appended\r\n\r\nappended body\r\n")
check(typ == "OK" and b"APPENDUID" in data[0], "append")
typ, data = m.select("Archive")
check(data[0] == b"3", "archive has 3")
typ, data = m.fetch("1", "(FLAGS)")
check(b"\\Flagged" in data[0] and b"$Work" in data[0], "copied flags kept")

# A second session sees the first one's changes.
n = imaplib.IMAP4_SSL("127.0.0.1", int(os.environ["IMAPS_PORT"]), ssl_context=ctx, timeout=20)
n.login(U, P); n.select("Archive")
m.store("3", "+FLAGS", "(\\Answered)")
typ, data = n.noop()
check(any(b"\\Answered" in d for d in n.untagged_responses.get("FETCH", [])), "second session sees flag change")
n.logout()

# IDLE: a delivery by SMTP is noticed within a second.
m.select("INBOX")
tag = m._new_tag()
m.send(tag + b" IDLE\r\n")
check(m.readline().startswith(b"+"), "idle continuation")
s = smtplib.SMTP(os.environ["SMTP_HOST"], int(os.environ["SMTP_PORT"]))
s.sendmail("bob@example.org", [U], b"Subject: during idle\r\n\r\nhi\r\n")
s.quit()
t0 = time.time()
m.sock.settimeout(1.5)
line = m.readline()
dt = time.time() - t0
check(line.endswith(b"EXISTS\r\n"), "idle sees delivery: %r" % line)
check(dt < 1.0, "within a second (%.3f s)" % dt)
m.sock.settimeout(20)
m.send(b"DONE\r\n")
while not m.readline().startswith(tag): pass
m.logout()
`, imapEnv(s)...)
	if err != nil {
		t.Fatalf("%v\n%s\n%s", err, out, tail(s.Log(), 40))
	}
	t.Log(out)
}

// TestIMAPWithCurl fetches a message with curl over imap:// and imaps://.
func TestIMAPWithCurl(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
	s := StartSystem(t, nil)
	s.AddUser("curly@example.test")
	sendMail(t, s, "curly@example.test", 1, "for curl")
	s.WaitMessages(s.Maildir("curly"), 1, 15*time.Second)
	for _, url := range []string{
		"imap://127.0.0.1:" + portOf(s.Cfg.IMAP.Listen[0]) + "/INBOX;UID=1",
		"imaps://127.0.0.1:" + portOf(s.Cfg.IMAP.ListenTLS[0]) + "/INBOX;UID=1",
	} {
		out, err := exec.Command("curl", "-sS", "--insecure", "--max-time", "20",
			"--user", "curly@example.test:pw-curly@example.test", url).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Hello, this is for curl.") {
			t.Fatalf("curl %s: %v\n%s\n%s", url, err, out, tail(s.Log(), 30))
		}
	}
}

// TestIMAPPrivilegeSeparation, as root: imap-login runs as the mail
// owner, imapd's dispatcher as root, and the worker serving a virtual
// user as the virtual mailbox owner with no supplementary groups.
func TestIMAPPrivilegeSeparation(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("privilege separation needs root (CI runs as root)")
	}
	ownerUID, ownerGID, _ := ensureUser(t, "posthorn-test", false)
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
	s.AddUser("vimap@example.test")
	sendMail(t, s, "vimap@example.test", 1, "owned")
	s.WaitMessages(s.Maildir("vimap"), 1, 15*time.Second)
	// The session stays open while the processes are looked at.
	cmd := exec.Command("python3", "-c", `
import os, imaplib, sys
m = imaplib.IMAP4("127.0.0.1", int(os.environ["IMAP_PORT"]), timeout=20)
m.login("vimap@example.test", "pw-vimap@example.test")
typ, data = m.select("INBOX")
print(data[0].decode(), flush=True)
sys.stdin.readline()
m.store("1", "+FLAGS", "(\\Seen)")
m.logout()
`)
	cmd.Env = append(os.Environ(), imapEnv(s)...)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, _ := stdout.Read(buf)
	if strings.TrimSpace(string(buf[:n])) != "1" {
		t.Fatalf("select: %q\n%s", buf[:n], tail(s.Log(), 30))
	}
	want := func(prog string, uid, gid int, worker bool) {
		t.Helper()
		found := false
		for _, pid := range s.DaemonPids(prog) {
			cl, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			if strings.Contains(string(cl), "\x00worker\x00") != worker {
				continue
			}
			found = true
			u, g, groups := procIDs(t, pid)
			if u != strconv.Itoa(uid) || g != strconv.Itoa(gid) || groups != "" {
				t.Errorf("%s (worker %v) runs as uid %s gid %s groups %q, want %d:%d and none", prog, worker, u, g, groups, uid, gid)
			}
		}
		if !found {
			t.Errorf("no %s process (worker %v)", prog, worker)
		}
	}
	want("imap-login", ownerUID, ownerGID, false)
	want("imapd", 0, 0, false)
	want("imapd", vmailUID, vmailGID, true)
	stdin.Write([]byte("\n"))
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	// The flag change renamed the file as vmail, never as root.
	for name := range Messages(s.Maildir("vimap")) {
		if uid, _ := fileOwner(t, filepath.Join(s.Maildir("vimap"), name)); uid != vmailUID {
			t.Errorf("%s owned by %d", name, uid)
		}
	}
}

// TestIMAPIdleManySessions holds more IDLE sessions of one mailbox owner
// than the kernel gives a user inotify instances (128 by default): every
// one hears of a delivery by SMTP.
func TestIMAPIdleManySessions(t *testing.T) {
	s := StartSystem(t, nil)
	s.AddUser("idler@example.test")
	out, err := s.Python(`
import os, imaplib, smtplib, selectors, sys, time
N = 150  # more than the 128 inotify instances a user gets by default
U, P = "idler@example.test", "pw-idler@example.test"
sessions = []
for i in range(N):
    m = imaplib.IMAP4("127.0.0.1", int(os.environ["IMAP_PORT"]), timeout=30)
    m.login(U, P)
    m.select("INBOX")
    tag = m._new_tag()
    m.send(tag + b" IDLE\r\n")
    if not m.readline().startswith(b"+"):
        print("no IDLE continuation in session", i); sys.exit(1)
    sessions.append(m)
s = smtplib.SMTP(os.environ["SMTP_HOST"], int(os.environ["SMTP_PORT"]))
s.sendmail("bob@example.org", [U], b"Subject: to all idlers\r\n\r\nhi\r\n")
s.quit()
sel = selectors.DefaultSelector()
for i, m in enumerate(sessions):
    m.sock.setblocking(False)
    sel.register(m.sock, selectors.EVENT_READ, i)
heard, buf = set(), {}
deadline = time.time() + 10
while len(heard) < N and time.time() < deadline:
    for key, _ in sel.select(timeout=0.5):
        i = key.data
        try:
            data = key.fileobj.recv(4096)
        except BlockingIOError:
            continue
        buf[i] = buf.get(i, b"") + data
        if b" EXISTS\r\n" in buf[i]:
            heard.add(i)
            sel.unregister(key.fileobj)
print("heard", len(heard), "of", N)
sys.exit(0 if len(heard) == N else 1)
`, imapEnv(s)...)
	if err != nil {
		t.Fatalf("%v\n%s\n%s", err, out, tail(s.Log(), 20))
	}
	t.Log(strings.TrimSpace(out))
}
