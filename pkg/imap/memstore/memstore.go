// Package memstore is an in-memory mail store implementing the interfaces
// of package imap. It exists to exercise the IMAP engine: it has the
// semantics a Dovecot-like Maildir store has (UIDs, UIDVALIDITY,
// mod-sequences with an expunge log, \Recent claimed by the first session,
// change notification to every open view) without touching disk.
package memstore

import (
	"bytes"
	"context"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/posthorn/posthorn/pkg/imap"
)

// Backend holds users and their passwords.
type Backend struct {
	mu    sync.Mutex
	users map[string]*User
	// LoginHook, when set, is called on every login attempt (tests).
	LoginHook func(user string)
}

// New returns an empty backend.
func New() *Backend { return &Backend{users: map[string]*User{}} }

// AddUser creates a user with an INBOX and returns it.
func (b *Backend) AddUser(name, password string) *User {
	b.mu.Lock()
	defer b.mu.Unlock()
	u := &User{name: name, password: password, boxes: map[string]*box{}, subs: map[string]bool{},
		StorageLimitKiB: 0, nextValidity: 1000}
	u.boxes[imap.Inbox] = u.newBox(imap.Inbox, nil)
	b.users[name] = u
	return u
}

// Login implements imap.Backend.
func (b *Backend) Login(ctx context.Context, c *imap.ConnInfo, authz, user, password string) (imap.User, error) {
	if b.LoginHook != nil {
		b.LoginHook(user)
	}
	b.mu.Lock()
	u := b.users[user]
	b.mu.Unlock()
	if u == nil || u.password != password {
		return nil, imap.ErrAuthFailed
	}
	if authz != "" && authz != user {
		return nil, imap.ErrAuthzFailed
	}
	return u, nil
}

// User is one user's mailboxes. It is shared by all sessions of the user.
type User struct {
	name, password string

	mu           sync.Mutex
	boxes        map[string]*box
	subs         map[string]bool
	nextValidity uint32

	// StorageLimitKiB and MessageLimit set the quota of root "" (0: none).
	StorageLimitKiB uint64
	MessageLimit    uint64
}

type box struct {
	name        string
	use         []string
	uidValidity uint32
	uidNext     uint32
	modSeq      uint64
	msgs        []*message // ascending UID
	expunged    []expungeRecord
	keywords    []string
	recentUpTo  uint32 // highest UID some read-write view has claimed as \Recent
	views       map[*view]bool
	noSelect    bool
}

type expungeRecord struct {
	uid    uint32
	modSeq uint64
}

type message struct {
	uid     uint32
	flags   []string
	modSeq  uint64
	date    time.Time
	content []byte
	parsed  *imap.Part
}

func (u *User) newBox(name string, use []string) *box {
	u.nextValidity++
	return &box{name: name, use: use, uidValidity: u.nextValidity, uidNext: 1, modSeq: 1, views: map[*view]bool{}}
}

// Username implements imap.User.
func (u *User) Username() string { return u.name }

// Delimiter implements imap.User.
func (u *User) Delimiter() rune { return '.' }

// Logout implements imap.User.
func (u *User) Logout() {}

// lookup finds a mailbox; INBOX is case-insensitive.
func (u *User) lookup(name string) *box {
	if imap.IsInbox(name) {
		name = imap.Inbox
	}
	return u.boxes[name]
}

// Mailboxes implements imap.User.
func (u *User) Mailboxes(ctx context.Context) ([]imap.MailboxInfo, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []imap.MailboxInfo
	for _, b := range u.boxes {
		mi := imap.MailboxInfo{Name: b.name, SpecialUse: b.use}
		if b.noSelect {
			mi.Attrs = []string{imap.AttrNoselect}
		}
		out = append(out, mi)
	}
	return out, nil
}

// Subscriptions implements imap.User.
func (u *User) Subscriptions(ctx context.Context) ([]string, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []string
	for s := range u.subs {
		out = append(out, s)
	}
	sort.Strings(out)
	return out, nil
}

// Subscribe implements imap.User.
func (u *User) Subscribe(ctx context.Context, name string) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.lookup(name) == nil {
		return imap.ErrNonexistent
	}
	if imap.IsInbox(name) {
		name = imap.Inbox
	}
	u.subs[name] = true
	return nil
}

// Unsubscribe implements imap.User.
func (u *User) Unsubscribe(ctx context.Context, name string) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if imap.IsInbox(name) {
		name = imap.Inbox
	}
	if !u.subs[name] {
		return &imap.Error{Code: "NONEXISTENT", Text: "Not subscribed."}
	}
	delete(u.subs, name)
	return nil
}

// maildirReserved are names a Maildir with LAYOUT=fs cannot hold at the
// top level; a store must refuse them itself (HOSTILE 42).
var maildirReserved = []string{"cur", "new", "tmp"}

