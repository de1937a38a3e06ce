package auth

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"syscall"

	"github.com/posthorn/posthorn/pkg/userdb"
)

// passwdFile is a Dovecot passwd-file, read when first needed and again
// whenever it changes, as every posthorn daemon notices changes to its
// files by itself.
type passwdFile struct {
	path string

	mu    sync.Mutex
	stamp fileStamp
	db    *userdb.DB
	// dummy is a hash from the file to verify against when a user is not
	// in it, so that an unknown user costs what a known one does.
	dummy *userdb.User
	// failed is the stamp of a version that did not parse, so its error
	// is logged once and not on every login.
	failed fileStamp
}

// fileStamp identifies a version of a file.
type fileStamp struct {
	exists          bool
	dev, ino        uint64
	size            int64
	mtimeNs, ctimNs int64
}

func stampOf(fi fs.FileInfo) fileStamp {
	st := fileStamp{exists: true, size: fi.Size(), mtimeNs: fi.ModTime().UnixNano()}
	if s, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.dev, st.ino, st.ctimNs = uint64(s.Dev), s.Ino, s.Ctim.Nano()
	}
	return st
}

// get returns the current version. A version that does not parse leaves
// the one read before in use (newErr reports the parse error once); with
// none before, the error is returned and the lookup fails temporarily.
func (f *passwdFile) get() (db *userdb.DB, dummy *userdb.User, newErr, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var st fileStamp
	fi, serr := os.Stat(f.path)
	switch {
	case serr == nil:
		st = stampOf(fi)
	case errors.Is(serr, fs.ErrNotExist):
		// No file, no users: like userdb.Load.
	default:
		if f.db != nil {
			return f.db, f.dummy, nil, nil
		}
		return nil, nil, nil, serr
	}
	if f.db != nil && st == f.stamp {
		return f.db, f.dummy, nil, nil
	}
	if f.failed == st && st.exists {
		if f.db != nil {
			return f.db, f.dummy, nil, nil
		}
		return nil, nil, nil, fmt.Errorf("%s does not parse", f.path)
	}
	ndb, lerr := userdb.Load(f.path)
	if lerr != nil {
		f.failed = st
		if f.db != nil {
			return f.db, f.dummy, lerr, nil
		}
		return nil, nil, lerr, lerr
	}
	f.db, f.stamp, f.failed = ndb, st, fileStamp{}
	f.dummy = nil
	for _, u := range ndb.List() {
		if userdb.KnownScheme(u.Hash) {
			f.dummy = u
			break
		}
	}
	return f.db, f.dummy, nil, nil
}

// builtinDummy is verified against when no file has a usable hash: a
// bcrypt hash of a random password at the cost new hashes get. It is
// made once, when first needed.
var builtinDummy = sync.OnceValue(func() *userdb.User {
	pw := make([]byte, 18)
	rand.Read(pw)
	h, err := userdb.HashPassword(fmt.Sprintf("%x", pw))
	if err != nil {
		// Cannot happen for a 36-byte password; an empty hash still
		// makes Verify answer no.
		return &userdb.User{}
	}
	return &userdb.User{Hash: h}
})
