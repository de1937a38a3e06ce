// Package maildir delivers messages into Maildirs laid out exactly as
// Dovecot lays them out, so a mailbox moves between Dovecot and posthorn
// unchanged (DESIGN §3, COMPAT §2).
//
// Delivery is Dovecot's atomic LDA save: create tmp/<unique> exclusively,
// write, fsync, rename to new/<unique>,S=<size>,W=<vsize>, fsync new/. The
// directory fsync is shared by concurrent deliveries into the same folder
// (DESIGN §2.8), and waits a moment for those already under way
// (syncdir.Syncer.Begin).
package maildir

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/posthorn/posthorn/pkg/syncdir"
	"golang.org/x/sys/unix"
)

// Sub-folders of every Maildir folder.
const (
	Cur = "cur"
	New = "new"
	Tmp = "tmp"
)

// dirMode is what Dovecot creates mail folders with: only the owner.
const dirMode = 0700

// fileMode keeps messages private to the mailbox owner.
const fileMode = 0600

// maxCreateAttempts bounds retries when tmp/<name> already exists (someone
// pre-created a predictable name, HOSTILE 53). Each retry takes a new name.
const maxCreateAttempts = 10

// Writer delivers messages. It is safe for concurrent use; one Writer per
// process is enough, and sharing it is what lets deliveries into the same
// folder share one directory fsync.
type Writer struct {
	// Hostname is the last part of every file name (Postfix's myhostname).
	Hostname string

	syncs syncdir.Set
}

// NewWriter returns a Writer that names files after hostname; an empty
// hostname falls back to the system's name.
func NewWriter(hostname string) *Writer {
	if hostname == "" {
		hostname, _ = os.Hostname()
		if hostname == "" {
			hostname = "localhost"
		}
	}
	return &Writer{Hostname: hostname}
}

// bufSize is large enough that a typical message goes to disk in one write.
const bufSize = 64 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// Deliver stores one message in the Maildir rooted at root (".../Maildir"),
// creating root and root/{cur,new,tmp} (mode 0700) when missing. The file is
// prefix followed by body; body uses LF line endings. It returns the file's
// name in new/.
//
// root, new/ and tmp/ must be real directories: a symlink at any of them is
// refused, and every operation goes through descriptors of those folders
// opened without following a final symlink, so nothing is created outside
// the Maildir. Errors wrap the system error (errors.Is works for ENOSPC,
// EDQUOT, EACCES) and name the failed step; on error no file is left in
// tmp/.
//
// The work is done with plain system calls on descriptors (about a dozen
// per message): this runs once per delivered message and its cost is a
// share of every message's.
func (w *Writer) Deliver(root string, prefix []byte, body io.Reader) (name string, err error) {
	d, err := openMaildir(root)
	if err != nil {
		return "", err
	}
	defer d.close()
	// Counted as under way from here, so that an fsync of new/ about to
	// start for another delivery waits a moment for this one's entry.
	sy := w.syncs.Syncer(root + "/" + New)
	sy.Begin()
	entered := true
	defer func() {
		if entered {
			sy.End()
		}
	}()

	fd := -1
	var base string
	for attempt := 0; ; attempt++ {
		base = uniqueBase(w.Hostname)
		// O_NOFOLLOW|O_EXCL: a name someone pre-created, symlink or not, is
		// never opened (HOSTILE 53).
		fd, err = unix.Openat(d.tmp, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, fileMode)
		if err == nil {
			break
		}
		if err == unix.EINTR {
			continue
		}
		if err != unix.EEXIST || attempt+1 >= maxCreateAttempts {
			return "", fmt.Errorf("maildir %s: create tmp file: %w", root, err)
		}
	}
	tmpName := Tmp + "/" + base
	fail := func(step string, err error) (string, error) {
		if fd >= 0 {
			unix.Close(fd)
		}
		unix.Unlinkat(d.tmp, base, 0)
		return "", fmt.Errorf("maildir %s: %s %s: %w", root, step, tmpName, err)
	}

	size, lines, err := copyCounting(fdWriter(fd), prefix, body)
	if err != nil {
		return fail("write", err)
	}
	if err := fsync(fd); err != nil {
		return fail("fsync", err)
	}
	err = unix.Close(fd)
	fd = -1
	if err != nil {
		return fail("close", err)
	}

	// W= is the size with CRLF line endings, what IMAP reports as
	// RFC822.SIZE (COMPAT §2), so readers need not scan the file.
	name = base + ",S=" + strconv.FormatInt(size, 10) + ",W=" + strconv.FormatInt(size+lines, 10)
	// rename, not link+unlink: Dovecot does the same because names are
	// unique (maildir-save.c).
	if err := unix.Renameat(d.tmp, base, d.new, name); err != nil {
		return fail("rename to new/", err)
	}
	entered = false
	if err := sy.SyncEntry(d.new); err != nil {
		// The entry may not survive a crash, and the caller defers: take it
		// back so the retry does not show the user a duplicate. If a reader
		// already moved it to cur/ the removal fails and the retry
		// duplicates, which DESIGN §2.5 allows.
		unix.Unlinkat(d.new, name, 0)
		return "", fmt.Errorf("maildir %s: fsync new/ after storing %s: %w", root, name, err)
	}
	return name, nil
}

