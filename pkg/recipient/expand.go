package recipient

import (
	"errors"
	"fmt"
	"io/fs"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/posthorn/posthorn/pkg/aliases"
	"github.com/posthorn/posthorn/pkg/config"
	"github.com/posthorn/posthorn/pkg/maillog"
	"github.com/posthorn/posthorn/pkg/userdb"
)

// expansion is the state of one Resolve.
type expansion struct {
	r        *Resolver
	al       *aliasTable // loaded on first use
	db       *userdb.DB  // loaded on first use
	va       *VirtualMap // loaded on first use
	aliasCtx *rights     // rights of the aliases file's owner
	out      []Target
	seen     map[Target]bool
	stack    []string        // aliases, virtual aliases and :include: files being expanded, outermost first
	done     map[string]bool // those already expanded in this Resolve
	failed   []error         // parts that bounce
	steps    int
}

// fail records a part of the expansion that bounces.
func (e *expansion) fail(dsn string, wrapped error, format string, args ...any) {
	e.failed = append(e.failed, &Failure{DSN: dsn, Text: fmt.Sprintf(format, args...), err: wrapped})
}

func (e *expansion) unknown(format string, args ...any) {
	e.fail("5.1.1", ErrUnknownUser, "%s: %v", fmt.Sprintf(format, args...), ErrUnknownUser)
}

// step counts the work of one expansion, so a file of many entries that
// all name each other costs bounded work even when nothing new results.
func (e *expansion) step() error {
	if e.steps++; e.steps > maxSteps {
		return fmt.Errorf("expansion of %s takes more than %d steps", e.first(), maxSteps)
	}
	return nil
}

func (e *expansion) first() string {
	if len(e.stack) > 0 {
		return e.stack[0]
	}
	return "the address"
}

// enter pushes key on the expansion stack; the caller pops it.
func (e *expansion) enter(key string) error {
	if slices.Contains(e.stack, key) {
		return fmt.Errorf("alias loop: %s -> %s", strings.Join(e.stack, " -> "), key)
	}
	if len(e.stack) >= MaxDepth {
		return fmt.Errorf("aliases nested deeper than %d (%s -> ... -> %s)", MaxDepth, e.stack[0], key)
	}
	e.done[key] = true
	e.stack = append(e.stack, key)
	return nil
}

func (e *expansion) leave() { e.stack = e.stack[:len(e.stack)-1] }

func (e *expansion) aliases() (*aliasTable, error) {
	if e.al == nil {
		al, err := e.r.aliases.get()
		if err != nil {
			return nil, err
		}
		e.al = al
	}
	return e.al, nil
}

func (e *expansion) virtualMap() (*VirtualMap, error) {
	if e.va == nil {
		va, err := e.r.virtual.get()
		if err != nil {
			return nil, err
		}
		e.va = va
	}
	return e.va, nil
}

// inDomain resolves an address in one of our domains: its virtual alias,
// else the domain's users and aliases, else (with catchAll) the domain's
// catch-all, else it is unknown.
func (e *expansion) inDomain(local, domain string, isLocal, catchAll bool) error {
	if err := e.step(); err != nil {
		return err
	}
	va, err := e.virtualMap()
	if err != nil {
		return err
	}
	if key, targets, ok := e.r.virtualLookup(va, local, domain, isLocal); ok {
		return e.virtualAlias(key, targets, domain, isLocal)
	}
	if catchAll {
		if targets, ok := va.Lookup("@" + domain); ok {
			exists, err := e.r.exists(local, domain, isLocal)
			if err != nil {
				return err
			}
			if !exists {
				return e.virtualAlias("@"+domain, targets, domain, isLocal)
			}
		}
	}
	if isLocal {
		return e.local(local, domain, "")
	}
	return e.virtual(local, domain)
}

