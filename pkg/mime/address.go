package mime

// AddressKind tells an ordinary mailbox from the markers that RFC 3501
// §7.4.2 uses to delimit a group in ENVELOPE address lists.
type AddressKind uint8

const (
	// AddrMailbox is an ordinary address.
	AddrMailbox AddressKind = iota
	// AddrGroupStart opens a group; Mailbox holds the group name.
	AddrGroupStart
	// AddrGroupEnd closes the group opened last.
	AddrGroupEnd
)

// Address is one entry of an address list as ENVELOPE reports it.
//
// Name is the display name as written, or the text of a trailing comment for
// the "addr (Name)" form; RFC 2047 encoded words are kept as they are, since
// ENVELOPE carries raw header text (clients decode them). Use DecodeHeader
// for a UTF-8 rendering.
//
// An address that lacks its local part or domain gets "MISSING_MAILBOX" or
// "MISSING_DOMAIN" in its place, and an unterminated <...> gets the domain
// "SYNTAX_ERROR", so that clients, which expect both parts in a mailbox
// entry, still see the entry.
type Address struct {
	Kind    AddressKind
	Name    string // "" when there is none
	Route   string // obsolete source route "@a,@b" (RFC 5322 §4.4), "" when none
	Mailbox string
	Host    string
}

// ParseAddressList parses an address-list header value (From, To, Cc, ...;
// RFC 5322 §3.4 with the obsolete syntax of §4.4) the way ENVELOPE needs it.
// It never fails: what cannot be understood is skipped or marked as above.
// At most MaxAddresses entries are returned.
func ParseAddressList(value []byte) []Address {
	return parseAddressList(nil, value, MaxAddresses)
}

// addrParser holds the state of one address-list parse.
type addrParser struct {
	l   lexer
	out []Address
	max int
	buf []byte

	// The mailbox being parsed; nil pointers are parts not seen.
	name, route, mailbox, host *string
}

func strp(b []byte) *string { s := string(b); return &s }

func parseAddressList(out []Address, value []byte, max int) []Address {
	p := addrParser{l: lexer{s: value, keepComment: true}, out: out, max: max}
	if p.l.skipCFWS() <= 0 {
		return p.out
	}
	for len(p.out) < p.max {
		r := p.address()
		if r == 0 || p.l.peek() != ',' {
			break
		}
		p.l.i++
		if p.l.skipCFWS() <= 0 {
			break
		}
	}
	return p.out
}

func (p *addrParser) emit(a Address) {
	if len(p.out) < p.max {
		p.out = append(p.out, a)
	}
}

// address parses "mailbox / group" (RFC 5322 §3.4).
func (p *addrParser) address() int {
	start := p.l.i
	if r := p.group(); r >= 0 {
		return r
	}
	p.l.i = start
	return p.mailboxEntry()
}

// group parses display-name ":" [mailbox-list] ";". It returns -1 only when
// the input is no group, before anything was emitted.
func (p *addrParser) group() int {
	var r int
	p.buf, r = p.l.phrase(p.buf[:0])
	if r <= 0 || p.l.s[p.l.i] != ':' {
		return -1
	}
	p.l.i++
	p.emit(Address{Kind: AddrGroupStart, Mailbox: string(p.buf)})
	r = p.l.skipCFWS()
	if r > 0 && p.l.s[p.l.i] != ';' {
		for {
			if p.mailboxEntry() <= 0 {
				r = -1
				break
			}
			if p.l.peek() != ',' {
				break
			}
			p.l.i++
			if p.l.skipCFWS() <= 0 {
				r = -1
				break
			}
		}
	}
	if r >= 0 {
		if p.l.peek() != ';' {
			r = -1
		} else {
			p.l.i++
			r = p.l.skipCFWS()
		}
	}
	p.emit(Address{Kind: AddrGroupEnd})
	if r == 0 {
		return 0
	}
	return 1
}

