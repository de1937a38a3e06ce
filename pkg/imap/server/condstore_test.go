package server

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var modseqRE = regexp.MustCompile(`HIGHESTMODSEQ (\d+)`)

func highestModSeq(t *testing.T, lines []string) uint64 {
	t.Helper()
	for _, l := range lines {
		if m := modseqRE.FindStringSubmatch(l); m != nil {
			n, _ := strconv.ParseUint(m[1], 10, 64)
			return n
		}
	}
	t.Fatalf("no HIGHESTMODSEQ in %q", lines)
	return 0
}

// CONDSTORE (RFC 7162 §3.1).
func TestCondStore(t *testing.T) {
	ts := newTestServer(t, nil)
	for i := 0; i < 3; i++ {
		ts.user.Deliver("INBOX", []byte(simpleMsg))
	}
	c := ts.login()
	out := c.ok("a SELECT INBOX (CONDSTORE)")
	hms := highestModSeq(t, out)
	out = c.ok("b FETCH 1:* (MODSEQ)")
	mustHave(t, out, "* 1 FETCH (MODSEQ (", "* 3 FETCH (MODSEQ (")
	// STORE reports the new MODSEQ; UNCHANGEDSINCE guards.
	out = c.ok(`c STORE 1 +FLAGS (\Seen)`)
	mustHave(t, out, `* 1 FETCH (UID 1 FLAGS (\Seen \Recent) MODSEQ (`)
	out = c.ok(`d STORE 1:3 (UNCHANGEDSINCE ` + u64(hms) + `) +FLAGS (\Flagged)`)
	if last := c.cmd("d2 NOOP"); false {
		_ = last
	}
	_ = out
	out = c.cmd(`e UID STORE 1:3 (UNCHANGEDSINCE ` + u64(hms) + `) +FLAGS.SILENT ($X)`)
	if !strings.HasPrefix(out[len(out)-1], "e OK [MODIFIED 1:3]") {
		t.Fatalf("%q", out)
	}
	out = c.cmd(`f STORE 2 (UNCHANGEDSINCE 0) +FLAGS ($X)`)
	if !strings.HasPrefix(out[len(out)-1], "f OK [MODIFIED 2]") {
		t.Fatalf("%q", out)
	}
	// CHANGEDSINCE returns only what changed.
	ts.user.SetFlags("INBOX", 2, `\Answered`)
	out = c.ok("n NOOP")
	mustHave(t, out, `* 2 FETCH (UID 2 FLAGS (\Answered \Recent) MODSEQ (`)
	cur := highestModSeq(t, c.ok("s STATUS INBOX (HIGHESTMODSEQ)"))
	out = c.ok("g UID FETCH 1:* (FLAGS) (CHANGEDSINCE " + u64(cur-1) + ")")
	if len(out) != 1 || !strings.Contains(out[0], "UID 2") || !strings.Contains(out[0], "MODSEQ (") {
		t.Fatalf("%q", out)
	}
	// SEARCH MODSEQ adds the highest mod-sequence of the result.
	out = c.ok("h SEARCH MODSEQ " + u64(cur))
	if len(out) != 1 || out[0] != "* SEARCH 2 (MODSEQ "+u64(cur)+")" {
		t.Fatalf("%q", out)
	}
	out = c.ok("i SEARCH RETURN (COUNT) MODSEQ \"/flags/\\\\draft\" all 1")
	mustHave(t, out, `* ESEARCH (TAG "i") COUNT 3 MODSEQ `)
	// ENABLE CONDSTORE is accepted and echoed.
	mustHave(t, c.ok("j ENABLE CONDSTORE"), "* ENABLED CONDSTORE")
}

// QRESYNC (RFC 7162 §3.2).
func TestQResync(t *testing.T) {
	ts := newTestServer(t, nil)
	for i := 0; i < 5; i++ {
		ts.user.Deliver("INBOX", []byte(simpleMsg))
	}
	c := ts.login()
	c.expect("a SELECT INBOX (QRESYNC (1 1))", "BAD", "QRESYNC isn't enabled")
	mustHave(t, c.ok("b ENABLE QRESYNC"), "* ENABLED QRESYNC")
	out := c.ok("c SELECT INBOX")
	hms := highestModSeq(t, out)
	validity := u32(ts.user.UIDValidity("INBOX"))
	// While the client is away: an expunge and a flag change.
	ts.user.ExpungeUID("INBOX", 2)
	ts.user.SetFlags("INBOX", 4, `\Flagged`)
	ts.user.Deliver("INBOX", []byte(simpleMsg))
	c.ok("d UNSELECT")
	out = c.ok("e SELECT INBOX (QRESYNC (" + validity + " " + u64(hms) + " 1:5))")
	mustHave(t, out, "* VANISHED (EARLIER) 2", `* 3 FETCH (UID 4 FLAGS (\Flagged) MODSEQ (`, "* 5 EXISTS")
	// A SELECT while selected marks the end of the old mailbox.
	out = c.ok("f SELECT INBOX (QRESYNC (" + validity + " " + u64(hms) + "))")
	if !strings.HasPrefix(out[0], "* OK [CLOSED]") {
		t.Fatalf("%q", out)
	}
	// Wrong UIDVALIDITY: a plain select.
	mustNotHave(t, c.ok("g SELECT INBOX (QRESYNC (1 "+u64(hms)+"))"), "VANISHED")
	// Expunges are VANISHED, not EXPUNGE, and FETCH carries the UID.
	ts.user.ExpungeUID("INBOX", 3)
	out = c.ok("h NOOP")
	mustHave(t, out, "* VANISHED 3")
	mustNotHave(t, out, "EXPUNGE")
	ts.user.SetFlags("INBOX", 1, `\Seen`)
	mustHave(t, c.ok("i NOOP"), `* 1 FETCH (UID 1 FLAGS (\Seen) MODSEQ (`)
	// UID FETCH ... (CHANGEDSINCE n VANISHED).
	out = c.ok("j UID FETCH 1:* (FLAGS) (CHANGEDSINCE " + u64(hms) + " VANISHED)")
	mustHave(t, out, "* VANISHED (EARLIER) 2:3", "UID 1 FLAGS (\\Seen)")
	c.expect("k FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)", "BAD", "")
	c.ok(`l STORE 1 +FLAGS.SILENT (\Deleted)`)
	out = c.cmd("m EXPUNGE")
	mustHave(t, out, "* VANISHED 1", "m OK [HIGHESTMODSEQ ")
}
