package server

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/posthorn/posthorn/pkg/imap"
	"github.com/posthorn/posthorn/pkg/imap/wire"
)

type state uint8

const (
	stateNotAuth state = iota
	stateAuth
	stateSelected
	stateLogout
)

// Extensions a client turned on with ENABLE (RFC 5161) or by using them.
const (
	extCondStore uint8 = 1 << iota // RFC 7162 §3.1: a CONDSTORE enabling command was seen
	extQResync
	extRev2 // IMAP4rev2 (RFC 9051)
	extUTF8 // UTF8=ACCEPT (RFC 6855)
)

// session is one client connection. Its fields are small on purpose: an
// idle session holds no buffers (see wire.In and wire.Writer).
type session struct {
	srv    *Server
	cfg    *Config
	conn   net.Conn // TLS after STARTTLS
	linger bool     // drain the input before closing (see lingerClose)
	cw     *connWriter
	in     *wire.In
	dec    *wire.Decoder
	out    *wire.Writer

	state     state
	ext       uint8
	tls       bool
	secure    bool // TLS, or loopback where cleartext is allowed
	bad       int
	commands  int
	authFails int

	user imap.User
	info *imap.ConnInfo
	// takeover is set when a login passes the connection on (Config.TakeOver).
	takeover *Handoff
	sel      *selected

	// idling is set while the session waits in IDLE; wake is set by the
	// store's notification. See idle.go.
	idling atomic.Bool
	wake   atomic.Bool
	closed atomic.Bool
	mu     sync.Mutex // guards conn for shutdown and wake-ups
}

// connWriter applies the write deadline to every write, so a client that
// stops reading cannot hold a session forever.
type connWriter struct {
	c       net.Conn
	timeout time.Duration
}

func (w *connWriter) Write(p []byte) (int, error) {
	w.c.SetWriteDeadline(time.Now().Add(w.timeout))
	return w.c.Write(p)
}

func newSession(srv *Server, c net.Conn) *session {
	s := &session{srv: srv, cfg: &srv.cfg, conn: c}
	s.cw = &connWriter{c: c, timeout: srv.cfg.CommandTimeout}
	s.in = wire.NewIn(c)
	s.out = wire.NewWriter(s.cw)
	s.dec = wire.NewDecoder(s.in, srv.cfg.PreAuthLimits)
	s.dec.Continue = s.continueRequest
	if _, ok := c.(*tls.Conn); ok {
		s.tls, s.secure = true, true // implicit TLS (port 993)
	}
	if isLoopback(c.RemoteAddr()) && !srv.cfg.NoLoopbackCleartext {
		s.secure = true
	}
	return s
}

// continueRequest sends a command continuation request for a literal.
// Dovecot sends "+ OK".
func (s *session) continueRequest() error {
	s.out.Raw("+ OK\r\n")
	return s.out.Flush()
}

// shutdown ends the session from another goroutine (Server.Close).
func (s *session) shutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Swap(true) {
		return
	}
	// Wake a blocked read; the session writes its BYE and closes.
	s.conn.SetReadDeadline(time.Now())
}

func (s *session) log(format string, args ...any) {
	s.cfg.Log.Info("imap: "+format, args...)
}

func (s *session) remote() string {
	if a := s.conn.RemoteAddr(); a != nil {
		return a.String()
	}
	return "?"
}

// run is the session's life: greeting, commands, logout.
func (s *session) run(h *Handoff) {
	if tc, ok := s.conn.(*tls.Conn); ok {
		tc.SetDeadline(time.Now().Add(s.cfg.CommandTimeout))
		if err := tc.Handshake(); err != nil {
			s.conn.Close()
			return
		}
		tc.SetDeadline(time.Time{})
	}
	defer s.cleanup()
	if h != nil {
		s.user, s.state = h.User, stateAuth
		s.secure = s.secure || h.Secure
		s.dec.SetLimits(s.cfg.Limits)
		s.in.Preload(h.Input)
		if h.Tag != "" {
			s.reply(h.Tag, "OK", "[CAPABILITY "+s.capabilities()+"] Logged in")
		} else {
			s.out.Raw("* PREAUTH [CAPABILITY " + s.capabilities() + "] Logged in as " + h.User.Username() + "\r\n")
		}
	} else {
		s.out.Raw("* OK [CAPABILITY " + s.capabilities() + "] " + s.cfg.Greeting + "\r\n")
	}
	for s.state != stateLogout {
		if err := s.next(); err != nil {
			return
		}
	}
}

