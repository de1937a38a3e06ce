package mailbox

import (
	"slices"
	"testing"
)

// Sessions of one process share the folder's snapshot; a session's own
// flag change must not show in another's view before that one syncs.
func TestSharedSnapshotCopyOnWrite(t *testing.T) {
	s, _ := newStore(t)
	w := mustOpen(t, s, "INBOX")
	for range 3 {
		appendMsg(t, w, msg1)
	}
	appendMsg(t, w, msg1, FlagSeen)
	a, b := mustOpen(t, s, "INBOX"), mustOpen(t, s, "INBOX")
	ua, fa := a.SharedUIDs()
	ub, fb := b.SharedUIDs()
	if !slices.Equal(ua, []uint32{1, 2, 3, 4}) || !slices.Equal(ua, ub) || fa != 1 || fb != 1 {
		t.Fatalf("uids %v %v, first unseen %d %d", ua, ub, fa, fb)
	}
	if cap(ua) != len(ua) {
		t.Fatalf("shared UIDs have spare capacity %d > %d: an append would write into other sessions' slice", cap(ua), len(ua))
	}
	if &ua[0] != &ub[0] {
		t.Error("two sessions at the same generation do not share the snapshot")
	}
	if _, _, err := a.SetFlags([]uint32{1, 2}, FlagsAdd, []string{FlagSeen}, 0); err != nil {
		t.Fatal(err)
	}
	if m, _ := b.Message(1); slices.Contains(m.Flags, FlagSeen) {
		t.Fatal("a's flag change leaked into b's unsynced view")
	}
	if _, f := a.SharedUIDs(); f != 3 {
		t.Errorf("a's first unseen after its own change = %d, want 3", f)
	}
	if _, f := b.SharedUIDs(); f != 1 {
		t.Errorf("b's first unseen before sync = %d, want 1", f)
	}
	mustSync(t, b)
	if m, _ := b.Message(1); !slices.Contains(m.Flags, FlagSeen) {
		t.Fatal("b does not see the change after its sync")
	}
	if _, f := b.SharedUIDs(); f != 3 {
		t.Errorf("b's first unseen after sync = %d, want 3", f)
	}
}
