package pop3

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/pkg/sasl"
)

func TestGreetingAndCapaWithoutTLSRefusePasswords(t *testing.T) {
	tlsCfg, _, _ := tlsFiles(t)
	log := newTestLog()
	auth := newFakeAuth()
	c, res := loginPipe(t, context.Background(), LoginConfig{TLS: tlsCfg, Log: log.l}, auth, nil)
	if g := c.line(); g != "+OK posthorn ready." {
		t.Fatalf("greeting %q", g)
	}
	c.expect("CAPA", "+OK")
	caps := c.multi()
	want := []string{"CAPA", "TOP", "UIDL", "RESP-CODES", "PIPELINING", "AUTH-RESP-CODE", "STLS"}
	if !slices.Equal(caps, want) {
		t.Fatalf("CAPA before TLS on a remote connection: %q, want %q (no USER, no SASL)", caps, want)
	}
	// HOSTILE 10: no password is looked at before TLS.
	c.expect("USER alice", msgPlaintextDisallowed)
	c.expect("PASS secret", msgPlaintextDisallowed)
	c.expect("AUTH PLAIN "+plainIR("", "alice", "secret"), msgPlaintextDisallowed)
	c.expect("AUTH LOGIN", msgPlaintextDisallowed)
	c.expect("AUTH", "+OK")
	if m := c.multi(); len(m) != 0 {
		t.Fatalf("AUTH lists %q without TLS", m)
	}
	if len(auth.calls) != 0 {
		t.Fatalf("the authenticator was asked: %+v", auth.calls)
	}
	c.expect("QUIT", "+OK Logging out.")
	c.closed()
	if r := wait(t, res); !errors.Is(r.err, ErrQuit) || r.h != nil {
		t.Fatalf("ServeLogin: %+v", r)
	}
	want1 := "pop3-login: Disconnected: Aborted login by logging out (tried to use disallowed plaintext auth): user=<alice>, rip=192.0.2.1, lip=192.0.2.25"
	if l := log.lines(); len(l) != 1 || l[0] != want1 {
		t.Fatalf("log %q\nwant %q", l, want1)
	}
}

