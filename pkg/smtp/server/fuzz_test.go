package server

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posthorn/posthorn/pkg/maillog"
)

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{
		"EHLO client.example", "HELO x", "MAIL FROM:<a@b> SIZE=100 BODY=8BITMIME SMTPUTF8",
		"MAIL FROM:<>", "RCPT TO:<@a,@b:c@d>", `RCPT TO:<"a> b"@c> X=y`, "BDAT 100 LAST",
		"BDAT 18446744073709551616", "DATA", "QUIT", "NOOP\x00", "mail from: a@b", "\xc3",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		cmd, err := ParseCommand(line)
		if err != nil {
			var r *Reply
			if !errors.As(err, &r) || (r.Code != 500 && r.Code != 501) {
				t.Fatalf("%q: error %v is not a 500/501 reply", line, err)
			}
			return
		}
		if cmd.Verb != upperASCII(cmd.Verb) {
			t.Fatalf("%q: verb %q not upper case", line, cmd.Verb)
		}
		for _, s := range []string{cmd.Verb, cmd.Arg, cmd.Path} {
			if strings.ContainsAny(s, "\x00\r\n") {
				t.Fatalf("%q: control character in %q", line, s)
			}
		}
		if cmd.Verb == "MAIL" || cmd.Verb == "RCPT" {
			if len(cmd.Path) < 2 || cmd.Path[0] != '<' || cmd.Path[len(cmd.Path)-1] != '>' {
				t.Fatalf("%q: path %q", line, cmd.Path)
			}
		}
		for _, p := range cmd.Params {
			if p.Keyword == "" || p.Keyword != upperASCII(p.Keyword) || strings.ContainsAny(p.Value, " =\x00") {
				t.Fatalf("%q: parameter %+v", line, p)
			}
		}
		if cmd.Size < 0 {
			t.Fatalf("%q: negative size", line)
		}
	})
}

// restuff is the sender's side of RFC 5321 §4.5.2: CRLF line endings, a dot
// doubled at the start of a line, and the terminating dot line.
func restuff(out []byte) []byte {
	var b bytes.Buffer
	for _, line := range bytes.SplitAfter(out, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		if line[0] == '.' {
			b.WriteByte('.')
		}
		b.Write(bytes.TrimSuffix(line, []byte("\n")))
		b.WriteString("\r\n")
	}
	b.WriteString(".\r\n")
	return b.Bytes()
}

// canonicalStuffing reports whether every data line that starts with a dot
// is stuffed (starts with "..") or is the terminating ".".
func canonicalStuffing(data []byte) bool {
	for _, line := range bytes.SplitAfter(data, []byte("\r\n")) {
		if len(line) > 0 && line[0] == '.' && !bytes.HasPrefix(line, []byte("..")) && string(line) != ".\r\n" {
			return false
		}
	}
	return true
}

func FuzzDataReader(f *testing.F) {
	for _, s := range []string{
		".\r\n", "a\r\n.\r\n", "..\r\n.\r\n", "a\n.\n", "a\r\n.\n", "a\n.\r\n", "a\r.\r",
		"a\r\r\n.\r\r\n", "x\x00\r\n.\r\nQUIT\r\n", strings.Repeat("y", 40) + "\r\n.\r\n",
	} {
		f.Add([]byte(s), uint16(0), uint8(7))
		f.Add([]byte(s), uint16(3), uint8(1))
	}
	f.Fuzz(func(t *testing.T, in []byte, limit uint16, bufSize uint8) {
		src := bytes.NewReader(in)
		br := bufio.NewReaderSize(src, 16)
		dr := NewDataReader(br, int64(limit))
		var out bytes.Buffer
		p := make([]byte, int(bufSize)+1)
		var err error
		for i := 0; ; i++ {
			if i > 2*len(in)+10 {
				t.Fatalf("%q: reader does not finish", in)
			}
			var n int
			n, err = dr.Read(p)
			out.Write(p[:n])
			if err != nil {
				break
			}
		}
		consumed := in[:len(in)-src.Len()-br.Buffered()]
		if bytes.IndexByte(out.Bytes(), '\r') >= 0 {
			t.Fatalf("%q: output %q has CR", in, out.Bytes())
		}
		switch err {
		case io.EOF:
			if limit > 0 && out.Len() > int(limit) {
				t.Fatalf("%q: %d octets past limit %d without ErrTooBig", in, out.Len(), limit)
			}
			again := restuff(out.Bytes())
			// A sender may stuff a dot that needed none (".a" reads as
			// "a"); for canonical input the round trip is exact.
			if canonicalStuffing(consumed) && !bytes.Equal(again, consumed) {
				t.Fatalf("%q: output %q restuffs to %q, consumed %q", in, out.Bytes(), again, consumed)
			}
			// Reading the restuffed form gives the same content back.
			out2, err2, rest := readData(string(again)+"NOOP\r\n", 0, 4096)
			if err2 != io.EOF || out2 != out.String() || rest != "NOOP\r\n" {
				t.Fatalf("%q: reread of %q gave %q, %v, rest %q", in, again, out2, err2, rest)
			}
		case ErrTooBig:
			if limit == 0 || out.Len() > int(limit) {
				t.Fatalf("%q: ErrTooBig with limit %d after %d octets", in, limit, out.Len())
			}
			if !bytes.HasSuffix(consumed, []byte("\r\n.\r\n")) {
				t.Fatalf("%q: ErrTooBig before the end of data; consumed %q", in, consumed)
			}
		case ErrBareCR, ErrBareLF, io.ErrUnexpectedEOF:
		default:
			t.Fatalf("%q: unexpected error %v", in, err)
		}
	})
}

