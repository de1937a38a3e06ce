package memstore

import (
	"bytes"
	"context"
	"io"
	"sync"

	"github.com/posthorn/posthorn/pkg/imap"
)

// view is one session's handle on a mailbox.
type view struct {
	u        *User
	b        *box
	readOnly bool
	kwSeen   int // keywords reported so far (the list only grows)

	nmu    sync.Mutex
	notify func()
}

// Open implements imap.User.
func (u *User) Open(ctx context.Context, name string, readOnly bool) (imap.Mailbox, error) {
	u.mu.Lock()
	b := u.lookup(name)
	u.mu.Unlock()
	if b == nil || b.noSelect {
		return nil, imap.ErrNonexistent
	}
	v := &view{u: u, b: b, readOnly: readOnly}
	viewsMu.Lock()
	b.views[v] = true
	viewsMu.Unlock()
	return v, nil
}

// OpenViews returns the number of open views of a mailbox (tests).
func (u *User) OpenViews(name string) int {
	u.mu.Lock()
	b := u.lookup(name)
	u.mu.Unlock()
	viewsMu.Lock()
	defer viewsMu.Unlock()
	return len(b.views)
}

func (v *view) notifyFn() func() {
	v.nmu.Lock()
	defer v.nmu.Unlock()
	return v.notify
}

func (v *view) SetNotify(fn func()) {
	v.nmu.Lock()
	v.notify = fn
	v.nmu.Unlock()
}

func (v *view) Close() error {
	viewsMu.Lock()
	delete(v.b.views, v)
	viewsMu.Unlock()
	return nil
}

func (v *view) Info() imap.SelectInfo {
	v.u.mu.Lock()
	defer v.u.mu.Unlock()
	v.kwSeen = len(v.b.keywords)
	return imap.SelectInfo{
		UIDValidity: v.b.uidValidity,
		Keywords:    append([]string(nil), v.b.keywords...),
		NewKeywords: true,
	}
}

func (v *view) info(m *message, recent bool) *imap.MessageInfo {
	return &imap.MessageInfo{UID: m.uid, Flags: m.flags, ModSeq: m.modSeq, InternalDate: m.date,
		Size: int64(len(m.content)), Recent: recent}
}

func (v *view) Poll(ctx context.Context, since uint64, fn func(*imap.MessageInfo)) (imap.Changes, error) {
	v.u.mu.Lock()
	defer v.u.mu.Unlock()
	b := v.b
	if fn != nil {
		// EXAMINE sees \Recent but claims nothing (RFC 3501 §6.3.2).
		claimed := b.recentUpTo
		for _, m := range b.msgs {
			if m.modSeq > since {
				fn(v.info(m, m.uid > claimed))
			}
		}
		if !v.readOnly && b.uidNext-1 > b.recentUpTo {
			b.recentUpTo = b.uidNext - 1
		}
	}
	ch := imap.Changes{UIDNext: b.uidNext, HighestModSeq: b.modSeq}
	if fn != nil && v.kwSeen != len(b.keywords) {
		v.kwSeen = len(b.keywords)
		ch.Keywords = append([]string(nil), b.keywords...)
	}
	for _, e := range b.expunged {
		if e.modSeq > since {
			ch.Expunged = ch.Expunged.Add(e.uid)
		}
	}
	return ch, nil
}

func (v *view) Fetch(ctx context.Context, uids imap.UIDSet, fn func(*imap.MessageInfo) error) error {
	v.u.mu.Lock()
	var infos []*imap.MessageInfo
	for _, m := range v.b.msgs {
		if uids.Contains(m.uid) {
			infos = append(infos, v.info(m, false))
		}
	}
	v.u.mu.Unlock()
	// Called without the lock so fn may take its time writing to a client.
	for _, in := range infos {
		if err := fn(in); err != nil {
			return err
		}
	}
	return nil
}

type handle struct {
	m *message
	b *box
	u *User
}

func (v *view) OpenMessage(ctx context.Context, uid uint32) (imap.Message, error) {
	v.u.mu.Lock()
	defer v.u.mu.Unlock()
	for _, m := range v.b.msgs {
		if m.uid == uid {
			return &handle{m: m, b: v.b, u: v.u}, nil
		}
	}
	return nil, imap.ErrExpunged
}

func (h *handle) Structure() (*imap.Part, error) {
	h.u.mu.Lock()
	defer h.u.mu.Unlock()
	if h.m.parsed == nil {
		h.m.parsed = Parse(h.m.content)
	}
	return h.m.parsed, nil
}

