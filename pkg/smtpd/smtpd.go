// Package smtpd is the SMTP receiving daemon: it joins the protocol engine
// (pkg/smtp/server) to the recipient tables, the spool, the TLS certificate
// and the auth daemon, and serves the MX service (port 25) and message
// submission (ports 587 and 465) from one process. A message is
// acknowledged only after its queue file is durable in incoming/ (DESIGN
// §2.1); qmgr is then told about it, and finds it by scanning if the notice
// is lost.
package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/posthorn/posthorn/pkg/address"
	"github.com/posthorn/posthorn/pkg/auth"
	"github.com/posthorn/posthorn/pkg/config"
	"github.com/posthorn/posthorn/pkg/daemon"
	"github.com/posthorn/posthorn/pkg/maillog"
	"github.com/posthorn/posthorn/pkg/qmgr"
	"github.com/posthorn/posthorn/pkg/recipient"
	"github.com/posthorn/posthorn/pkg/smtp/server"
	"github.com/posthorn/posthorn/pkg/spool"
	"github.com/posthorn/posthorn/pkg/tlscert"
)

// listenerModes names the listeners master passes (pkg/master's service
// table) and the service each one is.
var listenerModes = []struct {
	name string
	mode server.Mode
}{
	{"smtp", server.ModeMX},
	{"submission", server.ModeSubmission},
	{"submissions", server.ModeSubmissions},
}

// spareProcessors doubles the number of goroutines the runtime runs at
// once (GOMAXPROCS, by default one per CPU) unless the environment sets
// GOMAXPROCS. Sessions commit with fsyncs that take milliseconds, and a
// goroutine in a system call keeps its processor until the runtime's
// monitor thread takes it back, up to a millisecond later with the timer
// slack master gives smtpd. With one processor per CPU, two commits under
// way held up every other session's next reply while the CPUs sat idle:
// on the local-delivery benchmark 10% of the machine was idle, 6-8% with
// twice the processors, and 5-10% more messages went through.
func spareProcessors() {
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(2 * runtime.GOMAXPROCS(0))
	}
}

// Run serves SMTP on the daemon's "smtp", "submission" and "submissions"
// listeners until it is told to stop, then lets sessions finish within the
// configured grace period. SIGHUP re-reads the configuration and the TLS
// certificate.
func Run(d *daemon.D) error {
	spareProcessors()
	cfg := d.Config()
	b := NewBackend(cfg, d.Log)
	certs := &tlscert.Store{}
	certs.Reload(cfg, d.Log, "STARTTLS and implicit TLS are off")
	a := NewAuthenticator(cfg)
	srv := server.New(ServerConfig(cfg, d.Log, certs, a), b)
	n := 0
	for _, lm := range listenerModes {
		for _, l := range d.Listeners[lm.name] {
			go srv.ServeMode(l, lm.mode)
			n++
		}
	}
	if n == 0 {
		return errors.New("smtpd: no listening socket inherited from master")
	}
	for {
		select {
		case cfg = <-d.Reload:
			certs.Reload(cfg, d.Log, "STARTTLS and implicit TLS are off")
			b.SetConfig(cfg)
			srv.SetConfig(ServerConfig(cfg, d.Log, certs, a))
		case <-d.Ctx.Done():
			ctx, cancel := context.WithTimeout(context.Background(), cfg.Master.StopGrace.D())
			defer cancel()
			return srv.Shutdown(ctx)
		}
	}
}

// ServerConfig maps the configuration onto the protocol engine's settings.
// certs nil or empty leaves TLS off; a nil Authenticator leaves AUTH off.
func ServerConfig(cfg *config.Config, log *maillog.Logger, certs *tlscert.Store, a server.Authenticator) server.Config {
	sc := server.Config{
		Hostname:              cfg.Hostname,
		Banner:                cfg.SMTPD.Banner,
		MaxMessageSize:        cfg.MessageSizeLimit,
		MaxRecipients:         cfg.SMTPD.RecipientLimit,
		HardErrorLimit:        cfg.SMTPD.HardErrorLimit,
		JunkCommandLimit:      cfg.SMTPD.JunkCommandLimit,
		LineLengthLimit:       cfg.SMTPD.LineLengthLimit,
		HeaderSizeLimit:       cfg.SMTPD.HeaderSizeLimit,
		HopCountLimit:         cfg.SMTPD.HopCountLimit,
		ProcessLimit:          cfg.SMTPD.ProcessLimit,
		Timeout:               cfg.SMTPD.Timeout.D(),
		Log:                   log,
		Auth:                  a,
		PlaintextAuthLoopback: cfg.SMTPD.AllowPlaintextAuthOnLoopback,
		ReceivedAuthUser:      cfg.SMTPD.ReceivedAuthUser,
	}
	if certs.OK() {
		// The engine adds its policy (TLS 1.2 and later, modern suites, no
		// session tickets).
		sc.TLS = &tls.Config{GetCertificate: certs.Get}
	}
	return sc
}

