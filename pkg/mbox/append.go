package mbox

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
	"time"
)

// Errors about the file itself: a retry cannot help until someone changes
// it. They are wrapped with the path.
var (
	ErrSymlink    = errors.New("is a symbolic link")
	ErrNotRegular = errors.New("is not a regular file")
	ErrHardLinks  = errors.New("has more than one hard link")
	ErrOwner      = errors.New("is not owned by the recipient")
	ErrExecutable = errors.New("has execute permission")
)

// Delivery describes one message appended to an mbox file.
type Delivery struct {
	Path string
	// Sender is the envelope sender for the From_ line ("" for <>).
	Sender string
	// Time is the delivery time in the From_ line; zero means now.
	Time time.Time
	// Prefix holds the header lines the delivery agent adds.
	Prefix []byte

	// Mode is the permission of a file this delivery creates, and Group
	// its group when >= 0 (otherwise the one the folder gives it).
	Mode  fs.FileMode
	Group int
	// Owner, when >= 0, is the uid that must own an existing file, as
	// Postfix's strict_mailbox_ownership: a mailbox of mode 0660 in a
	// group-writable spool could otherwise be another user's file.
	Owner int
	// NoExec refuses a file with any execute bit: aliases(5) and .forward
	// never write into programs (HOSTILE 52).
	NoExec bool

	// LockTimeout bounds the wait for other programs' locks.
	LockTimeout time.Duration
	Dotlock     Dotlock
}

// errReplaced means the path was renamed or replaced between open and
// lock; the delivery opens it again.
var errReplaced = errors.New("mailbox replaced while locking")

// maxReopen bounds how often a mailbox replaced under us is opened again.
const maxReopen = 5

// Append adds one message to the mbox file d.Path, creating it when
// missing. It never follows a symbolic link at the path and refuses a file
// with other hard links, a file that is not regular, and (per d) a file of
// another owner or with execute permission. The message is written under
// the fcntl lock and the dotlock, synced to disk, and on any error the
// file is truncated back to its size before the delivery, so a failed or
// interrupted delivery leaves no partial message behind. It returns the
// bytes appended.
func Append(d Delivery, msg io.Reader) (int64, error) {
	if d.Time.IsZero() {
		d.Time = time.Now()
	}
	if d.NoExec {
		// Refused whether or not the writer could open it (checked again
		// once locked).
		if fi, err := os.Lstat(d.Path); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0111 != 0 {
			return 0, fmt.Errorf("%s %w", d.Path, ErrExecutable)
		}
	}
	for attempt := 0; ; attempt++ {
		f, err := openMbox(d)
		if err != nil {
			return 0, err
		}
		lk, err := LockFile(f, d.Path, d.LockTimeout, d.Dotlock)
		if err != nil {
			f.Close()
			return 0, err
		}
		size, err := checkLocked(f, d)
		if err != nil {
			lk.Unlock()
			f.Close()
			if errors.Is(err, errReplaced) && attempt < maxReopen {
				continue
			}
			return 0, err
		}
		n, err := WriteMessage(f, d.Sender, d.Time, d.Prefix, msg)
		if err == nil {
			err = f.Sync()
		}
		if err != nil {
			// Leave the mailbox as it was (local(8): "an attempt is made to
			// truncate the mailbox to its original length"), still locked.
			if terr := f.Truncate(size); terr != nil {
				err = fmt.Errorf("%w; truncating back to %d bytes: %v", err, size, terr)
			}
			n = 0
		}
		uerr := lk.Unlock()
		cerr := f.Close()
		if err != nil {
			return 0, fmt.Errorf("write %s: %w", d.Path, err)
		}
		if uerr != nil {
			return n, fmt.Errorf("unlock %s: %w", d.Path, uerr)
		}
		if cerr != nil {
			return n, fmt.Errorf("close %s: %w", d.Path, cerr)
		}
		return n, nil
	}
}

// openMbox opens d.Path for appending without following a symbolic link,
// creating it exclusively when missing. O_NONBLOCK keeps a FIFO planted at
// the path from blocking the open.
func openMbox(d Delivery) (*os.File, error) {
	flags := os.O_WRONLY | os.O_APPEND | syscall.O_NOFOLLOW | syscall.O_NONBLOCK | syscall.O_CLOEXEC
	for try := 0; ; try++ {
		f, err := os.OpenFile(d.Path, flags, 0)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, openError(d.Path, err)
		}
		mode := d.Mode.Perm()
		if mode == 0 {
			mode = 0600
		}
		f, err = os.OpenFile(d.Path, flags|os.O_CREATE|os.O_EXCL, mode)
		if errors.Is(err, fs.ErrExist) && try < maxReopen {
			continue // another program created it meanwhile
		}
		if err != nil {
			return nil, openError(d.Path, err)
		}
		// The umask may have removed bits, and the group is the folder's
		// unless told otherwise.
		if d.Group >= 0 {
			if err := f.Chown(-1, d.Group); err != nil {
				f.Close()
				os.Remove(d.Path)
				return nil, fmt.Errorf("set group of %s: %w", d.Path, err)
			}
		}
		if err := f.Chmod(mode); err != nil {
			f.Close()
			os.Remove(d.Path)
			return nil, fmt.Errorf("set mode of %s: %w", d.Path, err)
		}
		return f, nil
	}
}

func openError(path string, err error) error {
	switch {
	case errors.Is(err, syscall.ELOOP):
		return fmt.Errorf("%s %w", path, ErrSymlink)
	case errors.Is(err, syscall.EISDIR), errors.Is(err, syscall.ENXIO):
		return fmt.Errorf("%s %w", path, ErrNotRegular)
	}
	return err // an *fs.PathError that names the path already
}

// checkLocked checks the locked file and returns its size: it must still
// be the file at the path, and acceptable by d's rules.
func checkLocked(f *os.File, d Delivery) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, fmt.Errorf("stat %s: no system information", d.Path)
	}
	switch {
	case !fi.Mode().IsRegular():
		return 0, fmt.Errorf("%s %w", d.Path, ErrNotRegular)
	case st.Nlink > 1:
		return 0, fmt.Errorf("%s %w", d.Path, ErrHardLinks)
	case d.Owner >= 0 && int(st.Uid) != d.Owner:
		return 0, fmt.Errorf("%s %w (owner uid %d, recipient uid %d)", d.Path, ErrOwner, st.Uid, d.Owner)
	case d.NoExec && fi.Mode().Perm()&0111 != 0:
		return 0, fmt.Errorf("%s %w", d.Path, ErrExecutable)
	}
	li, err := os.Lstat(d.Path)
	if err != nil || !os.SameFile(fi, li) {
		return 0, errReplaced
	}
	return fi.Size(), nil
}

// Unacceptable reports whether err says the file itself cannot take mail
// (a symbolic link, a hard link, not a regular file, the wrong owner,
// executable), as opposed to a failure that may pass (locks, disk full,
// permissions).
func Unacceptable(err error) bool {
	for _, e := range []error{ErrSymlink, ErrNotRegular, ErrHardLinks, ErrOwner, ErrExecutable} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
