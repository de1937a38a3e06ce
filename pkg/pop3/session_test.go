package pop3

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/pkg/mailbox"
	"github.com/posthorn/posthorn/pkg/maildir"
)

const (
	// A message with lines a POP3 client would take for the end of the
	// response if they were not byte-stuffed.
	msgDots = "From: a@example.org\r\nSubject: one\r\n\r\nline 1\r\n.leading dot\r\n\r\n.\r\nafter a lone dot\r\n"
	// LF line ends, as local delivery stores them.
	msgLF = "Subject: two\n\nbody two\n"
	// No line end after the last line.
	msgNoEOL = "Subject: three\r\n\r\nno final newline"
)

// crlf is the message as POP3 sends it (before byte-stuffing).
func crlf(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' && (i == 0 || s[i-1] != '\r') {
			b.WriteByte('\r')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// body joins unstuffed response lines back into message text.
func body(lines []string) string { return strings.Join(lines, "\r\n") + "\r\n" }

func startSession(t *testing.T, store *mailbox.Store, cfg SessionConfig) (*client, chan error, *testLog) {
	t.Helper()
	log := newTestLog()
	cfg.Log = log.l
	c, done := sessionPipe(t, context.Background(), store, cfg, "")
	if l := c.line(); l != "+OK Logged in." {
		t.Fatalf("login: %q", l)
	}
	return c, done, log
}

func TestTransactionAndUpdate(t *testing.T) {
	store, dir := newStore(t)
	uids := fill(t, store, msgDots, msgLF, msgNoEOL)
	mb, _ := store.Open("INBOX")
	uv := mb.UIDValidity()
	c, done, log := startSession(t, store, SessionConfig{})

	sizes := []int{len(crlf(msgDots)), len(crlf(msgLF)), len(crlf(msgNoEOL))}
	total := sizes[0] + sizes[1] + sizes[2]
	c.expect("STAT", fmt.Sprintf("+OK 3 %d", total))
	c.expect("LIST", "+OK 3 messages:")
	if l := c.multi(); !slices.Equal(l, []string{fmt.Sprintf("1 %d", sizes[0]), fmt.Sprintf("2 %d", sizes[1]), fmt.Sprintf("3 %d", sizes[2])}) {
		t.Fatalf("LIST %q", l)
	}
	c.expect("LIST 2", fmt.Sprintf("+OK 2 %d", sizes[1]))
	// Dovecot's default UIDL: %08Xu%08Xv, lower-case hex.
	uidlOf := func(i int) string { return fmt.Sprintf("%08x%08x", uids[i], uv) }
	c.expect("UIDL", "+OK")
	if l := c.multi(); !slices.Equal(l, []string{"1 " + uidlOf(0), "2 " + uidlOf(1), "3 " + uidlOf(2)}) {
		t.Fatalf("UIDL %q", l)
	}
	c.expect("UIDL 3", "+OK 3 "+uidlOf(2))

	// RETR: CRLF line ends, byte-stuffed on the wire (HOSTILE 48).
	c.expect("RETR 1", fmt.Sprintf("+OK %d octets", sizes[0]))
	wire := c.raw()
	wantWire := "From: a@example.org\r\nSubject: one\r\n\r\nline 1\r\n..leading dot\r\n\r\n..\r\nafter a lone dot\r\n.\r\n"
	if wire != wantWire {
		t.Fatalf("RETR 1 on the wire:\n%q\nwant\n%q", wire, wantWire)
	}
	c.expect("RETR 2", fmt.Sprintf("+OK %d octets", sizes[1]))
	if b := body(c.multi()); b != crlf(msgLF) {
		t.Fatalf("RETR 2: %q", b)
	}
	c.expect("RETR 3", fmt.Sprintf("+OK %d octets", sizes[2]))
	if b := body(c.multi()); b != msgNoEOL+"\r\n" {
		t.Fatalf("RETR 3: %q", b)
	}

	// TOP: the header, the blank line, n body lines (RFC 1939 §7).
	topBytes := 0
	top := func(cmd string, want string) {
		t.Helper()
		c.expect(cmd, "+OK")
		if b := body(c.multi()); b != want {
			t.Fatalf("%s: %q, want %q", cmd, b, want)
		}
		topBytes += len(want)
	}
	top("TOP 1 0", "From: a@example.org\r\nSubject: one\r\n\r\n")
	top("TOP 1 2", "From: a@example.org\r\nSubject: one\r\n\r\nline 1\r\n.leading dot\r\n")
	top("TOP 1 100", crlf(msgDots))
	top("TOP 2 0", "Subject: two\r\n\r\n")
	top("top 3 1", msgNoEOL+"\r\n")
	topBytes -= 2 // the CRLF before the terminator is not message content

	// DELE marks; STAT, LIST and UIDL leave marked messages out.
	c.expect("DELE 1", "+OK Marked to be deleted.")
	c.expect("STAT", fmt.Sprintf("+OK 2 %d", sizes[1]+sizes[2]))
	c.expect("LIST", "+OK 2 messages:")
	if l := c.multi(); len(l) != 2 || !strings.HasPrefix(l[0], "2 ") {
		t.Fatalf("LIST after DELE %q", l)
	}
	c.expect("UIDL", "+OK")
	if l := c.multi(); len(l) != 2 || l[0] != "2 "+uidlOf(1) {
		t.Fatalf("UIDL after DELE %q", l)
	}
	for _, cmd := range []string{"LIST 1", "UIDL 1", "RETR 1", "TOP 1 0", "DELE 1"} {
		c.expect(cmd, "-ERR Message is deleted.")
	}
	c.expect("RSET", "+OK")
	c.expect("STAT", fmt.Sprintf("+OK 3 %d", total))
	c.expect("NOOP", "+OK")
	c.expect("CAPA", "+OK")
	if l := c.multi(); !slices.Equal(l, []string{"CAPA", "TOP", "UIDL", "RESP-CODES", "PIPELINING", "AUTH-RESP-CODE"}) {
		t.Fatalf("CAPA %q", l)
	}
	// Login commands are over (HOSTILE 11: no STLS or AUTH after login).
	for _, cmd := range []string{"USER alice", "PASS secret", "STLS", "AUTH PLAIN", "APOP a b"} {
		c.expect(cmd, msgUnknown)
	}
	c.expect("DELE 2", "+OK Marked to be deleted.")
	// Nothing is deleted before QUIT.
	if got := inbox(t, dir); len(got) != 3 {
		t.Fatalf("deleted before QUIT: %v", got)
	}
	c.expect("quit", "+OK Logging out, messages deleted.")
	c.closed()
	if err := wait(t, done); err != nil {
		t.Fatal(err)
	}
	if got := inbox(t, dir); !slices.Equal(got, []uint32{uids[0], uids[2]}) {
		t.Fatalf("after QUIT: %v", got)
	}
	// Retrieved messages are \Seen for IMAP.
	if f := flagsOf(t, dir, uids[0]); !slices.Contains(f, `\Seen`) {
		t.Fatalf("flags of a retrieved message: %q", f)
	}
	want := fmt.Sprintf("pop3(alice)<%d>: Disconnected: Logged out top=5/%d, retr=3/%d, del=1/3, size=%d",
		os.Getpid(), topBytes, total, total)
	if l := log.lines(); len(l) != 1 || l[0] != want {
		t.Fatalf("log %q\nwant %q", l, want)
	}
}

func TestQuitWithoutDeletions(t *testing.T) {
	store, dir := newStore(t)
	uids := fill(t, store, msgLF)
	c, done, _ := startSession(t, store, SessionConfig{NoFlagUpdates: true})
	c.expect("RETR 1", fmt.Sprintf("+OK %d octets", len(crlf(msgLF))))
	c.multi()
	c.expect("QUIT", "+OK Logging out.")
	c.closed()
	if err := wait(t, done); err != nil {
		t.Fatal(err)
	}
	// NoFlagUpdates: no \Seen.
	if f := flagsOf(t, dir, uids[0]); len(f) != 0 {
		t.Fatalf("flags %q", f)
	}
}

func TestEmptyMaildrop(t *testing.T) {
	store, _ := newStore(t)
	c, done, _ := startSession(t, store, SessionConfig{})
	c.expect("STAT", "+OK 0 0")
	c.expect("LIST", "+OK 0 messages:")
	if l := c.multi(); len(l) != 0 {
		t.Fatal(l)
	}
	c.expect("RETR 1", "-ERR There's no message 1.")
	c.expect("QUIT", "+OK Logging out.")
	c.closed()
	wait(t, done)
}

// HOSTILE 46: only QUIT deletes.
func TestDroppedConnectionDeletesNothing(t *testing.T) {
	store, dir := newStore(t)
	uids := fill(t, store, msgDots, msgLF, msgNoEOL)
	c, done, log := startSession(t, store, SessionConfig{})
	c.expect("DELE 1", "+OK Marked to be deleted.")
	c.expect("DELE 2", "+OK Marked to be deleted.")
	c.expect("RETR 3", fmt.Sprintf("+OK %d octets", len(crlf(msgNoEOL))))
	c.multi()
	c.c.Close()
	if err := wait(t, done); err == nil {
		t.Fatal("a dropped session reported success")
	}
	if got := inbox(t, dir); !slices.Equal(got, uids) {
		t.Fatalf("after a dropped connection: %v", got)
	}
	if f := flagsOf(t, dir, uids[2]); len(f) != 0 {
		t.Fatalf("flags changed without QUIT: %q", f)
	}
	if !log.has("Disconnected: Connection closed top=0/0, retr=1/") || !log.has("del=0/3") {
		t.Fatalf("log %q", log.lines())
	}
}

// RFC 1939 §3: the autologout timer ends the session without UPDATE.
func TestIdleTimeoutDeletesNothing(t *testing.T) {
	store, dir := newStore(t)
	uids := fill(t, store, msgLF, msgLF)
	c, done, log := startSession(t, store, SessionConfig{IdleTimeout: 100 * time.Millisecond})
	c.expect("DELE 1", "+OK Marked to be deleted.")
	if l := c.line(); l != msgInactivity {
		t.Fatalf("%q", l)
	}
	c.closed()
	if err := wait(t, done); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal(err)
	}
	if got := inbox(t, dir); !slices.Equal(got, uids) {
		t.Fatalf("after the timeout: %v", got)
	}
	if !log.has("Disconnected: Inactivity top=0/0, retr=0/0, del=0/2") {
		t.Fatalf("log %q", log.lines())
	}
}

