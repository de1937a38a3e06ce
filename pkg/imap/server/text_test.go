package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"mime"
	"mime/quotedprintable"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/posthorn/posthorn/pkg/imap"
	"github.com/posthorn/posthorn/pkg/imap/memstore"
)

// textMsg is a Message over a byte slice. Its Reader hands out a few
// octets per Read, to exercise the windows of the streaming search.
type textMsg struct {
	c       []byte
	root    *imap.Part
	readers int // Reader calls
	open    int // Readers not closed
}

func (m *textMsg) Structure() (*imap.Part, error) { return m.root, nil }
func (m *textMsg) Close() error                   { return nil }
func (m *textMsg) Reader(off int64) (io.ReadCloser, error) {
	m.readers++
	m.open++
	off = min(off, int64(len(m.c)))
	return &countedReader{Reader: iotest.HalfReader(bytes.NewReader(m.c[off:])), m: m}, nil
}

type countedReader struct {
	io.Reader
	m *textMsg
}

func (r *countedReader) Close() error { r.m.open--; return nil }

// contentMsg also gives its content whole.
type contentMsg struct{ *textMsg }

func (m contentMsg) Content() ([]byte, bool, error) { return m.c, true, nil }

// matchOne searches one message with ts, as the evaluator does.
func matchOne(ts *textSearch, m imap.Message, op imap.SearchOp, field, needle string) (bool, error) {
	root, _ := m.Structure()
	ts.begin(m)
	defer ts.end()
	return ts.match(root, op, field, needle)
}

// refMatch is the reference: the whole decoded text folded at once, as
// the engine searched before it kept buffers.
func refMatch(c []byte, root *imap.Part, op imap.SearchOp, field, needle string) bool {
	n := strings.ToLower(needle)
	header := func(p *imap.Part, field string) bool {
		h := c[min(p.HeaderStart, int64(len(c))):min(p.BodyStart, p.HeaderStart+maxSearchHeader, int64(len(c)))]
		found := false
		refEachField(h, func(name, value []byte) bool {
			if field != "" && !strings.EqualFold(string(bytes.TrimSpace(name)), field) {
				return true
			}
			if n == "" {
				found = true
				return false
			}
			v := string(value)
			if d, err := wordDecoder.DecodeHeader(v); err == nil {
				v = d
			}
			found = strings.Contains(strings.ToLower(v), n)
			return !found
		})
		return found
	}
	var body func(p *imap.Part, depth int) bool
	body = func(p *imap.Part, depth int) bool {
		switch {
		case depth > maxStructureDepth:
			return false
		case p.IsMultipart():
			for _, ch := range p.Parts {
				if body(ch, depth+1) {
					return true
				}
			}
			return false
		case p.IsMessage():
			return header(p.Parts[0], "") || body(p.Parts[0], depth+1)
		case p.Type != "" && !strings.EqualFold(p.Type, "text"):
			return false
		}
		raw := io.Reader(bytes.NewReader(c[min(p.BodyStart, int64(len(c))):min(p.End, int64(len(c)))]))
		d := newDecoder(p.Encoding, raw)
		if d == nil {
			d = raw
		}
		for _, prm := range p.Params {
			if strings.EqualFold(prm.Name, "charset") && isLatin1(prm.Value) {
				d = &latin1Reader{r: d}
			}
		}
		all, _ := io.ReadAll(d)
		return strings.Contains(strings.ToLower(string(all)), n)
	}
	switch op {
	case imap.SearchHeader:
		return header(root, field)
	case imap.SearchBody:
		return body(root, 0)
	}
	return header(root, "") || body(root, 0)
}

// refEachField is eachField as it was.
func refEachField(h []byte, fn func(name, value []byte) bool) {
	var name, value []byte
	flush := func() bool {
		if name == nil {
			return true
		}
		ok := fn(name, bytes.TrimSpace(value))
		name, value = nil, nil
		return ok
	}
	for len(h) > 0 {
		line := h
		if i := bytes.IndexByte(h, '\n'); i >= 0 {
			line, h = h[:i], h[i+1:]
		} else {
			h = nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			if name != nil {
				value = append(value, ' ')
				value = append(value, bytes.TrimSpace(line)...)
			}
			continue
		}
		if !flush() {
			return
		}
		if i := bytes.IndexByte(line, ':'); i > 0 {
			name = line[:i]
			value = append([]byte(nil), line[i+1:]...)
		}
	}
	flush()
}

