package mbox

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"syscall"
	"time"
)

// StaleLockAge is when a dotlock is considered left behind by a crashed
// program and removed: liblockfile's five minutes (Postfix's
// stale_lock_time is 500 s). No program holds a mailbox that long.
const StaleLockAge = 5 * time.Minute

// ErrLockTimeout is returned when the mailbox stays locked by another
// program for longer than the caller would wait.
var ErrLockTimeout = errors.New("mailbox is locked by another program")

// Linux open file description locks (fcntl(2), F_OFD_SETLK). They conflict
// with the classic fcntl locks that mutt, mail(1) and Dovecot take, but
// belong to the open file rather than to the process: two goroutines of one
// process delivering to the same mailbox exclude each other, and closing
// another descriptor of the file does not drop the lock, as it would with
// a classic lock.
const (
	fOFDSetlk = 37
)

// Dotlock says what happens when the dotlock file cannot be created for a
// reason other than another program holding it.
type Dotlock int

const (
	// DotlockRequired fails the lock: the mailbox in the spool folder,
	// where every mail program agrees on the dotlock.
	DotlockRequired Dotlock = iota
	// DotlockMayFail goes on with the fcntl lock alone: a file that
	// aliases(5) or .forward names, in a folder the writer may not be
	// allowed to create files in (Postfix does the same).
	DotlockMayFail
)

// Lock is a held mailbox lock.
type Lock struct {
	f       *os.File
	dotlock string // "" when none was created
}

// lockPoll bounds the wait between attempts; the first waits are short so
// a lock held for one delivery costs little.
const (
	firstPoll = 5 * time.Millisecond
	maxPoll   = 250 * time.Millisecond
)

// LockFile locks f, the open mailbox at path, for writing: the fcntl lock
// first, then the dotlock path+".lock" (Debian Policy §11.6), waiting at
// most timeout for each program holding either. A dotlock older than
// StaleLockAge is removed. Unlock releases both.
func LockFile(f *os.File, path string, timeout time.Duration, dl Dotlock) (*Lock, error) {
	deadline := time.Now().Add(timeout)
	poll := firstPoll
	wait := func() bool {
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		time.Sleep(min(poll, left))
		poll = min(2*poll, maxPoll)
		return true
	}
	for {
		err := fcntlLock(f, syscall.F_WRLCK)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.EACCES) {
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if !wait() {
			return nil, fmt.Errorf("%w: fcntl lock on %s held for more than %v", ErrLockTimeout, path, timeout)
		}
	}
	l := &Lock{f: f}
	lockPath := path + ".lock"
	poll = firstPoll
	for {
		lf, err := os.OpenFile(lockPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0644)
		if err == nil {
			// liblockfile writes the holder's pid; so do we, for the admin.
			io.WriteString(lf, strconv.Itoa(os.Getpid())+"\n")
			lf.Close()
			l.dotlock = lockPath
			return l, nil
		}
		if !errors.Is(err, os.ErrExist) {
			if dl == DotlockMayFail {
				return l, nil
			}
			fcntlLock(f, syscall.F_UNLCK)
			return nil, fmt.Errorf("create dotlock: %w", err)
		}
		if fi, err := os.Lstat(lockPath); err == nil && time.Since(fi.ModTime()) > StaleLockAge {
			// Left behind by a program that died: remove it, as liblockfile
			// and Postfix do, and try again at once.
			if os.Remove(lockPath) == nil {
				continue
			}
		}
		if !wait() {
			fcntlLock(f, syscall.F_UNLCK)
			return nil, fmt.Errorf("%w: dotlock %s held for more than %v", ErrLockTimeout, lockPath, timeout)
		}
	}
}

// Unlock removes the dotlock and releases the fcntl lock, in the reverse
// order of taking them.
func (l *Lock) Unlock() error {
	var err error
	if l.dotlock != "" {
		if e := os.Remove(l.dotlock); e != nil && !errors.Is(e, os.ErrNotExist) {
			err = e
		}
		l.dotlock = ""
	}
	if e := fcntlLock(l.f, syscall.F_UNLCK); e != nil && err == nil {
		err = e
	}
	return err
}

// Dotlocked reports whether the dotlock was taken.
func (l *Lock) Dotlocked() bool { return l.dotlock != "" }

func fcntlLock(f *os.File, typ int16) error {
	lk := syscall.Flock_t{Type: typ, Whence: io.SeekStart}
	for {
		err := syscall.FcntlFlock(f.Fd(), fOFDSetlk, &lk)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}
