// Package imapstore serves a user's Dovecot-compatible Maildir
// (pkg/mailbox) to the IMAP engine (pkg/imap/server): it implements
// imap.User, imap.Mailbox and imap.Message, with message structure from
// pkg/mime cached per UID in the folder's posthorn.cache and change
// notification from inotify (Mailbox.Watch).
package imapstore

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/posthorn/posthorn/pkg/imap"
	"github.com/posthorn/posthorn/pkg/mailbox"
)

// User is one logged-in user's Maildir. Every session of the user in a
// process should share the *mailbox.Store, so that they share folder state
// (\Recent, the parsed index) and see each other's changes at once.
type User struct {
	name  string
	store *mailbox.Store
	// sel is the session's selected mailbox, whose \Recent messages
	// STATUS reports (they are this session's, not up for taking).
	sel *view
	// logout runs when the session ends (releasing the store is the
	// caller's business: several sessions share it).
	logout func()
}

// New returns the User name backed by store; logout, if not nil, is
// called once when the session ends.
func New(name string, store *mailbox.Store, logout func()) *User {
	return &User{name: name, store: store, logout: logout}
}

// Username implements imap.User.
func (u *User) Username() string { return u.name }

// Delimiter implements imap.User: Maildir++ separates levels with '.'.
func (u *User) Delimiter() rune { return mailbox.Sep }

// Logout implements imap.User.
func (u *User) Logout() {
	if u.logout != nil {
		u.logout()
		u.logout = nil
	}
}

// mapErr turns pkg/mailbox errors into the IMAP response codes the engine
// sends for them.
func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case imap.AsError(err) != nil:
		return err
	case errors.Is(err, mailbox.ErrNotFound):
		return imap.ErrNonexistent
	case errors.Is(err, mailbox.ErrExists):
		return imap.ErrAlreadyExists
	case errors.Is(err, mailbox.ErrBadName), errors.Is(err, mailbox.ErrBadUTF7):
		return imap.ErrInvalidName
	case errors.Is(err, mailbox.ErrOverQuota):
		return imap.ErrOverQuota
	case errors.Is(err, mailbox.ErrExpunged):
		return imap.ErrExpunged
	case errors.Is(err, mailbox.ErrInbox):
		return &imap.Error{Code: "CANNOT", Text: "INBOX can't be deleted."}
	case errors.Is(err, mailbox.ErrLockTimeout):
		return imap.ErrInUse
	}
	return err
}

// Mailboxes implements imap.User. Parents that exist only as a level of a
// deeper name (\NonExistent in the store's listing) are left to the engine.
func (u *User) Mailboxes(ctx context.Context) ([]imap.MailboxInfo, error) {
	list, err := u.store.List()
	if err != nil {
		return nil, err
	}
	out := make([]imap.MailboxInfo, 0, len(list))
	for _, mi := range list {
		info := imap.MailboxInfo{Name: mi.Name}
		skip := false
		for _, a := range mi.Attributes {
			switch a {
			case `\NonExistent`:
				skip = true
			case `\Noselect`, `\Noinferiors`, `\Marked`, `\Unmarked`:
				info.Attrs = append(info.Attrs, a)
			}
		}
		if skip {
			continue
		}
		if mi.SpecialUse != "" {
			info.SpecialUse = []string{mi.SpecialUse}
		}
		out = append(out, info)
	}
	return out, nil
}

// Subscriptions implements imap.User.
func (u *User) Subscriptions(ctx context.Context) ([]string, error) {
	return u.store.Subscriptions()
}

// Subscribe implements imap.User.
func (u *User) Subscribe(ctx context.Context, name string) error {
	if !u.store.Exists(mailbox.NormalizeName(name)) {
		return imap.ErrNonexistent
	}
	return mapErr(u.store.Subscribe(mailbox.NormalizeName(name)))
}

// Unsubscribe implements imap.User.
func (u *User) Unsubscribe(ctx context.Context, name string) error {
	return mapErr(u.store.Unsubscribe(mailbox.NormalizeName(name)))
}

// Create implements imap.User; the store keeps one special use per
// mailbox, as Dovecot's configuration does.
func (u *User) Create(ctx context.Context, name string, use []string) error {
	if len(use) > 1 {
		return imap.ErrUseNotAllowed
	}
	su := ""
	if len(use) == 1 {
		su = use[0]
	}
	n, err := mailbox.ValidateName(name, true)
	if err != nil {
		return imap.ErrInvalidName
	}
	return mapErr(u.store.Create(n, su))
}

// Delete implements imap.User.
func (u *User) Delete(ctx context.Context, name string) error {
	if imap.IsInbox(name) {
		return &imap.Error{Code: "CANNOT", Text: "INBOX can't be deleted."}
	}
	return mapErr(u.store.Delete(name))
}