func TestIdleTimeoutDefault(t *testing.T) {
	if d := (SessionConfig{}).withDefaults().IdleTimeout; d < 10*time.Minute {
		t.Fatalf("RFC 1939 §3 requires at least 10 minutes, default %v", d)
	}
	if d := (LoginConfig{}).withDefaults().Timeout; d != 60*time.Second {
		t.Fatalf("pre-auth timeout %v", d)
	}
}

func TestSessionContextCancel(t *testing.T) {
	store, dir := newStore(t)
	uids := fill(t, store, msgLF)
	ctx, cancel := context.WithCancel(context.Background())
	log := newTestLog()
	c, done := sessionPipe(t, ctx, store, SessionConfig{Log: log.l}, "")
	c.line()
	c.expect("DELE 1", "+OK Marked to be deleted.")
	cancel()
	if l := c.line(); l != msgShutdown {
		t.Fatalf("%q", l)
	}
	c.closed()
	if err := wait(t, done); !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if got := inbox(t, dir); !slices.Equal(got, uids) {
		t.Fatalf("after shutdown: %v", got)
	}
	if !log.has("Disconnected: Server shutting down") {
		t.Fatalf("log %q", log.lines())
	}
}

// HOSTILE 47: bad numbers are refused and the session goes on.
func TestBadMessageNumbers(t *testing.T) {
	store, _ := newStore(t)
	fill(t, store, msgDots, msgLF, msgNoEOL)
	c, _, _ := startSession(t, store, SessionConfig{})
	for _, tc := range []struct{ cmd, want string }{
		{"RETR 0", "-ERR There's no message 0."},
		{"RETR 4", "-ERR There's no message 4."},
		{"DELE -1", "-ERR Invalid message number."},
		{"TOP 1 -5", "-ERR Invalid number of lines."},
		{"LIST 99999999999999999999", "-ERR There's no message 99999999999999999999."},
		{"UIDL 4294967297", "-ERR There's no message 4294967297."},
		{"RETR x", "-ERR Invalid message number."},
		{"RETR +1", "-ERR Invalid message number."},
		{"RETR", "-ERR Invalid arguments."},
		{"RETR 1 2", "-ERR Invalid arguments."},
		{"TOP 1", "-ERR Invalid arguments."},
		{"DELE " + strings.Repeat("9", 300), msgTooLong},
	} {
		c.expect(tc.cmd, tc.want)
	}
	// A huge line count is simply the whole message.
	c.expect("TOP 2 99999999999999999999", "+OK")
	if b := body(c.multi()); b != crlf(msgLF) {
		t.Fatalf("%q", b)
	}
	c.expect("STAT", fmt.Sprintf("+OK 3 %d", len(crlf(msgDots))+len(crlf(msgLF))+len(crlf(msgNoEOL))))
}

