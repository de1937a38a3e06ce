package pop3

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// DefaultLockFile is the maildrop lock's name in the Maildir root. Its name
// does not start with "." so Maildir++ listing ignores it, as Dovecot and
// package mailbox do.
const DefaultLockFile = "posthorn-pop3.lock"

// ErrInUse: another POP3 session holds the maildrop (RFC 2449 §8.1.2,
// IN-USE).
var ErrInUse = errors.New("pop3: maildrop is locked by another POP3 session")

// lockMaildrop takes the exclusive-access lock on the maildrop that
// RFC 1939 §4 has the server acquire after authentication. It is flock(2) on a file in the Maildir, so it holds across
// processes and Stores (flock belongs to the open file, not the process),
// and the kernel releases it when a crashed session's descriptor closes:
// no stale lock survives. Closing the returned file releases it.
func lockMaildrop(maildir, name string) (*os.File, error) {
	if name == "" {
		name = DefaultLockFile
	}
	if strings.ContainsRune(name, '/') || name == "." || name == ".." {
		return nil, errors.New("pop3: lock file name must be a plain file name")
	}
	f, err := os.OpenFile(filepath.Join(maildir, name), os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0600)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = errors.New("pop3: lock file " + name + " is not a regular file")
	}
	if err == nil {
		err = flock(f)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func flock(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) {
		for {
			ferr = syscall.Flock(int(fd), syscall.LOCK_EX|syscall.LOCK_NB)
			if ferr != syscall.EINTR {
				return
			}
		}
	}); err != nil {
		return err
	}
	if errors.Is(ferr, syscall.EWOULDBLOCK) {
		return ErrInUse
	}
	return ferr
}
