package imapstore

import (
	"io"
	"net"
	"testing"

	"github.com/posthorn/posthorn/pkg/imap/server"
	"github.com/posthorn/posthorn/pkg/mailbox"
	"github.com/posthorn/posthorn/pkg/maillog"
)

// another serves e's Maildir from a Store of its own: another imapd
// process as far as shared folder state goes.
func (e *env) another() *env {
	e.t.Helper()
	st, err := mailbox.OpenStore(e.root, mailbox.Options{})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { st.Close() })
	lg := maillog.New("posthorn", "imapstore-test", "stderr")
	lg.SetOutput(io.Discard)
	srv := server.New(server.Config{Backend: backend{st}, AuthFailureDelay: -1, Log: lg})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	go srv.Serve(l)
	e.t.Cleanup(func() { srv.Close() })
	return &env{t: e.t, root: e.root, addr: l.Addr().String(), w: e.w}
}

func mustHave(t *testing.T, lines []string, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if !has(lines, s) {
			t.Fatalf("no %q in %q", s, lines)
		}
	}
}

func mustNotHave(t *testing.T, lines []string, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if has(lines, s) {
			t.Fatalf("%q in %q", s, lines)
		}
	}
}

// Two read-write SELECTs in a row, in two processes: only the first gets
// \Recent; EXAMINE and later sessions see it taken (case 1).
func TestRecentOneSession(t *testing.T) {
	e := newEnv(t, mailbox.Options{})
	e2 := e.another()
	e.deliver(msg("one", "x"))
	e.deliver(msg("two", "y"))

	mustHave(t, e2.login().ok("EXAMINE INBOX"), "* 2 EXISTS", "* 2 RECENT")
	a := e.login()
	mustHave(t, a.ok("SELECT INBOX"), "* 2 EXISTS", "* 2 RECENT")
	mustHave(t, a.ok("FETCH 1:* FLAGS"), `* 1 FETCH (FLAGS (\Recent))`, `* 2 FETCH (FLAGS (\Recent))`)
	b := e2.login()
	mustHave(t, b.ok("SELECT INBOX"), "* 2 EXISTS", "* 0 RECENT")
	mustNotHave(t, b.ok("FETCH 1:* FLAGS"), `\Recent`)
	mustHave(t, e.login().ok("SELECT INBOX"), "* 0 RECENT")
	mustHave(t, e2.login().ok("EXAMINE INBOX"), "* 0 RECENT")

	// A later delivery: recent in exactly one of the two selected
	// sessions, and no longer for anyone after.
	e.deliver(msg("three", "z"))
	ub := b.ok("NOOP")
	ua := a.ok("NOOP")
	mustHave(t, ua, "* 3 EXISTS")
	mustHave(t, ub, "* 3 EXISTS")
	ra, rb := has(ua, "* 3 RECENT"), has(ub, "* 1 RECENT")
	if ra == rb {
		t.Fatalf("new message recent in a: %v, in b: %v (%q / %q)", ra, rb, ua, ub)
	}
	mustHave(t, e2.login().ok("EXAMINE INBOX"), "* 3 EXISTS", "* 0 RECENT")
	mustHave(t, e.login().ok("STATUS INBOX (MESSAGES RECENT)"), "* STATUS INBOX (MESSAGES 3 RECENT 0)")
}

// STATUS RECENT counts without taking (cases 2 and 4), and in the session
// that has the mailbox selected it is that session's count (case 3).
func TestRecentStatus(t *testing.T) {
	e := newEnv(t, mailbox.Options{})
	e2 := e.another()
	for _, s := range []string{"a", "b", "c"} {
		e.deliver(msg(s, "x"))
	}
	a := e.login()
	mustHave(t, a.ok("STATUS INBOX (MESSAGES RECENT)"), "* STATUS INBOX (MESSAGES 3 RECENT 3)")
	mustHave(t, e2.login().ok("STATUS INBOX (MESSAGES RECENT)"), "* STATUS INBOX (MESSAGES 3 RECENT 3)")
	mustHave(t, a.ok("SELECT INBOX"), "* 3 RECENT")
	mustHave(t, a.ok("FETCH 1:* FLAGS"), `* 1 FETCH (FLAGS (\Recent))`, `* 3 FETCH (FLAGS (\Recent))`)
	mustHave(t, a.ok("STATUS INBOX (MESSAGES RECENT)"), "* STATUS INBOX (MESSAGES 3 RECENT 3)")
	mustHave(t, a.ok(`STORE 2 +FLAGS ($Label9)`), `* 2 FETCH (FLAGS ($Label9 \Recent))`)

	// Elsewhere the messages are taken: STATUS is 0, not MESSAGES.
	c := e2.login()
	mustHave(t, c.ok("STATUS INBOX (MESSAGES RECENT)"), "* STATUS INBOX (MESSAGES 3 RECENT 0)")
	mustHave(t, c.ok("SELECT INBOX"), "* 0 RECENT")
	mustHave(t, c.ok("STATUS INBOX (RECENT)"), "* STATUS INBOX (RECENT 0)")
	mustNotHave(t, c.ok(`STORE 2 +FLAGS ($Label8)`), `\Recent`)

	e.deliver(msg("d", "x"))
	mustHave(t, e.login().ok("STATUS INBOX (MESSAGES RECENT)"), "* STATUS INBOX (MESSAGES 4 RECENT 1)")
	mustHave(t, c.ok("NOOP"), "* 4 EXISTS", "* 1 RECENT")
	mustHave(t, c.ok("STATUS INBOX (RECENT)"), "* STATUS INBOX (RECENT 1)")
	mustHave(t, e2.login().ok("STATUS INBOX (MESSAGES RECENT)"), "* STATUS INBOX (MESSAGES 4 RECENT 0)")
	u := a.ok("NOOP")
	mustHave(t, u, "* 4 EXISTS", "* 3 RECENT")
	mustNotHave(t, a.ok("FETCH 4 FLAGS"), `\Recent`)
}
