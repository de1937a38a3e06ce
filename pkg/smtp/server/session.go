package server

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/posthorn/posthorn/pkg/address"
	"github.com/posthorn/posthorn/pkg/maillog"
)

var (
	errLineTooLong  = errors.New("line too long")
	errShuttingDown = errors.New("server shutting down")
)

// connReader sets the read deadline. While reading commands the session
// sets one deadline per command; while reading message data every read gets
// a fresh one, so a large message on a slow link is not cut off.
type connReader struct {
	conn    net.Conn
	timeout time.Duration
	refresh bool
	dl      lazyDeadline // the read deadline
	// flush sends queued replies. It runs before every network read, which
	// the bufio.Reader above makes only when it has run out of input: the
	// moment RFC 2920 §3.2 says pipelined replies must go out, since the
	// client may be waiting for them.
	flush func() error
}

func (r *connReader) Read(p []byte) (int, error) {
	if err := r.flush(); err != nil {
		return 0, err
	}
	if r.refresh {
		r.dl.extend(r.conn.SetReadDeadline, r.timeout)
	}
	return r.conn.Read(p)
}

// lazyDeadline keeps a connection's read or write deadline at least a
// timeout away without moving it for every command: it is re-armed, to
// 17/16 of the timeout from now, only once less than the timeout is left.
// A client so always gets at least the configured timeout (at most 1/16
// more), and a session costs the runtime a timer change or two instead of
// one per command and reply.
type lazyDeadline struct{ at time.Time }

func (d *lazyDeadline) extend(set func(time.Time) error, timeout time.Duration) {
	now := time.Now()
	if d.at.Sub(now) >= timeout {
		return
	}
	d.at = now.Add(timeout + timeout/16)
	set(d.at)
}

// bdatState is a BDAT transaction in progress (RFC 3030).
type bdatState struct {
	msg    Message
	header *headerCheck
	adder  *headerAdder
	conv   lineEndings
	raw    int64 // octets of all chunks so far, as sent
}

type cmdStat struct{ ok, total int }

// statOrder is the order of Postfix's "disconnect from" counters.
var statOrder = []string{"helo", "ehlo", "starttls", "auth", "mail", "rcpt", "data", "bdat",
	"rset", "noop", "vrfy", "expn", "help", "quit", "unknown"}

type session struct {
	srv     *Server
	cfg     Config
	backend Backend
	log     *maillog.Logger
	// raw is the accepted connection and conn the one spoken on; they differ
	// once STARTTLS wraps raw. Shutdown acts on raw, which always works.
	raw     net.Conn
	conn    net.Conn
	rd      *connReader
	br      *bufio.Reader
	bw      *bufio.Writer
	writeDL lazyDeadline

	info   ConnInfo
	client string // "name[addr]" as Postfix logs it

	greeted bool
	env     *Envelope
	bdat    *bdatState
	errors  int
	junk    int
	last    string // the command being served, for "timeout after DATA"
	quit    bool   // close after the reply being written
	stats   map[string]*cmdStat
	idle    atomic.Bool // waiting for a command outside a transaction
	buf     []byte
	conv    []byte
}

func newSession(srv *Server, cfg Config, c net.Conn, mode Mode) *session {
	rd := &connReader{conn: c, timeout: cfg.Timeout}
	s := &session{
		srv:     srv,
		cfg:     cfg,
		backend: srv.backend,
		log:     cfg.Log,
		raw:     c,
		conn:    c,
		rd:      rd,
		// The buffer holds a whole command line, so a line within the limit
		// is read in one piece and a longer one is recognised and skipped
		// without growing anything.
		br:    newLineReader(rd, max(cfg.LineLengthLimit+2, 4096)),
		bw:    newReplyWriter(c),
		stats: map[string]*cmdStat{},
		last:  "CONNECT",
	}
	rd.flush = s.flush
	s.info.RemoteAddr = c.RemoteAddr()
	s.info.RemoteIP = remoteIP(c.RemoteAddr())
	s.info.RemoteName = "unknown"
	s.info.Mode = mode
	s.client = "unknown[unknown]"
	return s
}

// dataBufs keep the buffers message content is read through between
// sessions: one per connection would be most of what a session allocates.
var dataBufs = sync.Pool{New: func() any { b := make([]byte, 32*1024); return &b }}

