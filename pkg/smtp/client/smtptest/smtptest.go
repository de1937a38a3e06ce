// Package smtptest provides SMTP peers for tests of the SMTP client and
// the outbound delivery agent: a scripted server written here, for replies
// no real server sends, and Postfix's smtp-sink(1), for behaviour checked
// against software written elsewhere.
package smtptest

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Server accepts connections on 127.0.0.1 and runs a script for each.
type Server struct {
	Addr string
	Port int
	l    net.Listener
	mu   sync.Mutex
	n    int
	wg   sync.WaitGroup
}

// Conn is one accepted connection as a script sees it.
type Conn struct {
	net.Conn
	R *bufio.Reader
	T testing.TB
	// N numbers the connections of a server from 1.
	N int
}

// New starts a server on addr ("127.0.0.1:0" for any port) that runs
// script for every connection; it stops when the test ends.
func New(t testing.TB, addr string, script func(c *Conn)) *Server {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Addr: l.Addr().String(), Port: l.Addr().(*net.TCPAddr).Port, l: l}
	go func() {
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.n++
			n := s.n
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer nc.Close()
				nc.SetDeadline(time.Now().Add(30 * time.Second))
				script(&Conn{Conn: nc, R: bufio.NewReader(nc), T: t, N: n})
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		s.wg.Wait()
	})
	return s
}

// Connections returns how many connections the server accepted.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// Send writes lines, each ended with CRLF, in one write.
func (c *Conn) Send(lines ...string) {
	c.Raw(strings.Join(lines, "\r\n") + "\r\n")
}

// Raw writes s as it is.
func (c *Conn) Raw(s string) {
	c.Write([]byte(s))
}

// Line reads one line without its CRLF; "" at end of input.
func (c *Conn) Line() string {
	l, err := c.R.ReadString('\n')
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(l, "\r\n")
}

// Expect reads a line and reports a test error unless it starts with
// prefix (case-insensitively); it returns the line.
func (c *Conn) Expect(prefix string) string {
	l := c.Line()
	if !strings.HasPrefix(strings.ToUpper(l), strings.ToUpper(prefix)) {
		c.T.Errorf("server %d: got %q, want %s...", c.N, l, prefix)
	}
	return l
}

// Data reads message content up to and including "\r\n.\r\n" and returns
// it raw, as it came over the wire.
func (c *Conn) Data() []byte {
	var b []byte
	for {
		l, err := c.R.ReadBytes('\n')
		b = append(b, l...)
		if err != nil || bytes.HasSuffix(b, []byte("\r\n.\r\n")) || string(b) == ".\r\n" {
			return b
		}
	}
}

// Greet sends the greeting and answers EHLO with the extensions given.
func (c *Conn) Greet(ext ...string) {
	c.Send("220 test.example ESMTP")
	c.Expect("EHLO ")
	lines := []string{"250-test.example"}
	for _, e := range ext {
		lines = append(lines, "250-"+e)
	}
	lines[len(lines)-1] = "250 " + strings.TrimPrefix(lines[len(lines)-1], "250-")
	c.Send(lines...)
}

// Accept answers one transaction without pipelining (MAIL, RCPT..., DATA,
// content) with 250s and returns the raw content.
func (c *Conn) Accept(rcpts int) []byte {
	c.Expect("MAIL FROM:")
	c.Send("250 2.1.0 Ok")
	for i := 0; i < rcpts; i++ {
		c.Expect("RCPT TO:")
		c.Send("250 2.1.5 Ok")
	}
	c.Expect("DATA")
	c.Send("354 End data with <CR><LF>.<CR><LF>")
	d := c.Data()
	c.Send("250 2.0.0 Ok: queued as TEST")
	return d
}

// StartTLS upgrades the connection as the server side, after the STARTTLS
// command was read and answered.
func (c *Conn) StartTLS() {
	tc := tls.Server(c.Conn, &tls.Config{Certificates: []tls.Certificate{Certificate(c.T)}})
	if err := tc.Handshake(); err != nil {
		c.T.Errorf("server TLS handshake: %v", err)
		return
	}
	c.Conn = tc
	c.R = bufio.NewReader(tc)
}

