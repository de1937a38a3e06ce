package pop3

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/posthorn/posthorn/pkg/maillog"
	"github.com/posthorn/posthorn/pkg/sasl"
)

// LoginConfig configures the AUTHORIZATION state (ServeLogin). Zero values
// mean the documented defaults.
type LoginConfig struct {
	// Greeting follows "+OK " (default "posthorn ready.").
	Greeting string
	// TLS enables STLS (RFC 2595 §4). A connection passed to ServeLogin
	// as a *tls.Conn is implicit TLS (port 995) and never offers it.
	TLS *tls.Config
	// AllowPlaintext says whether a connection without TLS may send a
	// password (USER/PASS, AUTH PLAIN/LOGIN); it is asked once, when the
	// connection starts. nil allows loopback only, Dovecot's
	// auth_allow_cleartext = no (HOSTILE 10, RFC 8314).
	AllowPlaintext func(c net.Conn) bool
	// Timeout is how long the client may stay silent before each command
	// and how long the TLS handshake and each write may take (60s: a
	// client that has not logged in gets less time than one that has).
	Timeout time.Duration
	// MaxBadCommands closes the connection at that many unknown or
	// malformed commands (10).
	MaxBadCommands int
	// MaxAuthFailures closes the connection at that many failed or
	// temporarily refused logins (3).
	MaxAuthFailures int
	// MaxCommands closes a connection that has sent that many commands
	// without logging in (50), so CAPA every 59 seconds holds no slot
	// forever.
	MaxCommands int
	// FailureDelay is waited before answering a failed login (0: the auth
	// daemon already delays every failure).
	FailureDelay time.Duration
	// Log receives the Login and Disconnected lines; nil uses
	// maillog.Default().
	Log *maillog.Logger
}

func (c LoginConfig) withDefaults() LoginConfig {
	if c.Greeting == "" {
		c.Greeting = "posthorn ready."
	}
	if c.Timeout <= 0 {
		c.Timeout = 60 * time.Second
	}
	if c.MaxBadCommands <= 0 {
		c.MaxBadCommands = 10
	}
	if c.MaxAuthFailures <= 0 {
		c.MaxAuthFailures = 3
	}
	if c.MaxCommands <= 0 {
		c.MaxCommands = 50
	}
	if c.Log == nil {
		c.Log = maillog.Default()
	}
	return c
}

// Credentials are what a client presented, for an Authenticator.
type Credentials struct {
	// User and Password as the client sent them.
	User, Password string
	// Mechanism is "PLAIN" for USER/PASS and AUTH PLAIN, "LOGIN" for AUTH
	// LOGIN.
	Mechanism string
	// Remote and Local are the connection's addresses.
	Remote, Local net.Addr
	// TLS: the password came through TLS.
	TLS bool
	// Secured: TLS, or a connection where configuration allows plaintext
	// (loopback by default). This is auth.Request.Secured.
	Secured bool
}

// AuthResult is an Authenticator's answer.
type AuthResult struct {
	OK bool
	// User is the canonical login name; empty means the name as sent.
	User string
	// Temp: the password could not be checked (the auth service is down
	// or refuses for a while): -ERR [SYS/TEMP] (RFC 3206).
	Temp bool
	// Token is passed on in Handoff.Token untouched, for example the auth
	// daemon's one-time token that login.Handoff needs.
	Token string
}

// Authenticator checks passwords for ServeLogin.
type Authenticator interface {
	Authenticate(ctx context.Context, c Credentials) AuthResult
}

// AuthenticatorFunc adapts a function to Authenticator.
type AuthenticatorFunc func(ctx context.Context, c Credentials) AuthResult

func (f AuthenticatorFunc) Authenticate(ctx context.Context, c Credentials) AuthResult {
	return f(ctx, c)
}

