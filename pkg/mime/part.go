package mime

import (
	"bytes"
	"io"
	"strings"
)

// Part is one MIME entity: the message itself, a body part of a multipart,
// or the message encapsulated in a message/rfc822 part.
type Part struct {
	// Where the part lies in the data given to Parse, in octets as
	// stored. The header includes the blank line that ends it, if any.
	Offset     int64
	HeaderLen  int64
	BodyOffset int64
	BodyLen    int64

	// The same as IMAP counts them, every line ending as CRLF
	// (RFC 3501 §2.3.4 RFC822.SIZE, §7.4.2 body size).
	HeaderSize int64
	BodySize   int64
	// Lines is the number of lines of the body: its LF count.
	Lines int64

	// Type and Subtype as written in Content-Type, or the default when
	// the field is missing (text/plain, or message/rfc822 in a
	// multipart/digest, RFC 2046 §5.1.5). A Content-Type without a valid
	// type/subtype leaves both empty.
	Type, Subtype string
	// Params are the Content-Type parameters.
	Params []Param

	// The Content-* fields as written, or nil when absent (RFC 2045,
	// RFC 2183, RFC 3282, RFC 2557, RFC 1864). Folded fields keep their
	// line breaks as LF.
	ID, Description, Encoding, MD5, Location *string
	Disposition                              *string
	DispositionParams                        []Param
	Language                                 []string

	Parent *Part
	// Children are the body parts of a multipart.
	Children []*Part
	// Message is the message encapsulated in a message/rfc822 or
	// message/global part (RFC 2046 §5.2.1, RFC 6532 §3.7).
	Message *Part
	// Env is the envelope of a message: set on the part returned by
	// Parse and on every Message.
	Env *Envelope

	// Opaque is set when a limit stopped the parsing of this part: its
	// body (for MaxParts, the rest of it) is not split into parts; a part
	// that found none is reported as a leaf.
	Opaque bool

	kind     partKind
	declared bool // Content-Type present
	blank    bool // header ended by a blank line

	start, bodyStart, end mark
}

type partKind uint8

const (
	kindLeaf partKind = iota
	kindMultipart
	kindMessage
)

// IsMultipart reports whether the part has body parts.
func (p *Part) IsMultipart() bool { return p.kind == kindMultipart }

// IsMessage reports whether the part encapsulates a message.
func (p *Part) IsMessage() bool { return p.kind == kindMessage }

// Size is the size of the whole part, header and body, counting line ends
// as CRLF. For the message it is RFC822.SIZE.
func (p *Part) Size() int64 { return p.HeaderSize + p.BodySize }

// TransferEncoding is the Content-Transfer-Encoding in lower case, "7bit"
// when there is none (RFC 2045 §6.1).
func (p *Part) TransferEncoding() string {
	if p.Encoding == nil {
		return "7bit"
	}
	return strings.ToLower(*p.Encoding)
}

// Walk calls fn for p and every part below it, depth first in section
// order, encapsulated messages included, until fn returns false.
func (p *Part) Walk(fn func(*Part) bool) bool {
	if !fn(p) {
		return false
	}
	if p.Message != nil && !p.Message.Walk(fn) {
		return false
	}
	for _, c := range p.Children {
		if !c.Walk(fn) {
			return false
		}
	}
	return true
}

// Parse parses the message of size octets that r holds. It fails only when
// r does: content never makes it fail.
func Parse(r io.ReaderAt, size int64) (*Part, error) {
	p, _, err := parse(r, size, nil)
	return p, err
}

// ParseBytes parses a message held in memory.
func ParseBytes(b []byte) *Part {
	p, _, _ := parse(nil, int64(len(b)), b)
	return p
}

func parse(r io.ReaderAt, size int64, b []byte) (*Part, *stats, error) {
	ps := &parser{st: new(stats)}
	ps.sc = scanner{ra: r, size: size}
	if b != nil {
		ps.sc.buf, ps.sc.w = b, len(b)
	}
	root := ps.run()
	return root, ps.st, ps.sc.err
}

// open is a part being parsed.
type open struct {
	p      *Part
	level  int  // the message is level 1
	header bool // still in the header
	digest bool // child of multipart/digest
	hdr    headerState
}

