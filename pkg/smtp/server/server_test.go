package server

import (
	"fmt"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestGreetingAndEHLO(t *testing.T) {
	ts := startServer(t, testConfig(), newBackend())
	c := ts.greet()
	got := c.cmd("EHLO client.example", "250-")
	want := "250-mx.example.test\n250-PIPELINING\n250-SIZE 10240000\n250-ENHANCEDSTATUSCODES\n250-8BITMIME\n250-DSN\n250-SMTPUTF8\n250 CHUNKING"
	if got != want {
		t.Fatalf("EHLO reply\n%s\nwant\n%s", got, want)
	}
	c.cmd("HELO client.example", "250 mx.example.test")
	c.cmd("EHLO", "501 5.5.4 Syntax: EHLO hostname")
	c.cmd("HELO", "501 5.5.4 Syntax: HELO hostname")
	c.cmd("QUIT", "221 2.0.0 Bye")
	c.expectClosed()
	ts.waitLog("disconnect from unknown[127.0.0.1] helo=1/2 ehlo=1/2 quit=1 commands=3/5")
	if !strings.Contains(ts.logs.String(), "connect from unknown[127.0.0.1]") {
		t.Errorf("no connect line in %q", ts.logs.String())
	}
}

func TestSimpleCommands(t *testing.T) {
	ts := startServer(t, testConfig(), newBackend())
	c := ts.session()
	for _, tc := range []struct{ cmd, want string }{
		{"NOOP", "250 2.0.0 Ok"},
		{"NOOP with arguments", "250 2.0.0 Ok"},
		{"noop", "250 2.0.0 Ok"},
		{"RSET", "250 2.0.0 Ok"},
		{"RSET x", "501 5.5.4"},
		{"HELP", "214 2.0.0"},
		{"VRFY root", "252 2.0.0"},
		{"VRFY nosuchuser", "252 2.0.0"},
		{"VRFY", "501 5.5.4"},
		{"EXPN staff", "502 5.5.1"},
		{"STARTTLS", "502 5.5.1 Error: command not implemented"},
		{"AUTH PLAIN AGFsaWNlAHNlY3JldA==", "503 5.5.1 Error: authentication not enabled"},
		{"ETRN example.org", "502 5.5.2 Error: command not recognized"},
		{"XYZZY", "502 5.5.2 Error: command not recognized"},
		{"GET / HTTP/1.0", "502 5.5.2 Error: command not recognized"},
		{"DATA extra", "501 5.5.4 Syntax: DATA"},
	} {
		c.cmd(tc.cmd, tc.want)
	}
	// Bare LF ends a command as well as CRLF does.
	c.send("NOOP\n")
	c.expect("250 2.0.0 Ok")
	c.cmd("QUIT", "221 2.0.0")
	c.expectClosed()
}

func TestTransactionAndReceived(t *testing.T) {
	be := newBackend()
	ts := startServer(t, testConfig(), be)
	c := ts.session()
	body := "Subject: hi\r\n\r\nline one\r\n..leading dot\r\n.\r\n" // final ".\r\n" added below
	got := c.transaction("alice@example.org", "bob@example.test", body[:len(body)-3])
	m := regexp.MustCompile(`^250 2\.0\.0 Ok: queued as ([0-9A-F]+)$`).FindStringSubmatch(got)
	if m == nil {
		t.Fatalf("final reply %q", got)
	}
	msgs := be.committed()
	if len(msgs) != 1 || msgs[0].id != m[1] {
		t.Fatalf("committed %v, reply id %s", msgs, m[1])
	}
	msg := msgs[0]
	if msg.content() != "Subject: hi\n\nline one\n.leading dot\n" {
		t.Errorf("content %q", msg.content())
	}
	if msg.env.From.String() != "alice@example.org" || len(msg.rcpts) != 1 || msg.rcpts[0].Addr.String() != "bob@example.test" {
		t.Errorf("envelope %+v rcpts %+v", msg.env, msg.rcpts)
	}
	if msg.env.Body != "7BIT" || msg.env.SMTPUTF8 || msg.env.EightBit {
		t.Errorf("envelope flags %+v", msg.env)
	}
	recv := regexp.MustCompile(`^Received: from client\.example \(unknown \[127\.0\.0\.1\]\)\n` +
		`\tby mx\.example\.test \(posthorn\) with ESMTP id ` + m[1] + `\n` +
		`\tfor <bob@example\.test>; [A-Z][a-z]{2}, \d{1,2} [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4} \(.+\)\n`)
	if !recv.MatchString(msg.raw()) {
		t.Errorf("Received: field:\n%s", msg.raw())
	}
	c.cmd("QUIT", "221")
	c.expectClosed()
	ts.waitLog("disconnect from unknown[127.0.0.1] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5")
	ts.waitLog(m[1] + ": client=unknown[127.0.0.1]")
}

func TestReceivedManyRecipientsAndHELO(t *testing.T) {
	be := newBackend()
	ts := startServer(t, testConfig(), be)
	c := ts.greet()
	// HELO: plain SMTP, no extensions; the name is neutralised (HOSTILE 29).
	c.cmd("HELO evil)(\\x\"y;z@w<>", "250 mx.example.test")
	c.cmd("MAIL FROM:<a@example.org>", "250 2.1.0")
	c.cmd("RCPT TO:<b@example.test>", "250 2.1.5")
	c.cmd("RCPT TO:<c@example.test>", "250 2.1.5")
	c.cmd("DATA", "354")
	c.send("x\r\n.\r\n")
	c.expect("250 2.0.0 Ok: queued as")
	raw := be.committed()[0].raw()
	want := regexp.MustCompile(`^Received: from evil\?\?\?x\?y\?z\?w\?\? \(unknown \[127\.0\.0\.1\]\)\n` +
		`\tby mx\.example\.test \(posthorn\) with SMTP id [0-9A-F]+;\n\t[A-Z][a-z]{2}, `)
	if !want.MatchString(raw) {
		t.Errorf("Received: field:\n%s", raw)
	}
	if strings.Contains(raw, "for <") {
		t.Errorf("for clause with two recipients:\n%s", raw)
	}
	// MAIL parameters need EHLO.
	c.cmd("MAIL FROM:<a@example.org> BODY=8BITMIME", "555 5.5.4 Unsupported option: BODY")
}

func TestNeuterAndPTR(t *testing.T) {
	if got := neuter("a b\x00c\xffd(e)f\\g\"h;i@j<k>l\r\n"); got != "a?b?c?d?e?f?g?h?i?j?k?l??" {
		t.Errorf("neuter = %q", got)
	}
	if got := neuter(strings.Repeat("a", 1000)); len(got) != maxNameLen {
		t.Errorf("neuter did not cap length: %d", len(got))
	}
	cfg := testConfig()
	cfg.LookupPTR = func(ip net.IP) string { return "host(evil)\n.example" }
	be := newBackend()
	ts := startServer(t, cfg, be)
	c := ts.session()
	c.transaction("a@example.org", "b@example.test", "x\r\n")
	if raw := be.committed()[0].raw(); !strings.Contains(raw, "(host?evil??.example [127.0.0.1])") {
		t.Errorf("PTR name in Received:\n%s", raw)
	}
	ts.waitLog("connect from host?evil??.example[127.0.0.1]")
}

func TestStateMachine(t *testing.T) {
	be := newBackend()
	be.rejectTo["unknown@example.test"] = &Reply{Code: 550, Enhanced: "5.1.1", Text: "<unknown@example.test>: Recipient address rejected: User unknown"}
	ts := startServer(t, testConfig(), be)
	c := ts.greet()
	// HOSTILE 19: out-of-order commands.
	c.cmd("MAIL FROM:<a@example.org>", "503 5.5.1 Error: send HELO/EHLO first")
	c.cmd("RCPT TO:<b@example.test>", "503 5.5.1 Error: need MAIL command")
	c.cmd("DATA", "503 5.5.1 Error: need RCPT command")
	c.cmd("EHLO client.example", "250-")
	c.cmd("RCPT TO:<b@example.test>", "503 5.5.1 Error: need MAIL command")
	c.cmd("DATA", "503 5.5.1 Error: need RCPT command")
	c.cmd("MAIL FROM:<a@example.org>", "250 2.1.0 Ok")
	c.cmd("MAIL FROM:<a@example.org>", "503 5.5.1 Error: nested MAIL command")
	c.cmd("DATA", "554 5.5.1 Error: no valid recipients")
	c.cmd("RCPT TO:<unknown@example.test>", "550 5.1.1 <unknown@example.test>: Recipient address rejected: User unknown")
	c.cmd("DATA", "554 5.5.1 Error: no valid recipients")
	// RSET ends the transaction.
	c.cmd("RSET", "250 2.0.0 Ok")
	c.cmd("RCPT TO:<b@example.test>", "503 5.5.1 Error: need MAIL command")
	// EHLO ends it too.
	c.cmd("MAIL FROM:<a@example.org>", "250 2.1.0 Ok")
	c.cmd("EHLO client.example", "250-")
	c.cmd("RCPT TO:<b@example.test>", "503 5.5.1 Error: need MAIL command")
	// BDAT then DATA in one transaction.
	c.cmd("MAIL FROM:<a@example.org>", "250 2.1.0 Ok")
	c.cmd("RCPT TO:<b@example.test>", "250 2.1.5 Ok")
	c.send("BDAT 3\r\nabc")
	c.expect("250 2.0.0 Ok: 3 bytes")
	c.cmd("DATA", "503 5.5.1 Error: DATA not allowed after BDAT")
	c.cmd("RCPT TO:<c@example.test>", "503 5.5.1 Error: RCPT not allowed after BDAT")
	c.send("BDAT 3 LAST\r\nd\r\n")
	c.expect("250 2.0.0 Ok: queued as")
	if msgs := be.committed(); len(msgs) != 1 || msgs[0].content() != "abcd\n" {
		t.Fatalf("committed %v", msgs)
	}
	c.cmd("QUIT", "221")
	ts.waitLog("NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 550 5.1.1 <unknown@example.test>: Recipient address rejected: User unknown; from=<a@example.org> to=<unknown@example.test> proto=ESMTP helo=<client.example>")
}

func TestMailParameters(t *testing.T) {
	cfg := testConfig()
	cfg.MaxMessageSize = 1000
	cfg.HardErrorLimit = 100
	be := newBackend()
	ts := startServer(t, cfg, be)
	c := ts.session()
	for _, tc := range []struct{ cmd, want string }{
		// HOSTILE 16: SIZE abuse.
		{"MAIL FROM:<a@example.org> SIZE=1001", "552 5.3.4 Message size exceeds fixed limit"},
		{"MAIL FROM:<a@example.org> SIZE=99999999999999999999", "501 5.5.4"},
		{"MAIL FROM:<a@example.org> SIZE=18446744073709551616", "501 5.5.4"},
		{"MAIL FROM:<a@example.org> SIZE=-1", "501 5.5.4"},
		{"MAIL FROM:<a@example.org> SIZE=1e3", "501 5.5.4"},
		{"MAIL FROM:<a@example.org> SIZE=", "501 5.5.4"},
		{"MAIL FROM:<a@example.org> BODY=BINARYMIME", "501 5.5.4"},
		{"MAIL FROM:<a@example.org> SMTPUTF8=yes", "501 5.5.4"},
		{"MAIL FROM:<a@example.org> SIZE=10 SIZE=10", "501 5.5.4"},
		{"MAIL FROM:<a@example.org> RET=PARTIAL", "501 5.5.4 Bad RET parameter syntax"},
		{"MAIL FROM:<a@example.org> AUTH=<>", "555 5.5.4 Unsupported option: AUTH"},
		{"MAIL FROM:<a@example.org> X-UNKNOWN=1", "555 5.5.4 Unsupported option: X-UNKNOWN"},
		{"MAIL FROM:<a@example.org> X=\x01", "500 5.5.2"},
		{"MAIL FROM:<a@example.org> =x", "501 5.5.4"},
		{"MAIL TO:<a@example.org>", "501 5.5.4 Syntax: MAIL FROM:<address>"},
		{"MAIL FROM:", "501 5.5.4 Syntax: MAIL FROM:<address>"},
		{"MAIL", "501 5.5.4 Syntax: MAIL FROM:<address>"},
		{"MAIL FROM:<a@b@c>", "501 5.1.7 Bad sender address syntax"},
		{"MAIL FROM:<a@example.org", "501 5.1.7 Bad sender address syntax"},
		{"MAIL FROM:<a@example.org>x", "501 5.1.7 Bad sender address syntax"},
		{"MAIL FROM:<a@[999.1.1.1]>", "501 5.1.7 Bad sender address syntax"},
		{"MAIL FROM:<;sleep 66;@x>", "501 5.1.7 Bad sender address syntax"},
		// HOSTILE 15: non-ASCII address without SMTPUTF8.
		{"MAIL FROM:<jörg@example.org>", "553 5.6.7"},
	} {
		c.cmd(tc.cmd, tc.want)
	}
	senders, _, _ := be.snapshot()
	if len(senders) != 0 {
		t.Fatalf("CheckSender called for refused commands: %q", senders)
	}
	// Accepted forms: Postfix's tolerance of a blank after the colon and of
	// missing brackets; all parameters at once; lower-case keywords.
	c.cmd("MAIL FROM: <a@example.org> size=1000 body=8bitmime SMTPUTF8", "250 2.1.0")
	c.cmd("RSET", "250")
	c.cmd("MAIL FROM:a@example.org", "250 2.1.0")
	c.cmd("RSET", "250")
	c.cmd("MAIL FROM:<>", "250 2.1.0")
	c.cmd("RCPT TO:<>", "501 5.1.3 Bad recipient address syntax")
	c.cmd("RCPT TO:<postmaster>", "250 2.1.5")
	c.cmd("RCPT TO:<jörg@example.test>", "553 5.6.7")
	c.cmd("RCPT TO:<b@example.test> NOTIFY=SOMETIMES", "501 5.5.4 Error: Bad NOTIFY parameter syntax")
	c.cmd("RCPT TO:<b@example.test> X-UNKNOWN=1", "555 5.5.4 Unsupported option: X-UNKNOWN")
	c.cmd("RCPT TO:<victim@other.example@our.domain>", "501 5.1.3 Bad recipient address syntax")
	c.cmd("RCPT FROM:<b@example.test>", "501 5.5.4 Syntax: RCPT TO:<address>")
	c.cmd("RSET", "250")
	// With SMTPUTF8 the UTF-8 address passes and Received says UTF8SMTP.
	c.cmd("MAIL FROM:<jörg@example.org> SMTPUTF8 BODY=8BITMIME", "250 2.1.0")
	c.cmd("RCPT TO:<用户@例子.test>", "250 2.1.5")
	c.cmd("DATA", "354")
	c.send("Subject: ü\r\n\r\n.\r\n")
	c.expect("250 2.0.0 Ok: queued as")
	m := be.committed()[0]
	if !m.env.SMTPUTF8 || m.env.Body != "8BITMIME" || m.env.EightBit {
		t.Errorf("envelope %+v", m.env)
	}
	if !strings.Contains(m.raw(), "with UTF8SMTP id") || !strings.Contains(m.raw(), "for <用户@例子.test>;") {
		t.Errorf("Received: %q", m.raw())
	}
	c.cmd("QUIT", "221")
	ts.waitLog("NOQUEUE: reject: MAIL from unknown[127.0.0.1]: 553 5.6.7 Must declare SMTPUTF8 to send unicode address; proto=ESMTP helo=<client.example>")
}

func TestBackendRejectsAndFailures(t *testing.T) {
	be := newBackend()
	be.rejectFrom["spammer@example.org"] = &Reply{Code: 554, Enhanced: "5.7.1", Text: "<spammer@example.org>: Sender address rejected: Access denied"}
	be.rejectTo["victim@other.example"] = &Reply{Code: 554, Enhanced: "5.7.1", Text: "<victim@other.example>: Relay access denied"}
	ts := startServer(t, testConfig(), be)
	c := ts.session()
	c.cmd("MAIL FROM:<spammer@example.org>", "554 5.7.1 <spammer@example.org>: Sender address rejected: Access denied")
	c.cmd("MAIL FROM:<a@example.org>", "250")
	// HOSTILE 23: the source route is ignored; the relay check sees the
	// final mailbox.
	c.cmd("RCPT TO:<@mx.example.test:victim@other.example>", "554 5.7.1 <victim@other.example>: Relay access denied")
	// HOSTILE 22: the percent hack is a local part, passed as such.
	c.cmd("RCPT TO:<victim%other.example@example.test>", "250")
	_, rcpts, _ := be.snapshot()
	if len(rcpts) != 2 || rcpts[0] != "victim@other.example" || rcpts[1] != "victim%other.example@example.test" {
		t.Errorf("CheckRecipient saw %q", rcpts)
	}
	// Begin refuses.
	be.mu.Lock()
	be.beginReply = &Reply{Code: 452, Enhanced: "4.3.1", Text: "Insufficient system storage"}
	be.mu.Unlock()
	c.cmd("DATA", "452 4.3.1 Insufficient system storage")
	// The transaction is over after a refused DATA.
	c.cmd("RCPT TO:<b@example.test>", "503 5.5.1")
	be.mu.Lock()
	be.beginReply = nil
	be.commitErr = fmt.Errorf("disk full")
	be.mu.Unlock()
	if r := c.transaction("a@example.org", "b@example.test", "x\r\n"); r != "451 4.3.0 Error: queue file write error" {
		t.Errorf("commit failure reply %q", r)
	}
	be.mu.Lock()
	be.commitErr = nil
	be.writeErr = fmt.Errorf("disk full")
	be.mu.Unlock()
	if r := c.transaction("a@example.org", "b@example.test", "x\r\n"); r != "451 4.3.0 Error: queue file write error" {
		t.Errorf("write failure reply %q", r)
	}
	if len(be.committed()) != 0 || !be.allAborted() {
		t.Errorf("failed messages were not all aborted")
	}
	c.cmd("NOOP", "250")
	ts.waitLog("NOQUEUE: reject: MAIL from unknown[127.0.0.1]: 554 5.7.1 <spammer@example.org>: Sender address rejected: Access denied; from=<spammer@example.org> proto=ESMTP helo=<client.example>")
	ts.waitLog("NOQUEUE: reject: DATA from unknown[127.0.0.1]: 452 4.3.1 Insufficient system storage; from=<a@example.org> proto=ESMTP helo=<client.example>")
}

// HOSTILE 18: the 101st recipient with a limit of 100.
func TestTooManyRecipients(t *testing.T) {
	cfg := testConfig()
	cfg.MaxRecipients = 100
	be := newBackend()
	ts := startServer(t, cfg, be)
	c := ts.session()
	c.cmd("MAIL FROM:<a@example.org>", "250")
	// Pipelined, as a bulk sender would; legal after EHLO.
	var b strings.Builder
	for i := 0; i < 101; i++ {
		fmt.Fprintf(&b, "RCPT TO:<r%d@example.test>\r\n", i)
	}
	c.send(b.String())
	for i := 0; i < 100; i++ {
		c.expect("250 2.1.5")
	}
	c.expect("452 4.5.3 Error: too many recipients")
	c.cmd("DATA", "354")
	c.send("x\r\n.\r\n")
	c.expect("250 2.0.0 Ok: queued as")
	if m := be.committed(); len(m) != 1 || len(m[0].rcpts) != 100 {
		t.Fatalf("want one message with 100 recipients")
	}
}

// HOSTILE 12: overlong command lines use bounded memory and count as errors.
func TestLineTooLong(t *testing.T) {
	cfg := testConfig()
	cfg.HardErrorLimit = 3
	ts := startServer(t, cfg, newBackend())
	c := ts.session()
	limit := 2048
	c.cmd("NOOP "+strings.Repeat("x", limit-5), "250 2.0.0 Ok") // exactly at the limit
	c.cmd("NOOP "+strings.Repeat("x", limit-4), "500 5.5.2 Error: line too long")
	c.cmd("NOOP "+strings.Repeat("x", 10*1024), "500 5.5.2 Error: line too long")
	// A megabyte without a line break is skipped, and the session goes on.
	c.send("MAIL FROM:<" + strings.Repeat("a", 1<<20))
	c.send(">\r\n")
	c.expect("500 5.5.2 Error: line too long")
	c.expect("421 4.7.0 mx.example.test Error: too many errors")
	c.expectClosed()
	ts.waitLog("unknown=0/3")
}

func TestLineThatNeverEnds(t *testing.T) {
	cfg := testConfig()
	cfg.Timeout = 300 * time.Millisecond
	ts := startServer(t, cfg, newBackend())
	c := ts.session()
	c.send(strings.Repeat("x", 100*1024))
	c.expect("421 4.4.2 mx.example.test Error: timeout exceeded")
	c.expectClosed()
	ts.waitLog("timeout after EHLO from unknown[127.0.0.1]")
}

func TestTimeout(t *testing.T) {
	cfg := testConfig()
	cfg.Timeout = 200 * time.Millisecond
	ts := startServer(t, cfg, newBackend())
	c := ts.session()
	c.expect("421 4.4.2 mx.example.test Error: timeout exceeded")
	c.expectClosed()
	// During DATA too.
	c = ts.session()
	c.cmd("MAIL FROM:<a@example.org>", "250")
	c.cmd("RCPT TO:<b@example.test>", "250")
	c.cmd("DATA", "354")
	c.send("partial line")
	c.expect("421 4.4.2 mx.example.test Error: timeout exceeded")
	c.expectClosed()
	ts.waitLog("timeout after DATA from")
	if len(ts.be.committed()) != 0 || !ts.be.allAborted() {
		t.Fatal("message from a timed-out DATA was not aborted")
	}
}

// HOSTILE 14: NUL in a command is refused; in content it is carried.
func TestNUL(t *testing.T) {
	be := newBackend()
	ts := startServer(t, testConfig(), be)
	c := ts.session()
	c.cmd("MAIL FROM:<a\x00@example.org>", "500 5.5.2 Error: bad syntax")
	c.cmd("NOOP\x00", "500 5.5.2")
	c.cmd("\x00", "500 5.5.2")
	c.cmd("", "500 5.5.2 Error: bad syntax")
	c.cmd("NOOP \xff\xfe", "500 5.5.2 Error: bad UTF-8 syntax")
	if r := c.transaction("a@example.org", "b@example.test", "a\x00b\r\n\x00\r\n"); !strings.HasPrefix(r, "250 2.0.0 Ok: queued") {
		t.Fatalf("reply %q", r)
	}
	if got := be.committed()[0].content(); got != "a\x00b\n\x00\n" {
		t.Fatalf("content %q", got)
	}
}

// HOSTILE 15: 8-bit content without BODY=8BITMIME is accepted and noted.
func TestEightBitWithoutDeclaration(t *testing.T) {
	be := newBackend()
	ts := startServer(t, testConfig(), be)
	c := ts.session()
	if r := c.transaction("a@example.org", "b@example.test", "Subject: caf\xc3\xa9\r\n\r\n\xff\xfe\r\n"); !strings.HasPrefix(r, "250 2.0.0") {
		t.Fatalf("reply %q", r)
	}
	m := be.committed()[0]
	if m.content() != "Subject: caf\xc3\xa9\n\n\xff\xfe\n" || !m.env.EightBit || m.env.Body != "7BIT" {
		t.Fatalf("content %q env %+v", m.content(), m.env)
	}
}

// HOSTILE 16: a body over the limit is consumed, then refused.
func TestMessageTooBig(t *testing.T) {
	cfg := testConfig()
	cfg.MaxMessageSize = 1000
	be := newBackend()
	ts := startServer(t, cfg, be)
	c := ts.session()
	c.cmd("MAIL FROM:<a@example.org> SIZE=500", "250") // declared small, sends more
	c.cmd("RCPT TO:<b@example.test>", "250")
	c.cmd("DATA", "354")
	line := strings.Repeat("x", 98) + "\r\n" // 99 octets of content each
	c.send(strings.Repeat(line, 100))
	// Commands inside the oversized body must not run.
	c.send("MAIL FROM:<evil@example.org>\r\n")
	c.send(".\r\n")
	c.expect("552 5.3.4 Error: message file too big")
	c.cmd("NOOP", "250 2.0.0 Ok")
	senders, _, _ := be.snapshot()
	if len(senders) != 1 || len(be.committed()) != 0 || !be.allAborted() {
		t.Fatalf("senders %q, committed %d", senders, len(be.committed()))
	}
	// Exactly at the limit passes: 10 lines of 100 octets.
	line = strings.Repeat("y", 99) + "\r\n"
	if r := c.transaction("a@example.org", "b@example.test", strings.Repeat(line, 10)); !strings.HasPrefix(r, "250 2.0.0") {
		t.Fatalf("message at the limit: %q", r)
	}
}

// HOSTILE 13, 30: header limits refuse the message but keep the session.
func TestHeaderLimits(t *testing.T) {
	cfg := testConfig()
	cfg.HeaderSizeLimit = 1000
	cfg.HopCountLimit = 50
	be := newBackend()
	ts := startServer(t, cfg, be)
	c := ts.session()

	hops := func(n int) string {
		var b strings.Builder
		for i := 0; i < n; i++ {
			fmt.Fprintf(&b, "Received: from h%d by h%d; Thu, 26 Nov 2026 15:07:56 +0000\r\n", i, i+1)
		}
		return b.String()
	}
	if r := c.transaction("a@example.org", "b@example.test", hops(50)+"\r\nbody\r\n"); !strings.HasPrefix(r, "250 2.0.0") {
		t.Fatalf("50 hops: %q", r)
	}
	if r := c.transaction("a@example.org", "b@example.test", hops(51)+"\r\nbody\r\n"); r != "554 5.4.0 Error: too many hops" {
		t.Fatalf("51 hops: %q", r)
	}
	// Case and blanks before the colon do not hide a Received: field.
	if r := c.transaction("a@example.org", "b@example.test", hops(50)+"RECEIVED : x\r\n\r\n"); r != "554 5.4.0 Error: too many hops" {
		t.Fatalf("51 hops, odd spelling: %q", r)
	}
	// Received: in the body is not a hop.
	if r := c.transaction("a@example.org", "b@example.test", "Subject: x\r\n\r\n"+hops(60)); !strings.HasPrefix(r, "250 2.0.0") {
		t.Fatalf("Received: lines in body: %q", r)
	}
	// One folded field over the limit.
	folded := "Subject: start\r\n" + strings.Repeat("\t"+strings.Repeat("z", 98)+"\r\n", 10) + "\r\nbody\r\n"
	if r := c.transaction("a@example.org", "b@example.test", folded); r != "552 5.3.4 Error: message header too large" {
		t.Fatalf("folded field: %q", r)
	}
	// Many fields, each under the limit, pass.
	many := strings.Repeat("X-A: "+strings.Repeat("a", 900)+"\r\n", 20) + "\r\nbody\r\n"
	if r := c.transaction("a@example.org", "b@example.test", many); !strings.HasPrefix(r, "250 2.0.0") {
		t.Fatalf("many fields: %q", r)
	}
	// A long body line is not a header.
	long := "Subject: x\r\n\r\n" + strings.Repeat("b", 5000) + "\r\n"
	if r := c.transaction("a@example.org", "b@example.test", long); !strings.HasPrefix(r, "250 2.0.0") {
		t.Fatalf("long body line: %q", r)
	}
	c.cmd("NOOP", "250")
	if n := len(be.committed()); n != 4 {
		t.Fatalf("committed %d, want 4", n)
	}
}

// HOSTILE 21: error and junk floods end the session.
func TestErrorAndJunkLimits(t *testing.T) {
	cfg := testConfig()
	cfg.HardErrorLimit = 5
	cfg.JunkCommandLimit = 10
	ts := startServer(t, cfg, newBackend())
	c := ts.session()
	for i := 0; i < 4; i++ {
		c.cmd("BOGUS", "502 5.5.2")
	}
	c.cmd("BOGUS", "502 5.5.2")
	c.expect("421 4.7.0 mx.example.test Error: too many errors")
	c.expectClosed()

	c = ts.session() // EHLO is junk number 1
	for i := 0; i < 9; i++ {
		c.cmd("NOOP", "250")
	}
	c.cmd("RSET", "421 4.7.0 mx.example.test Error: too many errors")
	c.expectClosed()
	ts.waitLog("too many errors after RSET from unknown[127.0.0.1]")

	// A delivered message resets both counters.
	c = ts.session()
	for i := 0; i < 8; i++ {
		c.cmd("NOOP", "250")
	}
	c.cmd("XX", "502")
	c.cmd("XX", "502")
	c.transaction("a@example.org", "b@example.test", "x\r\n")
	for i := 0; i < 9; i++ {
		c.cmd("NOOP", "250")
	}
	for i := 0; i < 4; i++ {
		c.cmd("XX", "502")
	}
	c.cmd("QUIT", "221")
}

func TestProcessLimit(t *testing.T) {
	cfg := testConfig()
	cfg.ProcessLimit = 1
	ts := startServer(t, cfg, newBackend())
	c1 := ts.session()
	c2 := ts.dial()
	c2.expect("421 4.3.2 mx.example.test Service currently unavailable")
	c2.expectClosed()
	c1.cmd("QUIT", "221")
	c1.expectClosed()
	waitFor(t, "the first session to end", func() bool {
		ts.srv.mu.Lock()
		defer ts.srv.mu.Unlock()
		return len(ts.srv.sessions) == 0
	})
	c3 := ts.session()
	c3.cmd("QUIT", "221")
}

func TestSetConfig(t *testing.T) {
	ts := startServer(t, testConfig(), newBackend())
	old := ts.session()
	cfg := testConfig()
	cfg.Banner = "reloaded ESMTP"
	cfg.MaxMessageSize = 12345
	cfg.Log = ts.srv.config().Log
	ts.srv.SetConfig(cfg)
	// The running session keeps its settings.
	if r := old.cmd("EHLO x", "250-"); !strings.Contains(r, "SIZE 10240000") {
		t.Errorf("old session EHLO %q", r)
	}
	c := ts.dial()
	c.expect("220 reloaded ESMTP")
	if r := c.cmd("EHLO x", "250-"); !strings.Contains(r, "SIZE 12345") {
		t.Errorf("new session EHLO %q", r)
	}
}

func TestReplyFormatting(t *testing.T) {
	for _, tc := range []struct {
		r    Reply
		want string
	}{
		{Reply{550, "5.1.1", "no"}, "550 5.1.1 no\r\n"},
		{Reply{550, "5.7.1", "one\ntwo\r\nthree"}, "550-5.7.1 one\r\n550-5.7.1 two\r\n550 5.7.1 three\r\n"},
		{Reply{250, "", "host\nSIZE 1"}, "250-host\r\n250 SIZE 1\r\n"},
		{Reply{550, "5.7.1", "evil\rinjected\x00"}, "550 5.7.1 evil?injected?\r\n"},
		{Reply{42, "", "bad code"}, "451 bad code\r\n"},
	} {
		if got := tc.r.wire(); got != tc.want {
			t.Errorf("%+v.wire() = %q, want %q", tc.r, got, tc.want)
		}
	}
	r := &Reply{550, "5.1.1", "no"}
	if r.Error() != "550 5.1.1 no" || r.Temporary() {
		t.Errorf("Error() = %q", r.Error())
	}
}

func TestLazyDeadline(t *testing.T) {
	const timeout = time.Hour
	var d lazyDeadline
	var sets []time.Time
	set := func(at time.Time) error { sets = append(sets, at); return nil }

	d.extend(set, timeout)
	if len(sets) != 1 || time.Until(sets[0]) < timeout {
		t.Fatalf("first extend set %v, want one deadline at least %v away", sets, timeout)
	}
	// Commands in quick succession leave the deadline where it is.
	d.extend(set, timeout)
	d.extend(set, timeout)
	if len(sets) != 1 {
		t.Fatalf("deadline moved %d times for commands in quick succession", len(sets)-1)
	}
	// Once less than the timeout is left, it moves.
	d.at = time.Now().Add(timeout - time.Second)
	d.extend(set, timeout)
	if len(sets) != 2 || time.Until(sets[1]) < timeout {
		t.Fatalf("deadline with less than the timeout left: sets %v", sets)
	}
}