// memConn feeds a session from memory, one line per read, as a client that
// waits for each reply would; deadlines are ignored because reads never
// block.
type memConn struct {
	mu  sync.Mutex
	in  []byte
	out bytes.Buffer
}

func (c *memConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.in) == 0 {
		return 0, io.EOF
	}
	n := len(c.in)
	if i := bytes.IndexByte(c.in, '\n'); i >= 0 {
		n = i + 1
	}
	n = copy(p, c.in[:n])
	c.in = c.in[n:]
	return n, nil
}

func (c *memConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.Write(p)
}

func (c *memConn) Close() error                       { return nil }
func (c *memConn) LocalAddr() net.Addr                { return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 25), Port: 25} }
func (c *memConn) RemoteAddr() net.Addr               { return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 4321} }
func (c *memConn) SetDeadline(t time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(t time.Time) error { return nil }

var replyLine = regexp.MustCompile(`^[2-5]\d\d[ -]`)

func FuzzSession(f *testing.F) {
	for _, s := range []string{
		"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nSubject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n",
		"EHLO x\r\nMAIL FROM:<a@b> SIZE=10 BODY=8BITMIME SMTPUTF8\r\nRCPT TO:<c@d>\r\nBDAT 5\r\nab\r\ncBDAT 0 LAST\r\nQUIT\r\n",
		"HELO x\r\nMAIL FROM:<>\r\nRCPT TO:<postmaster>\r\nDATA\r\nhi\n.\nMAIL FROM:<e@f>\r\n",
		"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 99999999999999999999\r\n",
		"EHLO x\r\nRSET\r\nNOOP\r\nVRFY a\r\nEXPN b\r\nHELP\r\nSTARTTLS\r\nAUTH PLAIN\r\nXXX\r\n",
		"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<unknown@d>\r\nDATA\r\nBDAT 1 LAST\r\nx",
		"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nReceived: a\r\nReceived: b\r\nReceived: c\r\n\r\n.\r\n",
	} {
		f.Add([]byte(s))
	}
	lg := maillog.New("posthorn", "smtpd", "stderr")
	lg.SetOutput(io.Discard)
	f.Fuzz(func(t *testing.T, in []byte) {
		be := newBackend()
		be.rejectTo["unknown@d"] = &Reply{Code: 550, Enhanced: "5.1.1", Text: "unknown"}
		srv := New(Config{
			Hostname: "mx.example.test", MaxMessageSize: 2000, MaxRecipients: 5, HardErrorLimit: 10,
			JunkCommandLimit: 10, LineLengthLimit: 512, HeaderSizeLimit: 200, HopCountLimit: 2,
			Timeout: time.Second, Log: lg,
		}, be)
		c := &memConn{in: in}
		done := make(chan struct{})
		go func() { srv.ServeConn(c); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("session on %q did not end", in)
		}
		out := c.out.String()
		if !strings.HasSuffix(out, "\r\n") {
			t.Fatalf("%q: output %q does not end in CRLF", in, out)
		}
		for _, l := range strings.Split(strings.TrimSuffix(out, "\r\n"), "\r\n") {
			if !replyLine.MatchString(l) || strings.ContainsAny(l, "\r\n\x00") {
				t.Fatalf("%q: bad reply line %q in %q", in, l, out)
			}
		}
		for _, m := range be.begun {
			if m.committed == m.aborted {
				t.Fatalf("%q: message committed=%v aborted=%v", in, m.committed, m.aborted)
			}
			if m.committed && strings.Contains(m.data.String(), "\r") {
				t.Fatalf("%q: CR in committed content %q", in, m.data.String())
			}
		}
	})
}
