package mime

import (
	"strconv"
	"strings"
)

// emptyBody stands for the body parts of a multipart that has none, which
// the grammar does not allow (RFC 3501 §9: body-type-mpart = 1*body).
const (
	emptyBody          = `("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0)`
	emptyBodyStructure = `("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL)`
)

// BodyStructure returns the BODYSTRUCTURE (extended) or BODY value of the
// part (RFC 3501 §7.4.2, RFC 9051 §7.5.2), exactly as Dovecot writes it.
func (p *Part) BodyStructure(extended bool) string {
	return string(p.appendBody(nil, extended))
}

func (p *Part) appendBody(b []byte, ext bool) []byte {
	b = append(b, '(')
	switch p.kind {
	case kindMultipart:
		if len(p.Children) == 0 {
			if ext {
				b = append(b, emptyBodyStructure...)
			} else {
				b = append(b, emptyBody...)
			}
		}
		for _, c := range p.Children {
			b = c.appendBody(b, ext)
		}
		b = append(b, ' ')
		b = appendString(b, p.Subtype)
		if ext {
			b = append(b, ' ')
			b = appendParams(b, p.Params, false)
			b = p.appendExtension(b)
		}
		return append(b, ')')
	case kindMessage:
		b = append(b, `"message" `...)
		b = appendString(b, strings.ToLower(p.Subtype))
	default:
		typ, sub := p.Type, p.Subtype
		if isMessageType(typ, sub) {
			// Not parsed (a limit was hit): without an envelope
			// and body, the message/rfc822 grammar cannot be met,
			// so say what it is to a client: opaque octets.
			typ, sub = "application", "octet-stream"
		}
		b = appendString(b, typ)
		b = append(b, ' ')
		b = appendString(b, sub)
	}
	text := p.kind == kindLeaf && strings.EqualFold(p.Type, "text")
	b = append(b, ' ')
	b = appendParams(b, p.Params, text)
	b = append(b, ' ')
	b = appendNStringNoLF(b, p.ID)
	b = append(b, ' ')
	b = appendNStringNoLF(b, p.Description)
	b = append(b, ' ')
	if p.Encoding != nil {
		b = appendString(b, *p.Encoding)
	} else {
		b = append(b, `"7bit"`...)
	}
	b = append(b, ' ')
	b = strconv.AppendInt(b, p.BodySize, 10)
	switch {
	case text:
		b = append(b, ' ')
		b = strconv.AppendInt(b, p.Lines, 10)
	case p.kind == kindMessage:
		b = append(b, ' ')
		b = p.Message.Env.appendTo(b)
		b = append(b, ' ')
		b = p.Message.appendBody(b, ext)
		b = append(b, ' ')
		b = strconv.AppendInt(b, p.Lines, 10)
	}
	if ext {
		b = append(b, ' ')
		b = appendNStringNoLF(b, p.MD5)
		b = p.appendExtension(b)
	}
	return append(b, ')')
}

func isMessageType(typ, sub string) bool {
	return strings.EqualFold(typ, "message") &&
		(strings.EqualFold(sub, "rfc822") || strings.EqualFold(sub, "global"))
}

// appendExtension writes body-fld-dsp, body-fld-lang and body-fld-loc.
func (p *Part) appendExtension(b []byte) []byte {
	b = append(b, ' ')
	if p.Disposition == nil {
		b = append(b, "NIL"...)
	} else {
		b = append(b, '(')
		b = appendString(b, *p.Disposition)
		b = append(b, ' ')
		b = appendParams(b, p.DispositionParams, false)
		b = append(b, ')')
	}
	b = append(b, ' ')
	if len(p.Language) == 0 {
		b = append(b, "NIL"...)
	} else {
		b = append(b, '(')
		for i, l := range p.Language {
			if i > 0 {
				b = append(b, ' ')
			}
			b = appendString(b, l)
		}
		b = append(b, ')')
	}
	b = append(b, ' ')
	return appendNStringNoLF(b, p.Location)
}

// appendParams writes body-fld-param. Text parts always get a charset: the
// RFC 2045 §5.2 default when none is given.
func appendParams(b []byte, params []Param, text bool) []byte {
	if len(params) == 0 && !text {
		return append(b, "NIL"...)
	}
	b = append(b, '(')
	charset := false
	for i, pr := range params {
		if i > 0 {
			b = append(b, ' ')
		}
		charset = charset || strings.EqualFold(pr.Name, "charset")
		b = appendString(b, pr.Name)
		b = append(b, ' ')
		b = appendString(b, pr.Value)
	}
	if text && !charset {
		if len(params) > 0 {
			b = append(b, ' ')
		}
		b = append(b, `"charset" "us-ascii"`...)
	}
	return append(b, ')')
}