// dataBuf makes sure s.buf is there for reading message content.
func (s *session) dataBuf() {
	if s.buf == nil {
		s.buf = *dataBufs.Get().(*[]byte)
	}
}

// releaseData returns s.buf and the command and reply buffers when the
// session ends.
func (s *session) releaseData() {
	if s.buf != nil {
		b := s.buf
		s.buf = nil
		dataBufs.Put(&b)
	}
	if s.br.Size() == lineBufSize {
		s.br.Reset(nil)
		lineReaders.Put(s.br)
	}
	if s.bw.Size() == replyBufSize {
		s.bw.Reset(nil)
		replyWriters.Put(s.bw)
	}
	s.br, s.bw = nil, nil
}

// A session's command reader and reply writer are kept between sessions
// too: one connection per message is the usual pattern.
const (
	lineBufSize  = 4096
	replyBufSize = 4096
)

var (
	lineReaders  = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, lineBufSize) }}
	replyWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, replyBufSize) }}
)

func newLineReader(r io.Reader, size int) *bufio.Reader {
	if size != lineBufSize {
		return bufio.NewReaderSize(r, size)
	}
	br := lineReaders.Get().(*bufio.Reader)
	br.Reset(r)
	return br
}

func newReplyWriter(w io.Writer) *bufio.Writer {
	bw := replyWriters.Get().(*bufio.Writer)
	bw.Reset(w)
	return bw
}

// identify names the client for logs and Received: with its PTR name, which
// DNS (and so the client) controls: hence neuter.
func (s *session) identify() {
	addr := "unknown"
	if ip := s.info.RemoteIP; ip != nil {
		addr = ip.String()
		if s.cfg.LookupPTR != nil {
			if n := s.cfg.LookupPTR(ip); n != "" {
				s.info.RemoteName = neuter(n)
			}
		}
	}
	s.client = s.info.RemoteName + "[" + addr + "]"
}

func remoteIP(a net.Addr) net.IP {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.IP
	case nil:
		return nil
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		host = a.String()
	}
	return net.ParseIP(host)
}

// interruptIfIdle ends a wait for a command outside a transaction, for
// Shutdown. The session sets (or keeps) its deadline before it marks
// itself idle and checks the draining flag after, so either it sees the
// flag or this deadline lands after its own.
func (s *session) interruptIfIdle() {
	if s.idle.Load() {
		s.raw.SetReadDeadline(time.Now())
	}
}

func (s *session) run() {
	// s.conn changes when TLS starts; closing the TLS connection sends its
	// close_notify.
	defer func() { s.conn.Close() }()
	defer s.releaseData()
	s.identify()
	defer s.finish()
	s.log.Info("connect from %s", s.client)

	if s.info.Mode == ModeSubmissions {
		// RFC 8314 §3.3: TLS from the first octet, the greeting inside it.
		if s.cfg.TLS == nil {
			s.log.Warning("no TLS certificate: cannot serve %s on %s", s.client, s.info.Mode)
			return
		}
		if !s.handshake() {
			return
		}
	}
	// RFC 5321 §3.1: the client waits for the greeting. One that talks
	// first is a spam engine or is probing for smuggling (Postfix's "improper
	// command pipelining after CONNECT").
	if s.pendingInput() {
		s.syncError()
		return
	}
	s.send(&Reply{Code: 220, Text: s.cfg.Banner})
	for !s.quit {
		line, err := s.readCommand()
		if err != nil {
			if err == errLineTooLong {
				s.count("unknown", false)
				s.reply(reply(500, "5.5.2", "Error: line too long"))
				continue
			}
			s.readFailed(err)
			return
		}
		s.execute(line)
	}
	s.flush()
}

// finish logs the end of the session and aborts a message left open.
func (s *session) finish() {
	if s.bdat != nil {
		s.bdat.msg.Abort()
		s.bdat = nil
	}
	var b strings.Builder
	ok, total := 0, 0
	for _, name := range statOrder {
		st := s.stats[name]
		if st == nil {
			continue
		}
		ok += st.ok
		total += st.total
		b.WriteString(" " + name + "=" + ratio(st.ok, st.total))
	}
	s.log.Info("disconnect from %s%s commands=%s", s.client, b.String(), ratio(ok, total))
}

