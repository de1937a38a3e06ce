package mailbox

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
)

// readAll reads a whole file under root, refusing files larger than max.
func readAll(root *os.Root, name string, max int64) ([]byte, error) {
	return readFrom(root, name, 0, max)
}

// readFrom reads a file under root from offset off to its end.
func readFrom(root *os.Root, name string, off, max int64) ([]byte, error) {
	f, err := root.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() > max {
		return nil, fmt.Errorf("mailbox: %s is larger than %d bytes", name, max)
	}
	if fi.Size() <= off {
		return nil, nil
	}
	b := make([]byte, fi.Size()-off)
	n, err := f.ReadAt(b, off)
	if err == io.EOF {
		err = nil
	}
	return b[:n], err
}

// readIndex applies what posthorn.index says beyond what this process has
// read. A corrupt index leaves the state as far as it was valid and marks
// it for a rebuild by the next writer.
func (f *folder) readIndex() {
	fi, err := f.root.Lstat(indexFile)
	if err != nil {
		if f.idxIno != 0 {
			f.idxCorrupt = true // removed under us: rewrite it
			f.idxIno = 0
		}
		return
	}
	fs := statStamp(fi)
	if fs.ino == f.idxIno && fs.size == f.idxGood {
		return
	}
	if fs.ino == f.idxIno && fs.size > f.idxGood && !f.idxCorrupt {
		data, err := readFrom(f.root, indexFile, f.idxGood, maxIndexSize)
		if err != nil {
			return
		}
		st := &indexState{uidValidity: f.uidValidity, msgs: f.msgs, good: f.idxGood}
		perr := parseIndex(data, f.idxGood, st)
		f.applyIndex(st, false)
		if perr != nil {
			f.idxCorrupt = true
		}
		return
	}
	data, err := readAll(f.root, indexFile, maxIndexSize)
	if err != nil {
		f.idxCorrupt = true
		return
	}
	st := &indexState{msgs: map[uint32]*msgRec{}}
	perr := parseIndex(data, 0, st)
	if st.frames == 0 {
		f.idxCorrupt = true
		return
	}
	f.idxIno = fs.ino
	f.applyIndex(st, true)
	f.idxCorrupt = perr != nil
}

// applyIndex takes over what parseIndex read: everything (full) or the
// frames after what was read before.
func (f *folder) applyIndex(st *indexState, full bool) {
	if full {
		if f.uidValidity != st.uidValidity {
			f.firstRecent, f.haveRecent = 0, false
		}
		f.uidValidity = st.uidValidity
		f.msgs = st.msgs
		f.recs = make([]*msgRec, 0, len(st.msgs))
		for _, m := range st.msgs {
			f.recs = append(f.recs, m)
		}
		slices.SortFunc(f.recs, func(a, b *msgRec) int { return int64Cmp(int64(a.uid), int64(b.uid)) })
		f.byKey = nil
		f.expunges = nil
		f.vanishFloor = 0
		f.idxFrames = 0
		f.cache.reset(f, st.uidValidity)
	} else {
		for _, uid := range st.touched {
			i, found := slices.BinarySearchFunc(f.recs, uid, recCmp)
			m := f.msgs[uid]
			switch {
			case m == nil && found:
				f.recs = slices.Delete(f.recs, i, i+1)
			case m != nil && found:
				f.recs[i] = m
			case m != nil:
				f.recs = slices.Insert(f.recs, i, m)
			}
		}
		f.byKey = nil
	}
	for _, e := range st.expunges {
		f.addExpunge(e)
		f.highest = max(f.highest, e.modseq)
		f.cache.drop(e.uid)
	}
	for _, uid := range st.touched {
		if m := f.msgs[uid]; m != nil {
			f.highest = max(f.highest, m.modseq)
		}
	}
	if full {
		for _, m := range f.recs {
			f.highest = max(f.highest, m.modseq)
		}
	}
	if st.haveRecent {
		f.firstRecent = max(f.firstRecent, st.firstRecent)
		f.haveRecent = true
	}
	if st.haveStamp {
		f.st, f.haveStamp = st.stamp, true
		f.highest = max(f.highest, st.stamp.highestModSeq)
		f.vanishFloor = max(f.vanishFloor, st.stamp.vanishFloor)
	}
	f.idxGood = st.good
	f.idxFrames += st.frames
	if st.frames > 0 {
		f.gen++
	}
}

