package pop3

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/posthorn/posthorn/pkg/mailbox"
	"github.com/posthorn/posthorn/pkg/maillog"
)

// SessionConfig configures the TRANSACTION and UPDATE states
// (ServeSession). Zero values mean the documented defaults.
type SessionConfig struct {
	// IdleTimeout is the autologout timer: a client silent that long is
	// disconnected without entering UPDATE, so nothing is deleted
	// (RFC 1939 §3 requires at least 10 minutes, the default).
	IdleTimeout time.Duration
	// WriteTimeout bounds each write to the client (5 minutes), so a
	// client that stops reading a RETR is dropped.
	WriteTimeout time.Duration
	// MaxBadCommands closes the connection at that many unknown or
	// malformed commands (10).
	MaxBadCommands int
	// NoFlagUpdates leaves \Seen alone; by default messages retrieved with
	// RETR and not deleted get \Seen at QUIT, as Dovecot does
	// (pop3_no_flag_updates = no), so IMAP shows them as read.
	NoFlagUpdates bool
	// LockFile is the lock's name in the Maildir root (DefaultLockFile).
	LockFile string
	// Log receives the Disconnected line of every session and warnings;
	// nil uses maillog.Default().
	Log *maillog.Logger
}

func (c SessionConfig) withDefaults() SessionConfig {
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 10 * time.Minute
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 5 * time.Minute
	}
	if c.MaxBadCommands <= 0 {
		c.MaxBadCommands = 10
	}
	if c.Log == nil {
		c.Log = maillog.Default()
	}
	return c
}

// msg is one message of the maildrop as the session numbers it.
type msg struct {
	uid       uint32
	size      int64
	uidl      string
	deleted   bool
	retrieved bool
}

type session struct {
	ctx  context.Context
	cfg  SessionConfig
	h    *Handoff
	conn net.Conn
	in   *lineReader
	dw   *deadlineWriter
	out  *bufio.Writer
	mb   *mailbox.Mailbox
	lock *os.File

	msgs []msg
	size int64 // maildrop size at login
	bad  int

	// counters for the log line
	top, topBytes, retr, retrBytes int64
	deleted                        int
}