func reserved(name string) bool {
	for _, r := range maildirReserved {
		if strings.EqualFold(strings.SplitN(name, ".", 2)[0], r) {
			return true
		}
	}
	return false
}

// Create implements imap.User.
func (u *User) Create(ctx context.Context, name string, use []string) error {
	if reserved(name) {
		return imap.ErrInvalidName
	}
	for _, f := range use {
		ok := false
		for _, s := range imap.SpecialUses {
			ok = ok || s == f
		}
		if !ok {
			return imap.ErrUseNotAllowed
		}
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if b := u.lookup(name); b != nil {
		if !b.noSelect {
			return imap.ErrAlreadyExists
		}
		b.noSelect = false
		return nil
	}
	u.boxes[name] = u.newBox(name, use)
	return nil
}

// Delete implements imap.User. A mailbox with children becomes \Noselect,
// as RFC 3501 §6.3.4 describes.
func (u *User) Delete(ctx context.Context, name string) error {
	if imap.IsInbox(name) {
		return &imap.Error{Code: "CANNOT", Text: "INBOX can't be deleted."}
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	b := u.lookup(name)
	if b == nil || b.noSelect {
		return imap.ErrNonexistent
	}
	for n := range u.boxes {
		if strings.HasPrefix(n, name+".") {
			b.noSelect = true
			b.msgs = nil
			return nil
		}
	}
	delete(u.boxes, name)
	return nil
}

// Rename implements imap.User.
func (u *User) Rename(ctx context.Context, oldName, newName string) error {
	if reserved(newName) {
		return imap.ErrInvalidName
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	b := u.lookup(oldName)
	if b == nil {
		return imap.ErrNonexistent
	}
	if u.lookup(newName) != nil {
		return imap.ErrAlreadyExists
	}
	if b.name == imap.Inbox {
		// RFC 3501 §6.3.5: move INBOX's messages, leave INBOX empty.
		nb := u.newBox(newName, nil)
		for _, m := range b.msgs {
			nm := *m
			nm.uid = nb.uidNext
			nb.uidNext++
			nb.msgs = append(nb.msgs, &nm)
		}
		for _, m := range b.msgs {
			b.expunge(m.uid)
		}
		b.msgs = nil
		u.boxes[newName] = nb
		b.notify()
		return nil
	}
	old := b.name
	var moving []*box
	for n, c := range u.boxes {
		if n == old || strings.HasPrefix(n, old+".") {
			moving = append(moving, c)
		}
	}
	for _, c := range moving {
		delete(u.boxes, c.name)
		c.name = newName + c.name[len(old):]
		u.boxes[c.name] = c
	}
	return nil
}

// Status implements imap.User.
func (u *User) Status(ctx context.Context, name string, items imap.StatusItems) (*imap.MailboxStatus, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	b := u.lookup(name)
	if b == nil || b.noSelect {
		return nil, imap.ErrNonexistent
	}
	st := &imap.MailboxStatus{
		Messages: uint32(len(b.msgs)), UIDNext: b.uidNext, UIDValidity: b.uidValidity, HighestModSeq: b.modSeq,
	}
	for _, m := range b.msgs {
		if m.uid > b.recentUpTo {
			st.Recent++
		}
		if !imap.HasFlag(m.flags, imap.FlagSeen) {
			st.Unseen++
		}
		if imap.HasFlag(m.flags, imap.FlagDeleted) {
			st.Deleted++
			st.DeletedStorage += int64(len(m.content))
		}
		st.Size += int64(len(m.content))
	}
	return st, nil
}

func (u *User) usage() (kib, msgs uint64) {
	var n int64
	for _, b := range u.boxes {
		for _, m := range b.msgs {
			n += int64(len(m.content))
			msgs++
		}
	}
	return uint64(n+1023) / 1024, msgs
}

// QuotaRoots implements imap.User: one root, "", for all mailboxes.
func (u *User) QuotaRoots(ctx context.Context, name string) ([]string, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.lookup(name) == nil {
		return nil, imap.ErrNonexistent
	}
	if u.StorageLimitKiB == 0 && u.MessageLimit == 0 {
		return nil, nil
	}
	return []string{""}, nil
}

// Quota implements imap.User.
func (u *User) Quota(ctx context.Context, root string) ([]imap.QuotaResource, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if root != "" || (u.StorageLimitKiB == 0 && u.MessageLimit == 0) {
		return nil, imap.ErrNoQuotaRoot
	}
	kib, n := u.usage()
	var out []imap.QuotaResource
	if u.StorageLimitKiB > 0 {
		out = append(out, imap.QuotaResource{Name: "STORAGE", Usage: kib, Limit: u.StorageLimitKiB})
	}
	if u.MessageLimit > 0 {
		out = append(out, imap.QuotaResource{Name: "MESSAGE", Usage: n, Limit: u.MessageLimit})
	}
	return out, nil
}

// overQuota reports whether adding size octets and n messages exceeds the
// quota; u.mu is held.
func (u *User) overQuota(size int64, n int) bool {
	kib, msgs := u.usage()
	if u.StorageLimitKiB > 0 && kib+uint64(size+1023)/1024 > u.StorageLimitKiB {
		return true
	}
	return u.MessageLimit > 0 && msgs+uint64(n) > u.MessageLimit
}

// Append implements imap.User.
func (u *User) Append(ctx context.Context, name string, flags []string, date time.Time, body io.Reader, size int64) (imap.AppendResult, error) {
	content := make([]byte, 0, min(size, 1<<20))
	buf := bytes.NewBuffer(content)
	if n, err := io.Copy(buf, body); err != nil || n != size {
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return imap.AppendResult{}, err
	}
	u.mu.Lock()
	b := u.lookup(name)
	if b == nil || b.noSelect {
		u.mu.Unlock()
		return imap.AppendResult{}, imap.ErrNonexistent
	}
	if u.overQuota(size, 1) {
		u.mu.Unlock()
		return imap.AppendResult{}, imap.ErrOverQuota
	}
	if date.IsZero() {
		date = time.Now()
	}
	uid := b.add(buf.Bytes(), flags, date)
	res := imap.AppendResult{UIDValidity: b.uidValidity, UID: uid}
	u.mu.Unlock()
	b.notify()
	return res, nil
}

// Deliver adds a message to a mailbox as a delivery agent would.
func (u *User) Deliver(name string, content []byte, flags ...string) uint32 {
	u.mu.Lock()
	b := u.lookup(name)
	uid := b.add(content, flags, time.Now())
	u.mu.Unlock()
	b.notify()
	return uid
}

// SetFlags changes flags as another client would (tests).
func (u *User) SetFlags(name string, uid uint32, flags ...string) {
	u.mu.Lock()
	b := u.lookup(name)
	for _, m := range b.msgs {
		if m.uid == uid {
			m.flags = append([]string(nil), flags...)
			b.modSeq++
			m.modSeq = b.modSeq
		}
	}
	u.mu.Unlock()
	b.notify()
}

// ExpungeUID removes a message as another client would (tests).
func (u *User) ExpungeUID(name string, uid uint32) {
	u.mu.Lock()
	b := u.lookup(name)
	b.expunge(uid)
	u.mu.Unlock()
	b.notify()
}

// UIDValidity returns a mailbox's UIDVALIDITY (tests).
func (u *User) UIDValidity(name string) uint32 {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.lookup(name).uidValidity
}

// add appends a message; the user lock is held.
func (b *box) add(content []byte, flags []string, date time.Time) uint32 {
	b.modSeq++
	m := &message{uid: b.uidNext, flags: normFlags(flags), modSeq: b.modSeq, date: date, content: content}
	b.uidNext++
	b.msgs = append(b.msgs, m)
	b.learnKeywords(m.flags)
	return m.uid
}

func (b *box) learnKeywords(flags []string) {
	for _, f := range flags {
		if !strings.HasPrefix(f, `\`) && !imap.HasFlag(b.keywords, f) {
			b.keywords = append(b.keywords, f)
		}
	}
}

// expunge removes a message and logs it; the user lock is held.
func (b *box) expunge(uid uint32) {
	i := sort.Search(len(b.msgs), func(i int) bool { return b.msgs[i].uid >= uid })
	if i < len(b.msgs) && b.msgs[i].uid == uid {
		b.msgs = append(b.msgs[:i], b.msgs[i+1:]...)
		b.modSeq++
		b.expunged = append(b.expunged, expungeRecord{uid, b.modSeq})
	}
}

// notify wakes every open view; called without the user lock.
func (b *box) notify() {
	var fns []func()
	for v := range b.snapshotViews() {
		if fn := v.notifyFn(); fn != nil {
			fns = append(fns, fn)
		}
	}
	for _, fn := range fns {
		fn()
	}
}

var viewsMu sync.Mutex

func (b *box) snapshotViews() map[*view]bool {
	viewsMu.Lock()
	defer viewsMu.Unlock()
	out := make(map[*view]bool, len(b.views))
	for v := range b.views {
		out[v] = true
	}
	return out
}

func normFlags(flags []string) []string {
	out := make([]string, 0, len(flags))
	for _, f := range flags {
		f, _ = imap.CanonicalFlag(f)
		if f == imap.FlagRecent || imap.HasFlag(out, f) {
			continue
		}
		out = append(out, f)
	}
	return out
}