func int64Cmp(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// compactAt: the index is rewritten once it holds this many frames more
// than the live records need.
const compactSlack = 4096

// writeIndex records an operation's changes (the caller holds the uidlist
// lock): appended and fsynced, or the whole index rewritten when it is
// missing, corrupt, has a torn tail, or has grown with superseded frames.
func (f *folder) writeIndex(w *write) error {
	f.st.vanishFloor = f.vanishFloor
	compact := f.idxCorrupt || f.idxIno == 0 || f.idxFrames > 2*len(f.msgs)+compactSlack
	if !compact {
		fi, err := f.root.Lstat(indexFile)
		if err != nil || statStamp(fi).ino != f.idxIno || fi.Size() < f.idxGood {
			compact = true
		} else if fi.Size() > f.idxGood {
			// A writer died in the middle of a frame.
			if fl, err := f.root.OpenFile(indexFile, os.O_WRONLY, 0); err == nil {
				err = fl.Truncate(f.idxGood)
				fl.Close()
				compact = err != nil
			} else {
				compact = true
			}
		}
	}
	if compact {
		return f.rewriteIndex(nil)
	}
	var b []byte
	seen := map[uint32]bool{}
	for i := len(w.changed) - 1; i >= 0; i-- {
		m := w.changed[i]
		if seen[m.uid] || f.msgs[m.uid] != m {
			continue
		}
		seen[m.uid] = true
		b = msgFrame(b, m)
	}
	for _, e := range w.expunged {
		b = expungeFrame(b, e)
	}
	frames := len(seen) + len(w.expunged) + 1
	if w.recent && f.haveRecent {
		b = recentFrame(b, f.firstRecent)
		frames++
	}
	b = stampFrame(b, &f.st)
	fl, err := f.root.OpenFile(indexFile, os.O_WRONLY|os.O_APPEND, 0)
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
		f.idxCorrupt = true
		return fmt.Errorf("mailbox %s: append to %s: %w", f.name, indexFile, err)
	}
	f.idxGood += int64(len(b))
	f.idxFrames += frames
	return nil
}

// indexBody is a whole index up to its recent and stamp frames.
func indexBody(recs []*msgRec, exp []expunged, uv uint32) []byte {
	b := headerFrame(make([]byte, 0, 64+len(recs)*100), uv)
	for _, m := range recs {
		b = msgFrame(b, m)
	}
	for _, e := range exp {
		b = expungeFrame(b, e)
	}
	return b
}

// rewriteIndex replaces the index with one written whole; body, when not
// nil, is indexBody of the folder as it is, made by the caller.
func (f *folder) rewriteIndex(body []byte) error {
	b := body
	if b == nil {
		b = indexBody(f.recs, f.expunges, f.uidValidity)
	}
	frames := 2 + len(f.recs) + len(f.expunges)
	if f.haveRecent {
		b = recentFrame(b, f.firstRecent)
		frames++
	}
	b = stampFrame(b, &f.st)
	// Not fsynced: the index is rebuilt from the Maildir and the uidlist
	// (which is) when a crash leaves it torn (checksums) or stale (stamp).
	if err := f.replaceFile(indexFile, indexTmp, b, 0, false); err != nil {
		f.idxCorrupt = true
		return err
	}
	fi, err := f.root.Lstat(indexFile)
	if err != nil {
		return errors.Join(errors.New("mailbox: index vanished after rename"), err)
	}
	f.idxIno = statStamp(fi).ino
	f.idxGood = int64(len(b))
	f.idxFrames = frames
	f.idxCorrupt = false
	return nil
}
