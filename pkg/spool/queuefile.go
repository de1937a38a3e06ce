// Package spool is posthorn's durable queue (DESIGN §2).
//
// Every message is one file named by its queue ID, living in exactly one of
// the queue folders incoming/, active/, deferred/, hold/ or corrupt/. A move
// between folders is a rename, so a message is always in one place.
//
// # Queue file format, version 1
//
// Text records, one per line, then the content, then result records:
//
//	posthorn-queue 1
//	time <arrival, Unix nanoseconds>
//	from <sender>                     (empty for the null sender <>)
//	attr <name> <value>               (client, helo, protocol, body, smtputf8, ...)
//	rcpt <address> [<name>=<value> ...] (one per recipient, numbered from 0)
//	content <length, 20 digits>
//	<length bytes: the message, LF line endings>
//	done <rcpt#> <status> <Unix nanoseconds> <dsn> <reason>
//	warned <Unix nanoseconds>         (a delay warning went to the sender)
//	...
//
// Every value is escaped: bytes outside 0x21-0x7E, and '%', become %XX, so
// a value never contains a space or a line break and a hostile address can
// never forge a record (Exim CVE-2020-28021 class). An empty value is "%".
//
// The header and content are written once, by the receiving daemon, and made
// durable before the sender is told 250. The file is created mode 0600 and
// switched to 0700 only when complete (Postfix's convention), so a scan never
// picks up a file still being written. Afterwards the file only grows: qmgr
// appends one "done" record per delivery attempt result and fdatasyncs it
// before it acts on the result (DESIGN §2.3). The last record of a recipient
// wins. A crash can leave a torn last line; it has no newline, is ignored,
// and is cut off before the next append.
package spool

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Version is the queue file format version this package writes and reads.
const Version = 1

const magic = "posthorn-queue 1\n"

// Limits that keep a damaged or hostile queue file from exhausting memory.
const (
	maxHeaderLine = 64 * 1024
	maxRecipients = 1 << 20
	maxAttrs      = 256
)

// ErrCorrupt marks a queue file that cannot be parsed; qmgr moves it to
// corrupt/ rather than guessing.
var ErrCorrupt = errors.New("corrupt queue file")

// Status is a recipient's delivery state.
type Status int

const (
	StatusPending  Status = iota // not yet tried
	StatusSent                   // final: delivered
	StatusBounced                // final: a bounce is owed (or was sent)
	StatusDeferred               // tried, failed temporarily; still pending
)

var statusNames = [...]string{"pending", "sent", "bounced", "deferred"}

func (s Status) String() string {
	if s >= 0 && int(s) < len(statusNames) {
		return statusNames[s]
	}
	return "unknown"
}

// Final reports whether no further attempt is made for the recipient.
func (s Status) Final() bool { return s == StatusSent || s == StatusBounced }

func parseStatus(s string) (Status, bool) {
	for i, n := range statusNames {
		if n == s {
			return Status(i), true
		}
	}
	return 0, false
}

// Recipient is one envelope recipient and what became of it.
type Recipient struct {
	Addr   string
	Params map[string]string // ORCPT, NOTIFY (RFC 3461) and the like
	Status Status
	Time   time.Time // of the last result
	DSN    string    // enhanced status code of the last result, e.g. 4.4.1
	Reason string    // text of the last result
}

// Envelope is everything about a message but its content.
type Envelope struct {
	ID      string
	Arrival time.Time
	Sender  string            // "" is the null sender
	Attrs   map[string]string // client, helo, protocol, body, smtputf8 ...
	Rcpts   []Recipient
	// Warned is when a delay warning was sent (zero: never).
	Warned time.Time
}

// Pending returns the indexes of recipients not yet final.
func (e *Envelope) Pending() []int {
	var idx []int
	for i, r := range e.Rcpts {
		if !r.Status.Final() {
			idx = append(idx, i)
		}
	}
	return idx
}

