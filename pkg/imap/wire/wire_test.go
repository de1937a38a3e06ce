package wire

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/posthorn/posthorn/pkg/imap"
)

// dec returns a decoder over input that counts continuation requests.
func dec(input string, l Limits) (*Decoder, *int) {
	n := new(int)
	d := NewDecoder(NewIn(strings.NewReader(input)), l)
	d.Continue = func() error { *n++; return nil }
	return d, n
}

func mustCmd(t *testing.T, d *Decoder) *Command {
	t.Helper()
	c, err := d.ReadCommand()
	if err != nil {
		t.Fatalf("ReadCommand: %v", err)
	}
	return c
}

func wantErr(t *testing.T, d *Decoder, code string, fatal bool) *Error {
	t.Helper()
	_, err := d.ReadCommand()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("ReadCommand error = %v, want *Error", err)
	}
	if e.Code != code || e.Fatal != fatal {
		t.Fatalf("error %+v, want code %q fatal %v", e, code, fatal)
	}
	return e
}

func TestBasicCommands(t *testing.T) {
	d, cont := dec("a1 LOGIN alice \"p a\\\"ss\"\r\n"+
		"a2 select \"INBOX\"\r\n"+
		"a3 UID fetch 1:*,5 (FLAGS BODY.PEEK[HEADER.FIELDS (From To)]<0.100>)\r\n"+
		"a4 LOGIN {5}\r\nalice {3+}\r\npwd\r\n"+
		"a5 NOOP\n", Limits{})
	c := mustCmd(t, d)
	if c.Name != "LOGIN" || c.User != "alice" || c.Password != `p a"ss` || c.Tag != "a1" {
		t.Fatalf("%+v", c)
	}
	c = mustCmd(t, d)
	if c.Name != "SELECT" || c.Mailbox != "INBOX" {
		t.Fatalf("%+v", c)
	}
	c = mustCmd(t, d)
	if !c.UID || c.Name != "FETCH" || c.Seq.String() != "1:*,5" || len(c.Fetch.Items) != 2 {
		t.Fatalf("%+v", c)
	}
	sec := c.Fetch.Items[1]
	if sec.Kind != FetchSection || !sec.Peek || sec.Section.Spec != "HEADER.FIELDS" ||
		sec.Section.String() != "HEADER.FIELDS (From To)" || sec.Section.Count != 100 {
		t.Fatalf("%+v", sec)
	}
	c = mustCmd(t, d)
	if c.User != "alice" || c.Password != "pwd" || *cont != 1 {
		t.Fatalf("%+v, %d continuations", c, *cont)
	}
	if c = mustCmd(t, d); c.Name != "NOOP" {
		t.Fatalf("%+v", c)
	}
	if _, err := d.ReadCommand(); err != io.EOF {
		t.Fatalf("at end: %v", err)
	}
}

func TestSections(t *testing.T) {
	good := map[string]string{
		"BODY[]":                              "",
		"BODY[1.2.3]":                         "1.2.3",
		"BODY[1.MIME]":                        "1.MIME",
		"BODY[2.HEADER]":                      "2.HEADER",
		"BODY[TEXT]":                          "TEXT",
		"BODY[HEADER.FIELDS.NOT (X-A \"b\")]": "HEADER.FIELDS.NOT (X-A b)",
		"BINARY[1]":                           "1",
		"BINARY.SIZE[]":                       "",
	}
	for in, want := range good {
		d, _ := dec("a FETCH 1 "+in+"\r\n", Limits{})
		c := mustCmd(t, d)
		if got := c.Fetch.Items[0].Section.String(); got != want {
			t.Errorf("%s: section %q, want %q", in, got, want)
		}
	}
	for _, in := range []string{"BODY[0]", "BODY[1.]", "BODY[MIME]", "BODY[1HEADER]", "BINARY[TEXT]",
		"BODY[HEADER.FIELDS ()]", "BODY[]<1.0>", "BODY[]<1>", "BINARY.SIZE[1]<0.1>", "BODY.PEEK", "FOO",
		"BODY[99999999999]"} {
		d, _ := dec("a FETCH 1 "+in+"\r\na NOOP\r\n", Limits{})
		wantErr(t, d, "", false)
		if c := mustCmd(t, d); c.Name != "NOOP" {
			t.Errorf("%s: not resynchronised", in)
		}
	}
}

