package server

import (
	"context"
	"encoding/base64"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// fakeAuth knows users by password. "temp@example.test" finds the service
// down, "limit@example.test" over its failure limit; canon maps a login to
// the name the service reports.
type fakeAuth struct {
	mu    sync.Mutex
	users map[string]string
	canon map[string]string
	calls []string // "MECH user pass secured"
}

func newFakeAuth() *fakeAuth {
	return &fakeAuth{
		users: map[string]string{"alice@example.test": "pw-alice", "bob": "pw-bob"},
		canon: map[string]string{},
	}
}

func (a *fakeAuth) Authenticate(ctx context.Context, c *ConnInfo, mech, user, pass string) AuthResult {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, fmt.Sprintf("%s %s %s %v", mech, user, pass, c.TLS != nil))
	switch user {
	case "temp@example.test":
		return AuthResult{Temp: true, Unavailable: true, Reason: "auth service unreachable"}
	case "limit@example.test":
		return AuthResult{Temp: true, Reason: "too many failures"}
	}
	if pw, ok := a.users[user]; ok && pw == pass {
		name := user
		if n, ok := a.canon[user]; ok {
			name = n
		}
		return AuthResult{OK: true, User: name}
	}
	return AuthResult{Reason: "password mismatch"}
}

func (a *fakeAuth) snapshot() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.calls...)
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// plain is the PLAIN initial response.
func plain(authz, user, pass string) string { return b64(authz + "\x00" + user + "\x00" + pass) }

// authServer runs an MX server with TLS and fakeAuth, and returns a session
// inside TLS after EHLO.
func authServer(t *testing.T, mod func(*Config)) (*testServer, *client, *fakeAuth, *fakeBackend) {
	t.Helper()
	cfg := testConfig()
	cfg.TLS = testTLS(t)
	fa := newFakeAuth()
	cfg.Auth = fa
	if mod != nil {
		mod(&cfg)
	}
	be := newBackend()
	ts := startServer(t, cfg, be)
	c := ts.session()
	c.startTLS(clientTLS())
	c.cmd("EHLO client.example", "250-")
	return ts, c, fa, be
}

// The failure line as fail2ban's postfix filter (mode auth, and the older
// postfix-sasl filter) matches it. Go's regexp has no lookahead, so the
// exclusions of the current filter are checked separately.
var (
	f2bAuth    = regexp.MustCompile(`warning: [^[]*\[(?P<host>[0-9a-fA-F.:]+)\](?::\d+)?: SASL ((?i)LOGIN|PLAIN|(?:CRAM|DIGEST)-MD5) authentication failed:(.*)$`)
	f2bSASLOld = regexp.MustCompile(`warning: [-._\w]+\[(?P<host>[0-9a-fA-F.:]+)\]: SASL ((?i)LOGIN|PLAIN|(?:CRAM|DIGEST)-MD5) authentication failed(: [ A-Za-z0-9+/]*={0,2})?\s*$`)
)

// fail2banMatches reports whether fail2ban would count the log line as an
// authentication failure of host.
func fail2banMatches(line, host string) bool {
	m := f2bAuth.FindStringSubmatch(line)
	if m == nil || m[1] != host {
		return false
	}
	if strings.HasPrefix(m[3], " Connection lost to authentication server") || strings.HasPrefix(m[3], " Invalid authentication mechanism") {
		return false
	}
	o := f2bSASLOld.FindStringSubmatch(line)
	return o != nil && o[1] == host
}