func ratio(ok, total int) string {
	if ok == total {
		return strconv.Itoa(ok)
	}
	return strconv.Itoa(ok) + "/" + strconv.Itoa(total)
}

func (s *session) count(name string, ok bool) {
	st := s.stats[name]
	if st == nil {
		st = &cmdStat{}
		s.stats[name] = st
	}
	st.total++
	if ok {
		st.ok++
	}
}

// readCommand returns the next command line without its ending. CRLF and
// bare LF both end a command line: unlike message data, a command cannot
// be smuggled past another MTA's parser, and Postfix accepts both.
func (s *session) readCommand() (string, error) {
	s.rd.dl.extend(s.conn.SetReadDeadline, s.cfg.Timeout)
	if s.env == nil {
		s.idle.Store(true)
		defer s.idle.Store(false)
		if s.srv.draining.Load() {
			return "", errShuttingDown
		}
	}
	line, err := s.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		for err == bufio.ErrBufferFull {
			_, err = s.br.ReadSlice('\n')
		}
		if err != nil {
			return "", err
		}
		return "", errLineTooLong
	}
	if err != nil {
		return "", err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	if len(line) > s.cfg.LineLengthLimit {
		return "", errLineTooLong
	}
	return string(line), nil
}

// readFailed ends the session after a failed read.
func (s *session) readFailed(err error) {
	var ne net.Error
	switch {
	case err == errShuttingDown:
		s.send(reply(421, "4.3.2", "%s Service shutting down, closing transmission channel", s.cfg.Hostname))
	case errors.As(err, &ne) && ne.Timeout():
		if s.srv.draining.Load() && s.env == nil {
			s.send(reply(421, "4.3.2", "%s Service shutting down, closing transmission channel", s.cfg.Hostname))
			return
		}
		s.log.Info("timeout after %s from %s", s.last, s.client)
		s.send(reply(421, "4.4.2", "%s Error: timeout exceeded", s.cfg.Hostname))
	default:
		s.log.Info("lost connection after %s from %s", s.last, s.client)
	}
	s.quit = true
}

// send writes a reply and flushes it; used when the session ends.
func (s *session) send(r *Reply) {
	s.bw.WriteString(r.wire())
	s.flush()
}

func (s *session) flush() error {
	if s.bw.Buffered() == 0 {
		return nil
	}
	s.writeDL.extend(s.conn.SetWriteDeadline, s.cfg.Timeout)
	if err := s.bw.Flush(); err != nil {
		s.quit = true
		return fmt.Errorf("write to %s: %w", s.client, err)
	}
	return nil
}

// reply queues a reply to a command and applies the hard error limit.
func (s *session) reply(r *Reply) {
	s.bw.WriteString(r.wire())
	if r.Code < 400 || s.quit {
		return
	}
	s.errors++
	if s.errors >= s.cfg.HardErrorLimit {
		s.log.Info("too many errors after %s from %s", s.last, s.client)
		s.send(reply(421, "4.7.0", "%s Error: too many errors", s.cfg.Hostname))
		s.quit = true
	}
}

// syncError ends a session that did not wait where RFC 2920 §3.1 (or, for
// a client that did not say EHLO, RFC 5321 §4.3.1) says it must: Postfix
// 3.9's smtpd_forbid_unauth_pipelining.
func (s *session) syncError() {
	n := s.br.Buffered()
	peek, _ := s.br.Peek(min(n, 100))
	s.log.Info("improper command pipelining after %s from %s: %s", s.last, s.client, printable(string(peek)))
	s.send(reply(554, "5.5.0", "Error: SMTP protocol synchronization"))
	s.quit = true
}

// mustWait lists the commands after which a client must wait for the reply
// even with PIPELINING (RFC 2920 §3.1; RFC 3207 §4.2 and RFC 4954 §4 for
// STARTTLS and AUTH). QUIT is left out: nothing after it is read anyway.
var mustWait = map[string]bool{"EHLO": true, "HELO": true, "DATA": true, "STARTTLS": true, "AUTH": true}

// junkCommands count against JunkCommandLimit: commands that move no mail.
var junkCommands = map[string]bool{"NOOP": true, "RSET": true, "VRFY": true, "HELP": true,
	"EXPN": true, "EHLO": true, "HELO": true}

