// Package userdb reads and edits the virtual users file, a Dovecot
// passwd-file, so Dovecot can read posthorn's file and posthorn Dovecot's:
//
//	user@domain:{SCHEME}hash:uid:gid:gecos:home:shell:extra fields
//
// Fields after the password are optional, as in Dovecot. Lines that are
// empty or start with "#" (or ":", an empty user name) are skipped, as
// Dovecot's db-passwd-file does. Edits rewrite the whole file atomically and
// keep every other line byte for byte.
package userdb

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"strconv"
	"strings"
)

// MaxLineLength bounds one line. Real lines are under 200 bytes; the bound
// only keeps a corrupt file from using unbounded memory.
const MaxLineLength = 64 << 10

// User is one line of the file.
type User struct {
	// Name is user@domain as written in the file.
	Name string
	// Hash is the password field, "{SCHEME}hash"; without a scheme prefix
	// it is CRYPT, Dovecot's default for passwd-file.
	Hash string
	// UID and GID are -1 when the field is empty: the configuration's
	// virtual mailbox owner applies.
	UID, GID int
	// Home is the home folder field, often empty.
	Home string
	// Extra holds Dovecot's extra fields (space-separated key=value), raw.
	Extra string
}

// DB is a loaded users file.
type DB struct {
	byName map[string]*User // lower-cased name → first line with it
	list   []*User
}

// Load reads the users file at path. A missing file is an empty DB, so a new
// installation works before the first user is added.
func Load(path string) (*DB, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &DB{byName: map[string]*User{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("users file: %w", err)
	}
	defer f.Close()
	return parse(f, path)
}

func parse(r io.Reader, name string) (*DB, error) {
	db := &DB{byName: map[string]*User{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), MaxLineLength+2)
	lineno := 0
	for sc.Scan() {
		lineno++
		if len(sc.Bytes()) > MaxLineLength {
			return nil, fmt.Errorf("%s:%d: line longer than %d bytes", name, lineno, MaxLineLength)
		}
		u, err := ParseLine(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, lineno, err)
		}
		if u == nil {
			continue
		}
		db.list = append(db.list, u)
		// The first line wins, as in Dovecot, which warns about the rest.
		key := strings.ToLower(u.Name)
		if _, dup := db.byName[key]; !dup {
			db.byName[key] = u
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("%s:%d: line longer than %d bytes", name, lineno+1, MaxLineLength)
		}
		return nil, fmt.Errorf("%s:%d: %w", name, lineno+1, err)
	}
	return db, nil
}

// ParseLine parses one line of a passwd-file. It returns nil and no error
// for lines Dovecot skips (empty, comments, empty user name).
func ParseLine(line string) (*User, error) {
	line = strings.TrimSuffix(line, "\r") // a file edited on Windows
	if line == "" || line[0] == '#' || line[0] == ':' {
		return nil, nil
	}
	if i := strings.IndexFunc(line, isControl); i >= 0 {
		// Never let a NUL or CR make two readers see different lines
		// (HOSTILE 14).
		return nil, fmt.Errorf("control character %q", line[i])
	}
	f := strings.SplitN(line, ":", 8)
	field := func(i int) string {
		if i < len(f) {
			return f[i]
		}
		return ""
	}
	u := &User{Name: f[0], Hash: field(1), Home: field(5), Extra: field(7)}
	var err error
	if u.UID, err = parseID(field(2), lookupUID); err != nil {
		return nil, fmt.Errorf("user %s: uid: %w", u.Name, err)
	}
	if u.GID, err = parseID(field(3), lookupGID); err != nil {
		return nil, fmt.Errorf("user %s: gid: %w", u.Name, err)
	}
	return u, nil
}

func isControl(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }

// parseID reads a uid or gid field: empty (-1), a number, or a name, which
// Dovecot also accepts.
func parseID(s string, byName func(string) (string, error)) (int, error) {
	if s == "" {
		return -1, nil
	}
	if s[0] == '-' || s[0] >= '0' && s[0] <= '9' {
		n, err := strconv.ParseUint(s, 10, 31)
		if err != nil {
			return 0, fmt.Errorf("%q is not a valid id", s)
		}
		return int(n), nil
	}
	id, err := byName(s)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(id)
	if err != nil {
		return 0, fmt.Errorf("%q has id %q", s, id)
	}
	return n, nil
}

func lookupUID(name string) (string, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return "", err
	}
	return u.Uid, nil
}

func lookupGID(name string) (string, error) {
	g, err := user.LookupGroup(name)
	if err != nil {
		return "", err
	}
	return g.Gid, nil
}

// Lookup finds a user by user@domain, case-insensitively.
func (db *DB) Lookup(name string) (*User, bool) {
	if db == nil {
		return nil, false
	}
	u, ok := db.byName[strings.ToLower(name)]
	return u, ok
}

// List returns the users in file order.
func (db *DB) List() []*User {
	if db == nil {
		return nil
	}
	return append([]*User(nil), db.list...)
}

// Len is the number of user lines.
func (db *DB) Len() int {
	if db == nil {
		return 0
	}
	return len(db.list)
}

// nameOf returns the user name of a raw line, or "" for lines without one.
// Edits use it instead of ParseLine so a line that is otherwise broken (an
// unknown uid name) neither blocks nor gets lost in an unrelated edit.
func nameOf(line []byte) string {
	line = bytes.TrimRight(line, "\r\n")
	if len(line) == 0 || line[0] == '#' || line[0] == ':' {
		return ""
	}
	name, _, _ := bytes.Cut(line, []byte(":"))
	return strings.ToLower(string(name))
}
