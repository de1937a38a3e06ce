package master

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/posthorn/posthorn/pkg/config"
	"github.com/posthorn/posthorn/pkg/spool"
	"golang.org/x/sys/unix"
)

// PidFile is master's lock: held with flock for master's life, it holds
// master's pid. The lock, not the file, says whether master runs, so a pid
// file left by a crash never blocks a start.
func PidFile(cfg *config.Config) string {
	return filepath.Join(cfg.SpoolDir, spool.PidDir, "master.pid")
}

// runningError is a lock held by another live master.
type runningError struct{ pid int }

func (e runningError) Error() string {
	if e.pid > 0 {
		return fmt.Sprintf("%v (pid %d)", ErrRunning, e.pid)
	}
	return ErrRunning.Error()
}

func (e runningError) Unwrap() error { return ErrRunning }

// lockWait covers status probes (Running holds a shared lock for a moment)
// and a master that has locked but not yet written its pid.
const lockWait = 500 * time.Millisecond

// lockPidFile takes the lock and writes our pid into the file.
func lockPidFile(path string) (*os.File, error) {
	deadline := time.Now().Add(lockWait)
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0644)
		if err != nil {
			return nil, fmt.Errorf("open lock %s: %w", path, err)
		}
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if errors.Is(err, unix.EWOULDBLOCK) {
			if time.Now().After(deadline) {
				pid := readPid(f)
				f.Close()
				return nil, runningError{pid}
			}
			f.Close()
			time.Sleep(20 * time.Millisecond)
			continue
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		// An exiting master removes the file before it unlocks; if we
		// locked that removed file, a third master could lock a new one.
		if !samePath(f, path) {
			f.Close()
			continue
		}
		if err := f.Truncate(0); err != nil {
			f.Close()
			return nil, fmt.Errorf("write %s: %w", path, err)
		}
		// Postfix's format: the pid right-aligned in ten columns.
		if _, err := f.WriteAt([]byte(fmt.Sprintf("%10d\n", os.Getpid())), 0); err != nil {
			f.Close()
			return nil, fmt.Errorf("write %s: %w", path, err)
		}
		return f, nil
	}
}

func samePath(f *os.File, path string) bool {
	a, err1 := f.Stat()
	b, err2 := os.Stat(path)
	return err1 == nil && err2 == nil && os.SameFile(a, b)
}

// readPid reads the pid a lock holder wrote, waiting briefly for a master
// that has just taken the lock.
func readPid(f *os.File) int {
	deadline := time.Now().Add(lockWait)
	for {
		b := make([]byte, 32)
		n, _ := f.ReadAt(b, 0)
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b[:n]))); err == nil && pid > 0 {
			return pid
		}
		if time.Now().After(deadline) {
			return 0
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Running reports whether a master holds cfg's lock, and its pid.
func Running(cfg *config.Config) (pid int, ok bool) {
	f, err := os.Open(PidFile(cfg))
	if err != nil {
		return 0, false
	}
	defer f.Close()
	err = unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB)
	if err == nil {
		unix.Flock(int(f.Fd()), unix.LOCK_UN)
		return 0, false // stale: nobody holds it
	}
	if !errors.Is(err, syscall.EWOULDBLOCK) {
		return 0, false
	}
	pid = readPid(f)
	return pid, pid > 0
}
