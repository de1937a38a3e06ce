package master

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/posthorn/posthorn/pkg/config"
)

// startWait bounds how long StartBackground waits for master to lock its
// pid file: binding sockets and generating a key take well under this.
const startWait = 30 * time.Second

// LogFile is where a master started in the background writes its log when
// the configuration logs to standard error: a detached master has no
// terminal, and nothing would read a pipe after the admin tool exits.
func LogFile(cfg *config.Config) string {
	return filepath.Join(cfg.StateDir, "master.log")
}

// StartBackground starts masterPath detached (own session, cwd /, no
// terminal) with cfg's configuration file, and returns master's pid once it
// holds its lock. If master exits first, the error carries the end of its
// log (its fatal message) when it logs to a file.
func StartBackground(cfg *config.Config, masterPath string) (pid int, err error) {
	if pid, ok := Running(cfg); ok {
		return pid, runningError{pid}
	}
	exe, err := filepath.Abs(masterPath)
	if err != nil {
		return 0, fmt.Errorf("start %s: %w", masterPath, err)
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return 0, fmt.Errorf("start %s: %w", exe, err)
	}
	defer devnull.Close()
	out, logPath, logStart := devnull, "", int64(0)
	if cfg.Log.Target == "stderr" {
		logPath = LogFile(cfg)
		if err := os.MkdirAll(cfg.StateDir, 0755); err != nil {
			return 0, fmt.Errorf("start %s: %w", exe, err)
		}
		f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0640)
		if err != nil {
			return 0, fmt.Errorf("start %s: %w", exe, err)
		}
		defer f.Close()
		if fi, err := f.Stat(); err == nil {
			logStart = fi.Size()
		}
		out = f
	}
	cmd := exec.Command(exe, "-c", cfg.Path)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, out, out
	cmd.Dir = "/" // do not keep the admin's working folder busy
	cmd.Env = childEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start %s: %w", exe, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	deadline := time.NewTimer(startWait)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-exited:
			if pid, ok := Running(cfg); ok {
				// Lost a race with another start: that master runs.
				return pid, runningError{pid}
			}
			msg := fmt.Sprintf("master exited: %v", err)
			if tail := logTail(logPath, logStart); tail != "" {
				msg += ": " + tail
			}
			return 0, fmt.Errorf("start %s: %s", exe, msg)
		case <-deadline.C:
			return cmd.Process.Pid, fmt.Errorf("start %s: pid %d has not taken its lock after %s", exe, cmd.Process.Pid, startWait)
		case <-tick.C:
			if pid, ok := Running(cfg); ok && pid == cmd.Process.Pid {
				return pid, nil
			}
		}
	}
}

// logTail returns the last lines written to path since offset, joined.
func logTail(path string, offset int64) string {
	if path == "" {
		return ""
	}
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	b, _ := io.ReadAll(io.NewSectionReader(f, offset, 64<<10))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 3 {
		lines = lines[len(lines)-3:]
	}
	return strings.Join(lines, "; ")
}

// Stop sends master SIGTERM and waits until it has stopped its daemons and
// released its lock. timeout 0 means the stop grace plus ten seconds.
func Stop(cfg *config.Config, timeout time.Duration) error {
	pid, ok := Running(cfg)
	if !ok {
		return ErrNotRunning
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("stop master pid %d: %w", pid, err)
	}
	if timeout <= 0 {
		timeout = cfg.Master.StopGrace.D() + 10*time.Second
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if p, ok := Running(cfg); !ok || p != pid {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("stop master pid %d: still running after %s", pid, timeout)
}

// Reload asks master to re-read its configuration. The result (applied or
// refused as invalid) is in the mail log.
func Reload(cfg *config.Config) error {
	pid, ok := Running(cfg)
	if !ok {
		return ErrNotRunning
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		return fmt.Errorf("reload master pid %d: %w", pid, err)
	}
	return nil
}
