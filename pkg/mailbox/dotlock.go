package mailbox

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Dovecot's dotlocks (file-dotlock.c) as the maildir code uses them for
// dovecot-uidlist: create "<file>.lock" with O_CREAT|O_EXCL
// (dotlock_use_excl = yes, the default), write "<pid>:<hostname>" into it,
// touch it every 10 s while held; a lock that has not changed for the stale
// timeout (120 s for the uidlist, MAILDIR_UIDLIST_LOCK_STALE_TIMEOUT), or
// whose process on this host is gone, may be overridden. Waiting gives up
// after stale timeout + 2 s, as Dovecot's does.

const (
	lockStale      = 120 * time.Second
	lockTouchEvery = 10 * time.Second
	// lockPidCheckAge: younger locks are not checked for a dead owner, as
	// Dovecot's STALE_PID_CHECK_SECS; its owner is most likely alive.
	lockPidCheckAge = 2 * time.Second
)

// lockTimeout is how long a writer waits for a dotlock. Tests shorten it.
var lockTimeout = lockStale + 2*time.Second

// ErrLockTimeout is returned when another process held a lock for longer
// than the wait allows.
var ErrLockTimeout = errors.New("mailbox: timed out waiting for a lock")

var (
	hostname = func() string {
		h, _ := os.Hostname()
		if h == "" {
			h = "localhost"
		}
		return h
	}()
	lockContent = strconv.Itoa(os.Getpid()) + ":" + hostname + "\n"
)

type dotlock struct {
	root *os.Root
	name string // "<file>.lock"
	st   fs.FileInfo
	stop chan struct{}
	done chan struct{}
}

// takeLock creates name+".lock" under root, waiting up to lockTimeout and
// overriding stale locks.
func takeLock(root *os.Root, name string) (*dotlock, error) {
	lname := name + ".lock"
	deadline := time.Now().Add(lockTimeout)
	wait := 2 * time.Millisecond
	for {
		f, err := root.OpenFile(lname, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0600)
		if err == nil {
			_, werr := f.WriteString(lockContent)
			st, serr := f.Stat()
			cerr := f.Close()
			if err = errors.Join(werr, serr, cerr); err != nil {
				root.Remove(lname)
				return nil, fmt.Errorf("mailbox: create %s: %w", lname, err)
			}
			l := &dotlock{root: root, name: lname, st: st, stop: make(chan struct{}), done: make(chan struct{})}
			go l.toucher()
			return l, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("mailbox: create %s: %w", lname, err)
		}
		if lockIsStale(root, lname) {
			// Another waiter may break it at the same moment; whichever
			// O_EXCL create wins holds the lock.
			root.Remove(lname)
			continue
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%w: %s", ErrLockTimeout, lname)
		}
		time.Sleep(wait + time.Duration(rand.Int64N(int64(wait))))
		if wait < 100*time.Millisecond {
			wait *= 2
		}
	}
}

// lockIsStale reports whether the lock file lname may be overridden: not
// modified for lockStale, or older than lockPidCheckAge and naming a
// process of this host that no longer exists.
func lockIsStale(root *os.Root, lname string) bool {
	st, err := root.Lstat(lname)
	if err != nil {
		return false // gone (retry at once) or unreadable
	}
	age := time.Since(st.ModTime())
	if age > lockStale {
		return true
	}
	if age < lockPidCheckAge {
		return false
	}
	b, err := readSmall(root, lname, 512)
	if err != nil {
		return false
	}
	pidStr, host, ok := strings.Cut(strings.TrimSuffix(string(b), "\n"), ":")
	if !ok || host != hostname {
		return false
	}
	pid, err := strconv.Atoi(pidStr)
	if err != nil || pid <= 0 {
		return false
	}
	return syscall.Kill(pid, 0) == syscall.ESRCH
}

func (l *dotlock) toucher() {
	defer close(l.done)
	t := time.NewTicker(lockTouchEvery)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			now := time.Now()
			l.root.Chtimes(l.name, now, now)
		}
	}
}

// release removes the lock if it is still the one this process created (a
// stale-lock breaker may have replaced it).
func (l *dotlock) release() {
	close(l.stop)
	<-l.done
	if st, err := l.root.Lstat(l.name); err == nil && os.SameFile(st, l.st) {
		l.root.Remove(l.name)
	}
}

// readSmall reads at most max bytes of a file under root.
func readSmall(root *os.Root, name string, max int) ([]byte, error) {
	f, err := root.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, max)
	n, err := f.Read(b)
	if n > 0 {
		err = nil
	}
	return b[:n], err
}