// HOSTILE 41: NUL, CR, LF and 8-bit octets in quoted strings are BAD.
func TestQuotedRejects(t *testing.T) {
	for _, q := range []string{"\"a\x00b\"", "\"a\xe4b\"", "\"a\\nb\"", "\"abc", "\"a\rb\""} {
		d, _ := dec("a LOGIN "+q+" x\r\nb NOOP\r\n", Limits{})
		wantErr(t, d, "", false)
		if c := mustCmd(t, d); c.Tag != "b" {
			t.Errorf("%q: next command %+v", q, c)
		}
	}
	// With UTF8=ACCEPT or IMAP4rev2, valid UTF-8 is fine, invalid is not.
	d, _ := dec("a LOGIN \"j\xc3\xb6rg\" x\r\nb LOGIN \"a\xe4b\" x\r\n", Limits{})
	d.UTF8 = true
	if c := mustCmd(t, d); c.User != "jörg" {
		t.Fatalf("%+v", c)
	}
	wantErr(t, d, "", false)
	// NUL inside a literal is data, not a terminator (HOSTILE 14).
	d, _ = dec("a LOGIN {3}\r\na\x00b x\r\n", Limits{})
	if c := mustCmd(t, d); c.User != "a\x00b" {
		t.Fatalf("%q", c.User)
	}
}

// HOSTILE 38: absurd literals are refused before any continuation.
func TestLiteralTooBig(t *testing.T) {
	for _, n := range []string{"65537", "4294967296", "99999999999999999999"} {
		d, cont := dec("a LOGIN {"+n+"}\r\nb NOOP\r\n", Limits{})
		wantErr(t, d, "TOOBIG", false)
		if *cont != 0 {
			t.Errorf("{%s}: continuation sent", n)
		}
		if c := mustCmd(t, d); c.Tag != "b" {
			t.Errorf("{%s}: next %+v", n, c)
		}
	}
	// 5 MB inside SEARCH.
	d, cont := dec("a SEARCH TEXT {5000000}\r\nb NOOP\r\n", Limits{})
	wantErr(t, d, "TOOBIG", false)
	if *cont != 0 {
		t.Error("continuation sent")
	}
}

// HOSTILE 39: a refused non-synchronising literal is consumed, and its
// bytes never run as a command.
func TestNonSyncLiteralConsumed(t *testing.T) {
	payload := strings.Repeat("x LOGOUT\r\n", 7000) // 70000 octets > 64 KiB
	d, _ := dec("a LOGIN {70000+}\r\n"+payload+" rest\r\nb NOOP\r\n", Limits{})
	wantErr(t, d, "TOOBIG", false)
	if c := mustCmd(t, d); c.Tag != "b" || c.Name != "NOOP" {
		t.Fatalf("after skip: %+v", c)
	}
	// A chain: rejected literal, line that ends with another {n+}.
	d, _ = dec("a SEARCH TEXT {70000+}\r\n"+payload+" TEXT {3+}\r\nc X\r\nb NOOP\r\n", Limits{})
	wantErr(t, d, "TOOBIG", false)
	if c := mustCmd(t, d); c.Tag != "b" {
		t.Fatalf("after chained skip: %+v", c)
	}
	// A syntax error on a line that ends in {n+} skips the literal too.
	d, _ = dec("a FOO bar {8+}\r\nx LOGOUT\r\nb NOOP\r\n", Limits{})
	wantErr(t, d, "", false)
	if c := mustCmd(t, d); c.Tag != "b" {
		t.Fatalf("after syntax error: %+v", c)
	}
	// Too large to skip: the connection must close.
	d, _ = dec("a LOGIN {4294967296+}\r\nx", Limits{})
	wantErr(t, d, "TOOBIG", true)
	d, _ = dec("a LOGIN {99999999999999999999+}\r\nx", Limits{})
	wantErr(t, d, "TOOBIG", true)
}

