// Package remote is the delivery agent for recipients in other domains,
// posthorn's smtp(8): for each request from qmgr it finds the mail
// exchangers of the recipient's domain (or uses the relay host), tries
// them in order over SMTP, and answers with the recipient's result, in
// the manner of Postfix's smtp(8): fall-over to the next MX on connection
// failures and temporary errors, permanent errors returned at once,
// sessions kept open briefly for the next message to the same place, and
// Postfix's log lines.
package remote

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/posthorn/posthorn/pkg/address"
	"github.com/posthorn/posthorn/pkg/agent"
	"github.com/posthorn/posthorn/pkg/config"
	"github.com/posthorn/posthorn/pkg/dns"
	"github.com/posthorn/posthorn/pkg/maillog"
	"github.com/posthorn/posthorn/pkg/smtp/client"
)

// Options are the limits of the agent that have no setting: Postfix's
// defaults, changed by tests.
type Options struct {
	// AddressLimit is smtp_mx_address_limit: addresses tried per delivery.
	AddressLimit int
	// SessionLimit is smtp_mx_session_limit: SMTP sessions (connections
	// that got past EHLO) per delivery.
	SessionLimit int
	// MXHostLimit caps the MX hosts whose addresses are looked up.
	MXHostLimit int
	// CacheTime is smtp_connection_cache_time_limit: how long a session
	// waits for the next message; ReuseTime is
	// smtp_connection_reuse_time_limit: how old a session may get.
	CacheTime, ReuseTime time.Duration
	// CacheLimit caps the idle sessions kept in all.
	CacheLimit int
	// DeadTime is how long a destination where no session could be had
	// is not tried again ("delivery temporarily suspended").
	DeadTime time.Duration
	// DNSTimeout bounds all lookups of one delivery.
	DNSTimeout time.Duration
	// Timeouts are the SMTP stage limits (Postfix's smtp_*_timeout).
	Timeouts client.Timeouts
	// Resolver, when set, is used instead of one made from the
	// configuration.
	Resolver *dns.Resolver
}

// DefaultOptions returns Postfix's values.
func DefaultOptions() Options {
	return Options{
		AddressLimit: 5, SessionLimit: 2, MXHostLimit: 10,
		CacheTime: 2 * time.Second, ReuseTime: 300 * time.Second, CacheLimit: 100,
		DeadTime: 60 * time.Second, DNSTimeout: 60 * time.Second,
		Timeouts: client.DefaultTimeouts(),
	}
}

// Agent delivers requests from qmgr to remote SMTP servers.
type Agent struct {
	log   *maillog.Logger
	opt   Options
	cache *connCache
	lim   limiter
	dead  deadDests
	local localAddrs

	mu       sync.Mutex
	cfg      *config.Config
	resolver *dns.Resolver
}

// New returns an agent for cfg.
func New(cfg *config.Config, log *maillog.Logger, opt Options) (*Agent, error) {
	a := &Agent{log: log, opt: opt, local: localAddrs{list: net.InterfaceAddrs}}
	if err := a.SetConfig(cfg); err != nil {
		return nil, err
	}
	a.cache = newConnCache(opt.CacheTime, opt.ReuseTime, opt.CacheLimit)
	return a, nil
}

// SetConfig applies a reloaded configuration. Idle sessions are closed:
// they were made with the old settings.
func (a *Agent) SetConfig(cfg *config.Config) error {
	r := a.opt.Resolver
	if r == nil {
		var err error
		if r, err = dns.New(dns.Config{Servers: cfg.DNS.Resolvers}); err != nil {
			return err
		}
	}
	a.mu.Lock()
	a.cfg, a.resolver = cfg, r
	a.mu.Unlock()
	if a.cache != nil {
		a.cache.flush(false)
	}
	return nil
}

func (a *Agent) current() (*config.Config, *dns.Resolver) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cfg, a.resolver
}

// Close ends the idle sessions.
func (a *Agent) Close() { a.cache.flush(true) }

// result is the outcome of a delivery, with what the log line needs.
type result struct {
	rep   agent.Reply
	relay string    // "host[addr]:port", or "none"
	setup time.Time // when the session was ready (delays c/d); zero if never
	// next says a temporary failure another server might not have: go on
	// to the next address. stale says a cached session died before
	// anything was sent: use a new one. tlsFailed says an opportunistic
	// TLS handshake failed: the same server may be tried without TLS.
	next, stale, tlsFailed bool
}

