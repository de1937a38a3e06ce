package fsync

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ringOrSkip returns a ring of its own for the test; the kernels posthorn
// is tested on have io_uring, so a skip here says the fallback is what runs.
func ringOrSkip(t *testing.T, n uint32) *ring {
	t.Helper()
	r, err := newRing(n)
	if err != nil {
		t.Skipf("io_uring unavailable here (%v): Fd uses fsync(2)", err)
	}
	return r
}

func tempFile(t *testing.T) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if _, err := f.WriteString("durable"); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestRingFsync(t *testing.T) {
	r := ringOrSkip(t, 8)
	f := tempFile(t)
	if err, ok := r.fsync(int(f.Fd())); !ok || err != nil {
		t.Fatalf("fsync through the ring: %v, taken %v", err, ok)
	}
	d, err := os.Open(filepath.Dir(f.Name()))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err, ok := r.fsync(int(d.Fd())); !ok || err != nil {
		t.Fatalf("folder fsync through the ring: %v, taken %v", err, ok)
	}
}

// The kernel's answer comes back as the error, as fsync(2)'s would.
func TestRingErrors(t *testing.T) {
	r := ringOrSkip(t, 8)
	const fd = 1<<20 - 1 // above any descriptor this test process opens
	if err, ok := r.fsync(fd); !ok || !errors.Is(err, unix.EBADF) {
		t.Fatalf("closed descriptor: %v, taken %v; want EBADF", err, ok)
	}
	if err := Fd(fd); !errors.Is(err, unix.EBADF) {
		t.Fatalf("Fd of a closed descriptor: %v; want EBADF", err)
	}
}

// Many more callers than the ring has slots all get their answer: they wait
// for a slot, and the completion queue never overflows.
func TestRingMoreCallersThanSlots(t *testing.T) {
	r := ringOrSkip(t, 4)
	files := make([]*os.File, 64)
	for i := range files {
		files[i] = tempFile(t)
	}
	done := make(chan error, len(files)*4)
	var wg sync.WaitGroup
	for round := 0; round < 4; round++ {
		for _, f := range files {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err, ok := r.fsync(int(f.Fd()))
				if !ok {
					err = errors.New("not taken by the ring")
				}
				done <- err
			}()
		}
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(60 * time.Second):
		t.Fatal("fsyncs through the ring did not all complete")
	}
	close(done)
	for err := range done {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestFdAndFile(t *testing.T) {
	f := tempFile(t)
	if err := Fd(int(f.Fd())); err != nil {
		t.Fatal(err)
	}
	if err := File(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	err := File(f)
	if err == nil {
		t.Fatal("File of a closed file succeeded")
	}
	if err := plain(int(tempFile(t).Fd())); err != nil {
		t.Fatalf("fsync(2) fallback: %v", err)
	}
}

func TestDisabled(t *testing.T) {
	disabled.Store(true)
	defer disabled.Store(false)
	if r, err := newRing(8); err == nil || r != nil {
		t.Fatal("a ring was set up while disabled")
	}
}
