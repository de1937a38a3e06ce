package server

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"

	"github.com/posthorn/posthorn/pkg/imap"
	"github.com/posthorn/posthorn/pkg/imap/wire"
)

// errContent is a failure while streaming message content into a
// response whose literal length is already on the wire: the connection
// cannot continue.
var errContent = errors.New("message content changed while being sent")

// cmdFetch is FETCH and UID FETCH (RFC 3501 §6.4.5, RFC 3516 BINARY,
// RFC 7162 CHANGEDSINCE/VANISHED).
func (s *session) cmdFetch(c *wire.Command) error {
	v := s.sel
	a := c.Fetch
	uids, err := v.resolve(c.Seq, c.UID)
	if err != nil {
		return s.badReply(c.Tag, "Error in IMAP command FETCH: Invalid messageset.")
	}
	wantUID, wantModSeq, needMsg, needTree, setsSeen := c.UID, a.ChangedSince > 0, false, false, false
	var texts textItems
	for _, it := range a.Items {
		switch it.Kind {
		case wire.FetchUID:
			wantUID = true
		case wire.FetchModSeq:
			wantModSeq = true
		case wire.FetchEnvelope:
			needMsg, texts = true, texts|textEnvelope
		case wire.FetchBody:
			needMsg, texts = true, texts|textBody
		case wire.FetchBodyStructure:
			needMsg, texts = true, texts|textBodyStructure
		case wire.FetchRFC822Header:
			needMsg, needTree = true, true
		case wire.FetchRFC822, wire.FetchRFC822Text, wire.FetchSection, wire.FetchBinary:
			needMsg, needTree = true, true
			setsSeen = setsSeen || !it.Peek
		case wire.FetchBinarySize:
			needMsg, needTree = true, true
		}
	}
	if wantModSeq {
		if v.noModSeq {
			return s.badReply(c.Tag, "Error in IMAP command FETCH: Mailbox has no modsequences.")
		}
		s.ext |= extCondStore // RFC 7162 §3.1: MODSEQ and CHANGEDSINCE enable CONDSTORE
	}
	if a.Vanished && (!c.UID || !s.qresync() || a.ChangedSince == 0) {
		return s.badReply(c.Tag, "Error in IMAP command FETCH: VANISHED needs UID FETCH, QRESYNC and CHANGEDSINCE.")
	}
	if a.Vanished {
		// RFC 7162 §3.2.6: UIDs in the set expunged since CHANGEDSINCE that
		// the view no longer has.
		if ex, err := v.mbox.Poll(bg, a.ChangedSince, nil); err == nil {
			asked := c.Seq.Resolve(max(v.lastUID(), v.uidNext-1))
			var gone imap.UIDSet
			for _, r := range ex.Expunged.Intersect(asked) {
				for uid := r.Lo; ; uid++ {
					if v.seqOf(uid) == 0 {
						gone = gone.Add(uid)
					}
					if uid == r.Hi {
						break
					}
				}
			}
			if len(gone) > 0 {
				s.out.Raw("* VANISHED (EARLIER) ")
				s.out.RawBytes(gone.AppendTo(nil))
				s.out.CRLF()
			}
		}
	}
	// Fetching a body without PEEK sets \Seen (RFC 3501 §6.4.5); the new
	// flags go into the same FETCH response.
	var seenNow imap.UIDSet
	if setsSeen && !v.readOnly && len(uids) > 0 {
		_, err := v.mbox.Store(bg, uids, imap.StoreAdd, []string{imap.FlagSeen}, 0, func(mi *imap.MessageInfo) {
			if mi.ModSeq > v.modseq {
				seenNow = seenNow.Add(mi.UID)
				if v.own == nil {
					v.own = map[uint32]uint64{}
				}
				v.own[mi.UID] = mi.ModSeq
			}
		})
		if err != nil {
			s.cfg.Log.Warning("imap: setting \\Seen failed user=<%s>: %v", s.username(), err)
		}
	}
	f := fetcher{s: s, v: v, c: c, wantUID: wantUID, wantModSeq: wantModSeq, needMsg: needMsg, needTree: needTree,
		texts: texts, seenNow: seenNow}
	found := uint64(0)
	err = v.mbox.Fetch(bg, uids, func(mi *imap.MessageInfo) error {
		found++
		if a.ChangedSince > 0 && mi.ModSeq <= a.ChangedSince {
			return nil
		}
		return f.one(mi)
	})
	if err != nil {
		if errors.Is(err, errContent) || s.out.Err() != nil {
			return err
		}
		s.storeError(c.Tag, err)
		return nil
	}
	switch {
	case f.unknownCTE:
		s.done(c, "NO", "[UNKNOWN-CTE] Unknown Content-Transfer-Encoding.")
	case f.failed:
		s.done(c, "NO", "[SERVERBUG] Some messages could not be read. Refer to server log for more information.")
	case found < uids.Count() && !c.UID:
		s.done(c, "NO", "[EXPUNGEISSUED] Some of the requested messages no longer exist.")
	default:
		s.done(c, "OK", "Fetch completed.")
	}
	return nil
}

