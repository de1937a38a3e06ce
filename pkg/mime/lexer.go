package mime

// Character classes for RFC 5322 §3.2.3 atext and RFC 2045 §5.1 token.
// Octets >= 0x80 count as both, as RFC 6532 §3.2 allows UTF-8 there and real
// mail carries raw 8-bit text in unencoded headers.
const (
	classAtext = 1 << iota
	classToken
)

var charClass = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		switch {
		case c >= 0x80,
			c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
			t[c] = classAtext | classToken
		}
	}
	for _, c := range []byte("!#$%&'*+-^_`{|}~") {
		t[c] = classAtext | classToken
	}
	// atext but tspecials (RFC 2045 §5.1).
	for _, c := range []byte("/=?") {
		t[c] = classAtext
	}
	// A token may contain "." although atext may not.
	t['.'] = classToken
	return t
}()

func isAtext(c byte) bool { return charClass[c]&classAtext != 0 }
func isToken(c byte) bool { return charClass[c]&classToken != 0 }

// lexer walks a header field value. Its methods follow one convention: they
// return -1 for a syntax error, 0 when the input is used up and 1 when more
// input follows. Whitespace, line folds and comments (CFWS, RFC 5322 §3.2.2)
// after a token are skipped before returning.
type lexer struct {
	s []byte
	i int
	// keepComment makes skipComment record the text of the most recent
	// comment in comment: display names of the "addr (Name)" form.
	keepComment bool
	comment     []byte
}

func (l *lexer) more() bool { return l.i < len(l.s) }

// peek returns the next octet, or 0 at the end of the input.
func (l *lexer) peek() byte {
	if l.i < len(l.s) {
		return l.s[l.i]
	}
	return 0
}

func (l *lexer) status() int {
	if l.i < len(l.s) {
		return 1
	}
	return 0
}

// skipCFWS skips whitespace, line breaks and comments.
func (l *lexer) skipCFWS() int {
	for l.i < len(l.s) {
		switch l.s[l.i] {
		case ' ', '\t', '\r', '\n':
			l.i++
		case '(':
			if l.skipComment() < 0 {
				return -1
			}
		default:
			return 1
		}
	}
	return 0
}

// skipComment skips a comment, nested ones included (RFC 5322 §3.2.2). The
// recorded text is the comment without its outer parentheses, with
// quoted-pairs resolved and line breaks removed.
func (l *lexer) skipComment() int {
	if l.keepComment {
		l.comment = l.comment[:0]
	}
	l.i++
	start, depth := l.i, 1
	for ; l.i < len(l.s); l.i++ {
		switch l.s[l.i] {
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				if l.keepComment {
					l.comment = append(l.comment, l.s[start:l.i]...)
				}
				l.i++
				return l.status()
			}
		case '\n':
			if l.keepComment {
				l.comment = append(l.comment, trimCR(l.s[start:l.i])...)
				start = l.i + 1
			}
		case '\\':
			l.i++
			if l.i >= len(l.s) {
				return -1
			}
			if l.keepComment {
				l.comment = append(l.comment, l.s[start:l.i-1]...)
				start = l.i
			}
		}
	}
	return -1
}

func trimCR(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\r' {
		return b[:n-1]
	}
	return b
}

// quoted appends the content of a quoted-string (RFC 5322 §3.2.4) with
// quoted-pairs resolved and folding line breaks removed.
func (l *lexer) quoted(dst []byte) ([]byte, int) {
	l.i++
	start := l.i
	for ; l.i < len(l.s); l.i++ {
		switch l.s[l.i] {
		case '"':
			dst = append(dst, l.s[start:l.i]...)
			l.i++
			return dst, l.skipCFWS()
		case '\n':
			dst = append(dst, trimCR(l.s[start:l.i])...)
			start = l.i + 1
		case '\\':
			l.i++
			if l.i >= len(l.s) {
				return dst, -1
			}
			dst = append(dst, l.s[start:l.i-1]...)
			start = l.i
		}
	}
	return dst, -1
}

