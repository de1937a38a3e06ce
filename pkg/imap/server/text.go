package server

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/posthorn/posthorn/pkg/imap"
)

// The engine's own text search, used when the store's Message does not
// implement imap.TextMatcher: header fields are unfolded and RFC 2047
// decoded, bodies of text parts are transfer-decoded, UTF-8, US-ASCII and
// ISO-8859-1 are understood (other charsets are matched as they are), and
// matching is a case-insensitive substring test (RFC 3501 §6.4.4): the
// needle and the text are compared as strings.ToLower would fold them.
//
// A SEARCH goes over every message of the mailbox, so the work per message
// must not allocate: a textSearch, owned by the SEARCH's evaluator, keeps
// its buffers, decoders and folded needles from one message to the next.
// When the Message implements imap.MessageContent the text is searched
// where it lies; otherwise one Reader serves the header and the parts that
// follow it, in order.

// maxSearchHeader caps how much of a header block is searched; longer
// header blocks are hostile (Dovecot stops at 10 MB for a whole header).
const maxSearchHeader = 1 << 20

// searchWindow is how much text is read, or folded, at a time.
const searchWindow = 32 * 1024

// skipMax is how far the open Reader is read over to reach a later part
// before a new Reader is asked for instead.
const skipMax = 64 * 1024

func fold(s string) string { return strings.ToLower(s) }

var wordDecoder = &mime.WordDecoder{CharsetReader: func(charset string, r io.Reader) (io.Reader, error) {
	if isLatin1(charset) {
		return &latin1Reader{r: r}, nil
	}
	return nil, fmt.Errorf("charset %q not supported", charset)
}}

func isLatin1(cs string) bool {
	for _, n := range [...]string{"iso-8859-1", "latin1", "iso_8859-1", "windows-1252", "cp1252"} {
		if lowerIs(cs, n) {
			return true
		}
	}
	return false
}

// lowerIs reports whether strings.ToLower(s) is want, without allocating
// for ASCII s.
func lowerIs(s, want string) bool {
	if !isASCII(s) {
		return strings.ToLower(s) == want
	}
	if len(s) != len(want) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if lowerASCII[s[i]] != want[i] {
			return false
		}
	}
	return true
}

// lowerASCII maps A-Z to a-z and every other octet to itself.
var lowerASCII = func() (t [256]byte) {
	for i := range t {
		t[i] = byte(i)
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = byte(c + 'a' - 'A')
	}
	return t
}()

// byteRank orders octets by how common they are in mail text, to pick the
// rarest octet of a needle as the one to scan for.
var byteRank = func() (t [256]uint8) {
	for i := range t {
		t[i] = 10
	}
	const letters = "zqxjkvbpygfwmucldrhsnioate" // rarest first
	for i := 0; i < len(letters); i++ {
		c := letters[i]
		t[c], t[c-'a'+'A'] = uint8(40+i), uint8(40+i)
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = 20
	}
	for _, c := range []byte(".,-:;/=<>\"'") {
		t[c] = 30
	}
	t[' '], t['\r'], t['\n'] = 100, 90, 90
	return t
}()

// needle is a search string folded once per SEARCH.
type needle struct {
	s          []byte // strings.ToLower of the key's value
	ascii      bool   // s is all ASCII
	letters    bool   // s holds ASCII letters
	pivot      int    // index of the octet of s scanned for
	hasI, hasK bool   // s holds 'i' or 'k', which U+0130 and U+212A fold to
	space      bool   // s holds white space
	keep       int    // overlap between windows
}

func newNeedle(v string) *needle {
	n := &needle{s: []byte(fold(v)), ascii: true}
	n.space = bytes.IndexFunc(n.s, unicode.IsSpace) >= 0
	for i, c := range n.s {
		switch {
		case c >= utf8.RuneSelf:
			n.ascii = false
		case c >= 'a' && c <= 'z':
			n.letters = true
		}
		if byteRank[c] < byteRank[n.s[n.pivot]] {
			n.pivot = i
		}
		n.hasI = n.hasI || c == 'i'
		n.hasK = n.hasK || c == 'k'
	}
	// Folding shrinks text at most threefold (U+212A to "k"), and a rune
	// cut at a window's edge takes up to UTFMax octets.
	n.keep = 4*len(n.s) + utf8.UTFMax
	return n
}