func (s *session) cleanup() {
	if h := s.takeover; h != nil {
		// Whatever was written before the login command must reach the
		// client before another process writes to the connection.
		s.out.Flush()
		s.out.Release()
		s.mu.Lock()
		s.closed.Store(true) // a late shutdown must not touch c now
		c := s.conn
		s.mu.Unlock()
		c.SetDeadline(time.Time{})
		s.cfg.TakeOver(c, *h)
		return
	}
	s.out.Release()
	if s.sel != nil {
		s.sel.close()
		s.sel = nil
	}
	if s.user != nil {
		s.log("Logged out user=<%s> rip=%s", s.user.Username(), s.remote())
		s.user.Logout()
		s.user = nil
	}
	if s.linger {
		lingerClose(s.conn)
		return
	}
	s.conn.Close()
}

// lingerClose closes a connection whose client may still be sending (a
// line over the limit): closing with unread input makes the kernel answer
// with a reset, which can destroy the BYE before the client reads it. So
// the write side is shut first and the input drained for a moment.
func lingerClose(c net.Conn) {
	defer c.Close()
	cw, ok := c.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	io.CopyN(io.Discard, c, 8<<20)
}

// next waits for and executes one command. A non-nil error ends the
// session (the BYE, if any, has been written).
func (s *session) next() error {
	// Between commands the session holds no buffers.
	if err := s.out.Release(); err != nil {
		return err
	}
	s.dec.Release()
	timeout := s.cfg.IdleTimeout
	if s.state == stateNotAuth {
		timeout = s.cfg.PreAuthTimeout
	}
	s.conn.SetReadDeadline(time.Now().Add(timeout))
	if s.closed.Load() {
		// Shutdown came while a command ran; its deadline was overwritten.
		s.bye("Server shutting down.")
		return errShutdown
	}
	if err := s.in.Wait(); err != nil {
		return s.readFailed(err)
	}
	s.conn.SetReadDeadline(time.Now().Add(s.cfg.CommandTimeout))
	cmd, err := s.dec.ReadCommand()
	if err != nil {
		var we *wire.Error
		if !errors.As(err, &we) {
			return s.readFailed(err)
		}
		if we.Fatal {
			s.bye(we.Text)
			s.linger = true
			return err
		}
		code := ""
		if we.Code != "" {
			code = "[" + we.Code + "] "
		}
		return s.badReply(we.Tag, code+"Error in IMAP command: "+we.Text)
	}
	return s.execute(cmd)
}

// readFailed handles a read error: timeouts get a BYE, the rest a silent
// close.
func (s *session) readFailed(err error) error {
	if s.closed.Load() {
		s.bye("Server shutting down.")
		return err
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		s.bye("Disconnected for inactivity.")
	}
	return err
}

// bye sends an untagged BYE and flushes.
func (s *session) bye(text string) {
	s.out.Raw("* BYE " + text + "\r\n")
	s.out.Flush()
	s.state = stateLogout
}

// badReply answers BAD and counts it; too many end the session.
func (s *session) badReply(tag, text string) error {
	s.out.Raw(tag + " BAD " + text + "\r\n")
	s.bad++
	if s.bad >= s.cfg.MaxBadCommands {
		s.bye("Too many invalid IMAP commands.")
		return errTooManyBad
	}
	return nil
}

var errTooManyBad = errors.New("too many bad commands")

// reply writes a tagged response.
func (s *session) reply(tag, status, text string) {
	s.out.Raw(tag)
	s.out.Byte(' ')
	s.out.Raw(status)
	s.out.Byte(' ')
	s.out.Raw(text)
	s.out.CRLF()
}

// storeError answers a failed store call with NO and the error's code.
func (s *session) storeError(tag string, err error) {
	if e := imap.AsError(err); e != nil {
		text := e.Text
		if e.Code != "" {
			text = "[" + e.Code + "] " + text
		}
		s.reply(tag, "NO", text)
		return
	}
	s.cfg.Log.Warning("imap: store error user=<%s>: %v", s.username(), err)
	s.reply(tag, "NO", "[SERVERBUG] Internal error occurred. Refer to server log for more information.")
}

