package pop3

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/pkg/mailbox"
)

// FuzzParseCommand: any line parses or is refused, and what parses is
// well-formed: a 3-4 letter keyword, no control characters anywhere,
// arguments that are the line's own words. Message numbers parse only
// from digits and never overflow.
func FuzzParseCommand(f *testing.F) {
	f.Fuzz(func(t *testing.T, line []byte) {
		c, err := parseCommand(line)
		if bytes.ContainsFunc(line, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			if err == nil {
				t.Fatalf("%q: control character accepted", line)
			}
			return
		}
		if err != nil {
			return
		}
		if len(c.name) < 3 || len(c.name) > 4 || strings.ToUpper(c.name) != c.name {
			t.Fatalf("%q: keyword %q", line, c.name)
		}
		for i := 0; i < len(c.name); i++ {
			if c.name[i] < 'A' || c.name[i] > 'Z' {
				t.Fatalf("%q: keyword %q", line, c.name)
			}
		}
		if !strings.EqualFold(string(line), c.name) && !strings.EqualFold(string(line), c.name+" "+c.rest) {
			t.Fatalf("%q: keyword %q rest %q", line, c.name, c.rest)
		}
		if strings.Join(c.args, " ") != strings.Join(strings.Fields(c.rest), " ") {
			t.Fatalf("%q: args %q", line, c.args)
		}
		for _, a := range c.args {
			n, ok := parseNumber(a)
			digits := a != "" && strings.Trim(a, "0123456789") == ""
			if ok != (digits && len(a) <= 64) {
				t.Fatalf("parseNumber(%q) ok=%v", a, ok)
			}
			if ok && n < 0 {
				t.Fatalf("parseNumber(%q) = %d", a, n)
			}
			if v, err := strconv.ParseInt(a, 10, 64); ok && err == nil && v < 1<<62 && v != n {
				t.Fatalf("parseNumber(%q) = %d, want %d", a, n, v)
			}
		}
	})
}

// readMultiline reads a multi-line response body as a client does
// (RFC 1939 §3): lines end with CRLF, the line "." ends the body, a
// leading "." is removed. It reports the bytes after the terminator.
func readMultiline(wire []byte) (body []byte, rest []byte, ok bool) {
	for len(wire) > 0 {
		i := bytes.Index(wire, []byte("\r\n"))
		if i < 0 {
			return nil, nil, false
		}
		line := wire[:i]
		wire = wire[i+2:]
		if string(line) == "." {
			return body, wire, true
		}
		line = bytes.TrimPrefix(line, []byte("."))
		body = append(body, line...)
		body = append(body, "\r\n"...)
	}
	return nil, nil, false
}

// FuzzDotStuff: whatever a message holds, RETR's body is read back by a
// client exactly as the message with CRLF line ends, and its terminator
// is the last thing sent (HOSTILE 48); TOP's is a prefix of it.
func FuzzDotStuff(f *testing.F) {
	f.Fuzz(func(t *testing.T, msg []byte, lines uint16) {
		// The writers keep a few bytes of state; long inputs only slow
		// the search down.
		if len(msg) > 512 {
			return
		}
		crlfMsg, err := io.ReadAll(mailbox.CRLFReader(bytes.NewReader(msg)))
		if err != nil {
			t.Fatal(err)
		}
		want := crlfMsg
		if len(want) > 0 && want[len(want)-1] != '\n' {
			want = append(bytes.Clone(want), "\r\n"...)
		}
		send := func(top bool) []byte {
			var out bytes.Buffer
			bw := bufio.NewWriterSize(&out, 64)
			dw := newDotWriter(bw)
			var w io.Writer = dw
			if top {
				w = &topFilter{w: dw, lines: int64(lines)}
			}
			// Small writes: the state must carry across them.
			_, err := io.CopyBuffer(w, mailbox.CRLFReader(bytes.NewReader(msg)), make([]byte, 1+int(lines%13)))
			if err != nil && !errors.Is(err, errTopDone) {
				t.Fatal(err)
			}
			if err := dw.Close(); err != nil {
				t.Fatal(err)
			}
			bw.Flush()
			if !top && dw.n != int64(len(crlfMsg)) {
				t.Fatalf("counted %d octets of %d", dw.n, len(crlfMsg))
			}
			return out.Bytes()
		}
		body, rest, ok := readMultiline(send(false))
		if !ok || len(rest) != 0 {
			t.Fatalf("RETR of %q: terminator missing or early (rest %q)", msg, rest)
		}
		if !bytes.Equal(body, want) {
			t.Fatalf("RETR of %q reads back as %q", msg, body)
		}
		body, rest, ok = readMultiline(send(true))
		if !ok || len(rest) != 0 {
			t.Fatalf("TOP of %q: terminator missing or early (rest %q)", msg, rest)
		}
		// RFC 1939 §7: the header lines, the blank line, then lines
		// lines of the body; all of it when there is no blank line.
		top := want
		ls := bytes.SplitAfter(want, []byte("\n"))
		for i, l := range ls {
			if string(l) == "\r\n" {
				top = bytes.Join(ls[:min(len(ls), i+1+int(lines))], nil)
				break
			}
		}
		if !bytes.Equal(body, top) {
			t.Fatalf("TOP %d of %q gives %q, want %q", lines, msg, body, top)
		}
	})
}

