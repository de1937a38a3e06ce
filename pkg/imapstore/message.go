package imapstore

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"strings"

	"github.com/posthorn/posthorn/pkg/imap"
	"github.com/posthorn/posthorn/pkg/mailbox"
	"github.com/posthorn/posthorn/pkg/mime"
)

// message is an open message file. Its structure comes from the folder's
// cache when an earlier FETCH parsed it; otherwise it is parsed once and
// cached, so ENVELOPE and BODYSTRUCTURE of a large mailbox cost a cache
// read per message, not a parse.
type message struct {
	m    *mailbox.Mailbox
	uid  uint32
	f    *os.File
	size int64
	st   *structure
}

// structure is what the cache keeps for a message: the engine's part tree
// (offsets in the CRLF view) and the three values pkg/mime writes exactly
// as Dovecot does.
type structure struct {
	Envelope      string     `json:"e"`
	Body          string     `json:"b"`
	BodyStructure string     `json:"s"`
	Root          *imap.Part `json:"p"`
}

// cacheVersion starts every cache entry, so that a change of the format
// here makes old entries be parsed again rather than misread.
const cacheVersion = "imap1:"

func (msg *message) load() (*structure, error) {
	if msg.st != nil {
		return msg.st, nil
	}
	if data, ok := msg.m.Cache(msg.uid); ok && strings.HasPrefix(string(data), cacheVersion) {
		var st structure
		if json.Unmarshal(data[len(cacheVersion):], &st) == nil && st.Root != nil {
			msg.st = &st
			return msg.st, nil
		}
	}
	// Parsed in the CRLF view, so every offset is one the engine can
	// serve with Reader.
	content, err := io.ReadAll(mailbox.CRLFReader(io.NewSectionReader(msg.f, 0, 1<<62)))
	if err != nil {
		return nil, err
	}
	p := mime.ParseBytes(content)
	st := &structure{Envelope: p.Envelope(), Body: p.BodyStructure(false), BodyStructure: p.BodyStructure(true),
		Root: convert(p)}
	if data, err := json.Marshal(st); err == nil {
		// A message too complex to cache is parsed at each FETCH.
		msg.m.SetCache(msg.uid, append([]byte(cacheVersion), data...))
	}
	msg.st = st
	return st, nil
}

// Structure implements imap.Message.
func (msg *message) Structure() (*imap.Part, error) {
	st, err := msg.load()
	if err != nil {
		return nil, err
	}
	return st.Root, nil
}

// EnvelopeText implements imap.StructureText.
func (msg *message) EnvelopeText() string { return msg.st.Envelope }

// BodyStructureText implements imap.StructureText.
func (msg *message) BodyStructureText(extended bool) string {
	if extended {
		return msg.st.BodyStructure
	}
	return msg.st.Body
}

// Reader implements imap.Message: the file with CRLF line ends, from off.
func (msg *message) Reader(off int64) (io.ReadCloser, error) {
	r := bufio.NewReaderSize(mailbox.CRLFReader(io.NewSectionReader(msg.f, 0, 1<<62)), 32<<10)
	if off > 0 {
		if _, err := r.Discard(int(min(off, msg.size))); err != nil && err != io.EOF {
			return nil, err
		}
	}
	return io.NopCloser(r), nil
}

// Close implements imap.Message.
func (msg *message) Close() error { return msg.f.Close() }

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
