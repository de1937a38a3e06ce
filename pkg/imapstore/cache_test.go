package imapstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/posthorn/posthorn/pkg/imap"
	"github.com/posthorn/posthorn/pkg/mailbox"
	"github.com/posthorn/posthorn/pkg/mime"
)

// codecMessages are messages for the codec tests: the golden set when it
// is there, and generated ones.
func codecMessages(t testing.TB) [][]byte {
	var out [][]byte
	if data, err := os.ReadFile(filepath.Join(golden, "golden.jsonl")); err == nil {
		for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
			var g struct{ Message string }
			if json.Unmarshal(line, &g) != nil {
				continue
			}
			if msg, err := os.ReadFile(filepath.Join(golden, "messages", g.Message)); err == nil {
				out = append(out, msg)
			}
		}
	}
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 40; i++ {
		out = append(out, []byte(benchMessage(r, i)))
	}
	out = append(out, []byte("Subject: no body"), []byte(""),
		[]byte("From: a@b\nTo: undisclosed-recipients:;\nContent-Type: message/rfc822\n\nSubject: inner\n\nbody\n"))
	return out
}

func crlf(b []byte) []byte {
	c, err := io.ReadAll(mailbox.CRLFReader(bytes.NewReader(b)))
	if err != nil {
		panic(err)
	}
	return c
}

func encodeMessage(raw []byte) ([]byte, *imap.Part, [3]string) {
	p := mime.ParseBytes(crlf(raw))
	texts := [3]string{p.Envelope(), p.BodyStructure(false), p.BodyStructure(true)}
	root := convert(p)
	return encodeCacheEntry(texts[0], texts[1], texts[2], root), root, texts
}

// The codec must know every field of the tree: a new field fails here
// until it is encoded.
func TestCacheFields(t *testing.T) {
	for _, c := range []struct {
		v any
		n int
	}{{imap.Part{}, 18}, {imap.Envelope{}, 10}, {imap.Address{}, 4}, {imap.Param{}, 2}} {
		if n := reflect.TypeOf(c.v).NumField(); n != c.n {
			t.Errorf("%T has %d fields, the cache codec knows %d", c.v, n, c.n)
		}
	}
}

func TestCacheRoundTrip(t *testing.T) {
	msgs := codecMessages(t)
	size, jsonSize := 0, 0
	for i, raw := range msgs {
		data, root, texts := encodeMessage(raw)
		e, err := decodeCacheEntry(data)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if string(e.envelope) != texts[0] || string(e.body) != texts[1] || string(e.bodyStructure) != texts[2] {
			t.Fatalf("message %d: texts differ", i)
		}
		got, err := decodeTree(e.tree)
		if err != nil {
			t.Fatalf("message %d: tree: %v", i, err)
		}
		if !reflect.DeepEqual(got, root) {
			g, _ := json.Marshal(got)
			w, _ := json.Marshal(root)
			t.Fatalf("message %d: tree differs:\n got %s\nwant %s", i, g, w)
		}
		// Decoding and encoding again gives the same entry.
		if again := encodeCacheEntry(texts[0], texts[1], texts[2], got); !bytes.Equal(again, data) {
			t.Fatalf("message %d: re-encoding differs", i)
		}
		size += len(data)
		j, _ := json.Marshal(struct {
			E, B, S string
			P       *imap.Part
		}{texts[0], texts[1], texts[2], root})
		jsonSize += len(j)
	}
	t.Logf("%d messages: %d octets of entries (JSON: %d)", len(msgs), size, jsonSize)
}

// Every truncation of an entry is an error, and so is trailing junk.
func TestCacheTruncated(t *testing.T) {
	for i, raw := range codecMessages(t)[:20] {
		data, _, _ := encodeMessage(raw)
		for n := 0; n < len(data); n++ {
			if decodeFull(data[:n]) == nil {
				t.Fatalf("message %d: prefix of %d/%d octets decoded", i, n, len(data))
			}
		}
		if decodeFull(append(bytes.Clone(data), 0)) == nil {
			t.Fatalf("message %d: trailing octet accepted", i)
		}
	}
}

func decodeFull(data []byte) error {
	e, err := decodeCacheEntry(data)
	if err != nil {
		return err
	}
	_, err = decodeTree(e.tree)
	return err
}

