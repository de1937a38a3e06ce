package tests

import (
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/pkg/config"
)

var queuedAs = regexp.MustCompile(`queued as ([0-9A-F]{13})`)

func TestSmtplibDeliveryToMaildir(t *testing.T) {
	s := StartSystem(t, nil)
	s.AddUser("alice@example.test")
	out, err := s.Python(`
import os, smtplib
s = smtplib.SMTP(os.environ["SMTP_HOST"], int(os.environ["SMTP_PORT"]))
s.ehlo("client.example.org")
s.mail("sender@example.org")
s.rcpt("alice@example.test")
code, resp = s.data(b"Subject: hello\r\nFrom: sender@example.org\r\n\r\nfirst line\r\n.leading dot\r\n")
print(code, resp.decode())
s.quit()
`)
	if err != nil {
		t.Fatalf("smtplib: %v\n%s", err, s.Log())
	}
	m := queuedAs.FindStringSubmatch(out)
	if !strings.HasPrefix(out, "250 ") || m == nil {
		t.Fatalf("DATA reply %q", out)
	}
	id := m[1]
	msgs := s.WaitMessages(s.Maildir("alice"), 1, 15*time.Second)
	for name, body := range msgs {
		if !strings.HasPrefix(name, "new/") || !regexp.MustCompile(`,S=\d+,W=\d+$`).MatchString(name) {
			t.Errorf("Maildir file name %q lacks Dovecot's ,S=,W= sizes", name)
		}
		for _, want := range []string{
			"Return-Path: <sender@example.org>\n",
			"Delivered-To: alice@example.test\n",
			"Received: from client.example.org",
			"id " + id,
			"Subject: hello\n",
			"\nfirst line\n.leading dot\n",
		} {
			if !strings.Contains(body, want) {
				t.Errorf("delivered message lacks %q:\n%s", want, body)
			}
		}
		if strings.Contains(body, "\r") {
			t.Errorf("delivered message keeps CR line endings")
		}
	}
	s.WaitFor("queue to empty", 10*time.Second, s.QueueEmpty)
	log := s.Log()
	for _, want := range []string{
		id + ": client=",
		id + ": from=<sender@example.org>, size=",
		id + ": to=<alice@example.test>, relay=local, delay=",
		"status=sent (delivered to maildir)",
		id + ": removed",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q", want)
		}
	}
}

func TestSwaksPipeliningAndSubaddress(t *testing.T) {
	if _, err := exec.LookPath("swaks"); err != nil {
		t.Fatal("swaks is not installed: make test installs it (apt-get install swaks)")
	}
	s := StartSystem(t, nil)
	s.AddUser("bob@example.test")
	out, err := exec.Command("swaks", "--server", s.Addr, "--pipeline", "--from", "a@example.org",
		"--to", "bob+lists@example.test", "--header", "Subject: via swaks", "--body", "pipelined body").CombinedOutput()
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "PIPELINING") || !queuedAs.Match(out) {
		t.Fatalf("swaks transcript lacks PIPELINING or a queue ID:\n%s", out)
	}
	msgs := s.WaitMessages(s.Maildir("bob"), 1, 15*time.Second)
	for _, body := range msgs {
		if !strings.Contains(body, "Subject: via swaks") || !strings.Contains(body, "pipelined body") {
			t.Fatalf("delivered:\n%s", body)
		}
		if !strings.Contains(body, "X-Original-To: bob+lists@example.test") {
			t.Errorf("subaddress not kept in X-Original-To:\n%s", body)
		}
	}
}

func TestUnknownUserAndRelayDenied(t *testing.T) {
	s := StartSystem(t, nil)
	s.AddUser("carol@example.test")
	out, err := s.Python(`
import os, smtplib
s = smtplib.SMTP(os.environ["SMTP_HOST"], int(os.environ["SMTP_PORT"]))
s.ehlo("x")
s.mail("a@example.org")
for r in ["nobody@example.test", "victim@elsewhere.example", "victim%elsewhere.example@example.test",
          "@example.test:victim@elsewhere.example", "carol@example.test"]:
    # docmd: smtplib's own quoting would rewrite a source route.
    code, resp = s.docmd("RCPT TO:<%s>" % r)
    print(code, resp.decode())
s.quit()
`)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := []string{"550 5.1.1", "554 5.7.1", "550 5.1.1", "554 5.7.1", "250 "}
	if len(lines) != len(want) {
		t.Fatalf("replies:\n%s", out)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("reply %d: %q, want %s", i, lines[i], w)
		}
	}
	if !strings.Contains(s.Log(), "NOQUEUE: reject: RCPT from") {
		t.Errorf("rejections not logged Postfix-style")
	}
}