func (s *session) execute(line string) {
	cmd, perr := ParseCommand(line)
	// Postfix's name for anything unrecognised in "lost connection after X".
	s.last = "UNKNOWN"
	if name := statName(cmd.Verb); name != "unknown" {
		s.last = cmd.Verb
	}
	if cmd.Verb != "QUIT" && (mustWait[cmd.Verb] || !s.info.ESMTP) && s.pendingInput() {
		s.count(statName(cmd.Verb), false)
		s.syncError()
		return
	}
	if junkCommands[cmd.Verb] {
		s.junk++
		if s.junk > s.cfg.JunkCommandLimit {
			s.count(statName(cmd.Verb), false)
			s.log.Info("too many errors after %s from %s", s.last, s.client)
			s.send(reply(421, "4.7.0", "%s Error: too many errors", s.cfg.Hostname))
			s.quit = true
			return
		}
	}
	var r *Reply
	if cmd.Verb == "BDAT" {
		// A BDAT that cannot be parsed leaves the chunk boundary unknown,
		// so it is handled there rather than answered here.
		r = s.cmdBDAT(cmd, perr)
	} else if perr != nil {
		r = perr.(*Reply)
	} else {
		r = s.dispatch(cmd)
	}
	s.count(statName(cmd.Verb), r != nil && r.Code < 400)
	if r != nil && r != sentOK {
		s.reply(r)
	}
}

func statName(verb string) string {
	for _, n := range statOrder[:len(statOrder)-1] {
		// verb is upper case; the names are lower case ASCII.
		if strings.EqualFold(n, verb) {
			return n
		}
	}
	return "unknown"
}

func (s *session) pendingInput() bool {
	return s.br.Buffered() > 0 || inputPending(s.conn)
}

func (s *session) dispatch(cmd Command) *Reply {
	switch cmd.Verb {
	case "EHLO", "HELO":
		return s.cmdHelo(cmd)
	case "MAIL":
		return s.cmdMail(cmd)
	case "RCPT":
		return s.cmdRcpt(cmd)
	case "DATA":
		return s.cmdData(cmd)
	case "RSET":
		if cmd.Arg != "" {
			return reply(501, "5.5.4", "Syntax: RSET")
		}
		s.reset()
		return reply(250, "2.0.0", "Ok")
	case "NOOP":
		return reply(250, "2.0.0", "Ok")
	case "QUIT":
		s.quit = true
		return reply(221, "2.0.0", "Bye")
	case "VRFY":
		if cmd.Arg == "" {
			return reply(501, "5.5.4", "Syntax: VRFY address")
		}
		// RFC 5321 §3.5.3: 252 says neither yes nor no, so VRFY cannot be
		// used to harvest addresses.
		return reply(252, "2.0.0", "Cannot VRFY user, but will accept message and attempt delivery")
	case "HELP":
		return reply(214, "2.0.0", "See RFC 5321 (https://www.rfc-editor.org/rfc/rfc5321)")
	case "STARTTLS":
		return s.cmdStartTLS(cmd)
	case "AUTH":
		return s.cmdAuth(cmd)
	case "EXPN":
		return reply(502, "5.5.1", "Error: command not implemented")
	}
	return reply(502, "5.5.2", "Error: command not recognized")
}

// reset ends the transaction (RSET, EHLO, after DATA), aborting a message
// that BDAT had started.
func (s *session) reset() {
	s.env = nil
	if s.bdat != nil {
		s.bdat.msg.Abort()
		s.bdat = nil
	}
}

func (s *session) cmdHelo(cmd Command) *Reply {
	s.reset()
	s.greeted = true
	s.info.Helo = neuter(cmd.Arg)
	s.info.ESMTP = cmd.Verb == "EHLO"
	if !s.info.ESMTP {
		return &Reply{Code: 250, Text: s.cfg.Hostname}
	}
	// Postfix's order; RFC 2034 §3 leaves the EHLO reply without enhanced
	// status codes. STARTTLS is offered until TLS is on (RFC 3207 §4.2),
	// AUTH only where it may be used (RFC 4954 §4, RFC 8314 §3).
	ext := []string{
		s.cfg.Hostname,
		"PIPELINING",
		"SIZE " + strconv.FormatInt(s.cfg.MaxMessageSize, 10),
	}
	if s.cfg.TLS != nil && s.info.TLS == nil {
		ext = append(ext, "STARTTLS")
	}
	if s.authOffered() {
		ext = append(ext, "AUTH PLAIN LOGIN")
	}
	ext = append(ext, "ENHANCEDSTATUSCODES", "8BITMIME", "DSN", "SMTPUTF8", "CHUNKING")
	return &Reply{Code: 250, Text: strings.Join(ext, "\n")}
}

