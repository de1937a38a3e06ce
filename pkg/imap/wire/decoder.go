package wire

import (
	"errors"
	"io"
	"strings"
	"unicode/utf8"
)

// Limits bound one command. Zero fields take the defaults of
// DefaultLimits.
type Limits struct {
	// MaxLine caps one line without its CRLF: Dovecot's
	// imap_max_line_length, 64 KiB (8 KiB in imap-login, before login).
	MaxLine int
	// MaxCommand caps the octets of one command, lines and literals
	// together, APPEND's message excluded (mox: 1 MiB).
	MaxCommand int64
	// MaxLiteral caps one literal outside APPEND's message.
	MaxLiteral int64
	// MaxLiterals caps the literals of one command (mox: 1000).
	MaxLiterals int
	// NonSyncMax is the largest {n+} accepted: 4096 under LITERAL-
	// (RFC 7888 §5); 0 means no limit beyond the others (LITERAL+).
	NonSyncMax int64
	// MaxDiscard is how many octets of rejected non-synchronising
	// literals are read and dropped before the connection is closed
	// instead (RFC 7888 §4 lets the server do either).
	MaxDiscard int64
	// MaxSearchDepth and MaxSearchKeys bound SEARCH programs
	// (parentheses, OR and NOT nesting; keys in total).
	MaxSearchDepth int
	MaxSearchKeys  int
	// MaxListDepth bounds parenthesised lists in other arguments.
	MaxListDepth int
}

// DefaultLimits are the limits after login.
var DefaultLimits = Limits{
	MaxLine:        64 * 1024,
	MaxCommand:     1024 * 1024,
	MaxLiteral:     64 * 1024,
	MaxLiterals:    1000,
	MaxDiscard:     16 * 1024 * 1024,
	MaxSearchDepth: 1000,
	MaxSearchKeys:  10000,
	MaxListDepth:   8,
}

// PreAuthLimits are the limits before login: one 8 KiB budget for a whole
// command, literals included, as Dovecot's imap-login has.
var PreAuthLimits = Limits{
	MaxLine:        8 * 1024,
	MaxCommand:     8 * 1024,
	MaxLiteral:     8 * 1024,
	MaxLiterals:    10,
	MaxDiscard:     8 * 1024,
	MaxSearchDepth: 1,
	MaxSearchKeys:  1,
	MaxListDepth:   2,
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	if l.MaxLine <= 0 {
		l.MaxLine = d.MaxLine
	}
	if l.MaxCommand <= 0 {
		l.MaxCommand = d.MaxCommand
	}
	if l.MaxLiteral <= 0 {
		l.MaxLiteral = d.MaxLiteral
	}
	if l.MaxLiterals <= 0 {
		l.MaxLiterals = d.MaxLiterals
	}
	if l.MaxDiscard <= 0 {
		l.MaxDiscard = d.MaxDiscard
	}
	if l.MaxSearchDepth <= 0 {
		l.MaxSearchDepth = d.MaxSearchDepth
	}
	if l.MaxSearchKeys <= 0 {
		l.MaxSearchKeys = d.MaxSearchKeys
	}
	if l.MaxListDepth <= 0 {
		l.MaxListDepth = d.MaxListDepth
	}
	return l
}

// Error is a command the decoder refused. The rest of the command has
// been skipped unless Fatal is set, in which case the connection must be
// closed (the input can no longer be trusted to be in step).
type Error struct {
	Tag   string // "*" when the tag itself was unreadable
	Code  string // response code such as "TOOBIG", or ""
	Text  string
	Fatal bool
}

func (e *Error) Error() string { return e.Text }

// Decoder reads commands from an In.
type Decoder struct {
	in *In
	// Continue writes a command continuation request ("+ OK") and flushes
	// it; it is called only when a synchronising literal is accepted.
	Continue func() error
	// UTF8 allows UTF-8 in quoted strings (IMAP4rev2 or UTF8=ACCEPT,
	// RFC 9051 §4.3, RFC 6855 §3).
	UTF8   bool
	limits Limits

	line     []byte // current line, CRLF removed
	pos      int
	tag      string
	cmdBytes int64
	literals int
	discard  int64
	// pending is the APPEND message literal not yet read.
	pending *pendingLiteral
	scratch []byte
}

type pendingLiteral struct {
	size    int64
	nonSync bool
	wrapped bool // RFC 6855 UTF8 (~{n}...)
	left    int64
}

