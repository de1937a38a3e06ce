package server

import (
	"context"
	"errors"
	"strings"
)

// The challenges of LOGIN, base64 of "Username:" and "Password:", which is
// what clients of the (never standardised) mechanism expect.
const (
	loginUserChallenge = "VXNlcm5hbWU6"
	loginPassChallenge = "UGFzc3dvcmQ6"
)

var (
	// errAuthAborted is the client's "*" (RFC 4954 §4).
	errAuthAborted = errors.New("authentication aborted")
	// errSessionOver: reading a response failed and the session ends.
	errSessionOver = errors.New("session over")
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
	mech := upperASCII(f[0])
	initial, hasInitial := "", len(f) == 2
	if hasInitial {
		initial = f[1]
	}
	var user, pass string
	var err error
	switch mech {
	case "PLAIN":
		// Without an initial response the server sends an empty challenge
		// (RFC 4954 §4, RFC 4616 §2).
		var msg []byte
		if msg, err = s.saslStep(hasInitial, initial, ""); err == nil {
			user, pass, err = decodePlain(msg)
		}
	case "LOGIN":
		var u, p []byte
		if u, err = s.saslStep(hasInitial, initial, loginUserChallenge); err == nil {
			if p, err = s.saslStep(false, "", loginPassChallenge); err == nil {
				user, pass = string(u), string(p)
				err = checkSASLFields(user, pass)
			}
		}
	default:
		return reply(504, "5.5.4", "Unrecognized authentication type")
	}
	var rerr *Reply
	switch {
	case err == errSessionOver:
		return nil
	case errors.As(err, &rerr):
		return rerr
	case err == errAuthAborted:
		s.log.Warning("%s: SASL %s authentication aborted", s.client, mech)
		return reply(501, "5.7.0", "Authentication aborted")
	case err == errBase64:
		s.log.Warning("%s: SASL %s authentication failed: %v", s.client, mech, err)
		return reply(501, "5.5.2", "Error: invalid base64 data")
	case err != nil:
		s.log.Warning("%s: SASL %s authentication failed: %v", s.client, mech, err)
		return reply(535, "5.7.8", "Error: authentication failed: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
	defer cancel()
	res := s.cfg.Auth.Authenticate(ctx, &s.info, mech, user, pass)
	switch {
	case res.OK:
		if res.User == "" {
			res.User = user
		}
		// Names reach logs and headers: no controls, and a bounded length.
		s.info.AuthUser = printable(truncate(res.User, maxSASLField))
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

// saslStep returns the decoded client response: the initial response when
// the client gave one, otherwise the answer to a 334 challenge. A response
// line over the length limit comes back as the *Reply for it; a failure to
// read ends the session (errSessionOver).
func (s *session) saslStep(hasInitial bool, initial, challenge string) ([]byte, error) {
	line := initial
	if !hasInitial {
		s.bw.WriteString("334 " + challenge + "\r\n")
		var err error
		line, err = s.readCommand()
		switch {
		case err == errLineTooLong:
			return nil, reply(500, "5.5.2", "Error: line too long")
		case err != nil:
			s.readFailed(err)
			return nil, errSessionOver
		}
	}
	if line == "*" {
		return nil, errAuthAborted
	}
	return decodeSASL(line)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
