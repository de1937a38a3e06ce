package imapstore

import (
	"encoding/binary"
	"errors"

	"github.com/posthorn/posthorn/pkg/imap"
)

// A cache entry (what posthorn.cache keeps per UID) is
//
//	"imap2:" text text text tree
//
// where each text is a uvarint length and that many octets: the ENVELOPE,
// BODY and BODYSTRUCTURE values exactly as pkg/mime wrote them. The tree
// is the engine's part tree (offsets in the CRLF view), needed only for
// BODY[section], BINARY and SEARCH, so it is decoded only when asked for:
//
//	tree   = nparts:uvarint part          ; nparts counts every part
//	part   = type:str subtype:str encoding:str params:list
//	         id:opt description:opt size:varint lines:varint
//	         md5:opt disposition:opt dispparams:list language:strs location:opt
//	         headerstart:varint bodystart-headerstart:varint end-bodystart:varint
//	         env:(0 | 1 envelope | 2) nchildren:uvarint part*
//	                                     ; 2: the envelope of the only child
//	envelope = date:opt subject:opt from:addrs sender:addrs replyto:addrs
//	         to:addrs cc:addrs bcc:addrs inreplyto:opt messageid:opt
//	addrs  = 0 (nil) | 1 (the same list as From) | n+2 then n × (name adl mailbox host: opt)
//	str    = len:uvarint octets
//	opt    = 0 (nil) | len+1:uvarint octets
//	list   = 0 (nil) | n+1:uvarint then n × (name:str value:str)
//	strs   = 0 (nil) | n+1:uvarint then n × str
//
// Every length and count is checked against what is left of the entry,
// so a corrupt or hostile entry costs at most memory linear in its size
// and decodes to an error, never a panic; the message is then parsed
// again.

// cacheVersion starts every cache entry, so that a change of the format
// makes old entries (imap1: JSON) be parsed again rather than misread.
const cacheVersion = "imap2:"

// maxTreeDepth bounds the nesting of a decoded tree (and the decoder's
// recursion). pkg/mime stops at mime.MaxDepth levels; a deeper tree cannot
// come from it.
const maxTreeDepth = 256

// minPartLen is the fewest octets a part takes in the encoding: three
// empty strings, eleven nil or zero fields, the envelope flag and the
// child count.
const minPartLen = 16

var errCorrupt = errors.New("imapstore: corrupt cache entry")

// cacheEntry is a decoded entry: the three texts as they lie in the
// entry, and the still encoded tree.
type cacheEntry struct {
	envelope, body, bodyStructure []byte
	tree                          []byte
}

// encodeCacheEntry builds the entry for a parsed message.
func encodeCacheEntry(envelope, body, bodyStructure string, root *imap.Part) []byte {
	n := len(cacheVersion) + len(envelope) + len(body) + len(bodyStructure) + 64
	b := make([]byte, 0, n+len(envelope)) // the tree is about as long as the envelope
	b = append(b, cacheVersion...)
	b = appendStr(b, envelope)
	b = appendStr(b, body)
	b = appendStr(b, bodyStructure)
	b = binary.AppendUvarint(b, uint64(countParts(root)))
	return appendPart(b, root)
}

// decodeCacheEntry splits an entry into its texts and encoded tree. It
// does not look into the tree; decodeTree does.
func decodeCacheEntry(data []byte) (cacheEntry, error) {
	var e cacheEntry
	if len(data) < len(cacheVersion) || string(data[:len(cacheVersion)]) != cacheVersion {
		return e, errCorrupt
	}
	d := decoder{b: data[len(cacheVersion):]}
	e.envelope = d.bytes()
	e.body = d.bytes()
	e.bodyStructure = d.bytes()
	if d.err != nil || len(e.envelope) == 0 || len(e.body) == 0 || len(e.bodyStructure) == 0 {
		return cacheEntry{}, errCorrupt
	}
	e.tree = d.b
	return e, nil
}

// decodeTree decodes the tree of an entry. Strings in it are substrings
// of one copy of tree.
func decodeTree(tree []byte) (*imap.Part, error) {
	d := decoder{s: string(tree)}
	d.b = tree
	n := d.uvarint()
	if d.err != nil || n == 0 || n > uint64(len(d.b))/minPartLen {
		return nil, errCorrupt
	}
	d.parts = make([]imap.Part, n)
	root := d.part(0)
	if d.err != nil {
		return nil, d.err
	}
	if len(d.parts) != 0 || len(d.b) != 0 {
		return nil, errCorrupt
	}
	return root, nil
}

