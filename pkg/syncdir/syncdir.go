// Package syncdir makes directory entries durable with group commit.
//
// A file created or renamed into a folder survives a crash only once the
// folder itself is fsynced. Doing that once per message costs one disk flush
// per message; instead, every caller that needs the folder durable asks one
// Syncer, and a single fsync covers every rename that happened before it
// started (DESIGN §2.8: shared, never skipped). Callers that announce an
// entry they are about to make (Begin) are waited for, briefly, by an
// fsync about to start, as a database's group commit waits for the
// transactions about to commit.
package syncdir

import (
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Syncer fsyncs one folder on behalf of many concurrent callers.
type Syncer struct {
	dir string

	soon  atomic.Bool   // a SyncSoon is scheduled and has not started
	marks atomic.Uint64 // entries made so far, as counted by Mark

	mu      sync.Mutex
	running *round // the fsync in progress, nil when none
	next    *round // the round that starts after the running one
	durable uint64 // every mark up to this one is covered by a completed fsync
	// writers are callers between Begin and their SyncEntry or End: each
	// is about to make an entry it will want durable. A round about to
	// start on an idle folder waits for them, up to maxGather, so that
	// one fsync covers their entries too (gather is closed when the last
	// one arrives).
	writers int
	gather  chan struct{}
}

// maxGather bounds how long a round waits for writers under way. Their
// remaining work is writing and fsyncing one file, a few milliseconds;
// waiting longer would only hold up the callers.
var maxGather = 5 * time.Millisecond

// A round is one fsync. The caller that made it runs it, in its own
// goroutine: at once when no fsync is running, else when the running
// round's caller hands over (lead), so no goroutine is started per round.
type round struct {
	done chan struct{}
	lead chan struct{}
	err  error
	// fd is a descriptor of the folder held open by the caller that made
	// the round, which runs it, so the fsync needs no open of its own; -1
	// when that caller had none.
	fd int
	// covers is the last mark made before the fsync started: every entry
	// counted up to it is durable once the round succeeds.
	covers uint64
}

// New returns a Syncer for dir.
func New(dir string) *Syncer { return &Syncer{dir: dir} }

// Dir is the folder this Syncer makes durable.
func (s *Syncer) Dir() string { return s.dir }

// Sync returns once an fsync of the folder that started after the call
// began has completed, so every entry the caller made before calling is
// durable. Concurrent callers share one fsync.
func (s *Syncer) Sync() error { return s.SyncFd(-1) }

// SyncFd is Sync for a caller holding the folder open as fd, which must
// stay open until SyncFd returns; the shared fsync may use it.
func (s *Syncer) SyncFd(fd int) error { return s.SyncMark(fd, s.Mark()) }

// Mark counts an entry the caller has just made in the folder (a file
// created or renamed into it) and returns its number, for a SyncMark
// later: a caller that has other work between the two (the spool writes
// the message between creating its file and committing it) often finds
// that an fsync started since has already made the entry durable.
func (s *Syncer) Mark() uint64 { return s.marks.Add(1) }

// SyncMark returns once the entry counted as mark m is durable: at once if
// an fsync that started after the mark has completed, after the running
// fsync if that one started after it, else after the next one. fd is as
// for SyncFd.
func (s *Syncer) SyncMark(fd int, m uint64) error {
	s.mu.Lock()
	return s.syncMarkLocked(fd, m)
}

// Begin tells s that the caller is about to make an entry in the folder
// and will then call SyncEntry, or End if it gives up. An fsync about to
// start waits a little for such callers (maxGather), so that deliveries
// into the same folder at about the same time share one fsync even when
// none of them is running yet when the first wants it.
func (s *Syncer) Begin() {
	s.mu.Lock()
	s.writers++
	s.mu.Unlock()
}

// End is for a caller that called Begin and makes no entry after all.
func (s *Syncer) End() {
	s.mu.Lock()
	s.leave()
	s.mu.Unlock()
}

// SyncEntry is SyncFd for a caller that called Begin and has now made its
// entry.
func (s *Syncer) SyncEntry(fd int) error {
	m := s.Mark()
	s.mu.Lock()
	s.leave()
	return s.syncMarkLocked(fd, m)
}

// UnderWay is the number of callers between Begin and SyncEntry or End.
func (s *Syncer) UnderWay() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writers
}

// leave counts a writer out; s.mu is held.
func (s *Syncer) leave() {
	s.writers--
	if s.writers == 0 && s.gather != nil {
		close(s.gather)
		s.gather = nil
	}
}