// Handoff is a connection whose user has authenticated, ready for
// ServeSession (in this process, or in the user's pop3d after
// login.Handoff). The authentication command has not been answered yet:
// the +OK belongs to the transaction stage, which must first lock and open
// the maildrop (RFC 1939 §4, §7 PASS).
type Handoff struct {
	// User is the canonical login name (AuthResult.User).
	User string
	// Token is AuthResult.Token.
	Token string
	// Method is the mechanism, for logs: PLAIN or LOGIN.
	Method string
	// Conn is the client connection: a *tls.Conn after STLS or on an
	// implicit TLS port. Deadlines are cleared.
	Conn net.Conn
	// TLS: the session runs over TLS (a worker serving a TLS session that
	// the login process relays sets it from login.Session.TLS).
	TLS bool
	// Secured: TLS, or plaintext allowed on this connection.
	Secured bool
	// Buffered holds what the client sent after the authentication
	// command and was already read (pipelining, RFC 2449 §6.6): the
	// session reads it before reading Conn.
	Buffered []byte
}

// Refuse answers the authentication command with a temporary failure and
// closes the connection, for a login process that could not hand it over.
func (h *Handoff) Refuse() error {
	h.Conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := h.Conn.Write([]byte("-ERR [SYS/TEMP] Internal login failure. Refer to server log for more information.\r\n"))
	if cerr := h.Conn.Close(); err == nil {
		err = cerr
	}
	return err
}

// Reasons ServeLogin returns without a Handoff, besides I/O errors,
// timeouts (os.ErrDeadlineExceeded) and the context's error.
var (
	ErrQuit         = errors.New("pop3: client quit")
	ErrAuthFailures = errors.New("pop3: too many authentication failures")
	ErrBadCommands  = errors.New("pop3: too many bad commands")
	ErrCommandLimit = errors.New("pop3: too many commands without logging in")
)

// Texts that clients or tests compare.
const (
	// Dovecot's wording (AUTH_PLAINTEXT_DISABLED_MSG), with RFC 3206's code.
	msgPlaintextDisallowed = "-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections."
	msgAuthFailed          = "-ERR [AUTH] Authentication failed."
	msgAuthTemp            = "-ERR [SYS/TEMP] Temporary authentication failure."
	msgUnknown             = "-ERR Unknown command."
	msgTooLong             = "-ERR Command line too long."
	msgBadChars            = "-ERR Invalid characters in command."
	msgTooManyBad          = "-ERR Too many bad commands."
	msgInactivity          = "-ERR Disconnected for inactivity."
	msgShutdown            = "-ERR Server shutting down."
)

type login struct {
	ctx  context.Context
	cfg  LoginConfig
	auth Authenticator
	conn net.Conn
	wake *waker
	in   *lineReader
	dw   *deadlineWriter
	out  *bufio.Writer

	tls        bool
	plainOK    bool // plaintext passwords allowed without TLS
	user       string
	lastUser   string // for the log line
	method     string
	failures   int // failed logins
	temps      int // temporarily refused logins
	bad        int
	cmds       int
	disallowed bool // a password was offered without TLS and refused
	start      time.Time
}