// textTokens are the pieces random texts are made of: words, case
// variants, the runes that fold to ASCII (U+0130, U+212A), runes whose
// case forms differ in length, invalid UTF-8 and line ends.
var textTokens = []string{
	"the ", "report ", "Zanzibar ", "zanzIBAR", "ZANZ", "ibar ", "KÄSE ", "käse ", "Käse",
	"\u212Aelvin ", "kelvin ", "İİ ", "ii ", "STRASSE ", "straße ", "ΣΊΣΥΦΟΣ ", "σίσυφος ",
	"\xff\xfe ", "\xc3 ", "ä", "\r\n", "\r\n", "=", "  ", "\u2C6F ", "\u0250 ", "ﬀ ",
}

var textNeedles = []string{
	"zanzibar", "ZANZIBAR", "zanz", "käse", "KÄSE", "kelvin", "KELVIN", "\u212Aelvin", "ii", "İ",
	"straße", "σίσυφος", "ΣΊΣΥΦΟΣ", "e k", "\u0250", "\u2C6F", "ﬀ", "ä", "report the", "=",
	"", "a", "\ufffd", "x\r\ny",
}

func randText(r *rand.Rand, n int) string {
	var b strings.Builder
	for b.Len() < n {
		b.WriteString(textTokens[r.Intn(len(textTokens))])
	}
	return b.String()
}

// randPart writes a random entity: its header and body.
func randPart(r *rand.Rand, b *strings.Builder, depth int) {
	if r.Intn(4) == 0 {
		fmt.Fprintf(b, "X-Note: %s\r\n", strings.ReplaceAll(randText(r, 20), "\r\n", "\r\n\t"))
	}
	if r.Intn(3) == 0 {
		s := randText(r, 15)
		if r.Intn(2) == 0 {
			s = mime.QEncoding.Encode("utf-8", s)
		} else {
			s = mime.BEncoding.Encode("utf-8", s)
		}
		fmt.Fprintf(b, "Subject: %s\r\n", s)
	} else {
		fmt.Fprintf(b, "Subject: %s\r\n", strings.ReplaceAll(randText(r, 30), "\r\n", "\r\n "))
	}
	kind := r.Intn(10)
	if depth > 2 {
		kind = 0
	}
	switch kind {
	case 7, 8:
		fmt.Fprintf(b, "Content-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\npreamble Zanzibar\r\n", depth)
		for i := r.Intn(3) + 1; i > 0; i-- {
			fmt.Fprintf(b, "--b%d\r\n", depth)
			randPart(r, b, depth+1)
		}
		fmt.Fprintf(b, "--b%d--\r\nepilogue käse\r\n", depth)
		return
	case 9:
		b.WriteString("Content-Type: message/rfc822\r\n\r\n")
		randPart(r, b, depth+1)
		return
	}
	typ := []string{"text/plain", "text/html", "application/octet-stream", "TEXT/Plain"}[r.Intn(4)]
	cs := []string{"utf-8", "iso-8859-1", "ISO-8859-1", "koi8-r"}[r.Intn(4)]
	size := 50 + r.Intn(300)
	if r.Intn(10) == 0 {
		size = 30000 + r.Intn(80000) // across the search windows
	}
	text := randText(r, size)
	enc := []string{"7bit", "8bit", "quoted-printable", "base64", "Base64", "x-unknown"}[r.Intn(6)]
	fmt.Fprintf(b, "Content-Type: %s; charset=%s\r\nContent-Transfer-Encoding: %s\r\n\r\n", typ, cs, enc)
	switch strings.ToLower(enc) {
	case "quoted-printable":
		w := quotedprintable.NewWriter(b)
		io.WriteString(w, text)
		w.Close()
		b.WriteString("\r\n")
	case "base64":
		e := base64.StdEncoding.EncodeToString([]byte(text))
		for len(e) > 76 {
			b.WriteString(e[:76] + "\r\n")
			e = e[76:]
		}
		b.WriteString(e + "\r\n")
	default:
		b.WriteString(text + "\r\n")
	}
}