// NewAuthenticator returns the engine's Authenticator backed by the auth
// daemon at <spool>/private/auth.
func NewAuthenticator(cfg *config.Config) server.Authenticator {
	return &authClient{c: auth.NewClient(filepath.Join(cfg.SpoolDir, spool.Private, "auth"))}
}

type authClient struct{ c *auth.Client }

// Authenticate asks the auth daemon, which applies the failure delays and
// limits per client and per user.
func (a *authClient) Authenticate(ctx context.Context, c *server.ConnInfo, mech, user, pass string) server.AuthResult {
	res, err := a.c.Verify(ctx, auth.Request{
		Service: auth.ServiceSMTP, User: user, Password: pass, RemoteIP: ipString(c.RemoteIP),
		// The engine asks only under TLS or, when allowed, on loopback.
		Secured: c.TLS != nil || c.RemoteIP != nil && c.RemoteIP.IsLoopback(),
	})
	switch {
	case err != nil:
		return server.AuthResult{Temp: true, Unavailable: true, Reason: err.Error()}
	case res.OK:
		return server.AuthResult{OK: true, User: res.User}
	case res.Temp:
		// A refusal for too many failures is still the client's doing;
		// auth.SMTPFailure knows which temporary results are, and words
		// the others as the service failing.
		line := auth.SMTPFailure("", "", mech, "", res, nil)
		return server.AuthResult{Temp: true, Reason: res.Reason,
			Unavailable: strings.Contains(line, "Connection lost to authentication server")}
	}
	return server.AuthResult{Reason: res.Reason}
}

// Backend decides on recipients and writes accepted messages to the spool.
type Backend struct {
	log    *maillog.Logger
	spool  *spool.Spool
	notify *qmgr.Notifier

	mu       sync.Mutex
	cfg      *config.Config
	resolver *recipient.Resolver
	relayNet []*net.IPNet
	senders  *senderMapFile // nil without smtpd.sender_login_map

	warnMu   sync.Mutex
	lastWarn time.Time
}

// NewBackend returns the backend for cfg.
func NewBackend(cfg *config.Config, log *maillog.Logger) *Backend {
	b := &Backend{log: log, spool: spool.Open(cfg.SpoolDir),
		notify: qmgr.NewNotifier(filepath.Join(cfg.SpoolDir, spool.Private, "qmgr"))}
	b.SetConfig(cfg)
	return b
}

// SetConfig applies a reloaded configuration.
func (b *Backend) SetConfig(cfg *config.Config) {
	var nets []*net.IPNet
	for _, s := range cfg.SMTPD.RelayNetworks {
		// Postfix writes IPv6 networks in brackets: [::1]/128 or [::1].
		s = strings.Replace(strings.Replace(s, "[", "", 1), "]", "", 1)
		if !strings.Contains(s, "/") {
			if strings.Contains(s, ":") {
				s += "/128"
			} else {
				s += "/32"
			}
		}
		if _, n, err := net.ParseCIDR(s); err == nil {
			nets = append(nets, n)
		} else {
			b.log.Warning("smtpd.relay_networks: ignoring %q: %v", s, err)
		}
	}
	b.mu.Lock()
	b.cfg, b.resolver, b.relayNet = cfg, recipient.New(cfg), nets
	if p := cfg.SMTPD.SenderLoginMap; p == "" {
		b.senders = nil
	} else if b.senders == nil || b.senders.path != p {
		b.senders = &senderMapFile{path: p}
	}
	b.mu.Unlock()
}

func (b *Backend) current() (*config.Config, *recipient.Resolver, []*net.IPNet) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cfg, b.resolver, b.relayNet
}

// CheckSender accepts any syntactically valid sender from a client that did
// not authenticate. An authenticated user may use only the senders it owns
// (Postfix's reject_sender_login_mismatch with smtpd_sender_login_maps):
// mail it submits is relayed anywhere, so it must not be able to pose as
// another user.
func (b *Backend) CheckSender(c *server.ConnInfo, from address.Mailbox) *server.Reply {
	if c.AuthUser == "" {
		return nil
	}
	b.mu.Lock()
	cfg, senders := b.cfg, b.senders
	b.mu.Unlock()
	var m senderMap
	if senders != nil {
		var err error
		if m, err = senders.get(b.log.Warning); err != nil {
			return &server.Reply{Code: 451, Enhanced: "4.3.0",
				Text: fmt.Sprintf("<%s>: Sender address rejected: Temporary lookup failure", from.String())}
		}
	}
	if checkSenderOwner(cfg, m, c.AuthUser, from) != nil {
		return &server.Reply{Code: 553, Enhanced: "5.7.1",
			Text: fmt.Sprintf("<%s>: Sender address rejected: not owned by user %s", from.String(), c.AuthUser)}
	}
	return nil
}

