package auth

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posthorn/posthorn/pkg/auth/pam"
	"github.com/posthorn/posthorn/pkg/config"
	"github.com/posthorn/posthorn/pkg/maillog"
	"golang.org/x/crypto/bcrypt"
)

// fakeClock stands still until a test moves it; Sleep waits for that.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []*waiter
	notify  chan struct{} // closed and replaced when a sleeper arrives
}

type waiter struct {
	until time.Time
	d     time.Duration
	ch    chan struct{}
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC), notify: make(chan struct{})}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	c.mu.Lock()
	w := &waiter{until: c.now.Add(d), d: d, ch: make(chan struct{})}
	c.waiters = append(c.waiters, w)
	close(c.notify)
	c.notify = make(chan struct{})
	c.mu.Unlock()
	select {
	case <-w.ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Advance moves the clock and wakes the sleepers whose time has come.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	keep := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.until.After(c.now) {
			close(w.ch)
		} else {
			keep = append(keep, w)
		}
	}
	c.waiters = keep
}

// next returns the delay of the earliest sleeper, if any, and the channel
// that is closed when another one arrives.
func (c *fakeClock) next() (time.Duration, bool, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.waiters) == 0 {
		return 0, false, c.notify
	}
	w := c.waiters[0]
	for _, x := range c.waiters[1:] {
		if x.until.Before(w.until) {
			w = x
		}
	}
	return w.until.Sub(c.now), true, c.notify
}

func (c *fakeClock) sleepers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters)
}

// waitSleepers blocks until n calls are sleeping.
func (c *fakeClock) waitSleepers(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		_, _, ch := c.next()
		if c.sleepers() >= n {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("%d sleepers, want %d", c.sleepers(), n)
		}
	}
}

// syncBuffer is a log destination tests read while the server writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// lines returns the log lines without the "posthorn/auth[PID]: " tag.
func (s *syncBuffer) lines() []string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(s.String()), "\n") {
		if _, msg, ok := strings.Cut(l, "]: "); ok {
			out = append(out, msg)
		}
	}
	return out
}

// fakeSystem stands for PAM in tests that are not root.
type fakeSystem struct {
	mu    sync.Mutex
	users map[string]struct {
		password string
		uid      int
	}
	calls int
	// gate, when set, holds every check until it is closed.
	gate chan struct{}
	// delay makes checks of existing users take that long, as yescrypt
	// does.
	delay time.Duration
}

func (f *fakeSystem) check(user, password, rhost, tty string) (pam.Result, error) {
	f.mu.Lock()
	f.calls++
	u, ok := f.users[user]
	gate, delay := f.gate, f.delay
	f.mu.Unlock()
	if gate != nil {
		<-gate
	}
	if ok && delay > 0 {
		time.Sleep(delay)
	}
	if !ok || u.password != password {
		return pam.Result{Stage: pam.Authenticate, Message: "Authentication failure (password mismatch?)"}, nil
	}
	return pam.Result{OK: true, User: user, Stage: pam.AccountCheck}, nil
}

func (f *fakeSystem) lookupUID(name string) (int, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	u, ok := f.users[name]
	return u.uid, ok
}

func (f *fakeSystem) add(name, password string, uid int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.users == nil {
		f.users = map[string]struct {
			password string
			uid      int
		}{}
	}
	f.users[name] = struct {
		password string
		uid      int
	}{password, uid}
}

func (f *fakeSystem) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// env is a Server on a fake clock with a users file and fake system users.
type env struct {
	t     *testing.T
	dir   string
	cfg   *config.Config
	srv   *Server
	clock *fakeClock
	sys   *fakeSystem
	log   *syncBuffer
}

// bcryptHash is a cheap bcrypt hash for test users.
func bcryptHash(t testing.TB, pw string, cost int) string {
	h, err := bcrypt.GenerateFromPassword([]byte(pw), cost)
	if err != nil {
		t.Fatal(err)
	}
	return "{BLF-CRYPT}" + string(h)
}

// newEnv: virtual domain example.org with alice (password "alice pw")
// and bob ("bob pw"); local domain localhost; system users carol
// ("carol pw", uid 1001) and root ("root pw", uid 0).
func newEnv(t *testing.T, tweak func(*config.Config)) *env {
	t.Helper()
	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	content := "alice@example.org:" + bcryptHash(t, "alice pw", bcrypt.MinCost) + "\n" +
		"Bob@Example.org:" + bcryptHash(t, "bob pw", bcrypt.MinCost) + "::::::\n"
	if err := os.WriteFile(users, []byte(content), 0600); err != nil {
		t.Fatal(err)
	}
	cfg := config.Defaults()
	cfg.Hostname = "mx.example.org"
	cfg.LocalDomains = []string{"localhost", "mx.example.org"}
	cfg.Virtual.Domains = []string{"example.org", "example.net"}
	cfg.Virtual.UsersFile = users
	if tweak != nil {
		tweak(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	log := &syncBuffer{}
	l := maillog.New("posthorn", "auth", "stderr")
	l.SetOutput(log)
	srv := NewServer(cfg, l)
	clk := newFakeClock()
	srv.clock = clk
	sys := &fakeSystem{}
	sys.add("carol", "carol pw", 1001)
	sys.add("root", "root pw", 0)
	srv.system, srv.lookupUID = sys.check, sys.lookupUID
	return &env{t: t, dir: dir, cfg: cfg, srv: srv, clock: clk, sys: sys, log: log}
}

// attempt runs one Verify to its end, moving the fake clock through any
// delay; it returns the result and the delay the answer waited for.
func (e *env) attempt(r Request) (Result, time.Duration) {
	e.t.Helper()
	var res Result
	var err error
	done := make(chan struct{})
	go func() {
		res, err = e.srv.Verify(context.Background(), r)
		close(done)
	}()
	var slept time.Duration
	for {
		d, ok, ch := e.clock.next()
		if ok {
			slept += d
			e.clock.Advance(d)
			continue
		}
		select {
		case <-done:
			if err != nil {
				e.t.Fatalf("Verify(%+v): %v", r, err)
			}
			return res, slept
		case <-ch:
		case <-time.After(10 * time.Second):
			e.t.Fatalf("Verify(%+v) is stuck", r)
		}
	}
}

func req(user, password, ip string) Request {
	return Request{Service: ServiceIMAP, User: user, Password: password, RemoteIP: ip, Secured: true}
}

type pamResult = pam.Result

// inFlight returns how many checks of group are running.
func (l *limiter) inFlight(group string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c := l.clients[group]; c != nil {
		return c.inFlight
	}
	return 0
}
