package server

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/posthorn/posthorn/pkg/imap"
	"github.com/posthorn/posthorn/pkg/imap/wire"
)

// cmdStartTLS upgrades the connection (RFC 3501 §6.2.1, RFC 9051 §6.2.1).
func (s *session) cmdStartTLS(c *wire.Command) error {
	if s.tls {
		return s.badReply(c.Tag, "TLS is already active.")
	}
	if s.cfg.TLSConfig == nil && s.cfg.StartTLS == nil {
		return s.badReply(c.Tag, "TLS support isn't enabled.")
	}
	s.reply(c.Tag, "OK", "Begin TLS negotiation now.")
	if err := s.out.Release(); err != nil {
		return err
	}
	// Whatever the client sent after STARTTLS arrived in plaintext and
	// must not be executed as if it came through TLS (RFC 3207 §4.2,
	// CVE-2011-0411, CVE-2021-33515; HOSTILE 8).
	if n := s.in.Buffered(); n > 0 {
		s.log("STARTTLS: dropped %d octets of plaintext sent after STARTTLS rip=%s", n, s.remote())
	}
	s.in.Reset(s.conn)
	s.conn.SetDeadline(time.Now().Add(s.cfg.CommandTimeout))
	var tc *tls.Conn
	var err error
	if s.cfg.StartTLS != nil {
		tc, err = s.cfg.StartTLS(s.conn)
	} else {
		tc = tls.Server(s.conn, s.cfg.TLSConfig)
		err = tc.Handshake()
	}
	if err != nil {
		s.log("STARTTLS handshake failed rip=%s: %v", s.remote(), err)
		s.state = stateLogout
		return err
	}
	tc.SetDeadline(time.Time{})
	s.mu.Lock()
	s.conn = tc
	s.mu.Unlock()
	s.cw.c = tc
	s.in.Reset(tc)
	s.out.Reset(s.cw)
	s.tls, s.secure = true, true
	return nil
}

// connInfo describes the connection to the Backend.
func (s *session) connInfo() *imap.ConnInfo {
	if s.info == nil {
		s.info = &imap.ConnInfo{RemoteAddr: s.conn.RemoteAddr(), LocalAddr: s.conn.LocalAddr(), Secured: s.secure}
	}
	if tc, ok := s.conn.(*tls.Conn); ok {
		st := tc.ConnectionState()
		s.info.TLS = &st
	}
	s.info.Secured = s.secure
	return s.info
}

// cmdLogin is LOGIN (RFC 3501 §6.2.3).
func (s *session) cmdLogin(c *wire.Command) error {
	if !s.cleartextOK() {
		s.reply(c.Tag, "NO", "[PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.")
		return nil
	}
	return s.login(c.Tag, "", c.User, c.Password, "LOGIN")
}

// cmdAuthenticate is AUTHENTICATE with PLAIN (RFC 4616), with or without
// an initial response (SASL-IR, RFC 4959).
func (s *session) cmdAuthenticate(c *wire.Command) error {
	if c.Mechanism != "PLAIN" {
		s.reply(c.Tag, "NO", "Unsupported authentication mechanism.")
		return nil
	}
	if !s.cleartextOK() {
		s.reply(c.Tag, "NO", "[PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.")
		return nil
	}
	var resp string
	if c.InitialResponse != nil {
		resp = *c.InitialResponse
	} else {
		s.out.Raw("+ \r\n")
		if err := s.out.Flush(); err != nil {
			return err
		}
		line, err := s.dec.ReadLine()
		if err != nil {
			if we, ok := err.(*wire.Error); ok {
				s.bye(we.Text)
			}
			return err
		}
		resp = line
	}
	if resp == "*" {
		return s.badReply(c.Tag, "Authentication aborted by client.")
	}
	var raw []byte
	if resp != "=" {
		var err error
		raw, err = base64.StdEncoding.Strict().DecodeString(resp)
		if err != nil {
			return s.badReply(c.Tag, "Invalid base64 data in continued response.")
		}
	}
	// authzid NUL authcid NUL passwd, nothing more (RFC 4616 §2).
	parts := bytes.Split(raw, []byte{0})
	if len(parts) != 3 || len(parts[1]) == 0 || len(parts[2]) == 0 {
		return s.authFailed(c.Tag, "", "PLAIN", "malformed PLAIN response")
	}
	return s.login(c.Tag, string(parts[0]), string(parts[1]), string(parts[2]), "PLAIN")
}

