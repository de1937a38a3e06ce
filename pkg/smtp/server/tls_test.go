package server

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	certOnce sync.Once
	certPair tls.Certificate
	certErr  error
)

// testTLS returns a server configuration with a self-signed certificate,
// made once for the package.
func testTLS(t *testing.T) *tls.Config {
	t.Helper()
	certOnce.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			certErr = err
			return
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1),
			Subject:      pkix.Name{CommonName: "mx.example.test"},
			DNSNames:     []string{"mx.example.test"},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			certErr = err
			return
		}
		certPair = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	})
	if certErr != nil {
		t.Fatal(certErr)
	}
	return &tls.Config{Certificates: []tls.Certificate{certPair}}
}

// clientTLS is what a client that does not check certificates uses, as
// most MTAs do for STARTTLS.
func clientTLS() *tls.Config {
	return &tls.Config{InsecureSkipVerify: true, ServerName: "mx.example.test"}
}

// startTLS sends STARTTLS and makes the client speak TLS.
func (c *client) startTLS(cfg *tls.Config) *tls.Conn {
	c.t.Helper()
	c.cmd("STARTTLS", "220 2.0.0 Ready to start TLS")
	if c.r.Buffered() > 0 {
		c.t.Fatalf("server sent more than the 220 before the handshake")
	}
	tc := tls.Client(c.conn, cfg)
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("TLS handshake: %v", err)
	}
	c.conn, c.r = tc, bufio.NewReader(tc)
	return tc
}

// dialTLS connects to an implicit TLS listener.
func (ts *testServer) dialTLS(cfg *tls.Config) *client {
	ts.t.Helper()
	d := &net.Dialer{Timeout: 10 * time.Second}
	tc, err := tls.DialWithDialer(d, "tcp", ts.addr, cfg)
	if err != nil {
		ts.t.Fatal(err)
	}
	ts.t.Cleanup(func() { tc.Close() })
	return &client{t: ts.t, conn: tc, r: bufio.NewReader(tc)}
}

func TestSTARTTLS(t *testing.T) {
	cfg := testConfig()
	cfg.TLS = testTLS(t)
	cfg.Auth = newFakeAuth()
	be := newBackend()
	ts := startServer(t, cfg, be)
	c := ts.greet()
	ehlo := c.cmd("EHLO client.example", "250-")
	want := "250-mx.example.test\n250-PIPELINING\n250-SIZE 10240000\n250-STARTTLS\n250-ENHANCEDSTATUSCODES\n250-8BITMIME\n250-DSN\n250-SMTPUTF8\n250 CHUNKING"
	if ehlo != want {
		// No AUTH before TLS: the client is on loopback, but plaintext
		// AUTH on loopback is off here.
		t.Fatalf("EHLO before TLS\n%s\nwant\n%s", ehlo, want)
	}
	c.cmd("STARTTLS now", "501 5.5.4 Syntax: STARTTLS")
	c.cmd("MAIL FROM:<a@example.org>", "250")
	c.cmd("STARTTLS", "503 5.5.1 Error: MAIL transaction in progress")
	c.cmd("RSET", "250")

	cache := tls.NewLRUClientSessionCache(4)
	ccfg := clientTLS()
	ccfg.ClientSessionCache = cache
	tc := c.startTLS(ccfg)
	st := tc.ConnectionState()
	if st.Version != tls.VersionTLS13 {
		t.Errorf("TLS version %x", st.Version)
	}
	// RFC 3207 §4.2: the EHLO before TLS is forgotten.
	c.cmd("MAIL FROM:<a@example.org>", "503 5.5.1 Error: send HELO/EHLO first")
	ehlo = c.cmd("EHLO client.example", "250-")
	if strings.Contains(ehlo, "STARTTLS") || !strings.Contains(ehlo, "\n250-AUTH PLAIN LOGIN\n") {
		t.Errorf("EHLO inside TLS\n%s", ehlo)
	}
	// RFC 3207 §4.2 / HOSTILE 11: STARTTLS twice.
	c.cmd("STARTTLS", "503 5.5.1 Error: TLS already active")
	r := c.transaction("a@example.org", "b@example.test", "Subject: x\r\n\r\nsecret\r\n")
	if !strings.HasPrefix(r, "250 2.0.0 Ok: queued as") {
		t.Fatalf("DATA reply %q", r)
	}
	raw := be.committed()[0].raw()
	if !strings.Contains(raw, " with ESMTPS id ") {
		t.Errorf("Received: without ESMTPS:\n%s", raw)
	}
	// Without authentication nothing is added to the message.
	if strings.Contains(raw, "Message-ID:") || strings.Contains(raw, "Date:") {
		t.Errorf("headers added to MX mail:\n%s", raw)
	}
	c.cmd("QUIT", "221")
	c.expectClosed()
	// golang/go#70232: no session ticket was issued. A TLS 1.3 ticket
	// arrives after the handshake and is stored once the client has read
	// past it, which it has by now.
	if s, ok := cache.Get("mx.example.test"); ok || s != nil {
		t.Errorf("the server issued a session ticket")
	}
	ts.waitLog("disconnect from unknown[127.0.0.1] ehlo=2 starttls=1/4 mail=2/3 rcpt=1 data=1 rset=1 quit=1 commands=9/13")
	logRE := regexp.MustCompile(`smtpd\[\d+\]: Anonymous TLS connection established from unknown\[127\.0\.0\.1\]: TLSv1\.3 with cipher TLS_(AES_128_GCM_SHA256 \(128/128|AES_256_GCM_SHA384 \(256/256|CHACHA20_POLY1305_SHA256 \(256/256) bits\)\n`)
	if !logRE.MatchString(ts.logs.String()) {
		t.Errorf("no TLS log line in\n%s", ts.logs.String())
	}
}

