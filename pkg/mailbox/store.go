package mailbox

import (
	"errors"
	"fmt"
	"io/fs"
	"log"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/posthorn/posthorn/pkg/syncdir"
)

// Store is one user's Maildir++ mail store, laid out exactly as Dovecot
// lays it out (COMPAT §2): INBOX is the root, every other mailbox a
// ".Name" directory beside cur/ new/ tmp/, children marked with an empty
// maildirfolder file. A Store is safe for concurrent use; every Mailbox
// opened on the same folder through one Store shares its state, and
// separate Stores (other processes, Dovecot) are seen through the files.
type Store struct {
	path string
	root *os.Root
	opts Options

	noFsync bool
	syncs   syncdir.Set

	mu      sync.Mutex
	folders map[string]*folder // by directory
}

// Options configure a Store.
type Options struct {
	// Hostname ends every new file name; empty means the system's name.
	Hostname string
	// Quota, when set, keeps Maildir++ maildirsize up to date with these
	// limits (from configuration) and makes Append and Copy refuse
	// messages over them.
	Quota *QuotaLimits
	// Logf reports recoveries (a rebuilt uidlist, a discarded index);
	// nil logs with the standard logger.
	Logf func(format string, args ...any)
}

// Errors a Store returns; they are wrapped with the mailbox name.
var (
	ErrNotFound  = errors.New("mailbox: no such mailbox")
	ErrExists    = errors.New("mailbox: mailbox already exists")
	ErrInbox     = errors.New("mailbox: INBOX cannot be deleted or renamed")
	ErrExpunged  = errors.New("mailbox: message has been expunged")
	ErrOverQuota = errors.New("mailbox: quota exceeded")
)

const (
	dirMode  = 0700
	fileMode = 0600
	// subfolderMarker marks a child folder (MAILDIR_SUBFOLDER_FILENAME).
	subfolderMarker = "maildirfolder"
	// trashDir is where Dovecot renames a folder it deletes
	// (mailbox-list-maildir.c: "<root>/" sep sep "DOVECOT-TRASHED").
	trashDir = "..DOVECOT-TRASHED"
	// tmpMaxAge: files in tmp/ untouched this long are leftovers of a
	// crash (MAILDIR_TMP_DELETE_SECS).
	tmpMaxAge = 36 * time.Hour
	// trashMaxAge: a trash directory this old was left by a crash during
	// a delete; Dovecot removes it when listing.
	trashMaxAge = time.Hour
)

// OpenStore opens the Maildir at path, creating it (0700, with cur/ new/
// tmp/) when it does not exist. The path itself must be a real directory,
// not a symlink; nothing inside is followed out of it (os.Root).
func OpenStore(path string, opts Options) (*Store, error) {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		if err = os.MkdirAll(path, dirMode); err == nil {
			fi, err = os.Lstat(path)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("mailbox store %s: %w", path, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("mailbox store %s: not a directory", path)
	}
	root, err := os.OpenRoot(path)
	if err != nil {
		return nil, fmt.Errorf("mailbox store %s: %w", path, err)
	}
	if st, err := root.Stat("."); err != nil || !os.SameFile(fi, st) {
		root.Close()
		return nil, fmt.Errorf("mailbox store %s: replaced while opening", path)
	}
	if opts.Hostname == "" {
		opts.Hostname = hostname
	}
	s := &Store{path: path, root: root, opts: opts, folders: map[string]*folder{}}
	if err := s.makeMaildir(".", false); err != nil {
		root.Close()
		return nil, err
	}
	return s, nil
}

// Path is the Maildir root.
func (s *Store) Path() string { return s.path }

// Close releases the store. Mailboxes opened from it must not be used after.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.folders {
		f.mu.Lock()
		f.closeCache()
		f.closeSubdirs()
		f.mu.Unlock()
		f.root.Close()
	}
	s.folders = nil
	return s.root.Close()
}

func (s *Store) logf(format string, args ...any) {
	if s.opts.Logf != nil {
		s.opts.Logf(format, args...)
		return
	}
	log.Printf(format, args...)
}

// makeMaildir creates dir (relative to the root) with cur/ new/ tmp/ where
// missing, refusing anything that is not a real directory, and the
// maildirfolder marker for a child.
func (s *Store) makeMaildir(dir string, child bool) error {
	for _, d := range []string{dir, dir + "/cur", dir + "/new", dir + "/tmp"} {
		if d == "." {
			continue
		}
		fi, err := s.root.Lstat(d)
		if errors.Is(err, fs.ErrNotExist) {
			if err = s.root.Mkdir(d, dirMode); err == nil || errors.Is(err, fs.ErrExist) {
				fi, err = s.root.Lstat(d)
			}
		}
		if err == nil && !fi.IsDir() {
			err = errors.New("not a directory")
		}
		if err != nil {
			return fmt.Errorf("mailbox store %s: %s: %w", s.path, d, err)
		}
	}
	if child {
		f, err := s.root.OpenFile(dir+"/"+subfolderMarker, os.O_WRONLY|os.O_CREATE, fileMode)
		if err != nil {
			return fmt.Errorf("mailbox store %s: %s: %w", s.path, dir, err)
		}
		f.Close()
	}
	return nil
}

