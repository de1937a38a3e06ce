// Package address parses SMTP envelope addresses with the grammar of
// RFC 5321 §4.1.2, extended for internationalised addresses by RFC 6531 §3.3.
//
// The parser reads an address once, left to right, and keeps the local part
// in its semantic (unquoted) form. Nothing here ever splits a local part on
// '%', '!' or a second '@': sender-specified routing is not a thing posthorn
// does, so "victim%other.example" is just a local part.
package address

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits from RFC 5321 §4.5.3.1.
const (
	MaxLocalLen  = 64  // §4.5.3.1.1, octets of the local part as written
	MaxDomainLen = 255 // §4.5.3.1.2
	MaxPathLen   = 256 // §4.5.3.1.3, including the angle brackets
	maxLabelLen  = 63  // RFC 1035 §2.3.4
)

var (
	// ErrSyntax is wrapped by every error about a malformed address.
	ErrSyntax = errors.New("bad address syntax")
	// ErrNeedSMTPUTF8 means the address has non-ASCII octets but the
	// transaction did not declare SMTPUTF8 (RFC 6531 §3.4): SMTP replies
	// 553 5.6.7.
	ErrNeedSMTPUTF8 = errors.New("non-ASCII address without SMTPUTF8")
)

// Mailbox is an envelope address. The null reverse-path "<>" is the zero
// value.
type Mailbox struct {
	// Local is the local part with quoting and backslash escapes removed.
	Local string
	// Domain is the domain with ASCII letters in lower case, or an address
	// literal such as "[192.0.2.1]" or "[IPv6:2001:db8::1]". It is empty
	// only for the null path and for a bare local part ("postmaster").
	Domain string
}

// IsNull reports whether m is the null reverse-path "<>".
func (m Mailbox) IsNull() bool { return m.Local == "" && m.Domain == "" }

// String returns the address as it is written in an SMTP path (without the
// angle brackets): the local part stays a dot-string when it is one and is
// quoted otherwise, so ParseMailbox(m.String()) gives m back.
func (m Mailbox) String() string {
	if m.IsNull() {
		return ""
	}
	lp := QuoteLocal(m.Local)
	if m.Domain == "" {
		return lp
	}
	return lp + "@" + m.Domain
}

// QuoteLocal writes a semantic local part in the shortest form RFC 5321
// §4.1.2 allows: as is when it is a Dot-string, else as a Quoted-string with
// '"' and '\' escaped.
func QuoteLocal(local string) string {
	if isDotString(local) {
		return local
	}
	var b strings.Builder
	b.Grow(len(local) + 2)
	b.WriteByte('"')
	for i := 0; i < len(local); i++ {
		c := local[i]
		if c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	b.WriteByte('"')
	return b.String()
}

func isDotString(s string) bool {
	if s == "" {
		return false
	}
	atomLen := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if atomLen == 0 {
				return false
			}
			atomLen = 0
		case isAtext(c) || c >= 0x80:
			atomLen++
		default:
			return false
		}
	}
	return atomLen > 0
}

// ParsePath parses a reverse-path or forward-path as it follows "MAIL FROM:"
// or "RCPT TO:", angle brackets included. "<>" gives the null path;
// "<postmaster>" (any case) gives Mailbox{Local: "postmaster"} as
// RFC 5321 §4.1.1.3 requires. A source route ("<@a,@b:user@example.org>") is
// checked for syntax and ignored, as §4.1.1.3 and Appendix C ask. With
// smtputf8 false any non-ASCII octet gives ErrNeedSMTPUTF8.
func ParsePath(s string, smtputf8 bool) (Mailbox, error) {
	if len(s) > MaxPathLen {
		return Mailbox{}, syntaxErr(s, "path longer than %d octets", MaxPathLen)
	}
	if err := checkOctets(s, smtputf8); err != nil {
		return Mailbox{}, err
	}
	if len(s) < 2 || s[0] != '<' || s[len(s)-1] != '>' {
		return Mailbox{}, syntaxErr(s, "path must be enclosed in <>")
	}
	inner := s[1 : len(s)-1]
	if inner == "" {
		return Mailbox{}, nil
	}
	// ASCII-only comparison: strings.EqualFold would also take "poſtmaster".
	if lowerASCII(inner) == "postmaster" {
		return Mailbox{Local: "postmaster"}, nil
	}
	p := &parser{s: inner, utf8: smtputf8}
	if p.peek() == '@' {
		if err := p.sourceRoute(); err != nil {
			return Mailbox{}, syntaxErr(s, "%v", err)
		}
	}
	m, err := p.mailbox(true)
	if err != nil {
		return Mailbox{}, syntaxErr(s, "%v", err)
	}
	return m, nil
}

// ParseMailbox parses a bare address, "user@example.org" or just "user", as
// found in aliases files and configuration. It uses the grammar of ParsePath
// with UTF-8 allowed, and no angle brackets or source route.
func ParseMailbox(s string) (Mailbox, error) {
	if len(s) > MaxPathLen-2 {
		return Mailbox{}, syntaxErr(s, "address longer than %d octets", MaxPathLen-2)
	}
	if err := checkOctets(s, true); err != nil {
		return Mailbox{}, err
	}
	p := &parser{s: s, utf8: true}
	m, err := p.mailbox(false)
	if err != nil {
		return Mailbox{}, syntaxErr(s, "%v", err)
	}
	return m, nil
}