// Escape encodes a value for a record: bytes outside 0x21-0x7E and '%'
// become %XX, so a value is one word on one line; the empty string is "%".
func Escape(s string) string {
	if s == "" {
		return "%"
	}
	clean := true
	for i := 0; i < len(s) && clean; i++ {
		c := s[i]
		clean = c > 0x20 && c < 0x7f && c != '%'
	}
	if clean {
		return s
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= 0x20 || c >= 0x7f || c == '%' {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// Unescape reverses Escape; malformed input is ErrCorrupt.
func Unescape(s string) (string, error) {
	if s == "%" {
		return "", nil
	}
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", ErrCorrupt
		}
		v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return "", ErrCorrupt
		}
		b.WriteByte(byte(v))
		i += 2
	}
	return b.String(), nil
}

// encodeHeader returns the records before the content, ending with the
// content record whose length is filled in at commit (contentLenOffset).
func encodeHeader(env *Envelope) (hdr []byte, contentLenOffset int) {
	var b strings.Builder
	b.WriteString(magic)
	b.WriteString("time ")
	b.WriteString(strconv.FormatInt(env.Arrival.UnixNano(), 10))
	b.WriteString("\nfrom ")
	b.WriteString(Escape(env.Sender))
	b.WriteByte('\n')
	for _, k := range sortedKeys(env.Attrs) {
		b.WriteString("attr " + Escape(k) + " " + Escape(env.Attrs[k]) + "\n")
	}
	for _, r := range env.Rcpts {
		b.WriteString("rcpt ")
		b.WriteString(Escape(r.Addr))
		for _, k := range sortedKeys(r.Params) {
			b.WriteString(" " + Escape(k) + "=" + Escape(r.Params[k]))
		}
		b.WriteByte('\n')
	}
	b.WriteString("content ")
	off := b.Len()
	b.WriteString("00000000000000000000\n")
	return []byte(b.String()), off
}

// doneRecord is the line appended for one recipient's result.
func doneRecord(idx int, st Status, t time.Time, dsn, reason string) []byte {
	return []byte(fmt.Sprintf("done %d %s %d %s %s\n", idx, st, t.UnixNano(), Escape(dsn), Escape(reason)))
}

// parsed is the result of reading a queue file.
type parsed struct {
	env           Envelope
	contentOffset int64
	contentSize   int64
	validEnd      int64 // end of the last complete record
	size          int64 // file size
}

// parse reads a whole queue file. r must be positioned at its start.
// parseReaders keep parse's buffers between queue files: qmgr parses one
// per message.
var parseReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 16*1024) }}

