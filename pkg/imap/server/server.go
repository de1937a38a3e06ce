// Package server is posthorn's IMAP protocol engine: IMAP4rev1 (RFC 3501)
// and, for clients that ENABLE it, IMAP4rev2 (RFC 9051), with IDLE,
// UIDPLUS, MOVE, NAMESPACE, ID, ENABLE, LITERAL+/LITERAL-, SASL-IR,
// UNSELECT, CHILDREN, LIST-EXTENDED, LIST-STATUS, SPECIAL-USE,
// CREATE-SPECIAL-USE, ESEARCH, SEARCHRES, CONDSTORE, QRESYNC, BINARY,
// STATUS=SIZE, APPENDLIMIT, QUOTA and UTF8=ACCEPT.
//
// The engine owns the protocol: parsing, session state, what each client
// has been told (sequence numbers, pending expunges), when untagged
// updates may be sent (RFC 3501 §7.4.1, §5.5), and all limits. Mail lives
// behind the imap.Backend/User/Mailbox/Message interfaces.
//
// Replies follow Dovecot's wording and behaviour where RFCs leave room, so
// that clients tuned against Dovecot see nothing unusual.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/posthorn/posthorn/pkg/imap"
	"github.com/posthorn/posthorn/pkg/imap/wire"
	"github.com/posthorn/posthorn/pkg/maillog"
)

// Config holds the settings of new sessions. Zero values mean the
// documented default.
type Config struct {
	// Backend checks passwords and opens mail. Required.
	Backend imap.Backend

	// TLSConfig enables STARTTLS. Connections accepted from a TLS
	// listener (port 993) are implicit TLS and never offer it.
	TLSConfig *tls.Config
	// StartTLS, when set, replaces tls.Server for STARTTLS: it must
	// complete the handshake and return the secured connection.
	StartTLS func(net.Conn) (*tls.Conn, error)

	// AllowCleartext permits LOGIN and AUTHENTICATE PLAIN without TLS on
	// any connection (Dovecot auth_allow_cleartext=yes). By default only
	// TLS and loopback connections may log in; others see LOGINDISABLED
	// and get NO [PRIVACYREQUIRED] (RFC 3501 §6.2.3, RFC 8314).
	AllowCleartext bool
	// NoLoopbackCleartext refuses cleartext logins on loopback too.
	NoLoopbackCleartext bool

	// Greeting follows "* OK [CAPABILITY ...] " (default "posthorn ready.").
	Greeting string
	// ID is returned for the ID command (RFC 2971); default name=posthorn.
	ID map[string]string

	// AppendLimit is the largest message APPEND accepts, announced as
	// APPENDLIMIT (RFC 7889); default message_size_limit, 10240000.
	AppendLimit int64
	// LiteralMinus advertises LITERAL- instead of LITERAL+ (RFC 7888):
	// non-synchronising literals above 4096 octets are then refused.
	LiteralMinus bool
	// QuotaResources lists the RFC 9208 resources the store reports
	// (default STORAGE and MESSAGE).
	QuotaResources []string
	// NoIMAP4rev2 and NoUTF8Accept withhold IMAP4rev2 (RFC 9051) and
	// UTF8=ACCEPT (RFC 6855), which Dovecot 2.3 does not offer, for sites
	// whose clients misbehave once they see them.
	NoIMAP4rev2, NoUTF8Accept bool

	// Limits bound commands after login; PreAuthLimits before login
	// (defaults wire.DefaultLimits and wire.PreAuthLimits).
	Limits        wire.Limits
	PreAuthLimits wire.Limits

	// IdleTimeout logs out an authenticated client that sends nothing:
	// RFC 3501 §5.4 requires at least 30 minutes, the default. It also
	// ends an IDLE without DONE.
	IdleTimeout time.Duration
	// PreAuthTimeout logs out a client that has not logged in (60s).
	PreAuthTimeout time.Duration
	// CommandTimeout bounds the rest of a command once its first octet
	// arrived, and every write to the client (5 minutes).
	CommandTimeout time.Duration
	// MinDataRate is the slowest an APPEND message may arrive, in octets
	// per second (1024): its literal gets CommandTimeout plus its size at
	// this rate, so a slow client cannot hold a session indefinitely
	// (HOSTILE 35).
	MinDataRate int64

	// MaxBadCommands ends a session after that many BAD replies (20,
	// Dovecot's CLIENT_MAX_BAD_COMMANDS).
	MaxBadCommands int
	// MaxPreAuthCommands ends a session that has sent that many commands
	// without logging in (50).
	MaxPreAuthCommands int
	// MaxAuthFailures ends a session after that many failed logins (3).
	MaxAuthFailures int
	// AuthFailureDelay is waited before answering a failed login (2s, as
	// Dovecot's initial auth penalty); negative disables it.
	AuthFailureDelay time.Duration
	// MaxSessions caps concurrent sessions of a Server (0: no cap).
	MaxSessions int

	// TakeOver, when set, replaces the answer to a successful LOGIN or
	// AUTHENTICATE: the session ends without writing to or closing the
	// connection and TakeOver receives it (the *tls.Conn after STARTTLS or
	// on port 993) with the User the Backend returned, the command's tag,
	// the octets the client already sent behind the command and whether
	// the connection is secure. imap-login uses it to pass the session to
	// the user's imapd, which answers the tag (ServeAuthenticated). It is
	// called on the session's goroutine, with no deadline set on c; c is
	// TakeOver's to close.
	TakeOver func(c net.Conn, h Handoff)

	// Log receives one line per login, logout and error; nil uses
	// maillog.Default().
	Log *maillog.Logger
}

