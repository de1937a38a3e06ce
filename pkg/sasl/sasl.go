// Package sasl is the server side of the SASL mechanisms posthorn offers,
// PLAIN (RFC 4616) and LOGIN (draft-murchison-sasl-login, as Postfix and
// Dovecot implement it), for every protocol that carries SASL the same way:
// SMTP AUTH (RFC 4954), IMAP AUTHENTICATE with SASL-IR (RFC 3501 §6.2.2,
// RFC 4959) and POP3 AUTH (RFC 5034).
//
// All three send base64 lines and differ only in framing, so a protocol
// engine drives a Server with the lines as the client sent them and frames
// the challenges itself:
//
//	s, err := sasl.NewServer(mech)          // unknown: 504 / NO / -ERR
//	chal, done, err := s.Start(initial)     // "" when the command had none
//	for !done && err == nil {
//		send "334 " + chal (SMTP) or "+ " + chal (IMAP, POP3)
//		chal, done, err = s.Next(line)      // the client's next line, CRLF removed
//	}
//	err: ErrCancelled (the client sent "*": SMTP 501, IMAP BAD, POP3 -ERR),
//	     anything else is a failed authentication (SMTP 535 or 501, NO, -ERR)
//	done: verify s.Credentials() with the auth daemon
//
// Decoding is strict: base64 must be canonical with padding, a PLAIN
// message has exactly two NULs, identities and passwords are non-empty
// UTF-8 without NUL, and a response larger than MaxResponse is refused
// before it is decoded. Laxness here is how parser differentials and the
// old C bugs happened (HOSTILE 14, 32: Exim CVE-2018-6789, Dovecot
// CVE-2025-59028, Dovecot 2.3.11's NUL-truncated mechanisms).
package sasl

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"unicode/utf8"
)

// MaxResponse is the largest decoded client response accepted. A PLAIN
// message holds a user name and a password (RFC 4616 requires accepting
// 255 octets of each); 16 KiB leaves room for long UTF-8 passphrases and
// nothing for a memory attack.
const MaxResponse = 16 << 10

// MaxLine is the longest line a protocol engine must read for a response:
// MaxResponse in base64. A longer line is refused without decoding.
var MaxLine = base64.StdEncoding.EncodedLen(MaxResponse)

// Errors that end an exchange. Every one but ErrCancelled is a failed
// attempt that counts towards the client's failure limits.
var (
	ErrUnknownMechanism = errors.New("sasl: unknown mechanism")
	ErrCancelled        = errors.New("sasl: authentication cancelled by the client")
	ErrMalformed        = errors.New("sasl: malformed response")
	ErrTooLong          = errors.New("sasl: response too long")
	// ErrAuthzid: the client asked to act as another user (RFC 4616 §2,
	// authzid). posthorn authorises no one to do that.
	ErrAuthzid = errors.New("sasl: proxy authorisation is not allowed")
	// ErrState: Next after the exchange ended, a bug in the caller.
	ErrState = errors.New("sasl: exchange already finished")
)

// Mechanism names, as advertised (EHLO AUTH, CAPABILITY AUTH=, CAPA SASL).
const (
	Plain = "PLAIN"
	Login = "LOGIN"
)

// Mechanisms returns the mechanisms a Server implements, in the order a
// server should advertise them.
func Mechanisms() []string { return []string{Plain, Login} }

// Credentials are what the client presented.
type Credentials struct {
	Mechanism string
	// Authzid is the authorisation identity as sent: empty, or equal to
	// Username (anything else was refused with ErrAuthzid).
	Authzid  string
	Username string
	Password string
}

// The LOGIN mechanism's prompts. The draft leaves them free; these are the
// ones Postfix (through Cyrus SASL) and Dovecot send, which some clients
// compare literally.
const (
	promptUsername = "Username:"
	promptPassword = "Password:"
)

type state int

const (
	stateNew state = iota
	stateWantPlain
	stateWantUsername
	stateWantPassword
	stateDone
	stateFailed
)

// Server is one authentication exchange. It is not safe for concurrent use.
type Server struct {
	mech  string
	state state
	err   error
	creds Credentials
}

// NewServer starts an exchange for mechanism, named case-insensitively
// (RFC 4422 §3.1: mechanism names are upper case, clients may differ).
func NewServer(mechanism string) (*Server, error) {
	m := strings.ToUpper(mechanism)
	switch m {
	case Plain, Login:
		return &Server{mech: m, creds: Credentials{Mechanism: m}}, nil
	}
	return nil, ErrUnknownMechanism
}

// Mechanism returns the mechanism's name in upper case.
func (s *Server) Mechanism() string { return s.mech }

