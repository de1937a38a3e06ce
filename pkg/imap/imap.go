// Package imap is the vocabulary shared by posthorn's IMAP protocol engine
// (pkg/imap/server), its wire codec (pkg/imap/wire) and the stores behind
// it: sequence and UID sets, flags, search criteria, the message structure
// the engine serialises as ENVELOPE and BODYSTRUCTURE, and the interfaces a
// mail store implements (Backend, User, Mailbox, Message).
//
// Names crossing these interfaces are UTF-8; the engine alone deals with
// modified UTF-7 on the wire (RFC 3501 §5.1.3) and never builds a path.
//
// What a store adapter must provide, in short:
//
//   - Message content as IMAP sees it: CRLF line endings, RFC822.SIZE
//     octets, readable from any offset (Message.Reader). A Maildir keeps LF;
//     the adapter serves a CRLF view of it.
//   - The MIME structure with the offsets of every header and body in that
//     CRLF view (Part), and the ENVELOPE values as raw header text.
//   - UIDs that only grow, a mod-sequence that grows with every change
//     (flags, new messages, expunges), and an expunge log answering "what
//     went away since modseq M" (a superset is allowed).
//   - \Recent claimed by the first session that learns of a message.
//   - A notification (Mailbox.SetNotify) when anything may have changed,
//     from a delivery or from another session or process.
//   - Errors as *Error values (ErrNonexistent, ErrOverQuota, ...); anything
//     else becomes NO [SERVERBUG] with the detail only in the log.
package imap

import (
	"errors"
	"strings"
)

// System flags (RFC 3501 §2.3.2, RFC 9051 §2.3.2).
const (
	FlagSeen     = `\Seen`
	FlagAnswered = `\Answered`
	FlagFlagged  = `\Flagged`
	FlagDeleted  = `\Deleted`
	FlagDraft    = `\Draft`
	FlagRecent   = `\Recent` // session flag; never stored by a client
)

// SystemFlags are the flags every mailbox supports, in the order Dovecot
// lists them in FLAGS responses.
var SystemFlags = []string{FlagAnswered, FlagFlagged, FlagDeleted, FlagSeen, FlagDraft}

// CanonicalFlag returns the spelling of a system flag as defined (flags are
// case-insensitive, RFC 3501 §2.3.2), or f itself for a keyword. ok is false
// for an unknown system flag (a backslash name that is not defined).
func CanonicalFlag(f string) (string, bool) {
	if !strings.HasPrefix(f, `\`) {
		return f, true
	}
	for _, s := range SystemFlags {
		if strings.EqualFold(s, f) {
			return s, true
		}
	}
	if strings.EqualFold(f, FlagRecent) {
		return FlagRecent, true
	}
	return f, false
}

// HasFlag reports whether flags contains f, comparing case-insensitively.
func HasFlag(flags []string, f string) bool {
	for _, x := range flags {
		if strings.EqualFold(x, f) {
			return true
		}
	}
	return false
}

// Special-use attributes (RFC 6154 §2).
const (
	UseAll     = `\All`
	UseArchive = `\Archive`
	UseDrafts  = `\Drafts`
	UseFlagged = `\Flagged`
	UseJunk    = `\Junk`
	UseSent    = `\Sent`
	UseTrash   = `\Trash`
)

// SpecialUses lists the attributes of RFC 6154 in canonical spelling.
var SpecialUses = []string{UseAll, UseArchive, UseDrafts, UseFlagged, UseJunk, UseSent, UseTrash}

// Mailbox name attributes (RFC 3501 §7.2.2, RFC 5258, RFC 3348).
const (
	AttrNoselect      = `\Noselect`
	AttrNoinferiors   = `\Noinferiors`
	AttrMarked        = `\Marked`
	AttrUnmarked      = `\Unmarked`
	AttrNonExistent   = `\NonExistent`
	AttrSubscribed    = `\Subscribed`
	AttrRemote        = `\Remote`
	AttrHasChildren   = `\HasChildren`
	AttrHasNoChildren = `\HasNoChildren`
)

// Inbox is the one mailbox name that is case-insensitive (RFC 3501 §5.1).
const Inbox = "INBOX"

// IsInbox reports whether name is INBOX in any case.
func IsInbox(name string) bool { return strings.EqualFold(name, Inbox) }

// Error is a store failure that maps onto an IMAP response code (RFC 5530,
// RFC 3501 §7.1). The engine answers NO [Code] Text.
type Error struct {
	Code string // response code without brackets, e.g. "NONEXISTENT"; may be ""
	Text string // human-readable text for the client
}

func (e *Error) Error() string {
	if e.Code == "" {
		return e.Text
	}
	return "[" + e.Code + "] " + e.Text
}

// Is makes errors.Is match two Errors with the same code, so a store may
// return its own text with a standard code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code != "" && t.Code == e.Code
}

// Errors a store returns; wrap or return them as they are. Any other error
// is reported as NO [SERVERBUG] with the details only in the log.
var (
	ErrNonexistent   = &Error{"NONEXISTENT", "Mailbox doesn't exist."}
	ErrAlreadyExists = &Error{"ALREADYEXISTS", "Mailbox already exists."}
	ErrInvalidName   = &Error{"CANNOT", "Invalid mailbox name."}
	ErrCannot        = &Error{"CANNOT", "Operation is not permitted."}
	ErrNoPerm        = &Error{"NOPERM", "Permission denied."}
	ErrOverQuota     = &Error{"OVERQUOTA", "Quota exceeded."}
	ErrTooBig        = &Error{"TOOBIG", "Message is too large."}
	ErrExpunged      = &Error{"EXPUNGEISSUED", "Some of the requested messages no longer exist."}
	ErrInUse         = &Error{"INUSE", "Mailbox is in use, try again later."}
	ErrUnavailable   = &Error{"UNAVAILABLE", "Temporary failure, try again later."}
	ErrHasChildren   = &Error{"HASCHILDREN", "Mailbox has children, delete them first."}
	ErrLimit         = &Error{"LIMIT", "Too many keywords or mailboxes."}
	ErrUseNotAllowed = &Error{"USEATTR", "Special-use attribute is not supported."}
	ErrNoQuotaRoot   = &Error{"NONEXISTENT", "No such quota root."}
	ErrUnknownCTE    = &Error{"UNKNOWN-CTE", "Unknown Content-Transfer-Encoding."}
	ErrParse         = &Error{"PARSE", "The message could not be parsed."}

	// ErrAuthFailed is Login's answer for wrong credentials:
	// NO [AUTHENTICATIONFAILED].
	ErrAuthFailed = &Error{"AUTHENTICATIONFAILED", "Authentication failed."}
	// ErrAuthzFailed: the credentials are right but the user may not act
	// as the requested authorization identity (RFC 4616 §2).
	ErrAuthzFailed = &Error{"AUTHORIZATIONFAILED", "Authorization failed."}
)

// AsError returns the *Error in err's chain, or nil.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return nil
}
