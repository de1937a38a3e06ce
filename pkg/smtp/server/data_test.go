package server

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// readData runs a DataReader over in with a small read buffer (so content
// crosses Read calls) and returns the output, the error and what was left
// unread after it.
func readData(in string, limit int64, bufSize int) (string, error, string) {
	br := bufio.NewReaderSize(strings.NewReader(in), 16)
	dr := NewDataReader(br, limit)
	var out bytes.Buffer
	p := make([]byte, bufSize)
	var err error
	for {
		var n int
		n, err = dr.Read(p)
		out.Write(p[:n])
		if err != nil {
			break
		}
	}
	rest, _ := io.ReadAll(br)
	return out.String(), err, string(rest)
}

func TestDataReader(t *testing.T) {
	for _, tc := range []struct {
		in, out, rest string
	}{
		{".\r\n", "", ""},
		{".\r\nQUIT\r\n", "", "QUIT\r\n"},
		{"a\r\n.\r\n", "a\n", ""},
		{"\r\n.\r\n", "\n", ""},
		{"..\r\n.\r\n", ".\n", ""},
		{"...\r\n.\r\n", "..\n", ""},
		{".a\r\n.\r\n", "a\n", ""}, // a lone stuffed dot is dropped too
		{"a.\r\n.b\r\n..\r\n.\r\n", "a.\nb\n.\n", ""},
		{"x\x00y\r\n\x00\r\n.\r\n", "x\x00y\n\x00\n", ""},
		{"\xff\xfe\r\n.\r\n", "\xff\xfe\n", ""},
		{strings.Repeat("z", 100) + "\r\n.\r\n", strings.Repeat("z", 100) + "\n", ""},
		{"a\r\n. \r\n.\r\n", "a\n \n", ""},
	} {
		for _, bs := range []int{1, 3, 4096} {
			out, err, rest := readData(tc.in, 0, bs)
			if err != io.EOF || out != tc.out || rest != tc.rest {
				t.Errorf("%q (buf %d): out %q err %v rest %q; want %q, EOF, %q", tc.in, bs, out, err, rest, tc.out, tc.rest)
			}
		}
	}
}

// HOSTILE 1-4 at the reader level: no variant ends the data, each is an
// error, and the reader stops right there.
func TestDataReaderBareLineEndings(t *testing.T) {
	for in, want := range map[string]error{
		"a\n.\n":                    ErrBareLF,
		"a\n.\r\n":                  ErrBareLF,
		"a\r\n.\n":                  ErrBareLF,
		".\n":                       ErrBareLF,
		"\n":                        ErrBareLF,
		"a\r.\r":                    ErrBareCR,
		"a\r\n.\r":                  ErrBareCR,
		"a\r\n.\rMAIL FROM:<x>\r\n": ErrBareCR,
		"a\r\r\n.\r\r\n":            ErrBareCR,
		"\r\r\n":                    ErrBareCR,
		"a\rb\r\n.\r\n":             ErrBareCR,
		"ab\r" + strings.Repeat("c", 40) + "\r\n.\r\n": ErrBareCR,
		strings.Repeat("c", 15) + "\r" + "x\r\n":       ErrBareCR, // CR at a buffer boundary
	} {
		for _, bs := range []int{1, 4096} {
			_, err, _ := readData(in+"MAIL FROM:<evil@x>\r\n.\r\n", 0, bs)
			if err != want {
				t.Errorf("%q: err %v, want %v", in, err, want)
			}
		}
	}
	// A CRLF split by the buffer boundary is fine.
	in := strings.Repeat("c", 15) + "\r\n.\r\n"
	if out, err, _ := readData(in, 0, 4096); err != io.EOF || out != strings.Repeat("c", 15)+"\n" {
		t.Errorf("split CRLF: %q %v", out, err)
	}
}

func TestDataReaderTruncated(t *testing.T) {
	for _, in := range []string{"", "a", "a\r\n", "a\r\n.", "a\r\n.\r", "a\r"} {
		if _, err, _ := readData(in, 0, 4096); err != io.ErrUnexpectedEOF {
			t.Errorf("%q: err %v, want unexpected EOF", in, err)
		}
	}
}

func TestDataReaderLimit(t *testing.T) {
	// 10 content octets per line.
	line := "123456789\r\n"
	in := strings.Repeat(line, 5) + ".\r\nNOOP\r\n"
	out, err, rest := readData(in, 50, 7)
	if err != io.EOF || len(out) != 50 || rest != "NOOP\r\n" {
		t.Errorf("at limit: %d octets, %v, rest %q", len(out), err, rest)
	}
	out, err, rest = readData(in, 49, 7)
	if err != ErrTooBig || rest != "NOOP\r\n" || len(out) > 49 {
		t.Errorf("over limit: %d octets, %v, rest %q", len(out), err, rest)
	}
	// Past the limit the reader still refuses bare line endings.
	_, err, _ = readData(strings.Repeat(line, 10)+"x\n.\n", 20, 4096)
	if err != ErrBareLF {
		t.Errorf("bare LF past the limit: %v", err)
	}
}

