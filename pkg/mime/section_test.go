package mime

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func sectionString(t *testing.T, p *Part, msg []byte, spec string) (string, error) {
	t.Helper()
	s, err := p.Section(spec)
	if err != nil {
		return "", err
	}
	r, n, err := s.Open(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) != n {
		t.Errorf("[%s]: size %d, read %d octets", spec, n, len(b))
	}
	return string(b), nil
}

// nested has every kind of section: RFC 3501 §6.4.5's example, shortened.
const nested = "From: a@example.com\r\n" +
	"Subject: outer\r\n" +
	"Content-Type: multipart/mixed; boundary=\"out\"\r\n" +
	"\r\n" +
	"preamble\r\n" +
	"--out\r\n" +
	"Content-Type: text/plain\r\n" +
	"\r\n" +
	"part one\r\n" +
	"--out\r\n" +
	"Content-Type: message/rfc822\r\n" +
	"X-Outer: 1\r\n" +
	"\r\n" +
	"From: b@example.com\r\n" +
	"Subject: inner\r\n" +
	"To: c@example.com\r\n" +
	"Content-Type: multipart/alternative; boundary=in\r\n" +
	"\r\n" +
	"--in\r\n" +
	"\r\n" +
	"inner text\r\n" +
	"--in\r\n" +
	"Content-Type: text/html\r\n" +
	"\r\n" +
	"<p>inner</p>\r\n" +
	"--in--\r\n" +
	"\r\n" +
	"--out--\r\n" +
	"epilogue\r\n"

func TestSections(t *testing.T) {
	for _, lf := range []bool{false, true} {
		msg := []byte(nested)
		if lf {
			msg = toLF(msg)
		}
		p := ParseBytes(msg)
		for _, c := range []struct{ spec, want string }{
			{"", nested},
			{"HEADER", "From: a@example.com\r\nSubject: outer\r\nContent-Type: multipart/mixed; boundary=\"out\"\r\n\r\n"},
			{"1", "part one"},
			{"1.MIME", "Content-Type: text/plain\r\n\r\n"},
			{"2.MIME", "Content-Type: message/rfc822\r\nX-Outer: 1\r\n\r\n"},
			{"2.HEADER", "From: b@example.com\r\nSubject: inner\r\nTo: c@example.com\r\nContent-Type: multipart/alternative; boundary=in\r\n\r\n"},
			{"2.HEADER.FIELDS (subject \"TO\")", "Subject: inner\r\nTo: c@example.com\r\n\r\n"},
			{"2.HEADER.FIELDS.NOT (Subject To Content-Type)", "From: b@example.com\r\n\r\n"},
			{"HEADER.FIELDS (X-None)", "\r\n"},
			{"2.TEXT", "--in\r\n\r\ninner text\r\n--in\r\nContent-Type: text/html\r\n\r\n<p>inner</p>\r\n--in--\r\n"},
			{"2.1", "inner text"},
			{"2.2", "<p>inner</p>"},
			{"2.2.MIME", "Content-Type: text/html\r\n\r\n"},
			{"2.1.MIME", "\r\n"},
			{"TEXT", nested[strings.Index(nested, "preamble"):]},
			// As in Dovecot, a leaf is its own part 1, at any depth.
			{"1.1.1", "part one"},
		} {
			got, err := sectionString(t, p, msg, c.spec)
			if err != nil {
				t.Errorf("[%s]: %v", c.spec, err)
				continue
			}
			if got != c.want {
				t.Errorf("lf=%v [%s] = %q, want %q", lf, c.spec, got, c.want)
			}
		}
		for _, spec := range []string{"3", "1.HEADER", "2.3", "0", "1.", "MIME", "1.FOO", "HEADER.FIELDS", "HEADER.FIELDS ()", "TEXT x", "2.HEADER.FIELDS (a"} {
			_, err := sectionString(t, p, msg, spec)
			if err == nil {
				t.Errorf("[%s] found", spec)
			}
		}
		if _, err := p.Section("0"); !errors.Is(err, ErrBadSection) {
			t.Errorf("[0]: %v, want ErrBadSection", err)
		}
		if _, err := p.Section("3"); !errors.Is(err, ErrNoSection) {
			t.Errorf("[3]: %v, want ErrNoSection", err)
		}
	}
}

