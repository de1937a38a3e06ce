package mailbox

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// watchChan adapts Watch to a channel for the tests; stop is called at
// the end of the test.
func watchChan(t *testing.T, m *Mailbox) (<-chan struct{}, func()) {
	t.Helper()
	ch := make(chan struct{}, 1)
	stop, err := m.Watch(func() {
		select {
		case ch <- struct{}{}:
		default:
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return ch, stop
}

// Far more sessions than the kernel allows inotify instances per user (128
// by default) all hear of a delivery: they share the process's instance.
func TestWatchManySessions(t *testing.T) {
	s, dir := newStore(t)
	const n = 500
	chans := make([]<-chan struct{}, n)
	stops := make([]func(), n)
	for i := range n {
		chans[i], stops[i] = watchChan(t, mustOpen(t, s, "INBOX"))
	}
	os.WriteFile(filepath.Join(dir, "new", "1700000000.M1P1.host,S=2,W=3"), []byte("x\n"), 0600)
	deadline := time.After(2 * time.Second)
	for i, ch := range chans {
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("session %d of %d not notified", i, n)
		}
	}
	// A new session after all ended still gets a working watch.
	for _, stop := range stops {
		stop()
	}
	ch, _ := watchChan(t, mustOpen(t, s, "INBOX"))
	os.WriteFile(filepath.Join(dir, "new", "1700000001.M1P1.host,S=2,W=3"), []byte("y\n"), 0600)
	select {
	case <-ch:
	case <-time.After(2 * time.Second):
		t.Fatal("no notification after the watch was rebuilt")
	}
}

// A folder deleted under its watchers wakes them, and a folder created
// again with the same name is watched afresh.
func TestWatchFolderRecreated(t *testing.T) {
	s, dir := newStore(t)
	if err := s.Create("Work", ""); err != nil {
		t.Fatal(err)
	}
	ch, _ := watchChan(t, mustOpen(t, s, "Work"))
	if err := os.RemoveAll(filepath.Join(dir, ".Work")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(2 * time.Second):
		t.Fatal("deleting the folder woke nobody")
	}
	for _, d := range []string{"cur", "new", "tmp"} {
		os.MkdirAll(filepath.Join(dir, ".Work", d), 0700)
	}
	s2, err := OpenStore(dir, Options{Hostname: "test.example"})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	ch2, _ := watchChan(t, mustOpen(t, s2, "Work"))
	os.WriteFile(filepath.Join(dir, ".Work", "new", "1700000002.M1P1.host,S=2,W=3"), []byte("z\n"), 0600)
	select {
	case <-ch2:
	case <-time.After(2 * time.Second):
		t.Fatal("the recreated folder is not watched")
	}
}

// Once a folder's watches are removed for want of sessions, the next
// session adds them again.
func TestWatchDroppedAndReadded(t *testing.T) {
	w, _ := theWatcher()
	w.mu.Lock()
	w.linger = time.Millisecond
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.linger = watchLinger
		w.mu.Unlock()
	}()
	s, dir := newStore(t)
	m := mustOpen(t, s, "INBOX")
	_, stop := watchChan(t, m)
	stop()
	base := s.path + "/."
	deadline := time.Now().Add(5 * time.Second)
	for {
		w.mu.Lock()
		_, still := w.folders[base]
		w.mu.Unlock()
		if !still {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the unwatched folder kept its watches")
		}
		time.Sleep(5 * time.Millisecond)
	}
	ch, _ := watchChan(t, m)
	os.WriteFile(filepath.Join(dir, "new", "1700000003.M1P1.host,S=2,W=3"), []byte("w\n"), 0600)
	select {
	case <-ch:
	case <-time.After(2 * time.Second):
		t.Fatal("no notification after the watches were added again")
	}
}