func (s *session) proto() string {
	if s.info.ESMTP {
		return "ESMTP"
	}
	return "SMTP"
}

// logReject writes Postfix's policy rejection line.
func (s *session) logReject(queueID, stage string, r *Reply, from *address.Mailbox, to *address.Mailbox) {
	var extra string
	if from != nil {
		extra += " from=<" + from.String() + ">"
	}
	if to != nil {
		extra += " to=<" + to.String() + ">"
	}
	s.log.Info("%s: reject: %s from %s: %s;%s proto=%s helo=<%s>", queueID, stage, s.client, r.Error(), extra, s.proto(), s.info.Helo)
}

func (s *session) cmdMail(cmd Command) *Reply {
	switch {
	case !s.greeted:
		return reply(503, "5.5.1", "Error: send HELO/EHLO first")
	case s.env != nil:
		return reply(503, "5.5.1", "Error: nested MAIL command")
	case s.info.Mode != ModeMX && s.info.AuthUser == "":
		// RFC 6409 §4.3: submission is for authenticated users only.
		r := reply(530, "5.7.0", "Authentication required")
		s.logReject("NOQUEUE", "MAIL", r, nil, nil)
		return r
	}
	env := &Envelope{Conn: &s.info, Body: "7BIT"}
	seen := map[string]bool{}
	for _, p := range cmd.Params {
		if seen[p.Keyword] {
			return reply(501, "5.5.4", "Error: duplicate %s parameter", p.Keyword)
		}
		seen[p.Keyword] = true
		if !s.info.ESMTP {
			// Parameters exist only in ESMTP (RFC 5321 §4.1.1.2).
			return reply(555, "5.5.4", "Unsupported option: %s", p.Keyword)
		}
		switch p.Keyword {
		case "SIZE": // RFC 1870 §6
			n, ok := parseDecimal(p.Value)
			if !ok {
				return reply(501, "5.5.4", "Bad message size syntax")
			}
			if n > s.cfg.MaxMessageSize {
				return reply(552, "5.3.4", "Message size exceeds fixed limit")
			}
			env.DeclaredSize = n
		case "BODY": // RFC 6152 §2
			switch upperASCII(p.Value) {
			case "7BIT", "8BITMIME":
				env.Body = upperASCII(p.Value)
			default:
				return reply(501, "5.5.4", "Unsupported BODY parameter")
			}
		case "SMTPUTF8": // RFC 6531 §3.4: no value
			if p.HasValue {
				return reply(501, "5.5.4", "Error: SMTPUTF8 takes no value")
			}
			env.SMTPUTF8 = true
		case "RET": // RFC 3461 §4.3
			v, ok := ParseRet(p.Value)
			if !ok {
				return reply(501, "5.5.4", "Bad RET parameter syntax")
			}
			env.Ret = v
		case "ENVID": // RFC 3461 §4.4
			v, ok := ParseEnvID(p.Value)
			if !ok {
				return reply(501, "5.5.4", "Bad ENVID parameter syntax")
			}
			env.EnvID = v
		case "AUTH":
			// RFC 4954 §5: the submitter as another MTA authenticated it.
			// Checked as xtext and then ignored, which §5 allows: the
			// sender that counts is the one this server authenticated.
			if s.cfg.Auth == nil {
				return reply(555, "5.5.4", "Unsupported option: %s", p.Keyword)
			}
			if _, err := DecodeXtext(p.Value); err != nil || !p.HasValue {
				return reply(501, "5.5.4", "Bad AUTH parameter syntax")
			}
		default:
			return reply(555, "5.5.4", "Unsupported option: %s", p.Keyword)
		}
	}
	from, err := address.ParsePath(cmd.Path, env.SMTPUTF8)
	if err != nil {
		if errors.Is(err, address.ErrNeedSMTPUTF8) {
			r := reply(553, "5.6.7", "Must declare SMTPUTF8 to send unicode address")
			s.logReject("NOQUEUE", "MAIL", r, nil, nil)
			return r
		}
		return reply(501, "5.1.7", "Bad sender address syntax")
	}
	if r := s.backend.CheckSender(&s.info, from); r != nil {
		s.logReject("NOQUEUE", "MAIL", r, &from, nil)
		return r
	}
	env.From = from
	s.env = env
	return reply(250, "2.1.0", "Ok")
}