func (h *handle) Reader(off int64) (io.ReadCloser, error) {
	c := h.m.content
	if off > int64(len(c)) {
		off = int64(len(c))
	}
	return io.NopCloser(bytes.NewReader(c[off:])), nil
}

func (h *handle) Close() error { return nil }

func (v *view) Store(ctx context.Context, uids imap.UIDSet, op imap.StoreOp, flags []string, unchangedSince uint64, fn func(*imap.MessageInfo)) (imap.UIDSet, error) {
	if v.readOnly {
		return nil, &imap.Error{Code: "CANNOT", Text: "Mailbox is read-only."}
	}
	flags = normFlags(flags)
	var failed imap.UIDSet
	var infos []*imap.MessageInfo
	changed := false
	v.u.mu.Lock()
	b := v.b
	for _, m := range b.msgs {
		if !uids.Contains(m.uid) {
			continue
		}
		if unchangedSince > 0 && m.modSeq > unchangedSince {
			failed = failed.Add(m.uid)
			continue
		}
		var nf []string
		switch op {
		case imap.StoreReplace:
			nf = append([]string(nil), flags...)
		case imap.StoreAdd:
			nf = append([]string(nil), m.flags...)
			for _, f := range flags {
				if !imap.HasFlag(nf, f) {
					nf = append(nf, f)
				}
			}
		case imap.StoreRemove:
			for _, f := range m.flags {
				if !imap.HasFlag(flags, f) {
					nf = append(nf, f)
				}
			}
		}
		if !sameFlags(nf, m.flags) {
			m.flags = nf
			b.modSeq++
			m.modSeq = b.modSeq
			b.learnKeywords(nf)
			changed = true
		}
		infos = append(infos, v.info(m, false))
	}
	v.u.mu.Unlock()
	for _, in := range infos {
		fn(in)
	}
	if changed {
		b.notify()
	}
	return failed, nil
}

func sameFlags(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, f := range a {
		if !imap.HasFlag(b, f) {
			return false
		}
	}
	return true
}

func (v *view) copyTo(uids imap.UIDSet, dest string, move bool) (imap.CopyResult, error) {
	if move && v.readOnly {
		return imap.CopyResult{}, &imap.Error{Code: "CANNOT", Text: "Mailbox is read-only."}
	}
	v.u.mu.Lock()
	d := v.u.lookup(dest)
	if d == nil || d.noSelect {
		v.u.mu.Unlock()
		return imap.CopyResult{}, imap.ErrNonexistent
	}
	var src []*message
	var size int64
	for _, m := range v.b.msgs {
		if uids.Contains(m.uid) {
			src = append(src, m)
			size += int64(len(m.content))
		}
	}
	if (!move || d != v.b) && v.u.overQuota(size, len(src)) {
		v.u.mu.Unlock()
		return imap.CopyResult{}, imap.ErrOverQuota
	}
	res := imap.CopyResult{UIDValidity: d.uidValidity}
	for _, m := range src {
		uid := d.add(m.content, m.flags, m.date)
		res.Source = append(res.Source, m.uid)
		res.Dest = append(res.Dest, uid)
	}
	if move {
		for _, m := range src {
			v.b.expunge(m.uid)
		}
	}
	v.u.mu.Unlock()
	d.notify()
	if move && d != v.b {
		v.b.notify()
	}
	return res, nil
}

func (v *view) Copy(ctx context.Context, uids imap.UIDSet, dest string) (imap.CopyResult, error) {
	return v.copyTo(uids, dest, false)
}

func (v *view) Move(ctx context.Context, uids imap.UIDSet, dest string) (imap.CopyResult, error) {
	return v.copyTo(uids, dest, true)
}

func (v *view) Expunge(ctx context.Context, uids imap.UIDSet) error {
	if v.readOnly {
		return &imap.Error{Code: "CANNOT", Text: "Mailbox is read-only."}
	}
	v.u.mu.Lock()
	var gone []uint32
	for _, m := range v.b.msgs {
		if imap.HasFlag(m.flags, imap.FlagDeleted) && (uids == nil || uids.Contains(m.uid)) {
			gone = append(gone, m.uid)
		}
	}
	for _, uid := range gone {
		v.b.expunge(uid)
	}
	v.u.mu.Unlock()
	if len(gone) > 0 {
		v.b.notify()
	}
	return nil
}
