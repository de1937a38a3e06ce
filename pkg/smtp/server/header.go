package server

import "errors"

// Errors from the header checks. The message is refused but the data is
// still consumed, so the session stays usable.
var (
	ErrHeaderTooLarge = errors.New("message header too large")
	ErrTooManyHops    = errors.New("too many hops")
)

// headerCheck watches the header section of a message (LF line endings) as
// it streams past, without buffering it, and enforces Postfix's
// header_size_limit (one field with its folded continuation lines) and
// hopcount_limit (Received: fields, the loop detector of RFC 5321 §6.3).
type headerCheck struct {
	sizeLimit int
	hopLimit  int

	done     bool // past the header section, or a limit was hit
	err      error
	bol      bool // at the beginning of a line
	inName   bool // reading the field name of a new field
	nameLen  int
	name     [8]byte // enough to recognise "received"
	afterWSP bool    // blanks seen after the name, before the colon
	fieldLen int
	hops     int
}

func newHeaderCheck(sizeLimit, hopLimit int) *headerCheck {
	return &headerCheck{sizeLimit: sizeLimit, hopLimit: hopLimit, bol: true}
}

// write feeds content; it returns the first violation once seen.
func (h *headerCheck) write(p []byte) error {
	if h.done {
		return h.err
	}
	for _, c := range p {
		if h.bol {
			h.bol = false
			switch c {
			case '\n':
				// The empty line ends the header section (RFC 5322 §2.1).
				h.done = true
				return nil
			case ' ', '\t':
				// A folded continuation line belongs to the current field.
			default:
				h.fieldLen = 0
				h.inName, h.nameLen, h.afterWSP = true, 0, false
			}
		}
		h.fieldLen++
		if h.fieldLen > h.sizeLimit {
			return h.fail(ErrHeaderTooLarge)
		}
		if c == '\n' {
			if h.inName {
				// A line without a colon is not a header field: the body
				// started without the empty line (Postfix treats it so).
				h.done = true
				return nil
			}
			h.bol = true
			continue
		}
		if h.inName {
			if err := h.nameByte(c); err != nil || h.done {
				return err
			}
		}
	}
	return nil
}

// nameByte follows field-name = 1*ftext, then optional blanks, then ':'
// (RFC 5322 §3.6.8; the blanks are obsolete syntax, §4.5).
func (h *headerCheck) nameByte(c byte) error {
	switch {
	case c == ':':
		h.inName = false
		if h.nameLen == 0 {
			h.done = true // not a header field
			return nil
		}
		if h.nameLen == len(h.name) && string(h.name[:]) == "received" {
			h.hops++
			if h.hops > h.hopLimit {
				return h.fail(ErrTooManyHops)
			}
		}
	case c == ' ' || c == '\t':
		if h.nameLen == 0 {
			h.done = true // not a header field
		}
		h.afterWSP = true
	case c > ' ' && c < 0x7f && !h.afterWSP:
		if h.nameLen < len(h.name) {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			h.name[h.nameLen] = c
		}
		h.nameLen++
	default:
		h.done = true // not a header field: the body has begun
	}
	return nil
}

func (h *headerCheck) fail(err error) error {
	h.done, h.err = true, err
	return err
}
