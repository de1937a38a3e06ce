package spool

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/posthorn/posthorn/pkg/syncdir"
	"golang.org/x/sys/unix"
)

// Spool is a queue folder tree opened by one process.
type Spool struct {
	Dir     string
	syncers map[string]*syncdir.Syncer

	dirsOnce sync.Once
	dirs     map[string]*os.File // queue folders opened once, for lookups by name
}

// lookupQueues are where a new queue ID must not already be in use.
var lookupQueues = [...]string{Active, Deferred, Hold, Corrupt}

// Open returns the spool at dir. It does not create anything (see Prepare).
func Open(dir string) *Spool {
	s := &Spool{Dir: filepath.Clean(dir), syncers: map[string]*syncdir.Syncer{}}
	for _, q := range []string{Incoming, Active, Deferred, Hold, Corrupt} {
		s.syncers[q] = syncdir.New(filepath.Join(dir, q))
	}
	return s
}

// Path returns the file name of message id in queue. It is built by plain
// concatenation, not filepath.Join, as it runs several times per message;
// callers pass one of the queue names and a checked queue ID.
func (s *Spool) Path(queue, id string) string { return s.Dir + "/" + queue + "/" + id }

// SyncQueue makes every rename into or out of queue durable (group commit).
func (s *Spool) SyncQueue(queue string) error {
	return s.syncQueueMark(queue, s.syncers[queue].Mark())
}

// syncQueueMark makes the entry counted as mark (syncdir.Syncer.Mark)
// durable, with the folder kept open.
func (s *Spool) syncQueueMark(queue string, mark uint64) error {
	s.openDirs()
	if d := s.dirs[queue]; d != nil {
		return s.syncers[queue].SyncMark(int(d.Fd()), mark)
	}
	return s.syncers[queue].SyncMark(-1, mark)
}

// SyncQueueSoon schedules SyncQueue within d without waiting for it
// (syncdir.Syncer.SyncSoon); errf receives a failure.
func (s *Spool) SyncQueueSoon(queue string, d time.Duration, errf func(error)) {
	s.syncers[queue].SyncSoon(d, errf)
}

// Queue IDs are the arrival time as 8 hex digits of seconds and 5 of
// microseconds: fixed length, so sorting the names sorts by arrival, and
// upper-case hex, which log tools expect of Postfix queue IDs (DESIGN §2.2).
var idGen struct {
	sync.Mutex
	last int64 // microseconds of the last ID handed out by this process
}

// NewID returns a queue ID later than every ID this process made before.
func NewID() string {
	now := time.Now().UnixMicro()
	idGen.Lock()
	if now <= idGen.last {
		now = idGen.last + 1
	}
	idGen.last = now
	idGen.Unlock()
	return FormatID(now)
}

// FormatID renders a microsecond timestamp as a queue ID.
func FormatID(usec int64) string {
	const hex = "0123456789ABCDEF"
	var b [13]byte
	sec, us := uint64(usec/1e6), uint64(usec%1e6)
	for i := 7; i >= 0; i-- {
		b[i] = hex[sec&15]
		sec >>= 4
	}
	for i := 12; i >= 8; i-- {
		b[i] = hex[us&15]
		us >>= 4
	}
	return string(b[:])
}

// IDTime returns the arrival time encoded in a queue ID.
func IDTime(id string) (time.Time, bool) {
	if !ValidID(id) {
		return time.Time{}, false
	}
	sec, _ := strconv.ParseInt(id[:8], 16, 64)
	usec, _ := strconv.ParseInt(id[8:], 16, 64)
	return time.Unix(sec, usec*1000), true
}

