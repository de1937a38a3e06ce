// Package server is posthorn's SMTP protocol engine: RFC 5321 with SIZE
// (RFC 1870), 8BITMIME (RFC 6152), PIPELINING (RFC 2920),
// ENHANCEDSTATUSCODES (RFC 2034, RFC 3463), SMTPUTF8 (RFC 6531), CHUNKING
// (RFC 3030), STARTTLS (RFC 3207) and implicit TLS (RFC 8314), AUTH PLAIN
// and LOGIN (RFC 4954, RFC 4616) and DSN (RFC 3461); a listener serves
// either MX or message submission (RFC 6409).
//
// The engine knows nothing of queues. It asks a Backend whether to accept a
// sender and each recipient, and streams the message into a Message that
// the Backend makes durable; "250 Ok: queued" is sent only after
// Message.Commit returned nil.
//
// Replies and defaults follow Postfix's smtpd so that clients, log tools and
// admins see what they know, including Postfix 3.9's defences against SMTP
// smuggling (bare CR or LF in data is refused) and unauthorised pipelining.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/posthorn/posthorn/pkg/address"
	"github.com/posthorn/posthorn/pkg/maillog"
)

// Config holds the settings of new sessions. A zero limit means Postfix's
// default.
type Config struct {
	// Hostname is myhostname: in the EHLO reply, Received: and 421 replies.
	Hostname string
	// Banner follows "220 " in the greeting.
	Banner string
	// MaxMessageSize is message_size_limit (10240000), announced with SIZE.
	MaxMessageSize int64
	// MaxRecipients is smtpd_recipient_limit (1000).
	MaxRecipients int
	// HardErrorLimit is smtpd_hard_error_limit (20).
	HardErrorLimit int
	// JunkCommandLimit is smtpd_junk_command_limit (100).
	JunkCommandLimit int
	// LineLengthLimit caps a command line, without its ending (2048).
	LineLengthLimit int
	// HeaderSizeLimit caps one header field with its continuations (102400).
	HeaderSizeLimit int
	// HopCountLimit caps Received: fields in a message (50).
	HopCountLimit int
	// ProcessLimit caps concurrent sessions (100).
	ProcessLimit int
	// Timeout is smtpd_timeout (300s): the time a command may take to
	// arrive, and the time between two reads of message data.
	Timeout time.Duration
	// Log receives Postfix-style log lines; nil uses maillog.Default().
	Log *maillog.Logger
	// LookupPTR returns the verified name of a client, or "" when it has
	// none. Nil means every client is "unknown", as in Postfix logs.
	LookupPTR func(ip net.IP) string

	// TLS enables STARTTLS and implicit TLS. Nil: STARTTLS is not offered
	// and an implicit TLS listener cannot serve (its connections are closed
	// with a warning). The engine applies its own policy on top of it; see
	// tlsConfig.
	TLS *tls.Config
	// Auth checks AUTH credentials. Nil: AUTH is not offered, and a
	// submission listener accepts no mail at all.
	Auth Authenticator
	// PlaintextAuthLoopback offers AUTH to clients on a loopback address
	// without TLS (DESIGN §5: the development instance). Elsewhere AUTH
	// needs TLS (RFC 8314 §3, HOSTILE 10).
	PlaintextAuthLoopback bool
	// ReceivedAuthUser names the SASL login in the Received: field of
	// authenticated mail (Postfix's smtpd_sasl_authenticated_header). Off
	// by default: it tells every recipient the sender's login.
	ReceivedAuthUser bool
	// MaxSubmissionHeader caps the header section that is held in memory to
	// add a missing Date: or Message-ID: to authenticated mail (256 KiB).
	// A larger header passes unchanged.
	MaxSubmissionHeader int
}