// ServeLogin runs the AUTHORIZATION state of RFC 1939 §4 on conn:
// greeting, CAPA (RFC 2449), STLS (RFC 2595), USER/PASS, AUTH PLAIN and
// LOGIN with or without initial response (RFC 5034), QUIT. It returns when
// a user has authenticated, with the connection in the Handoff; it never
// opens mail. On any other outcome it logs why, closes conn and returns
// the reason.
func ServeLogin(ctx context.Context, conn net.Conn, cfg LoginConfig, auth Authenticator) (*Handoff, error) {
	cfg = cfg.withDefaults()
	l := &login{ctx: ctx, cfg: cfg, auth: auth, conn: conn, start: time.Now()}
	// Cancellation wakes a blocked read or write; the loop then sees
	// ctx.Err() (it checks after every deadline it sets).
	l.wake = wakeOnDone(ctx, conn)
	h, err := l.run()
	if !l.wake.stop() && err == nil {
		err = ctx.Err()
	}
	if err == nil {
		l.conn.SetDeadline(time.Time{})
		h.Conn = l.conn
		cfg.Log.Info("pop3-login: %s", successLine(h.User, h.Method, conn.RemoteAddr(), conn.LocalAddr(), secField(l.tls, h.Secured)))
		return h, nil
	}
	reason := ""
	switch {
	case errors.Is(err, ErrQuit):
		reason = ": Aborted login by logging out"
	case ctx.Err() != nil:
		reason = ": Server shutting down"
	case errors.Is(err, os.ErrDeadlineExceeded):
		reason = ": Inactivity"
	case errors.Is(err, ErrBadCommands), errors.Is(err, errLineFlood):
		reason = ": Too many bad commands"
	case errors.Is(err, ErrCommandLimit):
		reason = ": Too many commands"
	case errors.Is(err, errHandshake):
		reason = ": TLS handshake failed"
	}
	cfg.Log.Info("pop3-login: %s", loginLine(reason, l.failures, l.disallowed, time.Since(l.start), l.lastUser, l.method,
		conn.RemoteAddr(), conn.LocalAddr(), secField(l.tls, l.tls || l.plainOK)))
	l.conn.Close()
	return nil, err
}

var errHandshake = errors.New("pop3: TLS handshake failed")

func (l *login) run() (*Handoff, error) {
	if tc, ok := l.conn.(*tls.Conn); ok {
		tc.SetDeadline(time.Now().Add(l.cfg.Timeout))
		if err := tc.HandshakeContext(l.ctx); err != nil {
			return nil, fmt.Errorf("%w: %w", errHandshake, err)
		}
		l.tls = true
	} else if l.cfg.AllowPlaintext != nil {
		l.plainOK = l.cfg.AllowPlaintext(l.conn)
	} else {
		l.plainOK = isLoopback(l.conn.RemoteAddr())
	}
	l.in = newLineReader(l.conn)
	l.dw = &deadlineWriter{l.conn, l.cfg.Timeout}
	l.out = bufio.NewWriterSize(l.dw, 1024)
	l.reply("+OK " + l.cfg.Greeting)
	for {
		if err := l.flushIfIdle(); err != nil {
			return nil, err
		}
		l.conn.SetReadDeadline(time.Now().Add(l.cfg.Timeout))
		if err := l.ctx.Err(); err != nil {
			l.shutdown()
			return nil, err
		}
		line, err := l.in.line(MaxCommandLine)
		switch {
		case errors.Is(err, errLineTooLong):
			if err := l.badCommand(msgTooLong); err != nil {
				return nil, err
			}
			continue
		case errors.Is(err, errLineFlood):
			l.goodbye(msgTooLong)
			return nil, err
		case err != nil:
			if l.ctx.Err() != nil {
				l.shutdown()
				return nil, l.ctx.Err()
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				l.goodbye(msgInactivity)
			}
			return nil, err
		}
		if l.cmds++; l.cmds > l.cfg.MaxCommands {
			l.goodbye("-ERR Too many commands.")
			return nil, ErrCommandLimit
		}
		h, err := l.command(line)
		if h != nil || err != nil {
			return h, err
		}
	}
}

// command runs one command line.
func (l *login) command(line []byte) (*Handoff, error) {
	c, err := parseCommand(line)
	if err != nil {
		msg := msgUnknown
		if errors.Is(err, errBadChar) {
			msg = msgBadChars
		}
		return nil, l.badCommand(msg)
	}
	switch c.name {
	case "CAPA":
		l.capa()
	case "QUIT":
		l.goodbye("+OK Logging out.")
		return nil, ErrQuit
	case "STLS":
		return nil, l.stls()
	case "USER":
		if len(c.args) == 0 {
			return nil, l.badCommand("-ERR Missing user name.")
		}
		l.lastUser = c.rest
		if !l.passwordOK() {
			return nil, nil
		}
		l.user = c.rest
		l.reply("+OK")
	case "PASS":
		if len(c.args) == 0 {
			return nil, l.badCommand("-ERR Missing password.")
		}
		if !l.passwordOK() {
			return nil, nil
		}
		if l.user == "" {
			l.reply("-ERR No user name given.")
			return nil, nil
		}
		// A failed PASS starts AUTHORIZATION over: the next try names
		// its user again, so guesses cannot ride on an earlier USER.
		user := l.user
		l.user = ""
		return l.authenticate(user, c.rest, sasl.Plain)
	case "AUTH":
		return l.authCommand(c)
	default:
		return nil, l.badCommand(msgUnknown)
	}
	return nil, nil
}

