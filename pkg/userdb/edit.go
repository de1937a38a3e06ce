package userdb

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Errors of the editing functions, for errors.Is.
var (
	ErrExists   = errors.New("user already exists")
	ErrNotFound = errors.New("no such user")
	ErrBadName  = errors.New("invalid user name")
)

// fileMode is the mode of a new users file: the hashes are secret, the group
// lets an auth daemon that is not root read them.
const fileMode = 0640

// Add appends a user with a {BLF-CRYPT} hash of password. The name is
// stored lower-cased.
func Add(path, name, password string) error {
	name, err := normalizeName(name)
	if err != nil {
		return err
	}
	hash, err := HashPassword(password)
	if err != nil {
		return err
	}
	return rewrite(path, func(lines [][]byte) ([][]byte, error) {
		if i := find(lines, name); i >= 0 {
			return nil, fmt.Errorf("%w: %s (line %d)", ErrExists, name, i+1)
		}
		if n := len(lines); n > 0 && !bytes.HasSuffix(lines[n-1], []byte("\n")) {
			lines[n-1] = append(lines[n-1], '\n')
		}
		// Empty uid, gid, gecos, home and shell: the configuration decides,
		// as Dovecot's default_fields would.
		return append(lines, []byte(name+":"+hash+"::::::\n")), nil
	})
}

// Delete removes every line of the user.
func Delete(path, name string) error {
	name = strings.ToLower(name)
	if name == "" {
		return fmt.Errorf("users file %s: %w: empty name", path, ErrNotFound)
	}
	return rewrite(path, func(lines [][]byte) ([][]byte, error) {
		out := lines[:0]
		for _, l := range lines {
			if nameOf(l) != name {
				out = append(out, l)
			}
		}
		if len(out) == len(lines) {
			return nil, fmt.Errorf("%w: %s", ErrNotFound, name)
		}
		return out, nil
	})
}

// SetPassword replaces the password field of the user's line with a new
// {BLF-CRYPT} hash; the other fields stay as they were.
func SetPassword(path, name, password string) error {
	name = strings.ToLower(name)
	if name == "" {
		return fmt.Errorf("users file %s: %w: empty name", path, ErrNotFound)
	}
	hash, err := HashPassword(password)
	if err != nil {
		return err
	}
	return rewrite(path, func(lines [][]byte) ([][]byte, error) {
		i := find(lines, name)
		if i < 0 {
			return nil, fmt.Errorf("%w: %s", ErrNotFound, name)
		}
		l := lines[i]
		body := bytes.TrimRight(l, "\r\n")
		eol := l[len(body):]
		user, rest, _ := bytes.Cut(body, []byte(":"))
		_, after, more := bytes.Cut(rest, []byte(":"))
		nl := append(append([]byte(nil), user...), ':')
		nl = append(nl, hash...)
		if more {
			nl = append(append(nl, ':'), after...)
		}
		lines[i] = append(nl, eol...)
		return lines, nil
	})
}

// find returns the index of the first line of name, or -1; Dovecot uses the
// first line too.
func find(lines [][]byte, name string) int {
	for i, l := range lines {
		if nameOf(l) == name {
			return i
		}
	}
	return -1
}

// normalizeName lower-cases name and checks it is local@domain.
func normalizeName(name string) (string, error) {
	name = strings.ToLower(name)
	if err := ValidateName(name); err != nil {
		return "", err
	}
	return name, nil
}

// ValidateName reports whether name can be a virtual user: local@domain
// with an ASCII local part of at most 64 bytes and a domain of at most 253
// (RFC 5321 §4.5.3.1). Besides the characters the file format cannot hold
// (":", NUL, CR, LF, a leading "#") it refuses "/", "\" and "%", because the name becomes
// part of a path (virtual.mailbox "%d/%n") and Dovecot expands "%" in
// templates, and leading, trailing or double dots ("..").
func ValidateName(name string) error {
	local, domain, ok := strings.Cut(name, "@")
	bad := func(why string) error { return fmt.Errorf("%w %q: %s", ErrBadName, name, why) }
	switch {
	case !ok || local == "" || domain == "":
		return bad("want local@domain")
	case strings.Contains(domain, "@"):
		return bad("more than one @")
	case local[0] == '#':
		return bad("a leading # makes the line a comment")
	case len(local) > 64:
		return bad("local part longer than 64 bytes")
	case len(domain) > 253:
		return bad("domain longer than 253 bytes")
	}
	for _, part := range []string{local, domain} {
		if part[0] == '.' || part[len(part)-1] == '.' || strings.Contains(part, "..") {
			return bad("misplaced dot")
		}
	}
	for i := 0; i < len(local); i++ {
		if c := local[i]; !isAlnum(c) && !strings.ContainsRune(".!#$&'*+=?^_`{|}~-", rune(c)) {
			return bad(fmt.Sprintf("character %q in the local part", c))
		}
	}
	for i := 0; i < len(domain); i++ {
		if c := domain[i]; !isAlnum(c) && c != '.' && c != '-' {
			return bad(fmt.Sprintf("character %q in the domain", c))
		}
	}
	return nil
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// rewrite applies edit to the lines of the file (each with its line ending)
// and replaces the file atomically: a temporary file in the same folder,
// fsync, rename, fsync of the folder. Editors are serialised by an flock on
// path.lock; readers never lock, they see the old or the new file whole.
func rewrite(path string, edit func([][]byte) ([][]byte, error)) error {
	// Edit the file a symlink points to rather than replace the link.
	if p, err := filepath.EvalSymlinks(path); err == nil {
		path = p
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0755); err != nil {
		return fmt.Errorf("users file %s: %w", path, err)
	}
	lock, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0600)
	if err != nil {
		return fmt.Errorf("users file %s: lock: %w", path, err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("users file %s: lock: %w", path, err)
	}

	data, err := os.ReadFile(path)
	mode := os.FileMode(fileMode)
	uid, gid := -1, -1
	switch {
	case err == nil:
		fi, err := os.Stat(path)
		if err != nil {
			return fmt.Errorf("users file %s: %w", path, err)
		}
		mode = fi.Mode().Perm()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			uid, gid = int(st.Uid), int(st.Gid)
		}
	case errors.Is(err, fs.ErrNotExist):
	default:
		return fmt.Errorf("users file %s: %w", path, err)
	}

	lines := splitLines(data)
	lines, err = edit(lines)
	if err != nil {
		return fmt.Errorf("users file %s: %w", path, err)
	}

	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("users file %s: %w", path, err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	// Keep the mode and owner an admin gave the file (say root:dovecot
	// 0640), or the auth daemon could no longer read it.
	if err := tmp.Chmod(mode); err != nil {
		return fmt.Errorf("users file %s: chmod: %w", path, err)
	}
	if uid >= 0 && (uid != os.Geteuid() || gid != os.Getegid()) {
		if err := tmp.Chown(uid, gid); err != nil {
			return fmt.Errorf("users file %s: keep owner %d:%d: %w", path, uid, gid, err)
		}
	}
	if _, err := tmp.Write(bytes.Join(lines, nil)); err != nil {
		return fmt.Errorf("users file %s: write: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("users file %s: fsync: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("users file %s: write: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("users file %s: rename: %w", path, err)
	}
	done = true
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("users file %s: fsync %s: %w", path, dir, err)
	}
	return nil
}

// splitLines splits data after every LF; the last line may lack one.
func splitLines(data []byte) [][]byte {
	var lines [][]byte
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			lines = append(lines, data)
			break
		}
		lines = append(lines, data[:i+1])
		data = data[i+1:]
	}
	return lines
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
