package auth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/user"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/posthorn/posthorn/pkg/auth/pam"
	"github.com/posthorn/posthorn/pkg/config"
	"github.com/posthorn/posthorn/pkg/daemon"
	"github.com/posthorn/posthorn/pkg/ipc"
	"github.com/posthorn/posthorn/pkg/maillog"
	"github.com/posthorn/posthorn/pkg/userdb"
)

// Run is the auth daemon: it serves the "auth" listener master passed
// down until d.Ctx ends, and applies reloaded configurations.
func Run(d *daemon.D) error {
	ls := d.Listeners["auth"]
	if len(ls) == 0 {
		return errors.New("auth: no listening socket inherited from master")
	}
	s := NewServer(d.Config(), d.Log)
	go func() {
		for cfg := range d.Reload {
			s.SetConfig(cfg)
		}
	}()
	return s.Serve(d.Ctx, ls[0])
}

// Server checks passwords. Its methods are safe for concurrent use.
type Server struct {
	log   *maillog.Logger
	clock clock
	lim   *limiter
	// sem bounds the hashes and PAM checks running at once: each may take
	// a core, and an Argon2 hash up to 256 MiB.
	sem chan struct{}

	mu    sync.Mutex
	cfg   *config.Config
	files []*passwdFile // the users file, then auth.passwd_files

	// system checks a system user; lookupUID finds one's uid. Tests
	// replace both.
	system    func(user, password, rhost, tty string) (pam.Result, error)
	lookupUID func(name string) (uid int, ok bool)
	// idle is how long a connection may wait for its next request
	// (idleTimeout; tests shorten it).
	idle time.Duration
	// pamCost is the running average duration of PAM checks of users
	// that exist, in nanoseconds: a check of one that does not is held
	// that long, since pam_unix answers those at once.
	pamCost atomic.Int64
	// tokens hands authenticated sessions to the mail processes.
	tokens tokenTable
}

// NewServer returns a server for cfg that logs to log.
func NewServer(cfg *config.Config, log *maillog.Logger) *Server {
	s := &Server{
		log:       log,
		clock:     realClock{},
		lim:       newLimiter(limitsOf(cfg)),
		sem:       make(chan struct{}, max(2, runtime.GOMAXPROCS(0))),
		system:    pam.Check,
		lookupUID: lookupUID,
		idle:      idleTimeout,
	}
	s.SetConfig(cfg)
	return s
}

func limitsOf(cfg *config.Config) limits {
	a := cfg.Auth
	return limits{
		delay: a.FailureDelay.D(), maxDelay: a.MaxFailureDelay.D(), window: a.FailureWindow.D(),
		clientLimit: a.ClientFailureLimit, userLimit: a.UserFailureLimit,
	}
}

// SetConfig applies a reloaded configuration. Failure counts survive it,
// and so do the cached users files that are still named.
func (s *Server) SetConfig(cfg *config.Config) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := map[string]*passwdFile{}
	for _, f := range s.files {
		old[f.path] = f
	}
	var files []*passwdFile
	seen := map[string]bool{}
	for _, p := range append([]string{cfg.Virtual.UsersFile}, cfg.Auth.PasswdFiles...) {
		if p == "" || seen[p] {
			continue
		}
		seen[p] = true
		f := old[p]
		if f == nil {
			f = &passwdFile{path: p}
		}
		files = append(files, f)
	}
	s.cfg, s.files = cfg, files
	s.lim.setLimits(limitsOf(cfg))
}

func (s *Server) current() (*config.Config, []*passwdFile) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg, s.files
}

// ErrBadRequest wraps the reasons a request is refused unchecked: an
// unknown service or an address that is not one. It means a bug in the
// asking daemon, not a failed login.
var ErrBadRequest = errors.New("auth: bad request")

// outcome is what a backend found.
type outcome struct {
	res Result
	// backend and msg make the log line "backend(user,ip): msg", as
	// Dovecot writes it: backend is the passdb, "passwd-file" or "pam",
	// or "passdb" for a name refused before any lookup. Never "auth":
	// fail2ban's dovecot filter takes "auth(...): " for the name of
	// Dovecot's auth process and would skip the line.
	backend, msg string
}

func failed(backend, msg, reason string) outcome {
	return outcome{res: Result{Reason: reason}, backend: backend, msg: msg}
}

func temporary(backend, msg string) outcome {
	return outcome{res: Result{Temp: true, Reason: backend + ": " + msg}, backend: backend, msg: msg}
}