func TestLoopbackAllowsPlaintext(t *testing.T) {
	tlsCfg, _, _ := tlsFiles(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	log := newTestLog()
	auth := newFakeAuth()
	res := make(chan loginResult, 1)
	go func() {
		sc, err := ln.Accept()
		if err != nil {
			res <- loginResult{nil, err}
			return
		}
		h, err := ServeLogin(context.Background(), sc, LoginConfig{TLS: tlsCfg, Log: log.l}, auth)
		res <- loginResult{h, err}
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c := newClient(t, nc)
	c.line()
	c.expect("CAPA", "+OK")
	caps := c.multi()
	if !slices.Contains(caps, "USER") || !slices.Contains(caps, "SASL PLAIN LOGIN") || !slices.Contains(caps, "STLS") {
		t.Fatalf("CAPA on loopback: %q", caps)
	}
	c.expect("USER Alice", "+OK")
	// PASS takes the rest of the line; the pipelined command after it
	// belongs to the session.
	c.send("PASS secret\r\nSTAT\r\n")
	r := wait(t, res)
	if r.err != nil {
		t.Fatal(r.err)
	}
	h := r.h
	defer h.Conn.Close()
	if h.User != "alice" || h.Token != "token-alice" || h.Method != "PLAIN" || h.TLS || !h.Secured {
		t.Fatalf("handoff %+v", h)
	}
	// Either the pipelined STAT was read with PASS or it is still in the
	// socket; together they are exactly what the client sent.
	rest := string(h.Buffered)
	if rest != "" && rest != "STAT\r\n" {
		t.Fatalf("buffered %q", rest)
	}
	cr := auth.lastCall()
	if cr.User != "Alice" || cr.Password != "secret" || cr.Mechanism != "PLAIN" || !cr.Secured || cr.TLS ||
		cr.Remote.String() != nc.LocalAddr().String() {
		t.Fatalf("credentials %+v", cr)
	}
	want := "pop3-login: Login: user=<alice>, method=PLAIN, rip=127.0.0.1, lip=127.0.0.1, secured"
	if l := log.lines(); len(l) != 1 || l[0] != want {
		t.Fatalf("log %q", l)
	}
}

func TestAllowPlaintextHook(t *testing.T) {
	auth := newFakeAuth()
	c, res := loginPipe(t, context.Background(), LoginConfig{Log: newTestLog().l,
		AllowPlaintext: func(net.Conn) bool { return true }}, auth, nil)
	c.line()
	c.expect("USER bob", "+OK")
	c.send("PASS hunter2 with spaces\r\n")
	r := wait(t, res)
	if r.err != nil || r.h.User != "bob" || !r.h.Secured {
		t.Fatalf("%+v", r)
	}
	if cr := auth.lastCall(); !cr.Secured || cr.Password != "hunter2 with spaces" {
		t.Fatalf("credentials %+v", cr)
	}
}

func plainLogin(t *testing.T) (*client, chan loginResult, *fakeAuth, *testLog) {
	log := newTestLog()
	auth := newFakeAuth()
	c, res := loginPipe(t, context.Background(), LoginConfig{Log: log.l,
		AllowPlaintext: func(net.Conn) bool { return true }}, auth, nil)
	c.line()
	return c, res, auth, log
}

func TestAuthPlainInitialResponse(t *testing.T) {
	c, res, auth, _ := plainLogin(t)
	c.send("AUTH PLAIN " + plainIR("", "alice", "secret") + "\r\n")
	r := wait(t, res)
	if r.err != nil || r.h.User != "alice" || r.h.Method != "PLAIN" {
		t.Fatalf("%+v", r)
	}
	if cr := auth.lastCall(); cr.User != "alice" || cr.Mechanism != "PLAIN" {
		t.Fatalf("%+v", cr)
	}
}

func TestAuthPlainContinuation(t *testing.T) {
	c, res, _, _ := plainLogin(t)
	c.expect("AUTH plain", "+ ")
	c.send(plainIR("alice", "alice", "secret") + "\r\n")
	if r := wait(t, res); r.err != nil || r.h.User != "alice" {
		t.Fatalf("%+v", r)
	}
}

func TestAuthLogin(t *testing.T) {
	c, res, _, _ := plainLogin(t)
	c.expect("AUTH LOGIN", "+ "+b64("Username:"))
	c.expect(b64("alice"), "+ "+b64("Password:"))
	c.send(b64("secret") + "\r\n")
	if r := wait(t, res); r.err != nil || r.h.User != "alice" || r.h.Method != "LOGIN" {
		t.Fatalf("%+v", r)
	}
}

// HOSTILE 32 and 14: malformed SASL is a failed attempt; a cancel is not.
func TestAuthMalformedAndCancelled(t *testing.T) {
	c, res, auth, log := plainLogin(t)
	c.expect("AUTH", "+OK")
	if m := c.multi(); !slices.Equal(m, sasl.Mechanisms()) {
		t.Fatalf("AUTH lists %q", m)
	}
	c.expect("AUTH CRAM-MD5", "-ERR Unsupported authentication mechanism.")
	c.expect("AUTH PLAIN", "+ ")
	c.expect("*", "-ERR Authentication aborted by client.")
	c.expect("AUTH PLAIN =", msgAuthFailed) // empty message: no NULs
	c.expect("AUTH PLAIN", "+ ")
	c.expect("not base64!", msgAuthFailed)
	// Proxy authorisation is refused, and that ends it: three failures.
	c.send("AUTH PLAIN " + plainIR("admin", "alice", "secret") + "\r\n")
	if l := c.line(); l != msgAuthFailed {
		t.Fatalf("authzid: %q", l)
	}
	c.closed()
	if r := wait(t, res); !errors.Is(r.err, ErrAuthFailures) {
		t.Fatalf("%+v", r)
	}
	if len(auth.calls) != 0 {
		t.Fatalf("malformed input reached the authenticator: %+v", auth.calls)
	}
	if !log.has("Disconnected (auth failed, 3 attempts in 0 secs): user=<>, method=PLAIN, rip=192.0.2.1") {
		t.Fatalf("log %q", log.lines())
	}
}

func TestAuthContinuationLineLimit(t *testing.T) {
	c, _, _, _ := plainLogin(t)
	c.expect("AUTH PLAIN", "+ ")
	c.expect(strings.Repeat("A", sasl.MaxLine+4), msgAuthFailed)
	// The longest allowed response still gets to the decoder.
	c.expect("AUTH PLAIN", "+ ")
	c.expect(strings.Repeat("A", sasl.MaxLine), msgAuthFailed)
	c.expect("CAPA", "+OK")
}

func TestAuthFailuresEndTheConnection(t *testing.T) {
	c, res, auth, log := plainLogin(t)
	c.expect("PASS secret", "-ERR No user name given.")
	c.expect("USER alice", "+OK")
	c.expect("PASS wrong", msgAuthFailed)
	// The USER was used up by the failed PASS.
	c.expect("PASS secret", "-ERR No user name given.")
	c.expect("USER alice", "+OK")
	c.expect("PASS wrong", msgAuthFailed)
	c.expect("USER bob", "+OK")
	c.expect("PASS wrong", msgAuthFailed)
	c.closed()
	if r := wait(t, res); !errors.Is(r.err, ErrAuthFailures) {
		t.Fatalf("%+v", r)
	}
	if len(auth.calls) != 3 {
		t.Fatalf("%d checks", len(auth.calls))
	}
	want := "pop3-login: Disconnected (auth failed, 3 attempts in 0 secs): user=<bob>, method=PLAIN, rip=192.0.2.1, lip=192.0.2.25, secured"
	if l := log.lines(); len(l) != 1 || l[0] != want {
		t.Fatalf("log %q\nwant %q", l, want)
	}
}

func TestFailureDelay(t *testing.T) {
	auth := newFakeAuth()
	c, _ := loginPipe(t, context.Background(), LoginConfig{Log: newTestLog().l, FailureDelay: 150 * time.Millisecond,
		AllowPlaintext: func(net.Conn) bool { return true }}, auth, nil)
	c.line()
	c.expect("USER alice", "+OK")
	start := time.Now()
	c.expect("PASS wrong", msgAuthFailed)
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Fatalf("failure answered after %v", d)
	}
}

func TestTemporaryFailure(t *testing.T) {
	c, res, auth, log := plainLogin(t)
	auth.temp = true
	c.expect("USER alice", "+OK")
	c.expect("PASS secret", msgAuthTemp)
	c.expect("QUIT", "+OK Logging out.")
	wait(t, res)
	// Not the client's doing: not an "auth failed" line for fail2ban.
	if log.has("auth failed") {
		t.Fatalf("log %q", log.lines())
	}
}

func TestSTLS(t *testing.T) {
	tlsCfg, _, pool := tlsFiles(t)
	log := newTestLog()
	auth := newFakeAuth()
	c, res := loginPipe(t, context.Background(), LoginConfig{TLS: tlsCfg, Log: log.l}, auth, nil)
	c.line()
	c.expect("USER alice", msgPlaintextDisallowed)
	c.expect("STLS", "+OK Begin TLS negotiation now.")
	tc := tls.Client(c.c, clientTLS(pool))
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c = newClient(t, tc)
	c.expect("CAPA", "+OK")
	caps := c.multi()
	if slices.Contains(caps, "STLS") || !slices.Contains(caps, "USER") || !slices.Contains(caps, "SASL PLAIN LOGIN") {
		t.Fatalf("CAPA after STLS: %q", caps)
	}
	// HOSTILE 11: STLS twice.
	c.expect("STLS", "-ERR TLS is already active.")
	c.expect("USER alice", "+OK")
	c.send("PASS secret\r\n")
	r := wait(t, res)
	if r.err != nil || !r.h.TLS || !r.h.Secured || r.h.User != "alice" {
		t.Fatalf("%+v", r)
	}
	if _, ok := r.h.Conn.(*tls.Conn); !ok {
		t.Fatalf("handoff connection is %T", r.h.Conn)
	}
	if cr := auth.lastCall(); !cr.TLS || !cr.Secured {
		t.Fatalf("%+v", cr)
	}
	if !log.has("Login: user=<alice>, method=PLAIN, rip=192.0.2.1, lip=192.0.2.25, TLS") {
		t.Fatalf("log %q", log.lines())
	}
}

// HOSTILE 8: "STLS\r\nUSER x\r\n" in one segment. The USER arrived in
// plaintext and must not run inside TLS.
func TestSTLSDropsPipelinedPlaintext(t *testing.T) {
	tlsCfg, _, pool := tlsFiles(t)
	log := newTestLog()
	auth := newFakeAuth()
	c, res := loginPipe(t, context.Background(), LoginConfig{TLS: tlsCfg, Log: log.l}, auth, nil)
	c.line()
	// One write on a pipe reaches the server in one read: the USER is in
	// its buffer when it answers STLS.
	c.send("STLS\r\nUSER alice\r\n")
	if l := c.line(); l != "+OK Begin TLS negotiation now." {
		t.Fatalf("STLS: %q", l)
	}
	tc := tls.Client(c.c, clientTLS(pool))
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c = newClient(t, tc)
	// Had USER run, this PASS would complete a login.
	c.expect("PASS secret", "-ERR No user name given.")
	if len(auth.calls) != 0 {
		t.Fatalf("authenticator asked: %+v", auth.calls)
	}
	if !log.has("STLS: dropped 12 octets of plaintext sent before the TLS handshake, rip=192.0.2.1") {
		t.Fatalf("log %q", log.lines())
	}
	c.expect("QUIT", "+OK Logging out.")
	c.closed()
	wait(t, res)
}

func TestSTLSNotConfiguredAndImplicitTLS(t *testing.T) {
	c, _, _, _ := plainLogin(t)
	c.expect("STLS", "-ERR TLS support isn't enabled.")
	c.expect("CAPA", "+OK")
	if caps := c.multi(); slices.Contains(caps, "STLS") {
		t.Fatalf("CAPA offers STLS without TLS: %q", caps)
	}

	// A *tls.Conn is implicit TLS (port 995).
	tlsCfg, _, pool := tlsFiles(t)
	auth := newFakeAuth()
	log := newTestLog()
	c2, res := loginPipe(t, context.Background(), LoginConfig{TLS: tlsCfg, Log: log.l}, auth,
		func(nc net.Conn) net.Conn { return tls.Server(nc, tlsCfg) })
	tc := tls.Client(c2.c, clientTLS(pool))
	c2 = newClient(t, tc)
	c2.line()
	c2.expect("CAPA", "+OK")
	if caps := c2.multi(); slices.Contains(caps, "STLS") || !slices.Contains(caps, "USER") {
		t.Fatalf("CAPA on implicit TLS: %q", caps)
	}
	c2.expect("STLS", "-ERR TLS is already active.")
	c2.send("AUTH PLAIN " + plainIR("", "alice", "secret") + "\r\n")
	if r := wait(t, res); r.err != nil || !r.h.TLS {
		t.Fatalf("%+v", r)
	}
}

func TestUnknownAndBadCommands(t *testing.T) {
	c, res, _, log := plainLogin(t)
	// Transaction commands, APOP and garbage are unknown here.
	for _, cmd := range []string{"STAT", "RETR 1", "APOP alice 0123456789abcdef0123456789abcdef", "NOOP", "XYZZY"} {
		c.expect(cmd, msgUnknown)
	}
	c.expect("USER", "-ERR Missing user name.")
	c.expect("PASS", "-ERR Missing password.")
	// HOSTILE 14: NUL and other control characters in a command.
	c.expect("USER al\x00ice", msgBadChars)
	c.expect("USER al\rice", msgBadChars)
	// The tenth ends the connection; good commands in between do not
	// reset the count.
	c.expect("CAPA", "+OK")
	c.multi()
	c.expect("QQ", msgTooManyBad)
	c.closed()
	if r := wait(t, res); !errors.Is(r.err, ErrBadCommands) {
		t.Fatalf("%+v", r)
	}
	if !log.has("Disconnected: Too many bad commands (no auth attempts in 0 secs)") {
		t.Fatalf("log %q", log.lines())
	}
}

// HOSTILE 47 and RFC 2449 §4: 255 octets with CRLF are a command, 256 are
// not; a line without end is not read forever.
func TestCommandLineLimit(t *testing.T) {
	c, _, _, _ := plainLogin(t)
	name := strings.Repeat("a", MaxCommandLine-len("USER \r\n"))
	c.expect("USER "+name, "+OK")
	c.expect("USER "+name+"b", msgTooLong)
	c.expect("USER "+strings.Repeat("x", 300), msgTooLong)
	c.expect("CAPA", "+OK")
	c.multi()

	c2, res, _, _ := plainLogin(t)
	c2.sendAsync(strings.Repeat("x", 2*maxDiscard))
	if l := c2.line(); l != msgTooLong {
		t.Fatalf("flood: %q", l)
	}
	c2.closed()
	if r := wait(t, res); !errors.Is(r.err, errLineFlood) {
		t.Fatalf("%+v", r)
	}
}

// HOSTILE 47: a command split over many segments.
func TestCommandSplitAcrossSegments(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	res := make(chan loginResult, 1)
	go func() {
		sc, err := ln.Accept()
		if err != nil {
			res <- loginResult{nil, err}
			return
		}
		h, err := ServeLogin(context.Background(), sc, LoginConfig{Log: newTestLog().l}, newFakeAuth())
		res <- loginResult{h, err}
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c := newClient(t, nc)
	c.line()
	// Go sets TCP_NODELAY: each write is its own segment.
	for _, b := range []byte("USER alice\r\nPA") {
		c.send(string(b))
	}
	if l := c.line(); l != "+OK" {
		t.Fatalf("USER: %q", l)
	}
	for _, b := range []byte("SS secret\r\n") {
		c.send(string(b))
	}
	if r := wait(t, res); r.err != nil || r.h.User != "alice" {
		t.Fatalf("%+v", r)
	}
}

func TestPreAuthTimeout(t *testing.T) {
	log := newTestLog()
	c, res := loginPipe(t, context.Background(), LoginConfig{Log: log.l, Timeout: 100 * time.Millisecond,
		AllowPlaintext: func(net.Conn) bool { return true }}, newFakeAuth(), nil)
	c.line()
	c.expect("USER alice", "+OK")
	c.expect("PASS wrong", msgAuthFailed)
	// Silence: the server speaks last.
	if l := c.line(); l != msgInactivity {
		t.Fatalf("%q", l)
	}
	c.closed()
	if r := wait(t, res); !errors.Is(r.err, os.ErrDeadlineExceeded) {
		t.Fatalf("%+v", r)
	}
	if !log.has("Disconnected: Inactivity (auth failed, 1 attempts in 0 secs): user=<alice>, method=PLAIN, rip=192.0.2.1") {
		t.Fatalf("log %q", log.lines())
	}
}

func TestPreAuthCommandLimit(t *testing.T) {
	c, res, _, _ := plainLogin(t)
	for i := 0; i < 50; i++ {
		c.expect("CAPA", "+OK")
		c.multi()
	}
	c.expect("CAPA", "-ERR Too many commands.")
	c.closed()
	if r := wait(t, res); !errors.Is(r.err, ErrCommandLimit) {
		t.Fatalf("%+v", r)
	}
}

func TestLoginContextCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	log := newTestLog()
	c, res := loginPipe(t, ctx, LoginConfig{Log: log.l}, newFakeAuth(), nil)
	c.line()
	c.expect("CAPA", "+OK")
	c.multi()
	cancel()
	if l := c.line(); l != msgShutdown {
		t.Fatalf("%q", l)
	}
	c.closed()
	if r := wait(t, res); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("%+v", r)
	}
	if !log.has("Disconnected: Server shutting down (no auth attempts") {
		t.Fatalf("log %q", log.lines())
	}
}

