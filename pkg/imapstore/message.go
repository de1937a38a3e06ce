package imapstore

import (
	"bytes"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/posthorn/posthorn/pkg/imap"
	"github.com/posthorn/posthorn/pkg/mailbox"
	"github.com/posthorn/posthorn/pkg/mime"
)

// message is one message of a view. Its ENVELOPE and BODYSTRUCTURE come
// from the folder's cache when an earlier FETCH parsed it, without opening
// the file; otherwise it is parsed once and cached, so ENVELOPE and
// BODYSTRUCTURE of a large mailbox cost a cache read per message, not a
// parse. The file is opened by Structure (whose callers go on to read the
// content: a file gone from the disk is reported there, before the engine
// writes anything) and by Reader.
type message struct {
	m    *mailbox.Mailbox
	uid  uint32
	size int64 // RFC822.SIZE from the index; -1 until asked for

	f *os.File // nil until opened
	// content is the whole CRLF view once read into memory: small
	// messages at their first Reader, any message that is parsed. pooled
	// is the pool buffer it lies in, if any.
	content []byte
	pooled  *[]byte

	looked bool       // the cache was consulted
	ent    cacheEntry // what it held (texts nil on a miss)
	// The texts, as strings once asked for or parsed.
	envelope, body, bodyStructure string
	root                          *imap.Part
}

// lookup consults the cache once.
func (msg *message) lookup() {
	if msg.looked {
		return
	}
	msg.looked = true
	if data, ok := msg.m.Cache(msg.uid); ok {
		if e, err := decodeCacheEntry(data); err == nil {
			msg.ent = e
		}
	}
}

// contentSize is RFC822.SIZE as the index has it.
func (msg *message) contentSize() int64 {
	if msg.size < 0 {
		msg.size = 1 << 62 // gone from the view: read as a large file
		if m, ok := msg.m.Message(msg.uid); ok {
			msg.size = m.Size
		}
	}
	return msg.size
}

// open opens the message file once.
func (msg *message) open() error {
	if msg.f != nil {
		return nil
	}
	f, err := msg.m.Open(msg.uid)
	if err != nil {
		return mapErr(err)
	}
	msg.f = f
	return nil
}

// parse reads and parses the file and caches the result.
func (msg *message) parse() error {
	if err := msg.open(); err != nil {
		return err
	}
	if msg.content == nil {
		if err := msg.readAll(); err != nil {
			return err
		}
	}
	// Parsed in the CRLF view, so every offset is one the engine can
	// serve with Reader.
	p := mime.ParseBytes(msg.content)
	msg.envelope, msg.body, msg.bodyStructure = p.Envelope(), p.BodyStructure(false), p.BodyStructure(true)
	msg.root = convert(p)
	msg.ent = cacheEntry{}
	// An entry over mailbox.MaxCacheEntry is refused: such a message is
	// parsed at each FETCH.
	msg.m.SetCache(msg.uid, encodeCacheEntry(msg.envelope, msg.body, msg.bodyStructure, msg.root))
	return nil
}

// Structure implements imap.Message. The tree comes from the cache when
// it holds a good one, from parsing the file otherwise; either way the
// file is open afterwards.
func (msg *message) Structure() (*imap.Part, error) {
	if err := msg.open(); err != nil {
		return nil, err
	}
	if msg.root != nil {
		return msg.root, nil
	}
	msg.lookup()
	if msg.ent.tree != nil {
		if root, err := decodeTree(msg.ent.tree); err == nil {
			msg.root = root
			return root, nil
		}
	}
	if err := msg.parse(); err != nil {
		return nil, err
	}
	return msg.root, nil
}

// EnvelopeText implements imap.StructureText. It is "" when the cache
// does not hold the message and Structure has not parsed it yet: the
// engine then calls Structure, which parses, and asks again.
func (msg *message) EnvelopeText() string {
	if msg.envelope == "" {
		msg.lookup()
		msg.envelope = string(msg.ent.envelope)
	}
	return msg.envelope
}