// Changed octets give an error or some tree, never a panic.
func TestCacheCorrupt(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for i, raw := range codecMessages(t)[:30] {
		data, _, _ := encodeMessage(raw)
		for k := 0; k < 200; k++ {
			c := bytes.Clone(data)
			for n := 1 + r.IntN(3); n > 0; n-- {
				c[r.IntN(len(c))] = byte(r.Uint32())
			}
			if err := decodeFull(c); err != nil && !errors.Is(err, errCorrupt) {
				t.Fatalf("message %d: %v", i, err)
			}
		}
	}
	for _, bad := range [][]byte{
		nil, []byte("imap1:{}"), []byte("imap2:"), []byte("imap2:\x01("),
		// Texts, then a tree that claims many parts and long lists.
		append([]byte("imap2:\x01(\x01(\x01("), binary.AppendUvarint(nil, 1<<60)...),
		append([]byte("imap2:\x01(\x01(\x01(\x01\x00\x00\x00"), binary.AppendUvarint(nil, 1<<40)...),
		append(append([]byte("imap2:\x01(\x01(\x01(\x01\x00\x00\x00\x00"), binary.AppendUvarint(nil, 1<<62)...), 0, 0, 0),
	} {
		if err := decodeFull(bad); err == nil {
			t.Errorf("%q decoded", bad)
		}
	}
}

// A hostile count does not make the decoder allocate more than the entry
// could hold.
func TestCacheHostileCounts(t *testing.T) {
	data, _, _ := encodeMessage(codecMessages(t)[0])
	e, _ := decodeCacheEntry(data)
	// Inflate the part count of the tree.
	tree := binary.AppendUvarint(nil, uint64(len(e.tree)))
	_, n := binary.Uvarint(e.tree)
	tree = append(tree, e.tree[n:]...)
	allocs := testing.AllocsPerRun(10, func() { decodeTree(tree) })
	if _, err := decodeTree(tree); err == nil {
		t.Fatal("inflated part count accepted")
	}
	if allocs > 100 {
		t.Fatalf("%v allocations", allocs)
	}
}

func TestToCRLF(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for i := 0; i < 2000; i++ {
		n := r.IntN(64)
		raw := make([]byte, n)
		for j := range raw {
			raw[j] = "ab\r\n"[r.IntN(4)]
		}
		buf := make([]byte, 2*n)
		copy(buf, raw)
		if got, want := toCRLF(buf, n), crlf(raw); !bytes.Equal(got, want) {
			t.Fatalf("%q: got %q, want %q", raw, got, want)
		}
	}
}

// cacheEnv is a mailbox with the given messages, opened as a session
// would.
func cacheEnv(t *testing.T, msgs ...[]byte) (*mailbox.Mailbox, imap.Mailbox, string) {
	t.Helper()
	e := newEnv(t, mailbox.Options{})
	for _, m := range msgs {
		e.deliver(m)
	}
	st, err := mailbox.OpenStore(e.root, mailbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	mb, err := New("alice", st, nil).Open(context.Background(), "INBOX", true)
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.Open("INBOX")
	if err != nil {
		t.Fatal(err)
	}
	return m, mb, e.root
}

func openMsg(t *testing.T, mb imap.Mailbox, uid uint32) *message {
	t.Helper()
	msg, err := mb.OpenMessage(context.Background(), uid)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { msg.Close() })
	return msg.(*message)
}

// A cached message serves its texts without opening the file; the tree
// and the content need it, and a file gone is imap.ErrExpunged there.
func TestMessageLazyOpen(t *testing.T) {
	m, mb, root := cacheEnv(t, msg("lazy", "hello"))
	msg1 := openMsg(t, mb, 1)
	if msg1.EnvelopeText() != "" {
		t.Fatal("texts before any parse")
	}
	st, err := msg1.Structure()
	if err != nil || st == nil {
		t.Fatal(err)
	}
	env := msg1.EnvelopeText()
	if !strings.Contains(env, `"lazy"`) || msg1.BodyStructureText(true) == "" || msg1.BodyStructureText(false) == "" {
		t.Fatalf("texts after parse: %q", env)
	}
	data, ok := m.Cache(1)
	if !ok || !strings.HasPrefix(string(data), cacheVersion) {
		t.Fatalf("cache entry %q", data)
	}

	files, _ := filepath.Glob(filepath.Join(root, "[cn][ue][rw]", "*"))
	if len(files) != 1 {
		t.Fatalf("message files %v, want one", files)
	}
	if err := os.Remove(files[0]); err != nil {
		t.Fatal(err)
	}
	msg2 := openMsg(t, mb, 1)
	if got := msg2.EnvelopeText(); got != env {
		t.Fatalf("cached envelope %q, want %q", got, env)
	}
	if msg2.f != nil {
		t.Fatal("file opened for a cached text")
	}
	if _, err := msg2.Structure(); !errors.Is(err, imap.ErrExpunged) {
		t.Fatalf("Structure of a vanished file: %v", err)
	}
	if _, err := openMsg(t, mb, 1).Reader(0); !errors.Is(err, imap.ErrExpunged) {
		t.Fatalf("Reader of a vanished file: %v", err)
	}
	if _, err := mb.OpenMessage(context.Background(), 2); !errors.Is(err, imap.ErrExpunged) {
		t.Fatalf("OpenMessage of an unknown UID: %v", err)
	}
}