func TestSessionBadCommandLimit(t *testing.T) {
	store, dir := newStore(t)
	uids := fill(t, store, msgLF)
	c, done, log := startSession(t, store, SessionConfig{})
	c.expect("DELE 1", "+OK Marked to be deleted.")
	for i := 0; i < 9; i++ {
		c.expect("XYZZY", msgUnknown)
	}
	c.expect("RETR \x00", msgTooManyBad)
	c.closed()
	if err := wait(t, done); !errors.Is(err, ErrBadCommands) {
		t.Fatal(err)
	}
	if got := inbox(t, dir); !slices.Equal(got, uids) {
		t.Fatalf("deleted: %v", got)
	}
	if !log.has("Disconnected: Too many bad commands top=0/0") {
		t.Fatalf("log %q", log.lines())
	}
}

// HOSTILE 48: a message with "\r\n.\r\n" inside and a smuggled-looking
// command after it is one response; the client reads it back exactly.
func TestByteStuffingCannotEndResponse(t *testing.T) {
	store, dir := newStore(t)
	evil := "Subject: x\r\n\r\nfirst\r\n.\r\nQUIT\r\n..\r\n.\r\n.x\n.\n"
	fill(t, store, evil)
	c, done, _ := startSession(t, store, SessionConfig{})
	c.expect("RETR 1", fmt.Sprintf("+OK %d octets", len(crlf(evil))))
	wire := c.raw()
	want := "Subject: x\r\n\r\nfirst\r\n..\r\nQUIT\r\n...\r\n..\r\n..x\r\n..\r\n.\r\n"
	if wire != want {
		t.Fatalf("wire %q\nwant %q", wire, want)
	}
	c.expect("TOP 1 2", "+OK")
	if w := c.raw(); w != "Subject: x\r\n\r\nfirst\r\n..\r\n.\r\n" {
		t.Fatalf("TOP wire %q", w)
	}
	// The session is in step: the next answer is NOOP's.
	c.expect("NOOP", "+OK")
	c.expect("QUIT", "+OK Logging out.")
	c.closed()
	wait(t, done)
	if got := inbox(t, dir); len(got) != 1 {
		t.Fatalf("the message's QUIT ran: %v", got)
	}
}

