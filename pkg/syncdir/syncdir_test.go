package syncdir

import (
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// concurrently runs fn(0..n-1) at once and fails the test on any error.
func concurrently(t *testing.T, n int, fn func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs <- fn(i)
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestConcurrentCallersShareAndSucceed(t *testing.T) {
	dir := t.TempDir()
	s := New(dir)
	concurrently(t, 100, func(i int) error {
		p := filepath.Join(dir, "f"+string(rune('a'+i%26))+string(rune('0'+i/26)))
		if err := os.WriteFile(p, []byte("x"), 0600); err != nil {
			return err
		}
		return s.Sync()
	})
}

func TestMissingDirReportsError(t *testing.T) {
	s := New(filepath.Join(t.TempDir(), "gone"))
	if err := s.Sync(); err == nil {
		t.Fatal("Sync of a missing folder succeeded")
	}
	var set Set
	if err := set.Sync(filepath.Join(t.TempDir(), "gone")); err == nil {
		t.Fatal("Set.Sync of a missing folder succeeded")
	}
}

// SyncSoon returns at once and coalesces: many calls within the delay
// make one fsync, which does happen.
func TestSyncSoon(t *testing.T) {
	dir := t.TempDir()
	s := New(dir)
	var fails atomic.Int32
	for range 100 {
		s.SyncSoon(20*time.Millisecond, func(error) { fails.Add(1) })
	}
	if !s.soon.Load() {
		t.Fatal("nothing scheduled")
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.soon.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the scheduled fsync never started")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := s.Sync(); err != nil || fails.Load() != 0 {
		t.Fatalf("sync: %v, %d failures", err, fails.Load())
	}
	// A folder that is gone reports through errf.
	gone := New(dir + "/missing")
	done := make(chan error, 1)
	gone.SyncSoon(time.Millisecond, func(err error) { done <- err })
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("nil error for a missing folder")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no error reported for a missing folder")
	}
}

// SyncFd callers share rounds with Sync callers, and a round made by a
// caller's descriptor reports that descriptor's failure.
func TestSyncFdSharesAndReportsBadDescriptor(t *testing.T) {
	dir := t.TempDir()
	var set Set
	concurrently(t, 40, func(i int) error {
		if i%2 == 0 {
			return set.Sync(dir)
		}
		d, err := os.Open(dir)
		if err != nil {
			return err
		}
		defer d.Close()
		return set.SyncFd(dir, int(d.Fd()))
	})
	if err := New(dir).SyncFd(1 << 20); err == nil {
		t.Fatal("fsync of a descriptor that is not open succeeded")
	}
}

// countSyncs replaces the fsync with one that counts and, while hold is
// not nil, waits on it; fail makes the next fsync fail.
type countSyncs struct {
	n    atomic.Int32
	hold chan struct{}
	fail atomic.Bool
}

func withCountedSyncs(t *testing.T) *countSyncs {
	c := &countSyncs{}
	orig := doSync
	doSync = func(fd int, dir string) error {
		c.n.Add(1)
		if c.hold != nil {
			<-c.hold
		}
		if c.fail.CompareAndSwap(true, false) {
			return os.ErrInvalid
		}
		return orig(fd, dir)
	}
	t.Cleanup(func() { doSync = orig })
	return c
}

// waitFor polls cond until it holds or a deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// An entry marked before an fsync started is durable once that fsync has
// completed: its SyncMark needs no fsync of its own.
func TestMarkCoveredByCompletedRound(t *testing.T) {
	c := withCountedSyncs(t)
	s := New(t.TempDir())
	m := s.Mark()
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := s.SyncMark(-1, m); err != nil || c.n.Load() != 1 {
		t.Fatalf("SyncMark: %v after %d fsyncs, want nil after 1", err, c.n.Load())
	}
}

// An entry marked while an fsync runs is not covered by it: SyncMark
// waits for the next one. An entry marked before the running one started
// waits for that one and makes no other.
func TestMarkAndRunningRound(t *testing.T) {
	c := withCountedSyncs(t)
	c.hold = make(chan struct{})
	s := New(t.TempDir())
	before := s.Mark()
	first := make(chan error, 1)
	go func() { first <- s.Sync() }()
	waitFor(t, "the first fsync to start", func() bool { return c.n.Load() == 1 })
	after := s.Mark()

	joined := make(chan error, 1)
	go func() { joined <- s.SyncMark(-1, before) }()
	later := make(chan error, 1)
	go func() { later <- s.SyncMark(-1, after) }()
	waitFor(t, "a next round", func() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.next != nil })
	select {
	case err := <-joined:
		t.Fatalf("SyncMark of an entry the running fsync covers returned %v before it ended", err)
	case err := <-later:
		t.Fatalf("SyncMark of an entry made during the running fsync returned %v before it ended", err)
	case <-time.After(20 * time.Millisecond):
	}
	close(c.hold)
	for _, ch := range []chan error{first, joined, later} {
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
	if got := c.n.Load(); got != 2 {
		t.Fatalf("%d fsyncs, want 2 (the running one and one after it)", got)
	}
}

// A failed fsync makes nothing durable: the marks it would have covered
// get a round of their own.
func TestMarkAfterFailedRound(t *testing.T) {
	c := withCountedSyncs(t)
	s := New(t.TempDir())
	m := s.Mark()
	c.fail.Store(true)
	if err := s.Sync(); err == nil {
		t.Fatal("the failing fsync reported success")
	}
	if err := s.SyncMark(-1, m); err != nil || c.n.Load() != 2 {
		t.Fatalf("SyncMark after a failed round: %v after %d fsyncs, want nil after 2", err, c.n.Load())
	}
}

// withMaxGather sets how long a round waits for writers under way.
func withMaxGather(t *testing.T, d time.Duration) {
	orig := maxGather
	maxGather = d
	t.Cleanup(func() { maxGather = orig })
}

// A round about to start waits for a writer under way (Begin), and one
// fsync covers the entries of both.
func TestRoundWaitsForWriterUnderWay(t *testing.T) {
	c := withCountedSyncs(t)
	withMaxGather(t, time.Minute)
	s := New(t.TempDir())
	s.Begin() // the writer, still making its entry
	first := make(chan error, 1)
	go func() { first <- s.Sync() }()
	waitFor(t, "the first caller to wait", func() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.next != nil })
	select {
	case err := <-first:
		t.Fatalf("Sync returned %v while a writer was under way", err)
	case <-time.After(20 * time.Millisecond):
	}
	if err := s.SyncEntry(-1); err != nil {
		t.Fatal(err)
	}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if got := c.n.Load(); got != 1 {
		t.Fatalf("%d fsyncs for two entries made together, want 1", got)
	}
}

// A writer that gives up (End) lets the waiting round start at once; one
// that never comes holds it back no longer than maxGather.
func TestRoundWaitIsBounded(t *testing.T) {
	withCountedSyncs(t)
	withMaxGather(t, time.Minute)
	s := New(t.TempDir())
	s.Begin()
	done := make(chan error, 1)
	go func() { done <- s.Sync() }()
	waitFor(t, "the caller to wait", func() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.next != nil })
	s.End()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Sync still waiting after the only writer gave up")
	}

	withMaxGather(t, 30*time.Millisecond)
	s.Begin() // never makes its entry
	defer s.End()
	start := time.Now()
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 30*time.Millisecond || took > 5*time.Second {
		t.Fatalf("Sync with a writer that never came took %v, want maxGather (30ms) or a little more", took)
	}
}