// Deliver handles one request; it is an agent.Handler.
func (a *Agent) Deliver(ctx context.Context, req agent.Request, qf *os.File) agent.Reply {
	start := time.Now()
	res := a.deliver(ctx, req, qf)
	a.logResult(req, start, res)
	return res.rep
}

func (a *Agent) deliver(ctx context.Context, req agent.Request, qf *os.File) result {
	fail := func(r agent.Reply) result { return result{rep: r, relay: "none"} }
	cfg, resolver := a.current()
	rcpt, err := address.ParseMailbox(req.Recipient)
	if err != nil || rcpt.Domain == "" {
		return fail(agent.Permfail("5.1.3", "bad recipient address syntax: <%s>", req.Recipient))
	}
	var sender address.Mailbox
	if req.Sender != "" {
		if sender, err = address.ParseMailbox(req.Sender); err != nil {
			return fail(agent.Permfail("5.1.7", "bad sender address syntax: <%s>", req.Sender))
		}
	}
	dest, bad := destinationFor(cfg, rcpt.Domain)
	if bad != nil {
		return fail(*bad)
	}
	release, err := a.lim.acquire(ctx, dest.key, cfg.SMTP.DestinationConcurrencyLimit)
	if err != nil {
		return fail(agent.Tempfail("4.3.0", "delivery agent stopping"))
	}
	defer release()
	if e, ok := a.dead.get(dest.key); ok {
		return fail(agent.Tempfail(e.dsn, "delivery temporarily suspended: %s", e.text))
	}
	msg, err := prepare(req, qf, sender, rcpt)
	if err != nil {
		return fail(agent.Tempfail("4.3.0", "cannot read queue file: %v", err))
	}

	// A session left open by an earlier delivery to the same destination.
	for s := a.cache.get(dest.key); s != nil; s = a.cache.get(dest.key) {
		res := a.transact(ctx, dest, s, msg)
		if !res.stale {
			return res
		}
	}

	targets, bad := a.route(ctx, cfg, resolver, dest)
	if bad != nil {
		return fail(*bad)
	}
	last := fail(agent.Tempfail("4.3.0", "server unavailable or unable to receive mail"))
	sessions := 0
	plaintext := false // after a failed opportunistic TLS handshake
	for i := 0; i < len(targets); i++ {
		t := targets[i]
		s, res := a.connect(ctx, cfg, dest, t, plaintext)
		if s == nil && res.tlsFailed && tlsMode(cfg) == client.TLSMay && !plaintext {
			// Opportunistic TLS failed: the same server once more without
			// it, as Postfix does.
			a.log.Info("%s: %s", req.QueueID, res.rep.Text)
			plaintext = true
			i--
			continue
		}
		plaintext = false
		if s == nil {
			if !res.next || i == len(targets)-1 {
				if sessions == 0 && res.next {
					a.dead.mark(dest.key, res.rep.DSN, res.rep.Text, a.opt.DeadTime)
				}
				return res
			}
			a.log.Info("%s: %s", req.QueueID, res.rep.Text)
			last = res
			continue
		}
		sessions++
		res = a.transact(ctx, dest, s, msg)
		if res.stale {
			res = result{rep: agent.Tempfail("4.4.2", "lost connection with %s while sending RSET", t.name()),
				relay: t.nameport(), next: true}
		}
		if !res.next || i == len(targets)-1 || sessions >= a.opt.SessionLimit {
			return res
		}
		a.log.Info("%s: %s", req.QueueID, res.rep.Text)
		last = res
	}
	return last
}

// message is what a request sends.
type message struct {
	env     client.Envelope
	content func() io.Reader
}

