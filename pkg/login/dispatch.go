package login

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/posthorn/posthorn/pkg/ipc"
	"github.com/posthorn/posthorn/pkg/maillog"
)

// WorkerArg is the first argument that starts a mail program as a worker.
const WorkerArg = "worker"

// Dispatcher receives handed-over connections and passes each to the
// worker of its mailbox's owner.
type Dispatcher struct {
	Service string
	Log     *maillog.Logger
	// Resolve asks the auth daemon whose one-time token this is.
	Resolve func(ctx context.Context, token string) (user string, err error)
	// Lookup finds a user's mailbox and its owner.
	Lookup func(user string) (Mailbox, error)
	// Exe is the program re-executed as "Exe worker Args..." (default:
	// ourselves); Args typically carry "-c CONFIG".
	Exe  string
	Args []string
	// Timeout bounds each step of taking a session (default
	// handoffTimeout).
	Timeout time.Duration

	mu      sync.Mutex
	workers map[[2]int]*workerProc
}

func (d *Dispatcher) timeout() time.Duration {
	if d.Timeout > 0 {
		return d.Timeout
	}
	return handoffTimeout
}

// Serve accepts handoffs on l until ctx ends. Sessions already handed to
// workers are theirs: stopping the dispatcher does not cut them.
func (d *Dispatcher) Serve(ctx context.Context, l net.Listener) error {
	go func() { <-ctx.Done(); l.Close() }()
	for {
		nc, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		uc, ok := nc.(*net.UnixConn)
		if !ok {
			nc.Close()
			continue
		}
		go d.serveConn(ctx, ipc.New(uc))
	}
}

func (d *Dispatcher) serveConn(ctx context.Context, c *ipc.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(d.timeout()))
	var h handoff
	files, err := c.Receive(&h)
	if err != nil {
		return
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	fail := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		d.Log.Warning("%s handoff: %s", d.Service, msg)
		c.Send(reply{Error: msg})
	}
	if len(files) != 1 {
		fail("request without a connection")
		return
	}
	user, err := d.Resolve(ctx, h.Token)
	if err != nil {
		fail("token not accepted: %v", err)
		return
	}
	mb, err := d.Lookup(user)
	if err != nil {
		fail("no mailbox for %s: %v", user, err)
		return
	}
	s := h.Session
	s.Service, s.User, s.Maildir = d.Service, user, mb.Maildir
	if err := d.toWorker(mb, s, files[0]); err != nil {
		fail("%v", err)
		return
	}
	c.Send(reply{OK: true})
}

func (d *Dispatcher) toWorker(mb Mailbox, s Session, f *os.File) error {
	for try := 0; try < 2; try++ {
		w, err := d.worker(mb.UID, mb.GID)
		if err != nil {
			return err
		}
		if err := w.send(s, f); err == nil {
			return nil
		}
	}
	return fmt.Errorf("%s worker for uid %d does not answer", d.Service, mb.UID)
}

// worker returns the running worker for uid:gid, starting one if needed.
func (d *Dispatcher) worker(uid, gid int) (*workerProc, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.workers == nil {
		d.workers = map[[2]int]*workerProc{}
	}
	key := [2]int{uid, gid}
	if w := d.workers[key]; w != nil && !w.isDead() {
		return w, nil
	}
	if uid != os.Geteuid() && os.Geteuid() != 0 {
		return nil, fmt.Errorf("cannot serve uid %d: the %s dispatcher does not run as root", uid, d.Service)
	}
	w, err := d.startWorker(uid, gid)
	if err != nil {
		return nil, fmt.Errorf("start %s worker for uid %d: %w", d.Service, uid, err)
	}
	d.workers[key] = w
	go w.readLoop(d, key)
	return w, nil
}

type workerProc struct {
	timeout time.Duration
	conn    *ipc.Conn
	cmd     *exec.Cmd
	mu      sync.Mutex
	dead    bool
}

func (w *workerProc) isDead() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.dead
}

func (w *workerProc) send(s Session, f *os.File) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.dead {
		return fmt.Errorf("worker exited")
	}
	// A write deadline only, and cleared after: readLoop is blocked reading
	// this connection for as long as the worker lives, and a read deadline
	// left here would end it one timeout after the last session came.
	w.conn.SetWriteDeadline(time.Now().Add(w.timeout))
	err := w.conn.Send(workerMsg{Op: "session", Session: &s}, f)
	w.conn.SetWriteDeadline(time.Time{})
	if err != nil {
		w.dead = true
		w.conn.Close()
		return err
	}
	return nil
}

// workerMsg travels between dispatcher and worker.
type workerMsg struct {
	Op      string   `json:"op"` // session (→ worker), idle (→ dispatcher), exit (→ worker)
	Session *Session `json:"session,omitempty"`
}

// readLoop answers a worker that wants to exit: under the lock, so no
// session can be sent after it is told to go.
func (w *workerProc) readLoop(d *Dispatcher, key [2]int) {
	for {
		var m workerMsg
		files, err := w.conn.Receive(&m)
		for _, f := range files {
			f.Close()
		}
		if err != nil || m.Op == "idle" {
			d.mu.Lock()
			w.mu.Lock()
			w.dead = true
			if err == nil {
				w.conn.Send(workerMsg{Op: "exit"})
			}
			w.mu.Unlock()
			if d.workers[key] == w {
				delete(d.workers, key)
			}
			d.mu.Unlock()
			w.conn.Close()
			w.cmd.Wait()
			return
		}
	}
}

func (d *Dispatcher) startWorker(uid, gid int) (*workerProc, error) {
	exe := d.Exe
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return nil, err
		}
	}
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	parent := os.NewFile(uintptr(fds[0]), "worker-parent")
	child := os.NewFile(uintptr(fds[1]), "worker-child")
	defer child.Close()
	cmd := exec.Command(exe, append([]string{WorkerArg}, d.Args...)...)
	cmd.ExtraFiles = []*os.File{child}
	cmd.Env = append(os.Environ()[:0:0], "PATH=/usr/bin:/bin")
	for _, k := range []string{"POSTHORN_CONFIG"} {
		if v, ok := os.LookupEnv(k); ok {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	cmd.Dir = "/"
	cmd.Stderr = os.Stderr
	attr := &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if os.Geteuid() == 0 && (uid != 0 || gid != 0) {
		attr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
	}
	cmd.SysProcAttr = attr
	if err := cmd.Start(); err != nil {
		parent.Close()
		return nil, err
	}
	nc, err := net.FileConn(parent)
	parent.Close()
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, err
	}
	return &workerProc{timeout: d.timeout(), conn: ipc.New(nc.(*net.UnixConn)), cmd: cmd}, nil
}
