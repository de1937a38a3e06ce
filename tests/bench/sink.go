package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// smtpSink is Debian's path of Postfix's test server.
const smtpSink = "/usr/sbin/smtp-sink"

// sink is an smtp-sink on a free loopback port, the destination of the
// relay case: it answers 250 to every message and writes each one to a
// file of its own in dumpDir (no fsync), by which the deliveries are
// counted and checked.
type sink struct {
	addr    string
	dir     string
	dumpDir string
	cmd     *exec.Cmd
	out     bytes.Buffer
	waited  chan struct{}
}

// startSink starts smtp-sink in a new folder below base. As root it must
// drop privileges (-u), so the dump folder belongs to nobody.
func startSink(base string) (*sink, error) {
	dir, err := os.MkdirTemp(base, "smtp-sink-")
	if err != nil {
		return nil, err
	}
	os.Chmod(dir, 0755)
	s := &sink{dir: dir, dumpDir: filepath.Join(dir, "dump")}
	if err := os.Mkdir(s.dumpDir, 0755); err != nil {
		return s, err
	}
	port, err := freePort()
	if err != nil {
		return s, err
	}
	s.addr = fmt.Sprintf("127.0.0.1:%d", port)
	// -4: IPv4 only; -d: one file per message, named dump/m.<random hex>;
	// 1024: the listen backlog.
	args := []string{"-4", "-d", filepath.Join(s.dumpDir, "m."), "-h", "sink.example.test"}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("nobody")
		if err != nil {
			return s, fmt.Errorf("smtp-sink as root needs the user nobody: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(s.dumpDir, uid, gid); err != nil {
			return s, err
		}
		args = append(args, "-u", "nobody")
	}
	s.cmd = exec.Command(smtpSink, append(args, s.addr, "1024")...)
	s.cmd.Stdout, s.cmd.Stderr = &s.out, &s.out
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		return s, err
	}
	s.waited = make(chan struct{})
	go func() { s.cmd.Wait(); close(s.waited) }()
	if err := waitGreeting(s.addr, 10*time.Second); err != nil {
		return s, fmt.Errorf("smtp-sink: %v: %s", err, strings.TrimSpace(s.out.String()))
	}
	return s, nil
}

// Pid is smtp-sink's process.
func (s *sink) Pid() int { return s.cmd.Process.Pid }

// count returns the messages dumped so far: those received and those
// still being received (smtp-sink creates the file at the start of the
// transaction).
func (s *sink) count() int {
	f, err := os.Open(s.dumpDir)
	if err != nil {
		return 0
	}
	defer f.Close()
	names, _ := f.Readdirnames(-1)
	return len(names)
}

// sinkCheck is what the dump files tell once the load is over.
type sinkCheck struct {
	files int       // messages the sink received
	last  time.Time // the latest modification of a dump file: the end of the last message
	// distinct Message-IDs among the files, and the files without one
	ids, noID int
	// wrongRcpt counts files whose recipient is not in the remote domain
	wrongRcpt int
}

// check reads every dump file.
func (s *sink) check() sinkCheck {
	var c sinkCheck
	ents, _ := os.ReadDir(s.dumpDir)
	seen := map[string]bool{}
	for _, e := range ents {
		c.files++
		if info, err := e.Info(); err == nil && info.ModTime().After(c.last) {
			c.last = info.ModTime()
		}
		f, err := os.Open(filepath.Join(s.dumpDir, e.Name()))
		if err != nil {
			continue
		}
		id, rcptOK := "", false
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line := sc.Text()
			if line == "" {
				break // end of the header
			}
			if v, ok := strings.CutPrefix(line, "X-Rcpt-Args: "); ok && strings.Contains(strings.ToLower(v), "@"+remoteDomain+">") {
				rcptOK = true
			}
			if len(line) > 11 && strings.EqualFold(line[:11], "Message-ID:") {
				id = strings.TrimSpace(line[11:])
			}
		}
		f.Close()
		if !rcptOK {
			c.wrongRcpt++
		}
		if id == "" {
			c.noID++
		} else {
			seen[id] = true
		}
	}
	c.ids = len(seen)
	return c
}

// Stop ends smtp-sink (SIGTERM to its process group, which is itself).
func (s *sink) Stop() {
	if s == nil || s.cmd == nil || s.cmd.Process == nil || s.waited == nil {
		return
	}
	select {
	case <-s.waited:
		return
	default:
	}
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-s.waited:
	case <-time.After(5 * time.Second):
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.waited
	}
}
