package server

import (
	"bufio"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/pkg/imap/memstore"
	"github.com/posthorn/posthorn/pkg/maillog"
)

// testServer runs a server on a loopback listener with an in-memory store.
type testServer struct {
	t    *testing.T
	srv  *Server
	be   *memstore.Backend
	user *memstore.User
	addr string
}

func quietLog() *maillog.Logger {
	l := maillog.New("posthorn", "imapd-test", "stderr")
	l.SetOutput(io.Discard)
	return l
}

func newTestServer(t *testing.T, mod func(*Config)) *testServer {
	t.Helper()
	be := memstore.New()
	u := be.AddUser("alice", "secret")
	cfg := Config{Backend: be, AuthFailureDelay: -1, Log: quietLog()}
	if mod != nil {
		mod(&cfg)
	}
	srv := New(cfg)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	ts := &testServer{t: t, srv: srv, be: be, user: u, addr: l.Addr().String()}
	t.Cleanup(func() { srv.Close() })
	return ts
}

// tconn is a raw IMAP client for tests.
type tconn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func (ts *testServer) dial() *tconn {
	ts.t.Helper()
	c, err := net.Dial("tcp", ts.addr)
	if err != nil {
		ts.t.Fatal(err)
	}
	tc := &tconn{t: ts.t, c: c, r: bufio.NewReader(c)}
	ts.t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if g := tc.line(); !strings.HasPrefix(g, "* OK [CAPABILITY ") {
		ts.t.Fatalf("greeting %q", g)
	}
	return tc
}

// login dials and logs in as alice.
func (ts *testServer) login() *tconn {
	c := ts.dial()
	c.ok("L1 LOGIN alice secret")
	return c
}

// loginSelect dials, logs in and selects INBOX.
func (ts *testServer) loginSelect() *tconn {
	c := ts.login()
	c.ok("S1 SELECT INBOX")
	return c
}

func (c *tconn) write(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, s); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// line reads one response line, with any literals inlined.
func (c *tconn) line() string {
	c.t.Helper()
	var b strings.Builder
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("read: %v (after %q)", err, b.String()+l)
		}
		b.WriteString(l)
		l = strings.TrimSuffix(l, "\r\n")
		if !strings.HasSuffix(l, "}") {
			break
		}
		i := strings.LastIndexByte(l, '{')
		if i < 0 {
			break
		}
		n, err := strconv.Atoi(l[i+1 : len(l)-1])
		if err != nil {
			break
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(c.r, buf); err != nil {
			c.t.Fatalf("literal: %v", err)
		}
		b.Write(buf)
	}
	return strings.TrimSuffix(b.String(), "\r\n")
}

// cmd sends a tagged command and returns every line up to and including
// the tagged reply.
func (c *tconn) cmd(line string) []string {
	c.t.Helper()
	tag, _, _ := strings.Cut(line, " ")
	c.write(line + "\r\n")
	return c.until(tag)
}

func (c *tconn) until(tag string) []string {
	c.t.Helper()
	var out []string
	for {
		l := c.line()
		out = append(out, l)
		if strings.HasPrefix(l, tag+" ") {
			return out
		}
	}
}

// ok runs a command that must succeed and returns its untagged lines.
func (c *tconn) ok(line string) []string {
	c.t.Helper()
	out := c.cmd(line)
	tag, _, _ := strings.Cut(line, " ")
	if !strings.HasPrefix(out[len(out)-1], tag+" OK") {
		c.t.Fatalf("%s: %q", line, out)
	}
	return out[:len(out)-1]
}

// status runs a command and checks its tagged status (OK, NO, BAD) and
// that the tagged line contains want.
func (c *tconn) expect(line, status, want string) []string {
	c.t.Helper()
	out := c.cmd(line)
	tag, _, _ := strings.Cut(line, " ")
	last := out[len(out)-1]
	if !strings.HasPrefix(last, tag+" "+status) || !strings.Contains(last, want) {
		c.t.Fatalf("%s: got %q, want %s %q", line, out, status, want)
	}
	return out
}

// has reports whether some line contains s.
func has(lines []string, s string) bool {
	for _, l := range lines {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

func mustHave(t *testing.T, lines []string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !has(lines, w) {
			t.Fatalf("missing %q in %q", w, lines)
		}
	}
}

func mustNotHave(t *testing.T, lines []string, bad ...string) {
	t.Helper()
	for _, w := range bad {
		if has(lines, w) {
			t.Fatalf("unexpected %q in %q", w, lines)
		}
	}
}

// closed reports whether the server closed the connection.
func (c *tconn) closed() bool {
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, err := c.r.ReadString('\n')
		if err != nil {
			return err == io.EOF || strings.Contains(err.Error(), "reset")
		}
	}
}

const simpleMsg = "From: Bob <bob@example.org>\r\nTo: alice@example.test\r\nSubject: hello there\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <1@example.org>\r\n\r\nHi Alice,\r\nthis is the body.\r\n"

const multipartMsg = "From: Carol <carol@example.net>\r\nTo: alice@example.test\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nDate: Tue, 2 Jan 2024 11:00:00 +0100\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XYZ\"\r\n\r\npreamble\r\n--XYZ\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nK=C3=A4se und Brot\r\n--XYZ\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"a.bin\"\r\n\r\nAAECAwQ=\r\n--XYZ\r\nContent-Type: message/rfc822\r\n\r\nFrom: Dave <dave@example.com>\r\nSubject: inner\r\n\r\ninner body\r\n--XYZ--\r\n"