var (
	capitalDotI = []byte("\u0130") // folds to 'i'
	kelvin      = []byte("\u212A") // folds to 'k'
)

// in reports whether the folded text holds the needle. The text is
// UTF-8, or ISO-8859-1 with latin1. start and end tell whether the text
// begins and ends where the part does, or is a window of it: a window's
// edges may cut a rune, which must not fold to U+FFFD.
func (n *needle) in(text []byte, latin1, start, end bool, ts *textSearch) bool {
	if len(n.s) == 0 {
		return true
	}
	if n.ascii {
		// An ASCII needle matches ASCII octets only, except for the two
		// runes that fold to ASCII letters; text holding them is folded.
		if latin1 || !(n.hasI && bytes.Contains(text, capitalDotI) || n.hasK && bytes.Contains(text, kelvin)) {
			return n.indexASCII(text) >= 0
		}
	} else if isASCIIText(text) {
		return false // folded ASCII is ASCII: no room for the needle's other runes
	}
	for first := true; len(text) > 0; first = false {
		w := min(len(text), searchWindow+n.keep)
		win := text[:w]
		if !latin1 {
			if !first || !start {
				// Continuation octets of a rune begun before.
				for i := 0; i < utf8.UTFMax-1 && len(win) > 0 && win[0]&0xC0 == 0x80; i++ {
					win = win[1:]
				}
			}
			if w < len(text) || !end {
				win = trimCutRune(win)
			}
		}
		ts.fold = appendFold(ts.fold[:0], win, latin1)
		if bytes.Contains(ts.fold, n.s) {
			return true
		}
		if w == len(text) {
			break
		}
		text = text[searchWindow:]
	}
	return false
}

// trimCutRune drops a rune cut short at the end of b.
func trimCutRune(b []byte) []byte {
	for i := len(b) - 1; i >= 0 && i >= len(b)-(utf8.UTFMax-1); i-- {
		if b[i]&0xC0 != 0x80 {
			if !utf8.FullRune(b[i:]) {
				return b[:i]
			}
			break
		}
	}
	return b
}

// indexASCII finds the ASCII needle in s, ignoring ASCII case, by
// scanning for the needle's rarest octet in both cases.
func (n *needle) indexASCII(s []byte) int {
	ns := n.s
	if len(ns) > len(s) {
		return -1
	}
	if !n.letters {
		return bytes.Index(s, ns)
	}
	p := n.pivot
	lo, up := ns[p], ns[p]
	if lo >= 'a' && lo <= 'z' {
		up = lo - 'a' + 'A'
	}
	end := len(s) - len(ns) + p + 1 // the pivot lies in s[p:end]
	next := func(from int, c byte) int {
		if k := bytes.IndexByte(s[from:end], c); k >= 0 {
			return from + k
		}
		return end
	}
	nl, nu := -1, -1
	if lo == up {
		nu = end
	}
	for i := p; i < end; {
		if nl < i {
			nl = next(i, lo)
		}
		if nu < i {
			nu = next(i, up)
		}
		j := min(nl, nu)
		if j >= end {
			return -1
		}
		if equalLowerASCII(s[j-p:j-p+len(ns)], ns) {
			return j - p
		}
		i = j + 1
	}
	return -1
}

// equalLowerASCII reports whether a folded by lowerASCII is b.
func equalLowerASCII(a, b []byte) bool {
	for i, c := range b {
		if lowerASCII[a[i]] != c {
			return false
		}
	}
	return true
}

