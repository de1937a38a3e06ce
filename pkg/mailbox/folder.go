package mailbox

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// folder is the state of one Maildir folder shared by every session of a
// Store on it. Its records change only under mu; sessions copy the record
// pointers they report (see Mailbox).
type folder struct {
	s    *Store
	name string
	dir  string // relative to the store root: "." or ".Name"
	root *os.Root

	mu sync.Mutex

	ul     *uidlist
	ulStat fileStamp
	kw     keywordTable
	kwTime int64

	uidValidity uint32
	msgs        map[uint32]*msgRec
	recs        []*msgRec // ascending UID
	byKey       map[string]*msgRec
	expunges    []expunged // ascending modseq, at most maxVanished
	vanishFloor uint64     // highest modseq of expunges no longer listed
	highest     uint64
	st          stamp
	haveStamp   bool
	gen         uint64
	shared      *snapshot   // recs at gen, for sessions (snapshot.go)
	subdirs     [2]*os.File // cur/ and new/, opened for openMessage

	idxIno     uint64
	idxGood    int64
	idxFrames  int
	idxCorrupt bool

	// firstRecent is the lowest UID that may still be \Recent: no
	// session has taken it (posthorn.index 'R'). haveRecent is false
	// until it is known from the index or set by initRecent.
	firstRecent uint32
	haveRecent  bool
	cache       cacheFile
}

type fileStamp struct {
	ino   uint64
	size  int64
	mtime int64
}