func logLines(ts *testServer, substr string) []string {
	var out []string
	for _, l := range strings.Split(ts.logs.String(), "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return out
}

func TestAuthPlainAndLogin(t *testing.T) {
	ts, c, fa, be := authServer(t, nil)
	// Wrong password: Postfix's reply and log line.
	c.cmd("AUTH PLAIN "+plain("", "alice@example.test", "wrong"), "535 5.7.8 Error: authentication failed: authentication failure")
	ts.waitLog("warning: unknown[127.0.0.1]: SASL PLAIN authentication failed: authentication failure\n")
	lines := logLines(ts, "SASL PLAIN authentication failed")
	if len(lines) != 1 || !fail2banMatches(lines[0], "127.0.0.1") {
		t.Errorf("fail2ban does not match %q", lines)
	}
	// PLAIN without initial response: an empty challenge.
	c.cmd("AUTH PLAIN", "334 ")
	c.cmd(plain("alice@example.test", "alice@example.test", "pw-alice"), "235 2.7.0 Authentication successful")
	// HOSTILE 11: AUTH twice, STARTTLS after it.
	c.cmd("AUTH PLAIN "+plain("", "bob", "pw-bob"), "503 5.5.1 Error: already authenticated")
	c.cmd("STARTTLS", "503 5.5.1 Error: TLS already active")
	r := c.transaction("alice@example.test", "carol@elsewhere.example", "Subject: x\r\n\r\nbody\r\n")
	id := regexp.MustCompile(`queued as ([0-9A-F]+)$`).FindStringSubmatch(r)
	if id == nil {
		t.Fatalf("DATA reply %q", r)
	}
	ts.waitLog(id[1] + ": client=unknown[127.0.0.1], sasl_method=PLAIN, sasl_username=alice@example.test\n")
	raw := be.committed()[0].raw()
	if !strings.Contains(raw, "with ESMTPSA id") || strings.Contains(raw, "Authenticated sender") {
		t.Errorf("Received:\n%s", raw)
	}
	if calls := fa.snapshot(); len(calls) != 2 || calls[1] != "PLAIN alice@example.test pw-alice true" {
		t.Errorf("authenticator calls %q", calls)
	}

	// LOGIN, with and without the name in the initial response.
	_, c, fa, _ = authServer(t, nil)
	c.cmd("AUTH LOGIN", "334 VXNlcm5hbWU6")
	c.cmd(b64("bob"), "334 UGFzc3dvcmQ6")
	c.cmd(b64("pw-bob"), "235 2.7.0 Authentication successful")
	_, c, _, _ = authServer(t, nil)
	c.cmd("auth login "+b64("bob"), "334 UGFzc3dvcmQ6")
	c.cmd(b64("nope"), "535 5.7.8 Error: authentication failed: authentication failure")
	c.cmd("AUTH LOGIN "+b64("bob"), "334 UGFzc3dvcmQ6")
	c.cmd(b64("pw-bob"), "235 2.7.0")
}

// HOSTILE 10: no AUTH in plaintext, except on loopback when allowed.
func TestAuthNeedsTLS(t *testing.T) {
	cfg := testConfig()
	cfg.TLS = testTLS(t)
	fa := newFakeAuth()
	cfg.Auth = fa
	ts := startServer(t, cfg, newBackend())
	c := ts.session()
	c.cmd("AUTH PLAIN "+plain("", "alice@example.test", "pw-alice"), "538 5.7.11 Encryption required for requested authentication mechanism")
	c.cmd("AUTH LOGIN", "538 5.7.11")
	if calls := fa.snapshot(); len(calls) != 0 {
		t.Fatalf("credentials checked in plaintext: %q", calls)
	}

	// Loopback with PlaintextAuthLoopback (the development instance).
	cfg.PlaintextAuthLoopback = true
	ts = startServer(t, cfg, newBackend())
	c = ts.session()
	ehlo := c.cmd("EHLO client.example", "250-")
	if !strings.Contains(ehlo, "250-STARTTLS\n250-AUTH PLAIN LOGIN\n") {
		t.Errorf("EHLO on loopback\n%s", ehlo)
	}
	c.cmd("AUTH PLAIN "+plain("", "alice@example.test", "pw-alice"), "235 2.7.0")
	// STARTTLS after AUTH would have to forget the login.
	c.cmd("STARTTLS", "503 5.5.1 Error: STARTTLS not allowed after AUTH")
	c.cmd("MAIL FROM:<alice@example.test>", "250")
	if calls := fa.snapshot(); len(calls) != 1 || calls[0] != "PLAIN alice@example.test pw-alice false" {
		t.Errorf("authenticator calls %q", calls)
	}

	// The same setting does nothing for a client elsewhere: 192.0.2.1.
	in := "EHLO x\r\nAUTH PLAIN " + plain("", "alice@example.test", "pw-alice") + "\r\nQUIT\r\n"
	mc := &memConn{in: []byte(in)}
	cfg.Log = ts.srv.config().Log
	New(cfg, newBackend()).ServeConn(mc)
	out := mc.out.String()
	if strings.Contains(out, "AUTH PLAIN LOGIN") || !strings.Contains(out, "\r\n538 5.7.11 Encryption required for requested authentication mechanism\r\n") {
		t.Errorf("remote plaintext client:\n%s", out)
	}
}

// HOSTILE 31, 32: malformed and hostile SASL.
func TestAuthMalformed(t *testing.T) {
	ts, c, fa, _ := authServer(t, func(cfg *Config) { cfg.HardErrorLimit = 100 })
	for _, tc := range []struct{ cmd, want, log string }{
		{"AUTH", "501 5.5.4 Syntax: AUTH mechanism", ""},
		{"AUTH PLAIN a b", "501 5.5.4 Syntax: AUTH mechanism", ""},
		{"AUTH CRAM-MD5", "504 5.5.4 Unrecognized authentication type", ""},
		{"AUTH PLAIN !!!!", "501 5.5.2 Error: malformed authentication response", "SASL PLAIN authentication failed: malformed response"},
		{"AUTH PLAIN AGFsaWNl*", "501 5.5.2 Error: malformed authentication response", ""},
		{"AUTH PLAIN AGFsaWNlAHB3ZA", "501 5.5.2 Error: malformed authentication response", ""}, // base64 without padding
		{"AUTH PLAIN =", "501 5.5.2 Error: malformed authentication response", ""},
		{"AUTH PLAIN " + plain("admin", "alice@example.test", "pw-alice"), "535 5.7.8 Error: authentication failed: authorization identity differs from authentication identity", "SASL PLAIN authentication failed: authorization identity differs"},
		{"AUTH PLAIN " + b64("\x00alice@example.test\x00pw\x00x"), "501 5.5.2 Error: malformed authentication response", ""},
		{"AUTH PLAIN " + b64("alice@example.test pw-alice"), "501 5.5.2 Error: malformed authentication response", ""},
		{"AUTH PLAIN " + plain("", "", "pw-alice"), "501 5.5.2 Error: malformed authentication response", ""},
		{"AUTH PLAIN " + plain("", "alice@example.test", ""), "501 5.5.2 Error: malformed authentication response", ""},
		{"AUTH PLAIN " + plain("", "alice@example.test", "pw\xff"), "501 5.5.2 Error: malformed authentication response", ""},
		{"AUTH PLAIN " + strings.Repeat("A", 100*1024), "500 5.5.2 Error: line too long", ""},
	} {
		c.cmd(tc.cmd, tc.want)
		if tc.log != "" {
			ts.waitLog("warning: unknown[127.0.0.1]: " + tc.log)
		}
	}
	// Cancelled exchanges (RFC 4954 §4).
	c.cmd("AUTH PLAIN", "334 ")
	c.cmd("*", "501 5.7.0 Authentication aborted")
	ts.waitLog("warning: unknown[127.0.0.1]: SASL PLAIN authentication aborted")
	c.cmd("AUTH LOGIN", "334 VXNlcm5hbWU6")
	c.cmd(b64("bob"), "334 UGFzc3dvcmQ6")
	c.cmd("*", "501 5.7.0 Authentication aborted")
	c.cmd("AUTH LOGIN", "334 VXNlcm5hbWU6")
	c.cmd(b64("b\x00b"), "501 5.5.2 Error: malformed authentication response")
	c.cmd("AUTH LOGIN", "334 VXNlcm5hbWU6")
	c.cmd(strings.Repeat("A", 3000), "500 5.5.2 Error: line too long")
	// A NUL in the command line is refused before AUTH sees it.
	c.cmd("AUTH PLAIN \x00", "500 5.5.2 Error: bad syntax")
	if calls := fa.snapshot(); len(calls) != 0 {
		t.Fatalf("malformed exchanges reached the authenticator: %q", calls)
	}
	// The session is still usable.
	c.cmd("AUTH PLAIN "+plain("alice@example.test", "alice@example.test", "pw-alice"), "235 2.7.0")
	c.cmd("QUIT", "221")
	c.expectClosed()
	ts.waitLog("disconnect from unknown[127.0.0.1] ehlo=2 starttls=1 auth=1/19 quit=1 unknown=0/1 commands=5/24")
}

func TestAuthState(t *testing.T) {
	cfg := testConfig()
	cfg.TLS = testTLS(t)
	cfg.Auth = newFakeAuth()
	ts := startServer(t, cfg, newBackend())
	c := ts.greet()
	c.startTLS(clientTLS())
	c.cmd("AUTH PLAIN "+plain("", "bob", "pw-bob"), "503 5.5.1 Error: send HELO/EHLO first")
	c.cmd("EHLO client.example", "250-")
	c.cmd("MAIL FROM:<a@example.org>", "250")
	c.cmd("AUTH PLAIN "+plain("", "bob", "pw-bob"), "503 5.5.1 Error: MAIL transaction in progress")
	c.cmd("RSET", "250")
	// The service is down: 454, logged so that fail2ban does not count it.
	c.cmd("AUTH PLAIN "+plain("", "temp@example.test", "x"), "454 4.7.0 Temporary authentication failure")
	ts.waitLog("warning: unknown[127.0.0.1]: SASL PLAIN authentication failed: Connection lost to authentication server (auth service unreachable)")
	if l := logLines(ts, "Connection lost"); len(l) != 1 || fail2banMatches(l[0], "127.0.0.1") {
		t.Errorf("temporary failure line %q counts for fail2ban", l)
	}
	// Refused for too many failures: 454, but counted.
	c.cmd("AUTH PLAIN "+plain("", "limit@example.test", "x"), "454 4.7.0 Temporary authentication failure")
	if l := logLines(ts, "SASL PLAIN authentication failed: authentication failure"); len(l) != 1 || !fail2banMatches(l[0], "127.0.0.1") {
		t.Errorf("limit failure lines %q", l)
	}
	c.cmd("AUTH PLAIN "+plain("", "bob", "pw-bob"), "235")

	// Without an Authenticator AUTH does not exist.
	cfg.Auth = nil
	ts = startServer(t, cfg, newBackend())
	c = ts.session()
	c.startTLS(clientTLS())
	if ehlo := c.cmd("EHLO client.example", "250-"); strings.Contains(ehlo, "AUTH") {
		t.Errorf("AUTH offered without an Authenticator:\n%s", ehlo)
	}
	c.cmd("AUTH PLAIN "+plain("", "bob", "pw-bob"), "503 5.5.1 Error: authentication not enabled")
	c.cmd("MAIL FROM:<a@example.org> AUTH=<>", "555 5.5.4 Unsupported option: AUTH")
}

// HOSTILE 33: failures count toward the hard error limit; below it, the
// right password still works after many wrong ones.
func TestAuthFailuresAndErrorLimit(t *testing.T) {
	_, c, _, _ := authServer(t, nil)
	for i := 0; i < 10; i++ {
		c.cmd("AUTH PLAIN "+plain("", "alice@example.test", fmt.Sprintf("guess%d", i)), "535 5.7.8")
	}
	c.cmd("AUTH PLAIN "+plain("", "alice@example.test", "pw-alice"), "235 2.7.0")

	ts, c, _, _ := authServer(t, func(cfg *Config) { cfg.HardErrorLimit = 5 })
	for i := 0; i < 4; i++ {
		c.cmd("AUTH PLAIN "+plain("", "alice@example.test", "guess"), "535 5.7.8")
	}
	c.send("AUTH PLAIN " + plain("", "alice@example.test", "guess") + "\r\n")
	c.expect("535 5.7.8")
	c.expect("421 4.7.0 mx.example.test Error: too many errors")
	c.expectClosed()
	ts.waitLog("too many errors after AUTH from unknown[127.0.0.1]")
	if n := len(logLines(ts, "SASL PLAIN authentication failed: authentication failure")); n != 5 {
		t.Errorf("%d failure lines, want 5", n)
	}
}

// MAIL FROM's AUTH= parameter (RFC 4954 §5) is checked as xtext and
// ignored (HOSTILE 28).
func TestMailAuthParameter(t *testing.T) {
	_, c, _, be := authServer(t, nil)
	c.cmd("AUTH PLAIN "+plain("", "bob", "pw-bob"), "235")
	c.cmd("MAIL FROM:<bob@example.test> AUTH=<>", "250 2.1.0")
	c.cmd("RSET", "250")
	c.cmd("MAIL FROM:<bob@example.test> AUTH=bob+40example.test", "250 2.1.0")
	c.cmd("RSET", "250")
	c.cmd("MAIL FROM:<bob@example.test> AUTH=a+0Ab", "501 5.5.4 Bad AUTH parameter syntax")
	c.cmd("MAIL FROM:<bob@example.test> AUTH=a+4", "501 5.5.4 Bad AUTH parameter syntax")
	c.cmd("MAIL FROM:<bob@example.test> AUTH", "501 5.5.4 Bad AUTH parameter syntax")
	c.cmd("MAIL FROM:<bob@example.test> AUTH=<> AUTH=<>", "501 5.5.4 Error: duplicate AUTH parameter")
	if senders, _, _ := be.snapshot(); len(senders) != 2 {
		t.Errorf("senders %q", senders)
	}
}

// HOSTILE 29: the login in Received: cannot break out of its comment.
func TestReceivedAuthUser(t *testing.T) {
	_, c, fa, be := authServer(t, func(cfg *Config) { cfg.ReceivedAuthUser = true })
	fa.canon["bob"] = "bob) by evil (\\x\r\n\tInjected: 1"
	c.cmd("AUTH PLAIN "+plain("", "bob", "pw-bob"), "235")
	c.transaction("bob@example.test", "x@example.test", "Subject: x\r\n\r\nbody\r\n")
	raw := be.committed()[0].raw()
	want := "Received: from client.example (unknown [127.0.0.1])\n\t(Authenticated sender: bob??by?evil???x???Injected:?1)\n\tby mx.example.test (posthorn) with ESMTPSA id "
	if !strings.HasPrefix(raw, want) {
		t.Errorf("Received:\n%s\nwant prefix\n%s", raw, want)
	}
	if strings.Contains(raw, "\nInjected") {
		t.Errorf("header injected")
	}
}