// appendFold appends src folded as strings.ToLower folds it (an invalid
// UTF-8 octet becomes U+FFFD); with latin1 each octet is a rune.
func appendFold(dst, src []byte, latin1 bool) []byte {
	for i := 0; i < len(src); {
		c := src[i]
		if c < utf8.RuneSelf {
			// A run of ASCII is folded in place after one append.
			j := i + 1
			for j < len(src) && src[j] < utf8.RuneSelf {
				j++
			}
			k := len(dst)
			dst = append(dst, src[i:j]...)
			for o := dst[k:]; len(o) > 0; o = o[1:] {
				o[0] = lowerASCII[o[0]]
			}
			i = j
			continue
		}
		r, w := rune(c), 1
		if !latin1 {
			r, w = utf8.DecodeRune(src[i:])
		}
		dst = utf8.AppendRune(dst, unicode.ToLower(r))
		i += w
	}
	return dst
}

// isASCIIText reports whether b is all ASCII, eight octets at a time.
func isASCIIText(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b)&0x8080808080808080 != 0 {
			return false
		}
		b = b[8:]
	}
	return isASCII(b)
}

// textSearch is what text matching keeps from one message to the next.
type textSearch struct {
	needles map[string]*needle

	// The message being searched.
	msg        imap.Message
	content    []byte // its whole content, when it gave it (hasContent)
	hasContent bool
	asked      bool          // Content was called
	rd         io.ReadCloser // open Reader, at offset pos
	pos        int64

	hdr   []byte // header block read from rd
	val   []byte // unfolded field value
	chunk []byte // window of streamed text
	fold  []byte // folded text

	lim io.LimitedReader
	src bytes.Reader
	br  *bufio.Reader
	b64 b64Reader
	qp  qpReader
}

func (ts *textSearch) needle(v string) *needle {
	n := ts.needles[v]
	if n == nil {
		if ts.needles == nil {
			ts.needles = map[string]*needle{}
		}
		n = newNeedle(v)
		ts.needles[v] = n
	}
	return n
}

// begin starts on a message, which the caller keeps open until end.
func (ts *textSearch) begin(msg imap.Message) {
	ts.end()
	ts.msg = msg
}

// end forgets the message, closing the Reader if one is open.
func (ts *textSearch) end() {
	if ts.rd != nil {
		ts.rd.Close()
		ts.rd = nil
	}
	ts.msg, ts.content, ts.hasContent, ts.asked = nil, nil, false, false
}

// load asks the message for its whole content, once.
func (ts *textSearch) load() error {
	if ts.asked {
		return nil
	}
	if mc, ok := ts.msg.(imap.MessageContent); ok {
		c, ok, err := mc.Content()
		if err != nil {
			return err
		}
		ts.content, ts.hasContent = c, ok
	}
	ts.asked = true
	return nil
}

// slice returns content[start:end], clamped to the content.
func (ts *textSearch) slice(start, end int64) []byte {
	n := int64(len(ts.content))
	start, end = min(max(start, 0), n), min(max(end, 0), n)
	return ts.content[start:max(start, end)]
}

// at returns a reader of the message from off: the open one when off is
// at or a little past where it stands, a new one otherwise.
func (ts *textSearch) at(off int64) (io.Reader, error) {
	if ts.rd != nil && off >= ts.pos && off-ts.pos <= skipMax {
		for ts.pos < off {
			buf := ts.buffer()
			n, err := ts.rd.Read(buf[:min(int64(len(buf)), off-ts.pos)])
			ts.pos += int64(n)
			if err != nil {
				ts.pos = off // at the end: further reads see EOF too
				break
			}
		}
		return ts.rd, nil
	}
	if ts.rd != nil {
		ts.rd.Close()
		ts.rd = nil
	}
	r, err := ts.msg.Reader(off)
	if err != nil {
		return nil, err
	}
	ts.rd, ts.pos = r, off
	return r, nil
}

// lost drops the open Reader after an error, so the next part asks for a
// new one.
func (ts *textSearch) lost() {
	if ts.rd != nil {
		ts.rd.Close()
		ts.rd = nil
	}
}

func (ts *textSearch) buffer() []byte {
	if ts.chunk == nil {
		ts.chunk = make([]byte, searchWindow)
	}
	return ts.chunk
}