// login checks credentials through the Backend.
func (s *session) login(tag, authz, user, pass, method string) error {
	// NUL only gets here through a literal; a username must be text
	// (HOSTILE 14, 34).
	if user == "" || strings.ContainsRune(user, 0) || strings.ContainsRune(pass, 0) || strings.ContainsRune(authz, 0) ||
		!utf8.ValidString(user) || !utf8.ValidString(authz) {
		return s.authFailed(tag, user, method, "invalid characters in credentials")
	}
	u, err := s.cfg.Backend.Login(bg, s.connInfo(), authz, user, pass)
	if err != nil {
		e := imap.AsError(err)
		if e == nil || (e.Code != imap.ErrAuthFailed.Code && e.Code != imap.ErrAuthzFailed.Code) {
			s.cfg.Log.Warning("imap: login backend error user=<%s> rip=%s: %v", user, s.remote(), err)
			s.reply(tag, "NO", "[UNAVAILABLE] Temporary authentication failure.")
			return nil
		}
		return s.authFailed(tag, user, method, e.Text)
	}
	if s.cfg.TakeOver != nil {
		s.takeover = &Handoff{User: u, Tag: tag, Input: s.in.Take(), Secure: s.secure}
		s.state = stateLogout
		return nil
	}
	s.user = u
	s.state = stateAuth
	s.dec.SetLimits(s.cfg.Limits)
	s.log("Login: user=<%s>, method=%s, rip=%s, TLS=%v", u.Username(), method, s.remote(), s.tls)
	s.reply(tag, "OK", "[CAPABILITY "+s.capabilities()+"] Logged in")
	return nil
}

// authFailed delays, answers NO [AUTHENTICATIONFAILED] and ends the
// session after MaxAuthFailures (HOSTILE 33).
func (s *session) authFailed(tag, user, method, why string) error {
	s.authFails++
	s.log("Login failed: user=<%s>, method=%s, rip=%s: %s", user, method, s.remote(), why)
	if d := s.cfg.AuthFailureDelay; d > 0 {
		s.out.Flush()
		time.Sleep(d)
	}
	s.reply(tag, "NO", "[AUTHENTICATIONFAILED] Authentication failed.")
	if s.authFails >= s.cfg.MaxAuthFailures {
		s.bye("Too many invalid authentication attempts.")
		return errTooManyBad
	}
	return nil
}

// cmdID answers ID (RFC 2971) and remembers what the client said.
func (s *session) cmdID(c *wire.Command) {
	if len(c.ID) > 0 {
		m := make(map[string]string, len(c.ID))
		for _, kv := range c.ID {
			m[kv[0]] = kv[1]
		}
		s.connInfo().ClientID = m
	}
	keys := make([]string, 0, len(s.cfg.ID))
	for k := range s.cfg.ID {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	s.out.Raw("* ID ")
	if len(keys) == 0 {
		s.out.Raw("NIL")
	} else {
		s.out.Byte('(')
		for i, k := range keys {
			if i > 0 {
				s.out.Byte(' ')
			}
			s.out.String(k)
			s.out.Byte(' ')
			s.out.String(s.cfg.ID[k])
		}
		s.out.Byte(')')
	}
	s.out.CRLF()
	s.done(c, "OK", "ID completed.")
}

// cmdEnable is ENABLE (RFC 5161): only extensions this server has.
func (s *session) cmdEnable(c *wire.Command) {
	var enabled []string
	for _, cap := range c.Caps {
		var bit uint8
		switch cap {
		case "CONDSTORE":
			bit = extCondStore
		case "QRESYNC":
			// RFC 7162 §3.2.3: QRESYNC implies CONDSTORE.
			bit = extQResync | extCondStore
		case "IMAP4REV2":
			if s.cfg.NoIMAP4rev2 {
				continue
			}
			bit = extRev2
			cap = "IMAP4rev2"
		case "UTF8=ACCEPT":
			if s.cfg.NoUTF8Accept {
				continue
			}
			bit = extUTF8
		default:
			continue
		}
		s.ext |= bit
		dup := false
		for _, e := range enabled {
			dup = dup || e == cap
		}
		if !dup {
			enabled = append(enabled, cap)
		}
	}
	if s.ext&(extRev2|extUTF8) != 0 {
		s.dec.UTF8 = true
		s.out.UTF8 = true
	}
	s.out.Raw("* ENABLED")
	for _, e := range enabled {
		s.out.Raw(" " + e)
	}
	s.out.CRLF()
	s.done(c, "OK", "Enabled.")
}

func (s *session) rev2() bool      { return s.ext&extRev2 != 0 }
func (s *session) condstore() bool { return s.ext&extCondStore != 0 }
func (s *session) qresync() bool   { return s.ext&extQResync != 0 }
func (s *session) utf8Names() bool { return s.ext&(extRev2|extUTF8) != 0 }

// cmdNamespace is NAMESPACE (RFC 2342): one personal namespace.
func (s *session) cmdNamespace(c *wire.Command) {
	s.out.Raw("* NAMESPACE ((\"\" ")
	s.out.String(string(s.user.Delimiter()))
	s.out.Raw(")) NIL NIL\r\n")
	s.done(c, "OK", "Namespace completed.")
}
