// Package maildir delivers messages into Maildirs laid out exactly as
// Dovecot lays them out, so a mailbox moves between Dovecot and posthorn
// unchanged (DESIGN §3, COMPAT §2).
//
// Delivery is Dovecot's atomic LDA save: create tmp/<unique> exclusively,
// write, fsync, rename to new/<unique>,S=<size>,W=<vsize>, fsync new/. The
// directory fsync is shared by concurrent deliveries into the same folder
// (DESIGN §2.8).
package maildir

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/posthorn/posthorn/pkg/syncdir"
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
// refused, and every operation goes through an os.Root opened on root, so
// nothing is created outside the Maildir. Errors wrap the system error
// (errors.Is works for ENOSPC, EDQUOT, EACCES) and name the failed step; on
// error no file is left in tmp/.
func (w *Writer) Deliver(root string, prefix []byte, body io.Reader) (name string, err error) {
	r, err := openMaildir(root)
	if err != nil {
		return "", err
	}
	defer r.Close()

	var f *os.File
	var base string
	for attempt := 0; ; attempt++ {
		base = uniqueBase(w.Hostname)
		f, err = r.OpenFile(Tmp+"/"+base, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fileMode)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrExist) || attempt+1 >= maxCreateAttempts {
			return "", fmt.Errorf("maildir %s: create tmp file: %w", root, err)
		}
	}
	tmpName := Tmp + "/" + base
	fail := func(step string, err error) (string, error) {
		if f != nil {
			f.Close()
		}
		r.Remove(tmpName)
		return "", fmt.Errorf("maildir %s: %s %s: %w", root, step, tmpName, err)
	}

	size, lines, err := copyCounting(f, prefix, body)
	if err != nil {
		return fail("write", err)
	}
	if err := f.Sync(); err != nil {
		return fail("fsync", err)
	}
	err = f.Close()
	f = nil
	if err != nil {
		return fail("close", err)
	}

	// W= is the size with CRLF line endings, what IMAP reports as
	// RFC822.SIZE (COMPAT §2), so readers need not scan the file.
	name = base + ",S=" + strconv.FormatInt(size, 10) + ",W=" + strconv.FormatInt(size+lines, 10)
	// rename, not link+unlink: Dovecot does the same because names are
	// unique (maildir-save.c).
	if err := r.Rename(tmpName, New+"/"+name); err != nil {
		return fail("rename to new/", err)
	}
	if err := w.syncs.Sync(filepath.Join(root, New)); err != nil {
		// The entry may not survive a crash, and the caller defers: take it
		// back so the retry does not show the user a duplicate. If a reader
		// already moved it to cur/ the removal fails and the retry
		// duplicates, which DESIGN §2.5 allows.
		r.Remove(New + "/" + name)
		return "", fmt.Errorf("maildir %s: fsync new/ after storing %s: %w", root, name, err)
	}
	return name, nil
}

// openMaildir opens root as an os.Root after checking that root, cur/, new/
// and tmp/ are directories and not symlinks, creating what is missing.
func openMaildir(root string) (*os.Root, error) {
	fi, err := os.Lstat(root)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(root, dirMode); err != nil {
			return nil, fmt.Errorf("maildir %s: create: %w", root, err)
		}
		fi, err = os.Lstat(root)
	}
	if err != nil {
		return nil, fmt.Errorf("maildir %s: %w", root, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("maildir %s: not a directory but %s", root, kind(fi))
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, fmt.Errorf("maildir %s: open: %w", root, err)
	}
	// The name may have been swapped for a symlink between Lstat and open.
	if st, err := r.Stat("."); err != nil || !os.SameFile(fi, st) {
		r.Close()
		return nil, fmt.Errorf("maildir %s: replaced while opening", root)
	}
	for _, sub := range [...]string{Tmp, New, Cur} {
		fi, err := r.Lstat(sub)
		if errors.Is(err, fs.ErrNotExist) {
			if err = r.Mkdir(sub, dirMode); err == nil || errors.Is(err, fs.ErrExist) {
				fi, err = r.Lstat(sub)
			}
		}
		if err == nil && !fi.IsDir() {
			err = fmt.Errorf("not a directory but %s", kind(fi))
		}
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("maildir %s: %s/: %w", root, sub, err)
		}
	}
	return r, nil
}

func kind(fi fs.FileInfo) string {
	switch t := fi.Mode().Type(); {
	case t == fs.ModeSymlink:
		return "a symlink, which is not followed"
	case t == 0:
		return "a file"
	default:
		return "a special file (" + t.String() + ")"
	}
}

// copyCounting writes prefix and body to f, returning the bytes written and
// the number of LF characters among them. A small message goes out in a
// single write.
func copyCounting(f *os.File, prefix []byte, body io.Reader) (size, lines int64, err error) {
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