// Verify checks one request: limits, then the user's backend, then, for a
// failure, the delay before answering. The error is for requests that
// are not valid at all.
func (s *Server) Verify(ctx context.Context, r Request) (Result, error) {
	start := s.clock.Now()
	switch r.Service {
	case ServiceSMTP, ServiceIMAP, ServicePOP3:
	default:
		return Result{}, fmt.Errorf("%w: unknown service %q", ErrBadRequest, logName(r.Service))
	}
	ip, err := netip.ParseAddr(r.RemoteIP)
	if err != nil {
		return Result{}, fmt.Errorf("%w: remote address %q", ErrBadRequest, logName(r.RemoteIP))
	}
	addr := ip.WithZone("").Unmap().String()
	name := logName(r.User)
	if !r.Secured {
		// The protocol engines never offer this; answering without
		// checking and without counting keeps a password that was sent
		// in the clear from being confirmed to anyone listening.
		s.log.Info("passdb(%s,%s): password sent without TLS refused", name, addr)
		return Result{Reason: "password sent without TLS"}, nil
	}
	cfg, files := s.current()
	group, key := clientGroup(ip), limiterKey(cfg, r.User)
	why, log, unlogged := s.lim.admit(start, group, key)
	// A burst of logins from one address (a webmail server, an office
	// behind NAT) waits for a slot rather than failing: a refusal would
	// look like a failed login to fail2ban. The wait is bounded.
	for wait := time.Now().Add(inFlightWait); why == refusedInFlight && time.Now().Before(wait) && ctx.Err() == nil; {
		time.Sleep(inFlightPoll)
		why, log, unlogged = s.lim.admit(s.clock.Now(), group, key)
	}
	if why != "" {
		if log {
			s.log.Info("passdb(%s,%s): %s %s: refused without checking (%d more refused since the last such line)",
				name, addr, why, group, unlogged)
		}
		return Result{Temp: true, Reason: string(why)}, nil
	}
	o := s.check(ctx, cfg, files, r, addr)
	s.lim.release(group)
	switch {
	case o.res.OK:
		return o.res, nil
	case o.res.Temp:
		s.log.Warning("%s(%s,%s): %s", o.backend, name, addr, o.msg)
		return o.res, nil
	}
	delay := s.lim.fail(s.clock.Now(), group, key)
	s.log.Info("%s(%s,%s): %s", o.backend, name, addr, o.msg)
	// The delay runs from the start of the request, so how long the
	// check took (a hash, a dummy hash, PAM) does not show.
	s.clock.Sleep(ctx, start.Add(delay).Sub(s.clock.Now()))
	return o.res, nil
}

// How long an attempt over MaxClientInFlight waits for a slot, and how
// often it looks.
const (
	inFlightWait = 30 * time.Second
	inFlightPoll = 10 * time.Millisecond
)

// check finds the user's backend and asks it.
func (s *Server) check(ctx context.Context, cfg *config.Config, files []*passwdFile, r Request, addr string) outcome {
	if ValidUsername(r.User) != nil {
		return failed("passdb", "invalid credentials", ErrBadUsername.Error())
	}
	if r.Password == "" || len(r.Password) > userdb.MaxPasswordLength || strings.IndexByte(r.Password, 0) >= 0 {
		return failed("passdb", "invalid credentials", "invalid password")
	}
	local, domain, hasAt := strings.Cut(r.User, "@")
	switch {
	case hasAt && cfg.IsVirtualDomain(domain):
		return s.virtual(ctx, files, r.User, r.Password)
	case !hasAt || cfg.IsLocalDomain(domain):
		if cfg.Auth.SystemUsers {
			return s.systemUser(ctx, cfg, local, r.Password, addr, r.Service)
		}
	}
	// A domain that is not ours, or system users turned off: nobody by
	// that name, at the price of a real check.
	s.dummyVerify(ctx, files, r.Password)
	return failed("passdb", "unknown user", "unknown user")
}

// verify runs one hash under the concurrency bound.
func (s *Server) verify(ctx context.Context, u *userdb.User, password string) bool {
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return false
	}
	defer func() { <-s.sem }()
	return u.Verify(password)
}

// dummyVerify spends what checking a real user of the files costs.
func (s *Server) dummyVerify(ctx context.Context, files []*passwdFile, password string) {
	dummy := builtinDummy()
	for _, f := range files {
		if _, d, _, err := f.get(); err == nil && d != nil {
			dummy = d
			break
		}
	}
	s.verify(ctx, dummy, password)
}

func (s *Server) virtual(ctx context.Context, files []*passwdFile, name, password string) outcome {
	for _, f := range files {
		db, _, newErr, err := f.get()
		if newErr != nil && err == nil {
			s.log.Warning("%v; using the version read before", newErr)
		}
		if err != nil {
			return temporary("passwd-file", err.Error())
		}
		u, ok := db.Lookup(name)
		if !ok {
			continue
		}
		if !s.verify(ctx, u, password) {
			return failed("passwd-file", "Password mismatch", "password mismatch")
		}
		return outcome{res: Result{OK: true, User: u.Name}}
	}
	s.dummyVerify(ctx, files, password)
	return failed("passwd-file", "unknown user", "unknown user")
}