// textItems are the items a Message implementing imap.StructureText
// may answer without its part tree.
type textItems uint8

const (
	textEnvelope textItems = 1 << iota
	textBody
	textBodyStructure
)

// fetcher writes the FETCH responses of one command.
type fetcher struct {
	s                   *session
	v                   *selected
	c                   *wire.Command
	wantUID, wantModSeq bool
	needMsg             bool
	// needTree: an item needs Structure (sections, BINARY, RFC822.*);
	// texts: the items StructureText may answer.
	needTree           bool
	texts              textItems
	seenNow            imap.UIDSet
	unknownCTE, failed bool

	// The current message's texts from StructureText; "" when it has
	// none, and the item is written from the tree.
	envelope, body, bodyStructure string
}

// structureTexts asks a message for the texts of the wanted items and
// reports whether it had them all.
func (f *fetcher) structureTexts(msg imap.Message) bool {
	st, ok := msg.(imap.StructureText)
	if !ok {
		return false
	}
	if f.texts&textEnvelope != 0 {
		f.envelope = st.EnvelopeText()
		ok = ok && f.envelope != ""
	}
	if f.texts&textBody != 0 {
		f.body = st.BodyStructureText(false)
		ok = ok && f.body != ""
	}
	if f.texts&textBodyStructure != 0 {
		f.bodyStructure = st.BodyStructureText(true)
		ok = ok && f.bodyStructure != ""
	}
	return ok
}

// one writes the FETCH response of one message.
func (f *fetcher) one(mi *imap.MessageInfo) error {
	s, v := f.s, f.v
	seq := v.seqOf(mi.UID)
	if seq == 0 {
		return nil
	}
	var msg imap.Message
	var root *imap.Part
	f.envelope, f.body, f.bodyStructure = "", "", ""
	if f.needMsg {
		var err error
		msg, err = v.mbox.OpenMessage(bg, mi.UID)
		if err == nil {
			defer msg.Close()
			// ENVELOPE, BODY and BODYSTRUCTURE alone are served from a
			// store's texts when it has them (a cache: the message need
			// not even be read). The tree is wanted otherwise, and its
			// parse lets the store give the texts after all.
			if f.needTree || !f.structureTexts(msg) {
				root, err = msg.Structure()
				if err == nil && f.texts != 0 {
					f.structureTexts(msg)
				}
			}
		}
		if errors.Is(err, imap.ErrExpunged) {
			return nil
		}
		if err != nil {
			s.cfg.Log.Warning("imap: reading message uid=%d of %q failed user=<%s>: %v", mi.UID, v.name, s.username(), err)
			f.failed = true
			return nil
		}
		// BINARY must know every encoding before anything is written.
		for _, it := range f.c.Fetch.Items {
			if it.Kind == wire.FetchBinary || it.Kind == wire.FetchBinarySize {
				if _, _, _, ok := binaryRegion(root, it.Section.Part, mi.Size); !ok {
					f.unknownCTE = true
					return nil
				}
			}
		}
	}
	out := s.out
	out.Raw("* " + u32(seq) + " FETCH (")
	sep := false
	space := func() {
		if sep {
			out.Byte(' ')
		}
		sep = true
	}
	if f.wantUID {
		space()
		out.Raw("UID " + u32(mi.UID))
	}
	flagsDone, modseqDone := false, false
	for _, it := range f.c.Fetch.Items {
		switch it.Kind {
		case wire.FetchUID:
			continue
		case wire.FetchFlags:
			if flagsDone {
				continue
			}
			flagsDone = true
		case wire.FetchModSeq:
			if modseqDone {
				continue
			}
			modseqDone = true
		}
		space()
		if err := f.item(it, mi, msg, root); err != nil {
			return err
		}
	}
	if !flagsDone && f.seenNow.Contains(mi.UID) {
		space()
		s.writeFlagList(v, mi.UID, mi.Flags)
	}
	if f.wantModSeq && !modseqDone {
		space()
		out.Raw("MODSEQ (" + u64(mi.ModSeq) + ")")
	}
	out.Raw(")\r\n")
	return out.Err()
}