// passwordOK refuses a password on a connection that is neither TLS nor
// allowed plaintext, and remembers the attempt for the log line that
// fail2ban counts ("tried to use disallowed plaintext auth").
func (l *login) passwordOK() bool {
	if l.tls || l.plainOK {
		return true
	}
	l.disallowed = true
	l.reply(msgPlaintextDisallowed)
	return false
}

// capa lists the capabilities of the AUTHORIZATION state (RFC 2449 §5).
// USER and SASL are left out where a password would be refused, so a
// client knows to use STLS first (RFC 2595 §4).
func (l *login) capa() {
	var b strings.Builder
	b.WriteString("+OK\r\n" + commonCaps)
	if l.cfg.TLS != nil && !l.tls {
		b.WriteString("STLS\r\n")
	}
	if l.tls || l.plainOK {
		b.WriteString("USER\r\nSASL " + strings.Join(sasl.Mechanisms(), " ") + "\r\n")
	}
	b.WriteString(".")
	l.reply(b.String())
}

// commonCaps are the capabilities of both states.
const commonCaps = "CAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\n"

// stls starts TLS (RFC 2595 §4). Everything the client sent after STLS
// and before the handshake arrived in plaintext and is dropped unread: it
// must never run as if it came through TLS (HOSTILE 8: CVE-2021-33515,
// CVE-2021-38084, "STLS\r\nUSER x\r\n" in one segment).
func (l *login) stls() error {
	if l.tls {
		l.reply("-ERR TLS is already active.")
		return nil
	}
	if l.cfg.TLS == nil {
		l.reply("-ERR TLS support isn't enabled.")
		return nil
	}
	l.reply("+OK Begin TLS negotiation now.")
	if err := l.out.Flush(); err != nil {
		return err
	}
	if n := l.in.buffered(); n > 0 {
		l.cfg.Log.Info("pop3-login: STLS: dropped %d octets of plaintext sent before the TLS handshake, rip=%s", n, logIP(l.conn.RemoteAddr()))
	}
	tc := tls.Server(l.conn, l.cfg.TLS)
	l.conn.SetDeadline(time.Now().Add(l.cfg.Timeout))
	if err := tc.HandshakeContext(l.ctx); err != nil {
		return fmt.Errorf("%w: %w", errHandshake, err)
	}
	l.conn = tc
	l.in = newLineReader(tc)
	l.dw.c = tc
	// What a USER before STLS named was not protected either.
	l.tls, l.user = true, ""
	return nil
}

