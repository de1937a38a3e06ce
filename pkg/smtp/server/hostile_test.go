package server

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/pkg/maillog"
)

// assertNothingSmuggled checks that only the legitimate envelope reached the
// backend and that no message was committed.
func assertNothingSmuggled(t *testing.T, be *fakeBackend) {
	t.Helper()
	senders, rcpts, _ := be.snapshot()
	if len(senders) != 1 || senders[0] != "a@example.org" {
		t.Errorf("CheckSender calls %q: a smuggled MAIL ran", senders)
	}
	if len(rcpts) != 1 || rcpts[0] != "b@example.test" {
		t.Errorf("CheckRecipient calls %q: a smuggled RCPT ran", rcpts)
	}
	if n := len(be.committed()); n != 0 {
		t.Errorf("%d messages committed", n)
	}
	if !be.allAborted() {
		t.Errorf("message not aborted")
	}
}

// HOSTILE 1-4: every bare CR / bare LF variant of an end-of-data marker is
// refused at once, the connection closes, and the commands after it never
// run.
func TestSmuggling(t *testing.T) {
	const smuggled = "MAIL FROM:<evil@example.org>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\nsmuggled\r\n"
	for _, tc := range []struct {
		name, eod, want string
	}{
		{"LF.LF", "\n.\n", "550 5.5.2 Error: bare <LF> received"},
		{"LF.CRLF", "\n.\r\n", "550 5.5.2 Error: bare <LF> received"},
		{"CRLF.LF", "\r\n.\n", "550 5.5.2 Error: bare <LF> received"},
		{"CR.CR", "\r.\r", "550 5.5.2 Error: bare <CR> received"},
		{"CRLF.CR", "\r\n.\r", "550 5.5.2 Error: bare <CR> received"},
		{"CR.CRLF", "\r.\r\n", "550 5.5.2 Error: bare <CR> received"},
		{"CRCRLF.CRCRLF", "\r\r\n.\r\r\n", "550 5.5.2 Error: bare <CR> received"},
		{"lone LF", "\n", "550 5.5.2 Error: bare <LF> received"},
		{"lone CR", "\r", "550 5.5.2 Error: bare <CR> received"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be := newBackend()
			ts := startServer(t, testConfig(), be)
			c := ts.session()
			c.cmd("MAIL FROM:<a@example.org>", "250")
			c.cmd("RCPT TO:<b@example.test>", "250")
			c.cmd("DATA", "354")
			// No real <CRLF>.<CRLF> follows: the refusal must not wait for it.
			c.send("Subject: x\r\n\r\nhello" + tc.eod + smuggled)
			c.expect(tc.want)
			c.expectClosed()
			ts.waitLog("disconnect from")
			assertNothingSmuggled(t, be)
			ts.waitLog("disallowed bare")
		})
	}
	// The same with a real end of data after the smuggled transaction, sent
	// in one segment, as the published exploits do.
	for _, eod := range []string{"\n.\n", "\n.\r\n", "\r\n.\n", "\r.\r", "\r\r\n.\r\r\n"} {
		be := newBackend()
		ts := startServer(t, testConfig(), be)
		c := ts.session()
		c.cmd("MAIL FROM:<a@example.org>", "250")
		c.cmd("RCPT TO:<b@example.test>", "250")
		c.cmd("DATA", "354")
		c.send("hello" + eod + smuggled + ".\r\nQUIT\r\n")
		c.expect("550 5.5.2 Error: bare")
		c.expectClosed()
		ts.waitLog("disconnect from")
		assertNothingSmuggled(t, be)
	}
}

