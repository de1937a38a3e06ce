package sendmail

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"
	"time"
)

// Limits on what sendmail accepts from standard input.
const (
	// MaxRecipients bounds -t extraction and the command line together.
	MaxRecipients = 10000
	// maxHeaderBytes bounds the header section scanned for -t and for the
	// headers sendmail adds.
	maxHeaderBytes = 1 << 20
)

// ErrNoRecipients is Postfix's "No recipient addresses found".
var ErrNoRecipients = errors.New("no recipient addresses found in message header")

// ErrTooBig is a message over the size limit.
var ErrTooBig = errors.New("message file too big")

// Prepared is a message ready for pickup.
type Prepared struct {
	Sender     string
	Recipients []string
	Content    []byte // LF line endings
}

// Prepare reads the message from r and completes it as Postfix's cleanup
// does for local submissions: a From: header when missing (with -F's full
// name), Date: and Message-ID: when missing, recipients from To/Cc/Bcc with
// -t (Bcc: removed), a lone "." ending the input unless -i.
// sender is the envelope sender (already defaulted); host names Message-IDs.
func Prepare(o *Options, r io.Reader, sender, host string, limit int64, now time.Time) (*Prepared, error) {
	body, err := readInput(r, o.IgnoreDots, limit)
	if err != nil {
		return nil, err
	}
	hdrEnd := headerEnd(body)
	if hdrEnd > maxHeaderBytes {
		return nil, fmt.Errorf("message header exceeds %d bytes", maxHeaderBytes)
	}
	header := body[:hdrEnd]
	rest := body[hdrEnd:]
	fields := parseFields(header)

	rcpts := append([]string(nil), o.Recipients...)
	if o.ExtractRcpt {
		for _, name := range []string{"to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc"} {
			for _, f := range fields {
				if f.name != name {
					continue
				}
				for _, a := range headerAddresses(f.value) {
					rcpts = append(rcpts, a)
					if len(rcpts) > MaxRecipients {
						return nil, fmt.Errorf("more than %d recipients", MaxRecipients)
					}
				}
			}
		}
	}
	if len(rcpts) == 0 {
		return nil, ErrNoRecipients
	}
	if len(rcpts) > MaxRecipients {
		return nil, fmt.Errorf("more than %d recipients", MaxRecipients)
	}

	var out bytes.Buffer
	has := func(name string) bool {
		for _, f := range fields {
			if f.name == name {
				return true
			}
		}
		return false
	}
	if !has("from") {
		from := sender
		if from == "" {
			from = "MAILER-DAEMON"
		}
		if o.FullName != "" {
			fmt.Fprintf(&out, "From: %s <%s>\n", quotePhrase(o.FullName), from)
		} else {
			fmt.Fprintf(&out, "From: %s\n", from)
		}
	}
	if !has("date") {
		fmt.Fprintf(&out, "Date: %s\n", now.Format(time.RFC1123Z))
	}
	if !has("message-id") {
		fmt.Fprintf(&out, "Message-Id: <%s.%d@%s>\n", now.UTC().Format("20060102150405"), now.UnixNano()%1e9, host)
	}
	// The header as given, without Bcc: (a blind copy stays blind).
	for _, f := range fields {
		if o.ExtractRcpt && (f.name == "bcc" || f.name == "resent-bcc") {
			continue
		}
		out.Write(f.raw)
	}
	out.Write(rest)
	return &Prepared{Sender: sender, Recipients: rcpts, Content: out.Bytes()}, nil
}

// headerAddresses returns the addresses of an address-list header field.
// Postfix takes what it can from a sloppy header, and local mail is often
// addressed by bare login name (mail(1) writes "To: root"), which RFC 5322
// parsers refuse: items that do not parse are taken one at a time, as a
// bare name or the inside of <...>, and are qualified later like names on
// the command line.
func headerAddresses(value string) []string {
	var out []string
	if list, err := mail.ParseAddressList(value); err == nil {
		for _, a := range list {
			out = append(out, a.Address)
		}
		return out
	}
	for _, item := range splitList(value) {
		item = strings.TrimSpace(stripComments(item))
		if item == "" {
			continue
		}
		if a, err := mail.ParseAddress(item); err == nil {
			out = append(out, a.Address)
			continue
		}
		if i := strings.LastIndexByte(item, '<'); i >= 0 && strings.HasSuffix(item, ">") {
			item = strings.TrimSpace(item[i+1 : len(item)-1])
		}
		if item != "" && !strings.ContainsAny(item, " \t\r\n\"<>()[]:;,\\") {
			out = append(out, item)
		}
	}
	return out
}

