package pop3

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posthorn/posthorn/pkg/certgen"
	"github.com/posthorn/posthorn/pkg/mailbox"
	"github.com/posthorn/posthorn/pkg/maillog"
)

// testLog collects what a maillog.Logger writes.
type testLog struct {
	mu  sync.Mutex
	buf strings.Builder
	l   *maillog.Logger
}

func newTestLog() *testLog {
	t := &testLog{l: maillog.New("posthorn", "pop3", "stderr")}
	t.l.SetOutput(t)
	return t
}

func (t *testLog) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.buf.Write(p)
}

// lines returns the messages logged, without the "posthorn/pop3[pid]: "
// prefix.
func (t *testLog) lines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for _, l := range strings.Split(strings.TrimSuffix(t.buf.String(), "\n"), "\n") {
		if _, msg, ok := strings.Cut(l, "]: "); ok {
			out = append(out, msg)
		}
	}
	return out
}

func (t *testLog) has(sub string) bool {
	for _, l := range t.lines() {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}

// fakeAuth knows a few users; names are canonicalised to lower case.
type fakeAuth struct {
	mu    sync.Mutex
	users map[string]string
	temp  bool
	calls []Credentials
}

func newFakeAuth() *fakeAuth {
	return &fakeAuth{users: map[string]string{"alice": "secret", "bob": "hunter2 with spaces"}}
}

func (f *fakeAuth) Authenticate(ctx context.Context, c Credentials) AuthResult {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, c)
	if f.temp {
		return AuthResult{Temp: true}
	}
	name := strings.ToLower(c.User)
	if pw, ok := f.users[name]; ok && pw == c.Password {
		return AuthResult{OK: true, User: name, Token: "token-" + name}
	}
	return AuthResult{}
}

func (f *fakeAuth) lastCall() Credentials {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		return Credentials{}
	}
	return f.calls[len(f.calls)-1]
}

// addrConn gives a connection chosen addresses (a pipe has none).
type addrConn struct {
	net.Conn
	remote, local net.Addr
}

func (c addrConn) RemoteAddr() net.Addr { return c.remote }
func (c addrConn) LocalAddr() net.Addr  { return c.local }

var (
	remoteAddr = &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 40000}
	localAddr  = &net.TCPAddr{IP: net.ParseIP("192.0.2.25"), Port: 110}
)

// client is the test's side of a connection.
type client struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

func newClient(t testing.TB, c net.Conn) *client {
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return &client{t: t, c: c, br: bufio.NewReader(c)}
}

// send writes raw bytes in one write.
func (c *client) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, s); err != nil {
		c.t.Fatalf("write %q: %v", s, err)
	}
}

// sendAsync writes without waiting: a pipe write blocks until the server
// reads, and the server may close first.
func (c *client) sendAsync(s string) {
	go io.WriteString(c.c, s)
}

// line reads one response line without CRLF; it fails the test on EOF.
func (c *client) line() string {
	c.t.Helper()
	l, err := c.br.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, l)
	}
	if !strings.HasSuffix(l, "\r\n") {
		c.t.Fatalf("response line without CRLF: %q", l)
	}
	return strings.TrimSuffix(l, "\r\n")
}

// cmd sends a command and returns the first response line.
func (c *client) cmd(s string) string {
	c.t.Helper()
	c.send(s + "\r\n")
	return c.line()
}

// expect sends a command and checks the first response line.
func (c *client) expect(s, want string) {
	c.t.Helper()
	if got := c.cmd(s); got != want {
		c.t.Fatalf("%q: got %q, want %q", s, got, want)
	}
}

// expectPrefix is expect for a prefix.
func (c *client) expectPrefix(s, want string) string {
	c.t.Helper()
	got := c.cmd(s)
	if !strings.HasPrefix(got, want) {
		c.t.Fatalf("%q: got %q, want %q...", s, got, want)
	}
	return got
}

// multi reads the lines of a multi-line body up to the "." line, removing
// the byte-stuffing as a client does (RFC 1939 §3).
func (c *client) multi() []string {
	c.t.Helper()
	var out []string
	for {
		l := c.line()
		if l == "." {
			return out
		}
		out = append(out, strings.TrimPrefix(l, "."))
	}
}

// raw reads the rest of a multi-line body as it is on the wire, including
// the terminating ".\r\n".
func (c *client) raw() string {
	c.t.Helper()
	var b strings.Builder
	for {
		l, err := c.br.ReadString('\n')
		if err != nil {
			c.t.Fatalf("read: %v", err)
		}
		b.WriteString(l)
		if l == ".\r\n" {
			return b.String()
		}
	}
}

// closed checks that the server closes the connection with nothing more
// to say.
func (c *client) closed() {
	c.t.Helper()
	if l, err := c.br.ReadString('\n'); err != io.EOF {
		c.t.Fatalf("connection still open: %q %v", l, err)
	}
}

