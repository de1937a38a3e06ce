package recipient

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/posthorn/posthorn/pkg/aliases"
	"github.com/posthorn/posthorn/pkg/userdb"
)

// expansion is the state of one Resolve.
type expansion struct {
	r      *Resolver
	al     *aliases.Map // loaded on first use
	db     *userdb.DB   // loaded on first use
	out    []Target
	seen   map[Target]bool
	stack  []string        // aliases being expanded, outermost first
	done   map[string]bool // aliases already expanded in this Resolve
	failed []error         // members that bounce
	steps  int
}

// local resolves a local part in a local domain: its alias if there is one
// (with extension, then without), else the system user. parent is the alias
// whose member this is ("" at the top).
func (e *expansion) local(local, domain, parent string) error {
	if e.al == nil {
		al, err := e.r.aliases.get()
		if err != nil {
			return err
		}
		e.al = al
	}
	base := e.r.base(local)
	for _, key := range candidates(local, base) {
		members, ok := e.al.Lookup(key)
		if !ok {
			continue
		}
		if key == parent {
			// An alias that names itself delivers to the user of that
			// name (Postfix local(8)): "alice: alice, archive".
			return e.user(base, domain)
		}
		if slices.Contains(e.stack, key) {
			return fmt.Errorf("alias loop: %s -> %s", strings.Join(e.stack, " -> "), key)
		}
		return e.alias(key, members, domain)
	}
	if base == postmaster {
		// No alias of its own: root's alias, else the user root.
		return e.local("root", domain, parent)
	}
	return e.user(base, domain)
}

// alias expands the members of alias key.
func (e *expansion) alias(key string, members []string, domain string) error {
	if e.done[key] {
		return nil // reached again through another path: its targets are in already
	}
	if len(e.stack) >= MaxDepth {
		return fmt.Errorf("aliases nested deeper than %d (%s -> ... -> %s)", MaxDepth, e.stack[0], key)
	}
	e.done[key] = true
	e.stack = append(e.stack, key)
	defer func() { e.stack = e.stack[:len(e.stack)-1] }()
	self := key + "@" + domain
	for _, m := range members {
		if e.steps++; e.steps > maxSteps {
			return fmt.Errorf("alias expansion of %s takes more than %d steps", e.stack[0], maxSteps)
		}
		var err error
		switch {
		case strings.HasPrefix(m, "|"):
			err = e.add(Target{Kind: Pipe, Address: self, UID: -1, GID: -1, Path: m[1:]})
		case strings.HasPrefix(m, "/"):
			err = e.add(Target{Kind: File, Address: self, UID: -1, GID: -1, Path: m})
		case len(m) >= 9 && strings.EqualFold(m[:9], ":include:"):
			// Include files need their own ownership and permission rules
			// (HOSTILE 51) before anything in them may run.
			err = fmt.Errorf("alias %s: %s: :include: is not supported yet", key, m)
		default:
			err = e.address(m, domain, key)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// address resolves an alias member that is an address or a bare name.
func (e *expansion) address(addr, domain, parent string) error {
	addr = strings.TrimSuffix(strings.TrimPrefix(addr, "<"), ">")
	local, dom := addr, ""
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		local, dom = addr[:i], normDomain(addr[i+1:])
	}
	if local == "" {
		e.failed = append(e.failed, fmt.Errorf("alias %s: member %q: %w", parent, addr, ErrUnknownUser))
		return nil
	}
	switch {
	case dom == "":
		return e.local(strings.ToLower(local), domain, parent)
	case e.r.cfg.IsLocalDomain(dom):
		return e.local(strings.ToLower(local), dom, parent)
	case e.r.cfg.IsVirtualDomain(dom):
		return e.virtual(strings.ToLower(local), dom)
	}
	// The local part of a remote address is the remote side's business
	// (RFC 5321 §2.4): its case is kept.
	return e.add(Target{Kind: Remote, Address: local + "@" + dom, UID: -1, GID: -1})
}

// user adds the mailbox of system user name.
func (e *expansion) user(name, domain string) error {
	u, err := lookupUser(name)
	if errors.Is(err, ErrUnknownUser) {
		e.failed = append(e.failed, fmt.Errorf("%s@%s: %w", name, domain, ErrUnknownUser))
		return nil
	}
	if err != nil {
		return err
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return fmt.Errorf("user %s: non-numeric uid %q or gid %q", name, u.Uid, u.Gid)
	}
	t := Target{Address: name + "@" + domain, User: u.Username, UID: uid, GID: gid}
	switch hm := e.r.cfg.Local.HomeMailbox; {
	case hm == "":
		t.Kind, t.Path = Mbox, filepath.Join(e.r.cfg.Local.MailSpoolDir, u.Username)
	default:
		// home_mailbox is relative to the home folder; a trailing "/"
		// selects Maildir (postconf(5)).
		if !filepath.IsAbs(u.HomeDir) {
			return fmt.Errorf("user %s: home folder %q is not absolute", name, u.HomeDir)
		}
		t.Kind, t.Path = Mbox, filepath.Join(u.HomeDir, hm)
		if strings.HasSuffix(hm, "/") {
			t.Kind = Maildir
		}
	}
	return e.add(t)
}

// virtual resolves a local part in a virtual domain.
func (e *expansion) virtual(local, domain string) error {
	if e.db == nil {
		db, err := e.r.users.get()
		if err != nil {
			return err
		}
		e.db = db
	}
	base := e.r.base(local)
	for _, key := range candidates(local, base) {
		if _, ok := e.db.Lookup(key + "@" + domain); !ok {
			continue
		}
		path, err := mailboxPath(e.r.cfg.Virtual.Mailbox, key, domain)
		if err != nil {
			return err
		}
		uid, gid, err := e.r.vmailIDs()
		if err != nil {
			return err
		}
		addr := key + "@" + domain
		return e.add(Target{Kind: Maildir, Address: addr, User: addr, UID: uid, GID: gid, Path: path})
	}
	if base == postmaster {
		// RFC 5321 §4.5.1: postmaster must work in every domain we accept;
		// without a virtual user of that name it is the system's.
		return e.local(postmaster, e.r.cfg.Hostname, "")
	}
	e.failed = append(e.failed, fmt.Errorf("%s@%s: %w", local, domain, ErrUnknownUser))
	return nil
}

// add appends t unless it is already there.
func (e *expansion) add(t Target) error {
	if e.seen[t] {
		return nil
	}
	if len(e.out) >= MaxTargets {
		return fmt.Errorf("expands to more than %d recipients", MaxTargets)
	}
	e.seen[t] = true
	e.out = append(e.out, t)
	return nil
}