// folder holds a Maildir's root, tmp/ and new/ open for one delivery.
type folder struct{ root, tmp, new int }

func (d folder) close() {
	for _, fd := range [...]int{d.new, d.tmp, d.root} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}

const dirFlags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC

// openMaildir opens root, tmp/ and new/, creating what is missing (and
// cur/, which readers need). None of them may be a symlink or anything but a
// directory; intermediate components of root may be symlinks, as a home
// folder can be.
func openMaildir(root string) (folder, error) {
	d := folder{-1, -1, -1}
	var err error
	for try := 0; ; try++ {
		d.root, err = unix.Open(root, dirFlags, 0)
		if err == unix.ENOENT && try == 0 {
			if err := os.MkdirAll(root, dirMode); err != nil {
				return d, fmt.Errorf("maildir %s: create: %w", root, err)
			}
			continue
		}
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return d, fmt.Errorf("maildir %s: %w", root, describe(unix.AT_FDCWD, root, err))
	}
	if d.tmp, err = openSub(d.root, Tmp); err == nil {
		d.new, err = openSub(d.root, New)
	}
	if err == nil {
		err = ensureSub(d.root, Cur)
	}
	if err != nil {
		d.close()
		return folder{-1, -1, -1}, fmt.Errorf("maildir %s: %w", root, err)
	}
	return d, nil
}

// openSub opens the folder sub of the Maildir at dirfd, creating it when
// missing.
func openSub(dirfd int, sub string) (int, error) {
	for try := 0; ; try++ {
		fd, err := unix.Openat(dirfd, sub, dirFlags, 0)
		if err == unix.ENOENT && try == 0 {
			if err := unix.Mkdirat(dirfd, sub, dirMode); err != nil && err != unix.EEXIST {
				return -1, fmt.Errorf("%s/: %w", sub, err)
			}
			continue
		}
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return -1, fmt.Errorf("%s/: %w", sub, describe(dirfd, sub, err))
		}
		return fd, nil
	}
}

// ensureSub makes sure sub exists in the Maildir at dirfd as a directory.
func ensureSub(dirfd int, sub string) error {
	var st unix.Stat_t
	err := unix.Fstatat(dirfd, sub, &st, unix.AT_SYMLINK_NOFOLLOW)
	if err == unix.ENOENT {
		if err = unix.Mkdirat(dirfd, sub, dirMode); err == unix.EEXIST {
			err = unix.Fstatat(dirfd, sub, &st, unix.AT_SYMLINK_NOFOLLOW)
		} else if err == nil {
			return nil
		}
	}
	if err == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
		err = notDir(st.Mode)
	}
	if err != nil {
		return fmt.Errorf("%s/: %w", sub, err)
	}
	return nil
}