// HOSTILE 49: one POP3 session per maildrop, across Stores.
func TestInUse(t *testing.T) {
	_, dir := newStore(t)
	s1, s2 := openStore(t, dir), openStore(t, dir)
	fill(t, s1, msgLF)
	c1, done1, _ := startSession(t, s1, SessionConfig{})
	for _, s := range []*mailbox.Store{s2, s1} {
		log := newTestLog()
		c2, done2 := sessionPipe(t, context.Background(), s, SessionConfig{Log: log.l}, "")
		if l := c2.line(); l != "-ERR [IN-USE] Mailbox is locked by another POP3 session" {
			t.Fatalf("second session: %q", l)
		}
		c2.closed()
		if err := wait(t, done2); !errors.Is(err, ErrInUse) {
			t.Fatal(err)
		}
		if !log.has("Disconnected: Mailbox is locked by another POP3 session") {
			t.Fatalf("log %q", log.lines())
		}
	}
	c1.expect("DELE 1", "+OK Marked to be deleted.")
	// The lock is gone when the client reads the QUIT answer: it can
	// connect again at once.
	c1.expect("QUIT", "+OK Logging out, messages deleted.")
	c3, done3, _ := startSession(t, s2, SessionConfig{})
	c3.expect("STAT", "+OK 0 0")
	c3.expect("QUIT", "+OK Logging out.")
	c1.closed()
	c3.closed()
	wait(t, done1)
	wait(t, done3)
}