// folderFor returns the shared state of a folder, opening it on first use.
func (s *Store) folderFor(name string) (*folder, error) {
	dir := folderDir(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.folders == nil {
		return nil, errors.New("mailbox: store is closed")
	}
	if f := s.folders[dir]; f != nil {
		return f, nil
	}
	fi, err := s.root.Lstat(dir)
	if err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	r, err := s.root.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("mailbox %s: %w", name, err)
	}
	for _, sub := range []string{"cur", "new", "tmp"} {
		fi, err := r.Lstat(sub)
		if errors.Is(err, fs.ErrNotExist) {
			// Dovecot creates missing subdirectories of an existing folder.
			if err = r.Mkdir(sub, dirMode); err == nil {
				fi, err = r.Lstat(sub)
			}
		}
		if err == nil && !fi.IsDir() {
			err = fmt.Errorf("%s is not a directory", sub)
		}
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("mailbox %s: %w", name, err)
		}
	}
	f := &folder{s: s, name: name, dir: dir, root: r, msgs: map[uint32]*msgRec{}}
	cleanTmp(r)
	s.folders[dir] = f
	return f, nil
}

// forget drops open folder state for dir and its children (after a delete
// or rename).
func (s *Store) forget(dir string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for d, f := range s.folders {
		if d == dir || strings.HasPrefix(d, dir+".") {
			f.mu.Lock()
			f.closeCache()
			f.closeSubdirs()
			f.mu.Unlock()
			f.root.Close()
			delete(s.folders, d)
		}
	}
}

// cleanTmp removes crash leftovers from tmp/: files neither modified nor
// changed for 36 hours, as Dovecot does.
func cleanTmp(r *os.Root) {
	d, err := r.Open("tmp")
	if err != nil {
		return
	}
	defer d.Close()
	ents, _ := d.ReadDir(-1)
	cutoff := time.Now().Add(-tmpMaxAge)
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil || fi.ModTime().After(cutoff) || ctime(fi).After(cutoff) {
			continue
		}
		r.Remove("tmp/" + e.Name())
	}
}

// MailboxInfo describes one mailbox in a listing.
type MailboxInfo struct {
	Name string // UTF-8, "." separated
	// Attributes for LIST (RFC 9051 §7.3.1, RFC 6154): \HasChildren or
	// \HasNoChildren, \NonExistent for a parent level that has no folder
	// of its own, and the special-use attribute if any.
	Attributes []string
	SpecialUse string
}

// List returns every mailbox, INBOX first, then in name order, including
// \NonExistent parents of deeper folders. Directory entries that are not
// valid folder names are skipped (HOSTILE 53).
func (s *Store) List() ([]MailboxInfo, error) {
	d, err := s.root.Open(".")
	if err != nil {
		return nil, fmt.Errorf("mailbox store %s: %w", s.path, err)
	}
	ents, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		return nil, fmt.Errorf("mailbox store %s: %w", s.path, err)
	}
	exists := map[string]bool{Inbox: true}
	for _, e := range ents {
		if e.Name() == trashDir {
			if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > trashMaxAge {
				s.root.RemoveAll(trashDir)
			}
			continue
		}
		if !e.IsDir() {
			continue
		}
		if n := nameFromDir(e.Name()); n != "" {
			exists[n] = true
		}
	}
	all := map[string]bool{}
	for n := range exists {
		all[n] = true
		for p := parentName(n); p != ""; p = parentName(p) {
			all[p] = true
		}
	}
	hasChild := map[string]bool{}
	for n := range all {
		if p := parentName(n); p != "" {
			hasChild[p] = true
		}
	}
	uses := s.specialUses()
	names := make([]string, 0, len(all))
	for n := range all {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int {
		if a == Inbox || b == Inbox {
			return boolCmp(b == Inbox, a == Inbox)
		}
		return strings.Compare(a, b)
	})
	out := make([]MailboxInfo, 0, len(names))
	for _, n := range names {
		mi := MailboxInfo{Name: n}
		if !exists[n] {
			mi.Attributes = append(mi.Attributes, `\NonExistent`)
		}
		if hasChild[n] {
			mi.Attributes = append(mi.Attributes, `\HasChildren`)
		} else {
			mi.Attributes = append(mi.Attributes, `\HasNoChildren`)
		}
		if exists[n] {
			if u := specialUseOf(n, uses); u != "" {
				mi.SpecialUse = u
				mi.Attributes = append(mi.Attributes, u)
			}
		}
		out = append(out, mi)
	}
	return out, nil
}

