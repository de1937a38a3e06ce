package server

import (
	"math"
	"strings"
	"unicode/utf8"
)

// Command is one parsed SMTP command line.
type Command struct {
	Verb string // upper case: "MAIL", "RCPT", "EHLO", ...
	Arg  string // the text after the verb, surrounding blanks removed

	// MAIL and RCPT (RFC 5321 §4.1.1.2, §4.1.1.3).
	Path   string  // the path with its angle brackets, not yet parsed
	Params []Param // ESMTP parameters in the order given

	// BDAT (RFC 3030 §2).
	Size int64
	Last bool
}

// Param is an ESMTP parameter, esmtp-keyword ["=" esmtp-value]
// (RFC 5321 §4.1.2).
type Param struct {
	Keyword  string // upper case
	Value    string
	HasValue bool
}

// ParseCommand splits a command line (without its line ending) into verb and
// arguments and checks the syntax of the arguments this server interprets.
// The error is always a *Reply ready to send; the returned Command then
// holds only the verb. Unknown verbs are not an error here: the session
// decides what it implements.
func ParseCommand(line string) (Command, error) {
	verb, rest := line, ""
	if i := strings.IndexAny(line, " \t"); i >= 0 {
		verb, rest = line[:i], line[i+1:]
	}
	// On error the verb is still returned, for the session's statistics.
	verb = upperASCII(verb)
	if line == "" {
		return Command{}, reply(500, "5.5.2", "Error: bad syntax")
	}
	for i := 0; i < len(line); i++ {
		if c := line[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			// NUL and bare CR included: a command is text (RFC 5321 §2.3.8).
			return Command{Verb: verb}, reply(500, "5.5.2", "Error: bad syntax")
		}
	}
	if !utf8.ValidString(line) {
		return Command{Verb: verb}, reply(500, "5.5.2", "Error: bad UTF-8 syntax")
	}
	cmd := Command{Verb: verb, Arg: strings.Trim(rest, " \t")}
	var err error
	switch cmd.Verb {
	case "MAIL":
		err = cmd.parsePathArgs("FROM:", reply(501, "5.5.4", "Syntax: MAIL FROM:<address>"),
			reply(501, "5.1.7", "Bad sender address syntax"))
	case "RCPT":
		err = cmd.parsePathArgs("TO:", reply(501, "5.5.4", "Syntax: RCPT TO:<address>"),
			reply(501, "5.1.3", "Bad recipient address syntax"))
	case "BDAT":
		err = cmd.parseBDAT()
	case "EHLO", "HELO":
		if cmd.Arg == "" {
			err = reply(501, "5.5.4", "Syntax: %s hostname", cmd.Verb)
		}
	}
	if err != nil {
		return Command{Verb: verb}, err
	}
	return cmd, nil
}

// parsePathArgs parses "FROM:<path> params" / "TO:<path> params". Postfix
// tolerates blanks after the colon and a path without angle brackets
// (strict_rfc821_envelopes=no); so does this, because real clients send
// both, but the path itself is parsed strictly later.
func (c *Command) parsePathArgs(prefix string, syntax, badAddr *Reply) error {
	a := c.Arg
	if len(a) < len(prefix) || upperASCII(a[:len(prefix)]) != prefix {
		return syntax
	}
	a = strings.TrimLeft(a[len(prefix):], " \t")
	if a == "" {
		return syntax
	}
	var rest string
	if a[0] == '<' {
		end := pathEnd(a)
		if end < 0 {
			return badAddr
		}
		c.Path, rest = a[:end+1], a[end+1:]
		if rest != "" && rest[0] != ' ' && rest[0] != '\t' {
			return badAddr
		}
	} else {
		tok := a
		if i := strings.IndexAny(a, " \t"); i >= 0 {
			tok, rest = a[:i], a[i:]
		}
		c.Path = "<" + tok + ">"
	}
	for _, f := range strings.FieldsFunc(rest, func(r rune) bool { return r == ' ' || r == '\t' }) {
		p, ok := parseParam(f)
		if !ok {
			return reply(501, "5.5.4", "Error: bad parameter syntax")
		}
		c.Params = append(c.Params, p)
	}
	return nil
}

// pathEnd returns the index of the '>' that closes the path starting at
// s[0] == '<', skipping quoted strings (a quoted local part may hold '>' and
// blanks), or -1.
func pathEnd(s string) int {
	quoted := false
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case !quoted && c == '>':
			return i
		}
	}
	return -1
}

// parseParam checks esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
// and esmtp-value = 1*(%d33-60 / %d62-126), plus UTF-8 in values as
// RFC 6531 §3.3 allows.
func parseParam(s string) (Param, bool) {
	kw, val, hasVal := strings.Cut(s, "=")
	if kw == "" || !isAlnum(kw[0]) {
		return Param{}, false
	}
	for i := 1; i < len(kw); i++ {
		if !isAlnum(kw[i]) && kw[i] != '-' {
			return Param{}, false
		}
	}
	if hasVal {
		if val == "" {
			return Param{}, false
		}
		for i := 0; i < len(val); i++ {
			if c := val[i]; c == '=' || c <= ' ' || c == 0x7f {
				return Param{}, false
			}
		}
	}
	return Param{Keyword: upperASCII(kw), Value: val, HasValue: hasVal}, true
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// parseBDAT parses bdat-cmd = "BDAT" SP chunk-size [ SP end-marker ]
// (RFC 3030 §2), chunk-size = 1*DIGIT. A size that does not fit in int64 is
// an error: nobody can send that much, and the session closes rather than
// guessing where the chunk ends.
func (c *Command) parseBDAT() error {
	syntax := reply(501, "5.5.4", "Syntax: BDAT count [LAST]")
	f := strings.Fields(c.Arg)
	if len(f) == 0 || len(f) > 2 {
		return syntax
	}
	if len(f) == 2 {
		if upperASCII(f[1]) != "LAST" {
			return syntax
		}
		c.Last = true
	}
	n, ok := parseDecimal(f[0])
	if !ok {
		return reply(501, "5.5.4", "Error: bad BDAT chunk size")
	}
	c.Size = n
	return nil
}

// parseDecimal parses 1*DIGIT into an int64, refusing signs, blanks and
// overflow.
func parseDecimal(s string) (int64, bool) {
	if s == "" || len(s) > 19 {
		// 19 digits cover every int64; longer is overflow or zero padding
		// nobody needs.
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		d := s[i]
		if d < '0' || d > '9' {
			return 0, false
		}
		if n > (math.MaxInt64-int64(d-'0'))/10 {
			return 0, false
		}
		n = n*10 + int64(d-'0')
	}
	return n, true
}

// upperASCII upper-cases ASCII letters only. SMTP keywords are ASCII and
// case-insensitive (RFC 5321 §2.4); Unicode case mapping would let "maıl"
// (dotless i) or "LAſT" (long s) pass for MAIL and LAST.
func upperASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if 'a' <= s[i] && s[i] <= 'z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'a' <= b[j] && b[j] <= 'z' {
					b[j] -= 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
