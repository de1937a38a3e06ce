package recipient

import (
	"errors"
	"io/fs"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/posthorn/posthorn/pkg/maillog"
)

// fileSig identifies one version of a file: a rename over it changes the
// inode, an edit in place the size or mtime, a chown or chmod the ctime
// (the owner of the aliases file decides whose rights run its commands).
type fileSig struct {
	exists   bool
	dev, ino uint64
	size     int64
	mtime    time.Time
	ctime    syscall.Timespec
}

func statSig(path string) (fileSig, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fileSig{}, nil
	}
	if err != nil {
		return fileSig{}, err
	}
	s := fileSig{exists: true, size: fi.Size(), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.dev, s.ino, s.ctime = uint64(st.Dev), st.Ino, st.Ctim
	}
	return s, nil
}

// cached holds the last good version of a table file and reloads it when
// the file changes; a stat per use is cheap next to an SMTP round trip.
type cached[T any] struct {
	path  string
	what  string                       // "aliases file", for log lines
	load  func(path string) (T, error) // a missing file must give an empty table
	empty T                            // used when path is ""

	mu     sync.Mutex
	sig    fileSig // of the version last tried
	tried  bool
	val    T // last good version
	good   bool
	lastEr error // why the last try failed, while there is no good version
}

// get returns the current table. A file that fails to load leaves the last
// good version in use and logs one warning per change of the file; with no
// good version the error is returned, and the caller defers.
func (c *cached[T]) get() (T, error) {
	if c.path == "" {
		return c.empty, nil
	}
	sig, err := statSig(c.path)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		if c.good {
			return c.val, nil
		}
		return c.val, err
	}
	if c.tried && sig == c.sig {
		if c.good {
			return c.val, nil
		}
		return c.val, c.lastEr
	}
	c.tried, c.sig = true, sig
	v, err := c.load(c.path)
	if err != nil {
		c.lastEr = err
		if c.good {
			maillog.Warning("%s: %v; still using the version loaded before", c.what, err)
			return c.val, nil
		}
		maillog.Warning("%s: %v", c.what, err)
		return c.val, err
	}
	c.val, c.good, c.lastEr = v, true, nil
	return v, nil
}