func (c Config) withDefaults() Config {
	if c.Greeting == "" {
		c.Greeting = "posthorn ready."
	}
	if c.ID == nil {
		c.ID = map[string]string{"name": "posthorn"}
	}
	if c.AppendLimit <= 0 {
		c.AppendLimit = 10240000
	}
	if c.QuotaResources == nil {
		c.QuotaResources = []string{"STORAGE", "MESSAGE"}
	}
	if c.Limits == (wire.Limits{}) {
		c.Limits = wire.DefaultLimits
	}
	if c.PreAuthLimits == (wire.Limits{}) {
		c.PreAuthLimits = wire.PreAuthLimits
	}
	if c.LiteralMinus {
		c.Limits.NonSyncMax = 4096
		c.PreAuthLimits.NonSyncMax = 4096
	}
	// APPEND message data is not part of MaxCommand, but a refused
	// non-synchronising APPEND of the allowed size is worth skipping.
	if c.Limits.MaxDiscard < c.AppendLimit {
		c.Limits.MaxDiscard = c.AppendLimit
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 30 * time.Minute
	}
	if c.PreAuthTimeout <= 0 {
		c.PreAuthTimeout = 60 * time.Second
	}
	if c.CommandTimeout <= 0 {
		c.CommandTimeout = 5 * time.Minute
	}
	if c.MinDataRate <= 0 {
		c.MinDataRate = 1024
	}
	if c.MaxBadCommands <= 0 {
		c.MaxBadCommands = 20
	}
	if c.MaxPreAuthCommands <= 0 {
		c.MaxPreAuthCommands = 50
	}
	if c.MaxAuthFailures <= 0 {
		c.MaxAuthFailures = 3
	}
	if c.AuthFailureDelay == 0 {
		c.AuthFailureDelay = 2 * time.Second
	}
	if c.Log == nil {
		c.Log = maillog.Default()
	}
	return c
}

// Server runs IMAP sessions.
type Server struct {
	cfg Config

	mu        sync.Mutex
	listeners map[net.Listener]bool
	sessions  map[*session]bool
	closed    bool
	wg        sync.WaitGroup
	active    atomic.Int64

	capsPostAuth string // constant part after login
}

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("imap server closed")

// New returns a server with cfg.
func New(cfg Config) *Server {
	s := &Server{cfg: cfg.withDefaults(), listeners: map[net.Listener]bool{}, sessions: map[*session]bool{}}
	s.capsPostAuth = s.buildPostAuthCaps()
	return s
}