// authCommand runs AUTH (RFC 5034 §4). Without an argument it lists the
// mechanisms, as clients that predate CAPA expect.
func (l *login) authCommand(c command) (*Handoff, error) {
	if len(c.args) == 0 {
		if !l.tls && !l.plainOK {
			l.reply("+OK\r\n.")
			return nil, nil
		}
		l.reply("+OK\r\n" + strings.Join(sasl.Mechanisms(), "\r\n") + "\r\n.")
		return nil, nil
	}
	if len(c.args) > 2 {
		return nil, l.badCommand("-ERR Invalid AUTH arguments.")
	}
	srv, err := sasl.NewServer(c.args[0])
	if err != nil {
		l.reply("-ERR Unsupported authentication mechanism.")
		return nil, nil
	}
	l.method = srv.Mechanism()
	if !l.passwordOK() {
		return nil, nil
	}
	initial := ""
	if len(c.args) == 2 {
		initial = c.args[1]
	}
	chal, done, err := srv.Start(initial)
	for !done && err == nil {
		l.reply("+ " + chal)
		if err := l.out.Flush(); err != nil {
			return nil, err
		}
		l.conn.SetReadDeadline(time.Now().Add(l.cfg.Timeout))
		if err := l.ctx.Err(); err != nil {
			return nil, err
		}
		// Continuation lines carry base64, up to sasl.MaxLine (RFC 5034
		// §4 leaves their length to the mechanism).
		line, rerr := l.in.line(sasl.MaxLine + 2)
		if errors.Is(rerr, errLineTooLong) {
			err = sasl.ErrTooLong
			break
		}
		if rerr != nil {
			return nil, rerr
		}
		chal, done, err = srv.Next(string(line))
	}
	if errors.Is(err, sasl.ErrCancelled) {
		l.reply("-ERR Authentication aborted by client.")
		return nil, nil
	}
	if err != nil {
		return nil, l.failed(false)
	}
	cr := srv.Credentials()
	return l.authenticate(cr.Username, cr.Password, srv.Mechanism())
}

// authenticate asks the Authenticator. On success the session is handed
// over; a failure is answered and counted.
func (l *login) authenticate(user, pass, method string) (*Handoff, error) {
	l.lastUser, l.method = user, method
	// Answers to pipelined commands before this one go out now rather
	// than after a check that may be delayed.
	if err := l.out.Flush(); err != nil {
		return nil, err
	}
	secured := l.tls || l.plainOK
	res := l.auth.Authenticate(l.ctx, Credentials{User: user, Password: pass, Mechanism: method,
		Remote: l.conn.RemoteAddr(), Local: l.conn.LocalAddr(), TLS: l.tls, Secured: secured})
	if err := l.ctx.Err(); err != nil {
		return nil, err
	}
	if res.OK {
		name := res.User
		if name == "" {
			name = user
		}
		if err := l.out.Flush(); err != nil {
			return nil, err
		}
		return &Handoff{User: name, Token: res.Token, Method: method, TLS: l.tls, Secured: secured,
			Buffered: l.in.take()}, nil
	}
	return nil, l.failed(res.Temp)
}

// failed answers a failed login and ends the connection after too many.
func (l *login) failed(temp bool) error {
	if temp {
		l.temps++
		l.reply(msgAuthTemp)
	} else {
		l.failures++
		if d := l.cfg.FailureDelay; d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-l.ctx.Done():
				t.Stop()
				return l.ctx.Err()
			}
		}
		l.reply(msgAuthFailed)
	}
	if l.failures+l.temps >= l.cfg.MaxAuthFailures {
		l.out.Flush()
		return ErrAuthFailures
	}
	return nil
}

// badCommand answers an unknown or malformed command and ends the
// connection at the limit.
func (l *login) badCommand(msg string) error {
	if l.bad++; l.bad >= l.cfg.MaxBadCommands {
		l.goodbye(msgTooManyBad)
		return ErrBadCommands
	}
	l.reply(msg)
	return nil
}

func (l *login) reply(s string) {
	l.out.WriteString(s)
	l.out.WriteString("\r\n")
}

// goodbye sends a last line. A client that does not read it holds the
// connection for goodbyeTimeout at most.
func (l *login) goodbye(s string) {
	l.dw.timeout = min(l.dw.timeout, goodbyeTimeout)
	l.reply(s)
	l.out.Flush()
}

// shutdown says goodbye when ctx has ended.
func (l *login) shutdown() {
	l.wake.settled()
	l.goodbye(msgShutdown)
}

// flushIfIdle sends the pending answers unless another pipelined command
// is already waiting (RFC 2449 §6.6 lets the server batch them).
func (l *login) flushIfIdle() error {
	if l.in.hasLine() {
		return nil
	}
	return l.out.Flush()
}
