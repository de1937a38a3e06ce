package server

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posthorn/posthorn/pkg/address"
	"github.com/posthorn/posthorn/pkg/maillog"
)

// fakeBackend keeps everything in memory and records every call.
type fakeBackend struct {
	mu         sync.Mutex
	senders    []string // CheckSender calls
	rcpts      []string // CheckRecipient calls
	begun      []*fakeMessage
	rejectFrom map[string]*Reply
	rejectTo   map[string]*Reply
	beginReply *Reply
	commitErr  error
	writeErr   error
	writeHook  func(m *fakeMessage) // called after each Write
	next       int
}

type fakeMessage struct {
	b         *fakeBackend
	id        string
	env       *Envelope
	data      bytes.Buffer
	committed bool
	aborted   bool
	rcpts     []Recipient // at Commit
}

func newBackend() *fakeBackend {
	return &fakeBackend{rejectFrom: map[string]*Reply{}, rejectTo: map[string]*Reply{}}
}

func (b *fakeBackend) CheckSender(c *ConnInfo, from address.Mailbox) *Reply {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.senders = append(b.senders, from.String())
	return b.rejectFrom[from.String()]
}

func (b *fakeBackend) CheckRecipient(c *ConnInfo, env *Envelope, rcpt address.Mailbox) *Reply {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rcpts = append(b.rcpts, rcpt.String())
	return b.rejectTo[rcpt.String()]
}

func (b *fakeBackend) Begin(env *Envelope) (Message, *Reply) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.beginReply != nil {
		return nil, b.beginReply
	}
	b.next++
	m := &fakeMessage{b: b, id: fmt.Sprintf("%011X", 0xA0000+b.next), env: env}
	b.begun = append(b.begun, m)
	return m, nil
}

func (m *fakeMessage) QueueID() string { return m.id }

func (m *fakeMessage) Write(p []byte) (int, error) {
	m.b.mu.Lock()
	if m.committed || m.aborted {
		m.b.mu.Unlock()
		panic("write after commit or abort")
	}
	err := m.b.writeErr
	if err == nil {
		m.data.Write(p)
	}
	hook := m.b.writeHook
	m.b.mu.Unlock()
	if hook != nil {
		hook(m)
	}
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

func (m *fakeMessage) Commit() error {
	m.b.mu.Lock()
	defer m.b.mu.Unlock()
	if m.committed || m.aborted {
		panic("double commit or commit after abort")
	}
	if m.b.commitErr != nil {
		return m.b.commitErr
	}
	m.committed = true
	m.rcpts = append([]Recipient(nil), m.env.Rcpts...)
	return nil
}

func (m *fakeMessage) Abort() {
	m.b.mu.Lock()
	defer m.b.mu.Unlock()
	if m.committed {
		panic("abort after commit")
	}
	m.aborted = true
}

func (b *fakeBackend) committed() []*fakeMessage {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []*fakeMessage
	for _, m := range b.begun {
		if m.committed {
			out = append(out, m)
		}
	}
	return out
}

func (b *fakeBackend) snapshot() (senders, rcpts []string, begun int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.senders...), append([]string(nil), b.rcpts...), len(b.begun)
}

// allAborted reports whether every message begun was aborted.
func (b *fakeBackend) allAborted() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range b.begun {
		if !m.aborted || m.committed {
			return false
		}
	}
	return true
}

// content returns what was written after the Received: field.
func (m *fakeMessage) content() string {
	m.b.mu.Lock()
	defer m.b.mu.Unlock()
	s := m.data.String()
	_, rest, ok := strings.Cut(s, "\n")
	for ok && strings.HasPrefix(rest, "\t") {
		_, rest, ok = strings.Cut(rest, "\n")
	}
	return rest
}

func (m *fakeMessage) raw() string {
	m.b.mu.Lock()
	defer m.b.mu.Unlock()
	return m.data.String()
}

// syncBuffer collects log output written from session goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

type testServer struct {
	t     *testing.T
	srv   *Server
	be    *fakeBackend
	logs  *syncBuffer
	addr  string
	serve chan error
}

func testConfig() Config {
	return Config{
		Hostname:       "mx.example.test",
		Banner:         "mx.example.test ESMTP posthorn",
		MaxMessageSize: 10240000,
		Timeout:        10 * time.Second,
	}
}

