package remote

import (
	"context"
	"sync"
	"time"

	"github.com/posthorn/posthorn/pkg/smtp/client"
)

// session is an open SMTP session and where it goes.
type session struct {
	c    *client.Conn
	t    target
	idle time.Time // since when it waits in the cache
}

// connCache keeps sessions open for a short while after a delivery, so
// the next message to the same destination needs no new connection, TLS
// handshake or EHLO (Postfix's connection cache, smtp_connection_cache_*).
// A session is in the cache or in use by one delivery, never both.
type connCache struct {
	mu      sync.Mutex
	idle    map[string][]*session
	n       int
	maxIdle time.Duration // smtp_connection_cache_time_limit
	maxAge  time.Duration // smtp_connection_reuse_time_limit
	limit   int           // sessions kept in all
	stop    chan struct{}
}

func newConnCache(maxIdle, maxAge time.Duration, limit int) *connCache {
	c := &connCache{idle: map[string][]*session{}, maxIdle: maxIdle, maxAge: maxAge, limit: limit, stop: make(chan struct{})}
	go c.reap()
	return c
}

// get takes the most recently used session for key, if any is fresh.
func (c *connCache) get(key string) *session {
	c.mu.Lock()
	defer c.mu.Unlock()
	for l := c.idle[key]; len(l) > 0; l = c.idle[key] {
		s := l[len(l)-1]
		c.idle[key] = l[:len(l)-1]
		c.n--
		if len(c.idle[key]) == 0 {
			delete(c.idle, key)
		}
		if c.fresh(s, time.Now()) {
			return s
		}
		go s.c.Quit()
	}
	return nil
}

func (c *connCache) fresh(s *session, now time.Time) bool {
	return !s.c.Broken() && now.Sub(s.idle) < c.maxIdle && now.Sub(s.c.Created) < c.maxAge
}

// put returns a session after a delivery; one that cannot be kept is
// ended with QUIT.
func (c *connCache) put(key string, s *session) {
	now := time.Now()
	s.idle = now
	c.mu.Lock()
	if c.idle == nil || !c.fresh(s, now) || c.n >= c.limit {
		c.mu.Unlock()
		s.c.Quit()
		return
	}
	c.idle[key] = append(c.idle[key], s)
	c.n++
	c.mu.Unlock()
}

// reap ends sessions that have been idle too long.
func (c *connCache) reap() {
	tick := time.NewTicker(c.maxIdle / 2)
	defer tick.Stop()
	for {
		select {
		case <-c.stop:
			return
		case now := <-tick.C:
			var old []*session
			c.mu.Lock()
			for k, l := range c.idle {
				var keep []*session
				for _, s := range l {
					if c.fresh(s, now) {
						keep = append(keep, s)
					} else {
						old = append(old, s)
					}
				}
				c.n -= len(l) - len(keep)
				if len(keep) == 0 {
					delete(c.idle, k)
				} else {
					c.idle[k] = keep
				}
			}
			c.mu.Unlock()
			for _, s := range old {
				s.c.Quit()
			}
		}
	}
}

// flush ends every idle session; with final set the cache takes no more.
func (c *connCache) flush(final bool) {
	c.mu.Lock()
	all := c.idle
	c.idle = map[string][]*session{}
	if final {
		c.idle = nil
		close(c.stop)
	}
	c.n = 0
	c.mu.Unlock()
	for _, l := range all {
		for _, s := range l {
			s.c.Quit()
		}
	}
}

// idleCount is the number of sessions waiting in the cache.
func (c *connCache) idleCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// limiter bounds the deliveries to one destination at once (Postfix's
// destination concurrency limit); the rest wait their turn.
type limiter struct {
	mu sync.Mutex
	m  map[string]*slot
}

type slot struct {
	ch   chan struct{}
	refs int
}

func (l *limiter) acquire(ctx context.Context, key string, n int) (release func(), err error) {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*slot{}
	}
	s := l.m[key]
	if s == nil {
		// A changed limit applies once the destination has gone quiet.
		s = &slot{ch: make(chan struct{}, n)}
		l.m[key] = s
	}
	s.refs++
	l.mu.Unlock()
	done := func() {
		l.mu.Lock()
		if s.refs--; s.refs == 0 && l.m[key] == s {
			delete(l.m, key)
		}
		l.mu.Unlock()
	}
	select {
	case s.ch <- struct{}{}:
		return func() { <-s.ch; done() }, nil
	case <-ctx.Done():
		done()
		return nil, ctx.Err()
	}
}

// deadDests remembers destinations where no session could be had, so
// that the other recipients queued for them are deferred at once instead
// of each waiting for the same timeouts ("delivery temporarily
// suspended", as Postfix's qmgr does for a dead destination).
type deadDests struct {
	mu sync.Mutex
	m  map[string]deadEntry
}

type deadEntry struct {
	until time.Time
	dsn   string
	text  string
}

func (d *deadDests) mark(key, dsn, text string, ttl time.Duration) {
	if ttl <= 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m == nil {
		d.m = map[string]deadEntry{}
	}
	now := time.Now()
	for k, e := range d.m {
		if now.After(e.until) {
			delete(d.m, k)
		}
	}
	d.m[key] = deadEntry{until: now.Add(ttl), dsn: dsn, text: text}
}

func (d *deadDests) get(key string) (deadEntry, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.m[key]
	if !ok || time.Now().After(e.until) {
		return deadEntry{}, false
	}
	return e, true
}

func (d *deadDests) clear(key string) {
	d.mu.Lock()
	delete(d.m, key)
	d.mu.Unlock()
}