// BodyStructureText implements imap.StructureText; "" as EnvelopeText.
func (msg *message) BodyStructureText(extended bool) string {
	if extended {
		if msg.bodyStructure == "" {
			msg.lookup()
			msg.bodyStructure = string(msg.ent.bodyStructure)
		}
		return msg.bodyStructure
	}
	if msg.body == "" {
		msg.lookup()
		msg.body = string(msg.ent.body)
	}
	return msg.body
}

// inlineMax is the largest message (RFC822.SIZE) that Reader reads into
// memory whole; larger ones are streamed. Raw files are at most as large,
// so the CRLF view fits a pool buffer of twice the size even when every
// line end is expanded.
const inlineMax = 64 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, 2*inlineMax); return &b }}

// readSmall reads the CRLF view of a small file into msg.content, a
// pool buffer. It leaves content nil for a large file.
func (msg *message) readSmall() error {
	if msg.content != nil || msg.contentSize() > inlineMax {
		return nil
	}
	bp := bufPool.Get().(*[]byte)
	buf := (*bp)[:cap(*bp)]
	// One octet more than allowed tells a file larger than the index said.
	n, err := io.ReadFull(io.NewSectionReader(msg.f, 0, inlineMax+1), buf[:inlineMax+1])
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		err = nil
	}
	if err != nil || n > inlineMax {
		bufPool.Put(bp)
		return err
	}
	msg.content, msg.pooled = toCRLF(buf, n), bp
	return nil
}

// readAll reads the CRLF view of the file into msg.content: a pool
// buffer for a small file, a buffer of its own for a larger one.
func (msg *message) readAll() error {
	if err := msg.readSmall(); err != nil || msg.content != nil {
		return err
	}
	content, err := io.ReadAll(mailbox.CRLFReader(io.NewSectionReader(msg.f, 0, 1<<62)))
	if err != nil {
		return err
	}
	msg.content = content
	return nil
}

// Content returns the whole CRLF view in memory (imap.MessageContent):
// a small message is read whole into a pool buffer, a parsed one is held
// already; for others ok is false and Reader streams them.
func (msg *message) Content() (content []byte, ok bool, err error) {
	if err := msg.open(); err != nil {
		return nil, false, err
	}
	if err := msg.readSmall(); err != nil {
		return nil, false, err
	}
	return msg.content, msg.content != nil, nil
}

// toCRLF turns buf[:n], as stored, into the CRLF view in place, as
// mailbox.CRLFReader does: every LF not preceded by CR gets one. buf must
// have room for 2n octets.
func toCRLF(buf []byte, n int) []byte {
	raw := buf[:n]
	bare := bytes.Count(raw, []byte{'\n'}) - bytes.Count(raw, []byte("\r\n"))
	if bare == 0 {
		return raw
	}
	// From the end backwards, a line at a time: each line moves with one
	// copy (the regions overlap; copy is a memmove) and its LF gets a CR
	// when it has none. What precedes the first LF is already in place.
	out := buf[:n+bare]
	j := len(out)
	for end := n; end > 0; {
		i := bytes.LastIndexByte(raw[:end], '\n')
		if i < 0 {
			break
		}
		j -= end - (i + 1)
		copy(out[j:], raw[i+1:end])
		cr := i == 0 || raw[i-1] != '\r'
		j--
		out[j] = '\n'
		if cr {
			j--
			out[j] = '\r'
		}
		end = i
	}
	return out
}

// Reader implements imap.Message: the file with CRLF line ends, from off.
func (msg *message) Reader(off int64) (io.ReadCloser, error) {
	if err := msg.open(); err != nil {
		return nil, err
	}
	if err := msg.readSmall(); err != nil {
		return nil, err
	}
	off = max(off, 0)
	if msg.content != nil {
		return &contentReader{b: msg.content[min(off, int64(len(msg.content))):]}, nil
	}
	r := mailbox.CRLFReader(io.NewSectionReader(msg.f, 0, 1<<62))
	if off > 0 {
		if _, err := io.CopyN(io.Discard, r, min(off, msg.contentSize())); err != nil && err != io.EOF {
			return nil, err
		}
	}
	return io.NopCloser(r), nil
}