func TestMessageSizeLimit(t *testing.T) {
	s := StartSystem(t, func(c *config.Config) { c.MessageSizeLimit = 100000 })
	s.AddUser("dave@example.test")
	out, err := s.Python(`
import os, smtplib
s = smtplib.SMTP(os.environ["SMTP_HOST"], int(os.environ["SMTP_PORT"]))
s.ehlo("x")
print(s.esmtp_features.get("size"))
try:
    s.sendmail("a@example.org", ["dave@example.test"], b"Subject: big\r\n\r\n" + b"x" * 200000 + b"\r\n")
    print("accepted")
except smtplib.SMTPSenderRefused as e:
    print("mail refused", e.smtp_code, e.smtp_error.decode())
except smtplib.SMTPDataError as e:
    print("data refused", e.smtp_code, e.smtp_error.decode())
# The session stays usable after the refusal.
s.rset()
print(s.sendmail("a@example.org", ["dave@example.test"], b"Subject: small\r\n\r\nok\r\n"))
s.quit()
`)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "100000\n") {
		t.Errorf("SIZE not announced as 100000: %q", out)
	}
	if !strings.Contains(out, "refused 552") {
		t.Errorf("oversized message not refused with 552: %q", out)
	}
	msgs := s.WaitMessages(s.Maildir("dave"), 1, 15*time.Second)
	for _, b := range msgs {
		if !strings.Contains(b, "Subject: small") {
			t.Errorf("unexpected message delivered:\n%.200s", b)
		}
	}
	// Raw DATA without SIZE= goes over the limit during transfer: still 552.
	out, err = s.Python(`
import os, socket
c = socket.create_connection((os.environ["SMTP_HOST"], int(os.environ["SMTP_PORT"])))
f = c.makefile("rb")
def cmd(line):
    c.sendall(line)
    r = f.readline()
    while r[3:4] == b"-":
        r = f.readline()
    return r.decode().strip()
f.readline()
cmd(b"EHLO x\r\n"); cmd(b"MAIL FROM:<a@example.org>\r\n"); cmd(b"RCPT TO:<dave@example.test>\r\n"); cmd(b"DATA\r\n")
c.sendall(b"Subject: big\r\n\r\n" + (b"y" * 998 + b"\r\n") * 200)
print(cmd(b".\r\n"))
print(cmd(b"NOOP\r\n"))
`)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "552 5.3.4") || !strings.Contains(out, "\n250") {
		t.Errorf("oversized DATA: %q", out)
	}
	if n := len(Messages(s.Maildir("dave"))); n != 1 {
		t.Errorf("%d messages delivered, want 1", n)
	}
}

func TestBareLFSmugglingRejected(t *testing.T) {
	s := StartSystem(t, nil)
	s.AddUser("erin@example.test")
	s.AddUser("mallory@example.test")
	for i, payload := range []string{`\n.\n`, `\n.\r\n`, `\r\n.\n`, `\r.\r`} {
		out, err := s.Python(fmt.Sprintf(`
import os, socket
c = socket.create_connection((os.environ["SMTP_HOST"], int(os.environ["SMTP_PORT"])))
f = c.makefile("rb")
def reply():
    r = f.readline()
    while r[3:4] == b"-":
        r = f.readline()
    return r.decode().strip()
reply()
for line in [b"EHLO x\r\n", b"MAIL FROM:<a@example.org>\r\n", b"RCPT TO:<erin@example.test>\r\n", b"DATA\r\n"]:
    c.sendall(line); reply()
c.sendall(b"Subject: smuggle %d\r\n\r\nhello" + b"%s" +
          b"MAIL FROM:<evil@example.org>\r\nRCPT TO:<mallory@example.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nx\r\n.\r\n")
print(reply())
try:
    c.sendall(b"NOOP\r\n")
    print(reply() or "closed")
except OSError:
    print("closed")
`, i, payload))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(out, "550 5.5.2") || !strings.Contains(out, "closed") {
			t.Errorf("payload %s: replies %q, want 550 5.5.2 and a closed connection", payload, out)
		}
	}
	// Nothing was queued, so nothing can arrive; the queue is empty now.
	if !s.QueueEmpty() {
		t.Error("a smuggling attempt left a message in the queue")
	}
	if n := len(Messages(s.Maildir("mallory"))) + len(Messages(s.Maildir("erin"))); n != 0 {
		t.Errorf("%d messages delivered from smuggling attempts", n)
	}
}

