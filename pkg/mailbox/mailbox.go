package mailbox

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/posthorn/posthorn/pkg/maildir"
)

// Message is one message as a session last saw it.
type Message struct {
	UID uint32
	// Flags are the system flags (\Seen \Answered \Flagged \Deleted
	// \Draft) followed by keywords; \Recent is not among them (see Recent).
	Flags []string
	// Size is RFC822.SIZE: the size with CRLF line ends (W=).
	Size int64
	// InternalDate is the file's mtime, which Dovecot never changes; zero
	// when it has not been read yet (Mailbox.InternalDate reads it).
	InternalDate time.Time
	ModSeq       uint64
}

// Mailbox is one session's view of a folder: the messages as of its last
// Sync, so that sequence numbers stay stable between the points where IMAP
// allows EXISTS and EXPUNGE (RFC 3501 §7.4.1). Its methods are safe for
// concurrent use, but a session normally uses it from one goroutine.
type Mailbox struct {
	f *folder

	mu      sync.Mutex
	snap    []*msgRec // ascending UID
	sn      *snapshot // the shared snapshot snap is, nil once snap is this session's own copy
	gen     uint64
	uv      uint32
	mode    RecentMode
	recent  map[uint32]bool
	checked bool
}

// RecentMode is what a Mailbox does with IMAP4rev1 \Recent (RFC 3501
// §2.3.2): a message is recent in exactly one session, the first to see
// it with the mailbox selected read-write. The folder's first-recent UID,
// kept in posthorn.index and so shared by every process, divides messages
// no session has taken (UIDs at or above it) from the rest.
type RecentMode uint8

const (
	// RecentIgnore: the Mailbox is not a selected mailbox (STATUS, APPEND,
	// COPY); it takes nothing and Recent is always false.
	RecentIgnore RecentMode = iota
	// RecentPeek (EXAMINE): messages not taken by any session are recent
	// in this one too, but are left for a read-write session to take.
	RecentPeek
	// RecentTake (read-write SELECT): each Sync takes the messages no
	// session has taken and advances the first-recent UID past them.
	RecentTake
)

// Changes is what Sync found since the previous Sync of this Mailbox.
type Changes struct {
	New      []uint32 // ascending; report with EXISTS
	Expunged []uint32 // ascending; report with EXPUNGE or VANISHED
	Flags    []uint32 // ascending; messages whose flags changed (FETCH)
	// Recent are the new UIDs that are \Recent in this session (see
	// RecentMode); always empty for RecentIgnore.
	Recent []uint32
}

// ErrUIDValidity is returned by Sync when the folder was recreated with
// another UIDVALIDITY: the session must end (RFC 3501 §2.3.1.1).
var ErrUIDValidity = errors.New("mailbox: UIDVALIDITY changed")

// Open opens a mailbox for a session and synchronizes it; it takes no
// part in \Recent (RecentIgnore).
func (s *Store) Open(name string) (*Mailbox, error) {
	return s.Select(name, RecentIgnore)
}

// Select opens a mailbox for a session that selects it and synchronizes
// it; mode says how the session deals with \Recent.
func (s *Store) Select(name string, mode RecentMode) (*Mailbox, error) {
	name, err := ValidateName(name, false)
	if err != nil {
		return nil, err
	}
	f, err := s.folderFor(name)
	if err != nil {
		return nil, err
	}
	m := &Mailbox{f: f, mode: mode}
	if _, err := m.Sync(); err != nil {
		return nil, err
	}
	return m, nil
}

// Name is the mailbox name.
func (m *Mailbox) Name() string { return m.f.name }