// Old (JSON) and corrupt entries are parsed again and replaced; an entry
// whose texts are good but whose tree is not serves the texts and parses
// for the tree.
func TestMessageBadCache(t *testing.T) {
	m, mb, _ := cacheEnv(t, msg("one", "first body"), msg("two", "second body"))
	want := map[uint32][3]string{}
	wantRoot := map[uint32]*imap.Part{}
	for uid := uint32(1); uid <= 2; uid++ {
		msg := openMsg(t, mb, uid)
		root, err := msg.Structure()
		if err != nil {
			t.Fatal(err)
		}
		want[uid] = [3]string{msg.EnvelopeText(), msg.BodyStructureText(false), msg.BodyStructureText(true)}
		wantRoot[uid] = root
	}
	good, _ := m.Cache(1)
	e, _ := decodeCacheEntry(good)
	badTree := append(bytes.Clone(good[:len(good)-len(e.tree)]), 0xff)

	for _, bad := range [][]byte{[]byte(`imap1:{"e":"x"}`), []byte("imap2:\x05junk"), badTree} {
		if err := m.SetCache(1, bad); err != nil {
			t.Fatal(err)
		}
		msg := openMsg(t, mb, 1)
		texts := [3]string{msg.EnvelopeText(), msg.BodyStructureText(false), msg.BodyStructureText(true)}
		if !bytes.Equal(bad, badTree) && texts != ([3]string{}) {
			t.Fatalf("%q: texts %q", bad, texts)
		}
		root, err := msg.Structure()
		if err != nil || !reflect.DeepEqual(root, wantRoot[1]) {
			t.Fatalf("%q: tree %v", bad, err)
		}
		texts = [3]string{msg.EnvelopeText(), msg.BodyStructureText(false), msg.BodyStructureText(true)}
		if texts != want[1] {
			t.Fatalf("%q: texts %q, want %q", bad, texts, want[1])
		}
		if data, _ := m.Cache(1); !bytes.Equal(data, good) {
			t.Fatalf("%q: cache not rewritten: %q", bad, data)
		}
	}
}

// Reader gives the CRLF view from any offset, for messages read whole
// and for streamed ones.
func TestMessageReader(t *testing.T) {
	small := []byte("Subject: s\n\nline one\nline two\r\nend")
	large := []byte("Subject: l\n\n" + strings.Repeat("0123456789abcdef\n", 2*inlineMax/17))
	_, mb, _ := cacheEnv(t, small, large)
	for uid, raw := range map[uint32][]byte{1: small, 2: large} {
		want := crlf(raw)
		for _, off := range []int64{0, 1, 13, int64(len(want)) - 1, int64(len(want)), int64(len(want)) + 5} {
			msg := openMsg(t, mb, uid)
			for pass := 0; pass < 2; pass++ {
				r, err := msg.Reader(off)
				if err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(r)
				r.Close()
				if err != nil || !bytes.Equal(got, want[min(off, int64(len(want))):]) {
					t.Fatalf("uid %d off %d: %d octets, %v", uid, off, len(got), err)
				}
			}
			if (msg.content != nil) != (uid == 1) {
				t.Fatalf("uid %d: read whole %v", uid, msg.content != nil)
			}
			c, ok, err := msg.Content()
			if err != nil || ok != (uid == 1) || ok && !bytes.Equal(c, want) {
				t.Fatalf("uid %d: Content %v %v", uid, ok, err)
			}
		}
	}
}

// A tree nested deeper than maxTreeDepth is refused, one at the limit is
// not: the decoder's recursion is bounded whatever the entry says.
func TestCacheTreeDepth(t *testing.T) {
	nest := func(depth int) *imap.Part {
		leaf := &imap.Part{Type: "text", Subtype: "plain", Encoding: "7bit"}
		for range depth - 1 {
			leaf = &imap.Part{Type: "multipart", Subtype: "mixed", Parts: []*imap.Part{leaf}}
		}
		return leaf
	}
	for _, tc := range []struct {
		depth int
		ok    bool
	}{{maxTreeDepth, true}, {maxTreeDepth + 1, false}} {
		e, err := decodeCacheEntry(encodeCacheEntry("NIL", "b", "s", nest(tc.depth)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := decodeTree(e.tree); (err == nil) != tc.ok {
			t.Errorf("depth %d: decode error %v", tc.depth, err)
		}
	}
}