func TestBDAT(t *testing.T) {
	s := StartSystem(t, nil)
	s.AddUser("frank@example.test")
	out, err := s.Python(`
import os, socket
c = socket.create_connection((os.environ["SMTP_HOST"], int(os.environ["SMTP_PORT"])))
f = c.makefile("rb")
def reply():
    r = f.readline(); lines = [r]
    while r[3:4] == b"-":
        r = f.readline(); lines.append(r)
    return b"".join(lines).decode()
reply()
c.sendall(b"EHLO x\r\n"); ehlo = reply()
print("CHUNKING" in ehlo)
chunk1 = b"Subject: chunked\r\n\r\nfirst part\r"
chunk2 = b"\nsecond part\r\n"
c.sendall(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<frank@example.test>\r\n" +
          b"BDAT %d\r\n" % len(chunk1) + chunk1 + b"BDAT %d LAST\r\n" % len(chunk2) + chunk2)
for _ in range(4):
    print(reply().strip())
c.sendall(b"QUIT\r\n"); reply()
`)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 || lines[0] != "True" || !strings.HasPrefix(lines[3], "250") || !queuedAs.MatchString(lines[4]) {
		t.Fatalf("BDAT replies:\n%s", out)
	}
	for _, b := range s.WaitMessages(s.Maildir("frank"), 1, 15*time.Second) {
		if !strings.Contains(b, "Subject: chunked\n\nfirst part\nsecond part\n") {
			t.Fatalf("chunked message delivered as:\n%s", b)
		}
	}
}

func TestHundredConcurrentSenders(t *testing.T) {
	s := StartSystem(t, nil)
	for i := 0; i < 5; i++ {
		s.AddUser(fmt.Sprintf("user%d@example.test", i))
	}
	out, err := s.Python(`
import os, smtplib, threading
ok = []
errs = []
def send(i):
    try:
        s = smtplib.SMTP(os.environ["SMTP_HOST"], int(os.environ["SMTP_PORT"]), timeout=60)
        s.sendmail("s%d@example.org" % i, ["user%d@example.test" % (i % 5)],
                   b"Subject: concurrent %d\r\nX-Seq: %d\r\n\r\nbody of message %d\r\n" % (i, i, i))
        s.quit()
        ok.append(i)
    except Exception as e:
        errs.append(repr(e))
ts = [threading.Thread(target=send, args=(i,)) for i in range(100)]
for t in ts: t.start()
for t in ts: t.join()
print(len(ok), errs[:3])
`)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "100 ") {
		t.Fatalf("senders: %s", out)
	}
	seen := map[string]int{}
	s.WaitFor("100 deliveries", 60*time.Second, func() bool {
		n := 0
		for i := 0; i < 5; i++ {
			n += len(Messages(s.Maildir(fmt.Sprintf("user%d", i))))
		}
		return n >= 100
	})
	for i := 0; i < 5; i++ {
		for _, b := range Messages(s.Maildir(fmt.Sprintf("user%d", i))) {
			m := regexp.MustCompile(`X-Seq: (\d+)`).FindStringSubmatch(b)
			if m == nil {
				t.Fatalf("message without X-Seq:\n%s", b)
			}
			seen[m[1]]++
			var seq int
			fmt.Sscan(m[1], &seq)
			if !strings.Contains(b, fmt.Sprintf("body of message %d\n", seq)) || seq%5 != i {
				t.Errorf("message %d in user%d's Maildir is wrong", seq, i)
			}
		}
	}
	for i := 0; i < 100; i++ {
		if seen[fmt.Sprint(i)] != 1 {
			t.Errorf("message %d delivered %d times", i, seen[fmt.Sprint(i)])
		}
	}
}