// Serve accepts connections on l until Close. Connections that l returns
// as *tls.Conn are implicit TLS (port 993).
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[l] = true
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
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.ServeConn(c)
		}()
	}
}

// ServeConn runs one session on c and returns when it ends; c is closed.
func (s *Server) ServeConn(c net.Conn) { s.serve(c, nil) }

// Handoff describes a session whose login another process (imap-login)
// handled, so that a per-user process can go on with it.
type Handoff struct {
	// User is the logged-in user.
	User imap.User
	// Tag is the tag of the LOGIN or AUTHENTICATE that logged in; the
	// session begins by answering it OK. When empty, the session greets
	// with PREAUTH (RFC 3501 §7.1.4).
	Tag string
	// Input holds octets the login process read beyond the login command.
	Input []byte
	// Secure reports a TLS or otherwise trusted connection.
	Secure bool
}

// ServeAuthenticated runs a session that starts logged in as h.User.
func (s *Server) ServeAuthenticated(c net.Conn, h Handoff) { s.serve(c, &h) }

func (s *Server) serve(c net.Conn, h *Handoff) {
	if n := s.active.Add(1); s.cfg.MaxSessions > 0 && n > int64(s.cfg.MaxSessions) {
		s.active.Add(-1)
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte("* BYE [UNAVAILABLE] Maximum number of connections exceeded.\r\n"))
		c.Close()
		return
	}
	defer s.active.Add(-1)
	ss := newSession(s, c)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.Close()
		return
	}
	s.sessions[ss] = true
	s.mu.Unlock()
	ss.run(h)
	s.mu.Lock()
	delete(s.sessions, ss)
	s.mu.Unlock()
}

// Close stops the listeners and ends every session with a BYE.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for l := range s.listeners {
		l.Close()
	}
	sessions := make([]*session, 0, len(s.sessions))
	for ss := range s.sessions {
		sessions = append(sessions, ss)
	}
	s.mu.Unlock()
	for _, ss := range sessions {
		ss.shutdown()
	}
	s.wg.Wait()
	return nil
}

// Sessions returns the number of sessions running.
func (s *Server) Sessions() int { return int(s.active.Load()) }

// isLoopback reports whether a remote address is on this host.
func isLoopback(a net.Addr) bool {
	switch t := a.(type) {
	case *net.TCPAddr:
		return t.IP.IsLoopback()
	case *net.UnixAddr:
		return true
	}
	return false
}

// buildPostAuthCaps lists the capabilities after login, in Dovecot's
// order where Dovecot has them.
func (s *Server) buildPostAuthCaps() string {
	c := []string{"IMAP4rev1", "IMAP4rev2", "SASL-IR", "ID", "ENABLE", "IDLE", s.literalCap(),
		"NAMESPACE", "UNSELECT", "CHILDREN", "UIDPLUS", "MOVE", "LIST-EXTENDED", "LIST-STATUS",
		"SPECIAL-USE", "CREATE-SPECIAL-USE", "ESEARCH", "SEARCHRES", "CONDSTORE", "QRESYNC", "BINARY",
		"STATUS=SIZE", "APPENDLIMIT=" + strconv.FormatInt(s.cfg.AppendLimit, 10), "UTF8=ACCEPT", "QUOTA"}
	if s.cfg.NoIMAP4rev2 {
		c = slices.DeleteFunc(c, func(x string) bool { return x == "IMAP4rev2" })
	}
	if s.cfg.NoUTF8Accept {
		c = slices.DeleteFunc(c, func(x string) bool { return x == "UTF8=ACCEPT" })
	}
	for _, r := range s.cfg.QuotaResources {
		c = append(c, "QUOTA=RES-"+r)
	}
	return strings.Join(c, " ")
}

func (s *Server) literalCap() string {
	if s.cfg.LiteralMinus {
		return "LITERAL-"
	}
	return "LITERAL+"
}

// ctx is the context of store calls; sessions have no per-call deadline
// beyond the store's own.
var bg = context.Background()