func (s *session) username() string {
	if s.user == nil {
		return ""
	}
	return s.user.Username()
}

// capabilities returns the CAPABILITY list for the current state.
func (s *session) capabilities() string {
	if s.state != stateNotAuth {
		return s.srv.capsPostAuth
	}
	var b strings.Builder
	b.WriteString("IMAP4rev1 ")
	if !s.cfg.NoIMAP4rev2 {
		b.WriteString("IMAP4rev2 ")
	}
	b.WriteString("SASL-IR ID ENABLE IDLE ")
	b.WriteString(s.srv.literalCap())
	if !s.tls && (s.cfg.TLSConfig != nil || s.cfg.StartTLS != nil) {
		b.WriteString(" STARTTLS")
	}
	if s.cleartextOK() {
		b.WriteString(" AUTH=PLAIN")
	} else {
		b.WriteString(" LOGINDISABLED")
	}
	return b.String()
}

func (s *session) cleartextOK() bool { return s.secure || s.cfg.AllowCleartext }

// commandStates lists where each command is valid (RFC 3501 §6).
var commandStates = map[string]uint8{
	"CAPABILITY": 1<<stateNotAuth | 1<<stateAuth | 1<<stateSelected,
	"NOOP":       1<<stateNotAuth | 1<<stateAuth | 1<<stateSelected,
	"LOGOUT":     1<<stateNotAuth | 1<<stateAuth | 1<<stateSelected,
	"ID":         1<<stateNotAuth | 1<<stateAuth | 1<<stateSelected,

	"STARTTLS":     1 << stateNotAuth,
	"LOGIN":        1 << stateNotAuth,
	"AUTHENTICATE": 1 << stateNotAuth,

	"ENABLE":       1<<stateAuth | 1<<stateSelected,
	"SELECT":       1<<stateAuth | 1<<stateSelected,
	"EXAMINE":      1<<stateAuth | 1<<stateSelected,
	"CREATE":       1<<stateAuth | 1<<stateSelected,
	"DELETE":       1<<stateAuth | 1<<stateSelected,
	"RENAME":       1<<stateAuth | 1<<stateSelected,
	"SUBSCRIBE":    1<<stateAuth | 1<<stateSelected,
	"UNSUBSCRIBE":  1<<stateAuth | 1<<stateSelected,
	"LIST":         1<<stateAuth | 1<<stateSelected,
	"LSUB":         1<<stateAuth | 1<<stateSelected,
	"STATUS":       1<<stateAuth | 1<<stateSelected,
	"APPEND":       1<<stateAuth | 1<<stateSelected,
	"NAMESPACE":    1<<stateAuth | 1<<stateSelected,
	"IDLE":         1<<stateAuth | 1<<stateSelected,
	"GETQUOTA":     1<<stateAuth | 1<<stateSelected,
	"GETQUOTAROOT": 1<<stateAuth | 1<<stateSelected,
	"SETQUOTA":     1<<stateAuth | 1<<stateSelected,

	"CHECK":    1 << stateSelected,
	"CLOSE":    1 << stateSelected,
	"UNSELECT": 1 << stateSelected,
	"EXPUNGE":  1 << stateSelected,
	"SEARCH":   1 << stateSelected,
	"FETCH":    1 << stateSelected,
	"STORE":    1 << stateSelected,
	"COPY":     1 << stateSelected,
	"MOVE":     1 << stateSelected,
}