func parse(r io.ReaderAt, size int64) (*parsed, error) {
	br := parseReaders.Get().(*bufio.Reader)
	br.Reset(io.NewSectionReader(r, 0, size))
	defer func() {
		br.Reset(nil)
		parseReaders.Put(br)
	}()
	var off int64
	line := func() (string, error) {
		s, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// Records are short; a long one means damage.
			return "", fmt.Errorf("%w: record too long at offset %d", ErrCorrupt, off)
		}
		if err != nil {
			return "", fmt.Errorf("%w: truncated header at offset %d", ErrCorrupt, off)
		}
		off += int64(len(s))
		return string(s[:len(s)-1]), nil
	}
	first, err := line()
	if err != nil || first+"\n" != magic {
		return nil, fmt.Errorf("%w: not a version %d queue file", ErrCorrupt, Version)
	}
	p := &parsed{size: size}
	p.env.Attrs = map[string]string{}
	for {
		l, err := line()
		if err != nil {
			return nil, err
		}
		kind, rest, _ := strings.Cut(l, " ")
		switch kind {
		case "time":
			n, err := strconv.ParseInt(rest, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%w: bad time", ErrCorrupt)
			}
			p.env.Arrival = time.Unix(0, n)
		case "from":
			if p.env.Sender, err = Unescape(rest); err != nil {
				return nil, fmt.Errorf("%w: bad sender", ErrCorrupt)
			}
		case "attr":
			k, v, ok := strings.Cut(rest, " ")
			if !ok || len(p.env.Attrs) >= maxAttrs {
				return nil, fmt.Errorf("%w: bad attribute", ErrCorrupt)
			}
			k, err1 := Unescape(k)
			v, err2 := Unescape(v)
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("%w: bad attribute", ErrCorrupt)
			}
			p.env.Attrs[k] = v
		case "rcpt":
			if len(p.env.Rcpts) >= maxRecipients {
				return nil, fmt.Errorf("%w: too many recipients", ErrCorrupt)
			}
			fields := strings.Split(rest, " ")
			addr, err := Unescape(fields[0])
			if err != nil {
				return nil, fmt.Errorf("%w: bad recipient", ErrCorrupt)
			}
			rc := Recipient{Addr: addr}
			for _, f := range fields[1:] {
				k, v, ok := strings.Cut(f, "=")
				k, err1 := Unescape(k)
				v, err2 := Unescape(v)
				if !ok || err1 != nil || err2 != nil {
					return nil, fmt.Errorf("%w: bad recipient parameter", ErrCorrupt)
				}
				if rc.Params == nil {
					rc.Params = map[string]string{}
				}
				rc.Params[k] = v
			}
			p.env.Rcpts = append(p.env.Rcpts, rc)
		case "content":
			n, err := strconv.ParseInt(rest, 10, 64)
			if err != nil || n <= 0 || off+n > size {
				return nil, fmt.Errorf("%w: bad content length (incomplete file?)", ErrCorrupt)
			}
			p.contentOffset, p.contentSize = off, n
			if len(p.env.Rcpts) == 0 || p.env.Arrival.IsZero() {
				return nil, fmt.Errorf("%w: no recipients or arrival time", ErrCorrupt)
			}
			return p, p.parseResults(r)
		default:
			return nil, fmt.Errorf("%w: unknown record %q", ErrCorrupt, kind)
		}
	}
}

// parseResults reads the done records after the content.
func (p *parsed) parseResults(r io.ReaderAt) error {
	start := p.contentOffset + p.contentSize
	p.validEnd = start
	if p.size <= start {
		return nil // no result recorded yet: the usual case
	}
	br := bufio.NewReaderSize(io.NewSectionReader(r, start, p.size-start), 4096)
	for {
		s, err := br.ReadString('\n')
		if err != nil {
			// A torn last record (no newline) is ignored; validEnd excludes it.
			return nil
		}
		f := strings.Split(strings.TrimSuffix(s, "\n"), " ")
		if len(f) == 2 && f[0] == "warned" {
			ns, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return nil
			}
			p.env.Warned = time.Unix(0, ns)
			p.validEnd += int64(len(s))
			continue
		}
		if len(f) != 6 || f[0] != "done" {
			// A damaged tail: trust what came before it.
			return nil
		}
		idx, err1 := strconv.Atoi(f[1])
		st, ok := parseStatus(f[2])
		ns, err2 := strconv.ParseInt(f[3], 10, 64)
		dsn, err3 := Unescape(f[4])
		reason, err4 := Unescape(f[5])
		if err1 != nil || !ok || err2 != nil || err3 != nil || err4 != nil || idx < 0 || idx >= len(p.env.Rcpts) {
			return nil
		}
		rc := &p.env.Rcpts[idx]
		rc.Status, rc.Time, rc.DSN, rc.Reason = st, time.Unix(0, ns), dsn, reason
		p.validEnd += int64(len(s))
	}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	// Insertion sort: a handful of keys.
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}

// ReadEnvelope parses a queue file without keeping it open (listing, tests).
func ReadEnvelope(path string) (*Envelope, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	p, err := parse(f, st.Size())
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", path, err)
	}
	return &p.env, p.contentSize, nil
}