func statStamp(fi fs.FileInfo) fileStamp {
	st, _ := fi.Sys().(*syscall.Stat_t)
	fs := fileStamp{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if st != nil {
		fs.ino = st.Ino
	}
	return fs
}

// dirTimes stats the folder's control points.
type dirTimes struct {
	cur, new int64
	ul       fileStamp
	ulExists bool
	kw       int64
}

func (f *folder) statDirs() (dirTimes, error) {
	var t dirTimes
	fi, err := f.root.Stat("cur")
	if err != nil {
		return t, fmt.Errorf("mailbox %s: %w", f.name, err)
	}
	t.cur = fi.ModTime().UnixNano()
	fi, err = f.root.Stat("new")
	if err != nil {
		return t, fmt.Errorf("mailbox %s: %w", f.name, err)
	}
	t.new = fi.ModTime().UnixNano()
	if fi, err := f.root.Lstat(uidlistFile); err == nil {
		t.ul, t.ulExists = statStamp(fi), true
	}
	if fi, err := f.root.Lstat(keywordsFile); err == nil {
		t.kw = fi.ModTime().UnixNano()
	}
	return t, nil
}

// syncSecs: a directory changed this recently may change again within the
// same timestamp, so its scan is repeated once it is older (Dovecot's
// MAILDIR_SYNC_SECS).
const syncSecs = int64(time.Second)

// needs reports which parts of the Maildir differ from what the index
// describes.
func (f *folder) needs(t dirTimes) (scanCur, scanNew, other bool) {
	if !f.haveStamp || f.idxCorrupt {
		return true, true, true
	}
	s := &f.st
	scanCur = t.cur != s.cur
	scanNew = t.new != s.new
	if !s.clean && time.Now().UnixNano() > max(s.cur, s.new)+syncSecs {
		scanCur, scanNew = true, true
	}
	other = !t.ulExists || t.ul.size != s.uidlistSize || t.ul.mtime != s.uidlistMtime ||
		t.ul.ino != s.uidlistIno || t.kw != s.keywordsMtime
	return
}

// refresh brings the folder up to date with the Maildir and with other
// writers: it reads what was added to posthorn.index, and when the
// directories or control files changed since, scans under the uidlist lock.
// force scans both directories even when their mtimes did not change (a
// file was not where the index said).
func (f *folder) refresh(force bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.refreshLocked(force)
}

func (f *folder) refreshLocked(force bool) error {
	f.readIndex()
	t, err := f.statDirs()
	if err != nil {
		return err
	}
	if f.ul == nil && t.ulExists {
		// Readers take no lock (Dovecot's rule); a broken file is dealt
		// with under the lock below.
		if err := f.loadUidlist(t); err != nil {
			return err
		}
	}
	f.loadKeywords(t)
	c, n, o := f.needs(t)
	if f.ul == nil || f.ul.version != 3 {
		o = true
	}
	if !force && !c && !n && !o {
		return nil
	}
	l, err := takeLock(f.root, uidlistFile)
	if err != nil {
		return err
	}
	defer l.release()
	return f.syncLocked(force)
}

// syncLocked scans and writes; the caller holds f.mu and the uidlist lock.
func (f *folder) syncLocked(force bool) error {
	f.readIndex()
	t, err := f.statDirs()
	if err != nil {
		return err
	}
	if err := f.loadUidlist(t); err != nil {
		return err
	}
	scanCur, scanNew, _ := f.needs(t)
	if force {
		scanCur, scanNew = true, true
	}
	f.loadKeywords(t)
	if f.uidValidity != f.ul.uidValidity {
		// A new UIDVALIDITY (or a first look): nothing known applies.
		f.resetState(f.ul.uidValidity)
		scanCur, scanNew = true, true
	}
	w := f.newWrite()
	f.initRecent(w)
	if scanCur || scanNew {
		if err := f.scan(w, scanCur, scanNew); err != nil {
			return err
		}
	}
	return f.commit(w)
}

// resetState forgets everything for a (new) UIDVALIDITY. The modseq keeps
// growing: it is derived from the clock, so values stay above anything
// handed out before.
func (f *folder) resetState(uv uint32) {
	f.uidValidity = uv
	f.msgs = map[uint32]*msgRec{}
	f.recs = nil
	f.byKey = nil
	f.expunges = nil
	// Expunges before this point are unknown: QRESYNC answers for older
	// modseqs are inexact.
	f.vanishFloor = max(f.highest, uint64(time.Now().UnixMicro()))
	f.haveStamp = false
	f.firstRecent, f.haveRecent = 0, false
	f.idxCorrupt = true // rewrite the index from scratch
	f.gen++
	f.cache.reset(f, uv)
}

// loadUidlist (re)reads dovecot-uidlist when it changed. A missing or
// broken file is rebuilt: from posthorn.index when that knows the mailbox
// (keeping UIDVALIDITY and UIDs), else with a new UIDVALIDITY.
func (f *folder) loadUidlist(t dirTimes) error {
	if f.ul != nil && t.ulExists && t.ul == f.ulStat {
		return nil
	}
	var ul *uidlist
	if t.ulExists {
		if t.ul.ino == f.ulStat.ino && f.ul != nil && t.ul.size > f.ulStat.size {
			// Appended: read only the new records.
			if b, err := readFrom(f.root, uidlistFile, f.ul.parsed, maxUidlistSize); err == nil {
				if err := f.ul.parseRecords(b); err == nil {
					f.ulStat = t.ul
					return nil
				}
			}
		}
		data, err := readAll(f.root, uidlistFile, maxUidlistSize)
		if err == nil {
			ul, err = parseUidlist(data)
		}
		if err != nil {
			f.s.logf("mailbox %s: %v; rebuilding it", f.name, err)
			ul = nil
		}
	}
	if ul == nil {
		ul = &uidlist{version: 3, nextUID: 1, guid: newGUID()}
		if f.uidValidity != 0 && len(f.msgs) > 0 {
			ul.uidValidity = f.uidValidity
			for _, m := range f.recs {
				key, _, _, _, _ := parseFileName(m.name)
				ul.recs = append(ul.recs, uidRec{uid: m.uid, key: key})
				ul.nextUID = m.uid + 1
			}
		} else {
			ul.uidValidity = nextUIDValidity(f.s.root)
		}
		ul.version = 0 // forces a rewrite
	}
	f.ul = ul
	f.ulStat = t.ul
	return nil
}

func (f *folder) loadKeywords(t dirTimes) {
	if t.kw == f.kwTime && f.kwTime != 0 {
		return
	}
	b, err := readAll(f.root, keywordsFile, 64<<10)
	if err != nil {
		f.kw = keywordTable{}
	} else {
		f.kw = parseKeywords(b)
	}
	f.kwTime = t.kw
}

// initRecent sets the first-recent UID when the index does not know it
// (no index yet, an index from before it was kept, a new UIDVALIDITY, an
// index rebuilt from the Maildir): it becomes the uidlist's next UID as it
// is before this operation assigns any. Messages that already had a UID
// are then not \Recent — whether a session took them is not known, and
// reporting a whole mailbox as recent again is the worse mistake — while
// files getting their first UID in this sync are. The caller holds the
// uidlist lock, has read the index, and loaded the uidlist.
func (f *folder) initRecent(w *write) {
	if f.haveRecent {
		return
	}
	f.firstRecent = max(f.firstRecent, f.ul.nextUID)
	f.haveRecent = true
	w.recent = true
}

// recentFloor is the first-recent UID as far as this process knows,
// without writing anything. The caller holds f.mu.
func (f *folder) recentFloor() uint32 {
	switch {
	case f.haveRecent:
		return f.firstRecent
	case f.ul != nil:
		return max(f.firstRecent, f.ul.nextUID)
	}
	return f.firstRecent
}

// takeRecent takes for a read-write session the UIDs of newUIDs (new in
// its view snap, ascending) that no session has taken, and advances the
// first-recent UID past snap, all under the uidlist lock so that no two
// sessions in any process take the same message. The caller holds f.mu.
func (f *folder) takeRecent(newUIDs []uint32, snap []*msgRec) ([]uint32, error) {
	if len(newUIDs) == 0 || newUIDs[len(newUIDs)-1] < f.recentFloor() {
		return nil, nil // the floor only grows: nothing to take
	}
	l, err := takeLock(f.root, uidlistFile)
	if err != nil {
		return nil, err
	}
	defer l.release()
	f.readIndex()
	w := f.newWrite()
	f.initRecent(w)
	var took []uint32
	for _, uid := range newUIDs {
		if uid >= f.firstRecent {
			took = append(took, uid)
		}
	}
	if next := snap[len(snap)-1].uid + 1; next > f.firstRecent {
		f.firstRecent = next
		w.recent = true
	}
	if w.recent {
		if err := f.writeIndex(w); err != nil {
			// This process still will not give them out again; another
			// one may, which is better than failing the SELECT.
			f.s.logf("mailbox %s: recording recent messages: %v", f.name, err)
		}
	}
	return took, nil
}

// write collects the changes of one locked operation.
type write struct {
	recent    bool   // the first-recent UID changed
	modseq    uint64 // assigned lazily, one per operation
	changed   []*msgRec
	expunged  []expunged
	ulAdded   int  // records added to the uidlist
	ulRewrite bool // the uidlist must be rewritten rather than appended to
	kwChanged bool
	quotaB    int64
	quotaC    int64
}

func (f *folder) newWrite() *write { return &write{} }

// nextModSeq returns the operation's modseq: above every earlier one, and
// at least the current time in microseconds, so that an index rebuilt from
// scratch still continues above what clients were told (RFC 7162 §3.1.1:
// mod-sequences only grow for a given UIDVALIDITY).
func (f *folder) nextModSeq(w *write) uint64 {
	if w.modseq == 0 {
		w.modseq = max(f.highest+1, uint64(time.Now().UnixMicro()))
		f.highest = w.modseq
	}
	return w.modseq
}

// reserve sizes the empty maps that n new records are about to fill, so a
// first look at a large folder does not grow them step by step.
func (f *folder) reserve(n int) {
	if n < 1024 {
		return
	}
	if len(f.msgs) == 0 {
		f.msgs = make(map[uint32]*msgRec, n)
		f.byKey = nil // built from msgs if ever needed (keyMap)
	}
	f.ul.reserve(n)
}

func (f *folder) keyMap() map[string]*msgRec {
	if f.byKey == nil {
		f.byKey = make(map[string]*msgRec, len(f.msgs))
		for _, m := range f.msgs {
			k, _, _, _, _ := parseFileName(m.name)
			f.byKey[k] = m
		}
	}
	return f.byKey
}

// put publishes a new or changed record.
func (f *folder) put(w *write, m *msgRec) {
	k, _, _, _, _ := parseFileName(m.name)
	f.putKey(w, m, k)
}

// putKey is put for a record whose name's key the caller has parsed.
func (f *folder) putKey(w *write, m *msgRec, k string) {
	old := f.msgs[m.uid]
	f.msgs[m.uid] = m
	if old != nil {
		ok, _, _, _, _ := parseFileName(old.name)
		if ok != k && f.byKey != nil {
			delete(f.byKey, ok)
		}
		i, found := slices.BinarySearchFunc(f.recs, m.uid, recCmp)
		if found {
			f.recs[i] = m
		}
	} else {
		i, _ := slices.BinarySearchFunc(f.recs, m.uid, recCmp)
		f.recs = slices.Insert(f.recs, i, m)
	}
	// A nil byKey is built from msgs when first needed: a folder's first
	// scan does not keep a map it may never use.
	if f.byKey != nil {
		f.byKey[k] = m
	}
	w.changed = append(w.changed, m)
}

func recCmp(m *msgRec, uid uint32) int { return cmp.Compare(m.uid, uid) }

func (f *folder) remove(w *write, m *msgRec) {
	delete(f.msgs, m.uid)
	k, _, _, _, _ := parseFileName(m.name)
	if f.byKey != nil && f.byKey[k] == m {
		delete(f.byKey, k)
	}
	if i, found := slices.BinarySearchFunc(f.recs, m.uid, recCmp); found {
		f.recs = slices.Delete(f.recs, i, i+1)
	}
	e := expunged{uid: m.uid, modseq: f.nextModSeq(w)}
	f.addExpunge(e)
	w.expunged = append(w.expunged, e)
	w.quotaB -= m.size
	w.quotaC--
	f.cache.drop(m.uid)
}

func (f *folder) addExpunge(e expunged) {
	f.expunges = append(f.expunges, e)
	if over := len(f.expunges) - maxVanished; over > 0 {
		f.vanishFloor = max(f.vanishFloor, f.expunges[over-1].modseq)
		f.expunges = slices.Delete(f.expunges, 0, over)
	}
}

// openMessage opens r's file with one openat in its cur/ or new/, kept
// open for the next message (f.mu is held): FETCH and SEARCH over a large
// mailbox open every file, and a walk from the folder root per file
// costs several system calls. A missing file closes the kept directories,
// in case they were replaced.
func (f *folder) openMessage(r *msgRec) (*os.File, error) {
	d, err := f.subdir(r.inNew)
	if err != nil {
		return nil, err
	}
	// The name came from readdir and passed parseFileName: no "/" in it;
	// O_NOFOLLOW refuses a symlink put in its place.
	flags := unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	unchecked := f.mtimeOfKnown(r) == mtimeUnknown
	if unchecked {
		// Never looked at since the scan: it may be a FIFO, which must
		// not block the open, or a directory, which must not be read.
		flags |= unix.O_NONBLOCK
	}
	fd, err := unix.Openat(d, r.name, flags, 0)
	if err != nil {
		if err == unix.ENOENT {
			f.closeSubdirs()
		}
		return nil, &fs.PathError{Op: "open", Path: r.path(), Err: err}
	}
	if unchecked {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
			unix.Close(fd)
			if err == nil {
				err = errNotMessage
			}
			return nil, &fs.PathError{Op: "open", Path: r.path(), Err: err}
		}
		f.setMtime(r, st.Mtim.Nano())
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFL, 0); err != nil {
			unix.Close(fd)
			return nil, &fs.PathError{Op: "open", Path: r.path(), Err: err}
		}
	}
	return os.NewFile(uintptr(fd), r.path()), nil
}