// Start begins the exchange. initial is the initial response exactly as it
// appeared on the command line: base64, "=" for an empty one (RFC 4954 §4,
// RFC 4959 §3, RFC 5034 §4), or "" when the client sent none. The result is
// the next challenge, already base64-encoded (empty for an empty one), or
// done when the credentials are complete.
func (s *Server) Start(initial string) (challenge string, done bool, err error) {
	if s.state != stateNew {
		return "", false, s.fail(ErrState)
	}
	switch s.mech {
	case Plain:
		if initial == "" {
			// RFC 4616 §2: the server sends an empty challenge.
			s.state = stateWantPlain
			return "", false, nil
		}
		msg, err := decodeInitial(initial)
		if err != nil {
			return "", false, s.fail(err)
		}
		return s.plain(msg)
	default: // Login
		if initial == "" {
			s.state = stateWantUsername
			return encode(promptUsername), false, nil
		}
		// Not in the draft, but clients send the user name as an
		// initial response and Postfix and Dovecot accept it.
		user, err := decodeInitial(initial)
		if err != nil {
			return "", false, s.fail(err)
		}
		return s.loginUsername(user)
	}
}

// Next takes the client's next line, without its line end: base64, or "*"
// to cancel (RFC 4954 §4, RFC 3501 §6.2.2, RFC 5034 §4).
func (s *Server) Next(line string) (challenge string, done bool, err error) {
	switch s.state {
	case stateWantPlain, stateWantUsername, stateWantPassword:
	case stateFailed:
		return "", false, s.err
	default:
		return "", false, s.fail(ErrState)
	}
	if line == "*" {
		return "", false, s.fail(ErrCancelled)
	}
	msg, err := decode(line)
	if err != nil {
		return "", false, s.fail(err)
	}
	switch s.state {
	case stateWantPlain:
		return s.plain(msg)
	case stateWantUsername:
		return s.loginUsername(msg)
	default:
		if err := checkField(msg); err != nil {
			return "", false, s.fail(err)
		}
		s.creds.Password = string(msg)
		s.state = stateDone
		return "", true, nil
	}
}

// Credentials returns what the client presented; complete only after Start
// or Next reported done.
func (s *Server) Credentials() Credentials {
	if s.state != stateDone {
		return Credentials{Mechanism: s.mech}
	}
	return s.creds
}

func (s *Server) fail(err error) error {
	s.state, s.err = stateFailed, err
	s.creds = Credentials{Mechanism: s.mech}
	return err
}

// plain parses RFC 4616 §2: message = [authzid] UTF8NUL authcid UTF8NUL
// passwd, where authcid and passwd are one or more UTF-8 characters other
// than NUL, and so is authzid when present.
func (s *Server) plain(msg []byte) (string, bool, error) {
	f := bytes.Split(msg, []byte{0})
	if len(f) != 3 {
		return "", false, s.fail(ErrMalformed)
	}
	authzid, authcid, passwd := f[0], f[1], f[2]
	if len(authzid) > 0 && !utf8.Valid(authzid) {
		return "", false, s.fail(ErrMalformed)
	}
	if checkField(authcid) != nil || checkField(passwd) != nil {
		return "", false, s.fail(ErrMalformed)
	}
	// The authzid is compared byte for byte: a client that names itself
	// in a different case is asking for something it does not need.
	if len(authzid) > 0 && !bytes.Equal(authzid, authcid) {
		return "", false, s.fail(ErrAuthzid)
	}
	s.creds.Authzid, s.creds.Username, s.creds.Password = string(authzid), string(authcid), string(passwd)
	s.state = stateDone
	return "", true, nil
}

func (s *Server) loginUsername(user []byte) (string, bool, error) {
	if err := checkField(user); err != nil {
		return "", false, s.fail(err)
	}
	s.creds.Username = string(user)
	s.state = stateWantPassword
	return encode(promptPassword), false, nil
}

// checkField accepts one or more UTF-8 characters other than NUL.
func checkField(b []byte) error {
	if len(b) == 0 || bytes.IndexByte(b, 0) >= 0 || !utf8.Valid(b) {
		return ErrMalformed
	}
	return nil
}

// decodeInitial decodes an initial response, where "=" stands for an
// empty one.
func decodeInitial(s string) ([]byte, error) {
	if s == "=" {
		return []byte{}, nil
	}
	return decode(s)
}

var strict = base64.StdEncoding.Strict()

// decode accepts canonical base64 with padding only. An empty line is an
// empty response.
func decode(s string) ([]byte, error) {
	if len(s) > MaxLine {
		return nil, ErrTooLong
	}
	// The decoder skips CR and LF even in strict mode; on a line they
	// can only be an attempt to smuggle something past the engine.
	if strings.ContainsAny(s, "\r\n") {
		return nil, ErrMalformed
	}
	b, err := strict.DecodeString(s)
	if err != nil {
		return nil, ErrMalformed
	}
	return b, nil
}

func encode(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