// item writes one data item.
func (f *fetcher) item(it wire.FetchItem, mi *imap.MessageInfo, msg imap.Message, root *imap.Part) error {
	s, out := f.s, f.s.out
	switch it.Kind {
	case wire.FetchFlags:
		s.writeFlagList(f.v, mi.UID, mi.Flags)
	case wire.FetchInternalDate:
		out.Raw(`INTERNALDATE "` + mi.Date().Format("02-Jan-2006 15:04:05 -0700") + `"`)
	case wire.FetchRFC822Size:
		out.Raw("RFC822.SIZE " + u64(uint64(mi.Size)))
	case wire.FetchModSeq:
		out.Raw("MODSEQ (" + u64(mi.ModSeq) + ")")
	case wire.FetchEnvelope:
		out.Raw("ENVELOPE ")
		if f.envelope != "" {
			out.Raw(f.envelope)
		} else {
			writeEnvelope(out, root.Envelope)
		}
	case wire.FetchBody:
		out.Raw("BODY ")
		if f.body != "" {
			out.Raw(f.body)
		} else {
			writeBodyStructure(out, root, false)
		}
	case wire.FetchBodyStructure:
		out.Raw("BODYSTRUCTURE ")
		if f.bodyStructure != "" {
			out.Raw(f.bodyStructure)
		} else {
			writeBodyStructure(out, root, true)
		}
	case wire.FetchRFC822:
		out.Raw("RFC822 ")
		return f.region(msg, 0, mi.Size, nil, false, wire.Section{})
	case wire.FetchRFC822Header:
		out.Raw("RFC822.HEADER ")
		return f.region(msg, root.HeaderStart, root.BodyStart, nil, false, wire.Section{})
	case wire.FetchRFC822Text:
		out.Raw("RFC822.TEXT ")
		return f.region(msg, root.BodyStart, root.End, nil, false, wire.Section{})
	case wire.FetchSection:
		sec := it.Section
		out.Raw("BODY[" + sec.String() + "]")
		if sec.Partial {
			out.Raw("<" + u64(sec.Offset) + ">")
		}
		out.Byte(' ')
		start, end, ok := sectionRegion(root, &sec, mi.Size)
		if !ok {
			out.Raw("NIL")
			return nil
		}
		var filter *headerFilter
		if strings.HasPrefix(sec.Spec, "HEADER.FIELDS") {
			filter = &headerFilter{fields: sec.Fields, not: sec.Spec == "HEADER.FIELDS.NOT"}
		}
		return f.region(msg, start, end, filter, false, sec)
	case wire.FetchBinary, wire.FetchBinarySize:
		sec := it.Section
		start, end, enc, _ := binaryRegion(root, sec.Part, mi.Size)
		name := "BINARY[" + sec.String() + "]"
		if it.Kind == wire.FetchBinarySize {
			name = "BINARY.SIZE[" + sec.String() + "]"
		} else if sec.Partial {
			name += "<" + u64(sec.Offset) + ">"
		}
		out.Raw(name + " ")
		if start < 0 {
			out.Raw("NIL")
			return nil
		}
		size, hasNUL, err := decodedSize(msg, start, end, enc)
		if err != nil {
			return f.readFailed(err)
		}
		if it.Kind == wire.FetchBinarySize {
			out.Number(uint64(size))
			return nil
		}
		return f.decoded(msg, start, end, enc, size, hasNUL, sec)
	}
	return nil
}