// subdir returns the kept descriptor of cur/ or new/ (f.mu is held).
func (f *folder) subdir(inNew bool) (int, error) {
	i, sub := 0, "cur"
	if inNew {
		i, sub = 1, "new"
	}
	if f.subdirs[i] == nil {
		d, err := f.root.Open(sub)
		if err != nil {
			return -1, err
		}
		f.subdirs[i] = d
	}
	return int(f.subdirs[i].Fd()), nil
}

// mtimeOfKnown is r's mtime as far as it has been read: the folder's
// current record may know it when r, an older copy, does not (f.mu held).
func (f *folder) mtimeOfKnown(r *msgRec) int64 {
	if r.mtime == mtimeUnknown {
		if cur := f.current(r); cur != nil {
			r.mtime = cur.mtime
		}
	}
	return r.mtime
}

// current is the folder's record of the file r is a record of, nil when
// the folder has none; the flags in their names may differ (f.mu held).
func (f *folder) current(r *msgRec) *msgRec {
	cur := f.msgs[r.uid]
	if cur == nil || cur == r {
		return cur
	}
	ck, _, _ := strings.Cut(cur.name, ":")
	rk, _, _ := strings.Cut(r.name, ":")
	if ck != rk {
		return nil
	}
	return cur
}

// setMtime records the mtime read from r's file in r and in the folder's
// current record of the same file (f.mu held).
func (f *folder) setMtime(r *msgRec, mtime int64) {
	r.mtime = mtime
	if cur := f.current(r); cur != nil {
		cur.mtime = mtime
	}
}