func syntaxErr(s, format string, args ...any) error {
	return fmt.Errorf("%w: %q: %s", ErrSyntax, s, fmt.Sprintf(format, args...))
}

// checkOctets rejects what no part of the grammar admits anywhere: C0
// controls (NUL, CR, LF included) and DEL, and non-ASCII when SMTPUTF8 is
// off. With SMTPUTF8 the text must be valid UTF-8 (RFC 6531 §3.3 uses
// RFC 3629's UTF8-non-ascii).
func checkOctets(s string, smtputf8 bool) error {
	nonASCII := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == 0x7f {
			return syntaxErr(s, "control character 0x%02x", c)
		}
		if c >= 0x80 {
			nonASCII = true
		}
	}
	if !nonASCII {
		return nil
	}
	if !smtputf8 {
		return fmt.Errorf("%w: %q", ErrNeedSMTPUTF8, s)
	}
	if !utf8.ValidString(s) {
		return syntaxErr(s, "invalid UTF-8")
	}
	return nil
}

// isAtext reports the ASCII atext characters (RFC 5322 §3.2.3, used by
// RFC 5321 §4.1.2 for Atom).
func isAtext(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

func isLetDig(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

type parser struct {
	s    string
	pos  int
	utf8 bool
}

func (p *parser) peek() byte {
	if p.pos < len(p.s) {
		return p.s[p.pos]
	}
	return 0
}

func (p *parser) eof() bool { return p.pos >= len(p.s) }

// nonASCII consumes one non-ASCII character when UTF-8 is allowed. Controls
// and spaces outside ASCII are refused too: they have no business in an
// address and only serve to confuse whoever reads a log.
func (p *parser) nonASCII() bool {
	if !p.utf8 || p.peek() < 0x80 {
		return false
	}
	r, n := utf8.DecodeRuneInString(p.s[p.pos:])
	if r == utf8.RuneError || unicode.IsControl(r) || unicode.IsSpace(r) {
		return false
	}
	p.pos += n
	return true
}

// sourceRoute consumes A-d-l ":" (RFC 5321 §4.1.2): "@a,@b:".
func (p *parser) sourceRoute() error {
	for {
		if p.peek() != '@' {
			return fmt.Errorf("source route: want '@' at offset %d", p.pos)
		}
		p.pos++
		if _, err := p.domainName(); err != nil {
			return fmt.Errorf("source route: %w", err)
		}
		switch p.peek() {
		case ',':
			p.pos++
		case ':':
			p.pos++
			return nil
		default:
			return fmt.Errorf("source route: want ',' or ':' at offset %d", p.pos)
		}
	}
}

// mailbox parses Local-part "@" (Domain / address-literal) to the end of the
// input. needDomain is false for ParseMailbox, which also takes a bare local
// part.
func (p *parser) mailbox(needDomain bool) (Mailbox, error) {
	start := p.pos
	local, err := p.localPart()
	if err != nil {
		return Mailbox{}, err
	}
	if n := p.pos - start; n > MaxLocalLen {
		return Mailbox{}, fmt.Errorf("local part is %d octets, limit %d", n, MaxLocalLen)
	}
	if p.eof() {
		if needDomain {
			return Mailbox{}, errors.New("missing @domain")
		}
		if local == "" {
			return Mailbox{}, errors.New("empty local part without domain")
		}
		return Mailbox{Local: local}, nil
	}
	if p.peek() != '@' {
		return Mailbox{}, fmt.Errorf("unexpected %q at offset %d", p.peek(), p.pos)
	}
	p.pos++
	var domain string
	if p.peek() == '[' {
		domain, err = p.addressLiteral()
	} else {
		domain, err = p.domainName()
	}
	if err != nil {
		return Mailbox{}, err
	}
	if !p.eof() {
		return Mailbox{}, fmt.Errorf("unexpected %q at offset %d", p.peek(), p.pos)
	}
	return Mailbox{Local: local, Domain: domain}, nil
}

// localPart parses Dot-string / Quoted-string and returns the semantic value.
func (p *parser) localPart() (string, error) {
	if p.peek() == '"' {
		return p.quotedString()
	}
	start := p.pos
	atomLen := 0
scan:
	for !p.eof() {
		c := p.peek()
		switch {
		case c == '.':
			if atomLen == 0 {
				return "", fmt.Errorf("empty atom in local part at offset %d", p.pos)
			}
			atomLen = 0
			p.pos++
		case isAtext(c):
			atomLen++
			p.pos++
		case p.nonASCII():
			atomLen++
		default:
			break scan
		}
	}
	if atomLen == 0 {
		if p.pos == start {
			return "", fmt.Errorf("empty or invalid local part at offset %d", p.pos)
		}
		return "", errors.New("local part ends with '.'")
	}
	return p.s[start:p.pos], nil
}

// quotedString parses DQUOTE *QcontentSMTP DQUOTE (RFC 5321 §4.1.2, with
// RFC 6531's UTF8-non-ascii in qtextSMTP). An empty quoted string is valid.
func (p *parser) quotedString() (string, error) {
	p.pos++ // opening quote
	var b strings.Builder
	for {
		if p.eof() {
			return "", errors.New("unterminated quoted string")
		}
		c := p.peek()
		switch {
		case c == '"':
			p.pos++
			return b.String(), nil
		case c == '\\':
			// quoted-pairSMTP = %d92 %d32-126: only printable ASCII.
			if p.pos+1 >= len(p.s) {
				return "", errors.New("backslash at end of quoted string")
			}
			e := p.s[p.pos+1]
			if e < 32 || e > 126 {
				return "", fmt.Errorf("invalid quoted-pair at offset %d", p.pos)
			}
			b.WriteByte(e)
			p.pos += 2
		case 32 <= c && c <= 126:
			b.WriteByte(c)
			p.pos++
		default:
			start := p.pos
			if !p.nonASCII() {
				return "", fmt.Errorf("invalid character in quoted string at offset %d", p.pos)
			}
			b.WriteString(p.s[start:p.pos])
		}
	}
}

// domainName parses sub-domain *("." sub-domain) (RFC 5321 §4.1.2) and, with
// UTF-8, U-labels (RFC 6531 §3.3). ASCII letters are lower-cased so that
// domains compare with ==.
func (p *parser) domainName() (string, error) {
	start := p.pos
	for {
		if err := p.label(); err != nil {
			return "", err
		}
		if p.peek() != '.' {
			break
		}
		p.pos++
	}
	d := p.s[start:p.pos]
	if len(d) > MaxDomainLen {
		return "", fmt.Errorf("domain is %d octets, limit %d", len(d), MaxDomainLen)
	}
	return lowerASCII(d), nil
}

// label parses Let-dig [Ldh-str]: no leading or trailing hyphen.
func (p *parser) label() error {
	start := p.pos
	lastHyphen := false
	for !p.eof() {
		c := p.peek()
		if isLetDig(c) {
			lastHyphen = false
			p.pos++
			continue
		}
		if c == '-' {
			if p.pos == start {
				return fmt.Errorf("domain label starts with '-' at offset %d", p.pos)
			}
			lastHyphen = true
			p.pos++
			continue
		}
		if p.nonASCII() {
			lastHyphen = false
			continue
		}
		break
	}
	switch {
	case p.pos == start:
		return fmt.Errorf("empty or invalid domain label at offset %d", p.pos)
	case lastHyphen:
		return fmt.Errorf("domain label ends with '-' at offset %d", p.pos)
	case p.pos-start > maxLabelLen:
		return fmt.Errorf("domain label is %d octets, limit %d", p.pos-start, maxLabelLen)
	}
	return nil
}

// addressLiteral parses "[" (IPv4 / "IPv6:" IPv6) "]" (RFC 5321 §4.1.3).
// General-address-literal tags other than IPv6 are not registered with
// IANA, so they are refused as malformed.
func (p *parser) addressLiteral() (string, error) {
	end := strings.IndexByte(p.s[p.pos:], ']')
	if end < 0 {
		return "", errors.New("unterminated address literal")
	}
	body := p.s[p.pos+1 : p.pos+end]
	p.pos += end + 1
	if len(body) >= 5 && strings.EqualFold(body[:5], "IPv6:") {
		a := body[5:]
		for i := 0; i < len(a); i++ {
			c := a[i]
			// The RFC grammar has hex digits, ':' and '.'; this excludes the
			// zone suffix netip would otherwise take.
			if !(isHex(c) || c == ':' || c == '.') {
				return "", fmt.Errorf("invalid IPv6 address literal %q", body)
			}
		}
		ip, err := netip.ParseAddr(a)
		if err != nil || !ip.Is6() {
			return "", fmt.Errorf("invalid IPv6 address literal %q", body)
		}
		return "[IPv6:" + lowerASCII(a) + "]", nil
	}
	if strings.IndexByte(body, ':') >= 0 {
		return "", fmt.Errorf("unsupported address literal %q", body)
	}
	if !validIPv4(body) {
		return "", fmt.Errorf("invalid IPv4 address literal %q", body)
	}
	return "[" + body + "]", nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// validIPv4 checks Snum 3("." Snum), Snum = 1*3DIGIT with a value 0-255.
func validIPv4(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 4 {
		return false
	}
	for _, part := range parts {
		if len(part) < 1 || len(part) > 3 {
			return false
		}
		v := 0
		for i := 0; i < len(part); i++ {
			if part[i] < '0' || part[i] > '9' {
				return false
			}
			v = v*10 + int(part[i]-'0')
		}
		if v > 255 {
			return false
		}
	}
	return true
}

func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// DomainLower returns the domain with ASCII letters lower-cased. Parsed
// mailboxes already are; this is for values built by hand.
func (m Mailbox) DomainLower() string { return lowerASCII(m.Domain) }
