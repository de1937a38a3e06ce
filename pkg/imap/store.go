package imap

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"time"
)

// The interfaces below are what the engine needs from authentication and
// storage. They follow the shape of a Dovecot-like Maildir++ store: every
// message has a UID, flags are strings, every change bumps a per-mailbox
// mod-sequence (RFC 7162), and expunges are remembered with the modseq at
// which they happened. The engine keeps each session's view (sequence
// numbers, what it has told the client) itself; the store is the shared
// truth and is asked "what changed since modseq M".
//
// Unless stated otherwise, methods are called from one goroutine per
// session, but different sessions call concurrently into the same store.

// ConnInfo describes a client connection to the Backend.
type ConnInfo struct {
	RemoteAddr net.Addr
	LocalAddr  net.Addr
	TLS        *tls.ConnectionState // nil for plaintext
	Secured    bool                 // TLS, or a connection the config treats as secure (loopback)
	ClientID   map[string]string    // what the client sent with ID (RFC 2971), if it did
}

// Backend authenticates users and opens their mail.
type Backend interface {
	// Login checks a password. authz is the SASL authorization identity
	// (RFC 4616), "" when the client did not send one or used LOGIN. It
	// returns ErrAuthFailed for wrong credentials, ErrAuthzFailed when the
	// user may not act as authz, ErrUnavailable for a temporary failure.
	Login(ctx context.Context, c *ConnInfo, authz, user, password string) (User, error)
}

// StatusItems selects what Status must compute; a store may fill in more.
type StatusItems uint16

// Status items (RFC 3501 §6.3.10, RFC 7162, RFC 8438, RFC 9051, RFC 9208).
const (
	StatusMessages StatusItems = 1 << iota
	StatusRecent
	StatusUIDNext
	StatusUIDValidity
	StatusUnseen
	StatusHighestModSeq
	StatusSize
	StatusDeleted
	StatusDeletedStorage
)

// MailboxStatus answers STATUS and LIST-STATUS.
type MailboxStatus struct {
	Messages, Recent, Unseen, Deleted uint32
	UIDNext, UIDValidity              uint32
	HighestModSeq                     uint64
	Size, DeletedStorage              int64 // octets (RFC822.SIZE sums)
}

// MailboxInfo is one mailbox of a user.
type MailboxInfo struct {
	Name string // full UTF-8 name with the hierarchy delimiter; "INBOX" for the inbox
	// Attrs may hold \Noselect, \Noinferiors, \Marked, \Unmarked. The
	// engine adds \HasChildren/\HasNoChildren, \Subscribed, \NonExistent.
	Attrs []string
	// SpecialUse holds RFC 6154 attributes such as \Sent.
	SpecialUse []string
}

// QuotaResource is one resource of a quota root (RFC 9208 §5): "STORAGE"
// counts KiB (1024 octets), "MESSAGE" messages.
type QuotaResource struct {
	Name         string
	Usage, Limit uint64
}

// AppendResult reports where APPEND put a message (RFC 4315 APPENDUID).
type AppendResult struct {
	UIDValidity, UID uint32
}

// CopyResult reports a COPY or MOVE (RFC 4315 COPYUID): Source[i] was
// copied to Dest[i], in the same order.
type CopyResult struct {
	UIDValidity uint32
	Source      []uint32
	Dest        []uint32
}

// User is one authenticated user's mail store.
type User interface {
	// Username is the canonical name of the logged-in user, for logs.
	Username() string
	// Delimiter is the hierarchy separator ('.' for Maildir++ as Dovecot
	// shows it by default). It is the only separator the engine knows.
	Delimiter() rune

	// Mailboxes lists every mailbox (in any order). Parents that do not
	// exist (Maildir++ may have "a.b" without "a") are left out; the
	// engine adds them where LIST needs them.
	Mailboxes(ctx context.Context) ([]MailboxInfo, error)
	// Subscriptions lists subscribed names; they need not exist.
	Subscriptions(ctx context.Context) ([]string, error)
	Subscribe(ctx context.Context, name string) error
	Unsubscribe(ctx context.Context, name string) error

	// Create makes a mailbox, with RFC 6154 special-use attributes when
	// use is not empty (ErrUseNotAllowed when unsupported). The name has
	// passed the engine's syntax checks (no empty, "." or ".." levels, no
	// control characters, no '/' unless it is the delimiter); the store
	// still refuses names its layout cannot hold with ErrInvalidName.
	Create(ctx context.Context, name string, use []string) error
	Delete(ctx context.Context, name string) error
	// Rename renames a mailbox and its children; renaming INBOX moves its
	// messages to the new mailbox and leaves INBOX empty (RFC 3501 §6.3.5).
	Rename(ctx context.Context, oldName, newName string) error
	Status(ctx context.Context, name string, items StatusItems) (*MailboxStatus, error)

	// Open selects a mailbox for one session (SELECT, or EXAMINE with
	// readOnly). Each call returns a new, independent Mailbox.
	Open(ctx context.Context, name string, readOnly bool) (Mailbox, error)

	// Append stores a message of exactly size octets read from body.
	// flags never contains \Recent. date is zero when the client gave none.
	// ErrNonexistent makes the engine answer NO [TRYCREATE].
	Append(ctx context.Context, name string, flags []string, date time.Time, body io.Reader, size int64) (AppendResult, error)

	// QuotaRoots returns the quota roots of a mailbox (often one, "").
	QuotaRoots(ctx context.Context, name string) ([]string, error)
	// Quota returns the resources of a quota root, ErrNoQuotaRoot if none.
	Quota(ctx context.Context, root string) ([]QuotaResource, error)

	// Logout is called once when the session ends.
	Logout()
}

