package login

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posthorn/posthorn/pkg/certgen"
	"github.com/posthorn/posthorn/pkg/maillog"
)

// The test binary doubles as the worker: "login.test worker".
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == WorkerArg {
		err := RunWorker(context.Background(), func(ctx context.Context, c net.Conn, s Session) {
			fmt.Fprintf(c, "hello %s %s pid=%d uid=%d\n", s.User, s.Maildir, os.Getpid(), os.Getuid())
			sc := bufio.NewScanner(c)
			for sc.Scan() {
				fmt.Fprintf(c, "echo %s\n", sc.Text())
			}
		}, 400*time.Millisecond)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type fixture struct {
	sock   string
	mu     sync.Mutex
	tokens map[string]string
}

func (f *fixture) issue(tok, user string) {
	f.mu.Lock()
	f.tokens[tok] = user
	f.mu.Unlock()
}

func start(t *testing.T) *fixture { t.Helper(); return startWith(t, 0) }

// startWith runs a dispatcher with the handoff timeout given (0: default).
func startWith(t *testing.T, timeout time.Duration) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{sock: filepath.Join(dir, "imapd"), tokens: map[string]string{"good": "alice@example.test"}}
	l, err := net.Listen("unix", f.sock)
	if err != nil {
		t.Fatal(err)
	}
	log := maillog.New("posthorn", "imapd", "stderr")
	log.SetOutput(&strings.Builder{})
	d := &Dispatcher{Service: "imap", Log: log, Timeout: timeout,
		Resolve: func(ctx context.Context, tok string) (string, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			if u, ok := f.tokens[tok]; ok {
				delete(f.tokens, tok) // one-time
				return u, nil
			}
			return "", errors.New("unknown token")
		},
		Lookup: func(user string) (Mailbox, error) {
			return Mailbox{UID: os.Getuid(), GID: os.Getgid(), Maildir: "/mail/" + user}, nil
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go d.Serve(ctx, l)
	return f
}

// login accepts one TCP client and hands it over with token, wrapping the
// server side in TLS when cfg is set.
func login(t *testing.T, f *fixture, token string, cfg *tls.Config, buffered string) (client net.Conn, handoffErr chan error) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	handoffErr = make(chan error, 1)
	go func() {
		c, err := l.Accept()
		l.Close()
		if err != nil {
			handoffErr <- err
			return
		}
		if cfg != nil {
			tc := tls.Server(c, cfg)
			if err := tc.Handshake(); err != nil {
				handoffErr <- err
				return
			}
			c = tc
		}
		handoffErr <- Handoff(context.Background(), f.sock, token, c, Session{Remote: c.RemoteAddr().String(),
			Local: c.LocalAddr().String(), Secured: true, Buffered: []byte(buffered)}, nil)
	}()
	if cfg != nil {
		client, err = tls.Dial("tcp", l.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	} else {
		client, err = net.Dial("tcp", l.Addr().String())
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return client, handoffErr
}

func TestPlainHandoffReachesTheOwnersWorker(t *testing.T) {
	f := start(t)
	c, herr := login(t, f, "good", nil, "first line\n")
	if err := <-herr; err != nil {
		t.Fatalf("handoff: %v", err)
	}
	br := bufio.NewReader(c)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	greet, _ := br.ReadString('\n')
	if !strings.HasPrefix(greet, "hello alice@example.test /mail/alice@example.test pid=") || strings.Contains(greet, fmt.Sprintf("pid=%d ", os.Getpid())) {
		t.Fatalf("greeting %q", greet)
	}
	// What the login stage had read ahead comes first.
	if l, _ := br.ReadString('\n'); l != "echo first line\n" {
		t.Fatalf("buffered input: %q", l)
	}
	fmt.Fprintf(c, "ping\n")
	if l, _ := br.ReadString('\n'); l != "echo ping\n" {
		t.Fatalf("echo %q", l)
	}
	// A second session of the same owner goes to the same worker process.
	f.issue("again", "alice@example.test")
	c2, herr2 := login(t, f, "again", nil, "")
	if err := <-herr2; err != nil {
		t.Fatal(err)
	}
	c2.SetDeadline(time.Now().Add(10 * time.Second))
	greet2, _ := bufio.NewReader(c2).ReadString('\n')
	pid := func(s string) string { return strings.Fields(s[strings.Index(s, "pid="):])[0] }
	if pid(greet) != pid(greet2) {
		t.Fatalf("two sessions of one owner in two workers: %q %q", greet, greet2)
	}
}

func TestTokenIsRequiredAndSingleUse(t *testing.T) {
	f := start(t)
	_, herr := login(t, f, "forged", nil, "")
	if err := <-herr; err == nil || !strings.Contains(err.Error(), "token not accepted") {
		t.Fatalf("forged token: %v", err)
	}
	c, herr := login(t, f, "good", nil, "")
	if err := <-herr; err != nil {
		t.Fatal(err)
	}
	c.Close()
	_, herr = login(t, f, "good", nil, "")
	if err := <-herr; err == nil {
		t.Fatal("a token was accepted twice")
	}
}

func TestTLSSessionIsRelayed(t *testing.T) {
	f := start(t)
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	if err := certgen.Ensure(cert, key, "localhost", -1, -1); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	c, herr := login(t, f, "good", &tls.Config{Certificates: []tls.Certificate{pair}}, "")
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	if greet, _ := br.ReadString('\n'); !strings.HasPrefix(greet, "hello alice@example.test") {
		t.Fatalf("greeting over TLS %q", greet)
	}
	fmt.Fprintf(c, "secret\n")
	if l, _ := br.ReadString('\n'); l != "echo secret\n" {
		t.Fatalf("echo over TLS %q", l)
	}
	c.Close()
	select {
	case err := <-herr:
		if err != nil {
			t.Fatalf("relay: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the relay did not end when the client closed")
	}
}

func TestIdleWorkerExitsAndANewOneStarts(t *testing.T) {
	f := start(t)
	c, herr := login(t, f, "good", nil, "")
	if err := <-herr; err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	greet, _ := bufio.NewReader(c).ReadString('\n')
	c.Close()
	pid := strings.Fields(greet[strings.Index(greet, "pid="):])[0][4:]
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat("/proc/" + pid + "/status"); err != nil {
			break
		}
		if st, _ := os.ReadFile("/proc/" + pid + "/stat"); strings.Contains(string(st), ") Z ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("idle worker %s did not exit", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	f.issue("later", "alice@example.test")
	c2, herr := login(t, f, "later", nil, "")
	if err := <-herr; err != nil {
		t.Fatal(err)
	}
	c2.SetDeadline(time.Now().Add(10 * time.Second))
	if g, _ := bufio.NewReader(c2).ReadString('\n'); !strings.HasPrefix(g, "hello alice") {
		t.Fatalf("after the idle exit: %q", g)
	}
}

// When no dispatcher takes the session, the client hears a temporary
// failure from the login process instead of a dropped connection.
func TestHandoffRefusedAnswers(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	done := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			done <- err
			return
		}
		done <- Handoff(context.Background(), filepath.Join(t.TempDir(), "no-such-socket"), "token", c,
			Session{Remote: c.RemoteAddr().String(), Local: c.LocalAddr().String()},
			func(c net.Conn) { io.WriteString(c, "a NO [UNAVAILABLE] try later\r\n") })
	}()
	client, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	client.SetDeadline(time.Now().Add(10 * time.Second))
	got, _ := io.ReadAll(client)
	if string(got) != "a NO [UNAVAILABLE] try later\r\n" {
		t.Fatalf("client read %q", got)
	}
	if err := <-done; err == nil {
		t.Fatal("Handoff to a missing dispatcher succeeded")
	}
}

// A worker lives on for as long as it has sessions, however long ago the
// last one was handed over: a second session goes to the same process.
func TestWorkerOutlivesTheHandoffTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	f := startWith(t, timeout)
	c, herr := login(t, f, "good", nil, "")
	if err := <-herr; err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	greet, _ := br.ReadString('\n')
	time.Sleep(3 * timeout) // the session stays open, so the worker is not idle
	fmt.Fprintf(c, "still there\n")
	if l, _ := br.ReadString('\n'); l != "echo still there\n" {
		t.Fatalf("first session after the wait: %q", l)
	}
	f.issue("second", "alice@example.test")
	c2, herr2 := login(t, f, "second", nil, "")
	if err := <-herr2; err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.SetDeadline(time.Now().Add(10 * time.Second))
	greet2, _ := bufio.NewReader(c2).ReadString('\n')
	pid := func(s string) string { return strings.Fields(s[strings.Index(s, "pid="):])[0] }
	if pid(greet) != pid(greet2) {
		t.Fatalf("a second session after %v went to a new worker: %q, then %q", 3*timeout, greet, greet2)
	}
}