// ValidID reports whether id has the shape of a queue ID, so a name from a
// command line or a folder never becomes a path without this check.
func ValidID(id string) bool {
	if len(id) != 13 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('0' <= c && c <= '9' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// Writer writes a new message into incoming/.
type Writer struct {
	s      *Spool
	id     string
	mark   uint64 // the file's entry in incoming/, for the folder's group commit
	f      *os.File
	bw     *bufio.Writer
	lenOff int64
	hdrLen int64
	n      int64
	err    error
	done   bool
}

// Create starts a new message. The envelope's ID and arrival time are set
// here; the header is written at once and the content follows through Write.
func (s *Spool) Create(env *Envelope) (*Writer, error) {
	if len(env.Rcpts) == 0 {
		return nil, errors.New("spool: message without recipients")
	}
	for try := 0; ; try++ {
		id := NewID()
		// A clock stepped back could repeat an ID of a message still queued.
		if s.exists(id) {
			if try > 1000 {
				return nil, errors.New("spool: cannot find a free queue ID")
			}
			continue
		}
		f, err := openFile(s.Path(Incoming, id), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0600)
		if errors.Is(err, os.ErrExist) {
			continue // another process took the same microsecond
		}
		if err != nil {
			return nil, fmt.Errorf("spool: create queue file: %w", err)
		}
		// The writer holds a lock until it commits or dies, so a scan can
		// tell a file being written from one whose writer crashed.
		if err := flock(f, true); err != nil {
			f.Close()
			os.Remove(s.Path(Incoming, id))
			return nil, fmt.Errorf("spool: lock queue file: %w", err)
		}
		env.ID = id
		if t, ok := IDTime(id); ok {
			env.Arrival = t
		}
		hdr, off := encodeHeader(env)
		bw := bufPool.Get().(*bufio.Writer)
		bw.Reset(f)
		// Counted now, so that a folder fsync starting while the message
		// is received already covers the file's name (Commit).
		w := &Writer{s: s, id: id, f: f, bw: bw, mark: s.syncers[Incoming].Mark(),
			lenOff: int64(off), hdrLen: int64(len(hdr))}
		if _, err := w.bw.Write(hdr); err != nil {
			w.Abort()
			return nil, fmt.Errorf("spool: write queue file %s: %w", id, err)
		}
		return w, nil
	}
}

// openDirs opens the queue folders once, for lookups by name and for the
// folder fsyncs of group commit, which then need no open of their own.
func (s *Spool) openDirs() {
	s.dirsOnce.Do(func() {
		s.dirs = map[string]*os.File{}
		for _, q := range append([]string{Incoming}, lookupQueues[:]...) {
			if d, err := os.Open(filepath.Join(s.Dir, q)); err == nil {
				s.dirs[q] = d
			}
		}
	})
}

func (s *Spool) exists(id string) bool {
	s.openDirs()
	var st unix.Stat_t
	for _, q := range lookupQueues {
		// One name looked up in a folder kept open, not a path walked from
		// the root: this runs for every message received.
		if d := s.dirs[q]; d != nil {
			if unix.Fstatat(int(d.Fd()), id, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
				return true
			}
		} else if _, err := os.Lstat(s.Path(q, id)); err == nil {
			return true
		}
	}
	return false
}

// bufPool keeps the writers' 64 KB buffers between messages: a fresh one
// per message would be most of what a received message allocates.
var bufPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 64*1024) }}

// release returns the buffer; the Writer is finished.
func (w *Writer) release() {
	if w.bw != nil {
		w.bw.Reset(nil)
		bufPool.Put(w.bw)
		w.bw = nil
	}
}

// ID returns the queue ID of the message being written.
func (w *Writer) ID() string { return w.id }

// Write appends content.
func (w *Writer) Write(p []byte) (int, error) {
	if w.done {
		return 0, errors.New("spool: write to a finished message")
	}
	if w.err != nil {
		return 0, w.err
	}
	n, err := w.bw.Write(p)
	w.n += int64(n)
	if err != nil {
		w.err = fmt.Errorf("spool: write queue file %s: %w", w.id, err)
	}
	return n, w.err
}

// Commit makes the message durable: content length, the complete mark, an
// fsync of the file and a (shared) fsync of incoming/. Only after Commit
// returns nil may the sender be told the message was accepted.
func (w *Writer) Commit() error {
	if w.done {
		return errors.New("spool: commit of a finished message")
	}
	if w.err == nil && w.n == 0 {
		w.err = errors.New("spool: empty message")
	}
	if w.err == nil {
		w.err = w.bw.Flush()
	}
	w.release()
	if w.err == nil {
		var n [20]byte
		v := w.n
		for i := len(n) - 1; i >= 0; i-- {
			n[i] = byte('0' + v%10)
			v /= 10
		}
		_, w.err = w.f.WriteAt(n[:], w.lenOff)
	}
	if w.err == nil {
		w.err = w.f.Chmod(0700)
	}
	if w.err == nil {
		w.err = w.f.Sync()
	}
	if cerr := w.f.Close(); w.err == nil {
		w.err = cerr
	}
	w.done = true
	if w.err == nil {
		w.err = w.s.syncQueueMark(Incoming, w.mark)
	}
	if w.err != nil {
		os.Remove(w.s.Path(Incoming, w.id))
		return fmt.Errorf("spool: commit %s: %w", w.id, w.err)
	}
	return nil
}