// SelectInfo describes a mailbox when it is opened.
type SelectInfo struct {
	UIDValidity uint32
	// Keywords holds the keywords defined in the mailbox, for FLAGS.
	Keywords []string
	// NewKeywords reports whether clients may create keywords
	// (PERMANENTFLAGS "\*").
	NewKeywords bool
	// ReadOnly is set when the store could only open the mailbox
	// read-only even though SELECT asked for read-write.
	ReadOnly bool
	// NoModSeq is set when the mailbox does not keep mod-sequences
	// (RFC 7162 NOMODSEQ); the engine then refuses CONDSTORE features on it.
	NoModSeq bool
}

// MessageInfo is what the store's index knows of a message without
// reading it. The engine does not keep it beyond the call it came with.
type MessageInfo struct {
	UID          uint32
	Flags        []string // system flags in canonical spelling, and keywords; never \Recent
	ModSeq       uint64   // > 0
	InternalDate time.Time
	// DateOf, when set and InternalDate is zero, reads INTERNALDATE: a
	// store may leave it unread until a command needs it (Date).
	DateOf func(uid uint32) time.Time
	Size   int64 // RFC822.SIZE: octets of the content with CRLF line endings
	// Recent is meaningful only in Poll: this view is the first session to
	// learn of the message, so it is \Recent here (RFC 3501 §2.3.2).
	Recent bool
}

// Date returns INTERNALDATE, read through DateOf the first time when the
// store left it unread.
func (mi *MessageInfo) Date() time.Time {
	if mi.InternalDate.IsZero() && mi.DateOf != nil {
		mi.InternalDate = mi.DateOf(mi.UID)
	}
	return mi.InternalDate
}

// Changes is the result of a Poll.
type Changes struct {
	UIDNext       uint32
	HighestModSeq uint64
	// Expunged holds every UID expunged at a mod-sequence above since. It
	// may hold more (any UID not present, up to UIDNext) when the store's
	// expunge log does not reach back that far; the engine ignores UIDs it
	// does not know. RFC 7162 §3.2.5.1 allows the same for VANISHED.
	Expunged UIDSet
	// Keywords is non-nil when the set of defined keywords changed.
	Keywords []string
}

// StoreOp is the STORE operation (RFC 3501 §6.4.6).
type StoreOp uint8

// Store operations.
const (
	StoreReplace StoreOp = iota // FLAGS
	StoreAdd                    // +FLAGS
	StoreRemove                 // -FLAGS
)

