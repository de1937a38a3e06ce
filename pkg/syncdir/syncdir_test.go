package syncdir

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
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