// The lock holds across processes, and a crashed holder releases it.
func TestInUseAcrossProcesses(t *testing.T) {
	store, dir := newStore(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockHelperProcess$")
	cmd.Env = append(os.Environ(), "POP3_LOCK_HELPER_DIR="+dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if l, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || l != "locked\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("helper: %q %v", l, err)
	}
	c, done := sessionPipe(t, context.Background(), store, SessionConfig{Log: newTestLog().l}, "")
	if l := c.line(); !strings.HasPrefix(l, "-ERR [IN-USE] ") {
		t.Fatalf("while another process holds the lock: %q", l)
	}
	wait(t, done)
	// A crash: SIGKILL, no cleanup.
	cmd.Process.Kill()
	cmd.Wait()
	c2, done2, _ := startSession(t, store, SessionConfig{})
	c2.expect("QUIT", "+OK Logging out.")
	c2.closed()
	wait(t, done2)
}

// TestLockHelperProcess is the other process of TestInUseAcrossProcesses.
func TestLockHelperProcess(t *testing.T) {
	dir := os.Getenv("POP3_LOCK_HELPER_DIR")
	if dir == "" {
		t.Skip("run by TestInUseAcrossProcesses")
	}
	f, err := lockMaildrop(dir, "")
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("locked")
	io.Copy(io.Discard, os.Stdin)
	f.Close()
	os.Exit(0)
}

func TestLockFileChecks(t *testing.T) {
	dir := t.TempDir()
	if _, err := lockMaildrop(dir, "../x"); err == nil {
		t.Fatal("a lock path outside the Maildir was accepted")
	}
	os.Symlink("/etc/passwd", filepath.Join(dir, DefaultLockFile))
	if f, err := lockMaildrop(dir, ""); err == nil {
		f.Close()
		t.Fatal("a symlinked lock file was followed")
	}
	os.Mkdir(filepath.Join(dir, "d"), 0700)
	if _, err := lockMaildrop(dir, "d"); err == nil {
		t.Fatal("a directory was taken as the lock file")
	}
}

// A POP3 session sees the maildrop as it was at login while IMAP sessions
// and deliveries change it (RFC 2180 §4.1 applied to POP3).
func TestConcurrentIMAPAndDelivery(t *testing.T) {
	store, dir := newStore(t)
	uids := fill(t, store, msgDots, msgLF, msgNoEOL, msgLF)
	c, done, log := startSession(t, store, SessionConfig{})

	// A delivery and an IMAP session in another process (another Store)
	// that expunges message 2 and flags message 1 (a rename in cur/).
	if _, err := maildir.NewWriter("pop3.test").Deliver(dir, nil, strings.NewReader("Subject: late\n\nnew\n")); err != nil {
		t.Fatal(err)
	}
	imap := openStore(t, dir)
	imb, err := imap.Open("INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := imb.Expunge([]uint32{uids[1]}, false); err != nil {
		t.Fatal(err)
	}
	if _, _, err := imb.SetFlags([]uint32{uids[0]}, mailbox.FlagsAdd, []string{`\Flagged`}, 0); err != nil {
		t.Fatal(err)
	}
	// And an IMAP session of this process (same Store) expunges message 3.
	local, _ := store.Open("INBOX")
	if _, err := local.Expunge([]uint32{uids[2]}, false); err != nil {
		t.Fatal(err)
	}

	c.expectPrefix("STAT", "+OK 4 ")
	c.expect("LIST", "+OK 4 messages:")
	if l := c.multi(); len(l) != 4 {
		t.Fatalf("LIST %q", l)
	}
	c.expect("RETR 2", "-ERR Message was expunged by another session.")
	c.expect("TOP 3 0", "-ERR Message was expunged by another session.")
	c.expect("RETR 1", fmt.Sprintf("+OK %d octets", len(crlf(msgDots))))
	if b := body(c.multi()); b != msgDots {
		t.Fatalf("RETR of a renamed message: %q", b)
	}
	c.expect("DELE 1", "+OK Marked to be deleted.")
	c.expect("DELE 2", "+OK Marked to be deleted.")
	c.expect("QUIT", "+OK Logging out, messages deleted.")
	c.closed()
	if err := wait(t, done); err != nil {
		t.Fatal(err)
	}
	got := inbox(t, dir)
	if len(got) != 2 || got[0] != uids[3] || got[1] <= uids[3] {
		t.Fatalf("after QUIT: %v (want message 4 and the delivery)", got)
	}
	if !log.has("del=1/4") {
		t.Fatalf("log %q", log.lines())
	}

	// The next session sees the delivery.
	c2, done2, _ := startSession(t, store, SessionConfig{})
	c2.expect("LIST 2", fmt.Sprintf("+OK 2 %d", len(crlf("Subject: late\n\nnew\n"))))
	c2.expect("QUIT", "+OK Logging out.")
	c2.closed()
	wait(t, done2)
}

// A Maildir that Dovecot's POP3 served: stored UIDLs (P) and message order
// (O) are kept, so clients download nothing again.
func TestDovecotUIDLsAndOrder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "Maildir")
	for _, d := range []string{"cur", "new", "tmp"} {
		os.MkdirAll(filepath.Join(dir, d), 0700)
	}
	long := strings.Repeat("x", 71)
	files := map[string]string{
		"cur/1276528487.M1P1.kurkku,S=18,W=21:2,S": "Subject: a\n\nfirst\n",
		"cur/1276528488.M2P1.kurkku,S=19,W=22:2,S": "Subject: b\n\nsecond\n",
		"cur/1276528489.M3P1.kurkku,S=19,W=22:2,":  "Subject: d\n\nfourth\n",
		"new/1276528490.M5P9.kurkku,S=18,W=21":     "Subject: c\n\nthird\n",
	}
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(c), 0600); err != nil {
			t.Fatal(err)
		}
	}
	uidlist := "3 V1276528400 N7 G1d1d6b1a5f0c2e4b9a8f7e6d5c4b3a29\n" +
		"3 Plegacy-uidl-3 O2 :1276528487.M1P1.kurkku,S=18,W=21\n" +
		"5 O1 :1276528488.M2P1.kurkku,S=19,W=22\n" +
		"6 P" + long + " :1276528489.M3P1.kurkku,S=19,W=22\n"
	if err := os.WriteFile(filepath.Join(dir, "dovecot-uidlist"), []byte(uidlist), 0600); err != nil {
		t.Fatal(err)
	}
	store := openStore(t, dir)
	c, done, _ := startSession(t, store, SessionConfig{})
	c.expect("UIDL", "+OK")
	want := []string{"1 000000054c164710", "2 legacy-uidl-3", "3 000000064c164710", "4 000000074c164710"}
	if l := c.multi(); !slices.Equal(l, want) {
		t.Fatalf("UIDL %q, want %q", l, want)
	}
	c.expect("LIST", "+OK 4 messages:")
	if l := c.multi(); !slices.Equal(l, []string{"1 22", "2 21", "3 22", "4 21"}) {
		t.Fatalf("LIST %q", l)
	}
	c.expect("RETR 1", "+OK 22 octets")
	if b := body(c.multi()); b != "Subject: b\r\n\r\nsecond\r\n" {
		t.Fatalf("RETR 1 %q", b)
	}
	c.expect("QUIT", "+OK Logging out.")
	c.closed()
	wait(t, done)
}