// Mailbox is one session's handle on a selected mailbox.
type Mailbox interface {
	// Info returns what the engine reports at SELECT.
	Info() SelectInfo

	// Poll reports what changed since mod-sequence since: fn is called in
	// ascending UID order for every message now present whose ModSeq is
	// above since (new messages included, with Recent set for the first
	// view to see them), and Expunged lists what went away. Poll(0) lists
	// the whole mailbox. Info passed to fn is only valid during the call.
	// With fn nil only the Changes are wanted (VANISHED (EARLIER)), and no
	// message may be claimed as \Recent.
	Poll(ctx context.Context, since uint64, fn func(*MessageInfo)) (Changes, error)

	// Fetch calls fn in ascending UID order for each message of uids that
	// still exists; UIDs that do not are skipped. uids holds only UIDs the
	// session knows, but iterate messages, not ranges.
	Fetch(ctx context.Context, uids UIDSet, fn func(*MessageInfo) error) error

	// OpenMessage gives access to a message's content and structure;
	// ErrExpunged when it no longer exists.
	OpenMessage(ctx context.Context, uid uint32) (Message, error)

	// Store changes flags on the messages of uids that still exist and
	// calls fn with the resulting state of each of them, changed or not.
	// With unchangedSince > 0 (RFC 7162 §3.1.3) a message whose ModSeq is
	// above it is left alone and returned in failed instead (the engine
	// answers UNCHANGEDSINCE 0 itself: every message fails it). Each message
	// that changes gets a new ModSeq above every earlier one.
	Store(ctx context.Context, uids UIDSet, op StoreOp, flags []string, unchangedSince uint64, fn func(*MessageInfo)) (failed UIDSet, err error)

	// Copy copies messages to another mailbox (ErrNonexistent → TRYCREATE),
	// in ascending source UID order, so Source and Dest both ascend.
	Copy(ctx context.Context, uids UIDSet, dest string) (CopyResult, error)
	// Move moves messages (RFC 6851); the expunges show up in Poll.
	Move(ctx context.Context, uids UIDSet, dest string) (CopyResult, error)
	// Expunge removes the messages flagged \Deleted, only those in uids
	// when uids is not nil (UID EXPUNGE, RFC 4315). The expunges show up
	// in Poll.
	Expunge(ctx context.Context, uids UIDSet) error

	// SetNotify registers fn to be called, from any goroutine and without
	// waiting on the session, whenever the mailbox may have changed (a
	// delivery, another session's STORE). nil unregisters. fn must be
	// cheap; the engine only records the wake-up.
	SetNotify(fn func())

	// Close releases the handle (CLOSE, UNSELECT, SELECT of another
	// mailbox, logout).
	Close() error
}

// Message is one message's content and structure, valid until Close.
type Message interface {
	// Structure returns the parsed message: the root Part with Envelope
	// set. It may be parsed lazily on the first call.
	Structure() (*Part, error)
	// Reader returns the content (CRLF line endings, RFC822.SIZE octets)
	// starting at offset off.
	Reader(off int64) (io.ReadCloser, error)
	Close() error
}

// TextMatcher may be implemented by a Message whose store searches text
// better than the engine's own decoder (other charsets, an index). kind
// is SearchHeader (field is the header name), SearchBody or SearchText;
// needle is UTF-8 and matching is a case-insensitive substring test on
// decoded text (RFC 3501 §6.4.4).
type TextMatcher interface {
	MatchText(kind SearchOp, field, needle string) (bool, error)
}

// StructureText may be implemented by a Message whose parser writes
// ENVELOPE and BODY/BODYSTRUCTURE itself (pkg/mime writes them exactly as
// Dovecot does, string quoting included). The engine then sends these
// values as they are instead of serialising Structure, so the answer does
// not depend on how the engine would quote the same text.
type StructureText interface {
	// EnvelopeText is the ENVELOPE value, parenthesised list included.
	EnvelopeText() string
	// BodyStructureText is BODYSTRUCTURE (extended) or BODY.
	BodyStructureText(extended bool) string
}

// Snapshotter may be implemented by a Mailbox that can hand SELECT its
// messages in bulk; the engine then needs no Poll callback per message,
// and SELECT of a large mailbox costs little more than a small one.
type Snapshotter interface {
	// Snapshot synchronizes as Poll(ctx, 0, fn) does and returns the
	// mailbox as SELECT reports it.
	Snapshot(ctx context.Context) (*Snapshot, error)
}

// Snapshot is a mailbox's state at SELECT.
type Snapshot struct {
	// UIDs in ascending order; index i is sequence number i+1. The slice
	// may be shared: the engine never changes it in place, and its
	// capacity equals its length so that appending copies.
	UIDs []uint32
	// FirstUnseen is the sequence number of the first message without
	// \Seen, 0 when every message is seen.
	FirstUnseen uint32
	// Recent are the messages \Recent in this session.
	Recent UIDSet
	// Changes as Poll returns them (UIDNext, HighestModSeq, Keywords).
	Changes Changes
}

// MessageContent may be implemented by a Message that holds its content in
// memory, or can read a small one whole cheaply. The engine's own text
// search (SEARCH BODY, TEXT, HEADER and friends, without TextMatcher) then
// works on the octets where they lie instead of going through Reader.
type MessageContent interface {
	// Content returns the whole content (CRLF line endings, RFC822.SIZE
	// octets, the offsets of Structure's parts index it), valid until
	// Close; the engine does not modify it. ok is false, with no error,
	// when the message is too large to be held: the engine then uses
	// Reader. An error is reported as Reader's would be (ErrExpunged for a
	// message gone from the disk).
	Content() (content []byte, ok bool, err error)
}
