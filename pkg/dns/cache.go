package dns

import (
	"sync"
	"time"
)

type cacheKey struct {
	name  string
	qtype uint16
}

type cacheEntry struct {
	a       *answer
	expires time.Time
}

// cache keeps answers until their TTL runs out. It holds at most max
// entries: when full, expired entries go first, then arbitrary ones (a
// lookup that misses only costs a query).
type cache struct {
	mu  sync.Mutex
	max int
	m   map[cacheKey]cacheEntry
	now func() time.Time
}

func newCache(max int) *cache {
	return &cache{max: max, m: map[cacheKey]cacheEntry{}, now: time.Now}
}

func (c *cache) get(k cacheKey) *answer {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if !ok {
		return nil
	}
	if !c.now().Before(e.expires) {
		delete(c.m, k)
		return nil
	}
	return e.a
}

func (c *cache) put(k cacheKey, a *answer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if _, ok := c.m[k]; !ok && len(c.m) >= c.max {
		for k2, e := range c.m {
			if !now.Before(e.expires) {
				delete(c.m, k2)
			}
		}
		for k2 := range c.m {
			if len(c.m) < c.max {
				break
			}
			delete(c.m, k2)
		}
	}
	c.m[k] = cacheEntry{a: a, expires: now.Add(a.ttl)}
}

func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
