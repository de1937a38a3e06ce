package server

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"
)

// Several sessions on one mailbox see each other's changes, at the points
// RFC 3501 §7 allows.
func TestConcurrentSessions(t *testing.T) {
	ts := newTestServer(t, nil)
	for i := 0; i < 5; i++ {
		ts.user.Deliver("INBOX", []byte(simpleMsg))
	}
	a := ts.loginSelect()
	b := ts.loginSelect()
	// \Recent belongs to the first session that saw the messages.
	mustHave(t, a.ok("r1 STATUS INBOX (RECENT)"), "RECENT 0")
	mustHave(t, a.ok("r2 FETCH 1 FLAGS"), `FLAGS (\Recent)`)
	mustHave(t, b.ok("r3 FETCH 1 FLAGS"), `FLAGS ()`)

	// A flag change by B reaches A at A's next command.
	b.ok(`s1 STORE 2 +FLAGS.SILENT (\Flagged)`)
	mustHave(t, a.ok("n1 NOOP"), `* 2 FETCH (FLAGS (\Flagged \Recent))`)
	// B's own silent change is not echoed back to B.
	mustNotHave(t, b.ok("n2 NOOP"), "FETCH")

	// An expunge by B: not during A's FETCH/STORE/SEARCH, but at NOOP.
	b.ok(`s2 STORE 3 +FLAGS.SILENT (\Deleted)`)
	out := b.ok("e1 EXPUNGE")
	mustHave(t, out, "* 3 EXPUNGE")
	out = a.cmd("f1 FETCH 1:5 (UID)")
	mustNotHave(t, out, "* 3 EXPUNGE")
	mustHave(t, out, "* 5 FETCH (UID 5)", "f1 NO [EXPUNGEISSUED]")
	mustNotHave(t, a.ok("f2 SEARCH ALL"), "* 3 EXPUNGE")
	out = a.cmd("f3 STORE 3 +FLAGS (\\Seen)")
	mustNotHave(t, out, "* 3 EXPUNGE")
	// UID commands may report it.
	out = a.ok("f4 UID SEARCH ALL")
	mustHave(t, out, "* SEARCH 1 2 4 5", "* 3 EXPUNGE")
	mustHave(t, a.ok("f5 FETCH 3 UID"), "* 3 FETCH (UID 4)")

	// Expunges of several messages are numbered as the client removes them.
	ts.user.ExpungeUID("INBOX", 4)
	ts.user.ExpungeUID("INBOX", 5)
	if out := a.ok("n3 NOOP"); strings.Join(out, "|") != "* 3 EXPUNGE|* 3 EXPUNGE" {
		t.Fatalf("%q", out)
	}
	ts.user.Deliver("INBOX", []byte(simpleMsg))
	ts.user.Deliver("INBOX", []byte(simpleMsg))
	out = b.ok("n4 NOOP")
	// B learns of the expunges and of two new messages (2 left + 2).
	if strings.Join(out, "|") != "* 3 EXPUNGE|* 3 EXPUNGE|* 4 EXISTS|* 2 RECENT" {
		t.Fatalf("%q", out)
	}
}

// EXPUNGE numbering within one response, CLOSE and UNSELECT.
func TestExpungeCloseUnselect(t *testing.T) {
	ts := newTestServer(t, nil)
	for i := 0; i < 6; i++ {
		ts.user.Deliver("INBOX", []byte(simpleMsg))
	}
	c := ts.loginSelect()
	c.ok(`a STORE 2,4:5 +FLAGS.SILENT (\Deleted)`)
	out := c.ok("b EXPUNGE")
	if strings.Join(out, "|") != "* 2 EXPUNGE|* 3 EXPUNGE|* 3 EXPUNGE" {
		t.Fatalf("%q", out)
	}
	c.ok(`c UID STORE 1,6 +FLAGS.SILENT (\Deleted)`)
	// UID EXPUNGE removes only the named \Deleted ones (RFC 4315).
	out = c.ok("d UID EXPUNGE 6")
	if strings.Join(out, "|") != "* 3 EXPUNGE" {
		t.Fatalf("%q", out)
	}
	c.ok("e UNSELECT")
	mustHave(t, c.ok("f STATUS INBOX (MESSAGES)"), "MESSAGES 2")
	c.ok("g SELECT INBOX")
	out = c.ok("h CLOSE")
	mustNotHave(t, out, "EXPUNGE")
	mustHave(t, c.ok("i STATUS INBOX (MESSAGES)"), "MESSAGES 1")
	c.expect("j FETCH 1 UID", "BAD", "No mailbox selected")
	c.expect("k CLOSE", "BAD", "")
}