// NewDecoder returns a decoder reading from in.
func NewDecoder(in *In, l Limits) *Decoder {
	return &Decoder{in: in, limits: l.withDefaults()}
}

// SetLimits changes the limits for the next command (after login).
func (d *Decoder) SetLimits(l Limits) { d.limits = l.withDefaults() }

// Limits returns the limits in force.
func (d *Decoder) Limits() Limits { return d.limits }

// Release drops the line buffer between commands when it grew large.
func (d *Decoder) Release() {
	if cap(d.line) > 1024 {
		d.line = nil
	} else {
		d.line = d.line[:0]
	}
	d.scratch = nil
}

// fail builds a BAD error for the current command and skips its rest.
func (d *Decoder) fail(text string) error {
	e := &Error{Tag: d.tag, Text: text}
	if err := d.skipRest(); err != nil {
		return d.fatal(err)
	}
	return e
}

// fatal turns a read failure into an error that ends the connection.
func (d *Decoder) fatal(err error) error {
	var e *Error
	if errors.As(err, &e) {
		e.Fatal = true
		return e
	}
	if errors.Is(err, ErrLineTooLong) {
		return &Error{Tag: "*", Text: "Too long argument.", Fatal: true}
	}
	return err // I/O error: the caller closes silently
}

// readLine reads the next line of the current command into d.line.
func (d *Decoder) readLine() error {
	var err error
	d.line, err = d.in.readLine(d.line[:0], d.limits.MaxLine)
	d.pos = 0
	if err != nil {
		return err
	}
	d.cmdBytes += int64(len(d.line)) + 2
	if d.cmdBytes > d.limits.MaxCommand {
		return ErrLineTooLong
	}
	return nil
}

// skipRest consumes the remainder of a refused command: the rest of the
// line and, when the line ends with a non-synchronising literal, the
// literal and the lines after it. A synchronising literal at the end of a
// line was never granted a continuation, so the client will not send it
// (RFC 3501 §7.5). Returns an error when the input cannot be skipped.
func (d *Decoder) skipRest() error {
	d.pending = nil
	for {
		n, nonSync, ok := trailingLiteral(d.line)
		d.pos = len(d.line)
		if !ok || !nonSync {
			return nil
		}
		d.discard += n
		if n < 0 || d.discard > d.limits.MaxDiscard {
			return &Error{Tag: d.tag, Code: "TOOBIG", Text: "Literal too large to skip.", Fatal: true}
		}
		if err := d.in.Discard(n); err != nil {
			return err
		}
		d.line = d.line[:0]
		var err error
		// Lines after a skipped literal are only scanned, not counted.
		d.line, err = d.in.readLine(d.line, d.limits.MaxLine)
		if err != nil {
			return err
		}
	}
}

// trailingLiteral reports whether line ends with "{n}", "{n+}" or
// "~{n}"; n is -1 when the number overflows. It looks at the bytes only,
// so a quoted string ending in "{5+}" counts too: skipping five octets too
// many is safer than running them as a command.
func trailingLiteral(line []byte) (n int64, nonSync, ok bool) {
	if len(line) < 3 || line[len(line)-1] != '}' {
		return 0, false, false
	}
	i := len(line) - 2
	if line[i] == '+' {
		nonSync = true
		i--
	}
	end := i + 1
	for i >= 0 && line[i] >= '0' && line[i] <= '9' {
		i--
	}
	if i < 0 || line[i] != '{' || i+1 == end {
		return 0, false, false
	}
	for _, c := range line[i+1 : end] {
		if n > (1<<62)/10 {
			return -1, nonSync, true
		}
		n = n*10 + int64(c-'0')
	}
	return n, nonSync, true
}

// ---- tokens ----

func (d *Decoder) eol() bool { return d.pos >= len(d.line) }

func (d *Decoder) peek() byte {
	if d.pos < len(d.line) {
		return d.line[d.pos]
	}
	return 0
}

// sp consumes one space.
func (d *Decoder) sp() error {
	if d.peek() != ' ' {
		return d.fail("Missing space.")
	}
	d.pos++
	return nil
}

// end requires the end of the command.
func (d *Decoder) end() error {
	if !d.eol() {
		return d.fail("Unexpected text at end of command.")
	}
	return nil
}

func isAtomChar(c byte) bool {
	if c <= 0x20 || c >= 0x7f {
		return false
	}
	switch c {
	case '(', ')', '{', '%', '*', '"', '\\', ']':
		return false
	}
	return true
}