// match is the engine's answer to a HEADER, BODY or TEXT key on the
// message begun, whose structure is root.
func (ts *textSearch) match(root *imap.Part, op imap.SearchOp, field, value string) (bool, error) {
	if err := ts.load(); err != nil {
		return false, err
	}
	n := ts.needle(value)
	switch op {
	case imap.SearchHeader:
		return ts.matchHeader(root, field, n)
	case imap.SearchBody:
		return ts.matchBody(root, n, 0)
	case imap.SearchText:
		if ok, err := ts.matchHeader(root, "", n); ok || err != nil {
			return ok, err
		}
		return ts.matchBody(root, n, 0)
	}
	return false, nil
}

// matchHeader searches the fields of p's header named field ("" for all
// of them).
func (ts *textSearch) matchHeader(p *imap.Part, field string, n *needle) (bool, error) {
	size := min(p.BodyStart-p.HeaderStart, maxSearchHeader)
	if ts.hasContent {
		return ts.searchHeader(ts.slice(p.HeaderStart, p.HeaderStart+size), field, n), nil
	}
	size = max(size, 0)
	r, err := ts.at(p.HeaderStart)
	if err != nil {
		return false, err
	}
	if int64(cap(ts.hdr)) < size {
		ts.hdr = make([]byte, size)
	}
	buf := ts.hdr[:size]
	got, err := io.ReadFull(r, buf)
	ts.pos += int64(got)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		ts.lost()
		return false, err
	}
	return ts.searchHeader(buf[:got], field, n), nil
}

// searchHeader reports whether a field of h named field ("" for any)
// holds the needle, in its unfolded, RFC 2047 decoded value; with an
// empty needle, whether there is such a field.
func (ts *textSearch) searchHeader(h []byte, field string, n *needle) bool {
	// An unfolded value is made of trimmed pieces of lines joined by
	// spaces: a needle without white space that is not in the header as
	// it is can only be in a field with encoded words.
	encodedOnly := false
	if len(n.s) > 0 && !n.space && !n.in(h, false, true, true, ts) {
		if !bytes.Contains(h, []byte("=?")) {
			return false
		}
		encodedOnly = true
	}
	var (
		in    bool // in a field of the name wanted
		value = ts.val[:0]
	)
	defer func() { ts.val = value[:0] }()
	// check reports whether the field just ended matches.
	check := func() bool {
		if !in {
			return false
		}
		in = false
		if len(n.s) == 0 {
			return true
		}
		v := bytes.TrimSpace(value)
		if bytes.Contains(v, []byte("=?")) {
			if d, err := wordDecoder.DecodeHeader(string(v)); err == nil {
				value = append(value[:0], d...)
				v = value
			}
		} else if encodedOnly {
			return false
		}
		return n.in(v, false, true, true, ts)
	}
	for len(h) > 0 {
		line := h
		if i := bytes.IndexByte(h, '\n'); i >= 0 {
			line, h = h[:i], h[i+1:]
		} else {
			h = nil
		}
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			if in {
				value = append(value, ' ')
				value = append(value, bytes.TrimSpace(line)...)
			}
			continue
		}
		if check() {
			return true
		}
		if i := bytes.IndexByte(line, ':'); i > 0 {
			if field == "" || equalFoldName(bytes.TrimSpace(line[:i]), field) {
				in = true
				value = append(value[:0], line[i+1:]...)
			}
		}
	}
	return check()
}

// equalFoldName compares a field name with the one a key gave, ignoring
// case as strings.EqualFold does.
func equalFoldName(name []byte, field string) bool {
	if len(name) == len(field) {
		i := 0
		for ; i < len(name) && name[i] < utf8.RuneSelf && field[i] < utf8.RuneSelf; i++ {
			if lowerASCII[name[i]] != lowerASCII[field[i]] {
				return false
			}
		}
		if i == len(name) {
			return true
		}
	} else if isASCII(name) && isASCII(field) {
		return false
	}
	// Non-ASCII names: simple Unicode folding, where lengths may differ
	// (U+212A is 'k').
	return strings.EqualFold(string(name), field)
}

