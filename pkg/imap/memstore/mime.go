package memstore

import (
	"bytes"
	"mime"
	"net/mail"
	"sort"
	"strings"

	"github.com/posthorn/posthorn/pkg/imap"
)

// Parse builds the structure of a message: a small MIME parser, good
// enough for the engine's tests (the real one lives in pkg/mime). It
// tracks byte offsets of every header and body and bounds nesting.
func Parse(c []byte) *imap.Part {
	p := parseEntity(c, 0, int64(len(c)), "text/plain", 0)
	return p
}

const maxDepth = 50

type header struct {
	names  []string // lower case
	values []string // unfolded, trimmed
}

func (h *header) get(name string) (string, bool) {
	for i, n := range h.names {
		if n == name {
			return h.values[i], true
		}
	}
	return "", false
}

// splitHeader returns the parsed header of c[start:end] and where the body
// starts (after the blank line, or end when there is none).
func splitHeader(c []byte, start, end int64) (*header, int64) {
	h := &header{}
	pos := start
	var cur []byte
	flush := func() {
		if cur == nil {
			return
		}
		if i := bytes.IndexByte(cur, ':'); i > 0 {
			h.names = append(h.names, strings.ToLower(strings.TrimSpace(string(cur[:i]))))
			h.values = append(h.values, strings.TrimSpace(string(cur[i+1:])))
		}
		cur = nil
	}
	for pos < end {
		nl := bytes.IndexByte(c[pos:end], '\n')
		var line []byte
		next := end
		if nl >= 0 {
			line = c[pos : pos+int64(nl)]
			next = pos + int64(nl) + 1
		} else {
			line = c[pos:end]
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			flush()
			return h, next
		}
		if line[0] == ' ' || line[0] == '\t' {
			cur = append(cur, ' ')
			cur = append(cur, bytes.TrimSpace(line)...)
		} else {
			flush()
			cur = append([]byte(nil), line...)
		}
		pos = next
	}
	flush()
	return h, end
}

func parseEntity(c []byte, start, end int64, defType string, depth int) *imap.Part {
	h, bodyStart := splitHeader(c, start, end)
	p := &imap.Part{HeaderStart: start, BodyStart: bodyStart, End: end, Encoding: "7bit"}
	mt, params, err := mime.ParseMediaType(first(h, "content-type"))
	if err != nil || !strings.Contains(mt, "/") {
		mt, params = defType, nil
		if defType == "text/plain" {
			params = map[string]string{"charset": "us-ascii"}
		}
	}
	p.Type, p.Subtype, _ = strings.Cut(mt, "/")
	p.Params = sortedParams(params)
	if v, ok := h.get("content-id"); ok {
		p.ID = imap.Str(v)
	}
	if v, ok := h.get("content-description"); ok {
		p.Description = imap.Str(v)
	}
	if v, ok := h.get("content-transfer-encoding"); ok && v != "" {
		p.Encoding = strings.ToLower(v)
	}
	if v, ok := h.get("content-md5"); ok {
		p.MD5 = imap.Str(v)
	}
	if v, ok := h.get("content-disposition"); ok {
		if d, dp, err := mime.ParseMediaType(v); err == nil {
			p.Disposition = imap.Str(d)
			p.DispositionParams = sortedParams(dp)
		}
	}
	if v, ok := h.get("content-language"); ok {
		for _, l := range strings.Split(v, ",") {
			p.Language = append(p.Language, strings.TrimSpace(l))
		}
	}
	if v, ok := h.get("content-location"); ok {
		p.Location = imap.Str(v)
	}
	if depth == 0 {
		p.Envelope = envelope(h)
	}
	p.Size = end - bodyStart
	body := c[bodyStart:end]
	switch {
	case p.IsMultipart() && depth < maxDepth && params["boundary"] != "":
		child := "text/plain"
		if strings.EqualFold(p.Subtype, "digest") {
			child = "message/rfc822"
		}
		for _, r := range splitMultipart(c, bodyStart, end, params["boundary"]) {
			p.Parts = append(p.Parts, parseEntity(c, r[0], r[1], child, depth+1))
		}
	case strings.EqualFold(p.Type, "message") && strings.EqualFold(p.Subtype, "rfc822") && depth < maxDepth:
		inner := parseEntity(c, bodyStart, end, "text/plain", depth+1)
		ih, _ := splitHeader(c, bodyStart, end)
		inner.Envelope = envelope(ih)
		p.Envelope = inner.Envelope
		p.Parts = []*imap.Part{inner}
		p.Lines = int64(bytes.Count(body, []byte("\n")))
	case strings.EqualFold(p.Type, "text"):
		p.Lines = int64(bytes.Count(body, []byte("\n")))
	}
	return p
}

func first(h *header, name string) string {
	v, _ := h.get(name)
	return v
}

func sortedParams(m map[string]string) []imap.Param {
	if len(m) == 0 {
		return nil
	}
	var out []imap.Param
	for k, v := range m {
		out = append(out, imap.Param{Name: k, Value: v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// splitMultipart returns the [start, end) ranges of the body parts between
// boundary delimiter lines (RFC 2046 §5.1.1); the CRLF before a delimiter
// belongs to the delimiter.
func splitMultipart(c []byte, start, end int64, boundary string) [][2]int64 {
	delim := []byte("--" + boundary)
	var out [][2]int64
	partStart := int64(-1)
	pos := start
	for pos < end {
		nl := bytes.IndexByte(c[pos:end], '\n')
		next := end
		lineEnd := end
		if nl >= 0 {
			lineEnd = pos + int64(nl)
			next = lineEnd + 1
		}
		line := bytes.TrimRight(c[pos:lineEnd], " \t\r")
		if bytes.HasPrefix(line, delim) {
			rest := line[len(delim):]
			closing := bytes.Equal(rest, []byte("--"))
			if len(rest) == 0 || closing {
				if partStart >= 0 {
					e := pos
					if e > partStart && c[e-1] == '\n' {
						e--
						if e > partStart && c[e-1] == '\r' {
							e--
						}
					}
					out = append(out, [2]int64{partStart, e})
				}
				if closing || len(out) >= 1000 {
					return out
				}
				partStart = next
			}
		}
		pos = next
	}
	if partStart >= 0 && partStart < end {
		out = append(out, [2]int64{partStart, end})
	}
	return out
}

func envelope(h *header) *imap.Envelope {
	e := &imap.Envelope{}
	str := func(name string) *string {
		if v, ok := h.get(name); ok {
			return imap.Str(v)
		}
		return nil
	}
	e.Date = str("date")
	e.Subject = str("subject")
	e.From = addrs(h, "from")
	e.Sender = addrs(h, "sender")
	if e.Sender == nil {
		e.Sender = e.From
	}
	e.ReplyTo = addrs(h, "reply-to")
	if e.ReplyTo == nil {
		e.ReplyTo = e.From
	}
	e.To = addrs(h, "to")
	e.Cc = addrs(h, "cc")
	e.Bcc = addrs(h, "bcc")
	e.InReplyTo = str("in-reply-to")
	e.MessageID = str("message-id")
	return e
}

func addrs(h *header, name string) []imap.Address {
	v, ok := h.get(name)
	if !ok || v == "" {
		return nil
	}
	list, err := mail.ParseAddressList(v)
	if err != nil {
		return nil
	}
	var out []imap.Address
	for _, a := range list {
		local, host, _ := strings.Cut(a.Address, "@")
		ad := imap.Address{Mailbox: imap.Str(local), Host: imap.Str(host)}
		if a.Name != "" {
			ad.Name = imap.Str(a.Name)
		}
		out = append(out, ad)
	}
	return out
}
