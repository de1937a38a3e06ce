// Package server is posthorn's SMTP protocol engine: RFC 5321 with SIZE
// (RFC 1870), 8BITMIME (RFC 6152), PIPELINING (RFC 2920),
// ENHANCEDSTATUSCODES (RFC 2034, RFC 3463), SMTPUTF8 (RFC 6531) and
// CHUNKING (RFC 3030).
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
	if c.Timeout <= 0 {
		c.Timeout = 300 * time.Second
	}
	if c.Log == nil {
		c.Log = maillog.Default()
	}
	return c
}

// ConnInfo describes the client of a session.
type ConnInfo struct {
	RemoteAddr net.Addr
	RemoteIP   net.IP // nil when the connection is not IP (tests, pipes)
	RemoteName string // verified PTR name, or "unknown"
	Helo       string // HELO/EHLO argument with unsafe characters replaced by '?'
	ESMTP      bool   // the client said EHLO
	// A TLS connection state and the SASL user join here when STARTTLS and
	// AUTH are implemented; both must be reset by STARTTLS (RFC 3207 §4.2).
}

// Recipient is an accepted RCPT TO. DSN's NOTIFY and ORCPT belong here.
type Recipient struct {
	Addr address.Mailbox
}

// Envelope is one mail transaction.
type Envelope struct {
	Conn         *ConnInfo
	From         address.Mailbox // null for "<>"
	Body         string          // "7BIT" or "8BITMIME", as declared (RFC 6152)
	SMTPUTF8     bool            // RFC 6531
	DeclaredSize int64           // MAIL FROM SIZE=, 0 when not given (RFC 1870)
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
// goroutine. It returns ErrServerClosed after Shutdown, or the error that
// made accepting impossible.
func (s *Server) Serve(l net.Listener) error {
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
			s.serve(c)
		}()
	}
}

// ServeConn runs one session on c and returns when it ends, closing c.
func (s *Server) ServeConn(c net.Conn) {
	if !s.enter() {
		c.Close()
		return
	}
	defer s.leave()
	s.serve(c)
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
func (s *Server) serve(c net.Conn) {
	s.mu.Lock()
	cfg := s.cfg
	if len(s.sessions) >= cfg.ProcessLimit {
		s.mu.Unlock()
		refuse(c, cfg)
		return
	}
	ss := newSession(s, cfg, c)
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
