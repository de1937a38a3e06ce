// Package tests holds the end-to-end tests: they build the real programs,
// start the real master with a temporary configuration, and talk to it with
// real clients (Python's smtplib, swaks, Go's net/smtp).
package tests

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/posthorn/posthorn/pkg/config"
)

// binDir holds the programs built once for all tests.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "posthorn-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// The test binary runs in tests/; the module root is its parent.
	build := exec.Command("go", "build", "-trimpath", "-o", dir+"/", "./cmd/...")
	build.Dir = ".."
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the programs: %v\n%s", err, out)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// syncBuffer collects the system's log lines.
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

// System is one running posthorn instance.
type System struct {
	t      testing.TB
	Dir    string
	Config string
	Cfg    *config.Config
	Addr   string // SMTP listener, host:port
	Port   int
	log    *syncBuffer
	cmd    *exec.Cmd
	waited chan struct{}
}

// handedOut remembers the ports freePort gave, so no two instances of
// this process are configured with the same one.
var handedOut sync.Map

// freePort returns a loopback port that was free a moment ago. It picks
// below the kernel's ephemeral range (32768 up), where a port "free a
// moment ago" is not taken by some client's outgoing connection before
// the master binds it.
func freePort(t testing.TB) int {
	for range 1000 {
		port := 10000 + rand.IntN(22000)
		if _, dup := handedOut.LoadOrStore(port, true); dup {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		l.Close()
		return port
	}
	t.Fatal("no free loopback port found")
	return 0
}

// NewSystem writes a configuration for a fresh instance under a temporary
// folder; tweak changes it before it is written. Start runs it.
func NewSystem(t testing.TB, tweak func(c *config.Config)) *System {
	t.Helper()
	dir := t.TempDir()
	// Daemons running as another user must be able to reach their files.
	os.Chmod(dir, 0755)
	port := freePort(t)
	c := config.Defaults()
	c.Hostname = "mail.example.test"
	c.LocalDomains = []string{"localhost"}
	c.MailOwner = ""
	c.SpoolDir = filepath.Join(dir, "spool")
	c.StateDir = filepath.Join(dir, "state")
	c.DaemonDir = binDir
	c.AliasFile = filepath.Join(dir, "aliases")
	c.SMTPD.Listen = []string{fmt.Sprintf("127.0.0.1:%d", port)}
	// Tests that want submission set their own ports.
	c.SMTPD.SubmissionListen, c.SMTPD.SubmissionsListen = []string{}, []string{}
	c.POP3.Listen = []string{fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	c.POP3.ListenTLS = []string{fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	c.IMAP.Listen = []string{fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	c.IMAP.ListenTLS = []string{fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	c.SMTPD.Timeout = config.Duration(30 * time.Second)
	c.Queue.RunDelay = config.Duration(2 * time.Second)
	c.Queue.MinimalBackoff = config.Duration(2 * time.Second)
	c.Queue.MaximalBackoff = config.Duration(4 * time.Second)
	c.Local.HomeMailbox = "Maildir/"
	// A test that switches to mbox must not write the host's /var/mail.
	c.Local.MailSpoolDir = filepath.Join(dir, "mail-spool")
	c.Local.DeliveryUser = ""
	c.Virtual.Domains = []string{"example.test"}
	c.Virtual.UsersFile = filepath.Join(dir, "users")
	c.Virtual.Mailbox = filepath.Join(dir, "mail/%d/%n/Maildir")
	c.Virtual.User, c.Virtual.Group = "", ""
	c.TLS.CertFile = filepath.Join(dir, "state/cert.pem")
	c.TLS.KeyFile = filepath.Join(dir, "state/key.pem")
	c.TLS.Generate = true
	c.Master.StopGrace = config.Duration(5 * time.Second)
	// Nothing a test sends may reach real DNS or real mail servers: a
	// resolver that does not answer makes remote mail wait in the queue.
	c.DNS.Resolvers = []string{"127.0.0.1:1"}
	if tweak != nil {
		tweak(c)
	}
	path := filepath.Join(dir, "posthorn.toml")
	var b bytes.Buffer
	if err := toml.NewEncoder(&b).Encode(c); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.AliasFile, []byte("postmaster: root\n"), 0644); err != nil {
		t.Fatal(err)
	}
	loaded, err := config.Load(path)
	if err != nil {
		t.Fatalf("test configuration: %v", err)
	}
	return &System{t: t, Dir: dir, Config: path, Cfg: loaded, Addr: c.SMTPD.Listen[0], Port: port, log: &syncBuffer{}}
}

// StartSystem creates and starts an instance and stops it when the test ends.
func StartSystem(t testing.TB, tweak func(c *config.Config)) *System {
	s := NewSystem(t, tweak)
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// Start runs master in the foreground and waits until SMTP answers.
func (s *System) Start() {
	s.t.Helper()
	s.cmd = exec.Command(filepath.Join(binDir, "master"), "-c", s.Config)
	s.cmd.Stdout = s.log
	s.cmd.Stderr = s.log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.waited = make(chan struct{})
	go func() { s.cmd.Wait(); close(s.waited) }()
	s.WaitFor("SMTP greeting", 20*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", s.Addr, time.Second)
		if err != nil {
			return false
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 512)
		n, _ := c.Read(buf)
		return strings.HasPrefix(string(buf[:n]), "220 ")
	})
}

// Stop terminates master (SIGTERM) and waits for it.
func (s *System) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.waited:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.waited:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-s.waited
		s.t.Errorf("master did not stop within 30 s after SIGTERM")
	}
}

// KillMaster kills master with SIGKILL and waits until its children are gone.
func (s *System) KillMaster() {
	s.cmd.Process.Kill()
	<-s.waited
	s.WaitFor("daemons to exit after master died", 20*time.Second, func() bool {
		return len(s.DaemonPids("")) == 0
	})
}

// Log returns everything the system logged so far.
func (s *System) Log() string { return s.log.String() }

// WaitFor polls cond until it holds or the deadline passes.
func (s *System) WaitFor(what string, limit time.Duration, cond func() bool) {
	s.t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			s.t.Fatalf("timed out after %v waiting for %s\nlog:\n%s", limit, what, tail(s.Log(), 40))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Posthorn runs the admin tool against this instance.
func (s *System) Posthorn(stdin string, args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(binDir, "posthorn"), append([]string{"-c", s.Config}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// AddUser creates a virtual user.
func (s *System) AddUser(name string) {
	s.t.Helper()
	if out, err := s.Posthorn("pw-"+name+"\n", "user", "add", name); err != nil {
		s.t.Fatalf("user add %s: %v\n%s", name, err, out)
	}
}

// Maildir returns the Maildir of a virtual user in example.test.
func (s *System) Maildir(user string) string {
	return filepath.Join(s.Dir, "mail", "example.test", user, "Maildir")
}

// Messages returns the contents of the messages in a Maildir (new/ and cur/).
func Messages(maildir string) map[string]string {
	out := map[string]string{}
	for _, sub := range []string{"new", "cur"} {
		ents, _ := os.ReadDir(filepath.Join(maildir, sub))
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(maildir, sub, e.Name()))
			if err == nil {
				out[sub+"/"+e.Name()] = string(b)
			}
		}
	}
	return out
}

// WaitMessages waits until a Maildir holds at least n messages.
func (s *System) WaitMessages(maildir string, n int, limit time.Duration) map[string]string {
	s.t.Helper()
	var msgs map[string]string
	s.WaitFor(fmt.Sprintf("%d messages in %s", n, maildir), limit, func() bool {
		msgs = Messages(maildir)
		return len(msgs) >= n
	})
	return msgs
}

// QueueEmpty reports whether no message is queued.
func (s *System) QueueEmpty() bool {
	for _, q := range []string{"incoming", "active", "deferred", "hold"} {
		ents, _ := os.ReadDir(filepath.Join(s.Cfg.SpoolDir, q))
		if len(ents) > 0 {
			return false
		}
	}
	return true
}

// DaemonPids finds running processes of this instance's programs (name ""
// for all): those started from binDir with this instance's configuration.
func (s *System) DaemonPids(name string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if len(args) == 0 || !strings.HasPrefix(args[0], binDir+"/") {
			continue
		}
		prog := filepath.Base(args[0])
		if prog == "master" || (name != "" && prog != name) {
			continue
		}
		if !strings.Contains(string(cmdline), s.Config) {
			continue
		}
		// A zombie is not running.
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && strings.Contains(string(st), ") Z ") {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

// Python runs a Python 3 script with SMTP_HOST and SMTP_PORT set and
// returns its standard output.
func (s *System) Python(script string, env ...string) (string, error) {
	cmd := exec.Command("python3", "-c", script)
	cmd.Env = append(os.Environ(), append([]string{"SMTP_HOST=127.0.0.1", "SMTP_PORT=" + strconv.Itoa(s.Port)}, env...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%v: %s", err, errb.String())
	}
	return out.String(), nil
}
