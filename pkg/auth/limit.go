package auth

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/posthorn/posthorn/pkg/config"
)

// clock is the time the failure delays and windows run on; tests use a
// fake one so that no test sleeps for real.
type clock interface {
	Now() time.Time
	// Sleep waits for d or until ctx is done.
	Sleep(ctx context.Context, d time.Duration) error
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ipv6Group is the prefix length that makes one IPv6 client (see the
// package comment).
const ipv6Group = 48

// clientGroup returns the key failures of ip are counted under: the IPv4
// address, or the IPv6 /48 it belongs to. IPv4-mapped IPv6 addresses are
// IPv4.
func clientGroup(ip netip.Addr) string {
	ip = ip.Unmap()
	if ip.Is4() {
		return ip.String()
	}
	p, _ := ip.WithZone("").Prefix(ipv6Group)
	return p.String()
}

// MaxClientInFlight is how many checks of one client run at once. It
// keeps a client from starting more guesses in parallel than its failure
// limit can count before they finish; further attempts wait for a slot
// (a legitimate login takes a fraction of a second) and are refused only
// after a long wait.
const MaxClientInFlight = 8

// maxTracked bounds each table of the limiter. Past it, entries whose
// failures have all left the window go first, then any idle entry.
const maxTracked = 100_000

// limits are the limiter's settings (from config.Auth).
type limits struct {
	delay, maxDelay time.Duration
	window          time.Duration
	clientLimit     int
	userLimit       int
}

// failures holds the times of the latest failures, at most cap of them.
type failures struct {
	times    []time.Time // oldest first
	inFlight int         // clients only
	// refusedLogged is when a refusal was last logged, refused how many
	// have not been logged since: refusals come as fast as an attacker
	// can send them, so they are logged once a minute.
	refusedLogged time.Time
	refused       int
}

// recent returns how many failures are inside the window ending at now,
// and drops the older ones.
func (f *failures) recent(now time.Time, window time.Duration) int {
	i := 0
	for i < len(f.times) && now.Sub(f.times[i]) >= window {
		i++
	}
	f.times = f.times[i:]
	return len(f.times)
}

func (f *failures) add(now time.Time, keep int) {
	if len(f.times) >= keep {
		f.times = append(f.times[:0], f.times[len(f.times)-keep+1:]...)
	}
	f.times = append(f.times, now)
}

// limiter counts failures per client and per user name.
type limiter struct {
	mu      sync.Mutex
	lim     limits
	clients map[string]*failures
	users   map[string]*failures
}

func newLimiter(l limits) *limiter {
	return &limiter{lim: l, clients: map[string]*failures{}, users: map[string]*failures{}}
}

func (l *limiter) setLimits(lim limits) {
	l.mu.Lock()
	l.lim = lim
	l.mu.Unlock()
}

// refusal says why admit turned an attempt away; "" admits it.
type refusal string

const (
	refusedClient   refusal = "too many authentication failures from this client"
	refusedUser     refusal = "too many authentication failures for this user from clients that failed too"
	refusedInFlight refusal = "too many concurrent authentication attempts from this client"
)

// admit decides whether an attempt of user (its limiter key, "" for an
// invalid name) from client group is checked at all. An admitted attempt
// holds one of the client's in-flight slots until release. log reports
// whether a refusal should be logged now, and how many were not.
func (l *limiter) admit(now time.Time, group, user string) (r refusal, log bool, unlogged int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.entry(l.clients, group, now)
	cf := c.recent(now, l.lim.window)
	switch {
	case cf >= l.lim.clientLimit:
		r = refusedClient
	case user != "" && cf > 0 && l.userFailures(user, now) >= l.lim.userLimit:
		r = refusedUser
	case c.inFlight >= MaxClientInFlight:
		// Not a refusal yet: the caller waits for a slot (Verify).
		return refusedInFlight, false, 0
	default:
		c.inFlight++
		return "", false, 0
	}
	c.refused++
	if now.Sub(c.refusedLogged) >= time.Minute {
		log, unlogged = true, c.refused-1
		c.refusedLogged, c.refused = now, 0
	}
	return r, log, unlogged
}

func (l *limiter) userFailures(user string, now time.Time) int {
	u := l.users[user]
	if u == nil {
		return 0
	}
	return u.recent(now, l.lim.window)
}

// release gives back the in-flight slot admit took.
func (l *limiter) release(group string) {
	l.mu.Lock()
	if c := l.clients[group]; c != nil && c.inFlight > 0 {
		c.inFlight--
	}
	l.mu.Unlock()
}

// fail records a failure and returns how long its answer is delayed:
// failure_delay doubled for each other recent failure of the client or
// the user, whichever has more, capped at max_failure_delay.
func (l *limiter) fail(now time.Time, group, user string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.entry(l.clients, group, now)
	c.recent(now, l.lim.window)
	c.add(now, max(l.lim.clientLimit, 1))
	n := len(c.times)
	if user != "" {
		u := l.entry(l.users, user, now)
		u.recent(now, l.lim.window)
		u.add(now, max(l.lim.userLimit, 1))
		n = max(n, len(u.times))
	}
	return penalty(l.lim.delay, l.lim.maxDelay, n)
}

// penalty is delay × 2^(n-1), at most maxDelay.
func penalty(delay, maxDelay time.Duration, n int) time.Duration {
	d := delay
	for i := 1; i < n && d < maxDelay; i++ {
		d *= 2
	}
	return min(d, maxDelay)
}

// entry returns the table's entry for key, creating it; a full table is
// swept first.
func (l *limiter) entry(table map[string]*failures, key string, now time.Time) *failures {
	if f := table[key]; f != nil {
		return f
	}
	if len(table) >= maxTracked {
		l.sweep(table, now)
	}
	f := &failures{}
	table[key] = f
	return f
}

// sweep makes room in a full table: entries without recent failures go;
// if that frees nothing, idle entries go in map order (random), which an
// attacker who controls more than maxTracked clients could use to reset
// some of its counts, and nobody else.
func (l *limiter) sweep(table map[string]*failures, now time.Time) {
	for k, f := range table {
		if f.inFlight == 0 && f.recent(now, l.lim.window) == 0 {
			delete(table, k)
		}
	}
	for k, f := range table {
		if len(table) < maxTracked*9/10 {
			break
		}
		if f.inFlight == 0 {
			delete(table, k)
		}
	}
}

// limiterKey is the name failures of a user are counted under: lower
// case, and a system user's name without a local domain, so that
// "carol", "Carol" and "carol@localhost" share one count. Invalid names
// have none.
func limiterKey(cfg *config.Config, name string) string {
	if ValidUsername(name) != nil {
		return ""
	}
	name = strings.ToLower(name)
	if local, domain, ok := strings.Cut(name, "@"); ok && cfg.IsLocalDomain(domain) {
		return local
	}
	return name
}