// RFC 7888 §5: under LITERAL- a {n+} above 4096 is BAD [TOOBIG].
func TestLiteralMinus(t *testing.T) {
	l := Limits{NonSyncMax: 4096}
	d, _ := dec("a LOGIN {5000+}\r\n"+strings.Repeat("y", 5000)+" x\r\nb NOOP\r\n", l)
	wantErr(t, d, "TOOBIG", false)
	if c := mustCmd(t, d); c.Tag != "b" {
		t.Fatalf("%+v", c)
	}
	d, _ = dec("a LOGIN {4096+}\r\n"+strings.Repeat("y", 4096)+" x\r\n", l)
	if c := mustCmd(t, d); len(c.User) != 4096 {
		t.Fatal("4096 refused")
	}
	d, _ = dec("a APPEND INBOX {5000+}\r\n"+strings.Repeat("y", 5000)+"\r\nb NOOP\r\n", l)
	wantErr(t, d, "TOOBIG", false)
	if c := mustCmd(t, d); c.Tag != "b" {
		t.Fatalf("%+v", c)
	}
}

func TestLineAndCommandLimits(t *testing.T) {
	// A line over the limit closes the connection (HOSTILE 12 for IMAP).
	d, _ := dec("a NOOP "+strings.Repeat("x", 70000)+"\r\n", Limits{})
	wantErr(t, d, "", true)
	d, _ = dec("a NOOP "+strings.Repeat("x", 9000), PreAuthLimits)
	wantErr(t, d, "", true)
	// No CRLF ever: bounded, not a hang or a growing buffer.
	d, _ = dec(strings.Repeat("z", 1<<20), Limits{})
	wantErr(t, d, "", true)
	if cap(d.line) > 128*1024 {
		t.Fatalf("line buffer grew to %d", cap(d.line))
	}
	// Before login a literal counts against the 8 KiB command budget.
	d, cont := dec("a LOGIN {9000}\r\n", PreAuthLimits)
	wantErr(t, d, "TOOBIG", false)
	if *cont != 0 {
		t.Fatal("continuation sent")
	}
	// Many literals.
	var b strings.Builder
	b.WriteString("a SEARCH")
	for i := 0; i < 1001; i++ {
		b.WriteString(" TEXT {1+}\r\nx")
	}
	b.WriteString("\r\nb NOOP\r\n")
	d, _ = dec(b.String(), Limits{})
	wantErr(t, d, "TOOBIG", false)
	if c := mustCmd(t, d); c.Tag != "b" {
		t.Fatalf("%+v", c)
	}
	// A command over MaxCommand through many literal lines.
	b.Reset()
	b.WriteString("a SEARCH")
	for i := 0; i < 20; i++ {
		b.WriteString(" TEXT {60000+}\r\n" + strings.Repeat("q", 60000))
	}
	b.WriteString("\r\nb NOOP\r\n")
	d, _ = dec(b.String(), Limits{})
	wantErr(t, d, "TOOBIG", false)
	if c := mustCmd(t, d); c.Tag != "b" {
		t.Fatalf("%+v", c)
	}
}

// HOSTILE 44: 0 and numbers beyond 2^32-1 are BAD.
func TestSeqSetRejects(t *testing.T) {
	for _, s := range []string{"0", "*:0", "1:4294967296", "0:5", "1,,2", "1:", ":1", "1,", "5:0"} {
		d, _ := dec("a FETCH "+s+" FLAGS\r\nb NOOP\r\n", Limits{})
		wantErr(t, d, "", false)
		if c := mustCmd(t, d); c.Tag != "b" {
			t.Errorf("%s: %+v", s, c)
		}
	}
	d, _ := dec("a UID FETCH 4294967295:1 FLAGS\r\n", Limits{})
	c := mustCmd(t, d)
	if got := c.Seq.Resolve(10); got.String() != "1:4294967295" {
		t.Fatalf("resolve %s", got)
	}
}