// mtimeOf returns r's INTERNALDATE, reading its file's mtime when the scan
// did not (f.mu is held). The answer is kept in r and in the folder's
// current record of the same file. When the file cannot be found (renamed
// by another process since the last scan) the delivery time in its name
// stands in, without being kept; so does the mtime of something that is
// not a regular file, which openMessage will refuse.
func (f *folder) mtimeOf(r *msgRec) int64 {
	if t := f.mtimeOfKnown(r); t != mtimeUnknown {
		return t
	}
	// The current record's name: r may be a copy from before a flag change.
	file := r
	if cur := f.current(r); cur != nil {
		file = cur
	}
	var st unix.Stat_t
	var err error = unix.ENOENT
	if d, derr := f.subdir(file.inNew); derr == nil {
		err = unix.Fstatat(d, file.name, &st, unix.AT_SYMLINK_NOFOLLOW)
	}
	if err == nil && st.Mode&unix.S_IFMT == unix.S_IFREG {
		f.setMtime(r, st.Mtim.Nano())
		return r.mtime
	}
	if err == unix.ENOENT {
		f.closeSubdirs() // in case a folder was replaced
	}
	if err == nil {
		return st.Mtim.Nano()
	}
	secs, _ := nameTime(r.name)
	return max(secs, 0) * 1e9
}