// Sync looks at the folder (a few stats when nothing changed; a directory
// scan under dovecot-uidlist.lock when something did) and returns what
// changed since the last Sync. The first Sync, done by Open, reports as
// New only the messages no session has taken as \Recent yet.
func (m *Mailbox) Sync() (Changes, error) {
	f := m.f
	f.mu.Lock()
	defer f.mu.Unlock()
	// Cache entries set by the command before are appended now, for other
	// processes to find.
	f.flushCache()
	if err := f.refreshLocked(false); err != nil {
		return Changes{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var c Changes
	if m.checked && m.uv != f.uidValidity {
		return c, ErrUIDValidity
	}
	if m.checked && m.gen == f.gen {
		return c, nil
	}
	if !m.checked {
		// The first Sync (Select's) has nothing to compare with: only the
		// messages that may be \Recent are listed, so that selecting a
		// large mailbox costs no per-message work.
		if m.mode != RecentIgnore {
			k, _ := slices.BinarySearchFunc(f.recs, f.recentFloor(), recCmp)
			for _, r := range f.recs[k:] {
				c.New = append(c.New, r.uid)
			}
		}
	} else {
		old := m.snap
		i, j := 0, 0
		for i < len(old) || j < len(f.recs) {
			switch {
			case j >= len(f.recs) || (i < len(old) && old[i].uid < f.recs[j].uid):
				c.Expunged = append(c.Expunged, old[i].uid)
				i++
			case i >= len(old) || f.recs[j].uid < old[i].uid:
				c.New = append(c.New, f.recs[j].uid)
				j++
			default:
				if old[i].modseq != f.recs[j].modseq || flagsOf(old[i]) != flagsOf(f.recs[j]) {
					c.Flags = append(c.Flags, old[i].uid)
				}
				i++
				j++
			}
		}
	}
	sn := f.sharedSnapshot()
	snap, gen := sn.recs, f.gen
	switch m.mode {
	case RecentPeek:
		floor := f.recentFloor()
		for _, uid := range c.New {
			if uid >= floor {
				c.Recent = append(c.Recent, uid)
			}
		}
	case RecentTake:
		var err error
		if c.Recent, err = f.takeRecent(c.New, snap); err != nil {
			return Changes{}, err
		}
	}
	if len(c.Recent) > 0 {
		if m.recent == nil {
			m.recent = map[uint32]bool{}
		}
		for _, u := range c.Recent {
			m.recent[u] = true
		}
	}
	for _, u := range c.Expunged {
		delete(m.recent, u)
	}
	m.snap, m.sn = snap, sn
	m.gen = gen
	m.uv = f.uidValidity
	m.checked = true
	return c, nil
}

// UIDValidity is the mailbox's UIDVALIDITY (dovecot-uidlist V).
func (m *Mailbox) UIDValidity() uint32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.uv
}

// UIDNext is the UID the next message will get (dovecot-uidlist N).
func (m *Mailbox) UIDNext() uint32 {
	m.f.mu.Lock()
	defer m.f.mu.Unlock()
	return m.f.ul.nextUID
}

// HighestModSeq is the mailbox's HIGHESTMODSEQ (RFC 7162 §3.1.2.1).
func (m *Mailbox) HighestModSeq() uint64 {
	m.f.mu.Lock()
	defer m.f.mu.Unlock()
	return max(m.f.highest, 1)
}

// MailboxGUID is the 128-bit mailbox GUID of dovecot-uidlist, in hex.
func (m *Mailbox) MailboxGUID() string {
	m.f.mu.Lock()
	defer m.f.mu.Unlock()
	return m.f.ul.guid
}

// Count is the number of messages in the session's view.
func (m *Mailbox) Count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.snap)
}

// UIDs returns the view's UIDs in order; index i is sequence number i+1.
func (m *Mailbox) UIDs() []uint32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]uint32, len(m.snap))
	for i, r := range m.snap {
		out[i] = r.uid
	}
	return out
}

// SeqNum returns the sequence number of uid in the view, or 0.
func (m *Mailbox) SeqNum(uid uint32) uint32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	i, ok := slices.BinarySearchFunc(m.snap, uid, recCmp)
	if !ok {
		return 0
	}
	return uint32(i + 1)
}

// Recent reports whether uid is \Recent in this session.
func (m *Mailbox) Recent(uid uint32) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.recent[uid]
}

