// Package recipient decides who receives mail for an address: smtpd asks
// at RCPT time (Check), the local delivery agent before delivering
// (Resolve).
//
// The rules are Postfix's local(8) and virtual(8) ones:
//   - local_domains (mydestination) hold system users and the aliases(5)
//     file; an address without a domain is treated the same way;
//   - virtual.domains hold the users of the virtual users file, with
//     mailboxes at virtual.mailbox;
//   - any other domain is not ours (ErrNotLocal);
//   - alice+lists@d is tried as is, then as alice@d (recipient_delimiter);
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
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Target is one final destination of an address.
type Target struct {
	Kind Kind
	// Address is the final address, for Delivered-To: the mailbox's own
	// address without extension, the remote address, or for Pipe and File
	// the alias that named them.
	Address string
	// User is the owner of the mailbox: a system user name or a virtual
	// user@domain; empty for Remote, Pipe and File.
	User string
	// UID and GID own the mailbox; -1 for Remote, Pipe and File, whose
	// privileges the delivery agent decides (Postfix: the alias file's
	// owner, or default_privs when that is root).
	UID, GID int
	// Path is the Maildir root, the mbox file, the command or the file.
	Path string
}

// Resolver answers for one configuration. It is safe for concurrent use.
type Resolver struct {
	cfg     *config.Config
	aliases cached[*aliases.Map]
	users   cached[*userdb.DB]

	vmailMu  sync.Mutex
	vmailSet bool
	vmailUID int
	vmailGID int
}

// New returns a Resolver for cfg. The aliases and users files are read on
// first use and again whenever they change.
func New(cfg *config.Config) *Resolver {
	r := &Resolver{cfg: cfg}
	r.aliases = cached[*aliases.Map]{path: cfg.AliasFile, what: "aliases file", empty: &aliases.Map{},
		load: func(p string) (*aliases.Map, error) {
			m, err := aliases.Load(p)
			if errors.Is(err, fs.ErrNotExist) {
				return &aliases.Map{}, nil
			}
			return m, err
		}}
	r.users = cached[*userdb.DB]{path: cfg.Virtual.UsersFile, what: "users file", load: userdb.Load}
	return r
}

// Check reports whether mail for local@domain is accepted: nil, or
// ErrUnknownUser, ErrNotLocal, or a temporary lookup failure. It only
// answers yes or no; the details are Resolve's.
func (r *Resolver) Check(local, domain string) error {
	local, domain = strings.ToLower(local), normDomain(domain)
	base := r.base(local)
	switch {
	case domain == "" || r.cfg.IsLocalDomain(domain):
		if base == postmaster {
			return nil
		}
		al, err := r.aliases.get()
		if err != nil {
			return fmt.Errorf("recipient %s: %w", local, err)
		}
		for _, key := range candidates(local, base) {
			if _, ok := al.Lookup(key); ok {
				return nil
			}
		}
		_, err = lookupUser(base)
		return err
	case r.cfg.IsVirtualDomain(domain):
		if base == postmaster {
			return nil
		}
		db, err := r.users.get()
		if err != nil {
			return fmt.Errorf("recipient %s@%s: %w", local, domain, err)
		}
		for _, key := range candidates(local, base) {
			if _, ok := db.Lookup(key + "@" + domain); ok {
				return nil
			}
		}
		return ErrUnknownUser
	}
	return ErrNotLocal
}

// Resolve expands local@domain to its final targets, following aliases.
//
// Targets come back deduplicated. When some members of an alias fail (an
// unknown user in a list) the others are still returned, together with an
// error that lists the failures and wraps ErrUnknownUser: deliver the
// targets, bounce the rest, as Postfix does. With no targets at all err is
// non-nil. Alias loops, too deep or too large expansions, unreadable tables
// and unsupported members (:include:) fail the whole address.
func (r *Resolver) Resolve(local, domain string) ([]Target, error) {
	domain = normDomain(domain)
	e := &expansion{r: r, seen: map[Target]bool{}, done: map[string]bool{}}
	var err error
	switch {
	case domain == "" || r.cfg.IsLocalDomain(domain):
		if domain == "" {
			domain = r.cfg.Hostname
		}
		err = e.local(strings.ToLower(local), domain, "")
	case r.cfg.IsVirtualDomain(domain):
		err = e.virtual(strings.ToLower(local), domain)
	default:
		return nil, ErrNotLocal
	}
	if err != nil {
		return nil, fmt.Errorf("resolve %s@%s: %w", local, domain, err)
	}
	failed := errors.Join(e.failed...)
	if len(e.out) == 0 {
		if failed == nil {
			failed = ErrUnknownUser // cannot happen: every path adds one or the other
		}
		return nil, failed
	}
	return e.out, failed
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