// closeSubdirs releases openMessage's directories (f.mu is held).
func (f *folder) closeSubdirs() {
	for i, d := range f.subdirs {
		if d != nil {
			d.Close()
			f.subdirs[i] = nil
		}
	}
}

// errNotMessage: a name in cur/ or new/ that is not a regular file.
var errNotMessage = errors.New("mailbox: not a regular file")

// found is a message file listed in new/ or cur/.
type found struct {
	key, name   string
	inNew       bool
	size, vsize int64 // from the name; -1 when it has none
	secs, us    int64 // delivery time from the name (nameTime)
	known       bool  // an existing record matched it
}

// scan lists the scanned directories and reconciles them with the records:
// files gone are expunged, renamed files (flag changes) updated, new files
// given UIDs. The caller holds the uidlist lock.
//
// The first look at a large Maildir costs a record per file, so the path
// for new files keeps per-file work low: each name is parsed once, no map
// is built over the listing unless there are records to match, and the
// maps that grow are sized once.
func (f *folder) scan(w *write, scanCur, scanNew bool) error {
	var ents []found
	list := func(dir string, inNew bool) error {
		d, err := f.root.Open(dir)
		if err != nil {
			return fmt.Errorf("mailbox %s: %w", f.name, err)
		}
		defer d.Close()
		// A large folder's listing is sized from its directory's size
		// (ext4 uses some 60 octets per entry of a Dovecot name) rather
		// than grown by copying.
		if fi, err := d.Stat(); err == nil {
			ents = slices.Grow(ents, int(min(fi.Size()/48, 1<<22)))
		}
		// Names only. A name that gives both sizes needs no stat: the
		// file's mtime (INTERNALDATE) and type are read when first needed
		// (mtimeOf, openMessage), as Dovecot trusts S= and W=. The kernel
		// reads the next batch of names while this goroutine parses the
		// last one.
		type batch struct {
			names []string
			err   error
		}
		batches := make(chan batch, 2)
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			defer close(batches)
			for {
				names, err := d.Readdirnames(4096)
				select {
				case batches <- batch{names, err}:
				case <-stop:
					return
				}
				if err != nil || len(names) == 0 {
					return
				}
			}
		}()
		for b := range batches {
			for _, name := range b.names {
				key, size, vsize, _, ok := parseFileName(name)
				if !ok {
					continue // HOSTILE 54
				}
				ents = append(ents, found{key: key, name: name, inNew: inNew, size: size, vsize: vsize})
			}
			if b.err == io.EOF || len(b.names) == 0 {
				return nil
			}
			if b.err != nil {
				return fmt.Errorf("mailbox %s: read %s/: %w", f.name, dir, b.err)
			}
		}
		return nil
	}
	if scanNew {
		if err := list("new", true); err != nil {
			return err
		}
	}
	if scanCur {
		if err := list("cur", false); err != nil {
			return err
		}
	}
	// Existing records.
	if len(f.recs) > 0 {
		files := make(map[string]int, len(ents))
		for i := range ents {
			if _, dup := files[ents[i].key]; dup {
				ents[i].known = true // seen in new/ and cur/ while being moved
				continue
			}
			files[ents[i].key] = i
		}
		for _, m := range slices.Clone(f.recs) {
			key, _, _, _, _ := parseFileName(m.name)
			i, ok := files[key]
			if !ok || ents[i].known {
				if (m.inNew && scanNew) || (!m.inNew && scanCur) {
					f.remove(w, m)
				}
				continue
			}
			fd := &ents[i]
			fd.known = true
			if j, ok := f.ul.keys()[key]; !ok {
				// Known to the index but not to the uidlist (rebuilt or
				// compacted by someone else): put it back with its UID.
				f.ul.restore(m.uid, key)
				w.ulRewrite = true
			} else if f.ul.recs[j].uid != m.uid {
				// The uidlist gave this file another UID: it is another
				// message as far as clients can tell.
				f.remove(w, m)
				fd.known = false
				continue
			}
			if fd.name != m.name || fd.inNew != m.inNew {
				n := *m
				n.name, n.inNew = fd.name, fd.inNew
				if flagsOf(&n) != flagsOf(m) {
					n.modseq = f.nextModSeq(w)
				}
				f.putKey(w, &n, key)
			}
		}
	}
	// New files in delivery order, as Dovecot assigns their UIDs; each
	// name's time is parsed once, not at every comparison. A file listed
	// twice (moved from new/ to cur/ between the listings) sorts next to
	// itself, new/ first, and counts once.
	fresh := ents[:0] // filtered in place: ents is not needed after this
	for _, e := range ents {
		if !e.known {
			e.secs, e.us = nameTime(e.key)
			fresh = append(fresh, e)
		}
	}
	// Sorted through small keys, not the records themselves.
	type sortKey struct {
		secs, us int64
		i        int
	}
	byTime := make([]sortKey, len(fresh))
	for i := range fresh {
		byTime[i] = sortKey{fresh[i].secs, fresh[i].us, i}
	}
	byTimeCmp := func(a, b sortKey) int {
		if a.secs != b.secs {
			return cmp.Compare(a.secs, b.secs)
		}
		if a.us != b.us {
			return cmp.Compare(a.us, b.us)
		}
		fa, fb := &fresh[a.i], &fresh[b.i]
		if c := strings.Compare(fa.key, fb.key); c != 0 {
			return c
		}
		if fa.inNew != fb.inNew {
			if fa.inNew {
				return -1
			}
			return 1
		}
		return 0
	}
	if len(byTime) >= 16384 {
		// Two halves sorted on two CPUs, then merged.
		h := len(byTime) / 2
		done := make(chan struct{})
		go func() {
			slices.SortFunc(byTime[:h], byTimeCmp)
			close(done)
		}()
		slices.SortFunc(byTime[h:], byTimeCmp)
		<-done
		merged := make([]sortKey, 0, len(byTime))
		l, r := byTime[:h], byTime[h:]
		for len(l) > 0 && len(r) > 0 {
			if byTimeCmp(r[0], l[0]) < 0 {
				merged, r = append(merged, r[0]), r[1:]
			} else {
				merged, l = append(merged, l[0]), l[1:]
			}
		}
		byTime = append(append(merged, l...), r...)
	} else {
		slices.SortFunc(byTime, byTimeCmp)
	}
	order := make([]found, 0, len(fresh))
	for _, k := range byTime {
		e := &fresh[k.i]
		if len(order) > 0 && e.key == order[len(order)-1].key {
			continue
		}
		order = append(order, *e)
	}
	// new/ and cur/ opened once: each new file is then one fstatat, not a
	// walk from the folder root.
	var dirs [2]*os.File
	defer func() {
		for _, d := range dirs {
			if d != nil {
				d.Close()
			}
		}
	}()
	for i, sub := range [2]string{"cur", "new"} {
		if (i == 0 && scanCur) || (i == 1 && scanNew) {
			d, err := f.root.Open(sub)
			if err != nil {
				return fmt.Errorf("mailbox %s: %w", f.name, err)
			}
			dirs[i] = d
		}
	}
	// The records of many new files (a first look at a large Maildir) are
	// read in parallel: each is a stat, and the CPUs share the work.
	recs := make([]*msgRec, len(order))
	errs := make([]error, len(order))
	one := func(k int) {
		fd := &order[k]
		d := dirs[0]
		if fd.inNew {
			d = dirs[1]
		}
		if d == nil {
			errs[k] = fs.ErrNotExist // listed in a directory not scanned: cannot happen
			return
		}
		recs[k], errs[k] = f.newRec(d, fd)
	}
	slow := 0
	for k := range order {
		if order[k].size < 0 || order[k].vsize < 0 {
			slow++
		}
	}
	if workers := min(runtime.GOMAXPROCS(0), slow/256); workers > 1 {
		var wg sync.WaitGroup
		var next atomic.Int64
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := int(next.Add(1) - 1); k < len(order); k = int(next.Add(1) - 1) {
					one(k)
				}
			}()
		}
		wg.Wait()
	} else {
		for k := range order {
			one(k)
		}
	}
	f.reserve(len(order))
	// With no uidlist records there is nothing to look up: the uidlist's
	// key map is then built only if something needs it later.
	var keys map[string]int
	if len(f.ul.recs) > 0 {
		keys = f.ul.keys()
	}
	for k := range order {
		m, err := recs[k], errs[k]
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, errNotMessage) {
				continue // gone already (the next scan sorts it out), or not a file
			}
			return err
		}
		key := order[k].key
		if i, ok := keys[key]; ok {
			m.uid = f.ul.recs[i].uid
		} else {
			m.uid = f.ul.add(key)
			w.ulAdded++
		}
		m.modseq = f.nextModSeq(w)
		f.putKey(w, m, key)
	}
	// new/ -> cur/.
	for _, m := range slices.Clone(f.recs) {
		if !m.inNew {
			continue
		}
		to := m.name
		if _, _, ok := cutInfo(to); !ok {
			to += ":2,"
		}
		err := f.root.Rename("new/"+m.name, "cur/"+to)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			// Read-only or out of space: leave it in new/ (Dovecot
			// keeps a "probably in new/" mark for the same reason).
			continue
		}
		if err != nil {
			continue
		}
		n := *m
		n.name, n.inNew = to, false
		f.put(w, &n)
	}
	return nil
}