// CheckRecipient answers RCPT: local and virtual users must exist (so a
// forged sender never gets backscatter, RFC 5321 §6.1), other domains are
// relayed only for authenticated users and clients in relay_networks.
func (b *Backend) CheckRecipient(c *server.ConnInfo, env *server.Envelope, rcpt address.Mailbox) *server.Reply {
	cfg, res, nets := b.current()
	if rcpt.Domain == "" {
		// <postmaster> without a domain (RFC 5321 §4.1.1.3).
		return nil
	}
	err := res.Check(rcpt.Local, rcpt.Domain)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, recipient.ErrUnknownUser):
		table := "local recipient table"
		if cfg.IsVirtualDomain(rcpt.Domain) {
			table = "virtual mailbox table"
		}
		return &server.Reply{Code: 550, Enhanced: "5.1.1",
			Text: fmt.Sprintf("<%s>: Recipient address rejected: User unknown in %s", rcpt.String(), table)}
	case errors.Is(err, recipient.ErrNotLocal):
		if c.AuthUser != "" {
			return nil
		}
		for _, n := range nets {
			if c.RemoteIP != nil && n.Contains(c.RemoteIP) {
				return nil
			}
		}
		return &server.Reply{Code: 554, Enhanced: "5.7.1", Text: fmt.Sprintf("<%s>: Relay access denied", rcpt.String())}
	default:
		b.log.Warning("recipient lookup for <%s>: %v", rcpt.String(), err)
		return &server.Reply{Code: 451, Enhanced: "4.3.0", Text: fmt.Sprintf("<%s>: Temporary lookup failure", rcpt.String())}
	}
}

// Begin opens a queue file for the message.
func (b *Backend) Begin(env *server.Envelope) (server.Message, *server.Reply) {
	se := &spool.Envelope{Sender: env.From.String(), Attrs: map[string]string{
		"client_address": ipString(env.Conn.RemoteIP),
		"client_name":    env.Conn.RemoteName,
		"helo":           env.Conn.Helo,
		"body":           env.Body,
	}}
	if env.SMTPUTF8 {
		se.Attrs["smtputf8"] = "yes"
	}
	// DSN (RFC 3461), decoded and checked by the engine; the queue file
	// escapes every value anyway.
	if env.Ret != "" {
		se.Attrs["ret"] = env.Ret
	}
	if env.EnvID != "" {
		se.Attrs["envid"] = env.EnvID
	}
	if c := env.Conn; c.AuthUser != "" {
		se.Attrs["sasl_method"] = c.AuthMethod
		se.Attrs["sasl_username"] = c.AuthUser
	}
	for _, r := range env.Rcpts {
		// Bare <postmaster> stays bare: local resolves it through the aliases.
		rc := spool.Recipient{Addr: r.Addr.String()}
		if r.Notify != "" || r.ORCPT != "" {
			rc.Params = map[string]string{}
			if r.Notify != "" {
				rc.Params["NOTIFY"] = r.Notify
			}
			if r.ORCPT != "" {
				rc.Params["ORCPT"] = r.ORCPT
			}
		}
		se.Rcpts = append(se.Rcpts, rc)
	}
	w, err := b.spool.Create(se)
	if err != nil {
		b.log.Warning("%v", err)
		return nil, &server.Reply{Code: 451, Enhanced: "4.3.0", Text: "Error: queue file write error"}
	}
	return &message{w: w, b: b}, nil
}

type message struct {
	w *spool.Writer
	b *Backend
}

func (m *message) QueueID() string             { return m.w.ID() }
func (m *message) Write(p []byte) (int, error) { return m.w.Write(p) }
func (m *message) Abort()                      { m.w.Abort() }
func (m *message) Commit() error {
	if err := m.w.Commit(); err != nil {
		m.b.log.Warning("%v", err)
		return err
	}
	if err := m.b.notify.Notify(qmgr.Notice{Op: "new", ID: m.w.ID()}); err != nil {
		m.b.warnOnce("cannot notify qmgr (the message waits for its next scan): %v", err)
	}
	return nil
}

// warnOnce rate-limits a warning that would otherwise repeat per message.
func (b *Backend) warnOnce(format string, args ...any) {
	b.warnMu.Lock()
	defer b.warnMu.Unlock()
	if time.Since(b.lastWarn) < time.Minute {
		return
	}
	b.lastWarn = time.Now()
	b.log.Warning(format, args...)
}

func ipString(ip net.IP) string {
	if ip == nil {
		return ""
	}
	return ip.String()
}