func TestExamineIsReadOnly(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.user.Deliver("INBOX", []byte(simpleMsg))
	c := ts.login()
	out := c.ok("a EXAMINE INBOX")
	mustHave(t, out, "* OK [PERMANENTFLAGS ()]", "* 1 RECENT")
	if !strings.HasPrefix(c.cmd("a2 NOOP")[0], "a2 OK") {
		t.Fatal()
	}
	c.write("b EXAMINE INBOX\r\n")
	if out := c.until("b"); !strings.Contains(out[len(out)-1], "[READ-ONLY]") {
		t.Fatal(out)
	}
	c.expect(`c STORE 1 +FLAGS (\Seen)`, "NO", "read-only")
	c.expect("d EXPUNGE", "NO", "read-only")
	c.expect("e MOVE 1 INBOX", "NO", "read-only")
	c.ok("f FETCH 1 BODY[]")
	mustNotHave(t, c.ok("g FETCH 1 FLAGS"), `\Seen`)
	// EXAMINE claims no \Recent: a later SELECT still gets it.
	c.ok("h SELECT INBOX")
	mustHave(t, c.ok("i FETCH 1 FLAGS"), `\Recent`)
}

func TestStoreVariants(t *testing.T) {
	ts := newTestServer(t, nil)
	for i := 0; i < 3; i++ {
		ts.user.Deliver("INBOX", []byte(simpleMsg))
	}
	c := ts.loginSelect()
	out := c.ok(`a STORE 1:2 +FLAGS (\Seen $Work)`)
	mustHave(t, out, `* 1 FETCH (FLAGS (\Seen $Work \Recent))`, `* 2 FETCH (FLAGS (\Seen $Work \Recent))`,
		`* FLAGS (\Answered \Flagged \Deleted \Seen \Draft $Work)`)
	out = c.ok(`b UID STORE 2 -FLAGS ($Work)`)
	mustHave(t, out, `* 2 FETCH (UID 2 FLAGS (\Seen \Recent))`)
	out = c.ok(`c STORE 3 FLAGS \Answered \Draft`)
	mustHave(t, out, `* 3 FETCH (FLAGS (\Answered \Draft \Recent))`)
	mustNotHave(t, c.ok(`d STORE 3 FLAGS.SILENT (\Flagged)`), "FETCH")
	c.expect(`e STORE 1 +FLAGS (\Recent)`, "BAD", "Invalid system flag")
	c.expect(`f STORE 1 +FLAGS (\Foo)`, "BAD", "")
	c.expect(`g STORE 1 +FOO (\Seen)`, "BAD", "")
	// Flags are case-insensitive.
	mustHave(t, c.ok(`h STORE 1 FLAGS (\SEEN)`), `FLAGS (\Seen \Recent)`)
}

func TestCopyMove(t *testing.T) {
	ts := newTestServer(t, nil)
	for i := 0; i < 4; i++ {
		ts.user.Deliver("INBOX", []byte(simpleMsg))
	}
	c := ts.login()
	c.ok("a CREATE Archive")
	dest := u32(ts.user.UIDValidity("Archive"))
	c.ok("b SELECT INBOX")
	out := c.ok("c COPY 1:2 Archive")
	_ = out
	if l := c.cmd("c2 COPY 3 Archive"); l[len(l)-1] != "c2 OK [COPYUID "+dest+" 3 3] Copy completed." {
		t.Fatal(l)
	}
	c.expect("d COPY 1 Nowhere", "NO", "[TRYCREATE]")
	c.ok("d2 UID COPY 99 Archive")
	out = c.ok("e MOVE 2:3 Archive")
	mustHave(t, out, "* OK [COPYUID "+dest+" 2:3 4:5] Moved UIDs.", "* 2 EXPUNGE", "* 2 EXPUNGE")
	out = c.ok("f UID MOVE 4 Archive")
	mustHave(t, out, "* OK [COPYUID "+dest+" 4 6]", "* 2 EXPUNGE")
	mustHave(t, c.ok("g STATUS Archive (MESSAGES)"), "MESSAGES 6")
	c.expect("h MOVE 1 Nowhere", "NO", "[TRYCREATE]")
}

