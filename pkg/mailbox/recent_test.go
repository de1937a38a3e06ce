package mailbox

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// secondStore opens another Store on the same Maildir: another process as
// far as folder state goes.
func secondStore(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := OpenStore(dir, Options{Hostname: "test.example", Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	s.noFsync = true
	t.Cleanup(func() { s.Close() })
	return s
}

func mustSelect(t *testing.T, s *Store, mode RecentMode) *Mailbox {
	t.Helper()
	m, err := s.Select("INBOX", mode)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func recentUIDs(m *Mailbox) []uint32 {
	var out []uint32
	for _, u := range m.UIDs() {
		if m.Recent(u) {
			out = append(out, u)
		}
	}
	return out
}

func statusRecent(t *testing.T, s *Store) int {
	t.Helper()
	return mustOpen(t, s, "INBOX").RecentCount()
}

// A message is recent in exactly one read-write session, whichever process
// it runs in; EXAMINE and STATUS count recent messages without taking them.
func TestRecentAcrossProcesses(t *testing.T) {
	s1, dir := newStore(t)
	s2 := secondStore(t, dir)
	deliver := mustOpen(t, s1, "INBOX")
	appendMsg(t, deliver, msg1)
	appendMsg(t, deliver, msg1)

	// STATUS from either process, and EXAMINE, see two recent messages
	// and leave them (case 2: not MESSAGES by accident; case 4: STATUS
	// before SELECT takes nothing).
	if n := statusRecent(t, s2); n != 2 {
		t.Fatalf("STATUS RECENT before any SELECT = %d, want 2", n)
	}
	ex := mustSelect(t, s1, RecentPeek)
	if r := recentUIDs(ex); !slices.Equal(r, []uint32{1, 2}) || ex.RecentCount() != 2 {
		t.Fatalf("EXAMINE recent %v (%d), want [1 2]", r, ex.RecentCount())
	}
	if n := statusRecent(t, s1); n != 2 {
		t.Fatalf("STATUS RECENT after EXAMINE = %d, want 2", n)
	}

	// Case 1: the first read-write SELECT takes them, in whatever
	// process; the next one, in the other process, gets none.
	a := mustSelect(t, s2, RecentTake)
	if r := recentUIDs(a); !slices.Equal(r, []uint32{1, 2}) {
		t.Fatalf("first SELECT recent %v, want [1 2]", r)
	}
	// Case 3: STATUS of the selected mailbox in that session is its count.
	if a.RecentCount() != 2 {
		t.Fatalf("selected RecentCount = %d, want 2", a.RecentCount())
	}
	b := mustSelect(t, s1, RecentTake)
	if r := recentUIDs(b); len(r) != 0 {
		t.Fatalf("second SELECT recent %v, want none", r)
	}
	if n := statusRecent(t, s1); n != 0 {
		t.Fatalf("STATUS RECENT after SELECT = %d, want 0", n)
	}
	if n := mustSelect(t, s2, RecentPeek).RecentCount(); n != 0 {
		t.Fatalf("EXAMINE after SELECT: %d recent", n)
	}

	// A later delivery is recent in exactly one of the two selected
	// sessions, and the other session's Sync does not take it again.
	u3 := appendMsg(t, deliver, msg1)
	if n := statusRecent(t, s2); n != 1 {
		t.Fatalf("STATUS RECENT after delivery = %d, want 1", n)
	}
	cb := mustSync(t, b)
	ca := mustSync(t, a)
	if !slices.Equal(cb.New, []uint32{u3}) || !slices.Equal(ca.New, []uint32{u3}) {
		t.Fatalf("new: a %v, b %v", ca.New, cb.New)
	}
	if !slices.Equal(cb.Recent, []uint32{u3}) || len(ca.Recent) != 0 {
		t.Fatalf("recent: a %v, b %v; want it in b only", ca.Recent, cb.Recent)
	}
	if !b.Recent(u3) || a.Recent(u3) || !a.Recent(1) || b.RecentCount() != 1 || a.RecentCount() != 2 {
		t.Fatalf("a %v b %v", recentUIDs(a), recentUIDs(b))
	}
	if n := statusRecent(t, s1); n != 0 {
		t.Fatalf("STATUS RECENT after the take = %d, want 0", n)
	}
	// The EXAMINE session opened before the take keeps what it saw.
	mustSync(t, ex)
	if ex.RecentCount() != 2 {
		t.Fatalf("EXAMINE session recent %v", recentUIDs(ex))
	}

	// Expunged messages stop being recent in the session that had them.
	if _, _, err := b.SetFlags([]uint32{u3}, FlagsAdd, []string{FlagDeleted}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Expunge([]uint32{u3}, true); err != nil {
		t.Fatal(err)
	}
	mustSync(t, b)
	if b.RecentCount() != 0 {
		t.Fatalf("recent after expunge: %v", recentUIDs(b))
	}
}

// The first-recent UID survives in posthorn.index; a rebuilt index makes
// the messages that already had UIDs not recent, and files that get their
// first UID in the rebuild recent.
func TestRecentIndexRebuild(t *testing.T) {
	s1, dir := newStore(t)
	deliver := mustOpen(t, s1, "INBOX")
	appendMsg(t, deliver, msg1)
	appendMsg(t, deliver, msg1)
	if n := statusRecent(t, secondStore(t, dir)); n != 2 {
		t.Fatalf("STATUS RECENT = %d, want 2", n)
	}
	mustSelect(t, secondStore(t, dir), RecentTake)
	if n := statusRecent(t, secondStore(t, dir)); n != 0 {
		t.Fatalf("STATUS RECENT in a fresh process = %d, want 0", n)
	}

	appendMsg(t, deliver, msg1) // UID 3: recent, not yet taken
	if err := os.Remove(filepath.Join(dir, indexFile)); err != nil {
		t.Fatal(err)
	}
	// A file delivered straight into new/ gets its UID in the rebuild.
	if err := os.WriteFile(filepath.Join(dir, "new", "1700000000.M1P1.test.example"), []byte(msg1), 0o600); err != nil {
		t.Fatal(err)
	}
	s3 := secondStore(t, dir)
	if n := statusRecent(t, s3); n != 1 {
		t.Fatalf("STATUS RECENT after the rebuild = %d, want 1 (the file new to the uidlist)", n)
	}
	a := mustSelect(t, s3, RecentTake)
	if r := recentUIDs(a); !slices.Equal(r, []uint32{4}) || a.Count() != 4 {
		t.Fatalf("recent after rebuild %v of %v", r, a.UIDs())
	}
	if n := mustSelect(t, secondStore(t, dir), RecentTake).RecentCount(); n != 0 {
		t.Fatalf("second SELECT after rebuild: %d recent", n)
	}
}