// syncMarkLocked is SyncMark with s.mu held; it unlocks.
func (s *Syncer) syncMarkLocked(fd int, m uint64) error {
	if s.durable >= m {
		s.mu.Unlock()
		return nil
	}
	if r := s.running; r != nil && r.covers >= m {
		s.mu.Unlock()
		<-r.done
		return r.err
	}
	r := s.next
	if r == nil {
		r = &round{done: make(chan struct{}), lead: make(chan struct{}), fd: fd}
		if s.running == nil {
			if s.writers > 0 {
				s.gatherWriters(r)
			}
			s.start(r)
			s.mu.Unlock()
			s.run(r)
			return r.err
		}
		s.next = r
		s.mu.Unlock()
		<-r.lead
		s.run(r)
		return r.err
	}
	s.mu.Unlock()
	<-r.done
	return r.err
}

// gatherWriters holds round r back, with s.mu held and released while
// waiting, until the writers under way have made their entries or
// maxGather has passed. Callers that come meanwhile join r.
func (s *Syncer) gatherWriters(r *round) {
	s.next = r
	ch := make(chan struct{})
	s.gather = ch
	s.mu.Unlock()
	t := time.NewTimer(maxGather)
	select {
	case <-ch:
	case <-t.C:
	}
	t.Stop()
	s.mu.Lock()
	if s.gather == ch {
		s.gather = nil
	}
	s.next = nil
}

// start makes r the running round; s.mu is held, and r's fsync begins
// only after this.
func (s *Syncer) start(r *round) {
	r.covers = s.marks.Load()
	s.running = r
}

// SyncSoon schedules an fsync of the folder to start within d and returns
// at once; calls within d of each other share it. For changes whose
// durability only narrows a window (a finished message's removal: until
// it is durable, a crash of the machine could deliver it again), where
// waiting for the disk would hold up the caller's next job. errf, when
// not nil, receives a failure.
func (s *Syncer) SyncSoon(d time.Duration, errf func(error)) {
	if !s.soon.CompareAndSwap(false, true) {
		return
	}
	time.AfterFunc(d, func() {
		s.soon.Store(false)
		if err := s.Sync(); err != nil && errf != nil {
			errf(err)
		}
	})
}

// run does round r's fsync, then hands the next round, if callers made
// one meanwhile, to its maker. r is s.running.
func (s *Syncer) run(r *round) {
	r.err = doSync(r.fd, s.dir)
	s.mu.Lock()
	if r.err == nil && r.covers > s.durable {
		s.durable = r.covers
	}
	s.running = nil
	n := s.next
	s.next = nil
	if n != nil {
		s.start(n)
	}
	s.mu.Unlock()
	close(r.done)
	if n != nil {
		close(n.lead)
	}
}

// doSync is the fsync of a round; tests replace it.
var doSync = func(fd int, dir string) error {
	if fd >= 0 {
		return fsync(fd, dir)
	}
	return syncDir(dir)
}

func fsync(fd int, dir string) error {
	for {
		err := unix.Fsync(fd)
		if err != unix.EINTR {
			if err != nil {
				return &os.PathError{Op: "fsync", Path: dir, Err: err}
			}
			return nil
		}
	}
}

// syncDir opens dir for the fsync alone: with a plain open(2), not os.Open,
// which would also offer the folder to the runtime's poller.
func syncDir(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: dir, Err: err}
	}
	err = fsync(fd, dir)
	unix.Close(fd)
	return err
}

// Set hands out one Syncer per folder, for callers that write to many
// folders (one Maildir per user).
type Set struct {
	mu sync.Mutex
	m  map[string]*Syncer
}

// Sync makes dir's entries durable, sharing the fsync with concurrent callers.
func (s *Set) Sync(dir string) error { return s.get(dir).Sync() }

// SyncFd is Sync for a caller holding dir open as fd (Syncer.SyncFd).
func (s *Set) SyncFd(dir string, fd int) error { return s.get(dir).SyncFd(fd) }

// Syncer returns dir's Syncer, for Begin and SyncEntry.
func (s *Set) Syncer(dir string) *Syncer { return s.get(dir) }

func (s *Set) get(dir string) *Syncer {
	s.mu.Lock()
	if s.m == nil {
		s.m = make(map[string]*Syncer)
	}
	sy := s.m[dir]
	if sy == nil {
		// Keep the map small: folders of users that got no mail lately go.
		if len(s.m) > 4096 {
			for k, v := range s.m {
				v.mu.Lock()
				idle := v.running == nil && v.next == nil && v.writers == 0
				v.mu.Unlock()
				if idle {
					delete(s.m, k)
				}
			}
		}
		sy = New(dir)
		s.m[dir] = sy
	}
	s.mu.Unlock()
	return sy
}