func TestTextSearchMatchesReference(t *testing.T) {
	r := rand.New(rand.NewSource(7))
	var contents [][]byte
	for _, m := range []string{simpleMsg, multipartMsg, benchMessage(r, 3, "Zanzibar"), benchMessage(r, 15, "Zanzibar")} {
		contents = append(contents, []byte(m))
	}
	for i := 0; i < 150; i++ {
		var b strings.Builder
		b.WriteString("From: Bob <bob@example.org>\r\n")
		randPart(r, &b, 0)
		contents = append(contents, []byte(b.String()))
	}
	// One text search per kind of message, kept across messages as in a
	// SEARCH.
	var viaReader, viaContent textSearch
	ops := []struct {
		op    imap.SearchOp
		field string
	}{{imap.SearchText, ""}, {imap.SearchBody, ""}, {imap.SearchHeader, "subject"}, {imap.SearchHeader, "X-NOTE"}, {imap.SearchHeader, ""}}
	found := 0
	for i, c := range contents {
		root := memstore.Parse(c)
		m := &textMsg{c: c, root: root}
		for _, o := range ops {
			for _, n := range textNeedles {
				want := refMatch(c, root, o.op, o.field, n)
				if want {
					found++
				}
				got, err := matchOne(&viaReader, m, o.op, o.field, n)
				if err != nil || got != want {
					t.Errorf("message %d, op %d %q, needle %q: Reader path %v, %v; want %v", i, o.op, o.field, n, got, err, want)
				}
				got, err = matchOne(&viaContent, contentMsg{m}, o.op, o.field, n)
				if err != nil || got != want {
					t.Errorf("message %d, op %d %q, needle %q: content path %v, %v; want %v", i, o.op, o.field, n, got, err, want)
				}
			}
		}
		if m.open != 0 {
			t.Fatalf("message %d: %d Readers left open", i, m.open)
		}
	}
	if found < 1000 {
		t.Errorf("only %d matches: the test does not test much", found)
	}
}

// Matches that straddle the windows of the streaming search, with the
// folds that change a rune's length.
func TestTextSearchWindows(t *testing.T) {
	for _, needle := range []string{"zanzibar", "käse", "\u212Aelvin", "ii", "\ufffd"} {
		for _, text := range []string{"ZANZIBAR", "KÄSE", "KELVIN", "\u212Aelvin", "İİ", "iİ", "é"} {
			for _, at := range []int{0, searchWindow - 5, searchWindow - 1, searchWindow, 2*searchWindow - 3, 3*searchWindow + 1} {
				for _, pad := range []string{"x", "é", "xé", "€"} {
					body := strings.Repeat(pad, at/len(pad)) + text + strings.Repeat(pad, 100)
					want := strings.Contains(strings.ToLower(body), strings.ToLower(needle))
					c := []byte("Subject: s\r\n\r\n" + body)
					root := memstore.Parse(c)
					m := &textMsg{c: c, root: root}
					var ts textSearch
					got, err := matchOne(&ts, m, imap.SearchBody, "", needle)
					if err != nil || got != want {
						t.Errorf("%q in %q at %d (%q): Reader path %v, %v", needle, text, at, pad, got, err)
					}
					got, _ = matchOne(&ts, contentMsg{m}, imap.SearchBody, "", needle)
					if got != want {
						t.Errorf("%q in %q at %d (%q): content path %v", needle, text, at, pad, got)
					}
				}
			}
		}
	}
}

// TEXT of a one-part message reads header and body with one Reader.
func TestTextSearchOneReader(t *testing.T) {
	c := []byte(simpleMsg)
	m := &textMsg{c: c, root: memstore.Parse(c)}
	var ts textSearch
	if ok, err := matchOne(&ts, m, imap.SearchText, "", "nothing like it"); ok || err != nil {
		t.Fatal(ok, err)
	}
	if m.readers != 1 || m.open != 0 {
		t.Fatalf("%d Readers, %d open", m.readers, m.open)
	}
}

// A message the store cannot give whole falls back to Reader; an error
// from Content is the search's.
type failingContent struct {
	*textMsg
	err error
}

func (m failingContent) Content() ([]byte, bool, error) { return nil, false, m.err }