func cutInfo(name string) (string, string, bool) {
	for i := 0; i < len(name); i++ {
		if name[i] == ':' {
			return name[:i], name[i+1:], true
		}
	}
	return name, "", false
}

// flagsOf is a comparable summary of a record's flags.
func flagsOf(m *msgRec) string {
	sys, letters := infoFlags(m.name)
	s := string(rune('0'+sys)) + letters
	for _, k := range m.extraKw {
		s += " " + k
	}
	return s
}

// newRec builds the record of a file seen for the first time. When the name
// gives both sizes nothing is read: its mtime (INTERNALDATE) and type wait
// for first use. Otherwise the file is stat'ed (and read for W=) here. dir
// is the open new/ or cur/ the file was listed in.
func (f *folder) newRec(dir *os.File, fd *found) (*msgRec, error) {
	size, vsize := fd.size, fd.vsize
	m := &msgRec{name: fd.name, inNew: fd.inNew}
	if size >= 0 && vsize >= 0 {
		m.size, m.vsize, m.mtime = size, vsize, mtimeUnknown
		return m, nil
	}
	var st unix.Stat_t
	if err := unix.Fstatat(int(dir.Fd()), fd.name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil, &fs.PathError{Op: "lstat", Path: m.path(), Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, errNotMessage // directories, symlinks, devices
	}
	m.mtime = st.Mtim.Nano()
	if size < 0 {
		size = st.Size
	}
	if vsize < 0 {
		r, err := f.root.Open(m.path())
		if err != nil {
			return nil, err
		}
		_, vsize, err = countSizes(r)
		r.Close()
		if err != nil {
			return nil, err
		}
	}
	m.size, m.vsize = size, vsize
	return m, nil
}

// commit writes what an operation changed: dovecot-keywords, the uidlist,
// posthorn.index, and the quota. The caller holds the uidlist lock.
func (f *folder) commit(w *write) error {
	if w.kwChanged {
		if err := f.writeKeywords(); err != nil {
			return err
		}
	}
	// An index rewritten whole (a folder's first scan) has its records
	// marshalled while the uidlist is written and fsynced.
	var frames chan []byte
	if (f.idxCorrupt || f.idxIno == 0) && len(f.recs) >= 4096 {
		frames = make(chan []byte, 1)
		go func(recs []*msgRec, exp []expunged, uv uint32) {
			frames <- indexBody(recs, exp, uv)
		}(f.recs, f.expunges, f.uidValidity)
	}
	if err := f.writeUidlist(w); err != nil {
		if frames != nil {
			<-frames
		}
		return err
	}
	t, err := f.statDirs()
	if err != nil {
		if frames != nil {
			<-frames
		}
		return err
	}
	now := time.Now().UnixNano()
	f.st = stamp{highestModSeq: f.highest, cur: t.cur, new: t.new,
		uidlistSize: t.ul.size, uidlistMtime: t.ul.mtime, uidlistIno: t.ul.ino,
		keywordsMtime: t.kw,
		clean:         now > max(t.cur, t.new)+syncSecs}
	f.haveStamp = true
	f.ulStat = t.ul
	f.kwTime = t.kw
	var err2 error
	if frames != nil {
		f.st.vanishFloor = f.vanishFloor // as writeIndex does
		err2 = f.rewriteIndex(<-frames)
	} else {
		err2 = f.writeIndex(w)
	}
	if err2 != nil {
		return err2
	}
	if len(w.changed) > 0 || len(w.expunged) > 0 {
		f.gen++
	}
	if w.quotaB != 0 || w.quotaC != 0 {
		f.s.quotaUpdate(w.quotaB, w.quotaC)
	}
	return nil
}

// writeUidlist appends the new records, or rewrites the file when it is not
// the v3 file this process parsed, when records were restored, or when
// more than a quarter of its records are for files gone (Dovecot's
// UIDLIST_COMPRESS_PERCENTAGE).
func (f *folder) writeUidlist(w *write) error {
	ul := f.ul
	rewrite := ul.version != 3 || w.ulRewrite
	live := len(f.msgs)
	if !rewrite && w.ulAdded == 0 {
		return nil
	}
	if len(ul.recs) > 0 && live*100/len(ul.recs) < 75 {
		rewrite = true
	}
	if !rewrite {
		fi, err := f.root.Lstat(uidlistFile)
		if err != nil || statStamp(fi) != f.ulStat || fi.Size() != ul.parsed {
			rewrite = true
		}
	}
	if !rewrite {
		var b []byte
		for i := len(ul.recs) - w.ulAdded; i < len(ul.recs); i++ {
			b = appendRecord(b, &ul.recs[i])
		}
		fl, err := f.root.OpenFile(uidlistFile, os.O_WRONLY|os.O_APPEND, 0)
		if err == nil {
			_, err = fl.Write(b)
			if err == nil && !f.s.noFsync {
				err = fl.Sync()
			}
			if cerr := fl.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			return fmt.Errorf("mailbox %s: append to %s: %w", f.name, uidlistFile, err)
		}
		ul.parsed += int64(len(b))
		return nil
	}
	// Drop records of files that are gone, as Dovecot does on rewrite.
	keep := ul.recs[:0]
	for _, r := range ul.recs {
		if m := f.keyMap()[r.key]; m != nil && m.uid == r.uid {
			keep = append(keep, r)
		}
	}
	ul.recs = keep
	ul.byKey = nil
	ul.version = 3
	if !validGUID(ul.guid) {
		ul.guid = newGUID()
	}
	data := ul.marshal()
	if err := f.replaceFile(uidlistFile, uidlistTmp, data, f.ulStat.mtime, true); err != nil {
		return err
	}
	ul.parsed = int64(len(data))
	return nil
}

// replaceFile writes data to tmp, fsyncs it when durable, makes its mtime
// larger than oldMtime (Dovecot relies on the mtime of dovecot-uidlist and
// dovecot-keywords growing) and renames it to name.
func (f *folder) replaceFile(name, tmp string, data []byte, oldMtime int64, durable bool) error {
	fl, err := f.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0600)
	if err != nil {
		return fmt.Errorf("mailbox %s: create %s: %w", f.name, tmp, err)
	}
	_, err = fl.Write(data)
	if err == nil && durable && !f.s.noFsync {
		err = fl.Sync()
	}
	if cerr := fl.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		var fi fs.FileInfo
		if fi, err = f.root.Lstat(tmp); err == nil && fi.ModTime().UnixNano() <= oldMtime {
			mt := time.Unix(0, oldMtime).Add(time.Microsecond)
			err = f.root.Chtimes(tmp, mt, mt)
		}
	}
	if err == nil {
		err = f.root.Rename(tmp, name)
	}
	if err != nil {
		f.root.Remove(tmp)
		return fmt.Errorf("mailbox %s: write %s: %w", f.name, name, err)
	}
	return nil
}

