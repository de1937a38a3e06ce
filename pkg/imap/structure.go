package imap

// The message structure a store hands to the engine: enough to answer
// ENVELOPE, BODYSTRUCTURE, BODY and BODY[section] (RFC 3501 §7.4.2) and
// BINARY[section] (RFC 3516) without the engine parsing MIME itself.
// Deciding the values (defaults such as charset us-ascii, decoding of
// parameters) is the parser's job; the engine serialises what it is given.

// Str returns a pointer to s, for the optional (NIL-able) fields below.
func Str(s string) *string { return &s }

// Address is one element of an ENVELOPE address list (RFC 3501 §7.4.2).
// A group is a start marker (Mailbox = group name, Host nil) and an end
// marker (all fields nil), as RFC 3501 describes for RFC 822 group syntax.
type Address struct {
	Name, ADL, Mailbox, Host *string
}

// Envelope is the ENVELOPE of a message (RFC 3501 §7.4.2). Nil pointers
// and nil lists are written as NIL. Values are the raw header text
// (encoded words are not decoded, RFC 3501 §7.4.2); a value may keep its
// folding line breaks, which the engine unfolds, sending the value as a
// literal the way Dovecot does.
type Envelope struct {
	Date, Subject                      *string
	From, Sender, ReplyTo, To, Cc, Bcc []Address
	InReplyTo, MessageID               *string
}

// Param is one body parameter; order is preserved as the parser found it.
type Param struct{ Name, Value string }

// Part is one MIME entity: the message itself at the root, the children of
// a multipart, or the message encapsulated in a message/rfc822 part.
//
// Offsets are byte positions in the message content as the store serves it
// (CRLF line endings, the same octets that make RFC822.SIZE): the entity's
// header is [HeaderStart, BodyStart) including the blank line that ends it,
// its body [BodyStart, End).
type Part struct {
	Type, Subtype string  // e.g. "text", "plain"; written as given
	Params        []Param // body-fld-param; nil is NIL
	ID            *string // Content-ID
	Description   *string // Content-Description
	Encoding      string  // Content-Transfer-Encoding, e.g. "7bit"
	Size          int64   // body octets
	Lines         int64   // body lines, for text/* and message/rfc822

	// Envelope is set on the root and on a message/rfc822 part's
	// encapsulated message (Parts[0] of that part) — and, for
	// message/rfc822 parts, on the part itself too, as BODYSTRUCTURE
	// lists it there.
	Envelope *Envelope

	// Parts holds the children of a multipart, or for message/rfc822 the
	// single encapsulated message.
	Parts []*Part

	// Extension data (BODYSTRUCTURE only).
	MD5               *string
	Disposition       *string // nil: no Content-Disposition
	DispositionParams []Param
	Language          []string // nil: NIL
	Location          *string

	HeaderStart, BodyStart, End int64
}

// IsMultipart reports whether the part is a multipart/*.
func (p *Part) IsMultipart() bool { return eqFold(p.Type, "multipart") }

// IsMessage reports whether the part encapsulates a message (message/rfc822,
// and message/global of RFC 6532).
func (p *Part) IsMessage() bool {
	return eqFold(p.Type, "message") && (eqFold(p.Subtype, "rfc822") || eqFold(p.Subtype, "global")) && len(p.Parts) == 1
}

func eqFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// Section returns the entity that a BODY[section] part specifier names
// (RFC 3501 §6.4.5): part numbers index the children of a multipart; a
// non-multipart message has a single part 1, its body; a number applied
// to a message/rfc822 part indexes the encapsulated message. It returns nil
// when there is no such part.
func (p *Part) Section(path []int) *Part {
	cur, atMsg := p, true
	for _, k := range path {
		if k < 1 {
			return nil
		}
		if !atMsg && cur.IsMessage() {
			cur, atMsg = cur.Parts[0], true
		}
		switch {
		case cur.IsMultipart():
			if k > len(cur.Parts) {
				return nil
			}
			cur = cur.Parts[k-1]
		case atMsg && k == 1:
			// The body of a non-multipart message is its part 1.
		default:
			return nil
		}
		atMsg = false
	}
	return cur
}