func isAStringChar(c byte) bool { return isAtomChar(c) || c == ']' }

func isListChar(c byte) bool { return isAStringChar(c) || c == '%' || c == '*' }

// atom reads 1*ATOM-CHAR.
func (d *Decoder) atom() (string, error) {
	s := d.pos
	for d.pos < len(d.line) && isAtomChar(d.line[d.pos]) {
		d.pos++
	}
	if d.pos == s {
		return "", d.fail("Expected an atom.")
	}
	return string(d.line[s:d.pos]), nil
}

// word reads characters accepted by ok (at least one) without a copy
// beyond the returned string.
func (d *Decoder) word(ok func(byte) bool, what string) (string, error) {
	s := d.pos
	for d.pos < len(d.line) && ok(d.line[d.pos]) {
		d.pos++
	}
	if d.pos == s {
		return "", d.fail("Expected " + what + ".")
	}
	return string(d.line[s:d.pos]), nil
}

// keyword reads an atom and upper-cases it.
func (d *Decoder) keyword() (string, error) {
	s, err := d.atom()
	return strings.ToUpper(s), err
}

// quoted reads a quoted string. NUL, CR, LF and (unless UTF8) 8-bit
// octets are refused (RFC 9051 §4.3, HOSTILE 41); a backslash may only
// escape '"' or '\'.
func (d *Decoder) quoted() (string, error) {
	d.pos++ // opening quote
	b := d.scratch[:0]
	eightBit := false
	for {
		if d.eol() {
			return "", d.fail("Missing closing quote.")
		}
		c := d.line[d.pos]
		d.pos++
		switch {
		case c == '"':
			d.scratch = b
			if eightBit && !utf8.Valid(b) {
				return "", d.fail("Invalid UTF-8 in quoted string.")
			}
			return string(b), nil
		case c == '\\':
			if d.eol() || (d.line[d.pos] != '"' && d.line[d.pos] != '\\') {
				return "", d.fail("Invalid escape in quoted string.")
			}
			b = append(b, d.line[d.pos])
			d.pos++
		case c == 0 || c == '\r' || c == '\n':
			return "", d.fail("Invalid character in quoted string.")
		case c >= 0x80:
			if !d.UTF8 {
				return "", d.fail("8-bit data in quoted string; use a literal.")
			}
			eightBit = true
			b = append(b, c)
		default:
			b = append(b, c)
		}
	}
}

// literalSpec parses "{n}" or "{n+}" at the end of the line; binary allows
// "~{n}" (literal8, RFC 3516 §4.3).
func (d *Decoder) literalSpec(binary bool) (n int64, nonSync, isBinary bool, err error) {
	if d.peek() == '~' {
		if !binary {
			return 0, false, false, d.fail("literal8 is not allowed here.")
		}
		isBinary = true
		d.pos++
	}
	if d.peek() != '{' {
		return 0, false, false, d.fail("Expected a literal.")
	}
	d.pos++
	s := d.pos
	overflow := false
	for d.pos < len(d.line) && d.line[d.pos] >= '0' && d.line[d.pos] <= '9' {
		if n > (1<<62)/10 {
			overflow = true
		} else {
			n = n*10 + int64(d.line[d.pos]-'0')
		}
		d.pos++
	}
	if d.pos == s {
		return 0, false, false, d.fail("Invalid literal size.")
	}
	if d.peek() == '+' {
		nonSync = true
		d.pos++
	}
	if d.peek() != '}' || d.pos+1 != len(d.line) {
		return 0, false, false, d.fail("Literal size must end the line.")
	}
	d.pos++
	if overflow {
		n = -1
	}
	return n, nonSync, isBinary, nil
}

// tooBig refuses a literal. A synchronising one was never granted, so the
// client does not send it; a non-synchronising one is already on its way
// and is consumed (or the connection closed) by skipRest.
func (d *Decoder) tooBig(text string) error {
	e := &Error{Tag: d.tag, Code: "TOOBIG", Text: text}
	if err := d.skipRest(); err != nil {
		return d.fatal(err)
	}
	return e
}