// tlsFiles makes a self-signed certificate for "localhost" and returns the
// server configuration, the certificate's path, and a pool trusting it.
func tlsFiles(t testing.TB) (*tls.Config, string, *x509.CertPool) {
	t.Helper()
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := certgen.Ensure(cert, key, "localhost", -1, -1); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	pemData, err := os.ReadFile(cert)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if b, _ := pem.Decode(pemData); b == nil || !pool.AppendCertsFromPEM(pemData) {
		t.Fatal("certificate not usable")
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}}, cert, pool
}

func clientTLS(pool *x509.CertPool) *tls.Config {
	return &tls.Config{RootCAs: pool, ServerName: "localhost"}
}

// newStore opens a Store on a new Maildir.
func newStore(t testing.TB) (*mailbox.Store, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "Maildir")
	s := openStore(t, dir)
	return s, dir
}

func openStore(t testing.TB, dir string) *mailbox.Store {
	t.Helper()
	s, err := mailbox.OpenStore(dir, mailbox.Options{Hostname: "pop3.test", Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// fill appends messages to the INBOX and returns their UIDs.
func fill(t testing.TB, s *mailbox.Store, msgs ...string) []uint32 {
	t.Helper()
	mb, err := s.Open("INBOX")
	if err != nil {
		t.Fatal(err)
	}
	var uids []uint32
	for _, m := range msgs {
		uid, err := mb.Append(strings.NewReader(m), nil, time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC))
		if err != nil {
			t.Fatal(err)
		}
		uids = append(uids, uid)
	}
	return uids
}

// inbox returns the INBOX's UIDs as a fresh Store sees them.
func inbox(t testing.TB, dir string) []uint32 {
	t.Helper()
	s, err := mailbox.OpenStore(dir, mailbox.Options{Hostname: "pop3.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mb, err := s.Open("INBOX")
	if err != nil {
		t.Fatal(err)
	}
	return mb.UIDs()
}

// flagsOf returns a message's flags as a fresh Store sees them.
func flagsOf(t testing.TB, dir string, uid uint32) []string {
	t.Helper()
	s, err := mailbox.OpenStore(dir, mailbox.Options{Hostname: "pop3.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mb, err := s.Open("INBOX")
	if err != nil {
		t.Fatal(err)
	}
	m, ok := mb.Message(uid)
	if !ok {
		t.Fatalf("UID %d not found", uid)
	}
	return m.Flags
}

// loginPipe runs ServeLogin on one end of a pipe that looks like a
// connection from remoteAddr (not loopback) and returns the other end
// and a channel with ServeLogin's result.
type loginResult struct {
	h   *Handoff
	err error
}

func loginPipe(t testing.TB, ctx context.Context, cfg LoginConfig, auth Authenticator, wrap func(net.Conn) net.Conn) (*client, chan loginResult) {
	t.Helper()
	srv, cli := net.Pipe()
	t.Cleanup(func() { srv.Close(); cli.Close() })
	var sc net.Conn = addrConn{srv, remoteAddr, localAddr}
	if wrap != nil {
		sc = wrap(sc)
	}
	res := make(chan loginResult, 1)
	go func() {
		h, err := ServeLogin(ctx, sc, cfg, auth)
		res <- loginResult{h, err}
	}()
	return newClient(t, cli), res
}

func wait[T any](t testing.TB, ch chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(20 * time.Second):
		t.Fatal("timed out waiting for the server")
	}
	panic("unreachable")
}

// sessionPipe runs ServeSession for user on store over a pipe, as if the
// login stage had handed over with buffered pipelined input.
func sessionPipe(t testing.TB, ctx context.Context, store *mailbox.Store, cfg SessionConfig, buffered string) (*client, chan error) {
	t.Helper()
	srv, cli := net.Pipe()
	t.Cleanup(func() { srv.Close(); cli.Close() })
	h := &Handoff{User: "alice", Method: "PLAIN", Conn: addrConn{srv, remoteAddr, localAddr}, Secured: true, Buffered: []byte(buffered)}
	done := make(chan error, 1)
	go func() { done <- ServeSession(ctx, h, store, cfg) }()
	return newClient(t, cli), done
}

// server listens on loopback and runs both stages for every connection,
// as a single-process pop3 daemon would.
type server struct {
	addr   string
	log    *testLog
	ended  chan error
	cancel context.CancelFunc
}

func startServer(t testing.TB, lcfg LoginConfig, scfg SessionConfig, auth Authenticator, storeFor func(user string) *mailbox.Store) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{addr: ln.Addr().String(), log: newTestLog(), ended: make(chan error, 100), cancel: cancel}
	lcfg.Log, scfg.Log = s.log.l, s.log.l
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); ln.Close(); wg.Wait() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				h, err := ServeLogin(ctx, c, lcfg, auth)
				if err != nil {
					s.ended <- err
					return
				}
				s.ended <- ServeSession(ctx, h, storeFor(h.User), scfg)
			}()
		}
	}()
	return s
}

func (s *server) dial(t testing.TB) *client {
	t.Helper()
	c, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return newClient(t, c)
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func plainIR(authz, user, pass string) string { return b64(authz + "\x00" + user + "\x00" + pass) }