// RecentCount is STATUS RECENT. For a selected Mailbox (RecentPeek,
// RecentTake) it is the number of messages \Recent in this session; for
// RecentIgnore it is the number of messages of the view that no session
// has taken yet, which it does not take either.
func (m *Mailbox) RecentCount() int {
	m.mu.Lock()
	n, snap := len(m.recent), m.snap
	m.mu.Unlock()
	if m.mode != RecentIgnore {
		return n
	}
	m.f.mu.Lock()
	floor := m.f.recentFloor()
	m.f.mu.Unlock()
	i, _ := slices.BinarySearchFunc(snap, floor, recCmp)
	return len(snap) - i
}

// rec is message uid's record in the view's snapshot, nil when it has none.
func (m *Mailbox) rec(uid uint32) *msgRec {
	m.mu.Lock()
	defer m.mu.Unlock()
	if i, ok := slices.BinarySearchFunc(m.snap, uid, recCmp); ok {
		return m.snap[i]
	}
	return nil
}

// Message returns a message as of the view's last Sync (or this session's
// own flag changes). A message expunged by another session since is still
// returned until Sync reports it; Open then fails with ErrExpunged.
func (m *Mailbox) Message(uid uint32) (Message, bool) {
	r := m.rec(uid)
	if r == nil {
		return Message{}, false
	}
	return m.message(r), true
}

// Messages returns every message of the view in UID order.
func (m *Mailbox) Messages() []Message {
	m.mu.Lock()
	snap := m.snap
	m.mu.Unlock()
	out := make([]Message, len(snap))
	m.f.mu.Lock()
	defer m.f.mu.Unlock()
	for i, r := range snap {
		out[i] = m.messageLocked(r)
	}
	return out
}

func (m *Mailbox) message(r *msgRec) Message {
	m.f.mu.Lock()
	defer m.f.mu.Unlock()
	return m.messageLocked(r)
}

func (m *Mailbox) messageLocked(r *msgRec) Message {
	sys, letters := infoFlags(r.name)
	var flags []string
	if letters == "" && len(r.extraKw) == 0 {
		flags = sysFlagLists[sys&31] // shared, read-only: most messages
	} else {
		for _, s := range sysLetters {
			if sys&s.bit != 0 {
				flags = append(flags, s.name)
			}
		}
		flags = append(flags, m.f.keywordsOf(r)...)
	}
	msg := Message{UID: r.uid, Flags: flags, Size: r.vsize, ModSeq: r.modseq}
	if r.mtime != mtimeUnknown {
		msg.InternalDate = time.Unix(0, r.mtime)
	}
	return msg
}

// InternalDate returns message uid's INTERNALDATE, reading its file's
// mtime when the folder's scan left it unread (Message.InternalDate zero).
func (m *Mailbox) InternalDate(uid uint32) time.Time {
	r := m.rec(uid)
	if r == nil {
		return time.Time{}
	}
	m.f.mu.Lock()
	defer m.f.mu.Unlock()
	return time.Unix(0, m.f.mtimeOf(r))
}

// sysFlagLists holds the flag list of every combination of system flags,
// so a message without keywords costs no allocation. Capacity equals
// length: appending to one copies it.
var sysFlagLists = func() (out [32][]string) {
	for bits := range out {
		var l []string
		for _, s := range sysLetters {
			if uint8(bits)&s.bit != 0 {
				l = append(l, s.name)
			}
		}
		out[bits] = slices.Clip(l)
	}
	return
}()

// MessagesOf appends to out the messages of the view among uids
// (ascending), under one lock: FETCH of a whole mailbox in chunks rather
// than one lookup per message.
func (m *Mailbox) MessagesOf(uids []uint32, out []Message) []Message {
	m.mu.Lock()
	snap := m.snap
	m.mu.Unlock()
	m.f.mu.Lock()
	defer m.f.mu.Unlock()
	i := 0
	for _, uid := range uids {
		j, ok := slices.BinarySearchFunc(snap[i:], uid, recCmp)
		i += j
		if ok {
			out = append(out, m.messageLocked(snap[i]))
		}
	}
	return out
}

