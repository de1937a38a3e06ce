package mailbox

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Two stores on one Maildir stand for two processes: what one caches the
// other reads once the writer's command has ended (Sync appends it) and
// the reader looks again, also entries appended after it opened its read
// handle, and a cache file replaced or removed under it never yields
// another UID's data.
func TestCacheAcrossProcesses(t *testing.T) {
	defer func(d time.Duration) { cacheRecheck = d }(cacheRecheck)
	cacheRecheck = 0
	a, dir := newStore(t)
	ma := mustOpen(t, a, "INBOX")
	u1 := appendMsg(t, ma, msg1)
	u2 := appendMsg(t, ma, msg1)
	if err := ma.SetCache(u1, []byte("one")); err != nil {
		t.Fatal(err)
	}
	if d, ok := ma.Cache(u1); !ok || string(d) != "one" {
		t.Fatalf("a reads its own pending u1: %q %v", d, ok)
	}
	mustSync(t, ma)
	b, err := OpenStore(dir, Options{Hostname: "test.example"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	mb := mustOpen(t, b, "INBOX")
	if d, ok := mb.Cache(u1); !ok || string(d) != "one" {
		t.Fatalf("b reads u1: %q %v", d, ok)
	}
	if _, ok := mb.Cache(u2); ok {
		t.Fatal("b finds an entry nobody wrote")
	}
	if err := ma.SetCache(u2, []byte("two")); err != nil {
		t.Fatal(err)
	}
	mustSync(t, ma)
	if d, ok := mb.Cache(u2); !ok || string(d) != "two" {
		t.Fatalf("b reads u2 appended after its handle opened: %q %v", d, ok)
	}
	// The file replaced (as compaction does) with entries at other offsets.
	cache := filepath.Join(dir, cacheName)
	if err := os.Remove(cache); err != nil {
		t.Fatal(err)
	}
	if err := ma.SetCache(u2, []byte("two again, longer")); err != nil {
		t.Fatal(err)
	}
	if err := ma.SetCache(u1, []byte("one again")); err != nil {
		t.Fatal(err)
	}
	mustSync(t, ma)
	for uid, want := range map[uint32][]string{u1: {"one", "one again"}, u2: {"two", "two again, longer"}} {
		d, ok := mb.Cache(uid)
		if ok && string(d) != want[0] && string(d) != want[1] {
			t.Fatalf("uid %d: got %q after the file was replaced", uid, d)
		}
	}
	// Removed entirely: misses, never stale data of a reused offset.
	os.Remove(cache)
	b2, err := OpenStore(dir, Options{Hostname: "test.example"})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	if _, ok := mustOpen(t, b2, "INBOX").Cache(u1); ok {
		t.Fatal("a fresh store finds an entry in a removed cache")
	}
}

// Entries gather in memory and reach the file in batches: when the batch
// is full, and at close, so nothing set is lost to the next process.
func TestCacheBatchesReachTheFile(t *testing.T) {
	a, dir := newStore(t)
	ma := mustOpen(t, a, "INBOX")
	var uids []uint32
	for range 40 {
		uids = append(uids, appendMsg(t, ma, msg1))
	}
	mustSync(t, ma)
	entry := make([]byte, 8<<10)
	for i, uid := range uids {
		entry[0] = byte(i)
		if err := ma.SetCache(uid, entry); err != nil {
			t.Fatal(err)
		}
	}
	fi, err := os.Stat(filepath.Join(dir, cacheName))
	if err != nil || fi.Size() < cacheFlushSize {
		t.Fatalf("after %d KB of entries the file holds %v (%v): no batch was written", 40*8, fi.Size(), err)
	}
	a.Close()
	b, err := OpenStore(dir, Options{Hostname: "test.example"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	mb := mustOpen(t, b, "INBOX")
	for i, uid := range uids {
		if d, ok := mb.Cache(uid); !ok || len(d) != len(entry) || d[0] != byte(i) {
			t.Fatalf("uid %d: entry lost or wrong after close (%v, %d bytes)", uid, ok, len(d))
		}
	}
}
