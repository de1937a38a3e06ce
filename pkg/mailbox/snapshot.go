package mailbox

import (
	"slices"
	"sync"
)

// snapshot is the folder's message list at one generation, shared by every
// session of this process that synchronized at that generation: SELECT of
// a large mailbox then costs no copy of it. A snapshot is never modified;
// a session that changes its view (its own flag changes) copies it first.
type snapshot struct {
	gen  uint64
	recs []*msgRec // ascending UID, capacity clipped

	once        sync.Once
	uids        []uint32
	firstUnseen uint32 // 1-based position of the first message without \Seen, 0 none

	kwOnce sync.Once
	extra  []string // keywords without a dovecot-keywords letter, in first-use order
}

// extraKeywords returns, once per snapshot, the keywords its messages
// carry that dovecot-keywords has no letter for.
func (sn *snapshot) extraKeywords() []string {
	sn.kwOnce.Do(func() {
		seen := map[string]bool{}
		for _, r := range sn.recs {
			for _, k := range r.extraKw {
				if !seen[k] {
					seen[k] = true
					sn.extra = append(sn.extra, k)
				}
			}
		}
	})
	return sn.extra
}

// sharedSnapshot returns the snapshot of the folder's current state;
// f.mu is held.
func (f *folder) sharedSnapshot() *snapshot {
	if f.shared == nil || f.shared.gen != f.gen {
		f.shared = &snapshot{gen: f.gen, recs: slices.Clip(slices.Clone(f.recs))}
	}
	return f.shared
}

// summary computes, once per snapshot, the UIDs and the first unseen
// message.
func (sn *snapshot) summary() ([]uint32, uint32) {
	sn.once.Do(func() {
		sn.uids = make([]uint32, len(sn.recs))
		for i, r := range sn.recs {
			sn.uids[i] = r.uid
			if sn.firstUnseen == 0 {
				if sys, _ := infoFlags(r.name); sys&sysSeen == 0 {
					sn.firstUnseen = uint32(i + 1)
				}
			}
		}
	})
	return sn.uids, sn.firstUnseen
}

// SharedUIDs returns the view's UIDs in order (index i is sequence number
// i+1) and the sequence number of the first message without \Seen (0 when
// every message is seen). The slice may be shared with other sessions: the
// caller must not modify it; its capacity equals its length, so appending
// to it copies.
func (m *Mailbox) SharedUIDs() ([]uint32, uint32) {
	m.mu.Lock()
	sn, own := m.sn, m.snap
	m.mu.Unlock()
	if sn != nil {
		return sn.summary()
	}
	// The session changed flags in its own copy: count from that.
	tmp := snapshot{recs: own}
	uids, first := tmp.summary()
	return slices.Clip(uids), first
}

// RecentUIDs returns the messages \Recent in this session, ascending.
func (m *Mailbox) RecentUIDs() []uint32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]uint32, 0, len(m.recent))
	for u := range m.recent {
		out = append(out, u)
	}
	slices.Sort(out)
	return out
}
