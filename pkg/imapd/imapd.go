// Package imapd runs IMAP privilege-separated, as DESIGN §1 draws it:
// imap-login (the mail owner) speaks IMAP until the user authenticates
// through the auth daemon, then hands the connection over (pkg/login) to
// the imapd dispatcher (root), which passes it to a worker running as the
// mailbox's owner; the worker answers the login command and serves the
// session on the user's Maildir (pkg/imap/server, pkg/imapstore). One
// worker serves every session of its owner, and sessions of one Maildir
// in it share one mailbox.Store, so they see each other's changes at once.
package imapd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/posthorn/posthorn/pkg/auth"
	"github.com/posthorn/posthorn/pkg/config"
	"github.com/posthorn/posthorn/pkg/daemon"
	"github.com/posthorn/posthorn/pkg/imap"
	"github.com/posthorn/posthorn/pkg/imap/server"
	"github.com/posthorn/posthorn/pkg/imapstore"
	"github.com/posthorn/posthorn/pkg/login"
	"github.com/posthorn/posthorn/pkg/mailbox"
	"github.com/posthorn/posthorn/pkg/maillog"
	"github.com/posthorn/posthorn/pkg/recipient"
	"github.com/posthorn/posthorn/pkg/spool"
	"github.com/posthorn/posthorn/pkg/tlscert"
)

func authSocket(cfg *config.Config) string {
	return filepath.Join(cfg.SpoolDir, spool.Private, "auth")
}

func dispatchSocket(cfg *config.Config) string {
	return filepath.Join(cfg.SpoolDir, spool.Private, "imapd")
}

// Session state keys the login stage passes on (login.Session.State).
const (
	stateTag = "tag" // the tag of the LOGIN or AUTHENTICATE to answer
)

// workerIdle is how long a worker with no session stays for the next one.
const workerIdle = time.Minute

// loginUser is what the login-side Backend returns: the canonical name and
// the auth daemon's one-time token. The session never uses it as a mail
// store: TakeOver passes the connection on first.
type loginUser struct {
	imap.User
	name, token string
}

func (u *loginUser) Username() string { return u.name }
func (u *loginUser) Logout()          {}

// loginBackend checks passwords with the auth daemon.
type loginBackend struct {
	ac  *auth.Client
	log *maillog.Logger
}

func ipOf(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	return ""
}

func (b *loginBackend) Login(ctx context.Context, c *imap.ConnInfo, authz, name, password string) (imap.User, error) {
	method := "PLAIN"
	res, err := b.ac.Verify(ctx, auth.Request{Service: auth.ServiceIMAP, User: name, Password: password,
		RemoteIP: ipOf(c.RemoteAddr), Secured: c.Secured, IssueToken: true})
	if err != nil {
		b.log.Warning("imap-login: auth: %v", err)
		return nil, imap.ErrUnavailable
	}
	if res.Temp {
		return nil, imap.ErrUnavailable
	}
	if !res.OK || res.Token == "" {
		// One line per failed attempt, in the shape fail2ban's dovecot
		// filter counts.
		b.log.Info("imap-login: %s", auth.LoginFailure(1, 0, name, method, ipOf(c.RemoteAddr), ipOf(c.LocalAddr), c.TLS != nil))
		return nil, imap.ErrAuthFailed
	}
	if authz != "" && authz != name && authz != res.User {
		return nil, imap.ErrAuthzFailed
	}
	return &loginUser{name: res.User, token: res.Token}, nil
}

// LoginConfig is the engine configuration of imap-login.
func LoginConfig(cfg *config.Config, log *maillog.Logger, certs *tlscert.Store, ac *auth.Client) server.Config {
	sc := server.Config{
		Backend:     &loginBackend{ac: ac, log: log},
		AppendLimit: cfg.MessageSizeLimit,
		Log:         log,
		TakeOver: func(c net.Conn, h server.Handoff) {
			u := h.User.(*loginUser)
			s := login.Session{Remote: c.RemoteAddr().String(), Local: c.LocalAddr().String(),
				Secured: h.Secure, Buffered: h.Input, State: map[string]string{stateTag: h.Tag}}
			// RFC 5530 UNAVAILABLE: the login was good, the mailbox
			// server cannot take the session now.
			refused := func(c net.Conn) {
				io.WriteString(c, h.Tag+" NO [UNAVAILABLE] Internal error occurred. Refer to server log for more information.\r\n")
			}
			if err := login.Handoff(context.Background(), dispatchSocket(cfg), u.token, c, s, refused); err != nil {
				log.Warning("imap-login: handoff of user=<%s> failed: %v", u.name, err)
			}
		},
	}
	if certs != nil && certs.OK() {
		sc.TLSConfig = certs.ServerConfig()
	}
	return sc
}

