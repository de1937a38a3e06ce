package mailbox

import (
	"sync"
	"time"
)

// StorePool shares one Store per Maildir among the sessions of a process
// (an IMAP or POP3 worker serves every session of its owner), and keeps a
// Store open for a while after its last session: clients reconnect often,
// and a large mailbox is then opened without reading its index again.
type StorePool struct {
	opts   Options
	linger time.Duration

	mu   sync.Mutex
	open map[string]*pooled
}

type pooled struct {
	st    *Store
	n     int
	timer *time.Timer // closes the store when no session came back
}

// NewStorePool returns a pool opening stores with opts and keeping each
// for linger after its last release.
func NewStorePool(opts Options, linger time.Duration) *StorePool {
	return &StorePool{opts: opts, linger: linger, open: map[string]*pooled{}}
}

// Get returns the Store of the Maildir at path, opening it when needed,
// and the function that releases it (safe to call more than once).
func (p *StorePool) Get(path string) (*Store, func(), error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.open[path]
	if r == nil {
		st, err := OpenStore(path, p.opts)
		if err != nil {
			return nil, nil, err
		}
		r = &pooled{st: st}
		p.open[path] = r
	}
	r.n++
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	var once sync.Once
	return r.st, func() {
		once.Do(func() {
			p.mu.Lock()
			defer p.mu.Unlock()
			if r.n--; r.n == 0 {
				r.timer = time.AfterFunc(p.linger, func() { p.expire(path, r) })
			}
		})
	}, nil
}

func (p *StorePool) expire(path string, r *pooled) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r.n == 0 && p.open[path] == r {
		r.st.Close()
		delete(p.open, path)
	}
}