// boundary is the delimiter of a multipart being parsed.
type boundary struct {
	b     []byte // at most MaxBoundaryLen octets
	full  int    // length of the whole boundary
	owner int    // index in parser.open
}

type parser struct {
	sc    scanner
	st    *stats
	open  []open
	bnd   []boundary
	parts int
	maxB  int // longest boundary on the stack
}

func (ps *parser) run() *Part {
	root := ps.newPart(nil)
	root.Env = new(Envelope)
	ps.open = append(ps.open, open{p: root, level: 1, header: true})
	for {
		top := &ps.open[len(ps.open)-1]
		if ps.sc.eof() {
			if top.header {
				ps.endHeader(top, false, false)
				continue
			}
			ps.closeTo(0, ps.sc.mark(), true)
			return root
		}
		if top.header {
			if len(ps.bnd) > 0 && ps.sc.dashes() && ps.boundaryLine() {
				continue
			}
			ps.headerLine(top)
			continue
		}
		if len(ps.bnd) == 0 {
			ps.sc.skipAll()
			continue
		}
		ps.sc.skipToDashes()
		if ps.sc.eof() {
			continue
		}
		if !ps.boundaryLine() {
			ps.st.lines++
			ps.sc.skipLine()
		}
	}
}

func (ps *parser) newPart(parent *Part) *Part {
	ps.parts++
	return &Part{Parent: parent, start: ps.sc.mark(), Type: "text", Subtype: "plain"}
}

// boundaryLine handles the line at hand if it is a boundary of one of the
// multiparts being parsed (RFC 2046 §5.1.1), and reports whether it was.
func (ps *parser) boundaryLine() bool {
	line, whole := ps.sc.peekLine(2 + ps.maxB + 4)
	ps.st.lines++
	rest := line[2:]
	cmp := rest
	dashed := false
	if whole {
		cmp = bytes.TrimSuffix(cmp, []byte("\n"))
		cmp = bytes.TrimSuffix(cmp, []byte("\r"))
		dashed = len(cmp) > 2 && cmp[len(cmp)-1] == '-' && cmp[len(cmp)-2] == '-'
	}
	// The innermost boundary wins, as RFC 2046 §5.1.2 wants for reused
	// boundaries, unless an outer one matches more of the line: the
	// line need only start with the boundary.
	best := -1
	for i := len(ps.bnd) - 1; i >= 0; i-- {
		b := ps.bnd[i].b
		n := len(b)
		if n > len(cmp) {
			continue
		}
		ps.st.boundaryCmp += int64(n)
		if !bytes.Equal(cmp[:n], b) || best >= 0 && n <= len(ps.bnd[best].b) {
			continue
		}
		best = i
		if n == len(cmp) || dashed && n == len(cmp)-2 {
			break
		}
	}
	if best < 0 {
		return false
	}
	b := ps.bnd[best]
	closing := len(rest) >= len(b.b)+2 && rest[len(b.b)] == '-' && rest[len(b.b)+1] == '-'
	ps.closeTo(b.owner, ps.sc.beforeTerm(), false)
	for len(ps.bnd) > best+1 {
		ps.popBoundary()
	}
	n, tail := ps.sc.skipLine()
	if b.full > len(b.b) {
		// Only the first MaxBoundaryLen octets were compared; the
		// close delimiter is the one as long as the whole boundary
		// and two dashes.
		closing = n == int64(2+b.full+2) && tail == [2]byte{'-', '-'}
	}
	if closing {
		// The epilogue follows; this boundary is done.
		ps.popBoundary()
		return true
	}
	owner := &ps.open[b.owner]
	if ps.parts >= MaxParts {
		// No more parts: the rest of this multipart is not split.
		owner.p.Opaque = true
		return true
	}
	c := ps.newPart(owner.p)
	owner.p.Children = append(owner.p.Children, c)
	digest := strings.EqualFold(owner.p.Subtype, "digest")
	ps.open = append(ps.open, open{p: c, level: owner.level + 1, header: true, digest: digest})
	return true
}

func (ps *parser) popBoundary() {
	ps.bnd = ps.bnd[:len(ps.bnd)-1]
	ps.maxB = 0
	for _, b := range ps.bnd {
		if len(b.b) > ps.maxB {
			ps.maxB = len(b.b)
		}
	}
}