// describe turns the error of opening name as a folder into what it is
// when it is not one (ELOOP for a symlink under O_NOFOLLOW, ENOTDIR).
func describe(dirfd int, name string, err error) error {
	if err != unix.ELOOP && err != unix.ENOTDIR {
		return err
	}
	var st unix.Stat_t
	if unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return notDir(st.Mode)
	}
	return err
}

func notDir(mode uint32) error {
	switch mode & unix.S_IFMT {
	case unix.S_IFLNK:
		return errors.New("not a directory but a symlink, which is not followed")
	case unix.S_IFREG:
		return errors.New("not a directory but a file")
	default:
		return fmt.Errorf("not a directory but a special file (mode %#o)", mode&unix.S_IFMT)
	}
}

func fsync(fd int) error {
	for {
		if err := unix.Fsync(fd); err != unix.EINTR {
			return err
		}
	}
}

// fdWriter writes to a descriptor without the runtime's file machinery.
type fdWriter int

func (fd fdWriter) Write(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := unix.Write(int(fd), p[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return n, err
		}
		n += m
	}
	return n, nil
}

// copyCounting writes prefix and body to f, returning the bytes written and
// the number of LF characters among them. A small message goes out in a
// single write.
func copyCounting(f io.Writer, prefix []byte, body io.Reader) (size, lines int64, err error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	n := 0
	flush := func() error {
		if n == 0 {
			return nil
		}
		lines += int64(bytes.Count(buf[:n], []byte{'\n'}))
		m, err := f.Write(buf[:n])
		size += int64(m)
		n = 0
		return err
	}
	if len(prefix) > len(buf) {
		lines += int64(bytes.Count(prefix, []byte{'\n'}))
		m, err := f.Write(prefix)
		size += int64(m)
		if err != nil {
			return size, lines, err
		}
	} else {
		n = copy(buf, prefix)
	}
	for {
		m, rerr := body.Read(buf[n:])
		n += m
		if n == len(buf) || rerr != nil {
			if err := flush(); err != nil {
				return size, lines, err
			}
		}
		if rerr == io.EOF {
			return size, lines, nil
		}
		if rerr != nil {
			return size, lines, fmt.Errorf("read message: %w", rerr)
		}
	}
}

// The clock that makes names unique is per process, not per Writer: two
// Writers in one process share the P<pid> part of their names.
var clock struct {
	sync.Mutex
	sec, usec int64
	now       func() time.Time // replaced by tests
}

var pid = strconv.Itoa(os.Getpid())

// uniqueBase returns Dovecot's <secs>.M<usecs>P<pid>.<host>. When the clock
// has not advanced since the last name (or went back), the microseconds are
// bumped past the last ones handed out, as Dovecot does (maildir-filename.c),
// so concurrent deliveries in one process never share a name.
func uniqueBase(host string) string {
	clock.Lock()
	now := time.Now
	if clock.now != nil {
		now = clock.now
	}
	t := now()
	sec, usec := t.Unix(), int64(t.Nanosecond()/1000)
	if sec < clock.sec || (sec == clock.sec && usec <= clock.usec) {
		sec, usec = clock.sec, clock.usec+1
		if usec >= 1e6 {
			sec, usec = sec+1, 0
		}
	}
	clock.sec, clock.usec = sec, usec
	clock.Unlock()

	b := make([]byte, 0, 48+len(host))
	b = strconv.AppendInt(b, sec, 10)
	b = append(b, ".M"...)
	b = strconv.AppendInt(b, usec, 10)
	b = append(b, 'P')
	b = append(b, pid...)
	b = append(b, '.')
	b = append(b, escapeHost(host)...)
	return string(b)
}

// escapeHost keeps the host name from changing the file name's structure:
// "/" would be a path separator and ":" starts the flags, so both become
// octal escapes as Dovecot writes them (\057, \072). "," would start a
// fake S=/W= extension, so it is escaped the same way (\054); Dovecot
// accepts any unique base name, so this costs no compatibility.
func escapeHost(h string) string {
	if !strings.ContainsAny(h, "/:,") {
		return h
	}
	return hostEscaper.Replace(h)
}

var hostEscaper = strings.NewReplacer("/", `\057`, ":", `\072`, ",", `\054`)