// The same rules hold inside BDAT chunks; a CRLF split between chunks is
// fine.
func TestBDATLineEndings(t *testing.T) {
	be := newBackend()
	ts := startServer(t, testConfig(), be)
	c := ts.session()
	c.cmd("MAIL FROM:<a@example.org>", "250")
	c.cmd("RCPT TO:<b@example.test>", "250")
	c.send("BDAT 7\r\nSub: x\r")
	c.expect("250 2.0.0 Ok: 7 bytes")
	c.send("BDAT 9\r\n\n\r\nbody\r\n")
	c.expect("250 2.0.0 Ok: 9 bytes")
	c.send("BDAT 0 LAST\r\n")
	c.expect("250 2.0.0 Ok: queued as")
	if m := be.committed(); len(m) != 1 || m[0].content() != "Sub: x\n\nbody\n" {
		t.Fatalf("committed %v", m)
	}
	for _, tc := range []struct{ chunk, want string }{
		{"a\nb", "bare <LF>"},
		{"a\rb", "bare <CR>"},
		{"a\r\r\n", "bare <CR>"},
		{"a\r", "bare <CR>"}, // with LAST: nothing can complete the CR
	} {
		be := newBackend()
		ts := startServer(t, testConfig(), be)
		c := ts.session()
		c.cmd("MAIL FROM:<a@example.org>", "250")
		c.cmd("RCPT TO:<b@example.test>", "250")
		c.send("BDAT " + strconv.Itoa(len(tc.chunk)) + " LAST\r\n" + tc.chunk + "MAIL FROM:<evil@example.org>\r\n")
		c.expect("550 5.5.2 Error: " + tc.want + " received")
		c.expectClosed()
		ts.waitLog("disconnect from")
		assertNothingSmuggled(t, be)
	}
}

// HOSTILE 20: BDAT abuse.
func TestBDATAbuse(t *testing.T) {
	cfg := testConfig()
	cfg.MaxMessageSize = 1000
	cfg.HeaderSizeLimit = 100
	be := newBackend()
	be.rejectTo["unknown@example.test"] = &Reply{Code: 550, Enhanced: "5.1.1", Text: "User unknown"}
	ts := startServer(t, cfg, be)

	// Chunks of refused BDAT commands are consumed: the commands inside them
	// never run and the session stays in step.
	c := ts.session()
	c.send("BDAT 30\r\nMAIL FROM:<evil@example.org>\r\n")
	c.expect("503 5.5.1 Error: need RCPT command")
	c.cmd("MAIL FROM:<a@example.org>", "250")
	c.cmd("RCPT TO:<unknown@example.test>", "550 5.1.1")
	c.send("BDAT 31\r\nRCPT TO:<victim@example.test>\r\n")
	c.expect("554 5.5.1 Error: no valid recipients")
	c.cmd("NOOP", "250")
	senders, rcpts, begun := be.snapshot()
	if len(senders) != 1 || len(rcpts) != 1 || begun != 0 {
		t.Fatalf("senders %q rcpts %q begun %d", senders, rcpts, begun)
	}
	// BDAT 0 LAST is a valid, empty message.
	c.cmd("RCPT TO:<b@example.test>", "250")
	c.cmd("BDAT 0 LAST", "250 2.0.0 Ok: queued as")
	if m := be.committed(); len(m) != 1 || m[0].content() != "" || !strings.HasPrefix(m[0].raw(), "Received: ") {
		t.Fatalf("empty message: %v", m)
	}
	// A header over the limit in a chunk: refused after the chunk, in step.
	c.cmd("MAIL FROM:<a@example.org>", "250")
	c.cmd("RCPT TO:<b@example.test>", "250")
	hdr := "X-Big: " + strings.Repeat("h", 200) + "\r\n"
	c.send("BDAT " + strconv.Itoa(len(hdr)) + "\r\n" + hdr + "BDAT 5 LAST\r\nhello")
	c.expect("552 5.3.4 Error: message header too large")
	c.expect("503 5.5.1 Error: need RCPT command") // the pipelined rest of the transaction
	c.cmd("NOOP", "250")
	if len(be.committed()) != 1 {
		t.Fatal("refused BDAT message committed")
	}
	c.cmd("QUIT", "221")

	// Sizes that cannot be honoured close the connection.
	for _, tc := range []struct{ cmds, want string }{
		{"BDAT 1001\r\n", "552 5.3.4 Message size exceeds fixed limit"},
		{"BDAT 600\r\n\r\n" + strings.Repeat("a", 598) + "BDAT 401 LAST\r\n", "552 5.3.4 Message size exceeds fixed limit"},
		{"BDAT 18446744073709551616\r\n", "501 5.5.4"},
		{"BDAT 18446744073709551615\r\n", "501 5.5.4"},
		{"BDAT 9223372036854775807\r\n", "552 5.3.4"},
		{"BDAT -1\r\n", "501 5.5.4"},
		{"BDAT\r\n", "501 5.5.4"},
		{"BDAT 5 FIRST\r\n", "501 5.5.4"},
		{"BDAT 5 LAST x\r\n", "501 5.5.4"},
	} {
		c := ts.session()
		c.cmd("MAIL FROM:<a@example.org>", "250")
		c.cmd("RCPT TO:<b@example.test>", "250")
		c.send(tc.cmds + "MAIL FROM:<evil@example.org>\r\n")
		if strings.Contains(tc.cmds, "BDAT 600") {
			c.expect("250 2.0.0 Ok: 600 bytes")
		}
		c.expect(tc.want)
		c.expectClosed()
	}
	waitFor(t, "sessions to end", func() bool { return be.allAborted() || len(be.committed()) == 1 })
	senders, _, _ = be.snapshot()
	for _, s := range senders {
		if s == "evil@example.org" {
			t.Fatal("command after a refused BDAT size ran")
		}
	}
	if len(be.committed()) != 1 {
		t.Fatalf("committed %d", len(be.committed()))
	}

	// Without EHLO there is no CHUNKING.
	c = ts.greet()
	c.cmd("HELO x", "250")
	c.cmd("MAIL FROM:<a@example.org>", "250")
	c.cmd("RCPT TO:<b@example.test>", "250")
	c.cmd("BDAT 0 LAST", "503 5.5.1 Error: send EHLO first")
}