func (s *session) cmdRcpt(cmd Command) *Reply {
	switch {
	case s.env == nil:
		return reply(503, "5.5.1", "Error: need MAIL command")
	case s.bdat != nil:
		return reply(503, "5.5.1", "Error: RCPT not allowed after BDAT")
	case len(s.env.Rcpts) >= s.cfg.MaxRecipients:
		// RFC 5321 §4.5.3.1.10: 452, and the recipients so far stand.
		return reply(452, "4.5.3", "Error: too many recipients")
	}
	var notify, orcpt string
	seen := map[string]bool{}
	for _, p := range cmd.Params {
		if seen[p.Keyword] {
			return reply(501, "5.5.4", "Error: duplicate %s parameter", p.Keyword)
		}
		seen[p.Keyword] = true
		var ok bool
		switch p.Keyword {
		case "NOTIFY": // RFC 3461 §4.1
			if notify, ok = ParseNotify(p.Value); !ok {
				return reply(501, "5.5.4", "Error: Bad NOTIFY parameter syntax")
			}
		case "ORCPT": // RFC 3461 §4.2
			if orcpt, ok = ParseORCPT(p.Value); !ok {
				return reply(501, "5.5.4", "Error: Bad ORCPT parameter syntax")
			}
		default:
			return reply(555, "5.5.4", "Unsupported option: %s", p.Keyword)
		}
	}
	rcpt, err := address.ParsePath(cmd.Path, s.env.SMTPUTF8)
	if err != nil {
		if errors.Is(err, address.ErrNeedSMTPUTF8) {
			r := reply(553, "5.6.7", "Must declare SMTPUTF8 to send unicode address")
			s.logReject("NOQUEUE", "RCPT", r, &s.env.From, nil)
			return r
		}
		return reply(501, "5.1.3", "Bad recipient address syntax")
	}
	if rcpt.IsNull() {
		return reply(501, "5.1.3", "Bad recipient address syntax")
	}
	if r := s.backend.CheckRecipient(&s.info, s.env, rcpt); r != nil {
		s.logReject("NOQUEUE", "RCPT", r, &s.env.From, &rcpt)
		return r
	}
	s.env.Rcpts = append(s.env.Rcpts, Recipient{Addr: rcpt, Notify: notify, ORCPT: orcpt})
	return reply(250, "2.1.5", "Ok")
}

// transactionReady checks the state for DATA and BDAT.
func (s *session) transactionReady() *Reply {
	switch {
	case s.env == nil:
		return reply(503, "5.5.1", "Error: need RCPT command")
	case len(s.env.Rcpts) == 0:
		return reply(554, "5.5.1", "Error: no valid recipients")
	}
	return nil
}

// begin starts the message and writes the Received: field.
func (s *session) begin(stage string) (Message, *Reply) {
	msg, r := s.backend.Begin(s.env)
	if r != nil {
		s.logReject("NOQUEUE", stage, r, &s.env.From, nil)
		return nil, r
	}
	if msg == nil {
		return nil, reply(451, "4.3.0", "Error: queue file write error")
	}
	// Postfix's client= line, with the SASL login when there is one.
	sasl := ""
	if s.info.AuthUser != "" {
		sasl = ", sasl_method=" + s.info.AuthMethod + ", sasl_username=" + s.info.AuthUser
	}
	s.log.Info("%s: client=%s%s", msg.QueueID(), s.client, sasl)
	return msg, nil
}