// Keywords returns the keywords defined in the mailbox (for the FLAGS and
// PERMANENTFLAGS responses).
func (m *Mailbox) Keywords() []string {
	m.f.mu.Lock()
	defer m.f.mu.Unlock()
	var out []string
	for _, k := range m.f.kw {
		if k != "" {
			out = append(out, k)
		}
	}
	for _, k := range m.f.sharedSnapshot().extraKeywords() {
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out
}

// ChangedSince returns the view's UIDs whose modseq is above modseq
// (CHANGEDSINCE, RFC 7162 §3.1.4).
func (m *Mailbox) ChangedSince(modseq uint64) []uint32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []uint32
	for _, r := range m.snap {
		if r.modseq > modseq {
			out = append(out, r.uid)
		}
	}
	return out
}

// VanishedSince returns the UIDs expunged with a modseq above modseq
// (QRESYNC VANISHED (EARLIER), RFC 7162 §3.2.5.1). exact is false when
// the index no longer remembers that far back (it keeps the last
// maxVanished expunges): the caller must then fall back to the client's
// known UIDs.
func (m *Mailbox) VanishedSince(modseq uint64) (uids []uint32, exact bool) {
	f := m.f
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range f.expunges {
		if e.modseq > modseq {
			uids = append(uids, e.uid)
		}
	}
	slices.Sort(uids)
	return slices.Compact(uids), modseq >= f.vanishFloor
}

// Cache returns what the IMAP layer stored for uid with SetCache.
func (m *Mailbox) Cache(uid uint32) ([]byte, bool) {
	m.f.mu.Lock()
	defer m.f.mu.Unlock()
	return m.f.getCache(uid)
}

// SetCache stores opaque data (at most MaxCacheEntry bytes) for uid in
// posthorn.cache, replacing what was there.
func (m *Mailbox) SetCache(uid uint32, data []byte) error {
	m.f.mu.Lock()
	defer m.f.mu.Unlock()
	return m.f.setCache(uid, data)
}

// Open returns the message file (LF line ends, as stored) for reading; see
// CRLFReader for the IMAP view. When another process renamed the file the
// folder is rescanned once; ErrExpunged means it is gone.
func (m *Mailbox) Open(uid uint32) (*os.File, error) {
	f := m.f
	for attempt := 0; ; attempt++ {
		f.mu.Lock()
		r := f.msgs[uid]
		var fl *os.File
		var err error
		if r != nil {
			fl, err = f.openMessage(r)
		}
		f.mu.Unlock()
		if r == nil {
			return nil, ErrExpunged
		}
		if err == nil {
			return fl, nil
		}
		if !errors.Is(err, fs.ErrNotExist) || attempt > 0 {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, ErrExpunged
			}
			return nil, err
		}
		if err := f.refresh(true); err != nil {
			return nil, err
		}
	}
}

// FlagMode says how SetFlags combines flags.
type FlagMode int

const (
	FlagsReplace FlagMode = iota // FLAGS
	FlagsAdd                     // +FLAGS
	FlagsRemove                  // -FLAGS
)

// FlagUpdate is a message whose flags SetFlags changed.
type FlagUpdate struct {
	UID    uint32
	Flags  []string
	ModSeq uint64
}