// systemUser checks a system user through PAM. PAM runs for names that do
// not exist too, so that the administrator's modules (pam_faillock) see
// every attempt, and such a check is then held as long as a real one.
func (s *Server) systemUser(ctx context.Context, cfg *config.Config, name, password, addr, service string) outcome {
	_, exists := s.lookupUID(name)
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return temporary("pam", ctx.Err().Error())
	}
	began := time.Now()
	r, err := s.system(name, password, addr, service)
	took := time.Since(began)
	<-s.sem
	if exists {
		// An exponential average over about eight checks.
		old := s.pamCost.Load()
		s.pamCost.Store(old + (int64(took)-old)/8)
	} else if hold := time.Duration(s.pamCost.Load()) - took; hold > 0 {
		realClock{}.Sleep(ctx, hold)
	}
	if err != nil || r.Temp {
		return temporary("pam", fmt.Sprintf("%s failed: %s", r.Stage, r.Message))
	}
	if !r.OK {
		if r.UnknownUser {
			return failed("pam", "unknown user", "unknown user")
		}
		reason := "password mismatch"
		if r.Stage != pam.Authenticate {
			reason = "account unusable: " + r.Message
		}
		return failed("pam", fmt.Sprintf("%s failed: %s", r.Stage, r.Message), reason)
	}
	// Dovecot's first_valid_uid: root and system accounts do not read
	// mail, and a guessed root password must not be confirmed by mail.
	uid, ok := s.lookupUID(r.User)
	if !ok || uid < cfg.Auth.FirstValidUID {
		msg := fmt.Sprintf("uid %d below first_valid_uid %d", uid, cfg.Auth.FirstValidUID)
		if !ok {
			msg = "no such user after PAM said yes"
		}
		return failed("pam", msg, msg)
	}
	return outcome{res: Result{OK: true, User: r.User}}
}

func lookupUID(name string) (int, bool) {
	u, err := user.Lookup(name)
	if err != nil {
		return -1, false
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return -1, false
	}
	return uid, true
}

// Wire format on the socket: one ipc frame each way. User and password
// travel as bytes (base64 in the JSON), so that what the daemon checks is
// exactly what the client sent: JSON strings would turn invalid UTF-8
// into U+FFFD before validation could see it.
type wireRequest struct {
	// Op is "" to verify credentials, "redeem" to trade a token for its
	// user (only for root's dispatchers, see token.go).
	Op         string `json:"op,omitempty"`
	Token      string `json:"token,omitempty"`
	IssueToken bool   `json:"issue_token,omitempty"`
	Service    string `json:"service"`
	User       []byte `json:"user"`
	Password   []byte `json:"password"`
	RemoteIP   string `json:"remote_ip"`
	Secured    bool   `json:"secured"`
}

type wireReply struct {
	OK     bool   `json:"ok,omitempty"`
	User   string `json:"user,omitempty"`
	Temp   bool   `json:"temp,omitempty"`
	Reason string `json:"reason,omitempty"`
	Token  string `json:"token,omitempty"`
	// Error: the request was refused as invalid (ErrBadRequest).
	Error string `json:"error,omitempty"`
}

// Timeouts of a connection to the daemon: how long it may stay idle
// between requests, and how long a reply may take to write.
const (
	idleTimeout  = 10 * time.Minute
	replyTimeout = 10 * time.Second
)

// Serve answers requests on l until ctx is done. Each connection carries
// one request at a time; clients open as many connections as they have
// requests in flight.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	backoff := 5 * time.Millisecond
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of descriptors, most likely: wait, do not spin.
			s.log.Warning("accept: %v", err)
			realClock{}.Sleep(ctx, backoff)
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		uc, ok := c.(*net.UnixConn)
		if !ok {
			c.Close()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serveConn(ctx, ipc.New(uc))
		}()
	}
}

// serveConn answers one connection's requests. At shutdown a connection
// waiting for its next request is closed, and a request being checked is
// answered first: its delay is cut short, its verdict stands.
func (s *Server) serveConn(ctx context.Context, conn *ipc.Conn) {
	defer conn.Close()
	var mu sync.Mutex
	busy := false
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !busy {
			conn.SetDeadline(time.Now()) // wakes the idle Receive
		}
	})
	defer stop()
	for {
		mu.Lock()
		if ctx.Err() != nil {
			mu.Unlock()
			return
		}
		busy = false
		conn.SetDeadline(time.Now().Add(s.idle))
		mu.Unlock()
		var w wireRequest
		files, err := conn.Receive(&w)
		for _, f := range files {
			f.Close() // nobody has reason to send the auth daemon a file
		}
		if err != nil {
			return
		}
		mu.Lock()
		busy = true
		conn.SetDeadline(time.Time{})
		mu.Unlock()
		var rep wireReply
		if w.Op == "redeem" {
			rep = s.redeem(conn, w.Token, w.Service)
		} else {
			res, err := s.Verify(ctx, Request{
				Service: w.Service, User: string(w.User), Password: string(w.Password),
				RemoteIP: w.RemoteIP, Secured: w.Secured,
			})
			rep = wireReply{OK: res.OK, User: res.User, Temp: res.Temp, Reason: res.Reason}
			if err != nil {
				rep = wireReply{Error: err.Error()}
			} else if res.OK && w.IssueToken {
				rep.Token = s.tokens.issue(res.User, w.Service)
			}
		}
		conn.SetDeadline(time.Now().Add(replyTimeout))
		if conn.Send(rep) != nil {
			return
		}
	}
}
