// Package recipient decides who receives mail for an address: smtpd asks
// at RCPT time (Check), the local delivery agent before delivering
// (Resolve).
//
// The rules are Postfix's local(8), virtual(5) and virtual(8) ones:
//   - the virtual alias file (virtual_alias_maps) comes first in every
//     domain of ours: a listed address is valid and goes to its targets;
//   - local_domains (mydestination) hold system users and the aliases(5)
//     file; an address without a domain is treated the same way; a user's
//     ~/.forward redirects the user's mail (Resolve only);
//   - virtual.domains hold the users of the virtual users file, with
//     mailboxes at virtual.mailbox;
//   - an @domain catch-all in the virtual alias file takes what matches
//     nothing else in its domain;
//   - any other domain is not ours (ErrNotLocal);
//   - alice+lists@d is tried as is, then as alice@d (recipient_delimiter,
//     any one of its characters);
//   - postmaster is always accepted (RFC 5321 §4.5.1).
package recipient

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/posthorn/posthorn/pkg/aliases"
	"github.com/posthorn/posthorn/pkg/config"
	"github.com/posthorn/posthorn/pkg/userdb"
)

// Check results; smtpd answers ErrUnknownUser with 550 5.1.1 and applies
// its relay rules to ErrNotLocal. Any other error means a table could not
// be read: answer 451 4.3.0 and let the client retry.
var (
	ErrUnknownUser = errors.New("unknown user")
	ErrNotLocal    = errors.New("domain is not local")
)

// Limits of one expansion.
const (
	// MaxDepth bounds alias nesting (an alias of an alias of ...). Real
	// chains are a few steps; a deeper one is a configuration mistake.
	MaxDepth = 100
	// MaxTargets is Postfix's expansion_size_limit: the most recipients
	// one address may expand to.
	MaxTargets = 1000
	// maxSteps bounds the alias members looked at in one expansion, so a
	// file of many aliases that all name each other costs bounded work
	// even when nothing new results.
	maxSteps = 100 * MaxTargets
)

// Kind says how a target is delivered.
type Kind int

const (
	// Maildir is a Maildir root (.../Maildir).
	Maildir Kind = iota + 1
	// Mbox is an mbox file: /var/mail/USER, Debian's default for system
	// users.
	Mbox
	// Remote is an address outside our domains that an alias points to.
	Remote
	// Pipe is a "|command" alias member; Path holds the command.
	Pipe
	// File is a "/file" alias member; Path holds the file name.
	File
	// Forward is an address named in a ~/.forward file: the message is
	// submitted again to it as a new message, as Postfix's local(8) does,
	// so it gets its own delivery status and Delivered-To loop check.
	Forward
)

