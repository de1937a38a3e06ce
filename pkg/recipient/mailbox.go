package recipient

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// ErrNoMaildir: the user's mail is in an mbox, which IMAP and POP3 do not
// serve.
var ErrNoMaildir = errors.New("mailbox is not a Maildir")

// Mailbox returns a logged-in user's own mailbox and its owner: the user
// name as the auth daemon canonicalised it (alice@example.test for a
// virtual user, alice for a system user), with no alias, subaddress or
// forwarding applied — a login opens exactly that user's mail.
func (r *Resolver) Mailbox(login string) (Target, error) {
	local, domain, virtual := strings.Cut(login, "@")
	domain = normDomain(domain)
	if virtual && r.cfg.IsVirtualDomain(domain) {
		local = strings.ToLower(local)
		path, err := mailboxPath(r.cfg.Virtual.Mailbox, local, domain)
		if err != nil {
			return Target{}, err
		}
		uid, gid, err := r.vmailIDs()
		if err != nil {
			return Target{}, err
		}
		return Target{Kind: Maildir, Address: local + "@" + domain, User: r.cfg.Virtual.User, UID: uid, GID: gid, Path: path}, nil
	}
	if virtual && !r.cfg.IsLocalDomain(domain) {
		return Target{}, fmt.Errorf("%s: %w", login, ErrNotLocal)
	}
	u, err := lookupUser(local)
	if err != nil {
		return Target{}, err
	}
	hm := r.cfg.Local.HomeMailbox
	if !strings.HasSuffix(hm, "/") {
		return Target{}, fmt.Errorf("%s: %w (local.home_mailbox is %q)", login, ErrNoMaildir, hm)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return Target{Kind: Maildir, Address: u.Username, User: u.Username, UID: uid, GID: gid,
		Path: filepath.Join(u.HomeDir, hm)}, nil
}
