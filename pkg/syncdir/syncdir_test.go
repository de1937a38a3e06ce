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