// HOSTILE 6: pipelining where RFC 2920 forbids it ends the session; where it
// allows it, it works.
func TestPipelining(t *testing.T) {
	be := newBackend()
	ts := startServer(t, testConfig(), be)

	c := ts.session()
	c.send("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\nRCPT TO:<c@example.test>\r\nDATA\r\n")
	c.expect("250 2.1.0")
	c.expect("250 2.1.5")
	c.expect("250 2.1.5")
	c.expect("354 ")
	c.send("body\r\n.\r\nRSET\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\nNOOP\r\n")
	c.expect("250 2.0.0 Ok: queued as")
	c.expect("250 2.0.0 Ok")
	c.expect("250 2.1.0")
	c.expect("250 2.1.5")
	c.expect("250 2.0.0 Ok")
	// With CHUNKING the whole transaction may go in one write.
	c.send("RSET\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\nBDAT 7 LAST\r\nhello\r\nQUIT\r\n")
	c.expect("250 2.0.0 Ok")
	c.expect("250 2.1.0")
	c.expect("250 2.1.5")
	c.expect("250 2.0.0 Ok: queued as")
	c.expect("221 2.0.0 Bye")
	c.expectClosed()
	if n := len(be.committed()); n != 2 {
		t.Fatalf("committed %d", n)
	}

	for _, tc := range []struct {
		name  string
		setup []string // commands sent one by one first
		burst string
	}{
		{"EHLO then MAIL", nil, "EHLO x\r\nMAIL FROM:<evil@example.org>\r\n"},
		{"whole session in one segment", nil, "EHLO x\r\nMAIL FROM:<evil@example.org>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\nbody\r\n.\r\nQUIT\r\n"},
		{"after HELO", []string{"HELO x"}, "MAIL FROM:<evil@example.org>\r\nRCPT TO:<victim@example.test>\r\n"},
		{"before HELO", nil, "NOOP\r\nEHLO x\r\n"},
		{"DATA with body", []string{"EHLO x", "MAIL FROM:<a@example.org>", "RCPT TO:<b@example.test>"},
			"DATA\r\nMAIL FROM:<evil@example.org>\r\n.\r\n"},
		{"STARTTLS injection", []string{"EHLO x"}, "STARTTLS\r\nMAIL FROM:<evil@example.org>\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be := newBackend()
			ts := startServer(t, testConfig(), be)
			c := ts.greet()
			for _, l := range tc.setup {
				c.cmd(l, "250")
			}
			c.send(tc.burst)
			c.expect("554 5.5.0 Error: SMTP protocol synchronization")
			c.expectClosed()
			ts.waitLog("improper command pipelining after")
			senders, _, begun := be.snapshot()
			for _, s := range senders {
				if s == "evil@example.org" {
					t.Fatal("pipelined MAIL ran")
				}
			}
			if begun != 0 {
				t.Fatal("Begin called")
			}
		})
	}
}

