package mailbox

import (
	"bytes"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Special-use mailboxes (RFC 6154). Dovecot takes them from configuration
// (mailbox { special_use = }), not from the Maildir, so posthorn detects the
// usual names and keeps what CREATE-SPECIAL-USE asked for in a small file
// of its own at the Maildir root, posthorn-special-use:
//
//	1
//	<attribute> TAB <on-disk (modified UTF-7) mailbox name>
//
// The file is optional: without it only the names below are recognized,
// and deleting it loses nothing but the attributes given at CREATE.

const specialUseFile = "posthorn-special-use"

// SpecialUses are the attributes of RFC 6154 §2 a mailbox may carry.
var SpecialUses = []string{`\All`, `\Archive`, `\Drafts`, `\Flagged`, `\Junk`, `\Sent`, `\Trash`}

// byName are the top-level names recognized without configuration.
var byName = map[string]string{
	"sent": `\Sent`, "drafts": `\Drafts`, "trash": `\Trash`, "junk": `\Junk`, "archive": `\Archive`,
}

func validSpecialUse(u string) bool {
	for _, s := range SpecialUses {
		if strings.EqualFold(s, u) {
			return true
		}
	}
	return false
}

func canonicalUse(u string) string {
	for _, s := range SpecialUses {
		if strings.EqualFold(s, u) {
			return s
		}
	}
	return ""
}

// specialUses reads posthorn-special-use: storage name -> attribute.
func (s *Store) specialUses() map[string]string {
	b, err := readAll(s.root, specialUseFile, 1<<20)
	if err != nil {
		return nil
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) == 0 || lines[0] != "1" {
		return nil
	}
	m := map[string]string{}
	for _, l := range lines[1:] {
		use, name, ok := strings.Cut(l, "\t")
		if ok && canonicalUse(use) != "" && name != "" {
			m[name] = canonicalUse(use)
		}
	}
	return m
}

// specialUseOf is a mailbox's attribute: the stored one, else by name.
func specialUseOf(name string, stored map[string]string) string {
	if u, ok := stored[storageName(name)]; ok {
		return u
	}
	if !strings.ContainsRune(name, Sep) {
		return byName[strings.ToLower(name)]
	}
	return ""
}

// SpecialUse returns the special-use attribute of a mailbox, or "".
func (s *Store) SpecialUse(name string) string {
	name = NormalizeName(name)
	if !s.Exists(name) {
		return ""
	}
	return specialUseOf(name, s.specialUses())
}

func (s *Store) writeSpecialUses(m map[string]string) error {
	l, err := takeLock(s.root, specialUseFile)
	if err != nil {
		return err
	}
	defer l.release()
	var b bytes.Buffer
	b.WriteString("1\n")
	for name, use := range m {
		b.WriteString(use + "\t" + name + "\n")
	}
	tmp := specialUseFile + ".tmp"
	f, err := s.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, fileMode)
	if err != nil {
		return err
	}
	_, err = f.Write(b.Bytes())
	if err == nil {
		err = f.Sync()
	}
	f.Close()
	if err == nil {
		err = s.root.Rename(tmp, specialUseFile)
	}
	return err
}

func (s *Store) setSpecialUse(name, use string) error {
	m := s.specialUses()
	if m == nil {
		m = map[string]string{}
	}
	m[storageName(name)] = canonicalUse(use)
	return s.writeSpecialUses(m)
}

// dropSpecialUse forgets (to == "") or moves a stored attribute.
func (s *Store) dropSpecialUse(from, to string) {
	m := s.specialUses()
	u, ok := m[storageName(from)]
	if !ok {
		return
	}
	delete(m, storageName(from))
	if to != "" {
		m[storageName(to)] = u
	}
	s.writeSpecialUses(m)
}

var pidStr = strconv.Itoa(os.Getpid())

func ctime(fi fs.FileInfo) time.Time {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return time.Unix(st.Ctim.Sec, st.Ctim.Nsec)
	}
	return fi.ModTime()
}