func TestTLSPolicy(t *testing.T) {
	cfg := testConfig()
	in := testTLS(t)
	in.MinVersion = tls.VersionTLS10
	cfg.TLS = in
	ts := startServer(t, cfg, newBackend())

	// Nothing older than TLS 1.2.
	c := ts.session()
	c.cmd("STARTTLS", "220 2.0.0")
	old := clientTLS()
	old.MinVersion, old.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	if err := tls.Client(c.conn, old).Handshake(); err == nil {
		t.Fatal("TLS 1.1 handshake succeeded")
	}
	ts.waitLog("SSL_accept error from unknown[127.0.0.1]: tls: client offered only unsupported versions")

	// TLS 1.2 gets forward secrecy and AEAD, logged in OpenSSL's names.
	c = ts.session()
	v12 := clientTLS()
	v12.MaxVersion = tls.VersionTLS12
	v12.CipherSuites = []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}
	tc := c.startTLS(v12)
	if st := tc.ConnectionState(); st.Version != tls.VersionTLS12 || st.CipherSuite != tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 {
		t.Errorf("negotiated %x %s", st.Version, tls.CipherSuiteName(st.CipherSuite))
	}
	ts.waitLog("Anonymous TLS connection established from unknown[127.0.0.1]: TLSv1.2 with cipher ECDHE-ECDSA-AES256-GCM-SHA384 (256/256 bits)")
	// The caller's configuration is left as it was.
	if in.MinVersion != tls.VersionTLS10 || in.SessionTicketsDisabled {
		t.Errorf("the engine changed the caller's tls.Config")
	}
}

func TestSTARTTLSNotConfigured(t *testing.T) {
	ts := startServer(t, testConfig(), newBackend())
	c := ts.session()
	c.cmd("STARTTLS", "502 5.5.1 Error: command not implemented")
}