// atom appends an atom (RFC 5322 §3.2.3).
func (l *lexer) atom(dst []byte) ([]byte, int) {
	if !l.more() || !isAtext(l.s[l.i]) {
		return dst, -1
	}
	start := l.i
	for l.i < len(l.s) && isAtext(l.s[l.i]) {
		l.i++
	}
	dst = append(dst, l.s[start:l.i]...)
	if !l.more() {
		return dst, 0
	}
	return dst, l.skipCFWS()
}

// dotAtom appends a dot-atom (RFC 5322 §3.2.3). As in RFC 822, CFWS may
// surround the dots; it is dropped.
func (l *lexer) dotAtom(dst []byte) ([]byte, int) {
	if !l.more() || !isAtext(l.s[l.i]) {
		return dst, -1
	}
	start := l.i
	l.i++
	for l.i < len(l.s) {
		if isAtext(l.s[l.i]) {
			l.i++
			continue
		}
		dst = append(dst, l.s[start:l.i]...)
		if r := l.skipCFWS(); r <= 0 {
			return dst, r
		}
		if l.s[l.i] != '.' {
			return dst, 1
		}
		l.i++
		dst = append(dst, '.')
		if r := l.skipCFWS(); r <= 0 {
			return dst, r
		}
		start = l.i
	}
	return append(dst, l.s[start:l.i]...), 0
}

// atomOrDots appends a run of atext and "." (the obs-phrase of RFC 5322
// §4.1 allows dots in display names, as in "John Q. Public").
func (l *lexer) atomOrDots(dst []byte) ([]byte, int) {
	start := l.i
	for l.i < len(l.s) && (isAtext(l.s[l.i]) || l.s[l.i] == '.') {
		l.i++
	}
	dst = append(dst, l.s[start:l.i]...)
	if !l.more() {
		return dst, 0
	}
	return dst, l.skipCFWS()
}

// phrase appends a phrase (RFC 5322 §3.2.5, with obs-phrase), its words
// separated by one space.
func (l *lexer) phrase(dst []byte) ([]byte, int) {
	if !l.more() {
		return dst, 0
	}
	if l.s[l.i] == '.' {
		return dst, -1
	}
	for {
		var r int
		if l.s[l.i] == '"' {
			dst, r = l.quoted(dst)
		} else {
			dst, r = l.atomOrDots(dst)
		}
		if r <= 0 {
			return dst, r
		}
		if c := l.s[l.i]; !isAtext(c) && c != '"' && c != '.' {
			break
		}
		dst = append(dst, ' ')
	}
	return dst, l.skipCFWS()
}

// domain appends the domain after an "@" (RFC 5322 §3.4.1).
func (l *lexer) domain(dst []byte) ([]byte, int) {
	l.i++ // "@"
	if r := l.skipCFWS(); r <= 0 {
		return dst, -1
	}
	if l.s[l.i] == '[' {
		return l.domainLiteral(dst)
	}
	return l.dotAtom(dst)
}

// domainLiteral appends a domain-literal as written, brackets included.
func (l *lexer) domainLiteral(dst []byte) ([]byte, int) {
	start := l.i
	for l.i++; l.i < len(l.s); l.i++ {
		switch l.s[l.i] {
		case '\\':
			l.i++
			if l.i >= len(l.s) {
				return dst, -1
			}
		case '[':
			return dst, -1
		case ']':
			dst = append(dst, l.s[start:l.i+1]...)
			l.i++
			return dst, l.skipCFWS()
		}
	}
	return dst, -1
}

// token appends an RFC 2045 token, possibly empty.
func (l *lexer) token(dst []byte) ([]byte, int) {
	start := l.i
	for l.i < len(l.s) && isToken(l.s[l.i]) {
		l.i++
	}
	dst = append(dst, l.s[start:l.i]...)
	if !l.more() {
		return dst, 0
	}
	return dst, l.skipCFWS()
}
