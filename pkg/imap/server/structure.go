package server

import (
	"strconv"
	"strings"

	"github.com/posthorn/posthorn/pkg/imap"
	"github.com/posthorn/posthorn/pkg/imap/wire"
)

// writeEnvelope writes an ENVELOPE (RFC 3501 §7.4.2).
func writeEnvelope(out *wire.Writer, e *imap.Envelope) {
	if e == nil {
		e = &imap.Envelope{}
	}
	out.Byte('(')
	envString(out, e.Date)
	out.Byte(' ')
	envString(out, e.Subject)
	for _, l := range [][]imap.Address{e.From, e.Sender, e.ReplyTo, e.To, e.Cc, e.Bcc} {
		out.Byte(' ')
		writeAddresses(out, l)
	}
	out.Byte(' ')
	envString(out, e.InReplyTo)
	out.Byte(' ')
	envString(out, e.MessageID)
	out.Byte(')')
}

// envString writes an ENVELOPE string. A header value that still holds
// its folding is unfolded (each line break with the blank after it
// becomes one space) and sent as a literal, as Dovecot does.
func envString(out *wire.Writer, s *string) {
	if s == nil || !strings.ContainsAny(*s, "\r\n") {
		out.NString(s)
		return
	}
	v := *s
	b := make([]byte, 0, len(v))
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c != '\r' && c != '\n' {
			b = append(b, c)
			continue
		}
		if c == '\r' && i+1 < len(v) && v[i+1] == '\n' {
			i++
		}
		if i+1 < len(v) && (v[i+1] == ' ' || v[i+1] == '\t') {
			b = append(b, ' ')
			i++
		}
	}
	out.LiteralHeader(int64(len(b)), false)
	out.RawBytes(b)
}

func writeAddresses(out *wire.Writer, l []imap.Address) {
	if len(l) == 0 {
		out.Raw("NIL")
		return
	}
	out.Byte('(')
	for _, a := range l {
		out.Byte('(')
		envString(out, a.Name)
		out.Byte(' ')
		envString(out, a.ADL)
		out.Byte(' ')
		envString(out, a.Mailbox)
		out.Byte(' ')
		envString(out, a.Host)
		out.Byte(')')
	}
	out.Byte(')')
}

func writeParams(out *wire.Writer, ps []imap.Param) {
	if len(ps) == 0 {
		out.Raw("NIL")
		return
	}
	out.Byte('(')
	for i, p := range ps {
		if i > 0 {
			out.Byte(' ')
		}
		out.String(p.Name)
		out.Byte(' ')
		out.String(p.Value)
	}
	out.Byte(')')
}

// writeExtension writes body-fld-dsp SP body-fld-lang SP body-fld-loc.
func writeExtension(out *wire.Writer, p *imap.Part) {
	if p.Disposition == nil {
		out.Raw("NIL")
	} else {
		out.Byte('(')
		out.String(*p.Disposition)
		out.Byte(' ')
		writeParams(out, p.DispositionParams)
		out.Byte(')')
	}
	out.Byte(' ')
	switch len(p.Language) {
	case 0:
		out.Raw("NIL")
	case 1:
		out.String(p.Language[0])
	default:
		out.Byte('(')
		for i, l := range p.Language {
			if i > 0 {
				out.Byte(' ')
			}
			out.String(l)
		}
		out.Byte(')')
	}
	out.Byte(' ')
	out.NString(p.Location)
}

// writeBodyStructure writes BODY (ext=false) or BODYSTRUCTURE (RFC 3501
// §7.4.2, RFC 9051 §7.5.2). Depth is bounded by the parser that built
// the tree; the engine adds a backstop.
func writeBodyStructure(out *wire.Writer, p *imap.Part, ext bool) {
	writeBody(out, p, ext, 0)
}

const maxStructureDepth = 200

func writeBody(out *wire.Writer, p *imap.Part, ext bool, depth int) {
	if p == nil || depth > maxStructureDepth {
		// A tree deeper than any parser allows: describe it as empty text.
		out.Raw(`("text" "plain" NIL NIL NIL "7bit" 0 0)`)
		return
	}
	out.Byte('(')
	if p.IsMultipart() && len(p.Parts) > 0 {
		for _, c := range p.Parts {
			writeBody(out, c, ext, depth+1)
		}
		out.Byte(' ')
		out.String(p.Subtype)
		if ext {
			out.Byte(' ')
			writeParams(out, p.Params)
			out.Byte(' ')
			writeExtension(out, p)
		}
		out.Byte(')')
		return
	}
	// Written as the parser found them, even empty (Dovecot sends "" ""
	// for an unparseable Content-Type).
	typ, sub := p.Type, p.Subtype
	out.String(typ)
	out.Byte(' ')
	out.String(sub)
	out.Byte(' ')
	writeParams(out, p.Params)
	out.Byte(' ')
	out.NString(p.ID)
	out.Byte(' ')
	out.NString(p.Description)
	out.Byte(' ')
	enc := p.Encoding
	if enc == "" {
		enc = "7bit"
	}
	out.String(enc)
	out.Byte(' ')
	out.Raw(strconv.FormatInt(p.Size, 10))
	switch {
	case p.IsMessage():
		out.Byte(' ')
		env := p.Envelope
		if env == nil {
			env = p.Parts[0].Envelope
		}
		writeEnvelope(out, env)
		out.Byte(' ')
		writeBody(out, p.Parts[0], ext, depth+1)
		out.Byte(' ')
		out.Raw(strconv.FormatInt(p.Lines, 10))
	case eqFold(typ, "text"):
		out.Byte(' ')
		out.Raw(strconv.FormatInt(p.Lines, 10))
	}
	if ext {
		out.Byte(' ')
		out.NString(p.MD5)
		out.Byte(' ')
		writeExtension(out, p)
	}
	out.Byte(')')
}

func eqFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i]|0x20, b[i]|0x20
		if x != y {
			return false
		}
	}
	return true
}