func countParts(p *imap.Part) int {
	n := 1
	for _, c := range p.Parts {
		n += countParts(c)
	}
	return n
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendOpt(b []byte, s *string) []byte {
	if s == nil {
		return append(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(*s))+1)
	return append(b, *s...)
}

func appendParams(b []byte, ps []imap.Param) []byte {
	if ps == nil {
		return append(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(ps))+1)
	for _, p := range ps {
		b = appendStr(b, p.Name)
		b = appendStr(b, p.Value)
	}
	return b
}

func appendStrs(b []byte, ss []string) []byte {
	if ss == nil {
		return append(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(ss))+1)
	for _, s := range ss {
		b = appendStr(b, s)
	}
	return b
}

// sameList reports whether a and b are one list (convert makes Sender
// and Reply-To share From's).
func sameList(a, b []imap.Address) bool {
	return len(a) > 0 && len(a) == len(b) && &a[0] == &b[0]
}

func appendAddrs(b []byte, as, from []imap.Address) []byte {
	switch {
	case as == nil:
		return append(b, 0)
	case from != nil && sameList(as, from):
		return append(b, 1)
	}
	b = binary.AppendUvarint(b, uint64(len(as))+2)
	for _, a := range as {
		b = appendOpt(b, a.Name)
		b = appendOpt(b, a.ADL)
		b = appendOpt(b, a.Mailbox)
		b = appendOpt(b, a.Host)
	}
	return b
}

func appendEnvelope(b []byte, e *imap.Envelope) []byte {
	b = appendOpt(b, e.Date)
	b = appendOpt(b, e.Subject)
	b = appendAddrs(b, e.From, nil)
	b = appendAddrs(b, e.Sender, e.From)
	b = appendAddrs(b, e.ReplyTo, e.From)
	b = appendAddrs(b, e.To, e.From)
	b = appendAddrs(b, e.Cc, e.From)
	b = appendAddrs(b, e.Bcc, e.From)
	b = appendOpt(b, e.InReplyTo)
	return appendOpt(b, e.MessageID)
}

func appendPart(b []byte, p *imap.Part) []byte {
	b = appendStr(b, p.Type)
	b = appendStr(b, p.Subtype)
	b = appendStr(b, p.Encoding)
	b = appendParams(b, p.Params)
	b = appendOpt(b, p.ID)
	b = appendOpt(b, p.Description)
	b = binary.AppendVarint(b, p.Size)
	b = binary.AppendVarint(b, p.Lines)
	b = appendOpt(b, p.MD5)
	b = appendOpt(b, p.Disposition)
	b = appendParams(b, p.DispositionParams)
	b = appendStrs(b, p.Language)
	b = appendOpt(b, p.Location)
	b = binary.AppendVarint(b, p.HeaderStart)
	b = binary.AppendVarint(b, p.BodyStart-p.HeaderStart)
	b = binary.AppendVarint(b, p.End-p.BodyStart)
	switch {
	case p.Envelope == nil:
		b = append(b, 0)
	case len(p.Parts) == 1 && p.Parts[0].Envelope == p.Envelope:
		b = append(b, 2)
	default:
		b = append(b, 1)
		b = appendEnvelope(b, p.Envelope)
	}
	b = binary.AppendUvarint(b, uint64(len(p.Parts)))
	for _, c := range p.Parts {
		b = appendPart(b, c)
	}
	return b
}

// decoder reads an entry. After the first error every read returns a
// zero value and err stays set. s, when set, is b as a string, which
// strings are cut from.
type decoder struct {
	b     []byte
	s     string
	parts []imap.Part // preallocated, taken one by one
	err   error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = errCorrupt
	}
	d.b, d.s = nil, ""
}

func (d *decoder) advance(n int) {
	d.b = d.b[n:]
	if d.s != "" {
		d.s = d.s[n:]
	}
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.advance(n)
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.advance(n)
	return v
}

// count reads a count of elements that take at least min octets each.
func (d *decoder) count(min int) int {
	v := d.uvarint()
	if v > uint64(len(d.b)/min) {
		d.fail()
		return 0
	}
	return int(v)
}

