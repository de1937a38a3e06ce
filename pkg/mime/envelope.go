package mime

// Envelope holds the fields of a message header that ENVELOPE reports
// (RFC 3501 §7.4.2, RFC 9051 §7.5.2).
type Envelope struct {
	// Raw values, or nil when the field is absent. Folded values keep
	// their line breaks as LF.
	Date, Subject, InReplyTo, MessageID *string

	From, Sender, ReplyTo, To, Cc, Bcc []Address
}

func (e *Envelope) set(id fieldID, v []byte) {
	var list *[]Address
	switch id {
	case fieldDate:
		e.Date = strp(v)
	case fieldSubject:
		e.Subject = strp(v)
	case fieldInReplyTo:
		e.InReplyTo = strp(v)
	case fieldMessageID:
		e.MessageID = strp(v)
	case fieldFrom:
		list = &e.From
	case fieldSender:
		list = &e.Sender
	case fieldReplyTo:
		list = &e.ReplyTo
	case fieldTo:
		list = &e.To
	case fieldCc:
		list = &e.Cc
	case fieldBcc:
		list = &e.Bcc
	}
	if list != nil && len(*list) < MaxAddresses {
		*list = parseAddressList(*list, v, MaxAddresses)
	}
}

// Envelope returns the ENVELOPE of the message p is the top of (the part
// Parse returned, or a Message), exactly as Dovecot writes it; for other
// parts it is all NIL.
func (p *Part) Envelope() string {
	return string(p.Env.appendTo(nil))
}

func (e *Envelope) appendTo(b []byte) []byte {
	if e == nil {
		return append(b, "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"...)
	}
	b = append(b, '(')
	b = appendNStringNoLF(b, e.Date)
	b = append(b, ' ')
	if e.Subject == nil {
		b = append(b, "NIL"...)
	} else {
		b = appendHuman(b, *e.Subject)
	}
	b = append(b, ' ')
	b = appendAddresses(b, e.From)
	b = append(b, ' ')
	// RFC 3501 §7.4.2: Sender and Reply-To default to From.
	if len(e.Sender) > 0 {
		b = appendAddresses(b, e.Sender)
	} else {
		b = appendAddresses(b, e.From)
	}
	b = append(b, ' ')
	if len(e.ReplyTo) > 0 {
		b = appendAddresses(b, e.ReplyTo)
	} else {
		b = appendAddresses(b, e.From)
	}
	b = append(b, ' ')
	b = appendAddresses(b, e.To)
	b = append(b, ' ')
	b = appendAddresses(b, e.Cc)
	b = append(b, ' ')
	b = appendAddresses(b, e.Bcc)
	b = append(b, ' ')
	b = appendNStringNoLF(b, e.InReplyTo)
	b = append(b, ' ')
	b = appendNStringNoLF(b, e.MessageID)
	return append(b, ')')
}

func appendAddresses(b []byte, list []Address) []byte {
	if len(list) == 0 {
		return append(b, "NIL"...)
	}
	b = append(b, '(')
	for _, a := range list {
		switch a.Kind {
		case AddrGroupStart:
			b = append(b, "(NIL NIL "...)
			b = appendNStringNoLF(b, &a.Mailbox)
			b = append(b, " NIL)"...)
		case AddrGroupEnd:
			b = append(b, "(NIL NIL NIL NIL)"...)
		default:
			b = append(b, '(')
			if a.Name == "" {
				b = append(b, "NIL"...)
			} else {
				b = appendHuman(b, a.Name)
			}
			b = append(b, ' ')
			if a.Route == "" {
				b = append(b, "NIL"...)
			} else {
				b = appendNStringNoLF(b, &a.Route)
			}
			b = append(b, ' ')
			b = appendNStringNoLF(b, &a.Mailbox)
			b = append(b, ' ')
			b = appendNStringNoLF(b, &a.Host)
			b = append(b, ')')
		}
	}
	return append(b, ')')
}
