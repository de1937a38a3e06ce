package imapstore

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/pkg/mailbox"
)

func msg(subject, body string) []byte {
	return []byte("From: Bob <bob@example.org>\r\nTo: alice@example.test\r\nSubject: " + subject +
		"\r\nMessage-ID: <" + strings.ReplaceAll(subject, " ", ".") + "@example.org>\r\n\r\n" + body + "\r\n")
}

func has(lines []string, sub string) bool {
	for _, l := range lines {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}

func TestMailboxOperations(t *testing.T) {
	e := newEnv(t, mailbox.Options{})
	e.deliver(msg("first", "hello world"))
	e.deliver(msg("second", "the quick brown fox"))
	cl := e.login()
	u := cl.ok("SELECT INBOX")
	if !has(u, "* 2 EXISTS") || !has(u, "UIDVALIDITY") {
		t.Fatalf("SELECT: %q", u)
	}
	// BODY[] is the message with CRLF line ends, RFC822.SIZE octets.
	u = cl.ok("UID FETCH 1 (RFC822.SIZE BODY.PEEK[])")
	want := string(msg("first", "hello world"))
	if !has(u, fmt.Sprintf("RFC822.SIZE %d BODY[] {%d}\r\n%s)", len(want), len(want), want)) {
		t.Fatalf("FETCH BODY[]: %q", u)
	}
	if u = cl.ok("UID SEARCH TEXT fox"); !has(u, "* SEARCH 2\r\n") {
		t.Fatalf("SEARCH TEXT: %q", u)
	}
	if u = cl.ok("SEARCH SUBJECT first"); !has(u, "* SEARCH 1\r\n") {
		t.Fatalf("SEARCH SUBJECT: %q", u)
	}
	cl.ok("STORE 1 +FLAGS (\\Flagged $Label1)")
	if u = cl.ok("FETCH 1 FLAGS"); !has(u, `\Flagged`) || !has(u, "$Label1") {
		t.Fatalf("FLAGS: %q", u)
	}
	cl.ok("CREATE Archive")
	_, st := cl.do("UID COPY 1 Archive")
	if !strings.Contains(st, "COPYUID") {
		t.Fatalf("COPY: %s", st)
	}
	_, st = cl.do("UID MOVE 2 Archive")
	if !strings.HasPrefix(st, "OK") {
		t.Fatalf("MOVE: %s", st)
	}
	cl.ok("STORE 1 +FLAGS (\\Deleted)")
	if u = cl.ok("EXPUNGE"); !has(u, "* 1 EXPUNGE") {
		t.Fatalf("EXPUNGE: %q", u)
	}
	if u = cl.ok("STATUS Archive (MESSAGES UIDNEXT)"); !has(u, "MESSAGES 2") {
		t.Fatalf("STATUS: %q", u)
	}
	body := "Subject: appended\r\n\r\nbody\r\n"
	_, st = cl.do(fmt.Sprintf("APPEND Archive (\\Seen) {%d+}\r\n%s", len(body), body))
	if !strings.Contains(st, "APPENDUID") {
		t.Fatalf("APPEND: %s", st)
	}
	cl.ok("SELECT Archive")
	if u = cl.ok("FETCH 3 (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])"); !has(u, `\Seen`) || !has(u, "appended") {
		t.Fatalf("appended message: %q", u)
	}
	if u = cl.ok("LIST \"\" *"); !has(u, "Archive") || !has(u, "INBOX") {
		t.Fatalf("LIST: %q", u)
	}
	_, st = cl.do("CREATE cur")
	if !strings.HasPrefix(st, "NO") {
		t.Fatalf("CREATE cur: %s", st)
	}
}

// TestIdleDelivery: a session in IDLE hears of a delivery by another
// program (local(8) writing to new/) within a second.
func TestIdleDelivery(t *testing.T) {
	e := newEnv(t, mailbox.Options{})
	e.deliver(msg("one", "x"))
	cl := e.login()
	cl.ok("SELECT INBOX")
	fmt.Fprintf(cl.c, "i IDLE\r\n")
	if l := cl.line(); !strings.HasPrefix(l, "+ ") {
		t.Fatalf("IDLE: %q", l)
	}
	start := time.Now()
	e.deliver(msg("two", "y"))
	cl.c.SetReadDeadline(time.Now().Add(time.Second))
	l, err := cl.r.ReadString('\n')
	if err != nil || l != "* 2 EXISTS\r\n" {
		t.Fatalf("after delivery: %q %v", l, err)
	}
	t.Logf("EXISTS after %v", time.Since(start))
	fmt.Fprintf(cl.c, "DONE\r\n")
	for {
		if l := cl.line(); strings.HasPrefix(l, "i ") {
			break
		}
	}
}

// TestTwoSessions: changes of one session reach the other.
func TestTwoSessions(t *testing.T) {
	e := newEnv(t, mailbox.Options{})
	e.deliver(msg("one", "x"))
	e.deliver(msg("two", "y"))
	a, b := e.login(), e.login()
	a.ok("SELECT INBOX")
	b.ok("SELECT INBOX")
	a.ok("STORE 1 +FLAGS (\\Seen)")
	if u := b.ok("NOOP"); !has(u, `* 1 FETCH (FLAGS (\Seen))`) {
		t.Fatalf("flag change not seen: %q", u)
	}
	a.ok("STORE 2 +FLAGS (\\Deleted)")
	a.ok("EXPUNGE")
	if u := b.ok("NOOP"); !has(u, "* 2 EXPUNGE") {
		t.Fatalf("expunge not seen: %q", u)
	}
}

func TestQuota(t *testing.T) {
	e := newEnv(t, mailbox.Options{Quota: &mailbox.QuotaLimits{Bytes: 10 << 10, Count: 5}})
	e.deliver(msg("one", strings.Repeat("x", 3000)))
	cl := e.login()
	u := cl.ok("GETQUOTAROOT INBOX")
	if !has(u, `* QUOTAROOT INBOX ""`) || !has(u, "STORAGE 4 10") || !has(u, "MESSAGE 1 5") {
		t.Fatalf("GETQUOTAROOT: %q", u)
	}
	big := strings.Repeat("y", 9000)
	_, st := cl.do(fmt.Sprintf("APPEND INBOX {%d+}\r\n%s", len(big), big))
	if !strings.Contains(st, "OVERQUOTA") {
		t.Fatalf("APPEND over quota: %s", st)
	}
}
