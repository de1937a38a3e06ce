package daemon

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as a daemon when this variable is set.
const helperEnv = "POSTHORN_DAEMON_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		helper()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// helper is a minimal daemon: it answers every connection with its name and
// pid and reports what it sees on its log.
func helper() {
	d := Start("testd")
	if os.Getenv(EnvFDs) != "" || os.Getenv(EnvMasterFD) != "" {
		d.Log.Warning("test: protocol variables still set")
	}
	for name, ls := range d.Listeners {
		for _, l := range ls {
			d.Log.Info("test: listening %s %s %s", name, l.Addr().Network(), l.Addr())
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					fmt.Fprintf(c, "%s %d\n", name, os.Getpid())
					c.Close()
				}
			}()
		}
	}
	d.Log.Info("test: ready")
	for {
		select {
		case <-d.Ctx.Done():
			d.Log.Info("test: stopping: %v", context.Cause(d.Ctx))
			return
		case cfg := <-d.Reload:
			d.Log.Info("test: reloaded hostname=%s current=%s", cfg.Hostname, d.Config().Hostname)
		}
	}
}

// logBuf collects a child's standard error for polling.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// waitFor polls until a log line contains want and returns that line.
func (l *logBuf) waitFor(t *testing.T, want string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		sc := bufio.NewScanner(strings.NewReader(l.String()))
		for sc.Scan() {
			if strings.Contains(sc.Text(), want) {
				return sc.Text()
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no log line with %q in:\n%s", want, l.String())
	return ""
}

func writeConfig(t *testing.T, dir, hostname string) string {
	t.Helper()
	p := filepath.Join(dir, "posthorn.toml")
	body := fmt.Sprintf("hostname = %q\nspool_directory = \"spool\"\n[master]\nstop_grace = \"5s\"\n", hostname)
	if err := os.WriteFile(p, []byte(body), 0644); err != nil {
		t.Fatal(err)
	}
	return p
}

func helperCmd(t *testing.T, cfgPath string, env ...string) (*exec.Cmd, *logBuf) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-c", cfgPath)
	cmd.Env = append(os.Environ(), append([]string{helperEnv + "=1"}, env...)...)
	log := &logBuf{}
	cmd.Stderr = log
	t.Cleanup(func() {
		if cmd.ProcessState == nil && cmd.Process != nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return cmd, log
}

func waitExit(t *testing.T, cmd *exec.Cmd) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("helper did not exit")
		return nil
	}
}

func fileOf(t *testing.T, l net.Listener) *os.File {
	t.Helper()
	var f *os.File
	var err error
	switch l := l.(type) {
	case *net.TCPListener:
		f, err = l.File()
	case *net.UnixListener:
		f, err = l.File()
	}
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestInheritAndMasterGone(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir, "mx.example.test")
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	sock := filepath.Join(dir, "qmgr")
	ul, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ul.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()

	cmd, log := helperCmd(t, cfg, EnvFDs+"=smtp:3,qmgr:4", EnvMasterFD+"=5")
	cmd.ExtraFiles = []*os.File{fileOf(t, tl), fileOf(t, ul), pr}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	log.waitFor(t, "test: ready")
	if strings.Contains(log.String(), "still set") {
		t.Error("protocol variables were not cleared")
	}
	log.waitFor(t, "listening smtp tcp "+tl.Addr().String())
	log.waitFor(t, "listening qmgr unix "+sock)

	for _, c := range []struct{ network, addr, name string }{
		{"tcp", tl.Addr().String(), "smtp"}, {"unix", sock, "qmgr"},
	} {
		conn, err := net.Dial(c.network, c.addr)
		if err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(conn).ReadString('\n')
		conn.Close()
		if want := fmt.Sprintf("%s %d\n", c.name, cmd.Process.Pid); line != want || err != nil {
			t.Errorf("%s answered %q, %v; want %q", c.addr, line, err, want)
		}
	}

	pw.Close() // master "dies"
	if err := waitExit(t, cmd); err != nil {
		t.Fatalf("helper: %v\n%s", err, log)
	}
	log.waitFor(t, "test: stopping: "+ErrMasterGone.Error())
	// The daemon's copy is closed; the socket file stays for the next one.
	if _, err := os.Stat(sock); err != nil {
		t.Errorf("socket file gone after the daemon exited: %v", err)
	}
}

func TestReloadAndTerm(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir, "one.example.test")
	cmd, log := helperCmd(t, cfg)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	log.waitFor(t, "test: ready")

	writeConfig(t, dir, "two.example.test")
	cmd.Process.Signal(syscall.SIGHUP)
	log.waitFor(t, "test: reloaded hostname=two.example.test current=two.example.test")

	if err := os.WriteFile(cfg, []byte("no_such_setting = 1\n"), 0644); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGHUP)
	line := log.waitFor(t, "keeping the old configuration")
	if !strings.Contains(line, "posthorn/testd[") || !strings.Contains(line, "warning: ") || !strings.Contains(line, "no_such_setting") {
		t.Errorf("reload warning %q", line)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	if err := waitExit(t, cmd); err != nil {
		t.Fatalf("helper: %v\n%s", err, log)
	}
	log.waitFor(t, "test: stopping: terminating on signal 15")
	if strings.Count(log.String(), "test: reloaded") != 1 {
		t.Errorf("a bad configuration reached the daemon:\n%s", log)
	}
}

func TestBadConfigFatal(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "posthorn.toml")
	os.WriteFile(p, []byte("hostname = \n"), 0644)
	cmd, log := helperCmd(t, p)
	if err := cmd.Run(); err == nil {
		t.Fatal("daemon started with a broken configuration")
	}
	if cmd.ProcessState.ExitCode() != 1 {
		t.Errorf("exit status %d, want 1", cmd.ProcessState.ExitCode())
	}
	log.waitFor(t, "posthorn/testd[")
	log.waitFor(t, "fatal: config "+p)
}

func TestBadFDsFatal(t *testing.T) {
	cfg := writeConfig(t, t.TempDir(), "mx.example.test")
	cmd, log := helperCmd(t, cfg, EnvFDs+"=smtp")
	if err := cmd.Run(); err == nil {
		t.Fatal("daemon started with a bad descriptor list")
	}
	log.waitFor(t, `fatal: POSTHORN_FDS: bad entry "smtp"`)
}