// SetFlags changes the flags of the given messages (STORE, RFC 3501
// §6.4.6) by renaming their files' ":2," info under the uidlist lock.
// unchangedSince, if not zero, skips messages whose modseq is above it
// (UNCHANGEDSINCE, RFC 7162 §3.1.3) and returns them as modified. Messages
// whose flags do not actually change keep their modseq. UIDs not in the
// folder are ignored. The view takes the new state, so the next Sync does
// not report these changes again.
func (m *Mailbox) SetFlags(uids []uint32, mode FlagMode, flags []string, unchangedSince uint64) (updated []FlagUpdate, modified []uint32, err error) {
	sys, kws, err := splitFlags(flags)
	if err != nil {
		return nil, nil, err
	}
	f := m.f
	f.mu.Lock()
	defer f.mu.Unlock()
	l, err := takeLock(f.root, uidlistFile)
	if err != nil {
		return nil, nil, err
	}
	defer l.release()
	if err := f.syncLocked(false); err != nil {
		return nil, nil, err
	}
	w := f.newWrite()
	letters, extra, err := f.keywordLetters(w, kws)
	if err != nil {
		return nil, nil, err
	}
	var changed []*msgRec
	for _, uid := range uids {
		r := f.msgs[uid]
		if r == nil {
			continue
		}
		if unchangedSince != 0 && r.modseq > unchangedSince {
			modified = append(modified, uid)
			continue
		}
		oldSys, oldLetters := infoFlags(r.name)
		nSys, nLetters, nExtra := oldSys, oldLetters, r.extraKw
		switch mode {
		case FlagsReplace:
			nSys, nLetters, nExtra = sys, letters, extra
		case FlagsAdd:
			nSys |= sys
			nLetters += letters
			nExtra = mergeKw(nExtra, extra)
		case FlagsRemove:
			nSys &^= sys
			nLetters = removeLetters(nLetters, letters)
			nExtra = slices.DeleteFunc(slices.Clone(nExtra), func(k string) bool { return containsFold(extra, k) })
		}
		n := *r
		n.name = withFlags(r.name, nSys, nLetters)
		n.extraKw = nExtra
		if len(n.extraKw) == 0 {
			n.extraKw = nil
		}
		if flagsOf(&n) == flagsOf(r) {
			continue
		}
		if err := f.root.Rename(r.path(), "cur/"+n.name); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // expunged or renamed by another process: the next sync tells
			}
			return nil, nil, fmt.Errorf("mailbox %s: rename: %w", f.name, err)
		}
		n.inNew = false
		n.modseq = f.nextModSeq(w)
		f.put(w, &n)
		changed = append(changed, &n)
	}
	if err := f.commit(w); err != nil {
		return nil, nil, err
	}
	m.mu.Lock()
	if m.sn != nil && len(changed) > 0 {
		m.snap, m.sn = slices.Clone(m.snap), nil // shared: copy before changing
	}
	for _, n := range changed {
		if i, ok := slices.BinarySearchFunc(m.snap, n.uid, recCmp); ok {
			m.snap[i] = n
		}
		updated = append(updated, FlagUpdate{UID: n.uid, Flags: m.messageLocked(n).Flags, ModSeq: n.modseq})
	}
	m.mu.Unlock()
	return updated, modified, nil
}

func containsFold(list []string, k string) bool {
	for _, x := range list {
		if equalFold(x, k) {
			return true
		}
	}
	return false
}

func mergeKw(a, b []string) []string {
	out := slices.Clone(a)
	for _, k := range b {
		if !containsFold(out, k) {
			out = append(out, k)
		}
	}
	return out
}

func removeLetters(have, drop string) string {
	var b []byte
	for i := 0; i < len(have); i++ {
		if !containsByte(drop, have[i]) {
			b = append(b, have[i])
		}
	}
	return string(b)
}

func containsByte(s string, c byte) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return true
		}
	}
	return false
}

// Expunge removes the given messages (EXPUNGE, UID EXPUNGE); with
// onlyDeleted, only those that have \Deleted when the lock is held. It
// returns the UIDs removed; the next Sync of every session reports them.
func (m *Mailbox) Expunge(uids []uint32, onlyDeleted bool) ([]uint32, error) {
	f := m.f
	f.mu.Lock()
	defer f.mu.Unlock()
	l, err := takeLock(f.root, uidlistFile)
	if err != nil {
		return nil, err
	}
	defer l.release()
	if err := f.syncLocked(false); err != nil {
		return nil, err
	}
	w := f.newWrite()
	var done []uint32
	for _, uid := range uids {
		r := f.msgs[uid]
		if r == nil {
			continue
		}
		if sys, _ := infoFlags(r.name); onlyDeleted && sys&sysDeleted == 0 {
			continue
		}
		if err := f.root.Remove(r.path()); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return done, fmt.Errorf("mailbox %s: expunge: %w", f.name, err)
		}
		f.remove(w, r)
		done = append(done, uid)
	}
	slices.Sort(done)
	return done, f.commit(w)
}

// DeletedUIDs returns the view's messages flagged \Deleted.
func (m *Mailbox) DeletedUIDs() []uint32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []uint32
	for _, r := range m.snap {
		if sys, _ := infoFlags(r.name); sys&sysDeleted != 0 {
			out = append(out, r.uid)
		}
	}
	return out
}

