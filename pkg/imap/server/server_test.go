package server

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestGreetingCapabilityLogout(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.dial()
	out := c.ok("a CAPABILITY")
	mustHave(t, out, "* CAPABILITY IMAP4rev1 IMAP4rev2 SASL-IR ID ENABLE IDLE LITERAL+ AUTH=PLAIN")
	mustNotHave(t, out, "LOGINDISABLED", "STARTTLS")
	c.ok("b NOOP")
	c.ok("c LOGIN alice secret")
	if !strings.Contains(c.cmd("d CAPABILITY")[0], "QRESYNC") {
		t.Fatal("post-login capabilities")
	}
	out = c.cmd("e LOGOUT")
	mustHave(t, out, "* BYE", "e OK")
	if !c.closed() {
		t.Fatal("not closed after LOGOUT")
	}
}

func TestLoginFailures(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.dial()
	c.expect("a LOGIN alice wrong", "NO", "[AUTHENTICATIONFAILED]")
	c.expect("b LOGIN nobody x", "NO", "[AUTHENTICATIONFAILED]")
	// The third failure ends the session (HOSTILE 33).
	c.write("c LOGIN alice nope\r\n")
	out := c.until("*")
	if !has(out, "c NO") && !strings.HasPrefix(c.line(), "c NO") {
		t.Fatalf("%q", out)
	}
	if !c.closed() {
		t.Fatal("not closed after 3 failures")
	}
	// Commands of later states before login.
	c = ts.dial()
	c.expect("a SELECT INBOX", "BAD", "Login first")
	c.expect("b FETCH 1 FLAGS", "BAD", "")
}

func TestAuthenticatePlain(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.dial()
	// SASL-IR (RFC 4959).
	c.ok("a AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==") // "\0alice\0secret"
	c = ts.dial()
	c.write("b AUTHENTICATE PLAIN\r\n")
	if l := c.line(); l != "+ " {
		t.Fatalf("%q", l)
	}
	c.write("YWxpY2UAYWxpY2UAc2VjcmV0\r\n") // "alice\0alice\0secret"
	if out := c.until("b"); !strings.HasPrefix(out[len(out)-1], "b OK [CAPABILITY") {
		t.Fatal(out)
	}
	// authzid that is not the user (HOSTILE 31), malformed PLAIN and
	// cancel (HOSTILE 32).
	c = ts.dial()
	c.expect("c AUTHENTICATE PLAIN Ym9iAGFsaWNlAHNlY3JldA==", "NO", "AUTH") // "bob\0alice\0secret"
	c.expect("d AUTHENTICATE PLAIN YWxpY2U=", "NO", "AUTHENTICATIONFAILED")
	c.write("e AUTHENTICATE PLAIN\r\n")
	c.line()
	c.write("*\r\n")
	c.until("e")
	c = ts.dial()
	c.expect("f AUTHENTICATE PLAIN !!!", "BAD", "")
	c.expect("g AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldABleHRyYQ==", "NO", "AUTHENTICATIONFAILED") // 3 NULs
	c.expect("h AUTHENTICATE CRAM-MD5", "NO", "Unsupported")
}

