package pop3

import (
	"errors"
	"strings"
)

// command is one parsed command line.
type command struct {
	// name is the keyword in upper case (RFC 2449 §3: case-insensitive,
	// three or four characters).
	name string
	// args are the space-separated arguments.
	args []string
	// rest is everything after the keyword and its space, as sent: PASS
	// takes its whole remainder as the password (RFC 1939 §7 allows
	// spaces in it), USER its whole remainder as the name.
	rest string
}

var (
	errEmptyCommand = errors.New("empty command")
	errBadKeyword   = errors.New("invalid command keyword")
	errBadChar      = errors.New("invalid character in command")
)

// parseCommand parses a command line without its line end. Keywords are
// 3-4 ASCII letters (RFC 2449 §3). Arguments may hold any octet but the
// ASCII control characters and DEL: a NUL or CR inside a command is never
// passed on to anything (HOSTILE 14), and 8-bit octets are kept for UTF-8
// user names and passwords.
func parseCommand(line []byte) (command, error) {
	for _, c := range line {
		if c < 0x20 || c == 0x7f {
			return command{}, errBadChar
		}
	}
	s := string(line)
	if s == "" {
		return command{}, errEmptyCommand
	}
	kw, rest, _ := strings.Cut(s, " ")
	if len(kw) < 3 || len(kw) > 4 {
		return command{}, errBadKeyword
	}
	for i := 0; i < len(kw); i++ {
		if c := kw[i] | 0x20; c < 'a' || c > 'z' {
			return command{}, errBadKeyword
		}
	}
	// Clients separate arguments with one space; extra ones between or
	// after them are tolerated in everything but the raw remainder.
	return command{name: strings.ToUpper(kw), args: strings.Fields(rest), rest: rest}, nil
}

// parseNumber parses a message number or a line count: decimal digits
// only (no sign, no space), saturating at 1<<62 so that any run of digits
// is a valid, merely too large, number. ok is false for anything else.
func parseNumber(s string) (n int64, ok bool) {
	if s == "" || len(s) > 64 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if n < 1<<62/10 {
			n = n*10 + int64(c-'0')
		} else {
			n = 1 << 62
		}
	}
	return n, true
}