func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// Exists reports whether a mailbox has a folder.
func (s *Store) Exists(name string) bool {
	name, err := ValidateName(name, false)
	if err != nil {
		return false
	}
	fi, err := s.root.Lstat(folderDir(name))
	return err == nil && fi.IsDir()
}

// Create makes a mailbox (RFC 3501 §6.3.3): the folder with cur/ new/ tmp/
// and maildirfolder. Parent levels need no folder of their own in
// Maildir++. specialUse, if not empty, is stored for CREATE-SPECIAL-USE
// (RFC 6154 §3).
func (s *Store) Create(name, specialUse string) error {
	name, err := ValidateName(name, true)
	if err != nil {
		return err
	}
	if specialUse != "" && !validSpecialUse(specialUse) {
		return fmt.Errorf("mailbox: unknown special-use attribute %q", specialUse)
	}
	if name == Inbox {
		return fmt.Errorf("%w: %s", ErrExists, name)
	}
	dir := folderDir(name)
	if err := s.root.Mkdir(dir, dirMode); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%w: %s", ErrExists, name)
		}
		return fmt.Errorf("mailbox create %s: %w", name, err)
	}
	if err := s.makeMaildir(dir, true); err != nil {
		return err
	}
	if specialUse != "" {
		return s.setSpecialUse(name, specialUse)
	}
	return nil
}

// Delete removes a mailbox the way Dovecot does: the folder is renamed to
// ..DOVECOT-TRASHED, which deletes it atomically as far as any reader can
// tell, and then removed. Children are separate folders in Maildir++ and
// stay; the name then lists as \NonExistent. Subscriptions are kept (RFC
// 3501 §6.3.4 makes them independent).
func (s *Store) Delete(name string) error {
	name, err := ValidateName(name, false)
	if err != nil {
		return err
	}
	if name == Inbox {
		return ErrInbox
	}
	dir := folderDir(name)
	fi, err := s.root.Lstat(dir)
	if err != nil || !fi.IsDir() {
		return fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	s.forget(dir)
	var sizeB, sizeC int64
	if s.opts.Quota != nil {
		sizeB, sizeC = sumFolder(s.root, dir)
	}
	dest := trashDir
	for i := 0; ; i++ {
		err = s.root.Rename(dir, dest)
		if err == nil {
			break
		}
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w: %s", ErrNotFound, name)
		}
		if i >= 5 {
			return fmt.Errorf("mailbox delete %s: %w", name, err)
		}
		// The trash directory exists: another delete is running or one
		// crashed. Go inside it, as Dovecot does.
		dest = trashDir + "/" + hostname + "." + pidStr + "." + newGUID()[:16]
	}
	if err := s.root.RemoveAll(trashDir); err != nil {
		s.logf("mailbox delete %s: removing %s: %v", name, trashDir, err)
	}
	s.dropSpecialUse(name, "")
	if s.opts.Quota != nil && (sizeB != 0 || sizeC != 0) {
		s.quotaUpdate(-sizeB, -sizeC)
	}
	return nil
}

// Rename renames a mailbox and every mailbox below it (RFC 3501 §6.3.5),
// each folder with one rename(2). The new name must not exist; renaming
// INBOX (which moves its messages) is not supported.
func (s *Store) Rename(oldName, newName string) error {
	oldName, err := ValidateName(oldName, false)
	if err != nil {
		return err
	}
	newName, err = ValidateName(newName, true)
	if err != nil {
		return err
	}
	if oldName == Inbox || newName == Inbox {
		return ErrInbox
	}
	if newName == oldName || strings.HasPrefix(newName, oldName+".") {
		return badName(newName, "cannot move a mailbox under itself")
	}
	list, err := s.List()
	if err != nil {
		return err
	}
	var moves [][2]string
	for _, mi := range list {
		if slices.Contains(mi.Attributes, `\NonExistent`) {
			continue
		}
		if mi.Name == oldName || strings.HasPrefix(mi.Name, oldName+".") {
			to := newName + mi.Name[len(oldName):]
			if _, err := ValidateName(to, false); err != nil {
				return err
			}
			moves = append(moves, [2]string{mi.Name, to})
		}
	}
	if !s.Exists(oldName) {
		return fmt.Errorf("%w: %s", ErrNotFound, oldName)
	}
	for _, m := range moves {
		if s.Exists(m[1]) {
			return fmt.Errorf("%w: %s", ErrExists, m[1])
		}
	}
	s.forget(folderDir(oldName))
	for i, m := range moves {
		if err := s.root.Rename(folderDir(m[0]), folderDir(m[1])); err != nil {
			// Put back what moved so far.
			for j := i - 1; j >= 0; j-- {
				s.root.Rename(folderDir(moves[j][1]), folderDir(moves[j][0]))
			}
			return fmt.Errorf("mailbox rename %s: %w", m[0], err)
		}
		// The new name may sit at another depth; it is a child either way.
		s.makeMaildir(folderDir(m[1]), true)
		s.dropSpecialUse(m[0], m[1])
	}
	return nil
}