func (k Kind) String() string {
	switch k {
	case Maildir:
		return "maildir"
	case Mbox:
		return "mbox"
	case Remote:
		return "remote"
	case Pipe:
		return "pipe"
	case File:
		return "file"
	case Forward:
		return "forward"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Target is one final destination of an address.
type Target struct {
	Kind Kind
	// Address is the final address, for Delivered-To: the mailbox's own
	// address without extension, the remote or forwarded address, or for
	// Pipe and File the alias or user whose alias, .forward or :include:
	// named them.
	Address string
	// User is the owner of the mailbox (a system user name or a virtual
	// user@domain), or for Pipe and File the user whose rights run them;
	// empty for Remote and Forward.
	User string
	// UID and GID own the mailbox, or run the command and write the file
	// (local(8) DELIVERY RIGHTS: the user of a .forward, the owner of the
	// aliases or :include: file, default_privs instead of root); -1 for
	// Remote and Forward.
	UID, GID int
	// Path is the Maildir root, the mbox file, the command or the file.
	Path string
	// Via says where a Pipe or File came from: config.FromAlias,
	// FromForward or FromInclude.
	Via string
	// Home and Shell are those of User, for a command's environment.
	Home, Shell string
}

// Failure is a permanent failure of one part of an expansion (an unknown
// user in an alias, a command where none is allowed, an unusable
// :include: file) while other parts may still be delivered. Resolve
// returns its failures joined.
type Failure struct {
	DSN  string
	Text string
	err  error
}

func (f *Failure) Error() string { return f.Text }

// Unwrap gives ErrUnknownUser for unknown users.
func (f *Failure) Unwrap() error { return f.err }

// Failures splits an error from Resolve into its permanent failures; ok is
// false when err holds anything else (a temporary error).
func Failures(err error) (fs []*Failure, ok bool) {
	if err == nil {
		return nil, true
	}
	if f, isF := err.(*Failure); isF {
		return []*Failure{f}, true
	}
	if j, isJ := err.(interface{ Unwrap() []error }); isJ {
		for _, e := range j.Unwrap() {
			sub, subOK := Failures(e)
			if !subOK {
				return nil, false
			}
			fs = append(fs, sub...)
		}
		return fs, true
	}
	return nil, false
}

// aliasTable is the aliases file with its owner, whose rights run the
// commands and write the files it names (root's: default_privs').
type aliasTable struct {
	m        *aliases.Map
	uid, gid int // -1 when there is no file
}

func loadAliasTable(p string) (*aliasTable, error) {
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return &aliasTable{m: &aliases.Map{}, uid: -1, gid: -1}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("aliases: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("aliases: %w", err)
	}
	m, err := aliases.Parse(f, p)
	if err != nil {
		return nil, err
	}
	t := &aliasTable{m: m, uid: -1, gid: -1}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		t.uid, t.gid = int(st.Uid), int(st.Gid)
	}
	return t, nil
}

// Resolver answers for one configuration. It is safe for concurrent use.
type Resolver struct {
	cfg     *config.Config
	aliases cached[*aliasTable]
	users   cached[*userdb.DB]
	virtual cached[*VirtualMap]
	open    Opener

	vmailMu  sync.Mutex // also guards privs
	vmailSet bool
	vmailUID int
	vmailGID int
	privsSet bool
	privs    rights
}

// New returns a Resolver for cfg. The aliases, users and virtual alias
// files are read on first use and again whenever they change.
func New(cfg *config.Config) *Resolver {
	r := &Resolver{cfg: cfg, open: openHere}
	r.aliases = cached[*aliasTable]{path: cfg.AliasFile, what: "aliases file",
		empty: &aliasTable{m: &aliases.Map{}, uid: -1, gid: -1}, load: loadAliasTable}
	r.users = cached[*userdb.DB]{path: cfg.Virtual.UsersFile, what: "users file", load: userdb.Load}
	r.virtual = cached[*VirtualMap]{path: cfg.Virtual.AliasFile, what: "virtual alias file",
		empty: &VirtualMap{}, load: LoadVirtual}
	return r
}

// SetOpener sets how Resolve opens ~/.forward and :include: files with a
// user's rights (see Opener); call it before the first Resolve. Without
// it, only files of this process's own uid can be read.
func (r *Resolver) SetOpener(o Opener) {
	if o != nil {
		r.open = o
	}
}

// Check reports whether mail for local@domain is accepted: nil, or
// ErrUnknownUser, ErrNotLocal, or a temporary lookup failure. It only
// answers yes or no; the details are Resolve's. A virtual alias or a
// catch-all makes any address of its domain valid, whatever its targets
// turn out to be at delivery (as Postfix's smtpd does).
func (r *Resolver) Check(local, domain string) error {
	local, domain = strings.ToLower(local), normDomain(domain)
	isLocal := domain == "" || r.cfg.IsLocalDomain(domain)
	if !isLocal && !r.cfg.IsVirtualDomain(domain) {
		return ErrNotLocal
	}
	if r.base(local) == postmaster {
		return nil // whatever the tables say (RFC 5321 §4.5.1)
	}
	va, err := r.virtual.get()
	if err != nil {
		return fmt.Errorf("recipient %s@%s: %w", local, domain, err)
	}
	if _, _, ok := r.virtualLookup(va, local, domain, isLocal); ok {
		return nil
	}
	ok, err := r.exists(local, domain, isLocal)
	if err != nil || ok {
		return err
	}
	if _, ok := va.Lookup("@" + domain); ok && domain != "" {
		return nil
	}
	return ErrUnknownUser
}

// exists reports whether local@domain, a local or virtual domain, has a
// user, an alias or is postmaster.
func (r *Resolver) exists(local, domain string, isLocal bool) (bool, error) {
	base := r.base(local)
	if base == postmaster {
		return true, nil
	}
	if isLocal {
		al, err := r.aliases.get()
		if err != nil {
			return false, fmt.Errorf("recipient %s: %w", local, err)
		}
		for _, key := range candidates(local, base) {
			if _, ok := al.m.Lookup(key); ok {
				return true, nil
			}
		}
		_, err = lookupUser(base)
		if errors.Is(err, ErrUnknownUser) {
			return false, nil
		}
		return err == nil, err
	}
	db, err := r.users.get()
	if err != nil {
		return false, fmt.Errorf("recipient %s@%s: %w", local, domain, err)
	}
	for _, key := range candidates(local, base) {
		if _, ok := db.Lookup(key + "@" + domain); ok {
			return true, nil
		}
	}
	return false, nil
}

// virtualLookup finds local@domain in the virtual alias file: as is, then
// without its extension, then (in a local domain) as a bare user, as
// Postfix's virtual(5) does; the @domain catch-all is not looked at here.
func (r *Resolver) virtualLookup(va *VirtualMap, local, domain string, isLocal bool) (key string, targets []string, ok bool) {
	if va.Len() == 0 {
		return "", nil, false
	}
	base := r.base(local)
	if domain != "" {
		for _, k := range candidates(local, base) {
			if t, ok := va.Lookup(k + "@" + domain); ok {
				return k + "@" + domain, t, true
			}
		}
	}
	if isLocal {
		for _, k := range candidates(local, base) {
			if t, ok := va.Lookup(k); ok {
				return k, t, true
			}
		}
	}
	return "", nil, false
}

// Resolve expands local@domain to its final targets, following virtual
// aliases, aliases, :include: files and ~/.forward files.
//
// Targets come back deduplicated. When some parts fail permanently (an
// unknown user in a list, a forbidden command) the others are still
// returned, together with the failures joined (see Failures; an unknown
// user wraps ErrUnknownUser): deliver the targets, bounce the rest, as
// Postfix does. With no targets at all err is non-nil. Alias loops, too
// deep or too large expansions and unreadable tables fail the whole
// address with an error that is not a Failure: defer it.
func (r *Resolver) Resolve(local, domain string) ([]Target, error) {
	domain = normDomain(domain)
	e := &expansion{r: r, seen: map[Target]bool{}, done: map[string]bool{}}
	var err error
	isLocal := domain == "" || r.cfg.IsLocalDomain(domain)
	switch {
	case isLocal || r.cfg.IsVirtualDomain(domain):
		if domain == "" {
			domain = r.cfg.Hostname
		}
		err = e.inDomain(strings.ToLower(local), domain, isLocal, true)
	default:
		return nil, ErrNotLocal
	}
	if err != nil {
		return nil, fmt.Errorf("resolve %s@%s: %w", local, domain, err)
	}
	failed := errors.Join(e.failed...)
	if len(e.out) == 0 {
		if failed == nil {
			// Cannot happen: every path adds one or the other.
			failed = &Failure{DSN: "5.1.1", Text: local + "@" + domain + ": " + ErrUnknownUser.Error(), err: ErrUnknownUser}
		}
		return nil, failed
	}
	return e.out, failed
}

// Extension returns the address extension of local (alice+lists →
// "lists"), "" when there is none.
func (r *Resolver) Extension(local string) string {
	local = strings.ToLower(local)
	base := r.base(local)
	if len(base) < len(local) {
		return local[len(base)+1:]
	}
	return ""
}

const postmaster = "postmaster"

// base strips the address extension (recipient_delimiter), with Postfix's
// exceptions (split_addr): postmaster, MAILER-DAEMON and double-bounce are
// never split, and with "-" among the delimiters neither are owner-* and
// *-request. A delimiter at the start would leave no user, so it does not
// count.
func (r *Resolver) base(local string) string {
	delims := r.cfg.RecipientDelimiter
	if delims == "" {
		return local
	}
	switch local {
	case postmaster, "mailer-daemon", "double-bounce":
		return local
	}
	if strings.Contains(delims, "-") &&
		(strings.HasPrefix(local, "owner-") || len(local) > 8 && strings.HasSuffix(local, "-request")) {
		return local
	}
	if i := strings.IndexAny(local, delims); i > 0 {
		return local[:i]
	}
	return local
}

// candidates are the names tried for a local part: as is, then the base.
func candidates(local, base string) []string {
	if base == local {
		return []string{local}
	}
	return []string{local, base}
}

func normDomain(d string) string {
	return strings.ToLower(strings.TrimSuffix(d, "."))
}

// lookupUser finds a system user; ErrUnknownUser when there is none.
func lookupUser(name string) (*user.User, error) {
	if name == "" || strings.ContainsAny(name, "/\x00") {
		return nil, ErrUnknownUser
	}
	u, err := user.Lookup(name)
	var unknown user.UnknownUserError
	if errors.As(err, &unknown) {
		return nil, ErrUnknownUser
	}
	if err != nil {
		return nil, fmt.Errorf("look up user %s: %w", name, err)
	}
	return u, nil
}

// vmailIDs returns the owner of virtual mailboxes: virtual.user and
// virtual.group, or this process's own ids when they are empty (the
// development instance runs everything as the invoking user).
func (r *Resolver) vmailIDs() (uid, gid int, err error) {
	r.vmailMu.Lock()
	defer r.vmailMu.Unlock()
	if r.vmailSet {
		return r.vmailUID, r.vmailGID, nil
	}
	uid, gid = os.Getuid(), os.Getgid()
	if name := r.cfg.Virtual.User; name != "" {
		u, err := user.Lookup(name)
		if err != nil {
			var err2 error
			if u, err2 = user.LookupId(name); err2 != nil {
				return 0, 0, fmt.Errorf("virtual.user: %w", err)
			}
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
	}
	if name := r.cfg.Virtual.Group; name != "" {
		g, err := user.LookupGroup(name)
		if err != nil {
			var err2 error
			if g, err2 = user.LookupGroupId(name); err2 != nil {
				return 0, 0, fmt.Errorf("virtual.group: %w", err)
			}
		}
		gid, _ = strconv.Atoi(g.Gid)
	}
	r.vmailUID, r.vmailGID, r.vmailSet = uid, gid, true
	return uid, gid, nil
}

// mailboxPath expands Dovecot's %n (user), %d (domain) and %u (user@domain)
// in virtual.mailbox. The values become path components, so one that could
// leave its folder is refused whatever the users file says.
func mailboxPath(template, local, domain string) (string, error) {
	for _, v := range []string{local, domain} {
		if v == "" || v == "." || v == ".." || strings.ContainsAny(v, "/\x00") {
			return "", fmt.Errorf("user %s@%s cannot be part of a mailbox path", local, domain)
		}
	}
	var b strings.Builder
	for i := 0; i < len(template); i++ {
		c := template[i]
		if c != '%' || i+1 == len(template) {
			b.WriteByte(c)
			continue
		}
		i++
		switch template[i] {
		case 'n':
			b.WriteString(local)
		case 'd':
			b.WriteString(domain)
		case 'u':
			b.WriteString(local + "@" + domain)
		case '%':
			b.WriteByte('%')
		default:
			b.WriteByte('%')
			b.WriteByte(template[i])
		}
	}
	return filepath.Clean(b.String()), nil
}