// list reads the head of an optional list: a uvarint that is 0 for nil,
// below bias for a marker (returned as -v-1), or n+bias for n elements of
// at least min octets each.
func (d *decoder) list(bias uint64, min int) int {
	v := d.uvarint()
	switch {
	case d.err != nil:
		return -1
	case v < bias:
		return -int(v) - 1
	case v-bias > uint64(len(d.b)/min):
		d.fail()
		return -1
	}
	return int(v - bias)
}

// offset reads an offset stored as its distance from base, which is not
// negative and does not overflow (1<<50 is far above any message).
func (d *decoder) offset(base int64) int64 {
	v := d.varint()
	if v < 0 || v > 1<<50 || base > 1<<50 {
		d.fail()
		return 0
	}
	return base + v
}

func (d *decoder) byte() byte {
	if d.err != nil || len(d.b) == 0 {
		d.fail()
		return 0
	}
	c := d.b[0]
	d.advance(1)
	return c
}

func (d *decoder) bytes() []byte {
	n := d.count(1)
	if d.err != nil {
		return nil
	}
	v := d.b[:n:n]
	d.advance(n)
	return v
}

func (d *decoder) str() string {
	n := d.count(1)
	if d.err != nil {
		return ""
	}
	v := d.s[:n]
	d.advance(n)
	return v
}

func (d *decoder) opt() *string {
	n := d.list(1, 1)
	if n < 0 {
		return nil
	}
	v := d.s[:n]
	d.advance(n)
	return &v
}

func (d *decoder) params() []imap.Param {
	n := d.list(1, 2)
	if n < 0 {
		return nil
	}
	ps := make([]imap.Param, n)
	for i := range ps {
		ps[i] = imap.Param{Name: d.str(), Value: d.str()}
	}
	return ps
}

func (d *decoder) strs() []string {
	n := d.list(1, 1)
	if n < 0 {
		return nil
	}
	ss := make([]string, n)
	for i := range ss {
		ss[i] = d.str()
	}
	return ss
}

func (d *decoder) addrs(from []imap.Address, allowSame bool) []imap.Address {
	n := d.list(2, 4)
	switch {
	case n == -2: // 1: the same list as From
		if !allowSame || from == nil {
			d.fail()
			return nil
		}
		return from
	case n < 0:
		return nil
	}
	as := make([]imap.Address, n)
	for i := range as {
		as[i] = imap.Address{Name: d.opt(), ADL: d.opt(), Mailbox: d.opt(), Host: d.opt()}
	}
	return as
}

func (d *decoder) envelope() *imap.Envelope {
	e := &imap.Envelope{Date: d.opt(), Subject: d.opt()}
	e.From = d.addrs(nil, false)
	e.Sender = d.addrs(e.From, true)
	e.ReplyTo = d.addrs(e.From, true)
	e.To = d.addrs(e.From, true)
	e.Cc = d.addrs(e.From, true)
	e.Bcc = d.addrs(e.From, true)
	e.InReplyTo = d.opt()
	e.MessageID = d.opt()
	return e
}

func (d *decoder) part(depth int) *imap.Part {
	if depth >= maxTreeDepth || len(d.parts) == 0 {
		d.fail()
		return nil
	}
	p := &d.parts[0]
	d.parts = d.parts[1:]
	p.Type = d.str()
	p.Subtype = d.str()
	p.Encoding = d.str()
	p.Params = d.params()
	p.ID = d.opt()
	p.Description = d.opt()
	p.Size = d.varint()
	p.Lines = d.varint()
	p.MD5 = d.opt()
	p.Disposition = d.opt()
	p.DispositionParams = d.params()
	p.Language = d.strs()
	p.Location = d.opt()
	p.HeaderStart = d.offset(0)
	p.BodyStart = d.offset(p.HeaderStart)
	p.End = d.offset(p.BodyStart)
	if p.Size < 0 || p.Lines < 0 {
		d.fail()
	}
	env := d.byte()
	if env == 1 {
		p.Envelope = d.envelope()
	}
	n := d.count(minPartLen)
	if d.err != nil {
		return nil
	}
	if n > 0 {
		p.Parts = make([]*imap.Part, n)
		for i := range p.Parts {
			if p.Parts[i] = d.part(depth + 1); d.err != nil {
				return nil
			}
		}
	}
	switch env {
	case 0, 1:
	case 2:
		if len(p.Parts) != 1 || p.Parts[0].Envelope == nil {
			d.fail()
			return nil
		}
		p.Envelope = p.Parts[0].Envelope
	default:
		d.fail()
		return nil
	}
	return p
}
