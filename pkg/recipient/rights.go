package recipient

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"

	"github.com/posthorn/posthorn/pkg/config"
)

// MaxFileSize bounds a ~/.forward or :include: file read at delivery. A
// mailing list of ten thousand addresses fits; a larger file is refused
// rather than read into memory.
const MaxFileSize = 1 << 20

// OpenRequest asks for a file opened for reading with a user's rights.
type OpenRequest struct {
	Path     string
	UID, GID int
	// NoFollow refuses a symbolic link at the path (~/.forward).
	NoFollow bool
}

// Opener opens a file for reading as req.UID and req.GID with no
// supplementary groups, so that the file system decides what the user may
// read: a ~/.forward that is a link to another user's file, or an
// :include: file the user cannot read, gives the user nothing. The local
// delivery agent opens in a worker process running as the user; the file
// comes back as a descriptor.
type Opener func(req OpenRequest) (*os.File, error)

// openHere is the Opener without workers: only this process's own uid.
// Any other is refused as a permission error, so a ~/.forward is ignored
// (that user's mailbox cannot be written from here either).
func openHere(req OpenRequest) (*os.File, error) {
	if req.UID != os.Geteuid() {
		return nil, &fs.PathError{Op: "open as uid " + strconv.Itoa(req.UID), Path: req.Path, Err: fs.ErrPermission}
	}
	return OpenFile(req)
}

// OpenFile opens req.Path for reading with this process's own rights.
// O_NONBLOCK keeps a FIFO planted at the path from hanging the open; the
// caller checks that it got a regular file.
func OpenFile(req OpenRequest) (*os.File, error) {
	flags := os.O_RDONLY | syscall.O_NONBLOCK | syscall.O_CLOEXEC | syscall.O_NOCTTY
	if req.NoFollow {
		flags |= syscall.O_NOFOLLOW
	}
	return os.OpenFile(req.Path, flags, 0)
}

// fileInfo is what the resolver learns of an opened file.
type fileInfo struct {
	data     []byte
	regular  bool
	mode     os.FileMode
	uid, gid int
}

// readOpened reads an opened file (at most MaxFileSize bytes) and closes it.
func readOpened(f *os.File) (fileInfo, error) {
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fileInfo{}, err
	}
	info := fileInfo{regular: fi.Mode().IsRegular(), mode: fi.Mode().Perm(), uid: -1, gid: -1}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		info.uid, info.gid = int(st.Uid), int(st.Gid)
	}
	if !info.regular {
		return info, nil
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return info, err
	}
	if len(data) > MaxFileSize {
		return info, errTooBig
	}
	info.data = data
	return info, nil
}

var errTooBig = fmt.Errorf("larger than %d bytes", MaxFileSize)

// rights are those a command or file destination runs with, and where it
// came from (local(8) DELIVERY RIGHTS).
type rights struct {
	uid, gid          int
	user, home, shell string
	source            string // config.FromAlias, FromForward, FromInclude
	// forward is set inside a ~/.forward (and the :include: files it
	// names): its addresses are submitted again as new messages, except
	// the user's own name, which is self, the user's mailbox.
	forward bool
	self    *Target
}

func rightsOf(u *user.User, source string) (rights, error) {
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return rights{}, fmt.Errorf("user %s: non-numeric uid %q or gid %q", u.Username, u.Uid, u.Gid)
	}
	return rights{uid: uid, gid: gid, user: u.Username, home: u.HomeDir, shell: userShell(u.Username), source: source}, nil
}

// rightsOfOwner gives the rights of a file's owner: the owner's passwd
// entry, or just the file's uid and gid when the uid has none.
func rightsOfOwner(uid, gid int, source string) (rights, error) {
	u, err := user.LookupId(strconv.Itoa(uid))
	var unknown user.UnknownUserIdError
	if errors.As(err, &unknown) {
		return rights{uid: uid, gid: gid, source: source}, nil
	}
	if err != nil {
		return rights{}, err
	}
	return rightsOf(u, source)
}

// defaultPrivs returns Postfix's default_privs user, which stands in for
// root: a command or file is never run or written as root.
func (r *Resolver) defaultPrivs() (rights, error) {
	r.vmailMu.Lock()
	defer r.vmailMu.Unlock()
	if r.privsSet {
		return r.privs, nil
	}
	name := r.cfg.Local.DefaultPrivs
	u, err := user.Lookup(name)
	if err != nil {
		var err2 error
		if u, err2 = user.LookupId(name); err2 != nil {
			return rights{}, fmt.Errorf("local.default_privs: %w", err)
		}
	}
	p, err := rightsOf(u, "")
	if err != nil {
		return rights{}, fmt.Errorf("local.default_privs: %w", err)
	}
	if p.uid == 0 || p.gid == 0 {
		return rights{}, fmt.Errorf("local.default_privs: %s has uid %d gid %d: it must not be privileged", name, p.uid, p.gid)
	}
	r.privs, r.privsSet = p, true
	return p, nil
}

// userShell finds the login shell of a user in /etc/passwd (os/user does
// not report it), for a command's SHELL; "" when it is not found.
func userShell(name string) string {
	f, err := os.Open("/etc/passwd")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) >= 7 && fields[0] == name {
			return fields[6]
		}
	}
	return ""
}

// allowed reports whether a command (pipe) or file destination may come
// from source (allow_mail_to_commands, allow_mail_to_files).
func (r *Resolver) allowed(k Kind, source string) bool {
	if k == Pipe {
		return config.Allows(r.cfg.Local.AllowMailToCommands, source)
	}
	return config.Allows(r.cfg.Local.AllowMailToFiles, source)
}
