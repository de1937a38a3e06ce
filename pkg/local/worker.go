package local

import (
	"errors"
	"fmt"
	"io"
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

// A worker is the local program re-executed as one mailbox owner
// ("local worker"), talking to its parent over a socketpair on fd 3. It
// serves many deliveries concurrently and exits when the parent closes the
// connection (idle for workerIdle, or the parent is gone).

const workerIdle = 60 * time.Second

// WorkerArg is the first argument that starts the local program as a worker.
const WorkerArg = "worker"

type workRequest struct {
	Seq    uint64 `json:"seq"`
	Root   string `json:"root"`
	Prefix []byte `json:"prefix"`
	Offset int64  `json:"offset"`
	Size   int64  `json:"size"`
}

type workReply struct {
	Seq  uint64 `json:"seq"`
	Name string `json:"name,omitempty"`
	Err  string `json:"err,omitempty"`
}

type workerPool struct {
	log  *maillog.Logger
	host string // names the Maildir files
	mu   sync.Mutex
	m    map[[2]int]*worker
}

func newWorkerPool(log *maillog.Logger, hostname string) *workerPool {
	p := &workerPool{log: log, host: hostname, m: map[[2]int]*worker{}}
	go p.reap()
	return p
}

type worker struct {
	key     [2]int
	conn    *ipc.Conn
	cmd     *exec.Cmd
	mu      sync.Mutex
	seq     uint64
	pending map[uint64]chan workReply
	dead    bool
	last    time.Time
}

// deliver runs one Maildir delivery as uid:gid.
func (p *workerPool) deliver(uid, gid int, req workRequest, qf *os.File) error {
	for try := 0; try < 2; try++ {
		w, err := p.get(uid, gid)
		if err != nil {
			return err
		}
		rep, err := w.call(req, qf)
		if errors.Is(err, errWorkerGone) && try == 0 {
			continue // it exited between requests: start another
		}
		if err != nil {
			return err
		}
		if rep.Err != "" {
			return errors.New(rep.Err)
		}
		return nil
	}
	return errWorkerGone
}

var errWorkerGone = errors.New("delivery worker exited")

func (p *workerPool) get(uid, gid int) (*worker, error) {
	key := [2]int{uid, gid}
	p.mu.Lock()
	defer p.mu.Unlock()
	if w := p.m[key]; w != nil && !w.isDead() {
		return w, nil
	}
	w, err := startWorker(uid, gid, p.host)
	if err != nil {
		return nil, fmt.Errorf("start delivery worker for uid %d: %w", uid, err)
	}
	w.key = key
	p.m[key] = w
	return w, nil
}

func startWorker(uid, gid int, host string) (*worker, error) {
	exe, err := os.Executable()
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
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}},
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
	w := &worker{conn: ipc.New(nc.(*net.UnixConn)), cmd: cmd, pending: map[uint64]chan workReply{}, last: time.Now()}
	go w.readLoop()
	return w, nil
}

func (w *worker) isDead() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.dead
}

func (w *worker) call(req workRequest, qf *os.File) (workReply, error) {
	ch := make(chan workReply, 1)
	w.mu.Lock()
	if w.dead {
		w.mu.Unlock()
		return workReply{}, errWorkerGone
	}
	w.seq++
	req.Seq = w.seq
	w.pending[req.Seq] = ch
	w.last = time.Now()
	w.mu.Unlock()
	if err := w.conn.Send(req, qf); err != nil {
		w.fail()
		return workReply{}, errWorkerGone
	}
	rep, ok := <-ch
	if !ok {
		return workReply{}, errWorkerGone
	}
	return rep, nil
}

func (w *worker) readLoop() {
	for {
		var rep workReply
		files, err := w.conn.Receive(&rep)
		for _, f := range files {
			f.Close()
		}
		if err != nil {
			w.fail()
			return
		}
		w.mu.Lock()
		ch := w.pending[rep.Seq]
		delete(w.pending, rep.Seq)
		w.mu.Unlock()
		if ch != nil {
			ch <- rep
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
	w.conn.Close()
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
		if len(files) != 1 {
			for _, f := range files {
				f.Close()
			}
			conn.Send(workReply{Seq: req.Seq, Err: "request without message file"})
			continue
		}
		wg.Add(1)
		go func(req workRequest, qf *os.File) {
			defer wg.Done()
			defer qf.Close()
			name, err := mw.Deliver(req.Root, req.Prefix, io.NewSectionReader(qf, req.Offset, req.Size))
			rep := workReply{Seq: req.Seq, Name: name}
			if err != nil {
				rep.Err = err.Error()
			}
			conn.Send(rep)
		}(req, files[0])
	}
}