// Append stores a message (APPEND, RFC 3501 §6.3.11) and returns its UID
// at once, for UIDPLUS APPENDUID (RFC 4315). CRLF line ends are stored as
// LF, as Dovecot stores them; the file is written to tmp/, fsynced, given
// date as its mtime (INTERNALDATE; the current time when date is zero) and
// renamed to new/ when it has no flags or to cur/ with ":2,FLAGS", and the
// directory is fsynced before the UID is assigned under the uidlist lock.
func (m *Mailbox) Append(r io.Reader, flags []string, date time.Time) (uint32, error) {
	uids, err := m.f.save([]saveSrc{{r: r, flags: flags, date: date}})
	if err != nil {
		return 0, err
	}
	return uids[0], nil
}

// saveSrc is one message to store: from a reader, or a hard link of a file
// of another folder.
type saveSrc struct {
	r     io.Reader
	flags []string
	date  time.Time
	// link: copy of an existing message
	from   *folder
	fromR  *msgRec
	fromKw []string
}

type staged struct {
	tmp         string
	base        string
	size, vsize int64
	sys         uint8
	kws         []string
	mtime       int64
}

// save writes the messages to tmp/ and then, under the lock, moves them in
// and assigns UIDs, in order.
func (f *folder) save(srcs []saveSrc) ([]uint32, error) {
	var st []staged
	cleanup := func() {
		for _, s := range st {
			f.root.Remove(s.tmp)
		}
	}
	var addB int64
	for _, src := range srcs {
		s, err := f.stage(src)
		if err != nil {
			cleanup()
			return nil, err
		}
		st = append(st, s)
		addB += s.size
	}
	if err := f.s.CheckQuota(addB, int64(len(st))); err != nil {
		cleanup()
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	l, err := takeLock(f.root, uidlistFile)
	if err != nil {
		cleanup()
		return nil, err
	}
	defer l.release()
	if err := f.syncLocked(false); err != nil {
		cleanup()
		return nil, err
	}
	w := f.newWrite()
	var uids []uint32
	var recs []*msgRec
	usedNew, usedCur := false, false
	for i, s := range st {
		letters, extra, err := f.keywordLetters(w, s.kws)
		if err != nil {
			cleanup()
			return nil, err
		}
		name := s.base + ",S=" + strconv.FormatInt(s.size, 10) + ",W=" + strconv.FormatInt(s.vsize, 10)
		inNew := s.sys == 0 && letters == "" && len(extra) == 0
		dest := "new/" + name
		if !inNew {
			name = withFlags(name, s.sys, letters)
			dest = "cur/" + name
			usedCur = true
		} else {
			usedNew = true
		}
		if err := f.root.Rename(s.tmp, dest); err != nil {
			for _, t := range st[i:] {
				f.root.Remove(t.tmp)
			}
			return nil, fmt.Errorf("mailbox %s: save: %w", f.name, err)
		}
		r := &msgRec{name: name, inNew: inNew, size: s.size, vsize: s.vsize, mtime: s.mtime, extraKw: extra}
		recs = append(recs, r)
	}
	if !f.s.noFsync {
		for _, d := range []struct {
			used bool
			sub  string
		}{{usedNew, "/new"}, {usedCur, "/cur"}} {
			if d.used {
				if err := f.s.syncs.Sync(f.s.path + "/" + f.dir + d.sub); err != nil {
					return nil, fmt.Errorf("mailbox %s: fsync: %w", f.name, err)
				}
			}
		}
	}
	for _, r := range recs {
		key, _, _, _, _ := parseFileName(r.name)
		r.uid = f.ul.add(key)
		w.ulAdded++
		r.modseq = f.nextModSeq(w)
		f.put(w, r)
		uids = append(uids, r.uid)
		w.quotaB += r.size
		w.quotaC++
	}
	return uids, f.commit(w)
}

// stage writes one message into tmp/ (or links it there).
func (f *folder) stage(src saveSrc) (staged, error) {
	var s staged
	if src.from != nil {
		s.sys, _ = infoFlags(src.fromR.name)
		s.kws = src.fromKw
		s.size, s.vsize, s.mtime = src.fromR.size, src.fromR.vsize, src.fromR.mtime
	} else {
		var err error
		s.sys, s.kws, err = splitFlags(src.flags)
		if err != nil {
			return s, err
		}
	}
	for attempt := 0; ; attempt++ {
		s.base = maildir.UniqueBase(f.s.opts.Hostname)
		s.tmp = "tmp/" + s.base
		var err error
		if src.from != nil {
			err = f.linkFrom(src.from, src.fromR.path(), s.tmp)
		} else {
			err = f.writeTmp(s.tmp, src.r, src.date, &s)
		}
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, fs.ErrExist) || attempt >= 10 {
			return s, err
		}
	}
}