// prepare reads the content once to learn its size on the wire and
// whether it is 8-bit, and builds the envelope.
//
// 8-bit octets anywhere in the content mean 8BITMIME (whatever BODY= the
// sender declared: many send 8-bit without it); a UTF-8 address needs
// SMTPUTF8, and UTF-8 in the header or SMTPUTF8 in the original
// transaction asks for it (sent when offered, not required).
func prepare(req agent.Request, qf *os.File, sender, rcpt address.Mailbox) (*message, error) {
	content := func() io.Reader { return io.NewSectionReader(qf, req.Offset, req.Size) }
	br := bufio.NewReaderSize(content(), 64<<10)
	var lines int64
	eightBit, headerUTF8, inHeader, prevLF := false, false, true, true
	for {
		b, err := br.ReadSlice('\n')
		for _, c := range b {
			if c >= 0x80 {
				eightBit = true
				headerUTF8 = headerUTF8 || inHeader
				break
			}
		}
		if len(b) > 0 && b[len(b)-1] == '\n' {
			lines++
			if prevLF && (len(b) == 1 || len(b) == 2 && b[0] == '\r') {
				inHeader = false
			}
			prevLF = true
		} else if len(b) > 0 {
			prevLF = false
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	from, err := envelopeAddress(sender)
	if err != nil {
		return nil, err
	}
	to, err := envelopeAddress(rcpt)
	if err != nil {
		return nil, err
	}
	return &message{
		env: client.Envelope{
			From: from, To: []string{to},
			Size:            req.Size + lines,
			EightBit:        eightBit,
			SMTPUTF8:        headerUTF8 || req.SMTPUTF8,
			RequireSMTPUTF8: !isASCII(from) || !isASCII(to),
		},
		content: content,
	}, nil
}

// envelopeAddress writes an address for MAIL or RCPT. A UTF-8 domain with
// an ASCII local part is written with the domain's A-labels, which any
// server understands (RFC 6531 §3.2 leaves no other downgrade).
func envelopeAddress(m address.Mailbox) (string, error) {
	if m.IsNull() {
		return "", nil
	}
	s := m.String()
	if isASCII(s) || !isASCII(address.QuoteLocal(m.Local)) || strings.HasPrefix(m.Domain, "[") {
		return s, nil
	}
	d, err := dns.ToASCII(m.Domain)
	if err != nil {
		return s, nil // sent as it is, with SMTPUTF8
	}
	return address.QuoteLocal(m.Local) + "@" + d, nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func tlsMode(cfg *config.Config) client.TLSMode {
	switch cfg.SMTP.TLS {
	case "none":
		return client.TLSNone
	case "encrypt":
		return client.TLSEncrypt
	}
	return client.TLSMay
}

// connect opens a session with t: TCP, greeting, EHLO, STARTTLS, AUTH.
func (a *Agent) connect(ctx context.Context, cfg *config.Config, d destination, t target, plaintext bool) (*session, result) {
	res := result{relay: t.nameport(), next: true}
	dialer := net.Dialer{Timeout: cfg.SMTP.ConnectTimeout.D()}
	nc, err := dialer.DialContext(ctx, "tcp", netip.AddrPortFrom(t.addr, uint16(t.port)).String())
	if err != nil {
		res.relay = "none"
		res.rep = agent.Tempfail("4.4.1", "connect to %s: %s", t.nameport(), dialError(err))
		return nil, res
	}
	ccfg := client.Config{
		HeloName: cfg.SMTP.HeloName, TLS: tlsMode(cfg), ServerName: t.host,
		AllowCleartextAuth: cfg.SMTP.AuthAllowCleartext, Timeouts: a.opt.Timeouts,
	}
	if plaintext {
		ccfg.TLS = client.TLSNone
	}
	if d.relay && cfg.SMTP.RelayhostUsername != "" {
		pw, err := readPassword(cfg.SMTP.RelayhostPasswordFile)
		if err != nil {
			nc.Close()
			// A configuration problem: keep the mail (Postfix's 4.3.5).
			res.rep, res.next = agent.Tempfail("4.3.5", "%v", err), false
			return nil, res
		}
		ccfg.Username, ccfg.Password = cfg.SMTP.RelayhostUsername, pw
	}
	c, err := client.New(ctx, nc, ccfg)
	if err != nil {
		res.rep = a.sessionError(t, err)
		res.next = res.rep.Status == agent.Deferred
		var e *client.Error
		res.tlsFailed = errors.As(err, &e) && e.TLSHandshake
		return nil, res
	}
	if st := c.TLS(); st != nil {
		a.log.Info("%s TLS connection established to %s: %s", tlsTrust(st), t.nameport(), tlsSummary(st))
	}
	res.setup = time.Now()
	return &session{c: c, t: t}, res
}

func readPassword(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("cannot read smtp.relayhost_password_file: %v", err)
	}
	pw, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSuffix(pw, "\r"), nil
}

// dialError words a connect failure as strerror does ("Connection refused").
func dialError(err error) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "Connection timed out"
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		s := errno.Error()
		return strings.ToUpper(s[:1]) + s[1:]
	}
	return err.Error()
}

