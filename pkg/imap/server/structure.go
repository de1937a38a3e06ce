package server

import (
	"strconv"

	"github.com/posthorn/posthorn/pkg/imap"
	"github.com/posthorn/posthorn/pkg/imap/wire"
)

// writeEnvelope writes an ENVELOPE (RFC 3501 §7.4.2).
func writeEnvelope(out *wire.Writer, e *imap.Envelope) {
	if e == nil {
		e = &imap.Envelope{}
	}
	out.Byte('(')
	out.NString(e.Date)
	out.Byte(' ')
	out.NString(e.Subject)
	for _, l := range [][]imap.Address{e.From, e.Sender, e.ReplyTo, e.To, e.Cc, e.Bcc} {
		out.Byte(' ')
		writeAddresses(out, l)
	}
	out.Byte(' ')
	out.NString(e.InReplyTo)
	out.Byte(' ')
	out.NString(e.MessageID)
	out.Byte(')')
}

func writeAddresses(out *wire.Writer, l []imap.Address) {
	if len(l) == 0 {
		out.Raw("NIL")
		return
	}
	out.Byte('(')
	for _, a := range l {
		out.Byte('(')
		out.NString(a.Name)
		out.Byte(' ')
		out.NString(a.ADL)
		out.Byte(' ')
		out.NString(a.Mailbox)
		out.Byte(' ')
		out.NString(a.Host)
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
	typ, sub := p.Type, p.Subtype
	if typ == "" {
		typ, sub = "text", "plain"
	}
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