// splitList splits an address list at commas outside quoted strings,
// comments and angle brackets.
func splitList(s string) []string {
	var items []string
	start, depth, quoted, angle := 0, 0, false, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && (quoted || depth > 0):
			i++
		case c == '"' && depth == 0:
			quoted = !quoted
		case quoted:
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case depth > 0:
		case c == '<':
			angle = true
		case c == '>':
			angle = false
		case c == ',' && !angle:
			items = append(items, s[start:i])
			start = i + 1
		}
	}
	return append(items, s[start:])
}

// stripComments removes RFC 5322 comments outside quoted strings.
func stripComments(s string) string {
	var b strings.Builder
	depth, quoted := 0, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && (quoted || depth > 0) && i+1 < len(s):
			if depth == 0 {
				b.WriteByte(c)
				b.WriteByte(s[i+1])
			}
			i++
			continue
		case c == '"' && depth == 0:
			quoted = !quoted
		case !quoted && c == '(':
			depth++
			continue
		case !quoted && c == ')' && depth > 0:
			depth--
			continue
		}
		if depth == 0 {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// readInput reads standard input up to EOF (or a lone "." line without -i),
// converting CRLF to LF.
func readInput(r io.Reader, ignoreDots bool, limit int64) ([]byte, error) {
	br := bufio.NewReaderSize(r, 64*1024)
	var out bytes.Buffer
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			out.Write(line)
			if int64(out.Len()) > limit {
				return nil, ErrTooBig
			}
			continue
		}
		if len(line) > 0 {
			// CRLF (and stray CRs before the LF) become LF: the queue
			// stores LF line endings and a CR there would be a bare CR on
			// the wire later.
			l := bytes.TrimRight(bytes.TrimSuffix(line, []byte("\n")), "\r")
			if !ignoreDots && string(l) == "." && atLineStart(out.Bytes()) {
				return out.Bytes(), nil
			}
			out.Write(l)
			if bytes.HasSuffix(line, []byte("\n")) || len(l) > 0 {
				out.WriteByte('\n')
			}
			if int64(out.Len()) > limit {
				return nil, ErrTooBig
			}
		}
		if err == io.EOF {
			return out.Bytes(), nil
		}
		if err != nil {
			return nil, err
		}
	}
}

func atLineStart(b []byte) bool { return len(b) == 0 || b[len(b)-1] == '\n' }

// headerEnd returns the offset just after the blank line ending the header
// section, or where the header section stops looking like one.
func headerEnd(b []byte) int {
	off := 0
	for off < len(b) {
		nl := bytes.IndexByte(b[off:], '\n')
		if nl < 0 {
			return len(b)
		}
		line := b[off : off+nl]
		if len(line) == 0 {
			return off + 1
		}
		// A line that is neither a field nor a continuation ends the header
		// (mail(1) users sometimes start straight with the body).
		if line[0] != ' ' && line[0] != '\t' && !isFieldStart(line) {
			return off
		}
		off += nl + 1
	}
	return off
}

func isFieldStart(line []byte) bool {
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return false
	}
	for _, c := range line[:colon] {
		if c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

type field struct {
	name  string // lower case
	value string // unfolded
	raw   []byte // as given, with continuation lines
}

func parseFields(h []byte) []field {
	var out []field
	for len(h) > 0 {
		end := 0
		for {
			nl := bytes.IndexByte(h[end:], '\n')
			if nl < 0 {
				end = len(h)
				break
			}
			end += nl + 1
			if end >= len(h) || (h[end] != ' ' && h[end] != '\t') {
				break
			}
		}
		raw := h[:end]
		h = h[end:]
		if len(bytes.TrimSpace(raw)) == 0 {
			out = append(out, field{raw: raw})
			continue
		}
		name, value, _ := bytes.Cut(raw, []byte(":"))
		v := strings.Join(strings.Fields(string(value)), " ")
		out = append(out, field{name: strings.ToLower(strings.TrimSpace(string(name))), value: v, raw: raw})
	}
	return out
}

// quotePhrase quotes a display name when it has specials (RFC 5322 §3.2.5).
func quotePhrase(s string) string {
	if !strings.ContainsAny(s, "()<>[]:;@\\,.\"") {
		return s
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}
