// Package pop3d runs POP3 privilege-separated, as DESIGN §1 draws it:
// pop3-login (the mail owner) speaks POP3 until the user authenticates
// through the auth daemon, then hands the connection over (pkg/login) to
// the pop3d dispatcher (root), which passes it to a worker running as the
// mailbox's owner; the worker serves the transaction state on the user's
// Maildir (pkg/pop3, pkg/mailbox).
package pop3d

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sync"
	"time"

	"github.com/posthorn/posthorn/pkg/auth"
	"github.com/posthorn/posthorn/pkg/config"
	"github.com/posthorn/posthorn/pkg/daemon"
	"github.com/posthorn/posthorn/pkg/login"
	"github.com/posthorn/posthorn/pkg/mailbox"
	"github.com/posthorn/posthorn/pkg/maillog"
	"github.com/posthorn/posthorn/pkg/pop3"
	"github.com/posthorn/posthorn/pkg/recipient"
	"github.com/posthorn/posthorn/pkg/spool"
	"github.com/posthorn/posthorn/pkg/tlscert"
)

func authSocket(cfg *config.Config) string {
	return filepath.Join(cfg.SpoolDir, spool.Private, "auth")
}

func dispatchSocket(cfg *config.Config) string {
	return filepath.Join(cfg.SpoolDir, spool.Private, "pop3d")
}

// RunLogin is pop3-login: it serves "pop3" (110, STLS) and "pop3s" (995,
// implicit TLS) until told to stop.
func RunLogin(d *daemon.D) error {
	cfg := d.Config()
	certs := &tlscert.Store{}
	certs.Reload(cfg, d.Log, "STLS and POP3S are off")
	go func() {
		for c := range d.Reload {
			certs.Reload(c, d.Log, "STLS and POP3S are off")
		}
	}()
	ac := auth.NewClient(authSocket(cfg))
	authn := pop3.AuthenticatorFunc(func(ctx context.Context, c pop3.Credentials) pop3.AuthResult {
		ip := ""
		if ta, ok := c.Remote.(*net.TCPAddr); ok {
			ip = ta.IP.String()
		}
		res, err := ac.Verify(ctx, auth.Request{Service: auth.ServicePOP3, User: c.User, Password: c.Password,
			RemoteIP: ip, Secured: c.Secured, IssueToken: true})
		if err != nil {
			d.Log.Warning("auth: %v", err)
			return pop3.AuthResult{Temp: true}
		}
		return pop3.AuthResult{OK: res.OK && res.Token != "", User: res.User, Temp: res.Temp, Token: res.Token}
	})
	var wg sync.WaitGroup
	serve := func(l net.Listener, implicit bool) {
		defer wg.Done()
		go func() { <-d.Ctx.Done(); l.Close() }()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				session(d.Ctx, d.Log, cfg, c, implicit, certs, authn)
			}()
		}
	}
	n := 0
	for _, l := range d.Listeners["pop3"] {
		wg.Add(1)
		go serve(l, false)
		n++
	}
	for _, l := range d.Listeners["pop3s"] {
		wg.Add(1)
		go serve(l, true)
		n++
	}
	if n == 0 {
		return errors.New("pop3-login: no listening socket inherited from master")
	}
	<-d.Ctx.Done()
	wg.Wait()
	return nil
}

func session(ctx context.Context, log *maillog.Logger, cfg *config.Config, c net.Conn, implicit bool,
	certs *tlscert.Store, authn pop3.Authenticator) {
	var tc *tls.Config
	if certs.OK() {
		tc = certs.ServerConfig()
	}
	if implicit {
		if tc == nil {
			c.Close()
			return
		}
		t := tls.Server(c, tc)
		t.SetDeadline(time.Now().Add(60 * time.Second))
		if err := t.HandshakeContext(ctx); err != nil {
			c.Close()
			return
		}
		t.SetDeadline(time.Time{})
		c = t
	}
	h, err := pop3.ServeLogin(ctx, c, pop3.LoginConfig{TLS: tc, Log: log}, authn)
	if err != nil {
		return // ServeLogin said why and closed the connection
	}
	s := login.Session{Remote: h.Conn.RemoteAddr().String(), Local: h.Conn.LocalAddr().String(),
		Secured: h.Secured, Buffered: h.Buffered, State: map[string]string{"method": h.Method}}
	// RFC 3206 SYS/TEMP: the password was good, the mailbox server
	// cannot take the session now.
	refused := func(c net.Conn) { io.WriteString(c, "-ERR [SYS/TEMP] Temporary internal error, try again later\r\n") }
	if err := login.Handoff(ctx, dispatchSocket(cfg), h.Token, h.Conn, s, refused); err != nil {
		log.Warning("pop3-login: %s: %v", h.User, err)
	}
}

// RunDispatcher is the pop3d daemon under master (root): it takes handed
// over connections on "pop3d" and gives each to its owner's worker.
func RunDispatcher(d *daemon.D) error {
	cfg := d.Config()
	ls := d.Listeners["pop3d"]
	if len(ls) == 0 {
		return errors.New("pop3d: no listening socket inherited from master")
	}
	ac := auth.NewClient(authSocket(cfg))
	res := recipient.New(cfg)
	disp := &login.Dispatcher{
		Service: "pop3",
		Log:     d.Log,
		Resolve: func(ctx context.Context, tok string) (string, error) { return ac.Redeem(ctx, tok, auth.ServicePOP3) },
		Lookup: func(user string) (login.Mailbox, error) {
			t, err := res.Mailbox(user)
			if err != nil {
				return login.Mailbox{}, err
			}
			return login.Mailbox{UID: t.UID, GID: t.GID, Maildir: t.Path}, nil
		},
		Args: []string{"-c", cfg.Path},
	}
	return disp.Serve(d.Ctx, ls[0])
}

// RunWorker serves the POP3 sessions of one mailbox owner.
func RunWorker(ctx context.Context, cfg *config.Config, log *maillog.Logger) error {
	pool := mailbox.NewStorePool(mailbox.Options{Hostname: cfg.Hostname}, workerIdle)
	return login.RunWorker(ctx, func(ctx context.Context, c net.Conn, s login.Session) {
		store, release, err := pool.Get(s.Maildir)
		if err != nil {
			log.Warning("pop3(%s): cannot open %s: %v", s.User, s.Maildir, err)
			fmt.Fprintf(c, "-ERR [SYS/TEMP] Internal error occurred. Refer to server log for more information.\r\n")
			return
		}
		defer release()
		h := &pop3.Handoff{User: s.User, Conn: c, TLS: s.TLS, Secured: s.Secured, Method: s.State["method"]}
		pop3.ServeSession(ctx, h, store, pop3.SessionConfig{Log: log})
	}, workerIdle)
}

// workerIdle is how long a worker with no session stays for the next one,
// keeping the mailboxes it served open.
const workerIdle = time.Minute