// Commands the client pipelined after PASS come with the Handoff and are
// answered first, in order.
func TestPipelinedAfterLogin(t *testing.T) {
	store, dir := newStore(t)
	uids := fill(t, store, msgLF, msgLF)
	c, done := sessionPipe(t, context.Background(), store, SessionConfig{Log: newTestLog().l}, "STAT\r\nDELE 1\r\nUIDL 1\r\n")
	size := len(crlf(msgLF))
	for _, want := range []string{"+OK Logged in.", fmt.Sprintf("+OK 2 %d", 2*size), "+OK Marked to be deleted.", "-ERR Message is deleted."} {
		if l := c.line(); l != want {
			t.Fatalf("%q, want %q", l, want)
		}
	}
	c.send("LIST\r\nQUIT\r\n")
	if l := c.line(); l != "+OK 1 messages:" {
		t.Fatal(l)
	}
	c.multi()
	if l := c.line(); l != "+OK Logging out, messages deleted." {
		t.Fatal(l)
	}
	c.closed()
	wait(t, done)
	if got := inbox(t, dir); !slices.Equal(got, uids[1:]) {
		t.Fatalf("%v", got)
	}
}

// A session's log line in Dovecot's default pop3_logout_format.
func TestLogoutLineFormat(t *testing.T) {
	store, _ := newStore(t)
	fill(t, store, msgLF)
	c, done, log := startSession(t, store, SessionConfig{})
	c.expect("QUIT", "+OK Logging out.")
	c.closed()
	wait(t, done)
	re := regexp.MustCompile(`^pop3\(alice\)<\d+>: Disconnected: Logged out top=0/0, retr=0/0, del=0/1, size=\d+$`)
	if l := log.lines(); len(l) != 1 || !re.MatchString(l[0]) {
		t.Fatalf("log %q", l)
	}
}

