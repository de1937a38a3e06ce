package debian

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// buildPackage builds the programs as make build does and the package as
// make deb does, into temporary folders, and returns the package's path.
func buildPackage(t *testing.T) string {
	t.Helper()
	bin, out := t.TempDir(), t.TempDir()
	for _, b := range []struct {
		cgo, pkg string
	}{{"0", "./cmd/..."}, {"1", "./cmd/auth"}} { // auth checks passwords through PAM, a C library
		cmd := exec.Command("go", "build", "-trimpath", "-o", bin+"/", b.pkg)
		cmd.Dir = "../.."
		cmd.Env = append(os.Environ(), "CGO_ENABLED="+b.cgo)
		if o, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", b.pkg, err, o)
		}
	}
	cmd := exec.Command("sh", "etc/debian/build-deb.sh", "-b", bin, "-o", out)
	cmd.Dir = "../.."
	o, err := cmd.Output()
	if err != nil {
		t.Fatalf("etc/debian/build-deb.sh: %v\n%s", err, o)
	}
	deb := strings.TrimSpace(string(o))
	if !strings.HasPrefix(filepath.Base(deb), "posthorn_") || !strings.HasSuffix(deb, ".deb") {
		t.Fatalf("build-deb.sh printed %q, not a package path", o)
	}
	return deb
}

// copySource puts what install.sh needs beside it into the root, at
// /root/posthorn: the script, etc/ and man/, and the package.
func copySource(t *testing.T, c *chroot, deb string) string {
	t.Helper()
	dst := c.path("/root/posthorn")
	if err := os.MkdirAll(dst, 0755); err != nil {
		t.Fatal(err)
	}
	run(t, "cp", "-a", "../../install.sh", "../../etc", "../../man", "../../README.md", deb, dst)
	return "/root/posthorn/" + filepath.Base(deb)
}

// syslog collects the log lines of a master's standard error and writes
// them, each with a traditional syslog prefix ("Nov 26 15:39:58 host "),
// into a file as rsyslog would write /var/log/mail.log.
type syslog struct {
	mu      sync.Mutex
	partial []byte
	lines   []string
	f       *os.File
}

func (s *syslog) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.partial = append(s.partial, p...)
	for {
		i := bytes.IndexByte(s.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := string(s.partial[:i])
		s.partial = s.partial[i+1:]
		s.lines = append(s.lines, line)
		fmt.Fprintf(s.f, "%s %s %s\n", time.Now().Format(time.Stamp), hostname, line)
	}
}

func (s *syslog) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.lines, "\n")
}

// master is posthorn's master process running in the root, as systemd
// would start it: from the installed unit's command line, with
// NOTIFY_SOCKET, until it says READY=1.
type master struct {
	cmd  *exec.Cmd
	log  *syslog
	done chan error
}

// startMaster starts the installed master, logging to the root's
// /var/log/mail.log, and waits for its readiness notification.
func startMaster(t *testing.T, c *chroot) *master {
	t.Helper()
	// The socket lives in the root's /root, on the disk the host shares.
	sock := "/root/notify.sock"
	os.Remove(c.path(sock))
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: c.path(sock), Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	defer os.Remove(c.path(sock))
	f, err := os.OpenFile(c.path("/var/log/mail.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0640)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	m := &master{log: &syslog{f: f}, done: make(chan error, 1)}
	m.cmd = c.command("exec /usr/lib/posthorn/master -c /etc/posthorn/posthorn.toml", "NOTIFY_SOCKET="+sock)
	m.cmd.Stdout, m.cmd.Stderr = m.log, m.log
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { m.done <- m.cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case <-m.done:
		default:
			c.sh("posthorn stop")
			select {
			case <-m.done:
			case <-time.After(60 * time.Second):
				m.cmd.Process.Kill()
			}
		}
	})
	ready := make(chan string, 1)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := l.Read(buf)
			if err != nil {
				return
			}
			if s := string(buf[:n]); strings.Contains("\n"+s+"\n", "\nREADY=1\n") {
				ready <- s
				return
			}
		}
	}()
	select {
	case <-ready:
	case err := <-m.done:
		m.done <- err
		t.Fatalf("master exited before it was ready: %v\n%s", err, m.log)
	case <-time.After(60 * time.Second):
		t.Fatalf("master sent no READY=1 within 60s\n%s", m.log)
	}
	return m
}

// stop stops master with posthorn stop, as an administrator would.
func (m *master) stop(t *testing.T, c *chroot) {
	t.Helper()
	c.must("posthorn stop")
	m.wait(t)
}

// wait waits for master to exit (stopped by someone else).
func (m *master) wait(t *testing.T) {
	t.Helper()
	select {
	case err := <-m.done:
		m.done <- err
	case <-time.After(60 * time.Second):
		t.Fatalf("master did not exit\n%s", m.log)
	}
}

// waitFor polls cond until it holds or timeout passes; what names it in
// the failure, with the master's log.
func waitFor(t *testing.T, what string, timeout time.Duration, m *master, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			log := ""
			if m != nil {
				log = m.log.String()
			}
			t.Fatalf("after %s still waiting for %s\nlog:\n%s", timeout, what, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// listing describes every file under the root but the excluded paths: type,
// mode, owner, and content checksum or link target; what the installer's
// second run must leave exactly as it was.
func listing(t *testing.T, c *chroot, exclude ...string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(c.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := "/" + strings.TrimPrefix(strings.TrimPrefix(p, c.dir), "/")
		for _, e := range exclude {
			if rel == e {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st := info.Sys().(*syscall.Stat_t)
		line := fmt.Sprintf("%s %s %d:%d", rel, info.Mode(), st.Uid, st.Gid)
		switch {
		case info.Mode().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			h := sha256.New()
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return err
			}
			line += " " + hex.EncodeToString(h.Sum(nil))
		case info.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			line += " -> " + target
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// diffLines returns the lines only in a and only in b.
func diffLines(a, b string) (onlyA, onlyB []string) {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	ma, mb := in(a), in(b)
	for l := range ma {
		if !mb[l] {
			onlyA = append(onlyA, l)
		}
	}
	for l := range mb {
		if !ma[l] {
			onlyB = append(onlyB, l)
		}
	}
	sort.Strings(onlyA)
	sort.Strings(onlyB)
	return
}

// mailbox returns the messages in a Maildir of the root (new/ and cur/),
// joined.
func mailbox(c *chroot, maildir string) string {
	var all []string
	for _, sub := range []string{"new", "cur"} {
		entries, _ := os.ReadDir(c.path(filepath.Join(maildir, sub)))
		for _, e := range entries {
			b, _ := os.ReadFile(c.path(filepath.Join(maildir, sub, e.Name())))
			all = append(all, string(b))
		}
	}
	return strings.Join(all, "\n\x00\n")
}