// Abort discards the message.
func (w *Writer) Abort() {
	if w.done {
		return
	}
	w.done = true
	w.release()
	w.f.Close()
	os.Remove(w.s.Path(Incoming, w.id))
}

// File is a queue file opened by qmgr to deliver it and record results.
type File struct {
	Envelope
	Queue         string
	ContentOffset int64
	ContentSize   int64
	f             *os.File
	end           int64
}

// OpenFile opens and parses message id in queue for update. A torn result
// record left by a crash is cut off so appends stay well-formed.
func (s *Spool) OpenFile(queue, id string) (*File, error) {
	return s.open(queue, id, true)
}

// ReadFile opens message id in queue for reading only (listing, show): it
// changes nothing, not even a torn record.
func (s *Spool) ReadFile(queue, id string) (*File, error) {
	return s.open(queue, id, false)
}

func (s *Spool) open(queue, id string, update bool) (*File, error) {
	if !ValidID(id) {
		return nil, fmt.Errorf("spool: invalid queue ID %q", id)
	}
	mode := os.O_RDONLY
	if update {
		mode = os.O_RDWR
	}
	f, err := openFile(s.Path(queue, id), mode, 0)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if st.Mode().Perm()&0100 == 0 {
		f.Close()
		return nil, fmt.Errorf("spool: %s/%s: %w", queue, id, ErrIncomplete)
	}
	p, err := parse(f, st.Size())
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("spool: %s/%s: %w", queue, id, err)
	}
	if update && p.validEnd < st.Size() {
		if err := f.Truncate(p.validEnd); err != nil {
			f.Close()
			return nil, fmt.Errorf("spool: %s/%s: cut torn record: %w", queue, id, err)
		}
	}
	p.env.ID = id
	return &File{Envelope: p.env, Queue: queue, ContentOffset: p.contentOffset,
		ContentSize: p.contentSize, f: f, end: p.validEnd}, nil
}

// RemoveAbandoned deletes an incomplete file in incoming/ whose writer is
// gone: no process holds its lock. The sender of such a file never got
// 250. It reports whether the file was removed. Files younger than a few
// seconds are left alone, since a new file exists for an instant before
// its writer locks it.
func (s *Spool) RemoveAbandoned(id string) bool {
	if !ValidID(id) {
		return false
	}
	p := s.Path(Incoming, id)
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Mode().Perm()&0100 != 0 || time.Since(st.ModTime()) < 10*time.Second {
		return false
	}
	if flock(f, false) != nil {
		return false // still being written
	}
	return os.Remove(p) == nil
}

// ErrIncomplete marks a queue file that is still being written.
var ErrIncomplete = errors.New("queue file incomplete")

// Content returns a reader of the message content.
func (qf *File) Content() *io.SectionReader {
	return io.NewSectionReader(qf.f, qf.ContentOffset, qf.ContentSize)
}

// OSFile is the open queue file, to pass to a delivery agent.
func (qf *File) OSFile() *os.File { return qf.f }

// Record durably appends recipients' results (one fdatasync for all) and
// updates the in-memory envelope.
func (qf *File) Record(results ...Result) error {
	var buf []byte
	for _, r := range results {
		if r.Index < 0 || r.Index >= len(qf.Rcpts) {
			return fmt.Errorf("spool: %s: no recipient #%d", qf.ID, r.Index)
		}
		t := r.Time
		if t.IsZero() {
			t = time.Now()
		}
		buf = append(buf, doneRecord(r.Index, r.Status, t, r.DSN, r.Reason)...)
	}
	if _, err := qf.f.WriteAt(buf, qf.end); err != nil {
		return fmt.Errorf("spool: %s: record result: %w", qf.ID, err)
	}
	if err := fdatasync(qf.f); err != nil {
		return fmt.Errorf("spool: %s: record result: %w", qf.ID, err)
	}
	qf.end += int64(len(buf))
	for _, r := range results {
		rc := &qf.Rcpts[r.Index]
		rc.Status, rc.DSN, rc.Reason, rc.Time = r.Status, r.DSN, r.Reason, r.Time
	}
	return nil
}

