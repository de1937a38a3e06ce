package server

import (
	"strings"
	"testing"
)

func TestCreateDeleteRename(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.login()
	c.ok("a CREATE Work")
	c.ok("b CREATE Work.Projects")
	c.expect("c CREATE Work", "NO", "[ALREADYEXISTS]")
	c.expect("d CREATE inbox", "NO", "[ALREADYEXISTS]")
	c.ok(`e CREATE "Sent Items" (USE (\Sent))`)
	c.expect(`f CREATE Foo (USE (\Bogus))`, "NO", "[USEATTR]")
	out := c.ok(`g LIST "" *`)
	mustHave(t, out, `* LIST (\HasNoChildren) "." INBOX`, `* LIST (\HasChildren) "." Work`,
		`* LIST (\HasNoChildren) "." Work.Projects`, `* LIST (\HasNoChildren \Sent) "." "Sent Items"`)
	if !strings.Contains(out[0], "INBOX") {
		t.Fatalf("INBOX not first: %q", out)
	}
	c.ok("h RENAME Work Job")
	out = c.ok(`i LIST "" *`)
	mustHave(t, out, `"." Job`, `"." Job.Projects`)
	mustNotHave(t, out, "Work")
	c.expect("j RENAME Nope Other", "NO", "[NONEXISTENT]")
	c.expect("k RENAME Job Job.Projects.Sub", "NO", "")
	c.expect("l DELETE INBOX", "NO", "")
	c.ok("m DELETE Job.Projects")
	c.expect("n DELETE Job.Projects", "NO", "[NONEXISTENT]")
	c.ok("o SELECT Job")
	c.expect("p DELETE Job", "NO", "selected")
	c.ok("q UNSELECT")
	c.ok("r DELETE Job")
	// RENAME INBOX moves its messages and leaves INBOX empty.
	ts.user.Deliver("INBOX", []byte(simpleMsg))
	c.ok("s RENAME INBOX Old")
	mustHave(t, c.ok("t STATUS Old (MESSAGES)"), "* STATUS Old (MESSAGES 1)")
	mustHave(t, c.ok("u STATUS INBOX (MESSAGES)"), "* STATUS INBOX (MESSAGES 0)")
}

func TestListVariants(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.login()
	for _, m := range []string{"A", "A.B.C", "X", "X.Y"} {
		c.ok("c CREATE " + m)
	}
	c.ok("s1 SUBSCRIBE A.B.C")
	c.ok("s2 SUBSCRIBE X")
	c.ok("s3 SUBSCRIBE X.Y")
	c.ok("d DELETE X.Y") // subscription remains, mailbox gone
	// The delimiter.
	mustHave(t, c.ok(`e LIST "" ""`), `* LIST (\Noselect) "." ""`)
	// "%" lists one level; A.B does not exist but has children.
	out := c.ok(`f LIST "" A.%`)
	mustHave(t, out, `* LIST (\Noselect \HasChildren) "." A.B`)
	mustNotHave(t, out, "A.B.C")
	out = c.ok(`g LIST "" *`)
	mustHave(t, out, `"." A.B.C`, `(\Noselect \HasChildren) "." A.B`)
	mustNotHave(t, out, "X.Y")
	// Reference + pattern, and INBOX in any case.
	mustHave(t, c.ok(`h LIST A. %`), `"." A.B`)
	mustHave(t, c.ok(`i LIST "" inbox`), `"." INBOX`)
	// LIST-EXTENDED (RFC 5258).
	out = c.ok(`j LIST (SUBSCRIBED) "" *`)
	mustHave(t, out, `* LIST (\HasNoChildren \Subscribed) "." A.B.C`, `* LIST (\NonExistent \HasNoChildren \Subscribed) "." X.Y`)
	mustNotHave(t, out, `"." A`+"\n")
	out = c.ok(`k LIST (SUBSCRIBED RECURSIVEMATCH) "" %`)
	mustHave(t, out, `* LIST (\HasChildren) "." A ("CHILDINFO" ("SUBSCRIBED"))`)
	c.expect(`l LIST (RECURSIVEMATCH) "" *`, "BAD", "")
	out = c.ok(`m LIST "" (A X) RETURN (SUBSCRIBED CHILDREN)`)
	mustHave(t, out, `* LIST (\HasChildren) "." A`, `* LIST (\HasNoChildren \Subscribed) "." X`)
	// LIST-STATUS (RFC 5819).
	ts.user.Deliver("INBOX", []byte(simpleMsg))
	out = c.ok(`n LIST "" INBOX RETURN (STATUS (MESSAGES UNSEEN SIZE))`)
	mustHave(t, out, `* LIST (\HasNoChildren) "." INBOX`, `* STATUS INBOX (MESSAGES 1 UNSEEN 1 SIZE `)
	// SPECIAL-USE (RFC 6154).
	c.ok(`o CREATE Trash (USE (\Trash))`)
	out = c.ok(`p LIST (SPECIAL-USE) "" *`)
	if len(out) != 1 || !strings.Contains(out[0], `\Trash`) {
		t.Fatalf("%q", out)
	}
	mustHave(t, c.ok(`q LIST "" * RETURN (SPECIAL-USE)`), `\Trash) "." Trash`)
	// LSUB (RFC 3501 §6.3.9).
	out = c.ok(`r LSUB "" *`)
	mustHave(t, out, `* LSUB () "." A.B.C`, `* LSUB () "." X`, `* LSUB (\Noselect) "." X.Y`)
	out = c.ok(`s LSUB "" A.%`)
	mustHave(t, out, `* LSUB (\Noselect) "." A.B`)
	c.ok("t UNSUBSCRIBE X")
	mustNotHave(t, c.ok(`u LSUB "" X`), `"." X`)
	c.expect("v UNSUBSCRIBE X", "NO", "")
	// Hostile patterns are cheap.
	c.ok(`w LIST "" "` + strings.Repeat("*%", 400) + `x"`)
	c.expect(`x LIST "" "`+strings.Repeat("*", 2000)+`"`, "BAD", "")
}