// contentReader reads from memory; Close is a no-op, the buffer being the
// message's until its Close.
type contentReader struct{ b []byte }

func (r *contentReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

// WriteTo lets io.Copy skip its buffer.
func (r *contentReader) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(r.b)
	r.b = r.b[n:]
	return int64(n), err
}

func (r *contentReader) Close() error { return nil }

// Close implements imap.Message.
func (msg *message) Close() error {
	var err error
	if msg.f != nil {
		err = msg.f.Close()
		msg.f = nil
	}
	if msg.pooled != nil {
		bufPool.Put(msg.pooled)
		msg.pooled = nil
	}
	msg.content = nil
	return err
}

// convert turns pkg/mime's part tree, parsed from the CRLF view, into the
// engine's. The engine needs the tree for sections, BINARY and SEARCH; it
// writes ENVELOPE and BODYSTRUCTURE from the texts above.
func convert(p *mime.Part) *imap.Part {
	ip := &imap.Part{
		Type: p.Type, Subtype: p.Subtype, Params: params(p.Params),
		ID: p.ID, Description: p.Description, Encoding: p.TransferEncoding(),
		Size: p.BodySize, Lines: p.Lines,
		MD5: p.MD5, Disposition: p.Disposition, DispositionParams: params(p.DispositionParams),
		Language: p.Language, Location: p.Location,
		HeaderStart: p.Offset, BodyStart: p.BodyOffset, End: p.BodyOffset + p.BodyLen,
	}
	if p.Env != nil {
		ip.Envelope = envelope(p.Env)
	}
	switch {
	case p.IsMultipart():
		ip.Type = "multipart"
		for _, c := range p.Children {
			ip.Parts = append(ip.Parts, convert(c))
		}
	case p.IsMessage() && p.Message != nil:
		ip.Type = "message"
		inner := convert(p.Message)
		ip.Envelope = inner.Envelope
		ip.Parts = []*imap.Part{inner}
	case strings.EqualFold(p.Type, "message"):
		// Left unparsed by a limit: opaque octets, as BODYSTRUCTURE says.
		ip.Type, ip.Subtype = "application", "octet-stream"
	}
	return ip
}

func params(ps []mime.Param) []imap.Param {
	if len(ps) == 0 {
		return nil
	}
	out := make([]imap.Param, len(ps))
	for i, p := range ps {
		out[i] = imap.Param{Name: p.Name, Value: p.Value}
	}
	return out
}

func envelope(e *mime.Envelope) *imap.Envelope {
	out := &imap.Envelope{Date: e.Date, Subject: e.Subject, InReplyTo: e.InReplyTo, MessageID: e.MessageID,
		From: addrs(e.From), Sender: addrs(e.Sender), ReplyTo: addrs(e.ReplyTo),
		To: addrs(e.To), Cc: addrs(e.Cc), Bcc: addrs(e.Bcc)}
	// RFC 3501 §7.4.2: Sender and Reply-To default to From.
	if out.Sender == nil {
		out.Sender = out.From
	}
	if out.ReplyTo == nil {
		out.ReplyTo = out.From
	}
	return out
}

func addrs(list []mime.Address) []imap.Address {
	if len(list) == 0 {
		return nil
	}
	out := make([]imap.Address, 0, len(list))
	for _, a := range list {
		switch a.Kind {
		case mime.AddrGroupStart:
			out = append(out, imap.Address{Mailbox: imap.Str(a.Mailbox)})
		case mime.AddrGroupEnd:
			out = append(out, imap.Address{})
		default:
			ad := imap.Address{Mailbox: imap.Str(a.Mailbox), Host: imap.Str(a.Host)}
			if a.Name != "" {
				ad.Name = imap.Str(a.Name)
			}
			if a.Route != "" {
				ad.ADL = imap.Str(a.Route)
			}
			out = append(out, ad)
		}
	}
	return out
}
