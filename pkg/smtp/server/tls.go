package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"strings"
	"time"
)

// modernCipherSuites are the TLS 1.2 suites offered: forward secrecy and
// AEAD only (TLS 1.3 suites are not configurable and all qualify).
var modernCipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// tlsPolicy returns the configuration the engine serves TLS with: the
// caller's certificates, at least TLS 1.2 with the modern suites unless the
// caller chose suites itself, and no session tickets.
//
// Session tickets stay off because Microsoft's SMTP client (outlook.com,
// Office 365, and Outlook submitting mail) drops the connection after a
// STARTTLS handshake in which Go's server sends a TLS 1.3 session ticket,
// and never falls back to plaintext: golang/go#70232. mox, maddy and
// chasquid worked around it the same way. A mail session is one long
// connection, so resumption gains little anyway.
func tlsPolicy(c *tls.Config) *tls.Config {
	t := c.Clone()
	if t.MinVersion < tls.VersionTLS12 {
		t.MinVersion = tls.VersionTLS12
	}
	if t.CipherSuites == nil {
		t.CipherSuites = modernCipherSuites
	}
	t.SessionTicketsDisabled = true
	return t
}

// tlsVersionName names a protocol version as OpenSSL (and so Postfix's
// log) does.
func tlsVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "TLSv1"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS13:
		return "TLSv1.3"
	}
	return fmt.Sprintf("TLS-0x%04x", v)
}

// openSSLSuiteNames maps the TLS 1.2 suites offered to OpenSSL's names,
// which log tools know from Postfix; TLS 1.3 names are the same in both.
var openSSLSuiteNames = map[uint16]string{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256:       "ECDHE-ECDSA-AES128-GCM-SHA256",
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256:         "ECDHE-RSA-AES128-GCM-SHA256",
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384:       "ECDHE-ECDSA-AES256-GCM-SHA384",
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384:         "ECDHE-RSA-AES256-GCM-SHA384",
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256: "ECDHE-ECDSA-CHACHA20-POLY1305",
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256:   "ECDHE-RSA-CHACHA20-POLY1305",
}

// describeTLS returns Postfix's summary of a TLS session:
// "TLSv1.3 with cipher TLS_AES_128_GCM_SHA256 (128/128 bits)".
func describeTLS(st *tls.ConnectionState) string {
	name, ok := openSSLSuiteNames[st.CipherSuite]
	if !ok {
		name = tls.CipherSuiteName(st.CipherSuite)
	}
	// The symmetric key size; the digest's bits do not count.
	bits := 128
	if strings.Contains(name, "AES_256") || strings.Contains(name, "AES256") || strings.Contains(name, "CHACHA20") {
		bits = 256
	}
	return fmt.Sprintf("%s with cipher %s (%d/%d bits)", tlsVersionName(st.Version), name, bits, bits)
}

// handshake runs the server side of TLS on the accepted connection, for
// STARTTLS or at the start of an implicit TLS session. Whatever the client
// sent before the handshake and the session had buffered is dropped with
// the old reader: after STARTTLS nothing learnt in plaintext may be acted on
// (RFC 3207 §4.2; CVE-2011-0411, HOSTILE 7). It reports success; on failure
// the session must end.
func (s *session) handshake() bool {
	tc := tls.Server(s.raw, s.cfg.TLS)
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
	defer cancel()
	s.raw.SetDeadline(time.Now().Add(s.cfg.Timeout))
	if err := tc.HandshakeContext(ctx); err != nil {
		s.log.Info("SSL_accept error from %s: %v", s.client, err)
		s.quit = true
		return false
	}
	st := tc.ConnectionState()
	s.info.TLS = &st
	s.conn = tc
	s.rd.conn = tc
	// The handshake's deadline replaced both: the next command and reply
	// arm their own.
	s.rd.dl, s.writeDL = lazyDeadline{}, lazyDeadline{}
	s.br = bufio.NewReaderSize(s.rd, s.br.Size())
	s.bw = bufio.NewWriterSize(tc, 4096)
	s.log.Info("Anonymous TLS connection established from %s: %s", s.client, describeTLS(&st))
	return true
}

// cmdStartTLS answers STARTTLS (RFC 3207 §4) and upgrades the connection.
// A client that sent anything after STARTTLS without waiting for the 220
// never gets here: execute ends such a session as a pipelining violation.
func (s *session) cmdStartTLS(cmd Command) *Reply {
	switch {
	case s.cfg.TLS == nil:
		return reply(502, "5.5.1", "Error: command not implemented")
	case cmd.Arg != "":
		return reply(501, "5.5.4", "Syntax: STARTTLS")
	case s.info.TLS != nil:
		// RFC 3207 §4.2: no STARTTLS within TLS.
		return reply(503, "5.5.1", "Error: TLS already active")
	case s.info.AuthUser != "":
		// Only possible in plaintext on loopback; the login would have to
		// be forgotten (RFC 3207 §4.2), which no client expects.
		return reply(503, "5.5.1", "Error: STARTTLS not allowed after AUTH")
	case s.env != nil:
		return reply(503, "5.5.1", "Error: MAIL transaction in progress")
	}
	s.bw.WriteString(reply(220, "2.0.0", "Ready to start TLS").wire())
	if err := s.flush(); err != nil {
		return nil
	}
	if !s.handshake() {
		return nil
	}
	// RFC 3207 §4.2: the server MUST discard any knowledge obtained from the
	// client, such as the argument to EHLO. The client says EHLO again.
	s.reset()
	s.greeted = false
	s.info.Helo = ""
	s.info.ESMTP = false
	return sentOK
}

// sentOK is returned by a command handler that has already answered, with
// success.
var sentOK = &Reply{Code: 220}