// linkFrom hard-links a message of another folder into tmp/ (Dovecot's
// maildir-copy.c does the same), copying it when a link is impossible.
func (f *folder) linkFrom(src *folder, path, tmp string) error {
	srcPath := src.s.path + "/" + src.dir + "/" + path
	dstPath := f.s.path + "/" + f.dir + "/" + tmp
	if src.s == f.s {
		// Both are inside the same root: link through it.
		err := f.s.root.Link(src.dir+"/"+path, f.dir+"/"+tmp)
		if err == nil || errors.Is(err, fs.ErrExist) || errors.Is(err, fs.ErrNotExist) {
			return err
		}
	} else if err := os.Link(srcPath, dstPath); err == nil || errors.Is(err, fs.ErrExist) || errors.Is(err, fs.ErrNotExist) {
		return err
	}
	in, err := src.root.Open(path)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := f.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fileMode)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil && !f.s.noFsync {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = f.root.Chtimes(tmp, fi.ModTime(), fi.ModTime())
	}
	if err != nil {
		f.root.Remove(tmp)
	}
	return err
}

// writeTmp stores r in tmp with LF line ends, counting both sizes.
func (f *folder) writeTmp(tmp string, r io.Reader, date time.Time, s *staged) error {
	out, err := f.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fileMode)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(out, 64<<10)
	lw := &lfWriter{w: bw}
	_, err = io.Copy(lw, r)
	if err == nil {
		err = lw.Close()
	}
	if err == nil {
		err = bw.Flush()
	}
	if err == nil && !f.s.noFsync {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if date.IsZero() {
		date = time.Now()
	}
	if err == nil {
		err = f.root.Chtimes(tmp, date, date)
	}
	if err != nil {
		f.root.Remove(tmp)
		if errors.Is(err, fs.ErrExist) {
			err = fmt.Errorf("mailbox %s: %w", f.name, err)
		}
		return err
	}
	s.size, s.vsize, s.mtime = lw.n, lw.n+lw.lines, date.UnixNano()
	return nil
}

// Copy copies messages to dest (COPY, RFC 3501 §6.4.7), keeping flags,
// keywords and INTERNALDATE, and returns the source and new UIDs in
// matching order for COPYUID (RFC 4315). Messages expunged meanwhile are
// left out.
func (m *Mailbox) Copy(uids []uint32, dest *Mailbox) (src, dst []uint32, err error) {
	f := m.f
	f.mu.Lock()
	var srcs []saveSrc
	for _, uid := range uids {
		r := f.msgs[uid]
		if r == nil {
			continue
		}
		srcs = append(srcs, saveSrc{from: f, fromR: r, fromKw: f.keywordsOf(r)})
		src = append(src, uid)
	}
	f.mu.Unlock()
	if len(srcs) == 0 {
		return nil, nil, nil
	}
	dst, err = dest.f.save(srcs)
	if err != nil {
		return nil, nil, err
	}
	return src, dst, nil
}

// Move moves messages to dest (MOVE, RFC 6851): a copy, then an expunge of
// the originals. It returns the UID pairs for COPYUID.
func (m *Mailbox) Move(uids []uint32, dest *Mailbox) (src, dst []uint32, err error) {
	src, dst, err = m.Copy(uids, dest)
	if err != nil {
		return nil, nil, err
	}
	if _, err := m.Expunge(src, false); err != nil {
		return src, dst, err
	}
	return src, dst, nil
}