// The store's notification wakes an IDLE session for flag changes and
// expunges too, and the keep-alive does not disturb it.
func TestIdleFlagsAndExpunge(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.user.Deliver("INBOX", []byte(simpleMsg))
	ts.user.Deliver("INBOX", []byte(simpleMsg))
	c := ts.loginSelect()
	c.write("i IDLE\r\n")
	c.line()
	ts.user.SetFlags("INBOX", 1, `\Seen`)
	if l := c.line(); l != `* 1 FETCH (FLAGS (\Seen \Recent))` {
		t.Fatalf("%q", l)
	}
	ts.user.ExpungeUID("INBOX", 1)
	if l := c.line(); l != "* 1 EXPUNGE" {
		t.Fatalf("%q", l)
	}
	c.write("DONE\r\n")
	c.until("i")
	// IDLE in the authenticated state is allowed and ends with DONE.
	c.ok("u UNSELECT")
	c.write("j IDLE\r\n")
	c.line()
	time.Sleep(50 * time.Millisecond)
	c.write("done\r\n")
	if out := c.until("j"); !strings.HasPrefix(out[len(out)-1], "j OK") {
		t.Fatal(out)
	}
}

func TestShutdownSendsBye(t *testing.T) {
	ts := newTestServer(t, nil)
	a := ts.loginSelect()
	b := ts.login()
	a.write("i IDLE\r\n")
	a.line()
	done := make(chan struct{})
	go func() { ts.srv.Close(); close(done) }()
	mustHave(t, a.until("*"), "* BYE Server shutting down.")
	mustHave(t, b.until("*"), "* BYE Server shutting down.")
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
}

// A login process hands a logged-in connection over, with input it had
// already read.
func TestServeAuthenticated(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.user.Deliver("INBOX", []byte(simpleMsg))
	cli, sv := net.Pipe()
	defer cli.Close()
	go ts.srv.ServeAuthenticated(sv, Handoff{User: ts.user, Tag: "L1", Input: []byte("a SELECT INBOX\r\n")})
	c := &tconn{t: t, c: cli, r: bufio.NewReader(cli)}
	cli.SetDeadline(time.Now().Add(10 * time.Second))
	if l := c.line(); !strings.HasPrefix(l, "L1 OK [CAPABILITY IMAP4rev1") {
		t.Fatalf("%q", l)
	}
	mustHave(t, c.until("a"), "* 1 EXISTS", "a OK [READ-WRITE]")
	c.ok("b FETCH 1 UID")
	cli2, sv2 := net.Pipe()
	defer cli2.Close()
	go ts.srv.ServeAuthenticated(sv2, Handoff{User: ts.user})
	c = &tconn{t: t, c: cli2, r: bufio.NewReader(cli2)}
	cli2.SetDeadline(time.Now().Add(10 * time.Second))
	if l := c.line(); !strings.HasPrefix(l, "* PREAUTH [CAPABILITY") {
		t.Fatalf("%q", l)
	}
	c.ok("c LIST \"\" *")
}

// TakeOver gets a logged-in connection with the tag and the commands the
// client pipelined behind LOGIN, and nothing has answered the login yet.
func TestTakeOver(t *testing.T) {
	worker := newTestServer(t, nil)
	got := make(chan Handoff, 1)
	ts := newTestServer(t, func(c *Config) {
		c.TakeOver = func(conn net.Conn, h Handoff) {
			got <- h
			worker.srv.ServeAuthenticated(conn, h)
		}
	})
	ts.user.Deliver("INBOX", []byte(simpleMsg))
	c := ts.dial()
	c.write("L1 LOGIN alice secret\r\na SELECT INBOX\r\n")
	if l := c.line(); !strings.HasPrefix(l, "L1 OK [CAPABILITY IMAP4rev1") {
		t.Fatalf("%q", l)
	}
	h := <-got
	if h.Tag != "L1" || !h.Secure || h.User.Username() != "alice" {
		t.Fatalf("handoff %+v", h)
	}
	if string(h.Input) != "a SELECT INBOX\r\n" {
		// The pipelined command may not have arrived with LOGIN; then
		// it came straight through the connection.
		t.Logf("input %q", h.Input)
	}
	mustHave(t, c.until("a"), "* 1 EXISTS", "a OK [READ-WRITE]")
}