// HOSTILE 40: nesting bombs are bounded.
func TestNestingBombs(t *testing.T) {
	d, _ := dec("a ID "+strings.Repeat("(", 5000)+"\r\nb NOOP\r\n", PreAuthLimits)
	wantErr(t, d, "", false)
	if c := mustCmd(t, d); c.Tag != "b" {
		t.Fatalf("%+v", c)
	}
	d, _ = dec("a SEARCH "+strings.Repeat("(", 20000)+"ALL"+strings.Repeat(")", 20000)+"\r\nb NOOP\r\n", Limits{})
	wantErr(t, d, "", false)
	if c := mustCmd(t, d); c.Tag != "b" {
		t.Fatalf("%+v", c)
	}
	d, _ = dec("a SEARCH "+strings.Repeat("OR ALL ", 5000)+"ALL\r\n", Limits{})
	wantErr(t, d, "", false)
	d, _ = dec("a SEARCH "+strings.Repeat("NOT ", 10000)+"ALL\r\n", Limits{})
	wantErr(t, d, "", false)
	// Within the limit it parses.
	d, _ = dec("a SEARCH "+strings.Repeat("OR SEEN ", 50)+"ALL\r\n", Limits{})
	mustCmd(t, d)
	// Too many keys.
	d, _ = dec("a SEARCH "+strings.Repeat("SEEN ", 10001)+"ALL\r\n", Limits{})
	wantErr(t, d, "", false)
}

func TestSearchProgram(t *testing.T) {
	d, _ := dec("a UID SEARCH RETURN (MIN COUNT SAVE) CHARSET utf-8 OR FROM \"bob\" NOT SUBJECT {3}\r\nfoo "+
		"1:5 $ UID 7 HEADER X-Spam yes SINCE 1-Feb-2024 BEFORE \"05-Mar-2025\" LARGER 100 MODSEQ \"/flags/\\\\draft\" all 620162338 NEW UNKEYWORD $Junk\r\n", Limits{})
	c := mustCmd(t, d)
	s := c.Search
	if !c.UID || s.Charset != "UTF-8" || strings.Join(s.Return, " ") != "MIN COUNT SAVE" {
		t.Fatalf("%+v", s)
	}
	k := s.Key
	if k.Op != imap.SearchAnd || len(k.Children) != 11 {
		t.Fatalf("%d children", len(k.Children))
	}
	or := k.Children[0]
	if or.Op != imap.SearchOr || or.Children[0].Field != "FROM" || or.Children[1].Op != imap.SearchNot ||
		or.Children[1].Children[0].Value != "foo" {
		t.Fatalf("%+v", or)
	}
	if k.Children[1].Op != imap.SearchSeq || k.Children[1].Set.String() != "1:5" {
		t.Fatalf("%+v", k.Children[1])
	}
	if k.Children[2].Op != imap.SearchSeq || !k.Children[2].Set.Saved {
		t.Fatalf("%+v", k.Children[2])
	}
	if k.Children[8].N != 620162338 {
		t.Fatalf("%+v", k.Children[8])
	}
	for _, bad := range []string{"FOO", "SINCE 31-Foo-2020", "LARGER x", "UID 0", "OR ALL", "(ALL", "HEADER", "MODSEQ \"/x\" all 5"} {
		d, _ := dec("a SEARCH "+bad+"\r\n", Limits{})
		wantErr(t, d, "", false)
	}
}

