package imapstore

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/pkg/imap"
	"github.com/posthorn/posthorn/pkg/imap/server"
	"github.com/posthorn/posthorn/pkg/mailbox"
	"github.com/posthorn/posthorn/pkg/maildir"
	"github.com/posthorn/posthorn/pkg/maillog"
)

// golden is the shared set of messages with Dovecot's answers; it lies
// beside the repository, as in CI.
const golden = "../../../shared/testdata/imap-golden"

type backend struct{ store *mailbox.Store }

func (b backend) Login(ctx context.Context, c *imap.ConnInfo, authz, user, password string) (imap.User, error) {
	if user != "alice" || password != "secret" {
		return nil, imap.ErrAuthFailed
	}
	return New("alice", b.store, nil), nil
}

type env struct {
	t    *testing.T
	root string
	addr string
	w    *maildir.Writer
}

func newEnv(t *testing.T, opts mailbox.Options) *env {
	t.Helper()
	root := filepath.Join(t.TempDir(), "Maildir")
	st, err := mailbox.OpenStore(root, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	lg := maillog.New("posthorn", "imapstore-test", "stderr")
	lg.SetOutput(io.Discard)
	srv := server.New(server.Config{Backend: backend{st}, AuthFailureDelay: -1, Log: lg})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return &env{t: t, root: root, addr: l.Addr().String(), w: maildir.NewWriter("test.example")}
}

// deliver stores a message as local(8) does (LF line ends).
func (e *env) deliver(msg []byte) {
	e.t.Helper()
	if _, err := e.w.Deliver(e.root, nil, bytes.NewReader(bytes.ReplaceAll(msg, []byte("\r\n"), []byte("\n")))); err != nil {
		e.t.Fatal(err)
	}
}

type client struct {
	t   *testing.T
	c   net.Conn
	r   *bufio.Reader
	tag int
}

func (e *env) login() *client {
	e.t.Helper()
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	cl := &client{t: e.t, c: c, r: bufio.NewReader(c)}
	cl.line()
	cl.ok("LOGIN alice secret")
	return cl
}

// line reads one response line with its literals inline.
func (cl *client) line() string {
	cl.t.Helper()
	cl.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	for {
		l, err := cl.r.ReadString('\n')
		if err != nil {
			cl.t.Fatalf("read: %v (after %q)", err, b.String())
		}
		b.WriteString(l)
		m := regexp.MustCompile(`\{(\d+)\}\r\n$`).FindStringSubmatch(l)
		if m == nil {
			return b.String()
		}
		n, _ := strconv.Atoi(m[1])
		buf := make([]byte, n)
		if _, err := io.ReadFull(cl.r, buf); err != nil {
			cl.t.Fatal(err)
		}
		b.Write(buf)
	}
}

// do sends a command and returns its untagged responses and the tagged one.
func (cl *client) do(cmd string) ([]string, string) {
	cl.t.Helper()
	cl.tag++
	tag := "t" + strconv.Itoa(cl.tag)
	fmt.Fprintf(cl.c, "%s %s\r\n", tag, cmd)
	var untagged []string
	for {
		l := cl.line()
		if strings.HasPrefix(l, tag+" ") {
			return untagged, strings.TrimRight(l[len(tag)+1:], "\r\n")
		}
		untagged = append(untagged, l)
	}
}

func (cl *client) ok(cmd string) []string {
	cl.t.Helper()
	u, st := cl.do(cmd)
	if !strings.HasPrefix(st, "OK") {
		cl.t.Fatalf("%s: %s", cmd, st)
	}
	return u
}

// TestGolden delivers the 108 golden messages to a Maildir and requires
// FETCH through the whole stack (Maildir, cache, engine) to answer what
// Dovecot answered, both when parsing and from the cache.
func TestGolden(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(golden, "golden.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	e := newEnv(t, mailbox.Options{})
	for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		var g struct{ Message, Fetch string }
		if err := json.Unmarshal(line, &g); err != nil {
			t.Fatal(err)
		}
		msg, err := os.ReadFile(filepath.Join(golden, "messages", g.Message))
		if err != nil {
			t.Fatal(err)
		}
		e.deliver(msg)
		want = append(want, g.Fetch)
	}
	if len(want) != 108 {
		t.Fatalf("%d golden messages", len(want))
	}
	for pass := 0; pass < 2; pass++ {
		cl := e.login()
		cl.ok("EXAMINE INBOX")
		got := cl.ok("FETCH 1:* (RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY)")
		if len(got) != len(want) {
			t.Fatalf("pass %d: %d responses, want %d", pass, len(got), len(want))
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("pass %d message %d:\n got %q\nwant %q", pass, i+1, got[i], want[i])
			}
		}
	}
	// The second pass was served from posthorn.cache.
	st, _ := mailbox.OpenStore(e.root, mailbox.Options{})
	m, err := st.Open("INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m.Cache(1); !ok {
		t.Error("no cache entry for UID 1 after FETCH")
	}
}