var (
	certOnce sync.Once
	cert     tls.Certificate
)

// Certificate returns a self-signed certificate for "test.example".
func Certificate(t testing.TB) tls.Certificate {
	certOnce.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test.example"},
			DNSNames: []string{"test.example"}, NotBefore: time.Now().Add(-time.Hour),
			NotAfter: time.Now().Add(24 * time.Hour),
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			panic(err)
		}
		cert = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	})
	return cert
}

// ClosedPort returns an address on 127.0.0.1 where nothing listens.
func ClosedPort(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// Sink is a running smtp-sink(1).
type Sink struct {
	Addr string
	Port int
	// Dir receives one file per message (smtp-sink -d).
	Dir string
}

// StartSink runs Postfix's smtp-sink on a free 127.0.0.1 port with the
// extra options given (-r MAIL for 4xx replies to MAIL, -f RCPT for 5xx,
// -Q EHLO for 421 after EHLO: see smtp-sink(1)), saving messages in a
// folder. It needs the postfix package; as root it runs as nobody, as
// smtp-sink insists.
func StartSink(t testing.TB, opts ...string) *Sink {
	t.Helper()
	return StartSinkAt(t, "", opts...)
}

// StartSinkAt is StartSink on a given address ("127.0.0.2:2525"); empty
// picks a free port on 127.0.0.1.
func StartSinkAt(t testing.TB, at string, opts ...string) *Sink {
	t.Helper()
	bin, err := exec.LookPath("smtp-sink")
	if err != nil {
		for _, p := range []string{"/usr/sbin/smtp-sink", "/usr/bin/smtp-sink"} {
			if _, err2 := os.Stat(p); err2 == nil {
				bin, err = p, nil
			}
		}
	}
	if err != nil {
		t.Fatal("smtp-sink is not installed: run make test, which installs the postfix package (as root), or apt-get install postfix")
	}
	dir, err := os.MkdirTemp("", "posthorn-sink-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// smtp-sink drops privileges before it writes messages.
	os.Chmod(dir, 0777)
	var args []string
	if os.Geteuid() == 0 {
		u, err := user.Lookup("nobody")
		if err != nil {
			t.Fatalf("smtp-sink as root needs a user to run as: %v", err)
		}
		args = append(args, "-u", u.Username)
	}
	args = append(args, "-d", filepath.Join(dir, "%M."))
	args = append(args, opts...)
	for try := 0; try < 5; try++ {
		addr := at
		if addr == "" {
			addr = ClosedPort(t)
		}
		cmd := exec.Command(bin, append(args, addr, "100")...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		if !listening(addr, exited) {
			// It exited (the port was taken meanwhile) or never listened.
			cmd.Process.Kill()
			<-exited
			t.Logf("smtp-sink on %s: %s", addr, stderr.String())
			continue
		}
		t.Cleanup(func() {
			cmd.Process.Kill()
			<-exited
		})
		_, port, _ := net.SplitHostPort(addr)
		var p int
		fmt.Sscan(port, &p)
		return &Sink{Addr: addr, Port: p, Dir: dir}
	}
	t.Fatal("smtp-sink did not start")
	return nil
}

// listening waits until something accepts connections at addr (smtp-sink
// gives no other sign of being ready), or exited is closed.
func listening(addr string, exited chan struct{}) bool {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return true
		}
		select {
		case <-exited:
			return false
		case <-time.After(10 * time.Millisecond):
		}
	}
	return false
}

// Messages returns the messages smtp-sink saved: its own X- headers and
// Received:, then the content with LF line endings and dots unstuffed.
func (s *Sink) Messages(t testing.TB) []string {
	t.Helper()
	ents, err := os.ReadDir(s.Dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(s.Dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}