// MarkWarned durably records that a delay warning was sent, so it is sent
// once.
func (qf *File) MarkWarned(t time.Time) error {
	rec := []byte(fmt.Sprintf("warned %d\n", t.UnixNano()))
	if _, err := qf.f.WriteAt(rec, qf.end); err != nil {
		return fmt.Errorf("spool: %s: record warning: %w", qf.ID, err)
	}
	if err := fdatasync(qf.f); err != nil {
		return fmt.Errorf("spool: %s: record warning: %w", qf.ID, err)
	}
	qf.end += int64(len(rec))
	qf.Warned = t
	return nil
}

// Result is one recipient's delivery outcome.
type Result struct {
	Index  int
	Status Status
	DSN    string
	Reason string
	Time   time.Time
}

// Close closes the queue file.
func (qf *File) Close() error { return qf.f.Close() }

// Move renames message id from one queue to another. The rename is atomic:
// after a crash the message is in one of the two, never in neither.
func (s *Spool) Move(id, from, to string) error {
	if !ValidID(id) {
		return fmt.Errorf("spool: invalid queue ID %q", id)
	}
	if err := rename(s.Path(from, id), s.Path(to, id)); err != nil {
		return fmt.Errorf("spool: move %s from %s to %s: %w", id, from, to, err)
	}
	return nil
}

// rename moves a queue file, never over another one: a file already under
// the name (an ID repeated after the clock stepped back) is an error, not
// a message lost. One system call where the file system knows
// RENAME_NOREPLACE; os.Rename, which looks at the target first, otherwise.
func rename(from, to string) error {
	err := unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_NOREPLACE)
	if err == unix.EINVAL || err == unix.ENOSYS {
		if _, err := os.Lstat(to); err == nil {
			return &os.LinkError{Op: "rename", Old: from, New: to, Err: unix.EEXIST}
		}
		return os.Rename(from, to)
	}
	if err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	return nil
}

// openFile is os.OpenFile for queue files, which are regular files: opened
// with one system call, not the several os.OpenFile spends finding out
// that a regular file cannot be polled.
func openFile(path string, flag int, perm uint32) (*os.File, error) {
	for {
		fd, err := unix.Open(path, flag|unix.O_CLOEXEC, perm)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "open", Path: path, Err: err}
		}
		return os.NewFile(uintptr(fd), path), nil
	}
}

// Remove deletes message id from queue.
func (s *Spool) Remove(queue, id string) error {
	if !ValidID(id) {
		return fmt.Errorf("spool: invalid queue ID %q", id)
	}
	if err := os.Remove(s.Path(queue, id)); err != nil {
		return fmt.Errorf("spool: remove %s/%s: %w", queue, id, err)
	}
	return nil
}

// Entry is one message found by List.
type Entry struct {
	ID       string
	Complete bool      // the writer finished it (mode 0700)
	ModTime  time.Time // in deferred/: the time of the next attempt
	Size     int64
}

// List returns the messages in queue sorted by queue ID (= arrival order).
// Names that are not queue IDs are skipped.
func (s *Spool) List(queue string) ([]Entry, error) {
	d, err := os.Open(filepath.Join(s.Dir, queue))
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, n := range names {
		if !ValidID(n) {
			continue
		}
		st, err := os.Lstat(filepath.Join(s.Dir, queue, n))
		if err != nil || !st.Mode().IsRegular() {
			continue
		}
		out = append(out, Entry{ID: n, Complete: st.Mode().Perm()&0100 != 0, ModTime: st.ModTime(), Size: st.Size()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// SetNextAttempt records when a deferred message is due, in its mtime as
// Postfix does; losing it in a crash only makes the retry come early.
func (s *Spool) SetNextAttempt(queue, id string, t time.Time) error {
	return os.Chtimes(s.Path(queue, id), t, t)
}