func TestAppendLiteral(t *testing.T) {
	msg := "Subject: hi\r\n\r\nbody\r\n"
	d, cont := dec("a APPEND INBOX (\\Seen $x) \" 5-Jan-2024 10:00:00 +0100\" {21}\r\n"+msg+"\r\nb NOOP\r\n", Limits{})
	c := mustCmd(t, d)
	a := c.Append
	if c.Mailbox != "INBOX" || len(a.Flags) != 2 || a.Size != 21 || a.Date.Day() != 5 || *cont != 0 {
		t.Fatalf("%+v %+v", c, a)
	}
	r, err := d.AppendLiteral()
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(r)
	if string(got) != msg || *cont != 1 {
		t.Fatalf("%q", got)
	}
	if err := d.EndAppend(); err != nil {
		t.Fatal(err)
	}
	if c := mustCmd(t, d); c.Tag != "b" {
		t.Fatalf("%+v", c)
	}

	// Refused synchronising literal: nothing to skip.
	d, cont = dec("a APPEND INBOX {99999999}\r\nb NOOP\r\n", Limits{})
	mustCmd(t, d)
	if err := d.RejectLiteral(); err != nil {
		t.Fatal(err)
	}
	if c := mustCmd(t, d); c.Tag != "b" || *cont != 0 {
		t.Fatalf("%+v", c)
	}
	// Refused non-synchronising literal: consumed.
	d, _ = dec("a APPEND INBOX {20+}\r\nc LOGOUT\r\nc LOGOUT\r\n\r\nb NOOP\r\n", Limits{})
	mustCmd(t, d)
	if err := d.RejectLiteral(); err != nil {
		t.Fatal(err)
	}
	if c := mustCmd(t, d); c.Tag != "b" {
		t.Fatalf("%+v", c)
	}
	// Too large to consume.
	d, _ = dec("a APPEND INBOX {4294967296+}\r\n", Limits{})
	mustCmd(t, d)
	var e *Error
	if err := d.RejectLiteral(); !errors.As(err, &e) || !e.Fatal {
		t.Fatalf("%v", err)
	}
	// RFC 6855 UTF8 form and literal8.
	d, _ = dec("a APPEND INBOX UTF8 (~{4+}\r\nab\x00c)\r\nb APPEND INBOX ~{1}\r\nx\r\n", Limits{})
	c = mustCmd(t, d)
	if !c.Append.Binary {
		t.Fatal("not binary")
	}
	r, _ = d.AppendLiteral()
	got, _ = io.ReadAll(r)
	if string(got) != "ab\x00c" {
		t.Fatalf("%q", got)
	}
	if err := d.EndAppend(); err != nil {
		t.Fatal(err)
	}
	if c = mustCmd(t, d); c.Append.Size != 1 || !c.Append.Binary {
		t.Fatalf("%+v", c.Append)
	}
	if _, err := d.AppendLiteral(); err != nil {
		t.Fatal(err)
	}
	if err := d.EndAppend(); err != nil { // store read nothing: drained
		t.Fatal(err)
	}
	// literal8 is refused outside APPEND.
	d, _ = dec("a LOGIN ~{1}\r\n", Limits{})
	wantErr(t, d, "", false)
}