func TestSelectFetchBasics(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.user.Deliver("INBOX", []byte(simpleMsg))
	ts.user.Deliver("INBOX", []byte(multipartMsg), `\Seen`)
	c := ts.login()
	out := c.ok("a SELECT INBOX")
	mustHave(t, out, `* FLAGS (\Answered \Flagged \Deleted \Seen \Draft)`,
		`* OK [PERMANENTFLAGS (\Answered \Flagged \Deleted \Seen \Draft \*)]`,
		"* 2 EXISTS", "* 2 RECENT", "* OK [UNSEEN 1]", "* OK [UIDVALIDITY ", "* OK [UIDNEXT 3]")
	if !strings.Contains(c.cmd("x NOOP")[0], "x OK") {
		t.Fatal("NOOP")
	}
	out = c.ok("b FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE)")
	mustHave(t, out, `* 1 FETCH (UID 1 FLAGS (\Recent) RFC822.SIZE `+strconv.Itoa(len(simpleMsg))+` INTERNALDATE "`,
		`* 2 FETCH (UID 2 FLAGS (\Seen \Recent)`)
	out = c.ok("c FETCH 1 ENVELOPE")
	mustHave(t, out, `* 1 FETCH (ENVELOPE ("Mon, 1 Jan 2024 10:00:00 +0000" "hello there" (("Bob" NIL "bob" "example.org")) (("Bob" NIL "bob" "example.org")) (("Bob" NIL "bob" "example.org")) ((NIL NIL "alice" "example.test")) NIL NIL NIL "<1@example.org>"))`)
	out = c.ok("d FETCH 1 BODY.PEEK[TEXT]")
	mustHave(t, out, "* 1 FETCH (BODY[TEXT] {30}\r\nHi Alice,\r\nthis is the body.\r\n)")
	out = c.ok("e FETCH 1 (FLAGS)")
	mustNotHave(t, out, `\Seen`)
	// BODY[] without PEEK sets \Seen and reports it.
	out = c.ok("f FETCH 1 BODY[HEADER.FIELDS (Subject FROM)]")
	mustHave(t, out, "BODY[HEADER.FIELDS (Subject FROM)] {53}\r\nFrom: Bob <bob@example.org>\r\nSubject: hello there\r\n\r\n", `FLAGS (\Seen \Recent)`)
	out = c.ok("g FETCH 1 BODY[]<6.3>")
	mustHave(t, out, "BODY[]<6> {3}\r\nBob")
	out = c.ok("h UID FETCH 2 (BODYSTRUCTURE)")
	mustHave(t, out, `* 2 FETCH (UID 2 BODYSTRUCTURE (("text" "plain" ("charset" "utf-8") NIL NIL "quoted-printable" 18 0 NIL NIL NIL NIL)`+
		`("application" "octet-stream" NIL NIL NIL "base64" 8 NIL ("attachment" ("filename" "a.bin")) NIL NIL)`+
		`("message" "rfc822" NIL NIL NIL "7bit" 59 (NIL "inner" (("Dave" NIL "dave" "example.com")) (("Dave" NIL "dave" "example.com")) (("Dave" NIL "dave" "example.com")) NIL NIL NIL NIL NIL) `+
		`("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 10 0 NIL NIL NIL NIL) 3 NIL NIL NIL NIL) "mixed" ("boundary" "XYZ") NIL NIL NIL))`)
	out = c.ok("i FETCH 2 (BODY[1] BINARY[1] BINARY.SIZE[2] BINARY.PEEK[2] BODY[3.HEADER] BODY[3.TEXT] BODY[2.MIME] BODY[9] BODY[3.1])")
	mustHave(t, out, "BODY[1] {18}\r\nK=C3=A4se und Brot ", "BINARY[1] {14}\r\nKäse und Brot ",
		"BINARY.SIZE[2] 5", "BINARY[2] ~{5}\r\n\x00\x01\x02\x03\x04", "BODY[3.HEADER] {49}\r\nFrom: Dave <dave@example.com>\r\nSubject: inner\r\n\r\n",
		"BODY[3.TEXT] {10}\r\ninner body", "BODY[9] NIL", "BODY[3.1] {10}\r\ninner body",
		"BODY[2.MIME] {128}\r\nContent-Type: application/octet-stream\r\n")
	c.expect("j FETCH 3 FLAGS", "BAD", "Invalid messageset")
	c.ok("k UID FETCH 3:* FLAGS")
}

func TestIdleSeesDelivery(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.loginSelect()
	c.write("i IDLE\r\n")
	if l := c.line(); l != "+ idling" {
		t.Fatalf("%q", l)
	}
	start := time.Now()
	ts.user.Deliver("INBOX", []byte(simpleMsg))
	l := c.line()
	if l != "* 1 EXISTS" {
		t.Fatalf("%q", l)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("delivery reported after %v", d)
	}
	if l := c.line(); l != "* 1 RECENT" {
		t.Fatalf("%q", l)
	}
	c.write("DONE\r\n")
	if out := c.until("i"); !strings.HasPrefix(out[len(out)-1], "i OK") {
		t.Fatal(out)
	}
}