// scriptConn is a client that sends its input and then goes away: reads
// return the input in pieces and then io.EOF; writes are accepted and
// dropped. The engines run on it synchronously.
type scriptConn struct {
	in    []byte
	chunk int
}

func (c *scriptConn) Read(p []byte) (int, error) {
	if len(c.in) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), c.chunk)], c.in)
	c.in = c.in[n:]
	return n, nil
}

func (c *scriptConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *scriptConn) Close() error                     { return nil }
func (c *scriptConn) LocalAddr() net.Addr              { return localAddr }
func (c *scriptConn) RemoteAddr() net.Addr             { return remoteAddr }
func (c *scriptConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzLogin feeds arbitrary client input to the login stage: it never
// panics, ends when the input does, and hands over only for the one valid
// password.
func FuzzLogin(f *testing.F) {
	f.Fuzz(func(t *testing.T, input []byte) {
		cfg := LoginConfig{Log: newTestLog().l, AllowPlaintext: func(net.Conn) bool { return true }}
		auth := newFakeAuth()
		conn := &scriptConn{in: input, chunk: 1 + len(input)%17}
		h, err := ServeLogin(context.Background(), conn, cfg, auth)
		if h == nil {
			if err == nil {
				t.Fatalf("no handoff and no error after %q", input)
			}
			return
		}
		cr := auth.lastCall()
		if err != nil || h.User != "alice" || !strings.EqualFold(cr.User, "alice") || cr.Password != "secret" {
			t.Fatalf("handoff %+v for %+v after %q", h, cr, input)
		}
		// What the handoff carries was sent after the login.
		if !bytes.HasSuffix(input[:len(input)-len(conn.in)], h.Buffered) {
			t.Fatalf("buffered %q is not what followed the login in %q", h.Buffered, input)
		}
	})
}

// FuzzSession feeds arbitrary client input to the transaction stage on a
// real Maildir: it never panics, ends when the input does, and deletes
// messages only if a QUIT was sent (HOSTILE 46).
func FuzzSession(f *testing.F) {
	tmpl := f.TempDir()
	s, err := mailbox.OpenStore(tmpl, mailbox.Options{Hostname: "pop3.test"})
	if err != nil {
		f.Fatal(err)
	}
	fill(f, s, msgDots, msgLF, msgNoEOL)
	s.Close()
	f.Fuzz(func(t *testing.T, input []byte) {
		dir := filepath.Join(t.TempDir(), "Maildir")
		if err := os.CopyFS(dir, os.DirFS(tmpl)); err != nil {
			t.Fatal(err)
		}
		store, err := mailbox.OpenStore(dir, mailbox.Options{Hostname: "pop3.test"})
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		h := &Handoff{User: "alice", Conn: &scriptConn{in: input, chunk: 1 + len(input)%17}}
		err = ServeSession(context.Background(), h, store, SessionConfig{Log: newTestLog().l})
		quit := false
		for _, l := range strings.Split(string(input), "\n") {
			if strings.EqualFold(strings.TrimSpace(l), "QUIT") || strings.HasPrefix(strings.ToUpper(l), "QUIT ") {
				quit = true
			}
		}
		if err == nil && !quit {
			t.Fatalf("session ended well without QUIT: %q", input)
		}
		if n := len(inbox(t, dir)); n != 3 && !quit {
			t.Fatalf("%d messages left without QUIT after %q", n, input)
		}
	})
}