// A message that is not multipart has a part 1: its body. Inside a
// message/rfc822 part that is the encapsulated message's body.
func TestSectionSinglePart(t *testing.T) {
	msg := []byte("Subject: x\n\nbody\n")
	p := ParseBytes(msg)
	for spec, want := range map[string]string{"1": "body\r\n", "TEXT": "body\r\n", "1.MIME": "Subject: x\r\n\r\n", "": "Subject: x\r\n\r\nbody\r\n"} {
		got, err := sectionString(t, p, msg, spec)
		if err != nil || got != want {
			t.Errorf("[%s] = %q, %v; want %q", spec, got, err, want)
		}
	}
	raw, err := os.ReadFile(filepath.Join(goldenDir, "messages", "011.eml"))
	if err != nil {
		t.Skip(err)
	}
	p = ParseBytes(raw)
	for spec, want := range map[string]string{
		"1":        "Subject: An enclosed message\r\n\r\nHere is the body of the message.\r\n",
		"1.1":      "Here is the body of the message.\r\n",
		"1.HEADER": "Subject: An enclosed message\r\n\r\n",
		"1.TEXT":   "Here is the body of the message.\r\n",
	} {
		got, err := sectionString(t, p, raw, spec)
		if err != nil || got != want {
			t.Errorf("011 [%s] = %q, %v; want %q", spec, got, err, want)
		}
	}
}

// Every section of every golden message is served with the size it
// announces, and the same content whether stored with CRLF or LF.
func TestGoldenSections(t *testing.T) {
	for _, g := range loadGolden(t) {
		raw, err := os.ReadFile(filepath.Join(goldenDir, "messages", g.Message))
		if err != nil {
			t.Fatal(err)
		}
		lf := toLF(raw)
		p, q := ParseBytes(raw), ParseBytes(lf)
		var specs []string
		var walk func(prefix string, p *Part)
		walk = func(prefix string, p *Part) {
			if p.IsMessage() {
				specs = append(specs, prefix+"HEADER", prefix+"TEXT", prefix+"HEADER.FIELDS (From Subject)")
				walk(prefix, p.Message)
				return
			}
			if p.IsMultipart() {
				for i, c := range p.Children {
					n := prefix + strconv.Itoa(i+1)
					specs = append(specs, n, n+".MIME")
					walk(n+".", c)
				}
			}
		}
		specs = append(specs, "", "HEADER", "TEXT", "1", "HEADER.FIELDS.NOT (Received)")
		walk("", p)
		for _, spec := range specs {
			a, err1 := sectionString(t, p, raw, spec)
			b, err2 := sectionString(t, q, lf, spec)
			if (err1 == nil) != (err2 == nil) || a != b {
				t.Errorf("%s [%s]: CRLF %q %v, LF %q %v", g.Message, spec, a, err1, b, err2)
			}
		}
		all, _ := sectionString(t, p, raw, "")
		if all != string(raw) {
			t.Errorf("%s: BODY[] differs from the message", g.Message)
		}
	}
}

func TestCRLFReader(t *testing.T) {
	for _, c := range []struct{ in, out string }{
		{"", ""},
		{"a\nb\r\nc\rd\n", "a\r\nb\r\nc\rd\r\n"},
		{"\n\n", "\r\n\r\n"},
		{"\r\n\r", "\r\n\r"},
	} {
		for _, size := range []int{1, 2, 3, 1024} {
			r := NewCRLFReader(&oneByteReader{s: c.in})
			var out []byte
			buf := make([]byte, size)
			for {
				n, err := r.Read(buf)
				out = append(out, buf[:n]...)
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if string(out) != c.out {
				t.Errorf("%q with %d-octet reads = %q, want %q", c.in, size, out, c.out)
			}
		}
	}
}

type oneByteReader struct{ s string }

func (r *oneByteReader) Read(p []byte) (int, error) {
	if r.s == "" {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	p[0] = r.s[0]
	r.s = r.s[1:]
	return 1, nil
}
