package mime

import (
	"bytes"
	"strings"
)

// fieldID names the header fields the parser interprets.
type fieldID uint8

const (
	fieldNone fieldID = iota
	fieldContentType
	fieldContentEncoding
	fieldContentID
	fieldContentDescription
	fieldContentDisposition
	fieldContentLanguage
	fieldContentLocation
	fieldContentMD5
	// Envelope fields, interpreted in message headers only.
	fieldDate
	fieldSubject
	fieldFrom
	fieldSender
	fieldReplyTo
	fieldTo
	fieldCc
	fieldBcc
	fieldInReplyTo
	fieldMessageID
)

var contentFields = map[string]fieldID{
	"type":              fieldContentType,
	"transfer-encoding": fieldContentEncoding,
	"id":                fieldContentID,
	"description":       fieldContentDescription,
	"disposition":       fieldContentDisposition,
	"language":          fieldContentLanguage,
	"location":          fieldContentLocation,
	"md5":               fieldContentMD5,
}

var envelopeFields = map[string]fieldID{
	"date":        fieldDate,
	"subject":     fieldSubject,
	"from":        fieldFrom,
	"sender":      fieldSender,
	"reply-to":    fieldReplyTo,
	"to":          fieldTo,
	"cc":          fieldCc,
	"bcc":         fieldBcc,
	"in-reply-to": fieldInReplyTo,
	"message-id":  fieldMessageID,
}

func lookupField(name []byte, message bool) fieldID {
	if len(name) > 8 && strings.EqualFold(string(name[:8]), "content-") {
		return contentFields[strings.ToLower(string(name[8:]))]
	}
	if message && len(name) <= len("in-reply-to") {
		return envelopeFields[strings.ToLower(string(name))]
	}
	return fieldNone
}

// headerState collects the field being read, across its folded lines.
type headerState struct {
	id    fieldID
	value []byte
	size  int

	// The last Date, Subject, In-Reply-To and Message-ID, kept in
	// reused buffers until the header ends: a header repeating one of
	// them a million times costs no more memory than one.
	last [4][]byte
	seen [4]bool
}

var lastFields = [4]fieldID{fieldDate, fieldSubject, fieldInReplyTo, fieldMessageID}

// done stores the kept envelope strings.
func (h *headerState) done(e *Envelope) {
	if e == nil {
		return
	}
	for i, id := range lastFields {
		if h.seen[i] {
			e.set(id, h.last[i])
		}
	}
}

// trimEOL removes the line ending: LF and a CR before it.
func trimEOL(line []byte) []byte {
	line = bytes.TrimSuffix(line, []byte("\n"))
	return bytes.TrimSuffix(line, []byte("\r"))
}

// line takes one header line (RFC 5322 §2.2). Fields that are not
// interpreted are only skipped.
func (h *headerState) line(ps *parser, o *open, line []byte) {
	content := trimEOL(line)
	if line[0] == ' ' || line[0] == '\t' {
		// A folded continuation (RFC 5322 §2.2.3): kept with its
		// leading white space after an LF.
		if h.id == fieldNone {
			return
		}
		if h.size += len(line); h.size > MaxFieldSize {
			o.p.Opaque = true
			h.id = fieldNone
			return
		}
		h.value = append(h.value, '\n')
		h.value = append(h.value, content...)
		return
	}
	h.flush(ps, o)
	n := len(content)
	if n > MaxHeaderNameLen+1 {
		n = MaxHeaderNameLen + 1
	}
	colon := bytes.IndexByte(content[:n], ':')
	if colon < 0 {
		// No field name: an mbox "From " line or garbage. It stays
		// in the header but means nothing.
		return
	}
	name := bytes.TrimRight(content[:colon], " \t")
	h.id = lookupField(name, o.p.Env != nil)
	if h.id == fieldNone {
		return
	}
	v := bytes.TrimLeft(content[colon+1:], " \t")
	h.value = append(h.value[:0], v...)
	h.size = len(line)
}

// flush interprets the collected field. Content-* fields count once, the
// first time (RFC 2045 allows one of each); address fields that repeat are
// merged as one list, so that no check can look at one From while a client
// shows another; the other envelope fields keep their last value, as
// Dovecot's ENVELOPE does.
func (h *headerState) flush(ps *parser, o *open) {
	id := h.id
	h.id = fieldNone
	if id == fieldNone {
		return
	}
	v := h.value
	if bytes.IndexByte(v, 0) >= 0 {
		// NUL is not text (RFC 5322 §2.2); no IMAP string may hold it.
		v = bytes.ReplaceAll(v, []byte{0}, []byte("\uFFFD"))
	}
	ps.st.fieldsStored += int64(len(v))
	p := o.p
	str := func(dst **string) {
		if *dst == nil {
			*dst = strp(v)
		}
	}
	switch id {
	case fieldContentType:
		if !p.declared {
			p.declared = true
			ct := parseContentType(v, ps.st)
			p.Type, p.Subtype, p.Params = ct.typ, ct.sub, ct.params
		}
	case fieldContentEncoding:
		if p.Encoding == nil {
			if e, ok := parseEncoding(v); ok {
				p.Encoding = &e
			}
		}
	case fieldContentID:
		str(&p.ID)
	case fieldContentDescription:
		str(&p.Description)
	case fieldContentLocation:
		str(&p.Location)
	case fieldContentMD5:
		str(&p.MD5)
	case fieldContentDisposition:
		if p.Disposition == nil {
			if d, params, ok := parseDisposition(v, ps.st); ok {
				p.Disposition, p.DispositionParams = &d, params
			}
		}
	case fieldContentLanguage:
		if p.Language == nil {
			p.Language = parseLanguage(v)
		}
	default:
		for i, f := range lastFields {
			if f == id {
				h.last[i] = append(h.last[i][:0], v...)
				h.seen[i] = true
				return
			}
		}
		p.Env.set(id, v)
	}
}
