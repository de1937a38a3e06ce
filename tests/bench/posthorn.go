package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/posthorn/posthorn/pkg/config"
)

// mailSystem is a running server under test.
type mailSystem interface {
	Name() string
	Addr() string
	// MasterPid is the root of the system's process tree.
	MasterPid() int
	// Label names the program a process runs.
	Label(p procInfo) string
	// Maildirs are the users' Maildirs, in user order.
	Maildirs() []string
	// QueueFiles counts the messages still queued.
	QueueFiles() int
	// LogTail returns the end of the system's log, for failures.
	LogTail(lines int) string
	Stop() error
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitGreeting waits until addr answers with an SMTP 220 greeting.
func waitGreeting(addr string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.SetDeadline(time.Now().Add(2 * time.Second))
			buf := make([]byte, 512)
			n, _ := c.Read(buf)
			c.Close()
			if strings.HasPrefix(string(buf[:n]), "220 ") {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no SMTP greeting from %s within %v", addr, limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// countFiles counts the regular files below each of dirs.
func countFiles(dirs ...string) int {
	n := 0
	for _, d := range dirs {
		filepath.WalkDir(d, func(path string, e os.DirEntry, err error) error {
			if err == nil && e.Type().IsRegular() {
				n++
			}
			return nil
		})
	}
	return n
}

func tailFile(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	ls := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// relaySetup configures a system for the relay case.
type relaySetup struct {
	sinkAddr string // all mail goes there: relayhost [127.0.0.1]:port
	// auth: posthorn takes the load on its submission port, from a user
	// logged in with AUTH PLAIN; otherwise on its MX port, relaying for
	// smtpd.relay_networks 127.0.0.0/8 (Postfix's mynetworks).
	auth bool
}

// posthornSystem is a posthorn instance in a temporary folder, every
// daemon running as the invoking user.
type posthornSystem struct {
	dir    string
	binDir string
	config string
	cfg    *config.Config
	addr   string // the MX listener
	submit string // where the load goes: addr, or the submission listener
	users  int
	log    string
	cmd    *exec.Cmd
	waited chan struct{}
}

// startPosthorn starts an instance delivering to virtual users' Maildirs,
// or, with relay set, relaying every message to relay.sinkAddr. tune, when
// set, changes the configuration last (and may write files it names).
func startPosthorn(base, binDir string, users, sessions int, relay *relaySetup, tune func(*config.Config) error) (*posthornSystem, error) {
	dir, err := os.MkdirTemp(base, "posthorn-bench-")
	if err != nil {
		return nil, err
	}
	os.Chmod(dir, 0755)
	s := &posthornSystem{dir: dir, binDir: binDir, users: users, log: filepath.Join(dir, "posthorn.log")}
	port, err := freePort()
	if err != nil {
		return s, err
	}
	s.addr = fmt.Sprintf("127.0.0.1:%d", port)
	s.submit = s.addr
	c := config.Defaults()
	c.Hostname = "mail.example.test"
	c.LocalDomains = []string{"localhost"}
	c.MailOwner = ""
	c.SpoolDir = filepath.Join(dir, "spool")
	c.StateDir = filepath.Join(dir, "state")
	c.DaemonDir = binDir
	c.AliasFile = filepath.Join(dir, "aliases")
	c.SMTPD.Listen = []string{s.addr}
	c.SMTPD.SubmissionListen, c.SMTPD.SubmissionsListen = []string{}, []string{}
	c.POP3.Listen, c.POP3.ListenTLS = []string{}, []string{}
	c.IMAP.Listen, c.IMAP.ListenTLS = []string{}, []string{}
	if sessions+10 > c.SMTPD.ProcessLimit {
		c.SMTPD.ProcessLimit = sessions + 10
	}
	c.Local.HomeMailbox = "Maildir/"
	c.Local.DeliveryUser = ""
	c.Virtual.Domains = []string{"example.test"}
	c.Virtual.UsersFile = filepath.Join(dir, "users")
	c.Virtual.Mailbox = filepath.Join(dir, "mail/%d/%n/Maildir")
	c.Virtual.User, c.Virtual.Group = "", ""
	c.TLS.CertFile = filepath.Join(dir, "state/cert.pem")
	c.TLS.KeyFile = filepath.Join(dir, "state/key.pem")
	c.TLS.Generate = true
	if relay != nil {
		// Every other domain goes to the sink, over plain SMTP (smtp-sink
		// offers no STARTTLS, so smtp.tls "may" stays the default). The
		// relay host is an address in brackets, so nothing is looked up;
		// a resolver on a closed loopback port makes sure of it.
		c.SMTP.Relayhost = "[" + strings.Replace(relay.sinkAddr, ":", "]:", 1)
		c.DNS.Resolvers = []string{"127.0.0.1:9"}
		if relay.auth {
			// Submission (RFC 6409) on a free port: STARTTLS and AUTH
			// offered; AUTH without TLS only because the client is on
			// loopback (smtpd.allow_plaintext_auth_on_loopback, default).
			sport, err := freePort()
			if err != nil {
				return s, err
			}
			s.submit = fmt.Sprintf("127.0.0.1:%d", sport)
			c.SMTPD.SubmissionListen = []string{s.submit}
		} else {
			c.SMTPD.RelayNetworks = []string{"127.0.0.0/8"}
		}
	}
	if tune != nil {
		if err := tune(c); err != nil {
			return s, err
		}
	}
	s.config = filepath.Join(dir, "posthorn.toml")
	var b bytes.Buffer
	if err := toml.NewEncoder(&b).Encode(c); err != nil {
		return s, err
	}
	if err := os.WriteFile(s.config, b.Bytes(), 0644); err != nil {
		return s, err
	}
	if err := os.WriteFile(c.AliasFile, []byte("postmaster: root\n"), 0644); err != nil {
		return s, err
	}
	if s.cfg, err = config.Load(s.config); err != nil {
		return s, fmt.Errorf("bench configuration: %w", err)
	}
	var names []string
	if relay == nil {
		for i := 0; i < users; i++ {
			names = append(names, rcpt(i))
		}
	} else if relay.auth {
		names = append(names, relaySender) // the submitting user
	}
	for _, name := range names {
		cmd := exec.Command(filepath.Join(binDir, "posthorn"), "-c", s.config, "user", "add", name)
		cmd.Stdin = strings.NewReader(relayPass + "\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			return s, fmt.Errorf("user add %s: %v: %s", name, err, out)
		}
	}
	logf, err := os.Create(s.log)
	if err != nil {
		return s, err
	}
	defer logf.Close()
	s.cmd = exec.Command(filepath.Join(binDir, "master"), "-c", s.config)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		return s, err
	}
	s.waited = make(chan struct{})
	go func() { s.cmd.Wait(); close(s.waited) }()
	for _, a := range []string{s.addr, s.submit} {
		if err := waitGreeting(a, 20*time.Second); err != nil {
			return s, fmt.Errorf("%v\n%s", err, s.LogTail(20))
		}
	}
	return s, nil
}

func (s *posthornSystem) Name() string   { return "posthorn" }
func (s *posthornSystem) Addr() string   { return s.submit }
func (s *posthornSystem) MasterPid() int { return s.cmd.Process.Pid }

func (s *posthornSystem) Label(p procInfo) string {
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.pid))
	args := strings.Split(string(cmdline), "\x00")
	if len(args) > 1 && args[1] == "worker" {
		return p.comm + " worker"
	}
	return p.comm
}

func (s *posthornSystem) Maildirs() []string {
	var out []string
	for i := 0; i < s.users; i++ {
		out = append(out, filepath.Join(s.dir, "mail", "example.test", fmt.Sprintf("user%d", i), "Maildir"))
	}
	return out
}

func (s *posthornSystem) QueueFiles() int {
	var dirs []string
	for _, q := range []string{"incoming", "active", "deferred", "hold", "maildrop"} {
		dirs = append(dirs, filepath.Join(s.cfg.SpoolDir, q))
	}
	return countFiles(dirs...)
}

func (s *posthornSystem) LogTail(lines int) string { return tailFile(s.log, lines) }

// Stop sends SIGTERM to master and waits; after 30 seconds it kills the
// whole process group.
func (s *posthornSystem) Stop() error {
	if s.cmd == nil || s.cmd.Process == nil {
		return nil
	}
	select {
	case <-s.waited:
		return nil
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.waited:
		return nil
	case <-time.After(30 * time.Second):
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.waited
		return fmt.Errorf("posthorn master did not stop within 30 s of SIGTERM; killed")
	}
}
