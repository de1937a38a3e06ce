package local

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/posthorn/posthorn/pkg/ipc"
	"github.com/posthorn/posthorn/pkg/maildir"
	"github.com/posthorn/posthorn/pkg/maillog"
)

// A worker is the local program re-executed as one set of credentials
// ("local worker"), talking to its parent over a socketpair on fd 3. It
// serves many requests concurrently (ops.go) and exits when the parent
// closes the connection (idle for workerIdle, or the parent is gone).

const workerIdle = 60 * time.Second

// WorkerArg is the first argument that starts the local program as a worker.
const WorkerArg = "worker"

// executable finds the program to start workers from; tests replace it.
var executable = os.Executable

// creds are what a worker runs as: a uid, its gid, and at most one
// supplementary group (-1 for none). The only supplementary group ever
// given is the mail spool folder's (mail on Debian), to an mbox delivery,
// so it can create the dotlock there; commands, files, Maildirs and file
// reads run with none.
type creds struct {
	uid, gid, group int
}

type workerPool struct {
	log  *maillog.Logger
	host string // names the Maildir files
	mu   sync.Mutex
	m    map[creds]*worker
}

func newWorkerPool(log *maillog.Logger, hostname string) *workerPool {
	p := &workerPool{log: log, host: hostname, m: map[creds]*worker{}}
	go p.reap()
	return p
}

type result struct {
	rep  workReply
	file *os.File
}

type worker struct {
	key  creds
	conn *ipc.Conn
	// raw is conn's socket. fail closes it rather than conn: ipc.Conn.Close
	// waits for a Receive in progress, and readLoop is always in one.
	raw     *net.UnixConn
	cmd     *exec.Cmd
	mu      sync.Mutex
	seq     uint64
	pending map[uint64]chan result
	dead    bool
	last    time.Time
}

// call runs one request as c; qf is the queue file, nil for requests that
// need none. A file in the reply (an opened ~/.forward) is returned open.
func (p *workerPool) call(c creds, req workRequest, qf *os.File) (workReply, *os.File, error) {
	for try := 0; try < 2; try++ {
		w, err := p.get(c)
		if err != nil {
			return workReply{}, nil, err
		}
		res, err := w.call(req, qf)
		if errors.Is(err, errWorkerGone) && try == 0 {
			continue // it exited between requests: start another
		}
		if err != nil {
			return workReply{}, nil, err
		}
		return res.rep, res.file, nil
	}
	return workReply{}, nil, errWorkerGone
}

var errWorkerGone = errors.New("delivery worker exited")

func (p *workerPool) get(c creds) (*worker, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if w := p.m[c]; w != nil && !w.isDead() {
		return w, nil
	}
	w, err := startWorker(c, p.host)
	if err != nil {
		return nil, fmt.Errorf("start delivery worker for uid %d: %w", c.uid, err)
	}
	w.key = c
	p.m[c] = w
	return w, nil
}

func startWorker(c creds, host string) (*worker, error) {
	exe, err := executable()
	if err != nil {
		return nil, err
	}
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	parent := os.NewFile(uintptr(fds[0]), "worker-parent")
	child := os.NewFile(uintptr(fds[1]), "worker-child")
	defer child.Close()
	cmd := exec.Command(exe, WorkerArg, host)
	cmd.ExtraFiles = []*os.File{child}
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	cmd.Dir = "/"
	cmd.Stderr = os.Stderr
	groups := []uint32{}
	if c.group >= 0 {
		groups = []uint32{uint32(c.group)}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: uint32(c.uid), Gid: uint32(c.gid), Groups: groups},
		Pdeathsig:  syscall.SIGKILL,
	}
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
	raw := nc.(*net.UnixConn)
	w := &worker{conn: ipc.New(raw), raw: raw, cmd: cmd, pending: map[uint64]chan result{}, last: time.Now()}
	go w.readLoop()
	return w, nil
}

func (w *worker) isDead() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.dead
}

func (w *worker) call(req workRequest, qf *os.File) (result, error) {
	ch := make(chan result, 1)
	w.mu.Lock()
	if w.dead {
		w.mu.Unlock()
		return result{}, errWorkerGone
	}
	w.seq++
	req.Seq = w.seq
	w.pending[req.Seq] = ch
	w.last = time.Now()
	w.mu.Unlock()
	var files []*os.File
	if qf != nil {
		files = append(files, qf)
	}
	if err := w.conn.Send(req, files...); err != nil {
		w.fail()
		return result{}, errWorkerGone
	}
	res, ok := <-ch
	w.mu.Lock()
	w.last = time.Now()
	w.mu.Unlock()
	if !ok {
		return result{}, errWorkerGone
	}
	return res, nil
}

func (w *worker) readLoop() {
	for {
		var rep workReply
		files, err := w.conn.Receive(&rep)
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			w.fail()
			w.conn.Close() // no Receive in progress now
			return
		}
		var file *os.File
		for i, f := range files {
			if i == 0 {
				file = f
			} else {
				f.Close()
			}
		}
		w.mu.Lock()
		ch := w.pending[rep.Seq]
		delete(w.pending, rep.Seq)
		w.mu.Unlock()
		if ch != nil {
			ch <- result{rep: rep, file: file}
		} else if file != nil {
			file.Close()
		}
	}
}

// fail marks the worker dead and fails every request waiting on it; those
// recipients are deferred and retried.
func (w *worker) fail() {
	w.mu.Lock()
	if w.dead {
		w.mu.Unlock()
		return
	}
	w.dead = true
	for seq, ch := range w.pending {
		close(ch)
		delete(w.pending, seq)
	}
	w.mu.Unlock()
	// The worker sees its parent go and exits; readLoop's Receive fails
	// and it closes conn.
	w.raw.Close()
	go w.cmd.Wait()
}

// reap closes workers that have been idle, so no process per user lingers.
func (p *workerPool) reap() {
	for range time.Tick(workerIdle / 4) {
		p.mu.Lock()
		for k, w := range p.m {
			w.mu.Lock()
			idle := len(w.pending) == 0 && time.Since(w.last) > workerIdle
			w.mu.Unlock()
			if idle || w.isDead() {
				w.fail()
				delete(p.m, k)
			}
		}
		p.mu.Unlock()
	}
}

func (p *workerPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, w := range p.m {
		w.fail()
		delete(p.m, k)
	}
}

// RunWorker is the worker's main loop: fd 3 is the connection to the parent,
// hostname names the Maildir files. It returns when the parent goes away.
func RunWorker(hostname string) error {
	f := os.NewFile(3, "parent")
	nc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("local worker: %w", err)
	}
	conn := ipc.New(nc.(*net.UnixConn))
	defer conn.Close()
	mw := maildir.NewWriter(hostname)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		var req workRequest
		files, err := conn.Receive(&req)
		if err != nil {
			return nil
		}
		var qf *os.File
		for i, f := range files {
			if i == 0 {
				qf = f
			} else {
				f.Close()
			}
		}
		if req.needsMessage() && qf == nil {
			conn.Send(workReply{Seq: req.Seq, Err: "request without message file"})
			continue
		}
		wg.Add(1)
		go func(req workRequest, qf *os.File) {
			defer wg.Done()
			if qf != nil {
				defer qf.Close()
			}
			rep, out := runOp(req, qf, mw)
			rep.Seq = req.Seq
			if out != nil {
				conn.Send(rep, out)
				out.Close()
			} else {
				conn.Send(rep)
			}
		}(req, qf)
	}
}