// Rename implements imap.User. Renaming INBOX moves its messages into a
// new mailbox and leaves INBOX empty (RFC 3501 §6.3.5); the store itself
// renames only folders.
func (u *User) Rename(ctx context.Context, oldName, newName string) error {
	n, err := mailbox.ValidateName(newName, true)
	if err != nil {
		return imap.ErrInvalidName
	}
	if !imap.IsInbox(oldName) {
		return mapErr(u.store.Rename(oldName, n))
	}
	if err := u.store.Create(n, ""); err != nil {
		return mapErr(err)
	}
	src, err := u.store.Open(mailbox.Inbox)
	if err != nil {
		return mapErr(err)
	}
	dst, err := u.store.Open(n)
	if err != nil {
		return mapErr(err)
	}
	_, _, err = src.Move(src.UIDs(), dst)
	return mapErr(err)
}

// Status implements imap.User. RECENT counts the messages no session has
// taken as \Recent, without taking them; for the session's own selected
// mailbox it is the number recent in that session, as Dovecot reports it.
func (u *User) Status(ctx context.Context, name string, items imap.StatusItems) (*imap.MailboxStatus, error) {
	m, err := u.store.Open(name)
	if err != nil {
		return nil, mapErr(err)
	}
	st := &imap.MailboxStatus{
		Messages:    uint32(m.Count()),
		UIDNext:     m.UIDNext(),
		UIDValidity: m.UIDValidity(),
	}
	if items&imap.StatusHighestModSeq != 0 {
		st.HighestModSeq = m.HighestModSeq()
	}
	if items&(imap.StatusUnseen|imap.StatusDeleted|imap.StatusSize|imap.StatusDeletedStorage|imap.StatusRecent) != 0 {
		st.Recent = uint32(m.RecentCount())
		if v := u.sel; v != nil && v.m.Name() == m.Name() {
			st.Recent = uint32(v.m.RecentCount())
		}
		for _, msg := range m.Messages() {
			if !imap.HasFlag(msg.Flags, imap.FlagSeen) {
				st.Unseen++
			}
			if imap.HasFlag(msg.Flags, imap.FlagDeleted) {
				st.Deleted++
				st.DeletedStorage += msg.Size
			}
			st.Size += msg.Size
		}
	}
	return st, nil
}

// Open implements imap.User: a read-write SELECT takes the messages no
// session has taken as \Recent (RFC 3501 §2.3.2), here and at every later
// sync; EXAMINE shows them as recent but leaves them.
func (u *User) Open(ctx context.Context, name string, readOnly bool) (imap.Mailbox, error) {
	mode := mailbox.RecentTake
	if readOnly {
		mode = mailbox.RecentPeek
	}
	m, err := u.store.Select(name, mode)
	if err != nil {
		return nil, mapErr(err)
	}
	v := &view{u: u, m: m, readOnly: readOnly, dateOf: m.InternalDate}
	u.sel = v
	return v, nil
}

// Append implements imap.User.
func (u *User) Append(ctx context.Context, name string, flags []string, date time.Time, body io.Reader, size int64) (imap.AppendResult, error) {
	m, err := u.store.Open(name)
	if err != nil {
		if errors.Is(err, mailbox.ErrNotFound) {
			// The literal must still be read for the engine to go on.
			io.Copy(io.Discard, io.LimitReader(body, size))
		}
		return imap.AppendResult{}, mapErr(err)
	}
	cr := &countReader{r: io.LimitReader(body, size)}
	uid, err := m.Append(cr, flags, date)
	if err == nil && cr.n != size {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return imap.AppendResult{}, mapErr(err)
	}
	return imap.AppendResult{UIDValidity: m.UIDValidity(), UID: uid}, nil
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// QuotaRoots implements imap.User: one root, "", when a quota is kept.
func (u *User) QuotaRoots(ctx context.Context, name string) ([]string, error) {
	if !u.store.Exists(mailbox.NormalizeName(name)) {
		return nil, imap.ErrNonexistent
	}
	if l, ok := u.store.QuotaLimits(); !ok || (l.Bytes == 0 && l.Count == 0) {
		return nil, nil
	}
	return []string{""}, nil
}

// Quota implements imap.User from the Maildir++ maildirsize accounting.
func (u *User) Quota(ctx context.Context, root string) ([]imap.QuotaResource, error) {
	l, ok := u.store.QuotaLimits()
	if root != "" || !ok || (l.Bytes == 0 && l.Count == 0) {
		return nil, imap.ErrNoQuotaRoot
	}
	b, c, err := u.store.QuotaUsage()
	if err != nil {
		return nil, err
	}
	var out []imap.QuotaResource
	if l.Bytes > 0 {
		out = append(out, imap.QuotaResource{Name: "STORAGE", Usage: uint64(b+1023) / 1024, Limit: uint64(l.Bytes) / 1024})
	}
	if l.Count > 0 {
		out = append(out, imap.QuotaResource{Name: "MESSAGE", Usage: uint64(c), Limit: uint64(l.Count)})
	}
	return out, nil
}
