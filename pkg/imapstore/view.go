package imapstore

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/posthorn/posthorn/pkg/imap"
	"github.com/posthorn/posthorn/pkg/mailbox"
)

// view is one session's selected mailbox: a mailbox.Mailbox, whose
// snapshot changes only at Sync, which Poll calls.
type view struct {
	u        *User
	m        *mailbox.Mailbox
	readOnly bool
	keywords string // the keyword list last reported, joined

	dateOf func(uid uint32) time.Time // m.InternalDate, made once

	nmu    sync.Mutex
	notify func()
	stop   func()
}

var errReadOnly = &imap.Error{Code: "CANNOT", Text: "Mailbox is read-only."}

func (v *view) Info() imap.SelectInfo {
	kw := v.m.Keywords()
	v.keywords = strings.Join(kw, " ")
	return imap.SelectInfo{UIDValidity: v.m.UIDValidity(), Keywords: kw, NewKeywords: true}
}

func (v *view) info(msg mailbox.Message, recent bool) *imap.MessageInfo {
	mi := &imap.MessageInfo{UID: msg.UID, Flags: msg.Flags, ModSeq: msg.ModSeq,
		InternalDate: msg.InternalDate, Size: msg.Size, Recent: recent}
	if msg.InternalDate.IsZero() {
		mi.DateOf = v.dateOf
	}
	return mi
}

// Poll implements imap.Mailbox.
func (v *view) Poll(ctx context.Context, since uint64, fn func(*imap.MessageInfo)) (imap.Changes, error) {
	if fn == nil {
		uids, exact := v.m.VanishedSince(since)
		ch := imap.Changes{UIDNext: v.m.UIDNext(), HighestModSeq: v.m.HighestModSeq()}
		ch.Expunged = v.expunged(uids, exact, nil)
		return ch, nil
	}
	// HIGHESTMODSEQ is read before the Sync so that it never covers a
	// change the snapshot lacks; it is then raised to what the snapshot
	// holds. A change between the two is reported again next time, which
	// is harmless; one reported never would not be.
	hi := v.m.HighestModSeq()
	sc, err := v.m.Sync()
	if err != nil {
		return imap.Changes{}, err
	}
	for _, uid := range v.m.ChangedSince(since) {
		msg, ok := v.m.Message(uid)
		if !ok {
			continue
		}
		hi = max(hi, msg.ModSeq)
		fn(v.info(msg, v.m.Recent(uid)))
	}
	uids, exact := v.m.VanishedSince(since)
	ch := imap.Changes{UIDNext: v.m.UIDNext(), HighestModSeq: hi}
	ch.Expunged = v.expunged(uids, exact, sc.Expunged)
	if kw := v.m.Keywords(); strings.Join(kw, " ") != v.keywords {
		v.keywords = strings.Join(kw, " ")
		ch.Keywords = append(kw, []string{}...)
	}
	return ch, nil
}

// expunged builds Changes.Expunged: the expunge log, plus what this
// session's Sync saw go, plus — when the log does not reach back far
// enough — every UID below UIDNEXT that is not present, which RFC 7162
// §3.2.5.1 allows.
func (v *view) expunged(logged []uint32, exact bool, synced []uint32) imap.UIDSet {
	var set imap.UIDSet
	for _, u := range logged {
		set = set.Add(u)
	}
	for _, u := range synced {
		set = set.Add(u)
	}
	if !exact {
		next := v.m.UIDNext()
		prev := uint32(0)
		for _, u := range append(v.m.UIDs(), next) {
			if u > prev+1 {
				set = set.AddRange(prev+1, u-1)
			}
			prev = u
		}
	}
	return set
}

// present returns the snapshot's UIDs that are in uids, ascending.
func (v *view) present(uids imap.UIDSet) []uint32 {
	all, _ := v.m.SharedUIDs()
	var out []uint32
	for _, u := range all {
		if uids.Contains(u) {
			out = append(out, u)
		}
	}
	return out
}

// Fetch implements imap.Mailbox.
func (v *view) Fetch(ctx context.Context, uids imap.UIDSet, fn func(*imap.MessageInfo) error) error {
	// In chunks: one lock per chunk, and fn (which writes to the client)
	// runs without the folder's lock.
	present := v.present(uids)
	var buf []mailbox.Message
	for len(present) > 0 {
		n := min(len(present), 512)
		buf = v.m.MessagesOf(present[:n], buf[:0])
		present = present[n:]
		for _, msg := range buf {
			if err := fn(v.info(msg, false)); err != nil {
				return err
			}
		}
	}
	return nil
}

