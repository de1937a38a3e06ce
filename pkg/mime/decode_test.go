package mime

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestDecodeHeader(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"plain text", "plain text"},
		{"=?utf-8?q?Ren=C3=A9e?= Larsen", "Renée Larsen"},
		{"=?UTF-8?B?w6k=?=", "é"},
		{"=?iso-8859-1?q?caf=E9?=", "café"},
		{"=?windows-1252?q?=93quoted=94?=", "\u201cquoted\u201d"},
		// RFC 2047 §6.2: space between encoded words disappears,
		// other text stays.
		{"=?utf-8?q?a?= =?utf-8?q?b?=", "ab"},
		{"=?utf-8?q?a?= x =?utf-8?q?b?=", "a x b"},
		{"=?utf-8?q?a_b?=", "a b"},
		// A character split between two words.
		{"=?utf-8?b?w6k=?= =?utf-8?b?w6k=?=", "éé"},
		{"=?utf-8?b?4oI=?= =?utf-8?b?rA==?=", "€"},
		// RFC 2231 §5 language suffix.
		{"=?us-ascii*en?q?hi?=", "hi"},
		// Unfolding.
		{"a\r\n b", "a b"},
		// Not encoded words.
		{"=?utf-8?q?no end", "=?utf-8?q?no end"},
		{"=?utf-8?x?a?=", "=?utf-8?x?a?="},
		{"=?utf-8?q?has space?=", "=?utf-8?q?has space?="},
		{"=?", "=?"},
		// Unknown charsets keep their octets; bad UTF-8 is replaced.
		{"=?x-unknown?q?=41?=", "A"},
		{"caf\xe9", "caf\uFFFD"},
	} {
		if got := DecodeHeader([]byte(c.in)); got != c.want {
			t.Errorf("DecodeHeader(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestDecodeParam(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"us-ascii'en'This%20is%20fun", "This is fun"},
		{"utf-8''%E2%82%AC%20rates.pdf", "€ rates.pdf"},
		{"iso-8859-1''caf%E9", "café"},
		{"''100%25", "100%"},
		{"no quotes", "no quotes"},
		{"utf-8''bad%zz", "bad%zz"},
	} {
		if got := DecodeParam(c.in); got != c.want {
			t.Errorf("DecodeParam(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// HOSTILE-INPUTS §37: a file name split into RFC 2231 sections, in any
// order and folded over lines, reads as one name everywhere.
func TestFilenameRFC2231(t *testing.T) {
	msg := "Content-Type: application/octet-stream; name=\"decoy.txt\"\r\n" +
		"Content-Disposition: attachment;\r\n" +
		" filename*1*=%2E%65%78%65;\r\n" +
		" filename*0*=utf-8''evil;\r\n" +
		" filename=\"decoy.txt\"\r\n" +
		"\r\nbody"
	p := ParseBytes([]byte(msg))
	if got := p.Filename(); got != "evil.exe" {
		t.Errorf("Filename = %q, want evil.exe", got)
	}
	if got := p.BodyStructure(true); !strings.Contains(got, `("attachment" ("filename" "decoy.txt" "filename*" "utf-8''evil%2E%65%78%65"))`) {
		t.Errorf("BODYSTRUCTURE = %s", got)
	}
	p = ParseBytes([]byte("Content-Type: text/plain; name==?utf-8?q?r=C3=A9sum=C3=A9.txt?=\r\n\r\n"))
	if got := p.Filename(); got != "résumé.txt" {
		t.Errorf("Filename = %q", got)
	}
	if got := p.Charset(); got != "us-ascii" {
		t.Errorf("Charset = %q", got)
	}
	// A section number that is missing keeps the sections apart.
	p = ParseBytes([]byte("Content-Type: text/plain; a*0=x; a*2=y; b*0*=utf-8''%41; b*1=%\r\n\r\n"))
	if got, want := p.BodyStructure(false), `("text" "plain" ("a*0" "x" "a*2" "y" "b*" "utf-8''%41%25" "charset" "us-ascii") NIL NIL "7bit" 0 0)`; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if got, _ := p.Param("b"); got != "A%" {
		t.Errorf("b = %q", got)
	}
}

func readAll(t *testing.T, r io.Reader) string {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestDecodeBinary(t *testing.T) {
	for _, c := range []struct{ enc, in, want string }{
		{"base64", "aGVs\r\nbG8=\r\n", "hello"},
		{"BASE64", "aGVsbG8", "hello"},
		{"base64", "a G\x00V*sbG8=garbage", "hello"},
		{"quoted-printable", "caf=C3=A9 =\r\nsoft\r\nhard  \r\nend", "café soft\r\nhard\r\nend"},
		{"quoted-printable", "a=\nb\nc \t\n", "ab\nc\n"},
		{"quoted-printable", "=4a=4A=zz=\r\n=", "JJ=zz="},
		{"quoted-printable", "x= \r\ny", "xy"},
		{"quoted-printable", "x= y", "x= y"},
		{"quoted-printable", "x=\rz", "x=\rz"},
		{"quoted-printable", "trail  ", "trail"},
		{"7bit", "as is\r\n", "as is\r\n"},
		{"", "as is", "as is"},
		{"8bit", "\xff", "\xff"},
		{"Binary", "\x00", "\x00"},
	} {
		for _, one := range []bool{false, true} {
			var src io.Reader = strings.NewReader(c.in)
			if one {
				src = &oneByteReader{s: c.in}
			}
			r, err := DecodeBinary(c.enc, src)
			if err != nil {
				t.Fatalf("%s: %v", c.enc, err)
			}
			if got := readAll(t, r); got != c.want {
				t.Errorf("%s %q (one octet at a time: %v) = %q, want %q", c.enc, c.in, one, got, c.want)
			}
		}
	}
	if _, err := DecodeBinary("x-uuencode", strings.NewReader("")); !errors.Is(err, ErrUnknownCTE) {
		t.Errorf("x-uuencode: %v", err)
	}
}

func TestPartText(t *testing.T) {
	msg := []byte("Content-Type: multipart/mixed; boundary=b\n\n--b\n" +
		"Content-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\ncaf=E9 =\n=80\n" +
		"--b\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\nw6kK\n" +
		"--b\nContent-Type: text/plain; charset=koi8-r\n\n\xc1\n" +
		"--b\nContent-Type: application/pdf\nContent-Transfer-Encoding: x-weird\n\nraw\n" +
		"--b--\n")
	p := ParseBytes(msg)
	r := bytes.NewReader(msg)
	want := []string{"café €", "é\n", "\xc1", "raw"}
	for i, c := range p.Children {
		if got := readAll(t, c.Text(r)); got != want[i] {
			t.Errorf("part %d text = %q, want %q", i+1, got, want[i])
		}
	}
	if _, err := p.Children[3].Binary(r); !errors.Is(err, ErrUnknownCTE) {
		t.Errorf("Binary of x-weird: %v", err)
	}
	b, err := p.Children[1].Binary(r)
	if err != nil || readAll(t, b) != "é\n" {
		t.Errorf("Binary of base64 part wrong: %v", err)
	}
}

func TestCharsetReader(t *testing.T) {
	in := strings.Repeat("é€😀", 3000) + "\xff"
	for _, one := range []bool{false, true} {
		var src io.Reader = strings.NewReader(in)
		if one {
			src = &oneByteReader{s: in}
		}
		got := readAll(t, NewCharsetReader("UTF-8", src))
		if want := strings.Repeat("é€😀", 3000) + "\uFFFD"; got != want {
			t.Errorf("utf-8 (one octet at a time: %v): %d octets, want %d", one, len(got), len(want))
		}
	}
	if got := readAll(t, NewCharsetReader("latin1", strings.NewReader("\xe9\x80\x81"))); got != "é€\u0081" {
		t.Errorf("latin1 = %q", got)
	}
	if got := readAll(t, NewCharsetReader("koi8-r", strings.NewReader("\xc1"))); got != "\xc1" {
		t.Errorf("koi8-r = %q", got)
	}
}

func TestHeaderValues(t *testing.T) {
	msg := []byte("Subject: =?utf-8?q?caf=C3=A9?=\r\n  folded\r\nX-A: 1\r\nx-a : 2\r\nno colon line\r\n\r\nSubject: body\r\n")
	p := ParseBytes(msg)
	h, err := p.Header(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := h.Get("subject"); !ok || v != "café  folded" {
		t.Errorf("Subject = %q %v", v, ok)
	}
	if v := h.Values("X-A"); len(v) != 2 || v[0] != "1" || v[1] != "2" {
		t.Errorf("X-A = %q", v)
	}
	if len(h.Fields) != 4 || h.Fields[3].Name != "" {
		t.Errorf("fields = %+v", h.Fields)
	}
	if _, ok := h.Get("nothing"); ok {
		t.Error("found a missing field")
	}
}
