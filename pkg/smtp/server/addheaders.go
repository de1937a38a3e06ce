package server

import (
	"bytes"
	"fmt"
	"time"
)

// headerAdder completes the header section of submitted mail: a message
// without Date: or Message-ID: gets them, as Postfix's cleanup does for
// mail from local and authenticated clients (RFC 6409 §8.2 and §8.3 let a
// submission server add both; RFC 5322 §3.6 requires Date: and asks for
// Message-ID:).
//
// Whether a field is missing is known only at the end of the header
// section, so the section is held in memory until then, up to limit octets
// (counting the line that ends it); a larger one passes unchanged, without
// additions. The fields are
// inserted at the end of the header section, before the empty line.
//
// The Message-ID has Postfix's layout, <YYYYMMDDhhmmss.QUEUEID@hostname>
// with the time in UTC: the queue ID makes it unique on this host and the
// host name across hosts.
type headerAdder struct {
	limit    int
	hostname string
	queueID  string
	now      time.Time

	buf     []byte
	pos     int  // start of the first line not yet looked at
	done    bool // the additions are out (or abandoned)
	hasDate bool
	hasID   bool
}

func newHeaderAdder(limit int, hostname, queueID string, now time.Time) *headerAdder {
	return &headerAdder{limit: limit, hostname: hostname, queueID: queueID, now: now}
}

// write takes content (LF line endings) and returns what may be passed on
// now, nil while the header section is being held.
func (a *headerAdder) write(p []byte) []byte {
	if a.done {
		return p
	}
	a.buf = append(a.buf, p...)
	for {
		nl := bytes.IndexByte(a.buf[a.pos:], '\n')
		if nl < 0 {
			break
		}
		if !a.headerLine(a.buf[a.pos : a.pos+nl]) {
			// The section ends before this line. What counts against the
			// limit runs to the end of this line, however the content was
			// split into writes, so the outcome never depends on that.
			if a.pos+nl+1 > a.limit {
				return a.giveUp()
			}
			return a.release()
		}
		a.pos += nl + 1
	}
	if len(a.buf) > a.limit {
		return a.giveUp()
	}
	return nil
}

// giveUp passes on a header section too large to hold, unchanged.
func (a *headerAdder) giveUp() []byte {
	a.done = true
	out := a.buf
	a.buf = nil
	return out
}

// finish returns what is still held at the end of the message: a message
// that is all header gets its fields at the end of the complete lines.
func (a *headerAdder) finish() []byte {
	if a.done {
		return nil
	}
	return a.release()
}

// headerLine looks at one line of the header section (without its LF) and
// reports whether the section goes on after it.
func (a *headerAdder) headerLine(line []byte) bool {
	if len(line) == 0 {
		return false // the empty line that ends the section
	}
	if line[0] == ' ' || line[0] == '\t' {
		return true // continuation
	}
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return false // not a field: the body began without the empty line
	}
	name := bytes.TrimRight(line[:colon], " \t") // obsolete blanks, RFC 5322 §4.5
	for _, c := range name {
		if c <= ' ' || c >= 0x7f {
			return false
		}
	}
	switch {
	case bytes.EqualFold(name, []byte("date")):
		a.hasDate = true
	case bytes.EqualFold(name, []byte("message-id")):
		a.hasID = true
	}
	return true
}

// release inserts the missing fields at pos and returns everything held.
func (a *headerAdder) release() []byte {
	a.done = true
	var add []byte
	if !a.hasDate {
		add = fmt.Appendf(add, "Date: %s\n", a.now.Format("Mon, 2 Jan 2006 15:04:05 -0700 (MST)"))
	}
	if !a.hasID {
		add = fmt.Appendf(add, "Message-ID: <%s.%s@%s>\n", a.now.UTC().Format("20060102150405"), a.queueID, a.hostname)
	}
	out := make([]byte, 0, len(a.buf)+len(add))
	out = append(out, a.buf[:a.pos]...)
	out = append(out, add...)
	out = append(out, a.buf[a.pos:]...)
	a.buf = nil
	return out
}
