package tests

import (
	"testing"
	"time"
)

// TestIMAPRecent checks \Recent (RFC 3501 §2.3.2) through the real master
// with Python's imaplib: a message is recent in exactly one session, the
// first read-write SELECT (or sync of a selected session) to see it;
// EXAMINE and STATUS count recent messages without taking them.
func TestIMAPRecent(t *testing.T) {
	s := StartSystem(t, nil)
	s.AddUser("recent@example.test")
	sendMail(t, s, "recent@example.test", 2, "first", "second")
	s.WaitMessages(s.Maildir("recent"), 2, 15*time.Second)
	out, err := s.Python(`
import os, imaplib, smtplib, sys, time
def check(cond, what):
    if not cond:
        print("FAIL", what); sys.exit(1)
    print("ok", what)
U, P = "recent@example.test", "pw-recent@example.test"
def login():
    m = imaplib.IMAP4("127.0.0.1", int(os.environ["IMAP_PORT"]), timeout=20)
    check(m.login(U, P)[0] == "OK", "login")
    return m
def status_recent(m):
    typ, data = m.status("INBOX", "(MESSAGES RECENT)")
    check(typ == "OK", "status")
    return data[0]
def recent_flags(m):
    typ, data = m.fetch("1:*", "(UID FLAGS)")
    return sorted(int(d.split(b"UID ")[1].split()[0]) for d in data if b"\\Recent" in d)

c = login()
check(status_recent(c) == b'INBOX (MESSAGES 2 RECENT 2)', "STATUS before any SELECT counts without taking")
e = login()
typ, data = e.select("INBOX", readonly=True)
check(e.response("RECENT")[1] == [b"2"], "EXAMINE sees 2 recent")
check(status_recent(c) == b'INBOX (MESSAGES 2 RECENT 2)', "EXAMINE took nothing")

a = login()
typ, data = a.select("INBOX")
check(data == [b"2"] and a.response("RECENT")[1] == [b"2"], "SELECT in A: RECENT 2")
check(recent_flags(a) == [1, 2], "A has \\Recent on both")
check(status_recent(a) == b'INBOX (MESSAGES 2 RECENT 2)', "STATUS in A counts A's recent messages")
b = login()
typ, data = b.select("INBOX")
check(data == [b"2"] and b.response("RECENT")[1] == [b"0"], "SELECT in B: RECENT 0")
check(recent_flags(b) == [], "B has no \\Recent")
check(status_recent(c) == b'INBOX (MESSAGES 2 RECENT 0)', "STATUS from a third session: 0")

# A new delivery is recent in exactly one of the two selected sessions.
smtp = smtplib.SMTP(os.environ["SMTP_HOST"], int(os.environ["SMTP_PORT"]))
smtp.sendmail("bob@example.org", [U], b"Subject: third\r\n\r\nhi\r\n")
smtp.quit()
deadline = time.time() + 15
while True:
    a.noop()
    if a.response("EXISTS")[1][-1:] == [b"3"]:
        break
    check(time.time() < deadline, "delivery reaches A")
    time.sleep(0.1)
b.noop()
ra, rb = 3 in recent_flags(a), 3 in recent_flags(b)
check(ra != rb, "new message recent in exactly one session (A %s, B %s)" % (ra, rb))
check(status_recent(c) == b'INBOX (MESSAGES 3 RECENT 0)', "STATUS from a third session after the take: 0")
e2 = login()
e2.select("INBOX", readonly=True)
check(e2.response("RECENT")[1] == [b"0"], "a later EXAMINE: RECENT 0")
for m in (a, b, c, e, e2):
    m.logout()
`, imapEnv(s)...)
	if err != nil {
		t.Fatalf("%v\n%s\n%s", err, out, tail(s.Log(), 40))
	}
	t.Log(out)
}
