package tests

import (
	"strings"
	"testing"
	"time"
)

// TestPOP3DownloadAndDelete: mail delivered by SMTP is downloaded and
// deleted with Python's poplib, through pop3-login, the auth daemon and a
// pop3d worker; POP3S works too, and a dropped session deletes nothing.
func TestPOP3DownloadAndDelete(t *testing.T) {
	s := StartSystem(t, nil)
	s.AddUser("popper@example.test")
	if _, err := s.Python(`
import os, smtplib
s = smtplib.SMTP(os.environ["SMTP_HOST"], int(os.environ["SMTP_PORT"]))
for i in range(3):
    s.sendmail("a@example.org", ["popper@example.test"], b"Subject: pop %d\r\n\r\n.line with a dot\r\nbody %d\r\n" % (i, i))
s.quit()
`); err != nil {
		t.Fatal(err)
	}
	s.WaitMessages(s.Maildir("popper"), 3, 15*time.Second)
	plain, tlsAddr := s.Cfg.POP3.Listen[0], s.Cfg.POP3.ListenTLS[0]
	port := func(a string) string { return a[strings.LastIndex(a, ":")+1:] }
	out, err := s.Python(`
import os, poplib, ssl
p = poplib.POP3("127.0.0.1", int(os.environ["PLAIN"]), timeout=20)
print(p.getwelcome().decode().split()[0])
p.user("popper@example.test"); print(p.pass_("pw-popper@example.test").decode().split()[0])
print(p.stat())
uidls = [l.decode() for l in p.uidl()[1]]
print(len(uidls), all(len(u.split()[1]) == 16 for u in uidls))
resp, lines, octets = p.retr(1)
print(b"\r\n".join(lines).decode().count(".line with a dot"))
p.dele(1)
# Drop the connection without QUIT: nothing is deleted (RFC 1939 §6).
import socket
p.sock.shutdown(socket.SHUT_RDWR); p.sock.close(); p.file.close()
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
import time
deadline = time.time() + 10
while True:
    # The server learns of the drop a moment later; until then the
    # maildrop is still locked (RFC 2449 IN-USE).
    q = poplib.POP3_SSL("127.0.0.1", int(os.environ["TLS"]), context=ctx, timeout=20)
    q.user("popper@example.test")
    try:
        q.pass_("pw-popper@example.test")
        break
    except poplib.error_proto as e:
        if b"IN-USE" not in e.args[0] or time.time() > deadline:
            raise
        q.sock.close()
        time.sleep(0.05)
print(q.stat()[0])
print([l.decode() for l in q.uidl()[1]] == uidls)
q.dele(1); q.dele(2)
print(q.quit().decode().split()[0])
r = poplib.POP3("127.0.0.1", int(os.environ["PLAIN"]), timeout=20)
r.user("popper@example.test")
try:
    r.pass_("wrong")
    print("accepted")
except poplib.error_proto as e:
    print("refused")
`, "PLAIN="+port(plain), "TLS="+port(tlsAddr))
	if err != nil {
		t.Fatalf("poplib: %v\n%s\n%s", err, out, tail(s.Log(), 20))
	}
	want := "+OK\n+OK\n(3, "
	if !strings.HasPrefix(out, want) || !strings.Contains(out, "\n3 True\n1\n3\nTrue\n+OK\nrefused\n") {
		t.Fatalf("poplib session:\n%s\nlog:\n%s", out, tail(s.Log(), 20))
	}
	s.WaitFor("the two deleted messages to leave the Maildir", 10*time.Second, func() bool {
		return len(Messages(s.Maildir("popper"))) == 1
	})
	if !strings.Contains(s.Log(), "pop3-login: Login: user=<popper@example.test>") ||
		!strings.Contains(s.Log(), "Disconnected: Logged out") {
		t.Errorf("POP3 logins not logged:\n%s", tail(s.Log(), 20))
	}
}