// execute runs one parsed command.
func (s *session) execute(c *wire.Command) error {
	allowed := commandStates[c.Name]
	if allowed&(1<<s.state) == 0 {
		// Like Dovecot: commands of other states are unknown here.
		switch {
		case s.state == stateNotAuth && allowed&(1<<stateAuth|1<<stateSelected) != 0:
			// Before login: refuse without counting towards BAD.
			s.reply(c.Tag, "BAD", "Error in IMAP command "+c.Name+": Login first.")
			return s.countPreAuth()
		case allowed == 1<<stateSelected:
			return s.badReply(c.Tag, "No mailbox selected.")
		default:
			return s.badReply(c.Tag, "Error in IMAP command "+c.Name+": Unknown command.")
		}
	}
	if s.state == stateNotAuth {
		if err := s.countPreAuth(); err != nil {
			return err
		}
	}
	var err error
	switch c.Name {
	case "CAPABILITY":
		s.out.Raw("* CAPABILITY " + s.capabilities() + "\r\n")
		if s.state == stateNotAuth {
			s.reply(c.Tag, "OK", "Pre-login capabilities listed, post-login capabilities have more.")
		} else {
			s.done(c, "OK", "Capability completed.")
		}
	case "NOOP":
		s.done(c, "OK", "NOOP completed.")
	case "LOGOUT":
		s.out.Raw("* BYE Logging out\r\n")
		s.reply(c.Tag, "OK", "Logout completed.")
		s.out.Flush()
		s.state = stateLogout
	case "ID":
		s.cmdID(c)
	case "STARTTLS":
		err = s.cmdStartTLS(c)
	case "LOGIN":
		err = s.cmdLogin(c)
	case "AUTHENTICATE":
		err = s.cmdAuthenticate(c)
	case "ENABLE":
		s.cmdEnable(c)
	case "NAMESPACE":
		s.cmdNamespace(c)
	case "SELECT", "EXAMINE":
		err = s.cmdSelect(c)
	case "CREATE":
		err = s.cmdCreate(c)
	case "DELETE":
		err = s.cmdDelete(c)
	case "RENAME":
		err = s.cmdRename(c)
	case "SUBSCRIBE", "UNSUBSCRIBE":
		err = s.cmdSubscribe(c)
	case "LIST", "LSUB":
		err = s.cmdList(c)
	case "STATUS":
		err = s.cmdStatus(c)
	case "APPEND":
		err = s.cmdAppend(c)
	case "IDLE":
		err = s.cmdIdle(c)
	case "GETQUOTA", "GETQUOTAROOT", "SETQUOTA":
		err = s.cmdQuota(c)
	case "CHECK":
		s.done(c, "OK", "Check completed.")
	case "CLOSE", "UNSELECT":
		s.cmdClose(c)
	case "EXPUNGE":
		err = s.cmdExpunge(c)
	case "SEARCH":
		err = s.cmdSearch(c)
	case "FETCH":
		err = s.cmdFetch(c)
	case "STORE":
		err = s.cmdStore(c)
	case "COPY", "MOVE":
		err = s.cmdCopy(c)
	default:
		return s.badReply(c.Tag, "Error in IMAP command "+c.Name+": Unknown command.")
	}
	if err == nil {
		err = s.out.Err()
	}
	return err
}

// countPreAuth bounds how many commands a client may send before login.
func (s *session) countPreAuth() error {
	s.commands++
	if s.commands > s.cfg.MaxPreAuthCommands {
		s.bye("Too many commands before login.")
		return errTooManyBad
	}
	return nil
}

// done ends a command: in the selected state it first reports what
// changed in the mailbox (RFC 3501 §7: untagged updates go before the
// tagged reply), then writes the tagged response.
func (s *session) done(c *wire.Command, status, text string) {
	if s.sel != nil {
		s.sync(expungesAllowed(c))
	}
	s.reply(c.Tag, status, text)
}

// doneExpunged ends EXPUNGE, UID EXPUNGE and MOVE: once CONDSTORE is in
// use the tagged OK carries the new HIGHESTMODSEQ, so a client can note
// that its cache is current after the expunges (RFC 7162 §3.2.10, as
// Dovecot does).
func (s *session) doneExpunged(c *wire.Command, text string) {
	s.sync(true)
	if s.condstore() && !s.sel.noModSeq {
		text = "[HIGHESTMODSEQ " + u64(s.sel.modseq) + "] " + text
	}
	s.reply(c.Tag, "OK", text)
}

// expungesAllowed: EXPUNGE (and VANISHED) must not be sent while
// responding to FETCH, STORE or SEARCH; the UID forms are exempt
// (RFC 3501 §7.4.1, RFC 9051 §7.5.1).
func expungesAllowed(c *wire.Command) bool {
	switch c.Name {
	case "FETCH", "STORE", "SEARCH":
		return c.UID
	}
	return true
}