// literal reads a literal argument (not APPEND's message) into a string.
func (d *Decoder) literal(binary bool) (string, error) {
	n, nonSync, _, err := d.literalSpec(binary)
	if err != nil {
		return "", err
	}
	d.literals++
	switch {
	case n < 0 || n > d.limits.MaxLiteral:
		return "", d.tooBig("Literal too large.")
	case d.literals > d.limits.MaxLiterals:
		return "", d.tooBig("Too many literals.")
	case d.cmdBytes+n > d.limits.MaxCommand:
		return "", d.tooBig("Command too large.")
	case nonSync && d.limits.NonSyncMax > 0 && n > d.limits.NonSyncMax:
		// RFC 7888 §5: LITERAL- refuses {n+} above 4096 with BAD [TOOBIG].
		return "", d.tooBig("Non-synchronizing literal too large.")
	}
	if !nonSync && d.Continue != nil {
		if err := d.Continue(); err != nil {
			return "", err
		}
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(d.in, buf); err != nil {
		return "", err
	}
	d.cmdBytes += n
	if err := d.readLine(); err != nil {
		return "", d.fatal(err)
	}
	return string(buf), nil
}

// str reads a string: quoted or literal.
func (d *Decoder) str() (string, error) {
	switch d.peek() {
	case '"':
		return d.quoted()
	case '{':
		return d.literal(false)
	}
	return "", d.fail("Expected a string.")
}

// astring reads an atom-like string or a string.
func (d *Decoder) astring() (string, error) {
	switch d.peek() {
	case '"', '{':
		return d.str()
	}
	return d.word(isAStringChar, "a string")
}

// nstring reads a string or NIL; ok is false for NIL.
func (d *Decoder) nstring() (s string, ok bool, err error) {
	switch d.peek() {
	case '"', '{':
		s, err = d.str()
		return s, err == nil, err
	}
	a, err := d.atom()
	if err != nil {
		return "", false, err
	}
	if !strings.EqualFold(a, "NIL") {
		return "", false, d.fail("Expected a string or NIL.")
	}
	return "", false, nil
}

// number reads a number up to max.
func (d *Decoder) number(max uint64) (uint64, error) {
	s := d.pos
	var n uint64
	for d.pos < len(d.line) && d.line[d.pos] >= '0' && d.line[d.pos] <= '9' {
		c := uint64(d.line[d.pos] - '0')
		if n > (max-c)/10 {
			return 0, d.fail("Number too large.")
		}
		n = n*10 + c
		d.pos++
	}
	if d.pos == s {
		return 0, d.fail("Expected a number.")
	}
	return n, nil
}

// nzNumber reads a non-zero 32-bit number.
func (d *Decoder) nzNumber() (uint32, error) {
	n, err := d.number(0xFFFFFFFF)
	if err == nil && n == 0 {
		return 0, d.fail("Number must not be zero.")
	}
	return uint32(n), err
}

// modSeq reads a mod-sequence value: 1..2^63-1 (RFC 7162 §7).
func (d *Decoder) modSeq(allowZero bool) (uint64, error) {
	n, err := d.number(1<<63 - 1)
	if err == nil && n == 0 && !allowZero {
		return 0, d.fail("Mod-sequence must not be zero.")
	}
	return n, err
}

// open and close consume parentheses.
func (d *Decoder) open() error {
	if d.peek() != '(' {
		return d.fail("Expected '('.")
	}
	d.pos++
	return nil
}

func (d *Decoder) close() error {
	if d.peek() != ')' {
		return d.fail("Expected ')'.")
	}
	d.pos++
	return nil
}

// list reads "(" item *(SP item) ")", allowing "()" when empty is set.
func (d *Decoder) list(empty bool, item func() error) error {
	if err := d.open(); err != nil {
		return err
	}
	if d.peek() == ')' {
		if !empty {
			return d.fail("Empty list.")
		}
		d.pos++
		return nil
	}
	for {
		if err := item(); err != nil {
			return err
		}
		if d.peek() == ')' {
			d.pos++
			return nil
		}
		if err := d.sp(); err != nil {
			return err
		}
	}
}

// seqSet reads a sequence-set; dollar allows "$" (RFC 5182).
func (d *Decoder) seqSet() (setString string, err error) {
	return d.word(func(c byte) bool {
		return c >= '0' && c <= '9' || c == ':' || c == ',' || c == '*' || c == '$'
	}, "a sequence set")
}

// ReadLine reads one line that is not a command: an AUTHENTICATE response
// or the DONE that ends IDLE. It has the same length limit as commands.
func (d *Decoder) ReadLine() (string, error) {
	var err error
	d.line, err = d.in.readLine(d.line[:0], d.limits.MaxLine)
	if err != nil {
		return "", d.fatal(err)
	}
	return string(d.line), nil
}