func (s *session) cmdData(cmd Command) *Reply {
	if cmd.Arg != "" {
		return reply(501, "5.5.4", "Syntax: DATA")
	}
	if s.bdat != nil {
		return reply(503, "5.5.1", "Error: DATA not allowed after BDAT")
	}
	if r := s.transactionReady(); r != nil {
		return r
	}
	defer s.reset()
	msg, r := s.begin("DATA")
	if r != nil {
		return r
	}
	s.bw.WriteString(reply(354, "", "End data with <CR><LF>.<CR><LF>").wire())
	// The client waits for 354 (RFC 2920 §3.1), so it goes out now, not
	// only when the data is read.
	if err := s.flush(); err != nil {
		msg.Abort()
		return nil
	}
	w := s.newMessageWriter(msg)
	dr := NewDataReader(s.br, s.cfg.MaxMessageSize)
	s.dataBuf()
	s.rd.refresh = true
	defer func() { s.rd.refresh = false }()
	for {
		n, err := dr.Read(s.buf)
		w.write(s.buf[:n])
		if err == nil {
			continue
		}
		switch {
		case err == io.EOF:
			return s.commit(msg, w, "DATA")
		case err == ErrTooBig:
			msg.Abort()
			r := reply(552, "5.3.4", "Error: message file too big")
			s.logReject(msg.QueueID(), "DATA", r, &s.env.From, nil)
			return r
		case err == ErrBareLF || err == ErrBareCR:
			msg.Abort()
			return s.bareLineEnding(err, "DATA")
		default:
			msg.Abort()
			s.readFailed(err)
			return nil
		}
	}
}

// bareLineEnding refuses data with a bare CR or LF and ends the session:
// after one, the client's idea of where the data ends cannot be trusted
// (Postfix 3.9 smtpd_forbid_bare_newline = reject, whose reply code is 550).
func (s *session) bareLineEnding(err error, stage string) *Reply {
	s.log.Info("disallowed %s after %s from %s", err, stage, s.client)
	s.quit = true
	return reply(550, "5.5.2", "Error: %s", err)
}

// messageWriter feeds content to a Message through the header checks,
// remembering the first failure while the data keeps being consumed.
type messageWriter struct {
	msg    Message
	env    *Envelope
	header *headerCheck
	adder  *headerAdder // adds Date: and Message-ID: to submitted mail
	herr   error        // header limit hit
	werr   error        // Message.Write failed
}

func (s *session) newMessageWriter(msg Message) *messageWriter {
	w := &messageWriter{msg: msg, env: s.env, header: newHeaderCheck(s.cfg.HeaderSizeLimit, s.cfg.HopCountLimit)}
	now := time.Now()
	if s.info.AuthUser != "" {
		w.adder = newHeaderAdder(s.cfg.MaxSubmissionHeader, s.cfg.Hostname, msg.QueueID(), now)
	}
	_, w.werr = io.WriteString(msg, receivedHeader(s.env, s.cfg.Hostname, msg.QueueID(), now, s.cfg.ReceivedAuthUser))
	return w
}

func (w *messageWriter) write(p []byte) {
	if len(p) == 0 || w.herr != nil || w.werr != nil {
		return
	}
	if w.herr = w.header.write(p); w.herr != nil {
		return
	}
	if !w.env.EightBit && w.env.Body != "8BITMIME" {
		for _, c := range p {
			if c >= 0x80 {
				w.env.EightBit = true
				break
			}
		}
	}
	if w.adder != nil {
		if p = w.adder.write(p); len(p) == 0 {
			return
		}
	}
	_, w.werr = w.msg.Write(p)
}

// end passes on what the header adder still holds.
func (w *messageWriter) end() {
	if w.adder == nil || w.herr != nil || w.werr != nil {
		return
	}
	if p := w.adder.finish(); len(p) > 0 {
		_, w.werr = w.msg.Write(p)
	}
}