// virtualAlias expands the targets of a virtual alias key, found for an
// address in domain. Targets in our domains are resolved again (Postfix
// expands virtual aliases recursively), others are remote.
func (e *expansion) virtualAlias(key string, targets []string, domain string, isLocal bool) error {
	sk := "virtual " + key
	if e.done[sk] && !slices.Contains(e.stack, sk) {
		return nil // reached again through another path
	}
	if err := e.enter(sk); err != nil {
		return err
	}
	defer e.leave()
	// A catch-all's targets get no catch-all themselves: one that is
	// unknown in the same domain would otherwise be caught again.
	catchAll := !strings.HasPrefix(key, "@")
	for _, t := range targets {
		if err := e.step(); err != nil {
			return err
		}
		tl, td := t, ""
		if i := strings.LastIndexByte(t, '@'); i >= 0 {
			tl, td = t[:i], normDomain(t[i+1:])
		}
		tLocal := td == "" || e.r.cfg.IsLocalDomain(td)
		if td == "" {
			// A bare name is a local user or alias (Postfix appends
			// $myorigin).
			td = e.r.cfg.Hostname
		}
		if !tLocal && !e.r.cfg.IsVirtualDomain(td) {
			// The remote side's local part keeps its case (RFC 5321 §2.4).
			if err := e.add(Target{Kind: Remote, Address: tl + "@" + td, UID: -1, GID: -1}); err != nil {
				return err
			}
			continue
		}
		tl = strings.ToLower(tl)
		var err error
		if tl+"@"+td == key || !strings.Contains(key, "@") && tl == key && tLocal {
			// An address that names itself goes to its own user: the usual
			// way to keep a user out of a catch-all.
			if tLocal {
				err = e.local(tl, td, "")
			} else {
				err = e.virtual(tl, td)
			}
		} else {
			err = e.inDomain(tl, td, tLocal, catchAll)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// local resolves a local part in a local domain: its alias if there is one
// (with extension, then without), else the system user. parent is the alias
// whose member this is ("" at the top).
func (e *expansion) local(local, domain, parent string) error {
	al, err := e.aliases()
	if err != nil {
		return err
	}
	base := e.r.base(local)
	for _, key := range candidates(local, base) {
		members, ok := al.m.Lookup(key)
		if !ok {
			continue
		}
		if key == parent {
			// An alias that names itself delivers to the user of that
			// name (Postfix local(8)): "alice: alice, archive".
			return e.user(base, domain, true)
		}
		return e.alias(key, members, domain)
	}
	if base == postmaster {
		// No alias of its own: root's alias, else the user root.
		return e.local("root", domain, parent)
	}
	return e.user(base, domain, true)
}

// aliasRights are the rights of the aliases file's owner, which run its
// commands and write its files; root's stand for default_privs.
func (e *expansion) aliasRights() (rights, error) {
	if e.aliasCtx != nil {
		return *e.aliasCtx, nil
	}
	r := rights{source: config.FromAlias}
	if e.al.uid > 0 {
		var err error
		if r, err = rightsOfOwner(e.al.uid, e.al.gid, config.FromAlias); err != nil {
			return rights{}, fmt.Errorf("owner of the aliases file: %w", err)
		}
	}
	e.aliasCtx = &r
	return r, nil
}

// alias expands the members of alias key.
func (e *expansion) alias(key string, members []string, domain string) error {
	if e.done[key] && !slices.Contains(e.stack, key) {
		return nil // reached again through another path: its targets are in already
	}
	if err := e.enter(key); err != nil {
		return err
	}
	defer e.leave()
	ctx, err := e.aliasRights()
	if err != nil {
		return err
	}
	self := key + "@" + domain
	for _, m := range members {
		if err := e.member(m, self, key, domain, ctx); err != nil {
			return err
		}
	}
	return nil
}

// member handles one member of an alias, a ~/.forward or an :include:
// file; self is the address that listed it (for Delivered-To), parent the
// alias or user name, ctx the rights and origin.
func (e *expansion) member(m, self, parent, domain string, ctx rights) error {
	if err := e.step(); err != nil {
		return err
	}
	switch {
	case strings.HasPrefix(m, "|"):
		return e.destination(Pipe, strings.TrimSpace(m[1:]), self, ctx)
	case strings.HasPrefix(m, "/"):
		return e.destination(File, m, self, ctx)
	case len(m) >= 9 && strings.EqualFold(m[:9], ":include:"):
		return e.include(strings.TrimSpace(m[9:]), self, parent, domain, ctx)
	case ctx.forward:
		return e.forwardAddress(m, domain, ctx)
	}
	return e.address(m, domain, parent)
}

// destination adds a command or file, if its origin may name one, with the
// rights of ctx; root's rights are never used (default_privs instead).
func (e *expansion) destination(k Kind, path, self string, ctx rights) error {
	what, shown := "command", "|"+path
	if k == File {
		what, shown = "file", path
	}
	if !e.r.allowed(k, ctx.source) {
		e.fail("5.7.1", nil, "mail to %s is restricted: %s in %s", what, shown, sourceName(ctx.source))
		return nil
	}
	if path == "" {
		e.fail("5.3.5", nil, "mail system configuration error: empty command in %s", sourceName(ctx.source))
		return nil
	}
	run := ctx
	if run.uid <= 0 {
		p, err := e.r.defaultPrivs()
		if err != nil {
			return err
		}
		run = p
	}
	return e.add(Target{Kind: k, Address: self, User: run.user, UID: run.uid, GID: run.gid, Path: path,
		Via: ctx.source, Home: run.home, Shell: run.shell})
}

func sourceName(source string) string {
	switch source {
	case config.FromForward:
		return "a .forward file"
	case config.FromInclude:
		return "an :include: file"
	}
	return "the aliases file"
}

// include expands an :include: file (Postfix's local/include.c rules): an
// absolute path; a regular file, not world-writable, opened with the
// rights of ctx. In a root-owned aliases file, the rights of the include
// file's owner apply to what it names, unless that is root too; elsewhere
// the rights stay those of the user whose .forward or aliases named it, so
// naming someone else's file gains nothing.
func (e *expansion) include(path, self, parent, domain string, ctx rights) error {
	if !filepath.IsAbs(path) {
		maillog.Warning(":include:%s in %s is not an absolute path", path, sourceName(ctx.source))
		e.fail("5.3.5", nil, "mail system configuration error: :include:%s is not an absolute path", path)
		return nil
	}
	sk := "include " + strconv.Itoa(ctx.uid) + " " + path
	if e.done[sk] {
		// Read once per rights, as Postfix does: an include that names
		// itself, directly or not, ends here.
		return nil
	}
	if err := e.enter(sk); err != nil {
		return err
	}
	defer e.leave()
	bad := func(format string, args ...any) error {
		why := fmt.Sprintf(format, args...)
		maillog.Warning(":include: file %s: %s", path, why)
		e.fail("5.3.5", nil, "mail system configuration error: :include: file %s: %s", path, why)
		return nil
	}
	f, err := e.r.open(OpenRequest{Path: path, UID: ctx.uid, GID: ctx.gid})
	if err != nil {
		return bad("%v", unwrapPath(err))
	}
	info, err := readOpened(f)
	switch {
	case err != nil:
		return bad("%v", unwrapPath(err))
	case !info.regular:
		return bad("not a regular file")
	case info.mode&0002 != 0:
		return bad("writable by everyone")
	}
	inc := ctx
	inc.source = config.FromInclude
	if ctx.uid == 0 && info.uid > 0 {
		owner, err := rightsOfOwner(info.uid, info.gid, config.FromInclude)
		if err != nil {
			return fmt.Errorf(":include: file %s: owner: %w", path, err)
		}
		owner.forward = ctx.forward
		inc = owner
	}
	var members []string
	for n, line := range strings.Split(string(info.data), "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || trimmed[0] == '#' {
			continue
		}
		ts, err := aliases.ParseTargets(line)
		if err != nil {
			return bad("line %d: %v", n+1, err)
		}
		members = append(members, ts...)
	}
	for _, m := range members {
		if err := e.member(m, self, parent, domain, inc); err != nil {
			return err
		}
	}
	return nil
}

// unwrapPath drops the path an *os.PathError repeats.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// address resolves an alias member that is an address or a bare name.
func (e *expansion) address(addr, domain, parent string) error {
	if name, ok := strings.CutPrefix(addr, `\`); ok && !strings.Contains(name, "@") && name != "" {
		// "\user": the user's own mailbox, without aliases or .forward,
		// as in sendmail's and Postfix's aliases.
		return e.user(strings.ToLower(name), domain, false)
	}
	addr = strings.TrimSuffix(strings.TrimPrefix(addr, "<"), ">")
	local, dom := addr, ""
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		local, dom = addr[:i], normDomain(addr[i+1:])
	}
	if local == "" {
		e.unknown("alias %s: member %q", parent, addr)
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

// forwardAddress handles an address in a ~/.forward (or an :include: file
// it names): the user's own name, with or without a leading backslash,
// is the user's mailbox; anything else is submitted again as a new
// message, as Postfix's local(8) does, so loops end at the Delivered-To
// check.
func (e *expansion) forwardAddress(m, domain string, ctx rights) error {
	addr := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(m, `\`), "<"), ">")
	local, dom := addr, ""
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		local, dom = addr[:i], normDomain(addr[i+1:])
	}
	if local == "" {
		e.unknown("%s: .forward of %s: entry %q", ctx.self.Address, ctx.user, m)
		return nil
	}
	if strings.EqualFold(local, ctx.user) && (dom == "" || dom == domain || e.r.cfg.IsLocalDomain(dom)) {
		return e.add(*ctx.self)
	}
	if dom == "" {
		dom = domain
	}
	return e.add(Target{Kind: Forward, Address: local + "@" + dom, UID: -1, GID: -1})
}

// user adds the mailbox of system user name, or what the user's
// ~/.forward says instead when forward is set.
func (e *expansion) user(name, domain string, forward bool) error {
	u, err := lookupUser(name)
	if errors.Is(err, ErrUnknownUser) {
		e.unknown("%s@%s", name, domain)
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
	if forward {
		handled, err := e.dotForward(u, t, domain)
		if err != nil || handled {
			return err
		}
	}
	return e.add(t)
}

// dotForward follows ~/.forward of user u, whose mailbox is mbox, and
// reports whether it decided where the mail goes. The file is opened as
// the user (never as root, HOSTILE 50) and ignored, with a warning, when it
// is a symbolic link, not a regular file, owned by someone other than the
// user or root, or writable by group or others; an empty one means the
// mailbox.
func (e *expansion) dotForward(u *user.User, mbox Target, domain string) (bool, error) {
	if !filepath.IsAbs(u.HomeDir) {
		return false, nil
	}
	path := filepath.Join(u.HomeDir, ".forward")
	sk := "forward " + path
	if e.done[sk] {
		return true, nil // its targets are in already
	}
	ctx, err := rightsOf(u, config.FromForward)
	if err != nil {
		return false, err
	}
	ctx.forward, ctx.self = true, &mbox
	ignore := func(why string) (bool, error) {
		maillog.Warning("ignoring %s of %s: %s", path, u.Username, why)
		return false, nil
	}
	f, err := e.r.open(OpenRequest{Path: path, UID: ctx.uid, GID: ctx.gid, NoFollow: true})
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		return false, nil
	case errors.Is(err, syscall.ELOOP):
		return ignore("it is a symbolic link")
	case errors.Is(err, fs.ErrPermission):
		return ignore(unwrapPath(err).Error())
	case err != nil:
		return false, fmt.Errorf("%s: %w", path, err)
	}
	info, err := readOpened(f)
	switch {
	case errors.Is(err, errTooBig):
		return ignore(err.Error())
	case err != nil:
		return false, fmt.Errorf("%s: %w", path, err)
	case !info.regular:
		return ignore("not a regular file")
	case info.uid != ctx.uid && info.uid != 0:
		return ignore(fmt.Sprintf("owned by uid %d, neither the user nor root", info.uid))
	case info.mode&0022 != 0:
		return ignore(fmt.Sprintf("writable by group or others (mode %04o)", info.mode))
	}
	var entries []string
	for n, line := range strings.Split(string(info.data), "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || trimmed[0] == '#' {
			continue
		}
		ts, err := aliases.ParseTargets(line)
		if err != nil {
			return ignore(fmt.Sprintf("line %d: %v", n+1, err))
		}
		entries = append(entries, ts...)
	}
	if len(entries) == 0 {
		return false, nil // local(8): "An empty ~/.forward file means do not forward mail."
	}
	e.done[sk] = true
	for _, m := range entries {
		if err := e.member(m, mbox.Address, u.Username, domain, ctx); err != nil {
			return true, err
		}
	}
	return true, nil
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
	e.unknown("%s@%s", local, domain)
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