// A client that stops reading a RETR is dropped after WriteTimeout, and
// nothing is deleted.
func TestWriteTimeout(t *testing.T) {
	store, dir := newStore(t)
	big := "Subject: big\n\n" + strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n", 8192)
	uids := fill(t, store, big, msgLF)
	c, done, log := startSession(t, store, SessionConfig{WriteTimeout: 100 * time.Millisecond})
	c.expect("DELE 2", "+OK Marked to be deleted.")
	c.expect("RETR 1", fmt.Sprintf("+OK %d octets", len(crlf(big))))
	// The client reads no further.
	err := wait(t, done)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("session ended with %v", err)
	}
	if got := inbox(t, dir); !slices.Equal(got, uids) {
		t.Fatalf("deleted: %v", got)
	}
	if !log.has("Disconnected: Client stopped reading our output top=0/0, retr=0/0, del=0/2") {
		t.Fatalf("log %q", log.lines())
	}
}

func TestSessionLineFlood(t *testing.T) {
	store, dir := newStore(t)
	uids := fill(t, store, msgLF)
	c, done, _ := startSession(t, store, SessionConfig{})
	c.expect("DELE 1", "+OK Marked to be deleted.")
	c.sendAsync(strings.Repeat("x", 2*maxDiscard))
	if l := c.line(); l != msgTooLong {
		t.Fatalf("%q", l)
	}
	c.closed()
	if err := wait(t, done); !errors.Is(err, errLineFlood) {
		t.Fatal(err)
	}
	if got := inbox(t, dir); !slices.Equal(got, uids) {
		t.Fatalf("deleted: %v", got)
	}
}

// HOSTILE 47 through both stages over TCP: commands arrive a byte at a
// time.
func TestCommandsSplitAcrossSegments(t *testing.T) {
	store, _ := newStore(t)
	fill(t, store, msgDots)
	srv := startServer(t, LoginConfig{}, SessionConfig{}, newFakeAuth(), func(string) *mailbox.Store { return store })
	c := srv.dial(t)
	c.line()
	trickle := func(s string) string {
		for _, b := range []byte(s + "\r\n") {
			c.send(string(b))
		}
		return c.line()
	}
	if l := trickle("USER alice"); l != "+OK" {
		t.Fatal(l)
	}
	if l := trickle("PASS secret"); l != "+OK Logged in." {
		t.Fatal(l)
	}
	if l := trickle("RETR 1"); l != fmt.Sprintf("+OK %d octets", len(msgDots)) {
		t.Fatal(l)
	}
	if b := body(c.multi()); b != msgDots {
		t.Fatalf("%q", b)
	}
	if l := trickle("QUIT"); l != "+OK Logging out." {
		t.Fatal(l)
	}
	c.closed()
	if err := wait(t, srv.ended); err != nil {
		t.Fatal(err)
	}
}

// A shutdown in the middle of a RETR body ends the connection without a
// terminator and without a stray line the client would take for content.
func TestShutdownDuringRetr(t *testing.T) {
	store, dir := newStore(t)
	big := "Subject: big\n\n" + strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n", 8192)
	uids := fill(t, store, big)
	ctx, cancel := context.WithCancel(context.Background())
	log := newTestLog()
	c, done := sessionPipe(t, ctx, store, SessionConfig{Log: log.l}, "")
	c.line()
	c.expect("DELE 1", "+OK Marked to be deleted.")
	c.expect("RSET", "+OK")
	c.expect("RETR 1", fmt.Sprintf("+OK %d octets", len(crlf(big))))
	// The client reads nothing more, so the server is stuck in the body
	// until the cancellation. Had it tried to say goodbye, that write
	// would have waited goodbyeTimeout for this client.
	start := time.Now()
	cancel()
	if err := wait(t, done); !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if d := time.Since(start); d >= goodbyeTimeout {
		t.Fatalf("the session tried to write after its write failed (ended after %v)", d)
	}
	rest, _ := io.ReadAll(c.br)
	if strings.HasSuffix(string(rest), "\r\n.\r\n") || strings.Contains(string(rest), "-ERR") {
		t.Fatalf("after shutdown the client read %d octets ending %q", len(rest), rest[max(0, len(rest)-40):])
	}
	if got := inbox(t, dir); !slices.Equal(got, uids) {
		t.Fatalf("deleted: %v", got)
	}
	if !log.has("Disconnected: Server shutting down top=0/0, retr=0/0") {
		t.Fatalf("log %q", log.lines())
	}
}