// HOSTILE 7, CVE-2011-0411: commands sent with STARTTLS, before the
// handshake, never run, inside TLS or outside.
func TestSTARTTLSInjection(t *testing.T) {
	for _, tc := range []struct{ name, burst string }{
		{"RSET", "STARTTLS\r\nRSET\r\n"},
		{"MAIL", "STARTTLS\r\nMAIL FROM:<evil@example.org>\r\n"},
		{"AUTH", "STARTTLS\r\nAUTH PLAIN AGFsaWNlAHB3LWFsaWNl\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.TLS = testTLS(t)
			fa := newFakeAuth()
			cfg.Auth = fa
			be := newBackend()
			ts := startServer(t, cfg, be)
			c := ts.session()
			c.send(tc.burst)
			c.expect("554 5.5.0 Error: SMTP protocol synchronization")
			c.expectClosed()
			assertNothingInjected(t, be, fa)
		})
	}

	// The same bytes in a second segment, sent before the 220 arrives:
	// whether the server sees them before it answers or only during the
	// handshake, they are never read as a command.
	for i := 0; i < 20; i++ {
		cfg := testConfig()
		cfg.TLS = testTLS(t)
		fa := newFakeAuth()
		cfg.Auth = fa
		be := newBackend()
		ts := startServer(t, cfg, be)
		c := ts.session()
		c.send("STARTTLS\r\n")
		c.send("MAIL FROM:<evil@example.org>\r\n")
		r, err := c.readReply()
		if err == nil && strings.HasPrefix(r, "220 ") {
			// The handshake is next, and the plaintext is not TLS.
			err = tls.Client(c.conn, clientTLS()).Handshake()
			if err == nil {
				t.Fatal("handshake succeeded over injected plaintext")
			}
		} else if err == nil && !strings.HasPrefix(r, "554 5.5.0") {
			t.Fatalf("reply %q", r)
		}
		c.conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := ts.srv.Shutdown(ctx); err != nil {
			t.Fatalf("session did not end: %v", err)
		}
		cancel()
		assertNothingInjected(t, be, fa)
	}
}

func assertNothingInjected(t *testing.T, be *fakeBackend, fa *fakeAuth) {
	t.Helper()
	senders, _, begun := be.snapshot()
	if len(senders) != 0 || begun != 0 {
		t.Fatalf("injected command ran: senders %q, begun %d", senders, begun)
	}
	if calls := fa.snapshot(); len(calls) != 0 {
		t.Fatalf("injected AUTH ran: %q", calls)
	}
}

func TestImplicitTLS(t *testing.T) {
	cfg := testConfig()
	cfg.TLS = testTLS(t)
	fa := newFakeAuth()
	cfg.Auth = fa
	be := newBackend()
	ts := startServerMode(t, cfg, be, ModeSubmissions)

	c := ts.dialTLS(clientTLS())
	c.expect("220 mx.example.test ESMTP posthorn")
	ehlo := c.cmd("EHLO client.example", "250-")
	if strings.Contains(ehlo, "STARTTLS") || !strings.Contains(ehlo, "AUTH PLAIN LOGIN") {
		t.Errorf("EHLO on implicit TLS\n%s", ehlo)
	}
	c.cmd("STARTTLS", "503 5.5.1 Error: TLS already active")
	// RFC 6409 §4.3: submission needs AUTH.
	c.cmd("MAIL FROM:<alice@example.test>", "530 5.7.0 Authentication required")
	c.cmd("AUTH PLAIN "+plain("", "alice@example.test", "pw-alice"), "235 2.7.0 Authentication successful")
	r := c.transaction("alice@example.test", "bob@elsewhere.example", "Subject: hi\r\n\r\nbody\r\n")
	if !strings.HasPrefix(r, "250 2.0.0 Ok: queued as") {
		t.Fatalf("DATA reply %q", r)
	}
	raw := be.committed()[0].raw()
	if !strings.Contains(raw, " with ESMTPSA id ") || strings.Contains(raw, "Authenticated sender") {
		t.Errorf("Received:\n%s", raw)
	}
	c.cmd("QUIT", "221")
	ts.waitLog("NOQUEUE: reject: MAIL from unknown[127.0.0.1]: 530 5.7.0 Authentication required; proto=ESMTP helo=<client.example>")

	// A plaintext client on the implicit TLS port gets nothing.
	pc := ts.dial()
	pc.send("EHLO client.example\r\n")
	pc.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, _ := io.ReadAll(pc.r)
	if strings.Contains(string(b), "250") || strings.Contains(string(b), "220 ") {
		t.Errorf("plaintext client got %q", b)
	}
	ts.waitLog("SSL_accept error from unknown[127.0.0.1]: ")
}

