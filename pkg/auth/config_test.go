package auth

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/pkg/config"
)

// The [auth] settings: defaults, the checks that refuse values that
// cannot work, and relative paths.
func TestAuthSettings(t *testing.T) {
	d := config.Defaults().Auth
	if !d.SystemUsers || len(d.PasswdFiles) != 0 || d.FirstValidUID != 1000 || d.FailureDelay.D() != 2*time.Second ||
		d.MaxFailureDelay.D() != 15*time.Second || d.FailureWindow.D() != 10*time.Minute ||
		d.ClientFailureLimit != 20 || d.UserFailureLimit != 10 {
		t.Fatalf("defaults %+v", d)
	}
	for _, c := range []struct {
		name  string
		tweak func(*config.Auth)
	}{
		{"failure_delay above max_failure_delay", func(a *config.Auth) { a.FailureDelay = a.MaxFailureDelay + 1 }},
		{"max_failure_delay above a minute", func(a *config.Auth) {
			a.MaxFailureDelay = config.Duration(config.MaxAuthFailureDelay + time.Second)
		}},
		{"failure_window zero", func(a *config.Auth) { a.FailureWindow = 0 }},
		{"client_failure_limit zero", func(a *config.Auth) { a.ClientFailureLimit = 0 }},
		{"user_failure_limit negative", func(a *config.Auth) { a.UserFailureLimit = -1 }},
		{"empty passwd file", func(a *config.Auth) { a.PasswdFiles = []string{""} }},
	} {
		cfg := config.Defaults()
		c.tweak(&cfg.Auth)
		if err := cfg.Validate(); err == nil {
			t.Errorf("%s: accepted", c.name)
		}
	}
	cfg := config.Defaults()
	cfg.Auth.MaxFailureDelay = config.Duration(config.MaxAuthFailureDelay)
	if err := cfg.Validate(); err != nil {
		t.Errorf("max_failure_delay of exactly a minute: %v", err)
	}

	dir := t.TempDir()
	path := filepath.Join(dir, "posthorn.toml")
	body := "[auth]\npasswd_files = [\"extra/users\", \"/etc/dovecot/users\"]\nfailure_delay = \"1s\"\n"
	if err := os.WriteFile(path, []byte(body), 0600); err != nil {
		t.Fatal(err)
	}
	loaded, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := loaded.Auth.PasswdFiles; len(got) != 2 || got[0] != filepath.Join(dir, "extra/users") || got[1] != "/etc/dovecot/users" {
		t.Fatalf("passwd_files %q", got)
	}
	if err := os.WriteFile(path, []byte("[auth]\nfailure_delay = \"20s\"\n"), 0600); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(path); err == nil || !strings.Contains(err.Error(), "failure_delay") {
		t.Fatalf("failure_delay above max_failure_delay loaded: %v", err)
	}
}

// A connection that sends nothing is closed after the idle timeout; one
// that keeps asking is not.
func TestIdleConnectionClosed(t *testing.T) {
	e := newEnv(t, nil)
	e.srv.idle = 100 * time.Millisecond
	sock := filepath.Join(e.dir, "auth")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- e.srv.Serve(ctx, l) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	if n, err := c.Read(make([]byte, 1)); err != io.EOF || n != 0 {
		t.Fatalf("idle connection: read %d, %v", n, err)
	}
	if took := time.Since(start); took < 100*time.Millisecond {
		t.Fatalf("closed after %v, before the idle timeout", took)
	}
}

// Without a deadline of its own, Verify gives up after the client's
// timeout when the daemon does not answer.
func TestClientTimeout(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "auth")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// A daemon that accepts and never answers.
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	c := NewClient(sock)
	c.timeout = 100 * time.Millisecond
	start := time.Now()
	_, err = c.Verify(context.Background(), req("alice@example.org", "pw", "192.0.2.1"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Verify: %v", err)
	}
	if took := time.Since(start); took < 100*time.Millisecond || took > 10*time.Second {
		t.Fatalf("gave up after %v", took)
	}
	// No daemon at all: an error at once.
	if _, err := NewClient(sock+".missing").Verify(context.Background(), req("a", "b", "192.0.2.1")); err == nil {
		t.Fatal("Verify without a daemon succeeded")
	}
}

// A request frame that is not one: the connection ends, the daemon goes on.
func TestGarbageRequest(t *testing.T) {
	e := newEnv(t, nil)
	sock := filepath.Join(e.dir, "auth")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go e.srv.Serve(ctx, l)
	for _, junk := range [][]byte{
		{0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o'}, // not JSON
		{0xff, 0xff, 0xff, 0xff},              // a frame over ipc.MaxFrame
		[]byte(`{"service":"smtp"}`),          // no length prefix
	} {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		c.Write(junk)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if n, err := c.Read(make([]byte, 64)); n != 0 || err == nil {
			t.Errorf("%q: read %d, %v: want the connection closed", junk, n, err)
		}
		c.Close()
	}
	res, err := NewClient(sock).Verify(ctx, req("carol", "carol pw", "192.0.2.1"))
	if err != nil || !res.OK {
		t.Fatalf("after garbage: %+v %v", res, err)
	}
}