// OpenMessage implements imap.Mailbox. The file is not opened yet: the
// cached ENVELOPE and BODYSTRUCTURE do not need it. A file found gone
// later makes Structure and Reader fail with imap.ErrExpunged.
func (v *view) OpenMessage(ctx context.Context, uid uint32) (imap.Message, error) {
	if v.m.SeqNum(uid) == 0 {
		return nil, imap.ErrExpunged
	}
	return &message{m: v.m, uid: uid, size: -1}, nil
}

// Store implements imap.Mailbox.
func (v *view) Store(ctx context.Context, uids imap.UIDSet, op imap.StoreOp, flags []string, unchangedSince uint64, fn func(*imap.MessageInfo)) (imap.UIDSet, error) {
	if v.readOnly {
		return nil, errReadOnly
	}
	mode := mailbox.FlagsReplace
	switch op {
	case imap.StoreAdd:
		mode = mailbox.FlagsAdd
	case imap.StoreRemove:
		mode = mailbox.FlagsRemove
	}
	flags = slices.DeleteFunc(slices.Clone(flags), func(f string) bool { return strings.EqualFold(f, imap.FlagRecent) })
	list := v.present(uids)
	_, modified, err := v.m.SetFlags(list, mode, flags, unchangedSince)
	if err != nil {
		return nil, mapErr(err)
	}
	var failed imap.UIDSet
	for _, u := range modified {
		failed = failed.Add(u)
	}
	for _, uid := range list {
		if failed.Contains(uid) {
			continue
		}
		if msg, ok := v.m.Message(uid); ok {
			fn(v.info(msg, false))
		}
	}
	return failed, nil
}

func (v *view) copyTo(uids imap.UIDSet, dest string, move bool) (imap.CopyResult, error) {
	if move && v.readOnly {
		return imap.CopyResult{}, errReadOnly
	}
	d, err := v.u.store.Open(dest)
	if err != nil {
		return imap.CopyResult{}, mapErr(err)
	}
	list := v.present(uids)
	var src, dst []uint32
	if move {
		src, dst, err = v.m.Move(list, d)
	} else {
		src, dst, err = v.m.Copy(list, d)
	}
	if err != nil {
		return imap.CopyResult{}, mapErr(err)
	}
	return imap.CopyResult{UIDValidity: d.UIDValidity(), Source: src, Dest: dst}, nil
}

// Copy implements imap.Mailbox.
func (v *view) Copy(ctx context.Context, uids imap.UIDSet, dest string) (imap.CopyResult, error) {
	return v.copyTo(uids, dest, false)
}

// Move implements imap.Mailbox.
func (v *view) Move(ctx context.Context, uids imap.UIDSet, dest string) (imap.CopyResult, error) {
	return v.copyTo(uids, dest, true)
}

// Expunge implements imap.Mailbox.
func (v *view) Expunge(ctx context.Context, uids imap.UIDSet) error {
	if v.readOnly {
		return errReadOnly
	}
	del := v.m.DeletedUIDs()
	if uids != nil {
		del = slices.DeleteFunc(del, func(u uint32) bool { return !uids.Contains(u) })
	}
	if len(del) == 0 {
		return nil
	}
	_, err := v.m.Expunge(del, true)
	return mapErr(err)
}

// SetNotify implements imap.Mailbox with an inotify watch on the folder,
// which sees deliveries by local(8), other sessions and other programs
// (Dovecot, mbsync on the server) alike.
func (v *view) SetNotify(fn func()) {
	v.nmu.Lock()
	defer v.nmu.Unlock()
	v.notify = fn
	if fn == nil {
		if v.stop != nil {
			v.stop()
			v.stop = nil
		}
		return
	}
	if v.stop != nil {
		return
	}
	stop, err := v.m.Watch(func() {
		v.nmu.Lock()
		f := v.notify
		v.nmu.Unlock()
		if f != nil {
			f()
		}
	})
	if err != nil {
		// Without inotify the session still learns of changes at its
		// next command.
		return
	}
	v.stop = stop
}

// Close implements imap.Mailbox.
func (v *view) Close() error {
	if v.u.sel == v {
		v.u.sel = nil
	}
	v.SetNotify(nil)
	return nil
}