// closeTo ends the parts above ps.open[keep] (all of them, keep included,
// when all is set) at m, or where their bodies start if that is later.
func (ps *parser) closeTo(keep int, m mark, all bool) {
	stop := keep + 1
	if all {
		stop = keep
	}
	for len(ps.open) > stop {
		o := &ps.open[len(ps.open)-1]
		if o.header {
			ps.endHeader(o, false, true)
		}
		p := o.p
		p.end = m
		if p.end.off < p.bodyStart.off {
			// An empty body; when the header was cut short by
			// the boundary, it took the line ending before it,
			// and the parts around it end after that too.
			p.end = p.bodyStart
			m = p.end
		}
		p.finish()
		ps.open = ps.open[:len(ps.open)-1]
	}
	// Boundaries of closed multiparts are gone with them.
	for len(ps.bnd) > 0 && ps.bnd[len(ps.bnd)-1].owner >= len(ps.open) {
		ps.popBoundary()
	}
}

// finish computes the exported positions and sizes from the marks.
func (p *Part) finish() {
	p.Offset = p.start.off
	p.BodyOffset = p.bodyStart.off
	p.HeaderLen = p.bodyStart.off - p.start.off
	p.HeaderSize = p.HeaderLen + p.bodyStart.bare - p.start.bare
	p.BodyLen = p.end.off - p.bodyStart.off
	p.BodySize = p.BodyLen + p.end.bare - p.bodyStart.bare
	p.Lines = p.end.lf - p.bodyStart.lf
}

// headerLine reads one line of the header of the innermost open part.
func (ps *parser) headerLine(o *open) {
	ps.st.lines++
	line, whole := ps.sc.peekLine(MaxFieldSize + 2)
	if !whole || ps.sc.mark().off+int64(len(line))-o.p.start.off > MaxHeaderSize {
		// An oversized line or header: what follows is body.
		o.p.Opaque = true
		ps.endHeader(o, false, false)
		return
	}
	if len(line) == 1 && line[0] == '\n' || len(line) == 2 && line[0] == '\r' && line[1] == '\n' {
		ps.sc.skipLine()
		ps.endHeader(o, true, false)
		return
	}
	o.hdr.line(ps, o, line)
	ps.sc.skipLine()
}

// endHeader ends the header of o here and decides how its body is parsed.
// When closing, the part ends here too, its body empty.
func (ps *parser) endHeader(o *open, blank, closing bool) {
	o.hdr.flush(ps, o)
	o.hdr.done(o.p.Env)
	o.hdr = headerState{}
	o.header = false
	p := o.p
	p.blank = blank
	p.bodyStart = ps.sc.mark()
	if !p.declared && o.digest {
		p.Type, p.Subtype = "message", "rfc822"
	}
	switch {
	case strings.EqualFold(p.Type, "multipart"):
		p.kind = kindMultipart
	case strings.EqualFold(p.Type, "message") &&
		(strings.EqualFold(p.Subtype, "rfc822") || strings.EqualFold(p.Subtype, "global")):
		p.kind = kindMessage
	}
	if p.kind != kindLeaf && (p.Opaque || o.level >= MaxDepth) {
		p.Opaque = true
		p.kind = kindLeaf
	}
	switch p.kind {
	case kindMultipart:
		b, ok := "", false
		for _, pr := range p.Params {
			if strings.EqualFold(pr.Name, "boundary") {
				b, ok = pr.Value, true
				break
			}
		}
		if !ok || closing {
			// Without a boundary there are no body parts
			// (BODYSTRUCTURE shows an empty text/plain one).
			return
		}
		full := len(b)
		if len(b) > MaxBoundaryLen {
			b = b[:MaxBoundaryLen]
		}
		ps.bnd = append(ps.bnd, boundary{[]byte(b), full, len(ps.open) - 1})
		if len(b) > ps.maxB {
			ps.maxB = len(b)
		}
	case kindMessage:
		if ps.parts >= MaxParts {
			p.Opaque = true
			p.kind = kindLeaf
			return
		}
		m := ps.newPart(p)
		m.Env = new(Envelope)
		p.Message = m
		if closing {
			// An empty message: BODYSTRUCTURE still needs its
			// envelope and body.
			m.bodyStart, m.end = m.start, m.start
			m.finish()
			return
		}
		ps.open = append(ps.open, open{p: m, level: o.level + 1, header: true})
	}
}