func TestImplicitTLSWithoutCertificate(t *testing.T) {
	be := newBackend()
	ts := startServerMode(t, testConfig(), be, ModeSubmissions)
	c := ts.dial()
	c.expectClosed()
	ts.waitLog("warning: no TLS certificate: cannot serve unknown[127.0.0.1] on submissions")
}

func TestSubmissionOnSTARTTLSPort(t *testing.T) {
	cfg := testConfig()
	cfg.TLS = testTLS(t)
	cfg.Auth = newFakeAuth()
	be := newBackend()
	ts := startServerMode(t, cfg, be, ModeSubmission)
	c := ts.session()
	c.cmd("MAIL FROM:<alice@example.test>", "530 5.7.0 Authentication required")
	c.cmd("AUTH PLAIN "+plain("", "alice@example.test", "pw-alice"), "538 5.7.11 Encryption required for requested authentication mechanism")
	c.startTLS(clientTLS())
	c.cmd("EHLO client.example", "250-")
	c.cmd("MAIL FROM:<alice@example.test>", "530 5.7.0 Authentication required")
	c.cmd("AUTH PLAIN "+plain("", "alice@example.test", "pw-alice"), "235 2.7.0")
	c.cmd("MAIL FROM:<alice@example.test>", "250 2.1.0")
	c.cmd("RCPT TO:<bob@elsewhere.example>", "250 2.1.5")
}

func TestReceivedProto(t *testing.T) {
	st := &tls.ConnectionState{}
	for _, tc := range []struct {
		esmtp, utf8, tls, auth bool
		want                   string
	}{
		{false, false, false, false, "SMTP"},
		{true, false, false, false, "ESMTP"},
		{true, false, true, false, "ESMTPS"},
		{true, false, false, true, "ESMTPA"},
		{true, false, true, true, "ESMTPSA"},
		{true, true, false, false, "UTF8SMTP"},
		{true, true, true, false, "UTF8SMTPS"},
		{true, true, true, true, "UTF8SMTPSA"},
	} {
		c := &ConnInfo{ESMTP: tc.esmtp}
		if tc.tls {
			c.TLS = st
		}
		if tc.auth {
			c.AuthUser = "alice"
		}
		if got := receivedProto(&Envelope{Conn: c, SMTPUTF8: tc.utf8}); got != tc.want {
			t.Errorf("%+v: %s, want %s", tc, got, tc.want)
		}
	}
}

// HOSTILE 35: a handshake that never comes, or stalls half-way, ends after
// the timeout; the sessions it held count against the process limit
// meanwhile, so they cannot pile up.
func TestTLSHandshakeTimeout(t *testing.T) {
	cfg := testConfig()
	cfg.TLS = testTLS(t)
	cfg.Timeout = 300 * time.Millisecond
	cfg.ProcessLimit = 2
	ts := startServerMode(t, cfg, newBackend(), ModeSubmissions)

	silent := ts.dial()
	half := ts.dial()
	// A ClientHello's first bytes, then nothing.
	half.send("\x16\x03\x01\x00\xc8\x01\x00")
	waitFor(t, "two sessions", func() bool {
		ts.srv.mu.Lock()
		defer ts.srv.mu.Unlock()
		return len(ts.srv.sessions) == 2
	})
	third := ts.dial()
	third.expect("421 4.3.2 mx.example.test Service currently unavailable")
	start := time.Now()
	silent.expectClosed()
	half.expectClosed()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("stalled handshakes lasted %v", d)
	}
	ts.waitLog("SSL_accept error from unknown[127.0.0.1]: ")

	// The same after STARTTLS.
	cfg.ProcessLimit = 0
	ts = startServer(t, cfg, newBackend())
	c := ts.session()
	c.cmd("STARTTLS", "220 2.0.0")
	c.expectClosed()
}