// sessionError maps a failure of the session to a reply, in Postfix's
// words. During the greeting and EHLO a 5xx does not return the mail
// when it is the greeting (Postfix's smtp_skip_5xx_greeting), and nothing
// about TLS or AUTH ever does: those are problems of this side or of the
// path, and the mail waits.
func (a *Agent) sessionError(t target, err error) agent.Reply {
	var e *client.Error
	if !errors.As(err, &e) {
		return agent.Tempfail("4.4.2", "%s: %v", t.name(), err)
	}
	soft := func(dsn string) string { return "4" + dsn[1:] }
	switch {
	case e.Reply != nil && e.Cmd == "greeting":
		return agent.Tempfail(soft(e.DSN()), "host %s refused to talk to me: %s", t.name(), e.Reply)
	case e.Reply != nil && e.Cmd == "AUTH":
		return agent.Tempfail(soft(e.DSN()), "SASL authentication failed; server %s said: %s", t.name(), e.Reply)
	case e.Reply != nil:
		text := fmt.Sprintf("host %s said: %s (in reply to %s command)", t.name(), e.Reply, e.Cmd)
		if e.Reply.Permanent() && e.Cmd != "STARTTLS" {
			return agent.Permfail(e.DSN(), "%s", text)
		}
		return agent.Tempfail(soft(e.DSN()), "%s", text)
	case e.TLSHandshake:
		return agent.Tempfail("4.7.5", "Cannot start TLS with %s: %v", t.name(), e.Err)
	case e.Cmd == "AUTH":
		return agent.Tempfail(e.DSN(), "SASL authentication failed; cannot authenticate to server %s: %v", t.name(), e.Err)
	case e.Status == "4.3.0":
		return agent.Tempfail("4.3.0", "local data error while talking to %s: %v", t.name(), e.Err)
	case e.Status != "":
		r := agent.Tempfail(e.Status, "%v %s", e.Err, t.name())
		if strings.HasPrefix(e.Status, "5") {
			r.Status = agent.Bounced
		}
		return r
	case client.IsTimeout(e.Err):
		return agent.Tempfail(e.DSN(), "conversation with %s timed out while %s", t.name(), e.Stage())
	case client.IsLost(e.Err):
		return agent.Tempfail(e.DSN(), "lost connection with %s while %s", t.name(), e.Stage())
	case errors.Is(e.Err, client.ErrProtocol):
		return agent.Tempfail(e.DSN(), "%v from %s while %s", e.Err, t.name(), e.Stage())
	}
	return agent.Tempfail(e.DSN(), "error talking to %s while %s: %v", t.name(), e.Stage(), e.Err)
}

// transact sends the message over s and gives s back to the cache when it
// can carry another.
func (a *Agent) transact(ctx context.Context, d destination, s *session, msg *message) result {
	res := result{relay: s.t.nameport(), setup: time.Now()}
	rr, err := s.c.Send(ctx, &msg.env, msg.content())
	if err != nil {
		var e *client.Error
		if errors.As(err, &e) && e.Cmd == "RSET" {
			s.c.Close()
			return result{stale: true}
		}
		res.rep = a.sessionError(s.t, err)
		res.next = res.rep.Status == agent.Deferred && e != nil && e.Status == ""
	} else {
		r := rr[0]
		switch {
		case r.Delivered():
			res.rep = agent.Reply{Status: agent.Sent, DSN: r.Reply.DSN(), Text: r.Reply.String()}
			a.dead.clear(d.key)
		case r.Reply.Permanent():
			res.rep = agent.Permfail(r.Reply.DSN(), "host %s said: %s (in reply to %s command)", s.t.name(), r.Reply, r.Cmd)
		default:
			res.rep = agent.Tempfail(r.Reply.DSN(), "host %s said: %s (in reply to %s command)", s.t.name(), r.Reply, r.Cmd)
			res.next = true
		}
	}
	if s.c.Broken() {
		s.c.Close()
	} else {
		a.cache.put(d.key, s)
	}
	return res
}

// logResult writes Postfix's delivery line:
// to=<..>, relay=.., delay=.., delays=a/b/c/d, dsn=.., status=.. (..)
// where a is the time before qmgr took the message, b before this agent
// started, c the connection set-up (DNS, TCP, greeting, TLS, EHLO) and d
// the transmission.
func (a *Agent) logResult(req agent.Request, start time.Time, res result) {
	now := time.Now()
	d := maillog.Delay
	setup := res.setup
	if setup.IsZero() {
		setup = now
	}
	delays := fmt.Sprintf("%s/%s/%s/%s", d(req.Active.Sub(req.Arrival)), d(start.Sub(req.Active)),
		d(setup.Sub(start)), d(now.Sub(setup)))
	a.log.Info("%s: to=<%s>, relay=%s, delay=%s, delays=%s, dsn=%s, status=%s (%s)",
		req.QueueID, req.Recipient, res.relay, d(now.Sub(req.Arrival)), delays, res.rep.DSN, res.rep.Status, res.rep.Text)
}
