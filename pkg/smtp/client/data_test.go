package client

import (
	"bufio"
	"bytes"
	"io"
	"mime/quotedprintable"
	"strings"
	"testing"
)

func dataStream(t testing.TB, content string, chunk int) string {
	return dataStreamLimit(t, content, chunk, MaxLineLength)
}

func dataStreamLimit(t testing.TB, content string, chunk, limit int) string {
	var b bytes.Buffer
	bw := bufio.NewWriter(&b)
	dw := newDataWriter(bw)
	dw.limit = limit
	for len(content) > 0 {
		n := min(chunk, len(content))
		if _, err := dw.Write([]byte(content[:n])); err != nil {
			t.Fatal(err)
		}
		content = content[n:]
	}
	dw.Close()
	bw.Flush()
	return b.String()
}

// checkWire asserts what may never be on the wire in DATA: a bare CR or
// LF, a line longer than 998 octets, or a lone "." before the end.
func checkWire(t testing.TB, wire string) {
	t.Helper()
	checkWireLimit(t, wire, MaxLineLength)
}

func checkWireLimit(t testing.TB, wire string, limit int) {
	t.Helper()
	if !strings.HasSuffix(wire, "\r\n.\r\n") && wire != ".\r\n" {
		t.Fatalf("stream does not end with CRLF.CRLF: %q", tail(wire))
	}
	for i := 0; i < len(wire); i++ {
		switch wire[i] {
		case '\r':
			if i+1 >= len(wire) || wire[i+1] != '\n' {
				t.Fatalf("bare CR at %d", i)
			}
		case '\n':
			if i == 0 || wire[i-1] != '\r' {
				t.Fatalf("bare LF at %d", i)
			}
		}
	}
	lines := strings.Split(strings.TrimSuffix(wire, "\r\n"), "\r\n")
	for i, l := range lines {
		if len(l) > limit {
			t.Fatalf("line %d has %d octets", i, len(l))
		}
		if l == "." && i != len(lines)-1 {
			t.Fatalf("lone dot at line %d ends the data early", i)
		}
	}
}

func tail(s string) string {
	if len(s) > 40 {
		return s[len(s)-40:]
	}
	return s
}

func TestDataConversion(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"Subject: x\n\nbody\n", "Subject: x\r\n\r\nbody\r\n.\r\n"},
		{"no final newline", "no final newline\r\n.\r\n"},
		{"", ".\r\n"},
		{"crlf\r\nkept\r\n", "crlf\r\nkept\r\n.\r\n"},
		// Bare CR is a line break of its own; CR CR LF two of them.
		{"a\rb\r\r\nc\r", "a\r\nb\r\n\r\nc\r\n.\r\n"},
		// Dot-stuffing (RFC 5321 §4.5.2), also of an attempted smuggle
		// (HOSTILE-INPUTS 1, 2, 5).
		{".\n..\n.x\nx.\n", "..\r\n...\r\n..x\r\nx.\r\n.\r\n"},
		{"a\n.\nMAIL FROM:<x>\n", "a\r\n..\r\nMAIL FROM:<x>\r\n.\r\n"},
		{"a\r\n.\r\nb\n.\r\nc\r.\r", "a\r\n..\r\nb\r\n..\r\nc\r\n..\r\n.\r\n"},
		{"\n\n", "\r\n\r\n.\r\n"},
	} {
		for _, chunk := range []int{1, 2, 3, 1 << 20} {
			got := dataStream(t, c.in, chunk)
			if got != c.want {
				t.Errorf("%q in chunks of %d: got %q, want %q", c.in, chunk, got, c.want)
			}
			checkWire(t, got)
		}
	}
}

func TestDataLongLinesBroken(t *testing.T) {
	// A line of exactly 998 octets stays whole.
	l998 := strings.Repeat("a", MaxLineLength)
	if got := dataStream(t, l998+"\n", 100); got != l998+"\r\n.\r\n" {
		t.Fatalf("998 octets: %q", tail(got))
	}
	// 2500 octets become 998 + " " 997 + " " 505, each with CRLF.
	long := strings.Repeat("b", 2500)
	got := dataStream(t, long+"\nend\n", 333)
	checkWire(t, got)
	want := long[:998] + "\r\n " + long[998:1995] + "\r\n " + long[1995:] + "\r\nend\r\n.\r\n"
	if got != want {
		t.Fatalf("long line broken as %d octets", len(got))
	}
	// A stuffed dot counts towards the line length.
	got = dataStream(t, "."+l998+"\n", 7)
	checkWire(t, got)
	if !strings.HasPrefix(got, ".."+l998[:996]+"\r\n ") {
		t.Fatalf("stuffed long line: %q", got[:20])
	}
}

func TestDataWriterError(t *testing.T) {
	bw := bufio.NewWriterSize(errWriter{}, 16)
	dw := newDataWriter(bw)
	if _, err := dw.Write([]byte(strings.Repeat("x\n", 100))); err == nil {
		t.Fatal("write error not reported")
	}
	if _, err := dw.Write([]byte("more")); err == nil || dw.Close() == nil {
		t.Fatal("error not sticky")
	}
}

type errWriter struct{}

func (errWriter) Write(p []byte) (int, error) { return 0, io.ErrClosedPipe }