// startServer runs Serve on a loopback listener; cleanup shuts it down.
func startServer(t *testing.T, cfg Config, be *fakeBackend) *testServer {
	t.Helper()
	return startServerMode(t, cfg, be, ModeMX)
}

// startServerMode is startServer for a listener of the given service.
func startServerMode(t *testing.T, cfg Config, be *fakeBackend, mode Mode) *testServer {
	t.Helper()
	logs := &syncBuffer{}
	lg := maillog.New("posthorn", "smtpd", "stderr")
	lg.SetOutput(logs)
	cfg.Log = lg
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{t: t, srv: New(cfg, be), be: be, logs: logs, addr: l.Addr().String(), serve: make(chan error, 1)}
	go func() { ts.serve <- ts.srv.ServeMode(l, mode) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ts.srv.Shutdown(ctx)
		select {
		case err := <-ts.serve:
			if !errors.Is(err, ErrServerClosed) {
				t.Errorf("Serve returned %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Serve did not return after Shutdown")
		}
	})
	return ts
}

// waitLog waits for a log line containing s.
func (ts *testServer) waitLog(s string) {
	ts.t.Helper()
	waitFor(ts.t, "log line "+s, func() bool { return strings.Contains(ts.logs.String(), s) })
}

type client struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func (ts *testServer) dial() *client {
	ts.t.Helper()
	c, err := net.Dial("tcp", ts.addr)
	if err != nil {
		ts.t.Fatal(err)
	}
	ts.t.Cleanup(func() { c.Close() })
	return &client{t: ts.t, conn: c, r: bufio.NewReader(c)}
}

// greet dials and reads the greeting.
func (ts *testServer) greet() *client {
	ts.t.Helper()
	c := ts.dial()
	c.expect("220 mx.example.test ESMTP posthorn")
	return c
}

// session dials, greets and says EHLO.
func (ts *testServer) session() *client {
	ts.t.Helper()
	c := ts.greet()
	c.cmd("EHLO client.example", "250-mx.example.test")
	return c
}

func (c *client) send(s string) {
	c.t.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatalf("write %q: %v", s, err)
	}
}

// readReply reads one reply, all lines of it, joined by "\n".
func (c *client) readReply() (string, error) {
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var lines []string
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			return strings.Join(append(lines, l), "\n"), err
		}
		if !strings.HasSuffix(l, "\r\n") {
			return "", fmt.Errorf("reply line %q without CRLF", l)
		}
		l = strings.TrimSuffix(l, "\r\n")
		lines = append(lines, l)
		if len(l) < 4 || l[3] != '-' {
			return strings.Join(lines, "\n"), nil
		}
	}
}

// expect reads a reply and checks that it starts with prefix.
func (c *client) expect(prefix string) string {
	c.t.Helper()
	r, err := c.readReply()
	if err != nil {
		c.t.Fatalf("reading reply (want %q): %v (got %q)", prefix, err, r)
	}
	if !strings.HasPrefix(r, prefix) {
		c.t.Fatalf("reply %q, want prefix %q", r, prefix)
	}
	return r
}

func (c *client) cmd(line, prefix string) string {
	c.t.Helper()
	c.send(line + "\r\n")
	return c.expect(prefix)
}

// expectClosed checks that the server closes the connection without
// sending anything more.
func (c *client) expectClosed() {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	rest, err := io.ReadAll(c.r)
	if err != nil && !errors.Is(err, net.ErrClosed) && !isReset(err) {
		c.t.Fatalf("waiting for close: %v", err)
	}
	if len(rest) > 0 {
		c.t.Fatalf("unexpected data before close: %q", rest)
	}
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

// transaction sends MAIL, RCPT, DATA and the body (already stuffed, without
// the final dot) and returns the final reply.
func (c *client) transaction(from, to, body string) string {
	c.t.Helper()
	c.cmd("MAIL FROM:<"+from+">", "250 2.1.0")
	c.cmd("RCPT TO:<"+to+">", "250 2.1.5")
	c.cmd("DATA", "354 ")
	c.send(body + ".\r\n")
	r, err := c.readReply()
	if err != nil {
		c.t.Fatalf("reply after data: %v", err)
	}
	return r
}