// A client that talks before the greeting is cut off (Postfix: "improper
// command pipelining after CONNECT").
func TestPreGreetingTalk(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	client, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Write([]byte("EHLO early.example\r\n")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "input to reach the server socket", func() bool { return inputPending(server) })
	logs := &syncBuffer{}
	cfg := testConfig()
	cfg.Log = maillog.New("posthorn", "smtpd", "stderr")
	cfg.Log.SetOutput(logs)
	srv := New(cfg, newBackend())
	done := make(chan struct{})
	go func() { srv.ServeConn(server); close(done) }()
	if got := readUntilClosed(t, client); got != "554 5.5.0 Error: SMTP protocol synchronization\r\n" {
		t.Fatalf("got %q", got)
	}
	<-done
	if !strings.Contains(logs.String(), "improper command pipelining after CONNECT from unknown[127.0.0.1]") {
		t.Errorf("log %q", logs.String())
	}
}

// readUntilClosed returns everything c receives until the server closes it.
func readUntilClosed(t *testing.T, c net.Conn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil && !isReset(err) {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

func TestShutdownIdle(t *testing.T) {
	ts := startServer(t, testConfig(), newBackend())
	c := ts.session()
	done := make(chan error, 1)
	go func() { done <- ts.srv.Shutdown(context.Background()) }()
	c.expect("421 4.3.2 mx.example.test Service shutting down")
	c.expectClosed()
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if _, err := net.Dial("tcp", ts.addr); err == nil {
		t.Fatal("still accepting after Shutdown")
	}
}

// A transaction in progress may finish while the deadline allows.
func TestShutdownLetsTransactionFinish(t *testing.T) {
	be := newBackend()
	ts := startServer(t, testConfig(), be)
	c := ts.session()
	c.cmd("MAIL FROM:<a@example.org>", "250")
	c.cmd("RCPT TO:<b@example.test>", "250")
	c.cmd("DATA", "354")
	c.send("first line\r\n")
	done := make(chan error, 1)
	go func() { done <- ts.srv.Shutdown(context.Background()) }()
	waitFor(t, "shutdown to begin", ts.srv.draining.Load)
	c.send("last line\r\n.\r\n")
	c.expect("250 2.0.0 Ok: queued as")
	c.expect("421 4.3.2")
	c.expectClosed()
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if m := be.committed(); len(m) != 1 || m[0].content() != "first line\nlast line\n" {
		t.Fatalf("committed %v", m)
	}
}

// When the deadline passes mid-DATA the message is aborted and no 250 is
// ever sent.
func TestShutdownMidDataNeverAcknowledges(t *testing.T) {
	be := newBackend()
	ts := startServer(t, testConfig(), be)
	c := ts.session()
	c.cmd("MAIL FROM:<a@example.org>", "250")
	c.cmd("RCPT TO:<b@example.test>", "250")
	c.cmd("DATA", "354")
	c.send("partial\r\n")
	waitFor(t, "the message to be begun", func() bool { _, _, n := be.snapshot(); return n == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := ts.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v", err)
	}
	c.expectClosed()
	if len(be.committed()) != 0 || !be.allAborted() {
		t.Fatal("message committed or not aborted")
	}
}

// The whole message has arrived but the deadline passes before it is
// committed: still no 250 and no commit.
func TestShutdownForcedBeforeCommit(t *testing.T) {
	be := newBackend()
	entered, release := make(chan struct{}), make(chan struct{})
	be.writeHook = func(m *fakeMessage) {
		select {
		case <-entered:
		default:
			close(entered)
			select {
			case <-release:
			case <-time.After(10 * time.Second):
			}
		}
	}
	ts := startServer(t, testConfig(), be)
	c := ts.session()
	c.cmd("MAIL FROM:<a@example.org>", "250")
	c.cmd("RCPT TO:<b@example.test>", "250")
	c.send("DATA\r\n")
	c.expect("354")
	c.send("complete message\r\n.\r\n")
	<-entered
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	done := make(chan error, 1)
	go func() { done <- ts.srv.Shutdown(ctx) }()
	waitFor(t, "forced shutdown", ts.srv.forced.Load)
	close(release)
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown: %v", err)
	}
	c.expectClosed()
	if len(be.committed()) != 0 || !be.allAborted() {
		t.Fatal("message committed or not aborted")
	}
}
