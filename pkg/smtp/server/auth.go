package server

import (
	"context"
	"strings"

	"github.com/posthorn/posthorn/pkg/sasl"
)

// authOffered reports whether AUTH may be used now: there is an
// Authenticator, and the session is under TLS or, when the configuration
// allows it, the client is on a loopback address (RFC 8314 §3 and
// RFC 4954 §4 forbid plaintext passwords elsewhere: HOSTILE 10).
func (s *session) authOffered() bool {
	if s.cfg.Auth == nil {
		return false
	}
	if s.info.TLS != nil {
		return true
	}
	return s.cfg.PlaintextAuthLoopback && s.info.RemoteIP != nil && s.info.RemoteIP.IsLoopback()
}

// cmdAuth runs AUTH PLAIN or AUTH LOGIN (RFC 4954, RFC 4616) and has the
// Authenticator check the result. Replies and log lines are Postfix's, so
// that fail2ban's postfix filters (mode auth) match the failures.
func (s *session) cmdAuth(cmd Command) *Reply {
	switch {
	case s.cfg.Auth == nil:
		return reply(503, "5.5.1", "Error: authentication not enabled")
	case !s.greeted:
		return reply(503, "5.5.1", "Error: send HELO/EHLO first")
	case s.info.AuthUser != "":
		return reply(503, "5.5.1", "Error: already authenticated")
	case s.env != nil:
		// RFC 4954 §4: not permitted during a mail transaction.
		return reply(503, "5.5.1", "Error: MAIL transaction in progress")
	case !s.authOffered():
		return reply(538, "5.7.11", "Encryption required for requested authentication mechanism")
	}
	f := strings.Fields(cmd.Arg)
	if len(f) < 1 || len(f) > 2 {
		return reply(501, "5.5.4", "Syntax: AUTH mechanism")
	}
	sv, err := sasl.NewServer(f[0])
	if err != nil {
		return reply(504, "5.5.4", "Unrecognized authentication type")
	}
	mech := sv.Mechanism()
	initial := ""
	if len(f) == 2 {
		initial = f[1]
	}
	// pkg/sasl decodes strictly (canonical base64, exactly two NULs in
	// PLAIN, no NUL in names and passwords, no authzid other than the
	// user itself); the engine frames its challenges as 334 lines.
	chal, done, err := sv.Start(initial)
	for err == nil && !done {
		s.bw.WriteString("334 " + chal + "\r\n")
		line, rerr := s.readCommand()
		switch {
		case rerr == errLineTooLong:
			s.log.Warning("%s: SASL %s authentication failed: response too long", s.client, mech)
			return reply(500, "5.5.2", "Error: line too long")
		case rerr != nil:
			s.readFailed(rerr)
			return nil
		}
		chal, done, err = sv.Next(line)
	}
	switch {
	case err == sasl.ErrCancelled:
		s.log.Warning("%s: SASL %s authentication aborted", s.client, mech)
		return reply(501, "5.7.0", "Authentication aborted")
	case err == sasl.ErrAuthzid:
		// HOSTILE 31: nobody may act as another user.
		s.log.Warning("%s: SASL %s authentication failed: authorization identity differs from authentication identity", s.client, mech)
		return reply(535, "5.7.8", "Error: authentication failed: authorization identity differs from authentication identity")
	case err != nil:
		// RFC 4954 §4: a response that cannot be decoded is a 501. It
		// is logged as a failure: guessing with garbage is still guessing.
		s.log.Warning("%s: SASL %s authentication failed: malformed response", s.client, mech)
		return reply(501, "5.5.2", "Error: malformed authentication response")
	}
	cred := sv.Credentials()
	user, pass := cred.Username, cred.Password

	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
	defer cancel()
	res := s.cfg.Auth.Authenticate(ctx, &s.info, mech, user, pass)
	switch {
	case res.OK:
		if res.User == "" {
			res.User = user
		}
		// Names reach logs and headers: no controls, and a bounded length.
		s.info.AuthUser = printable(truncate(res.User, maxAuthUser))
		s.info.AuthMethod = mech
		return reply(235, "2.7.0", "Authentication successful")
	case res.Temp && res.Unavailable:
		// Not the client's doing: fail2ban's filter skips this wording.
		detail := ""
		if res.Reason != "" {
			detail = " (" + res.Reason + ")"
		}
		s.log.Warning("%s: SASL %s authentication failed: Connection lost to authentication server%s", s.client, mech, detail)
		return reply(454, "4.7.0", "Temporary authentication failure")
	case res.Temp:
		// Refused unchecked after too many failures: still a failure.
		s.log.Warning("%s: SASL %s authentication failed: authentication failure", s.client, mech)
		return reply(454, "4.7.0", "Temporary authentication failure")
	default:
		s.log.Warning("%s: SASL %s authentication failed: authentication failure", s.client, mech)
		return reply(535, "5.7.8", "Error: authentication failed: authentication failure")
	}
}

// maxAuthUser caps the login name recorded for logs and headers; the auth
// daemon accepts none longer anyway.
const maxAuthUser = 320

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