// ServeSession runs the TRANSACTION and UPDATE states (RFC 1939 §5, §6)
// for a Handoff from ServeLogin, on the INBOX of store. It first takes the
// maildrop lock and answers the authentication command: "+OK Logged in."
// or "-ERR [IN-USE] ..." when another POP3 session holds the maildrop
// (RFC 2449 §8.1.2; the connection is then closed and ErrInUse returned).
//
// The maildrop is the INBOX as it was at login and stays so (RFC 2180's
// practice for IMAP sessions sharing a mailbox, applied to POP3): messages
// delivered meanwhile wait for the next session, message numbers never
// change, and a message that another session (IMAP) expunged is still
// listed but RETR and TOP answer -ERR for it. Deletions happen only at QUIT (UPDATE), for the marked
// messages that still exist; a connection that ends any other way deletes
// nothing (HOSTILE 46). ServeSession closes the connection and returns nil
// after a QUIT whose UPDATE succeeded, or why the session ended.
func ServeSession(ctx context.Context, h *Handoff, store *mailbox.Store, cfg SessionConfig) error {
	cfg = cfg.withDefaults()
	s := &session{ctx: ctx, cfg: cfg, h: h, conn: h.Conn}
	defer s.conn.Close()
	wake := wakeOnDone(ctx, s.conn)
	defer wake.stop()
	s.in = newLineReader(io.MultiReader(bytes.NewReader(h.Buffered), s.conn))
	s.dw = &deadlineWriter{s.conn, cfg.WriteTimeout}
	s.out = bufio.NewWriterSize(s.dw, 32<<10)

	reason, err := s.run(store)
	if s.lock != nil {
		s.lock.Close()
	}
	if reason == "" {
		// After a failed write nothing more is sent: it could land in the
		// middle of a RETR body.
		var we *writeError
		switch {
		case errors.As(err, &we) && ctx.Err() != nil:
			reason = "Server shutting down"
		case errors.As(err, &we) && errors.Is(err, os.ErrDeadlineExceeded):
			reason = "Client stopped reading our output"
		case errors.As(err, &we):
			reason = "Connection closed"
		case ctx.Err() != nil:
			reason = "Server shutting down"
			wake.settled()
			s.goodbye(msgShutdown)
		case errors.Is(err, os.ErrDeadlineExceeded):
			reason = "Inactivity"
			s.goodbye(msgInactivity)
		default:
			reason = "Connection closed"
		}
	}
	cfg.Log.Info("pop3(%s)<%d>: Disconnected: %s top=%d/%d, retr=%d/%d, del=%d/%d, size=%d",
		logName(h.User), os.Getpid(), reason, s.top, s.topBytes, s.retr, s.retrBytes, s.deleted, len(s.msgs), s.size)
	if errors.Is(err, ErrQuit) {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// run returns the reason for the log line ("" to derive it from err).
func (s *session) run(store *mailbox.Store) (string, error) {
	lock, err := lockMaildrop(store.Path(), s.cfg.LockFile)
	if errors.Is(err, ErrInUse) {
		s.goodbye("-ERR [IN-USE] Mailbox is locked by another POP3 session")
		return "Mailbox is locked by another POP3 session", err
	}
	if err != nil {
		s.cfg.Log.Warning("pop3(%s): lock %s: %v", logName(s.h.User), store.Path(), err)
		s.goodbye("-ERR [SYS/TEMP] Couldn't open INBOX.")
		return "Couldn't lock the maildrop", err
	}
	s.lock = lock
	if err := s.open(store); err != nil {
		s.cfg.Log.Warning("pop3(%s): open INBOX of %s: %v", logName(s.h.User), store.Path(), err)
		s.goodbye("-ERR [SYS/TEMP] Couldn't open INBOX.")
		return "Couldn't open INBOX", err
	}
	s.reply("+OK Logged in.")
	for {
		if !s.in.hasLine() {
			if err := s.out.Flush(); err != nil {
				return "", err
			}
		}
		s.conn.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
		if err := s.ctx.Err(); err != nil {
			return "", err
		}
		line, err := s.in.line(MaxCommandLine)
		switch {
		case errors.Is(err, errLineTooLong):
			if err := s.badCommand(msgTooLong); err != nil {
				return "Too many bad commands", err
			}
			continue
		case errors.Is(err, errLineFlood):
			s.goodbye(msgTooLong)
			return "Too many bad commands", err
		case err != nil:
			return "", err
		}
		if reason, err := s.command(line); err != nil {
			return reason, err
		}
	}
}

// open takes the snapshot that is the maildrop for this session.
func (s *session) open(store *mailbox.Store) error {
	mb, err := store.Open("INBOX")
	if err != nil {
		return err
	}
	s.mb = mb
	uv := mb.UIDValidity()
	all := mb.Messages()
	type ordered struct {
		m     mailbox.Message
		order int
	}
	list := make([]ordered, len(all))
	for i, m := range all {
		list[i] = ordered{m, mb.POP3Order(m.UID)}
	}
	// A migration may have kept the message order a POP3 client knew
	// (dovecot-uidlist O fields); those messages come first, in that
	// order, and the rest follow by UID.
	slices.SortStableFunc(list, func(a, b ordered) int {
		switch {
		case a.order > 0 && b.order > 0:
			return a.order - b.order
		case a.order > 0:
			return -1
		case b.order > 0:
			return 1
		}
		return 0
	})
	s.msgs = make([]msg, len(list))
	for i, o := range list {
		s.msgs[i] = msg{uid: o.m.UID, size: o.m.Size, uidl: uidl(mb, o.m.UID, uv)}
		s.size += o.m.Size
	}
	return nil
}

// uidl is the message's unique-id listing: what mailbox.POP3UIDL gives
// (a stored Dovecot P field, or Dovecot's default "%08Xu%08Xv"), unless a
// stored value breaks RFC 1939 §7's rule (1 to 70 octets in 0x21-0x7E),
// which a client could not parse; then the default. Dovecot's X modifier
// prints lower-case hexadecimal, hence %08x here.
func uidl(mb *mailbox.Mailbox, uid, uv uint32) string {
	u := mb.POP3UIDL(uid)
	ok := len(u) > 0 && len(u) <= 70
	for i := 0; ok && i < len(u); i++ {
		ok = u[i] >= 0x21 && u[i] <= 0x7e
	}
	if !ok {
		return fmt.Sprintf("%08x%08x", uid, uv)
	}
	return u
}

// command runs one command line; an error ends the session, with the
// reason for the log line.
func (s *session) command(line []byte) (string, error) {
	c, err := parseCommand(line)
	if err != nil {
		msg := msgUnknown
		if errors.Is(err, errBadChar) {
			msg = msgBadChars
		}
		return s.badResult(s.badCommand(msg))
	}
	switch c.name {
	case "CAPA":
		s.reply("+OK\r\n" + commonCaps + ".")
	case "NOOP":
		s.reply("+OK")
	case "STAT":
		n, size := s.stat()
		s.reply(fmt.Sprintf("+OK %d %d", n, size))
	case "LIST":
		return s.badResult(s.list(c))
	case "UIDL":
		return s.badResult(s.uidlCmd(c))
	case "RETR":
		return s.retrieve(c, false)
	case "TOP":
		return s.retrieve(c, true)
	case "DELE":
		i, err := s.msgArg(c, 1)
		if i < 0 {
			return s.badResult(err)
		}
		s.msgs[i].deleted = true
		s.reply("+OK Marked to be deleted.")
	case "RSET":
		for i := range s.msgs {
			s.msgs[i].deleted = false
		}
		s.reply("+OK")
	case "QUIT":
		return s.update()
	default:
		return s.badResult(s.badCommand(msgUnknown))
	}
	return "", nil
}

func (s *session) badResult(err error) (string, error) {
	if err != nil {
		return "Too many bad commands", err
	}
	return "", nil
}

// stat counts the messages not marked deleted and their size.
func (s *session) stat() (n int, size int64) {
	for _, m := range s.msgs {
		if !m.deleted {
			n++
			size += m.size
		}
	}
	return n, size
}

// msgArg checks the message number argument at position pos and the
// number of arguments (pos or pos+1 for TOP). It returns the index, or -1
// after answering -ERR; err is set when the bad-command limit ran out.
// Malformed arguments count as bad commands; a well-formed number that
// names no message, or a deleted one, does not.
func (s *session) msgArg(c command, want int) (int, error) {
	if len(c.args) != want {
		return -1, s.badCommand("-ERR Invalid arguments.")
	}
	arg := c.args[0]
	n, ok := parseNumber(arg)
	if !ok {
		return -1, s.badCommand("-ERR Invalid message number.")
	}
	if n < 1 || n > int64(len(s.msgs)) {
		s.reply("-ERR There's no message " + arg + ".")
		return -1, nil
	}
	if s.msgs[n-1].deleted {
		s.reply("-ERR Message is deleted.")
		return -1, nil
	}
	return int(n - 1), nil
}

// list is LIST (RFC 1939 §5): sizes are RFC822.SIZE, the message with
// CRLF line ends, which is what RETR sends before byte-stuffing.
func (s *session) list(c command) error {
	if len(c.args) > 0 {
		i, err := s.msgArg(c, 1)
		if i >= 0 {
			s.reply(fmt.Sprintf("+OK %d %d", i+1, s.msgs[i].size))
		}
		return err
	}
	n, _ := s.stat()
	var b []byte
	b = fmt.Appendf(b, "+OK %d messages:\r\n", n)
	for i, m := range s.msgs {
		if !m.deleted {
			b = fmt.Appendf(b, "%d %d\r\n", i+1, m.size)
		}
	}
	s.out.Write(b)
	s.reply(".")
	return nil
}

// uidlCmd is UIDL (RFC 1939 §7).
func (s *session) uidlCmd(c command) error {
	if len(c.args) > 0 {
		i, err := s.msgArg(c, 1)
		if i >= 0 {
			s.reply(fmt.Sprintf("+OK %d %s", i+1, s.msgs[i].uidl))
		}
		return err
	}
	s.out.WriteString("+OK\r\n")
	for i, m := range s.msgs {
		if !m.deleted {
			s.out.WriteString(strconv.Itoa(i+1) + " " + m.uidl + "\r\n")
		}
	}
	s.reply(".")
	return nil
}

// retrieve is RETR, or TOP with top set (RFC 1939 §5, §7). The message is
// read from the file as it is now, converted to CRLF and byte-stuffed.
func (s *session) retrieve(c command, top bool) (string, error) {
	want, lines := 1, int64(-1)
	if top {
		want = 2
	}
	i, err := s.msgArg(c, want)
	if i < 0 {
		return s.badResult(err)
	}
	if top {
		n, ok := parseNumber(c.args[1])
		if !ok {
			return s.badResult(s.badCommand("-ERR Invalid number of lines."))
		}
		lines = n
	}
	m := &s.msgs[i]
	f, err := s.mb.Open(m.uid)
	if errors.Is(err, mailbox.ErrExpunged) {
		s.reply("-ERR Message was expunged by another session.")
		return "", nil
	}
	if err != nil {
		s.cfg.Log.Warning("pop3(%s): open message UID %d: %v", logName(s.h.User), m.uid, err)
		s.reply("-ERR [SYS/TEMP] Couldn't read the message.")
		return "", nil
	}
	defer f.Close()
	if top {
		s.reply("+OK")
	} else {
		s.reply(fmt.Sprintf("+OK %d octets", m.size))
	}
	dw := newDotWriter(s.out)
	var w io.Writer = dw
	if top {
		w = &topFilter{w: dw, lines: lines}
	}
	_, err = io.Copy(w, mailbox.CRLFReader(f))
	if err != nil && !errors.Is(err, errTopDone) {
		// The +OK is out and the body is not: the client cannot be told,
		// so the connection ends (and UPDATE does not happen).
		var we *writeError
		if !errors.As(err, &we) {
			s.cfg.Log.Warning("pop3(%s): reading message UID %d: %v", logName(s.h.User), m.uid, err)
			return "Couldn't read a message", err
		}
		return "", err
	}
	if err := dw.Close(); err != nil {
		return "", err
	}
	if top {
		s.top++
		s.topBytes += dw.n
	} else {
		s.retr++
		s.retrBytes += dw.n
		m.retrieved = true
	}
	return "", nil
}

// update is QUIT: the UPDATE state (RFC 1939 §6). Marked messages that
// still exist are expunged together, under the uidlist lock; retrieved
// ones get \Seen. The maildrop lock is released before the +OK, so a
// client that reconnects at once is not refused with IN-USE.
func (s *session) update() (string, error) {
	var del, seen []uint32
	for _, m := range s.msgs {
		switch {
		case m.deleted:
			del = append(del, m.uid)
		case m.retrieved && !s.cfg.NoFlagUpdates:
			seen = append(seen, m.uid)
		}
	}
	if len(seen) > 0 {
		if _, _, err := s.mb.SetFlags(seen, mailbox.FlagsAdd, []string{`\Seen`}, 0); err != nil {
			s.cfg.Log.Warning("pop3(%s): set \\Seen: %v", logName(s.h.User), err)
		}
	}
	reply, result := "+OK Logging out.", ErrQuit
	if len(del) > 0 {
		done, err := s.mb.Expunge(del, false)
		s.deleted = len(done)
		if err != nil {
			s.cfg.Log.Warning("pop3(%s): expunge: %v", logName(s.h.User), err)
			reply, result = "-ERR [SYS/TEMP] Some deleted messages were not removed.", fmt.Errorf("pop3: update: %w", err)
		} else {
			reply = "+OK Logging out, messages deleted."
		}
	}
	s.lock.Close()
	s.lock = nil
	s.goodbye(reply)
	return "Logged out", result
}

// badCommand answers an unknown or malformed command and ends the
// session at the limit.
func (s *session) badCommand(msg string) error {
	if s.bad++; s.bad >= s.cfg.MaxBadCommands {
		s.goodbye(msgTooManyBad)
		return ErrBadCommands
	}
	s.reply(msg)
	return nil
}

func (s *session) reply(line string) {
	s.out.WriteString(line)
	s.out.WriteString("\r\n")
}

// goodbye sends a last line, taking goodbyeTimeout at most.
func (s *session) goodbye(line string) {
	s.dw.timeout = min(s.dw.timeout, goodbyeTimeout)
	s.reply(line)
	s.out.Flush()
}