func downgrade(t *testing.T, in string) string {
	t.Helper()
	var b bytes.Buffer
	if err := Downgrade(&b, strings.NewReader(in)); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestDowngradeSinglePart(t *testing.T) {
	in := "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\nSubject: x\n\n" +
		"Grüße aus Köln\n=equals and trailing space \n" + strings.Repeat("ä", 60) + "\n"
	out := downgrade(t, in)
	hdr, body, _ := strings.Cut(out, "\n\n")
	if !strings.Contains(hdr, "Content-Transfer-Encoding: quoted-printable") || strings.Contains(hdr, "8bit") {
		t.Fatalf("header: %q", hdr)
	}
	if !strings.HasPrefix(hdr, "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nSubject: x\n") {
		t.Fatalf("other header lines changed: %q", hdr)
	}
	for _, line := range strings.Split(body, "\r\n") {
		if len(line) > 76 {
			t.Fatalf("QP line of %d octets", len(line))
		}
		for i := 0; i < len(line); i++ {
			if line[i] >= 0x80 {
				t.Fatalf("8-bit octet left in %q", line)
			}
		}
	}
	dec, err := io.ReadAll(quotedprintable.NewReader(strings.NewReader(body)))
	if err != nil {
		t.Fatal(err)
	}
	_, orig, _ := strings.Cut(in, "\n\n")
	if strings.ReplaceAll(string(dec), "\r\n", "\n") != orig {
		t.Fatalf("decoded %q, want %q", dec, orig)
	}
}

func TestDowngradeMultipart(t *testing.T) {
	in := "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b1\"\nContent-Transfer-Encoding: 8bit\n\n" +
		"preamble\n--b1\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nÄpfel\n" +
		"--b1\nContent-Type: text/plain\n\nplain ascii\n" +
		"--b1\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\nAAAA\n" +
		"--b1\nContent-Type: message/rfc822\nContent-Transfer-Encoding: 8bit\n\n" +
		"MIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=b2\n\n--b2\nContent-Transfer-Encoding: 8bit\n\nÖl\n--b2--\n" +
		"--b1--\nepilogue\n"
	want := "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b1\"\nContent-Transfer-Encoding: 7bit\n\n" +
		"preamble\n--b1\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n=C3=84pfel\r\n" +
		"--b1\nContent-Type: text/plain\n\nplain ascii\n" +
		"--b1\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\nAAAA\n" +
		"--b1\nContent-Type: message/rfc822\nContent-Transfer-Encoding: 7bit\n\n" +
		"MIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=b2\n\n--b2\nContent-Transfer-Encoding: quoted-printable\n\n=C3=96l\r\n--b2--\n" +
		"--b1--\nepilogue\n"
	if got := downgrade(t, in); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

func TestDowngradeLeavesOthersAlone(t *testing.T) {
	for _, in := range []string{
		// Not MIME: no MIME-Version header.
		"Subject: x\nContent-Transfer-Encoding: 8bit\n\nGrüße\n",
		// Nothing declared 8bit.
		"MIME-Version: 1.0\nSubject: ü\n\nascii\n",
		// A header without body, and no header end at all.
		"MIME-Version: 1.0\nSubject: x\n",
		"",
		// A multipart whose boundary is unusable is a leaf.
		"MIME-Version: 1.0\nContent-Type: multipart/mixed\n\n--\nx\n",
	} {
		if got := downgrade(t, in); got != in {
			t.Errorf("%q changed to %q", in, got)
		}
	}
}

func TestDowngradeLimits(t *testing.T) {
	// Nesting beyond the limit: the rest is copied as it is.
	var b strings.Builder
	b.WriteString("MIME-Version: 1.0\n")
	for i := 0; i < maxMIMENesting+5; i++ {
		b.WriteString("Content-Type: message/rfc822\n\n")
	}
	b.WriteString("Content-Transfer-Encoding: 8bit\n\nÜ\n")
	in := b.String()
	if got := downgrade(t, in); got != in {
		t.Fatal("message nested beyond the limit was changed")
	}
	// A header block larger than the limit.
	big := "MIME-Version: 1.0\nContent-Transfer-Encoding: 8bit\n" + strings.Repeat("X-A: "+strings.Repeat("a", 1000)+"\n", maxHeaderOctets/1000+1) + "\nÜ\n"
	if got := downgrade(t, big); got != big {
		t.Fatal("oversized header was changed")
	}
	// A boundary longer than the limit makes no multipart.
	long := strings.Repeat("b", maxBoundaryLen+1)
	in = "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=" + long + "\n\n--" + long + "\nContent-Transfer-Encoding: 8bit\n\nÜ\n--" + long + "--\n"
	if got := downgrade(t, in); got != in {
		t.Fatal("multipart with an overlong boundary was walked")
	}
	// A line longer than the read buffer inside an 8bit part is encoded whole.
	in = "MIME-Version: 1.0\nContent-Transfer-Encoding: 8bit\n\n" + strings.Repeat("ü", downgradeBuffer) + "\n"
	out := downgrade(t, in)
	_, body, _ := strings.Cut(out, "\n\n")
	dec, _ := io.ReadAll(quotedprintable.NewReader(strings.NewReader(body)))
	if string(dec) != strings.Repeat("ü", downgradeBuffer)+"\r\n" {
		t.Fatalf("long line decoded to %d octets", len(dec))
	}
}