// withDefaults fills in Postfix's defaults for zero values.
func (c Config) withDefaults() Config {
	if c.Hostname == "" {
		c.Hostname = "localhost"
	}
	if c.Banner == "" {
		c.Banner = c.Hostname + " ESMTP posthorn"
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	if c.MaxMessageSize <= 0 {
		c.MaxMessageSize = 10240000
	}
	def(&c.MaxRecipients, 1000)
	def(&c.HardErrorLimit, 20)
	def(&c.JunkCommandLimit, 100)
	def(&c.LineLengthLimit, 2048)
	def(&c.HeaderSizeLimit, 102400)
	def(&c.HopCountLimit, 50)
	def(&c.ProcessLimit, 100)
	def(&c.MaxSubmissionHeader, 256*1024)
	if c.Timeout <= 0 {
		c.Timeout = 300 * time.Second
	}
	if c.Log == nil {
		c.Log = maillog.Default()
	}
	if c.TLS != nil {
		c.TLS = tlsPolicy(c.TLS)
	}
	return c
}

// Mode is what a listener serves.
type Mode int

const (
	// ModeMX is the MX service on port 25: mail from anyone for local
	// recipients, STARTTLS offered (RFC 3207).
	ModeMX Mode = iota
	// ModeSubmission is message submission on port 587 (RFC 6409):
	// STARTTLS, and MAIL only after AUTH.
	ModeSubmission
	// ModeSubmissions is submission with implicit TLS on port 465
	// (RFC 8314 §3.3): TLS from the first byte, and MAIL only after AUTH.
	ModeSubmissions
)

func (m Mode) String() string {
	switch m {
	case ModeSubmission:
		return "submission"
	case ModeSubmissions:
		return "submissions"
	}
	return "smtp"
}

// ConnInfo describes the client of a session.
type ConnInfo struct {
	RemoteAddr net.Addr
	RemoteIP   net.IP // nil when the connection is not IP (tests, pipes)
	RemoteName string // verified PTR name, or "unknown"
	Helo       string // HELO/EHLO argument with unsafe characters replaced by '?'
	ESMTP      bool   // the client said EHLO
	Mode       Mode   // the listener's service
	// TLS is the state of the TLS layer, nil in plaintext. STARTTLS resets
	// everything else learnt before it (RFC 3207 §4.2).
	TLS *tls.ConnectionState
	// AuthUser is the login name that AUTH established, as the
	// Authenticator returned it; "" before AUTH. AuthMethod is the SASL
	// mechanism used (PLAIN, LOGIN).
	AuthUser   string
	AuthMethod string
}

// Recipient is an accepted RCPT TO with its DSN parameters (RFC 3461 §4).
type Recipient struct {
	Addr address.Mailbox
	// Notify is "" when not given, "NEVER", or a comma-separated subset of
	// SUCCESS, FAILURE and DELAY in that order (RFC 3461 §4.1).
	Notify string
	// ORCPT is the original recipient as "addr-type;address", xtext
	// decoded (RFC 3461 §4.2), or "" when not given.
	ORCPT string
}

// Envelope is one mail transaction.
type Envelope struct {
	Conn         *ConnInfo
	From         address.Mailbox // null for "<>"
	Body         string          // "7BIT" or "8BITMIME", as declared (RFC 6152)
	SMTPUTF8     bool            // RFC 6531
	DeclaredSize int64           // MAIL FROM SIZE=, 0 when not given (RFC 1870)
	Ret          string          // RET=FULL or HDRS, "" when not given (RFC 3461 §4.3)
	EnvID        string          // ENVID=, xtext decoded, "" when not given (RFC 3461 §4.4)
	Rcpts        []Recipient
	// EightBit is set before Commit when the content had octets above 127
	// although BODY=8BITMIME was not declared. Such mail is accepted, as
	// Postfix does, but a relay to a peer without 8BITMIME must know.
	EightBit bool
}

// Backend decides on senders and recipients and stores messages.
type Backend interface {
	// CheckSender returns nil to accept MAIL FROM, or the reply to refuse it.
	CheckSender(c *ConnInfo, from address.Mailbox) *Reply
	// CheckRecipient returns nil to accept a RCPT TO, or the reply to refuse
	// it, such as 550 5.1.1 for an unknown user or 554 5.7.1 for relaying.
	CheckRecipient(c *ConnInfo, env *Envelope, rcpt address.Mailbox) *Reply
	// Begin starts a message at DATA (before 354) or at the first BDAT.
	Begin(env *Envelope) (Message, *Reply)
}

// AuthResult is an Authenticator's verdict.
type AuthResult struct {
	OK bool
	// User is the login name to record on success (the authentication
	// service may canonicalise what the client typed).
	User string
	// Temp reports that the credentials were not checked: 454 4.7.0, and
	// the client may try again later. The service may refuse so because
	// the client or the user failed too often, which is logged as an
	// authentication failure, or because it is Unavailable.
	Temp bool
	// Unavailable: the check failed on the service's side (unreachable, a
	// backend down). Logged with Postfix's "Connection lost to
	// authentication server", which fail2ban does not count against the
	// client.
	Unavailable bool
	// Reason is logged with an unavailable service. Other failures are
	// logged and answered as "authentication failure" only, so that a
	// wrong user and a wrong password look the same.
	Reason string
}

// Authenticator checks the credentials of AUTH. It is called after the
// SASL exchange is decoded; mech is the mechanism (PLAIN, LOGIN). Any
// delay that slows down password guessing belongs here, in the service
// that knows the failure history of a client; the engine adds none.
type Authenticator interface {
	Authenticate(ctx context.Context, c *ConnInfo, mech, user, pass string) AuthResult
}

// Message receives one message.
type Message interface {
	// QueueID names the message in the Received: field, logs and replies.
	QueueID() string
	// Write receives content with LF line endings, starting with the
	// Received: field this engine prepends.
	Write(p []byte) (int, error)
	// Commit makes the message durable. Only after it returns nil does the
	// client hear "250 2.0.0 Ok: queued as ID".
	Commit() error
	// Abort discards the message. It is called instead of Commit, or after
	// a Commit that failed.
	Abort()
}

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("smtp server closed")

// Server accepts SMTP sessions.
type Server struct {
	backend Backend

	mu        sync.Mutex
	cfg       Config
	listeners map[net.Listener]struct{}
	sessions  map[*session]struct{}
	running   int           // goroutines to wait for in Shutdown
	changed   chan struct{} // closed and replaced whenever running drops

	draining atomic.Bool // Shutdown began: no new sessions, idle ones end
	forced   atomic.Bool // Shutdown's deadline passed: connections closed
}

// New returns a server that hands transactions to b.
func New(cfg Config, b Backend) *Server {
	return &Server{
		backend:   b,
		cfg:       cfg.withDefaults(),
		listeners: map[net.Listener]struct{}{},
		sessions:  map[*session]struct{}{},
		changed:   make(chan struct{}),
	}
}

// SetConfig replaces the configuration; sessions already running keep the
// one they started with.
func (s *Server) SetConfig(cfg Config) {
	cfg = cfg.withDefaults()
	s.mu.Lock()
	s.cfg = cfg
	s.mu.Unlock()
}

func (s *Server) config() Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

// Serve accepts connections on l until Shutdown, serving each in its own
// goroutine as the MX service. It returns ErrServerClosed after Shutdown,
// or the error that made accepting impossible.
func (s *Server) Serve(l net.Listener) error { return s.ServeMode(l, ModeMX) }

// ServeMode is Serve for a listener of the given service.
func (s *Server) ServeMode(l net.Listener, mode Mode) error {
	s.mu.Lock()
	if s.draining.Load() {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()

	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if s.draining.Load() {
				return ErrServerClosed
			}
			// Out of file descriptors and the like pass; retry as net/http
			// does rather than take the whole service down.
			if te, ok := err.(interface{ Temporary() bool }); ok && te.Temporary() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.config().Log.Warning("accept: %v; retrying in %v", err, backoff)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("smtp server: accept: %w", err)
		}
		backoff = 0
		if !s.enter() {
			c.Close()
			continue
		}
		go func() {
			defer s.leave()
			s.serve(c, mode)
		}()
	}
}

