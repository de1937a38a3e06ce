package smtpd

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/posthorn/posthorn/pkg/address"
	"github.com/posthorn/posthorn/pkg/config"
)

// Limits of a sender login map: it is the admin's file, but a runaway one
// (or a wrong path, such as a log file) must not eat the daemon's memory.
const (
	maxSenderMapLine    = 64 * 1024
	maxSenderMapEntries = 100000
	maxSenderMapOwners  = 1000
)

// senderMap is a parsed smtpd.sender_login_map: lower-cased
// "local@domain" or "@domain" keys to the logins that may send as them.
type senderMap map[string][]string

// parseSenderMap reads the map in the shape of a Postfix lookup table
// source, as smtpd_sender_login_maps uses it:
//
//	# comment
//	sales@example.org   alice@example.org, bob@example.org
//	@example.net        carol
//	                    dave          (continues the line above)
//
// A key is an address or "@domain"; the owners follow, separated by
// commas and blanks. A key given twice is an error, as is a line without
// owners: a typo in who may send as whom must not pass silently.
func parseSenderMap(r io.Reader) (senderMap, error) {
	m := senderMap{}
	br := bufio.NewReaderSize(r, maxSenderMapLine+2)
	var logical string // the entry being collected
	start, n := 0, 0   // its first line, the current line
	flush := func() error {
		if logical == "" {
			return nil
		}
		f := strings.FieldsFunc(logical, func(r rune) bool { return r == ' ' || r == '\t' || r == ',' })
		if len(f) == 0 {
			return fmt.Errorf("line %d: no address", start)
		}
		key := strings.ToLower(f[0])
		at := strings.LastIndexByte(key, '@')
		switch {
		case at < 0 || at == len(key)-1:
			return fmt.Errorf("line %d: %q is neither an address nor @domain", start, f[0])
		case len(f) < 2:
			return fmt.Errorf("line %d: %s has no owner", start, f[0])
		case len(f)-1 > maxSenderMapOwners:
			return fmt.Errorf("line %d: %s has more than %d owners", start, f[0], maxSenderMapOwners)
		case m[key] != nil:
			return fmt.Errorf("line %d: %s is listed twice", start, f[0])
		case len(m) >= maxSenderMapEntries:
			return fmt.Errorf("line %d: more than %d entries", start, maxSenderMapEntries)
		}
		owners := make([]string, len(f)-1)
		for i, o := range f[1:] {
			owners[i] = strings.ToLower(o)
		}
		m[key] = owners
		logical = ""
		return nil
	}
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull || len(strings.TrimRight(string(line), "\r\n")) > maxSenderMapLine {
			return nil, fmt.Errorf("line %d: longer than %d bytes", n+1, maxSenderMapLine)
		}
		if len(line) == 0 && err != nil {
			if err != io.EOF {
				return nil, err
			}
			break
		}
		n++
		s := strings.TrimRight(string(line), "\r\n")
		if strings.ContainsFunc(s, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }) {
			return nil, fmt.Errorf("line %d: control character", n)
		}
		trimmed := strings.TrimSpace(s)
		switch {
		case trimmed == "" || trimmed[0] == '#':
			// Postfix: an empty or comment line does not end an entry.
		case s[0] == ' ' || s[0] == '\t':
			if logical == "" {
				return nil, fmt.Errorf("line %d: continuation line without an entry", n)
			}
			if len(logical)+len(trimmed) > maxSenderMapLine {
				return nil, fmt.Errorf("line %d: entry longer than %d bytes", n, maxSenderMapLine)
			}
			logical += " " + trimmed
		default:
			if err := flush(); err != nil {
				return nil, err
			}
			logical, start = trimmed, n
		}
		if err != nil {
			break
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return m, nil
}

// senderMapFile is the map file, read again when it changes. A version
// that does not parse leaves the last good one in use.
type senderMapFile struct {
	path string

	mu      sync.Mutex
	sig     fileSig
	m       senderMap
	err     error     // of the last read, while no version is good
	checked time.Time // last stat
}

type fileSig struct {
	dev, ino uint64
	size     int64
	mtime    time.Time
}

func statFile(path string) (fileSig, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileSig{}, err
	}
	sig := fileSig{size: fi.Size(), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		sig.dev, sig.ino = uint64(st.Dev), st.Ino
	}
	return sig, nil
}

// get returns the current map. warn is called when a new version cannot
// be used.
func (f *senderMapFile) get(warn func(format string, args ...any)) (senderMap, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	// One stat a second is plenty for a file an admin edits by hand.
	if f.m != nil && time.Since(f.checked) < time.Second {
		return f.m, nil
	}
	f.checked = time.Now()
	sig, err := statFile(f.path)
	if err == nil && f.m != nil && sig == f.sig {
		return f.m, nil
	}
	var m senderMap
	if err == nil {
		var fh *os.File
		if fh, err = os.Open(f.path); err == nil {
			m, err = parseSenderMap(fh)
			fh.Close()
		}
	}
	if err != nil {
		err = fmt.Errorf("smtpd.sender_login_map %s: %w", f.path, err)
		if f.m != nil {
			if sig != f.sig {
				warn("%v; keeping the version read before", err)
				f.sig = sig
			}
			return f.m, nil
		}
		if f.err == nil || f.err.Error() != err.Error() {
			warn("%v", err)
		}
		f.err = err
		return nil, err
	}
	f.m, f.sig, f.err = m, sig, nil
	return m, nil
}

// errNotOwner: the login may not use the sender.
var errNotOwner = errors.New("not owned")

// checkSenderOwner decides whether login may use from as envelope sender.
// The map decides for the senders it lists (the address, the address
// without its extension, then its domain); any other sender belongs to the
// login that is that address (a virtual user) or, for a system user
// (a login without "@"), to user@domain for each local domain.
func checkSenderOwner(cfg *config.Config, m senderMap, login string, from address.Mailbox) error {
	if from.IsNull() {
		return nil // bounces and receipts; Postfix lets them pass too
	}
	login = strings.ToLower(login)
	local, domain := strings.ToLower(from.Local), from.DomainLower()
	base := local
	if d := cfg.RecipientDelimiter; d != "" {
		if i := strings.IndexAny(local, d); i > 0 {
			base = local[:i]
		}
	}
	for _, key := range []string{local + "@" + domain, base + "@" + domain, "@" + domain} {
		if owners, ok := m[key]; ok {
			for _, o := range owners {
				if o == login {
					return nil
				}
			}
			return errNotOwner
		}
	}
	if strings.Contains(login, "@") {
		if login == local+"@"+domain || login == base+"@"+domain {
			return nil
		}
		return errNotOwner
	}
	if cfg.IsLocalDomain(domain) && (login == local || login == base) {
		return nil
	}
	return errNotOwner
}
