package server

import (
	"bufio"
	"crypto/tls"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/pkg/certgen"
)

// Every entry of HOSTILE-INPUTS.md §1f (38-45) and items 8, 10, 11 and 14
// as they apply to IMAP. Each test also checks that another client is
// still served afterwards.

func testTLSConfig(t *testing.T) *tls.Config {
	t.Helper()
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := certgen.Ensure(cert, key, "imap.example.test", -1, -1); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}}
}

// stillServing checks that a fresh client can log in and work.
func (ts *testServer) stillServing() {
	ts.t.Helper()
	c := ts.loginSelect()
	c.ok("z NOOP")
	c.c.Close()
}

// startTLS upgrades a test connection after "tag OK".
func (c *tconn) startTLS() {
	c.t.Helper()
	tc := tls.Client(c.c, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("handshake: %v", err)
	}
	c.c = tc
	c.r = bufio.NewReader(tc)
}

// HOSTILE 8: commands pipelined behind STARTTLS in plaintext must never
// run inside TLS.
func TestHostileStartTLSInjection(t *testing.T) {
	ts := newTestServer(t, func(c *Config) { c.TLSConfig = testTLSConfig(t) })
	// Injected bytes that the server has already buffered are dropped,
	// and the session continues inside TLS, still not logged in.
	c := ts.dial()
	c.write("a STARTTLS\r\nb\r\n")
	if l := c.line(); !strings.HasPrefix(l, "a OK") {
		t.Fatalf("%q", l)
	}
	c.startTLS()
	out := c.ok("d CAPABILITY")
	mustHave(t, out, "AUTH=PLAIN")
	mustNotHave(t, out, "b BAD", "STARTTLS", "QRESYNC")

	// A whole injected LOGIN: it must never run. Whatever was not yet
	// read is plaintext where the TLS handshake expects a ClientHello, so
	// the handshake fails and the connection closes; either way the
	// command never executes inside TLS.
	c = ts.dial()
	c.write("a STARTTLS\r\nb LOGIN alice secret\r\nc SELECT INBOX\r\n")
	if l := c.line(); !strings.HasPrefix(l, "a OK") {
		t.Fatalf("%q", l)
	}
	if c.r.Buffered() > 0 {
		t.Fatalf("server answered the injected commands: %d octets", c.r.Buffered())
	}
	tc := tls.Client(c.c, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err == nil {
		c.c, c.r = tc, bufio.NewReader(tc)
		out := c.ok("d CAPABILITY")
		mustHave(t, out, "AUTH=PLAIN")
		mustNotHave(t, out, "b OK", "c OK", "QRESYNC")
		c.expect("e SELECT INBOX", "BAD", "Login first")
	}
	ts.stillServing()
}

// HOSTILE 10: no cleartext login where TLS is offered, unless loopback.
func TestHostileCleartextLogin(t *testing.T) {
	ts := newTestServer(t, func(c *Config) { c.TLSConfig = testTLSConfig(t); c.NoLoopbackCleartext = true })
	c := ts.dial()
	out := c.ok("a CAPABILITY")
	mustHave(t, out, "STARTTLS", "LOGINDISABLED")
	mustNotHave(t, out, "AUTH=PLAIN")
	c.expect("b LOGIN alice secret", "NO", "[PRIVACYREQUIRED]")
	c.expect("c AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==", "NO", "[PRIVACYREQUIRED]")
	c.ok("d STARTTLS")
	c.startTLS()
	out = c.ok("e CAPABILITY")
	mustHave(t, out, "AUTH=PLAIN")
	mustNotHave(t, out, "LOGINDISABLED", "STARTTLS")
	c.ok("f LOGIN alice secret")

	// On loopback (the default) plaintext login is allowed.
	ts2 := newTestServer(t, func(c *Config) { c.TLSConfig = testTLSConfig(t) })
	c = ts2.dial()
	mustHave(t, c.ok("a CAPABILITY"), "STARTTLS", "AUTH=PLAIN")
	c.ok("b LOGIN alice secret")
}

// HOSTILE 11: STARTTLS twice, after login, LOGIN twice.
func TestHostileStateViolations(t *testing.T) {
	ts := newTestServer(t, func(c *Config) { c.TLSConfig = testTLSConfig(t) })
	c := ts.dial()
	c.ok("a STARTTLS")
	c.startTLS()
	c.expect("b STARTTLS", "BAD", "TLS is already active")
	c.ok("c LOGIN alice secret")
	c.expect("d LOGIN alice secret", "BAD", "Unknown command")
	c.expect("e AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==", "BAD", "")
	c.expect("f STARTTLS", "BAD", "")
	c.ok("g SELECT INBOX")
	// Implicit TLS (port 993): STARTTLS is neither offered nor accepted.
	l, err := tls.Listen("tcp", "127.0.0.1:0", testTLSConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	go ts.srv.Serve(l)
	tc, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	c = &tconn{t: t, c: tc, r: bufio.NewReader(tc)}
	if g := c.line(); strings.Contains(g, "STARTTLS") || !strings.Contains(g, "AUTH=PLAIN") {
		t.Fatalf("993 greeting %q", g)
	}
	c.expect("a STARTTLS", "BAD", "TLS is already active")
	c.ok("b LOGIN alice secret")
}

// HOSTILE 14: NUL in commands and credentials.
func TestHostileNUL(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.dial()
	c.expect("a LOGIN \"ali\x00ce\" secret", "BAD", "")
	// Through a literal NUL reaches LOGIN, which refuses it.
	c.write("b LOGIN {6}\r\n")
	c.line() // + OK
	c.write("alice\x00 secret\r\n")
	if out := c.until("b"); !strings.Contains(out[len(out)-1], "AUTHENTICATIONFAILED") {
		t.Fatal(out)
	}
	c = ts.login()
	// Message content with NUL is carried byte-exact, never truncated.
	msg := "Subject: nul\r\n\r\nbefore\x00after\r\n"
	c.write("c APPEND INBOX ~{" + itoa(len(msg)) + "}\r\n")
	c.line()
	c.write(msg + "\r\n")
	c.until("c")
	c.ok("d SELECT INBOX")
	out := c.ok("e FETCH 1 (BINARY.PEEK[] RFC822.SIZE)")
	mustHave(t, out, "~{"+itoa(len(msg))+"}\r\n"+msg, "RFC822.SIZE "+itoa(len(msg)))
	ts.stillServing()
}

// HOSTILE 38: absurd literals are refused before the continuation.
func TestHostileHugeLiterals(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.login()
	for _, n := range []string{"4294967296", "99999999999999999999", "10240001"} {
		out := c.expect("a APPEND INBOX {"+n+"}", "NO", "[TOOBIG]")
		mustNotHave(t, out, "+ OK")
	}
	c.expect("b SEARCH TEXT {5000000}", "BAD", "[TOOBIG]")
	c.expect("c APPEND Nope {10}", "NO", "[TRYCREATE]")
	// Within the limit it works.
	c.write("d APPEND INBOX {" + itoa(len(simpleMsg)) + "}\r\n")
	if l := c.line(); l != "+ OK" {
		t.Fatalf("%q", l)
	}
	c.write(simpleMsg + "\r\n")
	if out := c.until("d"); !strings.Contains(out[len(out)-1], "d OK [APPENDUID") {
		t.Fatal(out)
	}
	// APPENDLIMIT is advertised and exactly enforced.
	ts2 := newTestServer(t, func(c *Config) { c.AppendLimit = 100 })
	c = ts2.login()
	mustHave(t, c.ok("a CAPABILITY"), "APPENDLIMIT=100")
	c.expect("b APPEND INBOX {101}", "NO", "[TOOBIG]")
	c.write("c APPEND INBOX {100}\r\n")
	if l := c.line(); l != "+ OK" {
		t.Fatalf("%q", l)
	}
	c.write(strings.Repeat("x", 100) + "\r\n")
	c.until("c")
	ts.stillServing()
}

// HOSTILE 39: refused non-synchronising literals are consumed, never run.
func TestHostileNonSyncLiterals(t *testing.T) {
	ts := newTestServer(t, func(c *Config) { c.LiteralMinus = true })
	c := ts.login()
	mustHave(t, c.ok("a CAPABILITY"), "LITERAL-")
	payload := strings.Repeat("x DELETE INBOX\r\n", 320) // 5120 octets of would-be commands
	c.write("b SEARCH TEXT {5120+}\r\n" + payload + "\r\n")
	if out := c.until("b"); !strings.Contains(out[len(out)-1], "b BAD [TOOBIG]") {
		t.Fatal(out)
	}
	// A refused APPEND: the message bytes, full of commands, are skipped.
	c.write("c APPEND Nope {1000+}\r\n" + strings.Repeat("y CREATE Evil\r\n", 66) + "0123456789" + "\r\n")
	if out := c.until("c"); !strings.Contains(out[len(out)-1], "c NO [TRYCREATE]") {
		t.Fatal(out)
	}
	c.ok("d NOOP")
	out := c.ok(`e LIST "" *`)
	mustNotHave(t, out, "Evil")
	// Too large to skip: BYE and close.
	c.write("f LOGIN {99999999999+}\r\n")
	out = c.until("*")
	mustHave(t, out, "* BYE")
	if !c.closed() {
		t.Fatal("not closed")
	}
	// LITERAL+ (default): big non-synchronising literals are fine.
	ts2 := newTestServer(t, nil)
	c = ts2.login()
	c.write("g APPEND INBOX {5000+}\r\n" + strings.Repeat("z", 5000) + "\r\n")
	if out := c.until("g"); !strings.Contains(out[len(out)-1], "g OK") {
		t.Fatal(out)
	}
	ts.stillServing()
}

// HOSTILE 40: list and nesting bombs, before and after login.
func TestHostileNesting(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.dial()
	c.expect("a ID "+strings.Repeat("(", 4000), "BAD", "")
	c.ok("b NOOP")
	c.ok("c LOGIN alice secret")
	c.ok("d SELECT INBOX")
	c.expect("e SEARCH "+strings.Repeat("NOT ", 5000)+"ALL", "BAD", "nested too deeply")
	c.expect("f SEARCH "+strings.Repeat("(", 5000)+"ALL"+strings.Repeat(")", 5000), "BAD", "nested too deeply")
	c.expect("g SEARCH "+strings.Repeat("OR ALL ", 3000)+"ALL", "BAD", "nested too deeply")
	c.ok("h SEARCH " + strings.Repeat("OR SEEN ", 90) + "ALL")
	// 100 000 nested ORs do not even fit in a command line: BYE.
	c.write("i SEARCH " + strings.Repeat("OR ", 100000) + "ALL ALL\r\n")
	mustHave(t, c.until("*"), "* BYE")
	ts.stillServing()
}

// HOSTILE 41: NUL, CR, LF and 8-bit in quoted strings.
func TestHostileQuoted(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.loginSelect()
	c.expect("a SEARCH SUBJECT \"a\x00b\"", "BAD", "")
	c.expect("b SEARCH SUBJECT \"k\xe4se\"", "BAD", "8-bit")
	c.expect("c SEARCH SUBJECT \"a\rb\"", "BAD", "")
	c.expect("d SEARCH SUBJECT \"a\\qb\"", "BAD", "escape")
	c.ok("e SEARCH CHARSET UTF-8 SUBJECT {5}\r\nk\xc3\xa4se")
	ts.stillServing()
}

// HOSTILE 42: mailbox names that could act as paths.
func TestHostileMailboxNames(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.login()
	for _, name := range []string{`"../../etc"`, `"/etc/passwd"`, `"~root/x"`, `"a//b"`, `"./x"`, `"INBOX/.."`,
		`"a..b"`, `".hidden"`, "{3}\r\na\x01b", "{3}\r\na\x7fb", `"#news.x"`, `"cur"`, `"INBOX.."`, `""`} {
		c.expect("a CREATE "+name, "NO", "")
		c.expect("b SELECT "+name, "NO", "")
		c.expect("c RENAME INBOX "+name, "NO", "")
	}
	c.expect(`d APPEND "../x" {1}`, "NO", "")
	out := c.ok(`e LIST "" *`)
	if len(out) != 1 {
		t.Fatalf("names were created: %q", out)
	}
	// A trailing delimiter only declares children (RFC 3501 §6.3.3).
	c.ok(`f CREATE "Archive."`)
	mustHave(t, c.ok(`g LIST "" *`), `"." Archive`)
	ts.stillServing()
}

// HOSTILE 43: malformed modified UTF-7 is refused; valid names round-trip.
func TestHostileUTF7(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.login()
	for _, name := range []string{"&", "&Jjo", "&Jjo!", "&U,BTFw-&ZeVnLIqe-", "&AGE-", "{3}\r\np\xe4\xe4"} {
		c.expect("a CREATE "+name, "NO", "")
	}
	c.ok("b CREATE Entw&APw-rfe")
	c.ok("c CREATE &U,BTFw-")
	out := c.ok(`d LIST "" *`)
	mustHave(t, out, ` Entw&APw-rfe`, ` &U,BTFw-`)
	c.ok("e SELECT Entw&APw-rfe")
	// After ENABLE UTF8=ACCEPT the same mailbox is spelled in UTF-8.
	c.ok("f ENABLE UTF8=ACCEPT")
	out = c.ok(`g LIST "" *`)
	mustHave(t, out, ` "Entwürfe"`, ` "台北"`)
	c.ok("h SELECT \"Entwürfe\"")
	ts.stillServing()
}

// HOSTILE 44: sequence sets.
func TestHostileSequenceSets(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.loginSelect()
	// Empty mailbox: UID FETCH 1:* is fine and returns nothing.
	out := c.ok("a UID FETCH 1:* FLAGS")
	if len(out) != 0 {
		t.Fatal(out)
	}
	c.ok("a2 FETCH 1:* FLAGS")
	for i := 0; i < 3; i++ {
		ts.user.Deliver("INBOX", []byte(simpleMsg))
	}
	c.ok("b NOOP")
	for _, set := range []string{"0", "*:0", "1:4294967296", "0:1", "1,0", "-1", "4294967296"} {
		c.expect("c FETCH "+set+" FLAGS", "BAD", "")
		c.expect("d UID FETCH "+set+" FLAGS", "BAD", "")
	}
	c.expect("e FETCH 4 FLAGS", "BAD", "Invalid messageset")
	out = c.ok("f UID FETCH 4294967295:1 FLAGS")
	if len(out) != 3 {
		t.Fatal(out)
	}
	// n:* with n beyond the last UID still names the last message.
	out = c.ok("g UID FETCH 100:* UID")
	mustHave(t, out, "* 3 FETCH (UID 3)")
	// Many ranges within the line limit: evaluated without expansion.
	var b strings.Builder
	for i := 0; i < 8000; i++ {
		b.WriteString("1:3,")
	}
	b.WriteString("2")
	if out := c.ok("h UID FETCH " + b.String() + " UID"); len(out) != 3 {
		t.Fatal(len(out))
	}
	// A million ranges exceed the line: BYE, never an allocation spree.
	c.write("i FETCH " + strings.Repeat("1,", 1000000) + "1 FLAGS\r\n")
	mustHave(t, c.until("*"), "* BYE")
	ts.stillServing()
}

// HOSTILE 45: IDLE without DONE, commands during IDLE, bad-command floods.
func TestHostileIdleAndFloods(t *testing.T) {
	ts := newTestServer(t, func(c *Config) { c.IdleTimeout = 300 * time.Millisecond })
	c := ts.loginSelect()
	c.write("a IDLE\r\n")
	c.line()
	start := time.Now()
	out := c.until("*")
	mustHave(t, out, "* BYE Disconnected for inactivity")
	if time.Since(start) > 5*time.Second {
		t.Fatal("idle timeout not applied")
	}
	ts = newTestServer(t, nil)
	c = ts.loginSelect()
	c.write("b IDLE\r\n")
	c.line()
	c.write("c NOOP\r\n")
	if out := c.until("b"); !strings.HasPrefix(out[len(out)-1], "b BAD") {
		t.Fatal(out)
	}
	c.ok("d NOOP")
	// Twenty BAD replies end the session.
	for i := 0; i < 19; i++ {
		c.expect("e FOO", "BAD", "")
	}
	c.write("f FOO\r\n")
	mustHave(t, c.until("*"), "* BYE Too many invalid IMAP commands")
	if !c.closed() {
		t.Fatal("not closed")
	}
	ts.stillServing()
}

// Overlong lines, pre-auth floods and timeouts (HOSTILE 12, 21, 35).
func TestHostileLinesAndPreAuth(t *testing.T) {
	ts := newTestServer(t, func(c *Config) { c.PreAuthTimeout = 300 * time.Millisecond })
	c := ts.dial()
	c.write("a LOGIN " + strings.Repeat("x", 9000) + " y\r\n")
	mustHave(t, c.until("*"), "* BYE")
	c = ts.login()
	c.write("a NOOP " + strings.Repeat("x", 70000) + "\r\n")
	mustHave(t, c.until("*"), "* BYE")
	// A client that never sends a line end.
	c = ts.login()
	c.write(strings.Repeat("y", 200000))
	mustHave(t, c.until("*"), "* BYE")
	// Pre-auth command flood.
	c = ts.dial()
	c.c.SetDeadline(time.Now().Add(20 * time.Second))
	for i := 0; i < 50; i++ {
		c.ok("n NOOP")
	}
	c.write("n NOOP\r\n")
	mustHave(t, c.until("*"), "* BYE Too many commands before login")
	// Pre-auth timeout.
	c = ts.dial()
	mustHave(t, c.until("*"), "* BYE Disconnected for inactivity")
	ts.stillServing()
}

// Too many concurrent sessions get a BYE, others go on.
func TestMaxSessions(t *testing.T) {
	ts := newTestServer(t, func(c *Config) { c.MaxSessions = 2 })
	a := ts.login()
	b := ts.login()
	c, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	l, _ := bufio.NewReader(c).ReadString('\n')
	if !strings.HasPrefix(l, "* BYE [UNAVAILABLE]") {
		t.Fatalf("%q", l)
	}
	a.ok("x NOOP")
	b.ok("x NOOP")
}

func itoa(n int) string { return u64(uint64(n)) }

// Slowloris (HOSTILE 35): a command that starts and stalls, or a literal
// that never completes, ends with a BYE after CommandTimeout.
func TestHostileSlowCommand(t *testing.T) {
	ts := newTestServer(t, func(c *Config) { c.CommandTimeout = 300 * time.Millisecond })
	c := ts.dial()
	c.write("a LOGIN alice")
	start := time.Now()
	mustHave(t, c.until("*"), "* BYE Disconnected for inactivity")
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
	c = ts.login()
	c.write("b SEARCH TEXT {10}\r\n")
	if l := c.line(); l != "+ OK" {
		t.Fatalf("%q", l)
	}
	c.write("ab")
	mustHave(t, c.until("*"), "* BYE Disconnected for inactivity")
	ts.stillServing()
}
