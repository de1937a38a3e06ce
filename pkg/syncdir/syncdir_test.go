package syncdir

import (
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestConcurrentCallersShareAndSucceed(t *testing.T) {
	dir := t.TempDir()
	s := New(dir)
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			p := filepath.Join(dir, "f"+string(rune('a'+i%26))+string(rune('0'+i/26)))
			if err := os.WriteFile(p, []byte("x"), 0600); err != nil {
				errs <- err
				return
			}
			errs <- s.Sync()
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
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if i%2 == 0 {
				errs <- set.Sync(dir)
				return
			}
			d, err := os.Open(dir)
			if err != nil {
				errs <- err
				return
			}
			defer d.Close()
			errs <- set.SyncFd(dir, int(d.Fd()))
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := New(dir).SyncFd(1 << 20); err == nil {
		t.Fatal("fsync of a descriptor that is not open succeeded")
	}
}