func TestTextSearchContentFallback(t *testing.T) {
	c := []byte(simpleMsg)
	m := &textMsg{c: c, root: memstore.Parse(c)}
	var ts textSearch
	if ok, err := matchOne(&ts, failingContent{m, nil}, imap.SearchBody, "", "THE BODY"); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if m.readers != 1 {
		t.Fatal(m.readers)
	}
	if _, err := matchOne(&ts, failingContent{m, imap.ErrExpunged}, imap.SearchBody, "", "x"); !errors.Is(err, imap.ErrExpunged) {
		t.Fatal(err)
	}
}

// The text search allocates nothing per message once its buffers exist.
func TestTextSearchAllocs(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	var msgs []imap.Message
	for i := 0; i < 20; i++ {
		c := []byte(benchMessage(r, i, ""))
		m := &textMsg{c: c, root: memstore.Parse(c)}
		msgs = append(msgs, contentMsg{m})
	}
	var ts textSearch
	run := func() {
		for _, m := range msgs {
			if ok, _ := matchOne(&ts, m, imap.SearchText, "", "Zanzibar"); ok {
				t.Fatal("found")
			}
		}
	}
	run()
	if a := testing.AllocsPerRun(10, run); a > 0 {
		t.Errorf("%v allocations per run of %d messages", a, len(msgs))
	}
}

// SEARCH gives the same answers whether the store's messages hand over
// their content or are read, with several text keys on each message.
func TestSearchTextContent(t *testing.T) {
	cb := &contentBackend{msgs: map[uint32][]byte{}}
	plain := newTestServer(t, nil)
	ts := newTestServer(t, func(c *Config) { cb.Backend = c.Backend; c.Backend = cb })
	r := rand.New(rand.NewSource(3))
	msgs := []string{simpleMsg, multipartMsg}
	for i := 0; i < 40; i++ {
		var b strings.Builder
		b.WriteString("From: Bob <bob@example.org>\r\n")
		randPart(r, &b, 0)
		msgs = append(msgs, b.String())
	}
	for _, m := range msgs {
		plain.user.Deliver("INBOX", []byte(m))
		cb.msgs[ts.user.Deliver("INBOX", []byte(m))] = []byte(m)
	}
	pc, cc := plain.loginSelect(), ts.loginSelect()
	for _, k := range []string{
		"TEXT zanzibar", "BODY zanzibar TEXT zanz", "OR BODY kelvin SUBJECT ii", "NOT TEXT the",
		"HEADER X-Note report", "CHARSET UTF-8 TEXT {7}\r\nstraße", "CHARSET UTF-8 BODY {5}\r\nkäse TEXT report",
		"TEXT weekly", "SUBJECT hello", "FROM bob", `HEADER X-Priority ""`,
	} {
		want := searchResult(t, pc, "s SEARCH "+k)
		if got := searchResult(t, cc, "s SEARCH "+k); got != want {
			t.Errorf("SEARCH %s = %q with content, %q without", k, got, want)
		}
	}
}

// contentBackend wraps a memstore so that its messages implement
// imap.MessageContent, as a store holding small messages in memory would.
type contentBackend struct {
	imap.Backend
	msgs map[uint32][]byte // by UID, in INBOX
}

type contentUser struct {
	imap.User
	b *contentBackend
}

type contentMailbox struct {
	imap.Mailbox
	b *contentBackend
}

func (b *contentBackend) Login(ctx context.Context, c *imap.ConnInfo, authz, user, password string) (imap.User, error) {
	u, err := b.Backend.Login(ctx, c, authz, user, password)
	if err != nil {
		return nil, err
	}
	return contentUser{u, b}, nil
}

func (u contentUser) Open(ctx context.Context, name string, readOnly bool) (imap.Mailbox, error) {
	m, err := u.User.Open(ctx, name, readOnly)
	if err != nil {
		return nil, err
	}
	return contentMailbox{m, u.b}, nil
}

type contentMessage struct {
	imap.Message
	c []byte
}

func (m contentMessage) Content() ([]byte, bool, error) { return m.c, true, nil }

func (m contentMailbox) OpenMessage(ctx context.Context, uid uint32) (imap.Message, error) {
	msg, err := m.Mailbox.OpenMessage(ctx, uid)
	if err != nil {
		return nil, err
	}
	return contentMessage{msg, m.b.msgs[uid]}, nil
}