func (f *fetcher) readFailed(err error) error {
	f.s.cfg.Log.Warning("imap: reading message content failed user=<%s>: %v", f.s.username(), err)
	return errContent
}

// partialRange applies <offset.count> to a length n.
func partialRange(sec wire.Section, n int64) (skip, count int64) {
	if !sec.Partial {
		return 0, n
	}
	if sec.Offset >= uint64(n) {
		return n, 0
	}
	skip = int64(sec.Offset)
	count = n - skip
	if sec.Count < uint64(count) {
		count = int64(sec.Count)
	}
	return skip, count
}

// region streams [start, end) of the content as a literal, filtered for
// HEADER.FIELDS, with the partial range applied.
func (f *fetcher) region(msg imap.Message, start, end int64, filter *headerFilter, binary bool, sec wire.Section) error {
	out := f.s.out
	if end < start {
		end = start
	}
	if filter != nil {
		// Two passes: measure, then write; a hostile 10 MB header is
		// never held in memory.
		n, err := filter.run(msg, start, end, io.Discard)
		if err != nil {
			return f.readFailed(err)
		}
		skip, count := partialRange(sec, n)
		out.LiteralHeader(count, false)
		w := &windowWriter{w: out, skip: skip, left: count}
		if _, err := filter.run(msg, start, end, w); err != nil {
			return f.readFailed(err)
		}
		if w.left != 0 {
			return errContent
		}
		return out.Err()
	}
	skip, count := partialRange(sec, end-start)
	out.LiteralHeader(count, false)
	if count == 0 {
		return nil
	}
	r, err := msg.Reader(start + skip)
	if err != nil {
		return f.readFailed(err)
	}
	defer r.Close()
	if err := out.Copy(r, count); err != nil {
		return f.readFailed(err)
	}
	return nil
}

// decoded streams a BINARY section: literal8 when it holds NUL.
func (f *fetcher) decoded(msg imap.Message, start, end int64, enc string, size int64, hasNUL bool, sec wire.Section) error {
	out := f.s.out
	skip, count := partialRange(sec, size)
	out.LiteralHeader(count, hasNUL)
	if count == 0 {
		return nil
	}
	r, err := msg.Reader(start)
	if err != nil {
		return f.readFailed(err)
	}
	defer r.Close()
	d := newDecoder(enc, io.LimitReader(r, end-start))
	if _, err := io.CopyN(io.Discard, d, skip); err != nil {
		return f.readFailed(err)
	}
	if err := out.Copy(d, count); err != nil {
		return f.readFailed(err)
	}
	return nil
}

// decodedSize decodes a region once to learn its decoded length and
// whether it holds NUL (which forces literal8, RFC 3516 §4.2).
func decodedSize(msg imap.Message, start, end int64, enc string) (int64, bool, error) {
	r, err := msg.Reader(start)
	if err != nil {
		return 0, false, err
	}
	defer r.Close()
	d := newDecoder(enc, io.LimitReader(r, end-start))
	var buf [4096]byte
	var n int64
	nul := false
	for {
		k, err := d.Read(buf[:])
		n += int64(k)
		if !nul {
			for _, c := range buf[:k] {
				if c == 0 {
					nul = true
					break
				}
			}
		}
		if err == io.EOF {
			return n, nul, nil
		}
		if err != nil {
			return n, nul, err
		}
	}
}