// ServeConn runs one MX session on c and returns when it ends, closing c.
func (s *Server) ServeConn(c net.Conn) { s.ServeConnMode(c, ModeMX) }

// ServeConnMode runs one session of the given service on c.
func (s *Server) ServeConnMode(c net.Conn, mode Mode) {
	if !s.enter() {
		c.Close()
		return
	}
	defer s.leave()
	s.serve(c, mode)
}

// enter registers a goroutine that Shutdown must wait for; it fails once
// Shutdown has begun.
func (s *Server) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining.Load() {
		return false
	}
	s.running++
	return true
}

func (s *Server) leave() {
	s.mu.Lock()
	s.running--
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// serve runs a session, or refuses it when ProcessLimit sessions are busy.
func (s *Server) serve(c net.Conn, mode Mode) {
	s.mu.Lock()
	cfg := s.cfg
	if len(s.sessions) >= cfg.ProcessLimit {
		s.mu.Unlock()
		refuse(c, cfg)
		return
	}
	ss := newSession(s, cfg, c, mode)
	s.sessions[ss] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.sessions, ss)
		s.mu.Unlock()
	}()
	if s.forced.Load() {
		c.Close()
		return
	}
	ss.run()
}

// refuse answers a connection over the process limit the way Postfix's
// smtpd answers when it cannot serve (RFC 5321 §3.1 allows 421 at once).
func refuse(c net.Conn, cfg Config) {
	defer c.Close()
	cfg.Log.Warning("process limit %d reached, refusing connection from %s", cfg.ProcessLimit, c.RemoteAddr())
	c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "421 4.3.2 %s Service currently unavailable\r\n", cfg.Hostname)
}

// Shutdown stops accepting, ends idle sessions with 421 and lets sessions
// inside a mail transaction finish until ctx is done; then it closes their
// connections, so a message still being received is aborted without any
// reply. It returns after every session has ended, with ctx's error if it
// had to cut sessions short.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining.Store(true)
	for l := range s.listeners {
		l.Close()
	}
	for ss := range s.sessions {
		ss.interruptIfIdle()
	}
	s.mu.Unlock()

	var result error
	done := ctx.Done()
	for {
		s.mu.Lock()
		n, ch := s.running, s.changed
		s.mu.Unlock()
		if n == 0 {
			return result
		}
		select {
		case <-ch:
		case <-done:
			result = ctx.Err()
			done = nil
			s.forced.Store(true)
			s.mu.Lock()
			for ss := range s.sessions {
				ss.raw.Close()
			}
			s.mu.Unlock()
		}
	}
}