// Pipelined commands before login are answered in order; what follows a
// successful PASS travels in the Handoff.
func TestPipelinedLogin(t *testing.T) {
	c, res, _, _ := plainLogin(t)
	c.sendAsync("CAPA\r\nUSER alice\r\nPASS secret\r\nSTAT\r\nLIST\r\n")
	if l := c.line(); l != "+OK" {
		t.Fatal(l)
	}
	c.multi()
	if l := c.line(); l != "+OK" {
		t.Fatal(l)
	}
	r := wait(t, res)
	if r.err != nil || string(r.h.Buffered) != "STAT\r\nLIST\r\n" {
		t.Fatalf("%+v %q", r, r.h.Buffered)
	}
}

func TestHandoffRefuse(t *testing.T) {
	c, res, _, _ := plainLogin(t)
	c.sendAsync("USER alice\r\nPASS secret\r\n")
	c.line()
	r := wait(t, res)
	go r.h.Refuse()
	if l := c.line(); !strings.HasPrefix(l, "-ERR [SYS/TEMP] ") {
		t.Fatal(l)
	}
	c.closed()
}

// HOSTILE 14: a NUL never truncates a name or password on its way to the
// authenticator; such input is refused before it gets there.
func TestNULInCredentials(t *testing.T) {
	c, _, auth, _ := plainLogin(t)
	c.expect("USER alice", "+OK")
	c.expect("PASS secret\x00garbage", msgBadChars)
	c.expect("AUTH PLAIN "+plainIR("", "alice", "secret\x00garbage"), msgAuthFailed)
	c.expect("AUTH PLAIN", "+ ")
	c.expect("AGFsaWNl\x00AHNlY3JldA==", msgAuthFailed)
	if len(auth.calls) != 0 {
		t.Fatalf("authenticator asked: %+v", auth.calls)
	}
}