// mailboxEntry parses "name-addr / addr-spec" and emits it.
func (p *addrParser) mailboxEntry() int {
	start := p.l.i
	p.name, p.route, p.mailbox, p.host = nil, nil, nil, nil
	r := p.nameAddr()
	if r < 0 {
		p.l.i = start
		p.name, p.route, p.mailbox, p.host = nil, nil, nil, nil
		r = p.addrSpec()
	}
	a := Address{Mailbox: "MISSING_MAILBOX", Host: "MISSING_DOMAIN"}
	if p.name != nil {
		a.Name = *p.name
	}
	if p.route != nil {
		a.Route = *p.route
	}
	if p.mailbox != nil {
		a.Mailbox = *p.mailbox
	}
	if p.host != nil && *p.host != "" {
		a.Host = *p.host
	}
	p.emit(a)
	return r
}

// nameAddr parses [display-name] angle-addr.
func (p *addrParser) nameAddr() int {
	var r int
	p.buf, r = p.l.phrase(p.buf[:0])
	if r <= 0 || p.l.s[p.l.i] != '<' {
		return -1
	}
	if len(p.buf) > 0 {
		p.name = strp(p.buf)
	}
	if p.angleAddr() < 0 {
		s := "SYNTAX_ERROR"
		p.host = &s
	}
	return p.l.status()
}

// angleAddr parses "<" [route ":"] local-part "@" domain ">".
func (p *addrParser) angleAddr() int {
	p.l.i++ // "<"
	if p.l.skipCFWS() <= 0 {
		return -1
	}
	if p.l.s[p.l.i] == '@' {
		if p.routeList() > 0 && p.l.peek() == ':' {
			p.l.i++
		} else {
			s := "INVALID_ROUTE"
			p.route = &s
			if !p.l.more() {
				return -1
			}
		}
		if p.l.skipCFWS() <= 0 {
			return -1
		}
	}
	if p.l.s[p.l.i] != '>' {
		if p.localPart() <= 0 {
			return -1
		}
		if p.l.peek() == '@' {
			if p.domainPart() <= 0 {
				return -1
			}
		}
	}
	if p.l.peek() != '>' {
		return -1
	}
	p.l.i++
	return p.l.skipCFWS()
}

// routeList parses the obs-domain-list of RFC 5322 §4.4.
func (p *addrParser) routeList() int {
	var route []byte
	for {
		if !p.l.more() {
			return 0
		}
		if p.l.s[p.l.i] != '@' {
			break
		}
		if len(route) > 0 {
			route = append(route, ',')
		}
		route = append(route, '@')
		var r int
		if route, r = p.l.domain(route); r <= 0 {
			return r
		}
		for p.l.skipCFWS() > 0 && p.l.s[p.l.i] == ',' {
			p.l.i++
		}
	}
	p.route = strp(route)
	return 1
}

func (p *addrParser) localPart() int {
	var r int
	if p.l.s[p.l.i] == '"' {
		p.buf, r = p.l.quoted(p.buf[:0])
	} else {
		p.buf, r = p.l.dotAtom(p.buf[:0])
	}
	if r < 0 {
		return -1
	}
	p.mailbox = strp(p.buf)
	return r
}

func (p *addrParser) domainPart() int {
	d, r := p.l.domain(nil)
	if r < 0 {
		return -1
	}
	p.host = strp(d)
	return r
}

// addrSpec parses local-part "@" domain, and the common broken forms: a
// bare local part ("To: undisclosed") and a bare display name ("From: John
// Doe").
func (p *addrParser) addrSpec() int {
	p.l.comment = p.l.comment[:0]
	quoted := p.l.peek() == '"'
	r := -1
	p.buf = p.buf[:0]
	if p.l.more() {
		r = p.localPart()
	}
	r2 := -2
	if r != 0 && p.l.peek() == '@' {
		if r2 = p.domainPart(); r2 <= 0 {
			r = r2
		}
	}
	switch {
	case len(p.l.comment) > 0:
		p.name = strp(p.l.comment)
	case r2 == -2:
		// No "@domain" and no comment: a lone word is a local part,
		// more words make a display name.
		p.buf = append(p.buf, ' ')
		n := len(p.buf)
		p.buf, _ = p.l.phrase(p.buf)
		if len(p.buf) != n {
			p.mailbox = nil
			p.name = strp(p.buf)
		} else if !quoted {
			s := ""
			p.host = &s
		}
	}
	return r
}