func isASCII[T string | []byte](b T) bool {
	for i := 0; i < len(b); i++ {
		if b[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// matchBody searches the text parts under p.
func (ts *textSearch) matchBody(p *imap.Part, n *needle, depth int) (bool, error) {
	if depth > maxStructureDepth {
		return false, nil
	}
	switch {
	case p.IsMultipart():
		for _, c := range p.Parts {
			if ok, err := ts.matchBody(c, n, depth+1); ok || err != nil {
				return ok, err
			}
		}
		return false, nil
	case p.IsMessage():
		inner := p.Parts[0]
		if ok, err := ts.matchHeader(inner, "", n); ok || err != nil {
			return ok, err
		}
		return ts.matchBody(inner, n, depth+1)
	case p.Type != "" && !eqFold(p.Type, "text"):
		return false, nil // attachments are not searched, as without FTS
	}
	latin1 := false
	for _, prm := range p.Params {
		if strings.EqualFold(prm.Name, "charset") && isLatin1(prm.Value) {
			latin1 = true
		}
	}
	enc := strings.TrimSpace(p.Encoding)
	b64, qp := lowerIs(enc, "base64"), lowerIs(enc, "quoted-printable")
	size := max(p.End-p.BodyStart, 0)
	var src io.Reader
	if ts.hasContent {
		body := ts.slice(p.BodyStart, p.End)
		if !b64 && !qp {
			// Unknown encodings are searched as they are, as are 7bit,
			// 8bit and binary.
			return n.in(body, latin1, true, true, ts), nil
		}
		ts.src.Reset(body)
		src = &ts.src
	} else {
		r, err := ts.at(p.BodyStart)
		if err != nil {
			return false, err
		}
		ts.lim = io.LimitedReader{R: r, N: size}
		src = &ts.lim
		defer func() { ts.pos += size - ts.lim.N }()
	}
	switch {
	case b64:
		ts.b64 = b64Reader{r: ts.bufReader(src)}
		src = &ts.b64
	case qp:
		ts.qp.reset(ts.bufReader(src))
		src = &ts.qp
	}
	ok, err := ts.streamContains(src, n, latin1)
	if err != nil {
		ts.lost()
	}
	return ok, err
}

func (ts *textSearch) bufReader(r io.Reader) *bufio.Reader {
	if ts.br == nil {
		ts.br = bufio.NewReaderSize(r, 4096)
	} else {
		ts.br.Reset(r)
	}
	return ts.br
}

// streamContains reports whether the folded text of r contains the
// needle, reading in windows that overlap so that matches across them are
// found.
func (ts *textSearch) streamContains(r io.Reader, n *needle, latin1 bool) (bool, error) {
	if len(n.s) == 0 {
		return true, nil
	}
	keep := n.keep
	if len(ts.chunk) < 2*keep {
		ts.chunk = make([]byte, max(searchWindow, 2*keep))
	}
	buf := ts.chunk
	carry := 0
	for start := true; ; start = false {
		k, err := io.ReadFull(r, buf[carry:])
		total := carry + k
		end := err == io.EOF || err == io.ErrUnexpectedEOF
		if err != nil && !end {
			return false, err
		}
		if (k > 0 || end) && total > 0 && n.in(buf[:total], latin1, start, end, ts) {
			return true, nil
		}
		if end {
			return false, nil
		}
		// buf is full and longer than 2*keep.
		copy(buf, buf[total-keep:total])
		carry = keep
	}
}

// latin1Reader converts ISO-8859-1 to UTF-8.
type latin1Reader struct {
	r   io.Reader
	out []byte
	in  [1024]byte
}

func (l *latin1Reader) Read(p []byte) (int, error) {
	for len(l.out) == 0 {
		n, err := l.r.Read(l.in[:])
		for _, c := range l.in[:n] {
			l.out = utf8.AppendRune(l.out, rune(c))
		}
		if n == 0 && err != nil {
			return 0, err
		}
	}
	n := copy(p, l.out)
	l.out = l.out[n:]
	return n, nil
}