func (f *folder) writeKeywords() error {
	// Any leftover lock is stale: the uidlist lock is held.
	f.root.Remove(keywordsFile + ".lock")
	return f.replaceFile(keywordsFile, keywordsFile+".lock", f.kw.marshal(), f.kwTime, true)
}

// keywordLetters maps keywords to letters, allocating free letters (the
// caller holds the uidlist lock, as maildir-keywords.c requires). Keywords
// beyond the 26 letters are returned as extra.
func (f *folder) keywordLetters(w *write, kws []string) (letters string, extra []string, err error) {
	var lb []byte
	for _, k := range kws {
		l := f.kw.letter(k)
		if l == 0 {
			if i := f.kw.free(); i >= 0 {
				f.kw[i] = k
				l = byte('a' + i)
				w.kwChanged = true
			}
		}
		if l != 0 {
			lb = append(lb, l)
		} else {
			extra = append(extra, k)
		}
	}
	if len(extra) > 0 {
		known := map[string]bool{}
		for _, m := range f.recs {
			for _, k := range m.extraKw {
				known[k] = true
			}
		}
		for _, k := range extra {
			known[k] = true
		}
		if len(known)+maxLetterKeywords > MaxKeywords {
			return "", nil, fmt.Errorf("mailbox %s: more than %d keywords", f.name, MaxKeywords)
		}
	}
	return string(lb), extra, nil
}

// keywordsOf returns a record's keyword names.
func (f *folder) keywordsOf(m *msgRec) []string {
	_, letters := infoFlags(m.name)
	var out []string
	for i := 0; i < len(letters); i++ {
		out = append(out, f.kw.name(letters[i]))
	}
	return append(out, m.extraKw...)
}