func TestStatusNamespaceQuota(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.user.StorageLimitKiB = 1000
	ts.user.MessageLimit = 5
	ts.user.Deliver("INBOX", []byte(simpleMsg), `\Seen`)
	ts.user.Deliver("INBOX", []byte(simpleMsg), `\Deleted`)
	c := ts.login()
	out := c.ok("a STATUS INBOX (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN HIGHESTMODSEQ SIZE DELETED APPENDLIMIT)")
	mustHave(t, out, "* STATUS INBOX (MESSAGES 2 RECENT 2 UIDNEXT 3 UIDVALIDITY ", "UNSEEN 1 HIGHESTMODSEQ ",
		" SIZE "+itoa(2*len(simpleMsg))+" DELETED 1 APPENDLIMIT 10240000)")
	c.expect("b STATUS INBOX (BOGUS)", "BAD", "")
	c.expect("c STATUS Nope (MESSAGES)", "NO", "[NONEXISTENT]")
	mustHave(t, c.ok("d NAMESPACE"), `* NAMESPACE (("" ".")) NIL NIL`)
	out = c.ok("e GETQUOTAROOT INBOX")
	mustHave(t, out, `* QUOTAROOT INBOX ""`, `* QUOTA "" (STORAGE 1 1000 MESSAGE 2 5)`)
	mustHave(t, c.ok(`f GETQUOTA ""`), `* QUOTA "" (STORAGE 1 1000 MESSAGE 2 5)`)
	c.expect(`g GETQUOTA "nope"`, "NO", "")
	c.expect(`h SETQUOTA "" (STORAGE 5)`, "NO", "")
	ts.user.MessageLimit = 2
	c.write("i APPEND INBOX {" + itoa(len(simpleMsg)) + "}\r\n")
	c.line()
	c.write(simpleMsg + "\r\n")
	if out := c.until("i"); !strings.Contains(out[len(out)-1], "i NO [OVERQUOTA]") {
		t.Fatal(out)
	}
	mustHave(t, c.ok("j CAPABILITY"), "QUOTA QUOTA=RES-STORAGE QUOTA=RES-MESSAGE")
}

func TestAppend(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.login()
	c.write(`a APPEND INBOX (\Seen $Label1) " 5-Mar-2024 14:30:00 +0100" {` + itoa(len(simpleMsg)) + "}\r\n")
	if l := c.line(); l != "+ OK" {
		t.Fatalf("%q", l)
	}
	c.write(simpleMsg + "\r\n")
	out := c.until("a")
	validity := u32(ts.user.UIDValidity("INBOX"))
	if out[len(out)-1] != "a OK [APPENDUID "+validity+" 1] Append completed." {
		t.Fatal(out)
	}
	c.ok("b SELECT INBOX")
	out = c.ok("c FETCH 1 (FLAGS INTERNALDATE)")
	mustHave(t, out, `FLAGS (\Seen $Label1 \Recent)`, `INTERNALDATE "05-Mar-2024 14:30:00 +0100"`)
	// Appending to the selected mailbox reports EXISTS before the OK.
	c.write("d APPEND INBOX {" + itoa(len(simpleMsg)) + "+}\r\n" + simpleMsg + "\r\n")
	mustHave(t, c.until("d"), "* 2 EXISTS", "d OK [APPENDUID "+validity+" 2]")
	c.expect(`e APPEND INBOX (\Recent) {1}`, "BAD", "")
	c.expect(`f APPEND INBOX (\Bogus) {1}`, "BAD", "")
	c.expect(`g APPEND INBOX "31-Feb-2024 00:00:00 +0000" {1}`, "BAD", "")
	c.expect(`g2 APPEND INBOX {0}`, "NO", "zero byte")
	// MULTIAPPEND is not offered: a second message is BAD.
	c.write("h APPEND INBOX {3+}\r\nabc {3+}\r\nxyz\r\n")
	if out := c.until("h"); !strings.HasPrefix(out[len(out)-1], "h BAD") {
		t.Fatal(out)
	}
	c.ok("i NOOP")
}