// sectionRegion finds the octets of a BODY[section] (RFC 3501 §6.4.5).
func sectionRegion(root *imap.Part, sec *wire.Section, size int64) (start, end int64, ok bool) {
	if len(sec.Part) == 0 {
		switch sec.Spec {
		case "":
			return 0, size, true
		case "TEXT":
			return root.BodyStart, root.End, true
		default: // HEADER, HEADER.FIELDS[.NOT]
			return root.HeaderStart, root.BodyStart, true
		}
	}
	p := root.Section(sec.Part)
	if p == nil {
		return 0, 0, false
	}
	switch sec.Spec {
	case "":
		return p.BodyStart, p.End, true
	case "MIME":
		return p.HeaderStart, p.BodyStart, true
	}
	// HEADER and TEXT of a part name the encapsulated message.
	if !p.IsMessage() {
		return 0, 0, false
	}
	m := p.Parts[0]
	if sec.Spec == "TEXT" {
		return m.BodyStart, m.End, true
	}
	return m.HeaderStart, m.BodyStart, true
}

// binaryRegion finds the octets and encoding of a BINARY[part] (RFC 3516
// §4.2). start < 0 means the part does not exist; ok is false for an
// encoding that cannot be decoded.
func binaryRegion(root *imap.Part, path []int, size int64) (start, end int64, enc string, ok bool) {
	if len(path) == 0 {
		return 0, size, "binary", true
	}
	p := root.Section(path)
	if p == nil {
		return -1, -1, "", true
	}
	enc = p.Encoding
	if p.IsMultipart() || p.IsMessage() {
		enc = "binary"
	}
	if newDecoder(enc, nil) == nil {
		return 0, 0, enc, false
	}
	return p.BodyStart, p.End, enc, true
}

// windowWriter passes on count octets after skipping skip.
type windowWriter struct {
	w          io.Writer
	skip, left int64
}

func (w *windowWriter) Write(p []byte) (int, error) {
	n := len(p)
	if w.skip > 0 {
		k := min(int64(len(p)), w.skip)
		p = p[k:]
		w.skip -= k
	}
	if int64(len(p)) > w.left {
		p = p[:w.left]
	}
	if len(p) > 0 {
		if _, err := w.w.Write(p); err != nil {
			return 0, err
		}
		w.left -= int64(len(p))
	}
	return n, nil
}

// headerFilter selects header fields for BODY[HEADER.FIELDS (...)] in one
// streaming pass with constant memory.
type headerFilter struct {
	fields []string
	not    bool
}

func (h *headerFilter) wanted(name []byte) bool {
	n := strings.TrimRight(string(name), " \t")
	for _, f := range h.fields {
		if strings.EqualFold(f, n) {
			return !h.not
		}
	}
	return h.not
}

// run writes the selected fields of the header in [start, end) and the
// blank line that ends a header, and returns the octets written.
func (h *headerFilter) run(msg imap.Message, start, end int64, w io.Writer) (int64, error) {
	r, err := msg.Reader(start)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	br := bufio.NewReaderSize(io.LimitReader(r, end-start), 4096)
	var n int64
	write := func(p []byte) error {
		k, err := w.Write(p)
		n += int64(k)
		return err
	}
	include, atLineStart := false, true
	for {
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > 0 {
			if atLineStart {
				switch c := chunk[0]; {
				case c == ' ' || c == '\t':
					// a continuation keeps the decision of its field
				case c == '\r' || c == '\n':
					include = false // the blank line: written at the end
				default:
					i := bytes.IndexByte(chunk, ':')
					include = i > 0 && h.wanted(chunk[:i])
				}
			}
			if include {
				if werr := write(chunk); werr != nil {
					return n, werr
				}
			}
			atLineStart = chunk[len(chunk)-1] == '\n'
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return n, err
		}
	}
	if !atLineStart && include {
		if err := write([]byte("\r\n")); err != nil {
			return n, err
		}
	}
	return n, write([]byte("\r\n"))
}