func TestLineEndings(t *testing.T) {
	var c lineEndings
	var out []byte
	var err error
	for _, chunk := range []string{"ab\r", "\ncd\r\n", "", "\r", "\n"} {
		if out, err = c.convert(out, []byte(chunk)); err != nil {
			t.Fatalf("chunk %q: %v", chunk, err)
		}
	}
	if string(out) != "ab\ncd\n\n" || c.finish() != nil {
		t.Fatalf("out %q", out)
	}
	for in, want := range map[string]error{"a\nb": ErrBareLF, "a\rb": ErrBareCR, "\r\r\n": ErrBareCR, "\n": ErrBareLF} {
		var c lineEndings
		if _, err := c.convert(nil, []byte(in)); !errors.Is(err, want) {
			t.Errorf("%q: %v, want %v", in, err, want)
		}
	}
	c = lineEndings{}
	c.convert(nil, []byte("a\r"))
	if _, err := c.convert(nil, []byte("b")); err != ErrBareCR {
		t.Errorf("CR then b across chunks: %v", err)
	}
	c = lineEndings{}
	c.convert(nil, []byte("a\r"))
	if c.finish() != ErrBareCR {
		t.Errorf("dangling CR at the end not refused")
	}
}

func TestHeaderCheck(t *testing.T) {
	feed := func(h *headerCheck, s string, step int) error {
		for i := 0; i < len(s); i += step {
			if err := h.write([]byte(s[i:min(i+step, len(s))])); err != nil {
				return err
			}
		}
		return nil
	}
	for _, tc := range []struct {
		in   string
		want error
	}{
		{"Received: a\nReceived: b\n\nReceived: c\n", nil},
		{"Received: a\nReceived: b\nReceived: c\n\n", ErrTooManyHops},
		{"received:a\nRECEIVED :b\nReceived\t: c\n", ErrTooManyHops},
		{"Received-SPF: a\nX-Received: b\nReceivedX: c\nReceive: d\n", nil},
		{"Subject: " + strings.Repeat("a", 40) + "\n", ErrHeaderTooLarge},
		{"Subject: " + strings.Repeat("a", 20) + "\n\t" + strings.Repeat("b", 20) + "\n", ErrHeaderTooLarge},
		{"Subject: " + strings.Repeat("a", 20) + "\nX: " + strings.Repeat("b", 20) + "\n", nil},
		{"Subject: x\n\n" + strings.Repeat("a", 100) + "\n", nil},
		{"not a header line " + strings.Repeat("a", 100) + "\n", nil},
		{"From someone\nReceived: a\nReceived: b\nReceived: c\n", nil},
		{": empty name " + strings.Repeat("a", 100) + "\n", nil},
	} {
		for _, step := range []int{1, 5, 1000} {
			h := newHeaderCheck(40, 2)
			if err := feed(h, tc.in, step); err != tc.want {
				t.Errorf("%q (step %d): %v, want %v", tc.in, step, err, tc.want)
			}
		}
	}
}