// RunLogin is imap-login: it serves "imap" (143, STARTTLS) and "imaps"
// (993, implicit TLS) until told to stop.
func RunLogin(d *daemon.D) error {
	cfg := d.Config()
	certs := &tlscert.Store{}
	certs.Reload(cfg, d.Log, "STARTTLS and IMAPS are off")
	ac := auth.NewClient(authSocket(cfg))
	// The certificate is looked up at each handshake, so a reload applies
	// to the next connection.
	sc := LoginConfig(cfg, d.Log, certs, ac)
	sc.TLSConfig = certs.ServerConfig()
	srv := server.New(sc)
	n := 0
	for _, l := range d.Listeners["imap"] {
		go srv.Serve(l)
		n++
	}
	for _, l := range d.Listeners["imaps"] {
		go srv.Serve(tls.NewListener(l, certs.ServerConfig()))
		n++
	}
	if n == 0 {
		return errors.New("imap-login: no listening socket inherited from master")
	}
	for {
		select {
		case c := <-d.Reload:
			certs.Reload(c, d.Log, "STARTTLS and IMAPS are off")
		case <-d.Ctx.Done():
			// Sessions already handed over belong to imapd; relays of TLS
			// sessions end with this process, as Dovecot's login
			// processes' proxies do.
			return srv.Close()
		}
	}
}

// RunDispatcher is the imapd daemon under master (root): it takes handed
// over connections on "imapd" and gives each to its owner's worker.
func RunDispatcher(d *daemon.D) error {
	cfg := d.Config()
	ls := d.Listeners["imapd"]
	if len(ls) == 0 {
		return errors.New("imapd: no listening socket inherited from master")
	}
	ac := auth.NewClient(authSocket(cfg))
	res := recipient.New(cfg)
	disp := &login.Dispatcher{
		Service: "imap",
		Log:     d.Log,
		Resolve: func(ctx context.Context, tok string) (string, error) { return ac.Redeem(ctx, tok, auth.ServiceIMAP) },
		Lookup:  func(name string) (login.Mailbox, error) { return lookup(res, name) },
		Args:    []string{"-c", cfg.Path},
	}
	return disp.Serve(d.Ctx, ls[0])
}

// lookup finds a user's own Maildir and its owner. A system user whose
// mail is an mbox gets an empty Maildir: the worker, started as that user,
// then refuses the login with a clear NO instead of dropping it.
func lookup(res *recipient.Resolver, name string) (login.Mailbox, error) {
	t, err := res.Mailbox(name)
	if errors.Is(err, recipient.ErrNoMaildir) && !strings.Contains(name, "@") {
		u, uerr := user.Lookup(name)
		if uerr != nil {
			return login.Mailbox{}, err
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		return login.Mailbox{UID: uid, GID: gid}, nil
	}
	if err != nil {
		return login.Mailbox{}, err
	}
	return login.Mailbox{UID: t.UID, GID: t.GID, Maildir: t.Path}, nil
}

// WorkerConfig is the engine configuration of an imapd worker.
func WorkerConfig(cfg *config.Config, log *maillog.Logger) server.Config {
	return server.Config{
		// Logins happen in imap-login; a worker never checks a password.
		Backend:     noLogin{},
		AppendLimit: cfg.MessageSizeLimit,
		Log:         log,
	}
}

type noLogin struct{}

func (noLogin) Login(context.Context, *imap.ConnInfo, string, string, string) (imap.User, error) {
	return nil, imap.ErrAuthFailed
}

// StoreOptions are the mailbox options of a user's Maildir.
func StoreOptions(cfg *config.Config) mailbox.Options {
	o := mailbox.Options{Hostname: cfg.Hostname}
	if cfg.IMAP.Quota > 0 {
		o.Quota = &mailbox.QuotaLimits{Bytes: cfg.IMAP.Quota}
	}
	return o
}

// RunWorker serves the IMAP sessions of one mailbox owner until the
// dispatcher lets it go.
func RunWorker(ctx context.Context, cfg *config.Config, log *maillog.Logger) error {
	srv := server.New(WorkerConfig(cfg, log))
	st := mailbox.NewStorePool(StoreOptions(cfg), workerIdle)
	defer srv.Close()
	return login.RunWorker(ctx, func(ctx context.Context, c net.Conn, s login.Session) {
		serve(srv, st, log, c, s)
	}, workerIdle)
}

// serve runs one handed-over session.
func serve(srv *server.Server, st *mailbox.StorePool, log *maillog.Logger, c net.Conn, s login.Session) {
	tag := s.State[stateTag]
	if tag == "" {
		tag = "*"
	}
	if s.Maildir == "" {
		log.Warning("imap(%s): mail is not in a Maildir; refusing the login rip=%s", s.User, s.Remote)
		fmt.Fprintf(c, "%s NO [UNAVAILABLE] Your mail is kept in an mbox, which this server does not serve; ask for Maildir.\r\n", tag)
		c.Close()
		return
	}
	store, release, err := st.Get(s.Maildir)
	if err != nil {
		log.Warning("imap(%s): cannot open %s: %v", s.User, s.Maildir, err)
		fmt.Fprintf(c, "%s NO [SERVERBUG] Internal error occurred. Refer to server log for more information.\r\n", tag)
		c.Close()
		return
	}
	u := imapstore.New(s.User, store, release)
	srv.ServeAuthenticated(c, server.Handoff{User: u, Tag: s.State[stateTag], Secure: s.Secured})
	release()
}