// commit ends a fully received message: refused for a header limit or a
// write error, otherwise made durable before the 250.
func (s *session) commit(msg Message, w *messageWriter, stage string) *Reply {
	w.end()
	var r *Reply
	switch {
	case w.herr == ErrHeaderTooLarge:
		r = reply(552, "5.3.4", "Error: message header too large")
	case w.herr == ErrTooManyHops:
		r = reply(554, "5.4.0", "Error: too many hops")
	case w.werr != nil:
		s.log.Warning("%s: write queue file: %v", msg.QueueID(), w.werr)
		r = reply(451, "4.3.0", "Error: queue file write error")
	case s.srv.forced.Load():
		// Shutdown closed the connection: the client would not hear the 250.
		msg.Abort()
		s.quit = true
		return nil
	}
	if r != nil {
		msg.Abort()
		s.logReject(msg.QueueID(), stage, r, &s.env.From, nil)
		return r
	}
	if err := msg.Commit(); err != nil {
		s.log.Warning("%s: commit queue file: %v", msg.QueueID(), err)
		msg.Abort() // let the backend remove what it had written
		return reply(451, "4.3.0", "Error: queue file write error")
	}
	// A delivered message shows the client is not just making noise.
	s.errors, s.junk = 0, 0
	return reply(250, "2.0.0", "Ok: queued as %s", msg.QueueID())
}

func (s *session) cmdBDAT(cmd Command, perr error) *Reply {
	if perr != nil {
		// Without a size the chunk cannot be skipped: close.
		s.quit = true
		return perr.(*Reply)
	}
	var sofar int64
	if s.bdat != nil {
		sofar = s.bdat.raw
	}
	if cmd.Size > s.cfg.MaxMessageSize-sofar {
		// Skipping an absurd chunk could take forever; Postfix closes too.
		s.log.Info("BDAT chunk of %d octets exceeds the size limit from %s", cmd.Size, s.client)
		s.quit = true
		return reply(552, "5.3.4", "Message size exceeds fixed limit")
	}
	// RFC 3030 §2: a refused chunk is still consumed, so that the client's
	// pipelined commands after it are read as commands.
	r := s.transactionReady()
	if !s.info.ESMTP {
		r = reply(503, "5.5.1", "Error: send EHLO first") // CHUNKING is an EHLO extension
	}
	if r == nil && s.bdat == nil {
		var msg Message
		if msg, r = s.begin("BDAT"); r == nil {
			s.bdat = &bdatState{msg: msg}
			w := s.newMessageWriter(msg)
			s.bdat.header, s.bdat.adder = w.header, w.adder
			if w.werr != nil {
				r = reply(451, "4.3.0", "Error: queue file write error")
				s.log.Warning("%s: write queue file: %v", msg.QueueID(), w.werr)
			}
		}
	}
	if r != nil {
		if err := s.skip(cmd.Size); err != nil {
			s.readFailed(err)
			return nil
		}
		if s.bdat != nil {
			s.reset()
		}
		return r
	}
	return s.readChunk(cmd)
}

// skip consumes n octets of a refused chunk.
func (s *session) skip(n int64) error {
	s.rd.refresh = true
	defer func() { s.rd.refresh = false }()
	_, err := io.CopyN(io.Discard, s.br, n)
	return err
}

func (s *session) readChunk(cmd Command) *Reply {
	b := s.bdat
	b.raw += cmd.Size
	w := &messageWriter{msg: b.msg, env: s.env, header: b.header, adder: b.adder}
	s.rd.refresh = true
	defer func() { s.rd.refresh = false }()
	left := cmd.Size
	var convErr error
	s.dataBuf()
	for left > 0 {
		n, err := s.br.Read(s.buf[:min(int64(len(s.buf)), left)])
		left -= int64(n)
		if convErr == nil {
			s.conv, convErr = b.conv.convert(s.conv[:0], s.buf[:n])
			if convErr != nil {
				break
			}
			w.write(s.conv)
		}
		if err != nil && left > 0 {
			s.reset()
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			s.readFailed(err)
			return nil
		}
	}
	if convErr == nil && cmd.Last {
		convErr = b.conv.finish()
	}
	if convErr != nil {
		s.reset()
		return s.bareLineEnding(convErr, "BDAT")
	}
	if w.herr != nil || w.werr != nil {
		msg := b.msg
		s.bdat = nil // commit aborts it
		r := s.commit(msg, w, "BDAT")
		s.reset()
		return r
	}
	if !cmd.Last {
		return reply(250, "2.0.0", "Ok: %d bytes", cmd.Size)
	}
	msg := b.msg
	s.bdat = nil
	r := s.commit(msg, w, "BDAT")
	s.reset()
	return r
}