func TestParseCommand(t *testing.T) {
	for _, tc := range []struct {
		line string
		want Command
	}{
		{"NOOP", Command{Verb: "NOOP"}},
		{"noop  ", Command{Verb: "NOOP"}},
		{"ehlo Client.Example", Command{Verb: "EHLO", Arg: "Client.Example"}},
		{"MAIL FROM:<a@b>", Command{Verb: "MAIL", Arg: "FROM:<a@b>", Path: "<a@b>"}},
		{"mail from: <a@b>  SIZE=10\tbody=8BITMIME SMTPUTF8", Command{Verb: "MAIL", Arg: "from: <a@b>  SIZE=10\tbody=8BITMIME SMTPUTF8", Path: "<a@b>",
			Params: []Param{{"SIZE", "10", true}, {"BODY", "8BITMIME", true}, {"SMTPUTF8", "", false}}}},
		{"MAIL FROM:<>", Command{Verb: "MAIL", Arg: "FROM:<>", Path: "<>"}},
		{"MAIL FROM:a@b SIZE=1", Command{Verb: "MAIL", Arg: "FROM:a@b SIZE=1", Path: "<a@b>", Params: []Param{{"SIZE", "1", true}}}},
		{`RCPT TO:<"a> b"@c> X-Y=z`, Command{Verb: "RCPT", Arg: `TO:<"a> b"@c> X-Y=z`, Path: `<"a> b"@c>`, Params: []Param{{"X-Y", "z", true}}}},
		{`RCPT TO:<"a\"> b"@c>`, Command{Verb: "RCPT", Arg: `TO:<"a\"> b"@c>`, Path: `<"a\"> b"@c>`}},
		{"BDAT 0 LAST", Command{Verb: "BDAT", Arg: "0 LAST", Size: 0, Last: true}},
		{"bdat 9223372036854775807 last", Command{Verb: "BDAT", Arg: "9223372036854775807 last", Size: 9223372036854775807, Last: true}},
		{"BDAT 42", Command{Verb: "BDAT", Arg: "42", Size: 42}},
		{"RCPT TO:<jörg@例子.test>", Command{Verb: "RCPT", Arg: "TO:<jörg@例子.test>", Path: "<jörg@例子.test>"}},
	} {
		got, err := ParseCommand(tc.line)
		if err != nil {
			t.Errorf("ParseCommand(%q): %v", tc.line, err)
			continue
		}
		if got.Verb != tc.want.Verb || got.Arg != tc.want.Arg || got.Path != tc.want.Path || got.Size != tc.want.Size ||
			got.Last != tc.want.Last || len(got.Params) != len(tc.want.Params) {
			t.Errorf("ParseCommand(%q) = %+v, want %+v", tc.line, got, tc.want)
			continue
		}
		for i := range got.Params {
			if got.Params[i] != tc.want.Params[i] {
				t.Errorf("ParseCommand(%q) param %d = %+v, want %+v", tc.line, i, got.Params[i], tc.want.Params[i])
			}
		}
	}
	for line, want := range map[string]string{
		"":                             "500 5.5.2",
		"NOOP\x00":                     "500 5.5.2",
		"MAIL FROM:<a\r@b>":            "500 5.5.2",
		"\xc3":                         "500 5.5.2 Error: bad UTF-8 syntax",
		"EHLO":                         "501 5.5.4",
		"EHLO   ":                      "501 5.5.4",
		"MAIL":                         "501 5.5.4",
		"MAIL FROM":                    "501 5.5.4",
		"MAIL FROM:":                   "501 5.5.4",
		"MAIL FROM:<a@b":               "501 5.1.7",
		`MAIL FROM:<"a@b>`:             "501 5.1.7",
		"MAIL FROM:<a@b>SIZE=1":        "501 5.1.7",
		"RCPT TO:<a@b":                 "501 5.1.3",
		"RCPT TO:<a@b> =x":             "501 5.5.4",
		"RCPT TO:<a@b> -X=1":           "501 5.5.4",
		"RCPT TO:<a@b> X=":             "501 5.5.4",
		"RCPT TO:<a@b> X=a=b":          "501 5.5.4",
		"BDAT":                         "501 5.5.4",
		"BDAT x":                       "501 5.5.4",
		"BDAT +1":                      "501 5.5.4",
		"BDAT 1 2":                     "501 5.5.4",
		"BDAT 18446744073709551616":    "501 5.5.4",
		"BDAT 9223372036854775808":     "501 5.5.4",
		"BDAT 00000000000000000000001": "501 5.5.4",
		"BDAT 1 LAST LAST":             "501 5.5.4",
	} {
		cmd, err := ParseCommand(line)
		var r *Reply
		if !errors.As(err, &r) || !strings.HasPrefix(r.Error(), want) {
			t.Errorf("ParseCommand(%q) error %v, want %q", line, err, want)
		}
		if want := strings.ToUpper(strings.Fields(line + " x")[0]); line != "" && cmd.Verb != want && !strings.ContainsAny(line, "\x00\r\xc3") {
			t.Errorf("ParseCommand(%q) on error gave verb %q", line, cmd.Verb)
		}
	}
}

// Keywords are ASCII: Unicode case mapping must not turn look-alikes into
// commands or markers.
func TestParseCommandASCIICase(t *testing.T) {
	if cmd, _ := ParseCommand("ma\u0131l FROM:<a@b>"); cmd.Verb == "MAIL" {
		t.Errorf("dotless i read as MAIL")
	}
	if cmd, err := ParseCommand("BDAT 1 LA\u017fT"); err == nil || cmd.Last {
		t.Errorf("long s read as LAST")
	}
	if cmd, err := ParseCommand("mail from:<a@b>"); err != nil || cmd.Verb != "MAIL" || cmd.Path != "<a@b>" {
		t.Errorf("lower-case MAIL: %+v %v", cmd, err)
	}
}
