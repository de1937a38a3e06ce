package mailbox

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Far more sessions than the kernel allows inotify instances per user (128
// by default) all hear of a delivery: they share the process's instance.
func TestWatchManySessions(t *testing.T) {
	s, dir := newStore(t)
	const n = 500
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	chans := make([]<-chan struct{}, n)
	for i := range n {
		ch, err := mustOpen(t, s, "INBOX").Watch(ctx)
		if err != nil {
			t.Fatalf("watch %d: %v", i, err)
		}
		chans[i] = ch
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
	// Ended sessions' channels close; a new session after all ended still
	// gets a working watch.
	cancel()
	for _, ch := range chans {
		for range ch {
		}
	}
	ch, err := mustOpen(t, s, "INBOX").Watch(t.Context())
	if err != nil {
		t.Fatal(err)
	}
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
	m := mustOpen(t, s, "Work")
	ch, err := m.Watch(t.Context())
	if err != nil {
		t.Fatal(err)
	}
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
	ch2, err := mustOpen(t, s2, "Work").Watch(t.Context())
	if err != nil {
		t.Fatal(err)
	}
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
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := m.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	for range ch {
	}
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
	ch, err = m.Watch(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "new", "1700000003.M1P1.host,S=2,W=3"), []byte("w\n"), 0600)
	select {
	case <-ch:
	case <-time.After(2 * time.Second):
		t.Fatal("no notification after the watches were added again")
	}
}