func TestOtherCommands(t *testing.T) {
	d, _ := dec(`a LIST (SUBSCRIBED RECURSIVEMATCH) "" ("INBOX" %) RETURN (CHILDREN STATUS (MESSAGES UNSEEN))`+"\r\n"+
		`b STORE 1:3 (UNCHANGEDSINCE 12) +FLAGS.SILENT (\Seen $Forwarded)`+"\r\n"+
		`c SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541 (1:5 41:45)))`+"\r\n"+
		`d ID ("name" "Thunderbird" "version" NIL)`+"\r\n"+
		`e CREATE Sent (USE (\Sent))`+"\r\n"+
		`f AUTHENTICATE PLAIN AGFsaWNlAHB3`+"\r\n"+
		`g ENABLE QRESYNC imap4rev2`+"\r\n"+
		`h STORE 2 FLAGS \Deleted \Seen`+"\r\n"+
		`i UID FETCH 1:* (FLAGS) (CHANGEDSINCE 5 VANISHED)`+"\r\n"+
		`j LSUB "" *`+"\r\n"+
		`k STATUS INBOX (MESSAGES SIZE)`+"\r\n", Limits{})
	c := mustCmd(t, d)
	if l := c.List; !l.Extended || len(l.Patterns) != 2 || l.Patterns[1] != "%" || len(l.ReturnStatus) != 2 || l.Return[0] != "CHILDREN" {
		t.Fatalf("%+v", c.List)
	}
	c = mustCmd(t, d)
	if s := c.Store; s.Op != imap.StoreAdd || !s.Silent || s.UnchangedSince != 12 || len(s.Flags) != 2 {
		t.Fatalf("%+v", s)
	}
	c = mustCmd(t, d)
	if q := c.Select.QResync; q == nil || q.UIDValidity != 67890007 || q.KnownUIDs.String() != "41,43:211,214:541" || q.SeqMatch[1].String() != "41:45" {
		t.Fatalf("%+v", c.Select)
	}
	c = mustCmd(t, d)
	if len(c.ID) != 2 || c.ID[0] != [2]string{"name", "Thunderbird"} {
		t.Fatalf("%+v", c.ID)
	}
	c = mustCmd(t, d)
	if len(c.Use) != 1 || c.Use[0] != `\Sent` {
		t.Fatalf("%+v", c.Use)
	}
	c = mustCmd(t, d)
	if c.Mechanism != "PLAIN" || *c.InitialResponse != "AGFsaWNlAHB3" {
		t.Fatalf("%+v", c)
	}
	c = mustCmd(t, d)
	if strings.Join(c.Caps, ",") != "QRESYNC,IMAP4REV2" {
		t.Fatalf("%+v", c.Caps)
	}
	c = mustCmd(t, d)
	if c.Store.Op != imap.StoreReplace || len(c.Store.Flags) != 2 {
		t.Fatalf("%+v", c.Store)
	}
	c = mustCmd(t, d)
	if c.Fetch.ChangedSince != 5 || !c.Fetch.Vanished {
		t.Fatalf("%+v", c.Fetch)
	}
	c = mustCmd(t, d)
	if c.Name != "LSUB" || c.List.Extended {
		t.Fatalf("%+v", c.List)
	}
	c = mustCmd(t, d)
	if len(c.Status) != 2 {
		t.Fatalf("%+v", c.Status)
	}
	// ID bounds (RFC 2971 §3.3).
	var b strings.Builder
	b.WriteString("a ID (")
	for i := 0; i < 31; i++ {
		b.WriteString(`"k" "v" `)
	}
	b.WriteString(")\r\n")
	d, _ = dec(b.String(), PreAuthLimits)
	wantErr(t, d, "", false)
}

func TestWriterQuoting(t *testing.T) {
	var out bytes.Buffer
	w := NewWriter(&out)
	w.String(`a"b\c`)
	w.Byte(' ')
	w.String("line\r\nbreak")
	w.Byte(' ')
	w.String("k\xc3\xa4se")
	w.Byte(' ')
	w.AString("INBOX")
	w.Byte(' ')
	w.AString("nil")
	w.Byte(' ')
	w.AString("a b")
	w.Byte(' ')
	w.NString(nil)
	w.Release()
	want := `"a\"b\\c" {11}` + "\r\nline\r\nbreak {5}\r\nk\xc3\xa4se INBOX \"nil\" \"a b\" NIL"
	if out.String() != want {
		t.Fatalf("got  %q\nwant %q", out.String(), want)
	}
	out.Reset()
	w.UTF8 = true
	w.String("k\xc3\xa4se")
	w.String("bad\xff")
	w.Release()
	if out.String() != "\"k\xc3\xa4se\"{4}\r\nbad\xff" {
		t.Fatalf("%q", out.String())
	}
}

func TestInReleasesBuffer(t *testing.T) {
	in := NewIn(strings.NewReader("a NOOP\r\n"))
	if err := in.Wait(); err != nil {
		t.Fatal(err)
	}
	line, err := in.readLine(nil, 100)
	if err != nil || string(line) != "a NOOP" {
		t.Fatal(line, err)
	}
	if err := in.Wait(); err != io.EOF {
		t.Fatal(err)
	}
	if in.buf != nil {
		t.Fatal("buffer kept while idle")
	}
}
