package pickup

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/posthorn/posthorn/pkg/address"
	"github.com/posthorn/posthorn/pkg/config"
	"github.com/posthorn/posthorn/pkg/daemon"
	"github.com/posthorn/posthorn/pkg/ipc"
	"github.com/posthorn/posthorn/pkg/maillog"
	"github.com/posthorn/posthorn/pkg/qmgr"
	"github.com/posthorn/posthorn/pkg/spool"
)

// Server queues locally submitted mail.
type Server struct {
	log    *maillog.Logger
	spool  *spool.Spool
	notify *qmgr.Notifier

	mu  sync.Mutex
	cfg *config.Config
}

// NewServer returns a pickup server for cfg.
func NewServer(cfg *config.Config, log *maillog.Logger) *Server {
	return &Server{log: log, cfg: cfg, spool: spool.Open(cfg.SpoolDir),
		notify: qmgr.NewNotifier(filepath.Join(cfg.SpoolDir, spool.Private, "qmgr"))}
}

func (s *Server) config() *config.Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

// Run is the pickup daemon: it serves the "pickup" socket inherited from
// master and drains maildrop/ until told to stop.
func Run(d *daemon.D) error {
	s := NewServer(d.Config(), d.Log)
	go func() {
		for cfg := range d.Reload {
			s.mu.Lock()
			s.cfg = cfg
			s.mu.Unlock()
		}
	}()
	if ls := d.Listeners["pickup"]; len(ls) > 0 {
		go s.Serve(d.Ctx, ls[0])
	}
	s.WatchMaildrop(d.Ctx)
	return nil
}

// Serve answers sendmail on l.
func (s *Server) Serve(ctx context.Context, l net.Listener) {
	go func() { <-ctx.Done(); l.Close() }()
	for {
		nc, err := l.Accept()
		if err != nil {
			return
		}
		uc, ok := nc.(*net.UnixConn)
		if !ok {
			nc.Close()
			continue
		}
		go s.serveConn(uc)
	}
}

func (s *Server) serveConn(uc *net.UnixConn) {
	c := ipc.New(uc)
	defer c.Close()
	uid, err := c.PeerUID()
	if err != nil {
		s.log.Warning("pickup connection without credentials: %v", err)
		return
	}
	c.SetDeadline(time.Now().Add(5 * time.Minute))
	var req Request
	files, err := c.Receive(&req)
	if err != nil {
		return
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	if len(files) != 1 {
		c.Send(Reply{Error: "request without message"})
		return
	}
	id, temp, err := s.queue(&req, uid, files[0])
	if err != nil {
		c.Send(Reply{Error: err.Error(), Temp: temp})
		return
	}
	c.Send(Reply{QueueID: id})
}

// queue validates a submission and writes it to the spool. temp reports
// whether a failure is worth retrying.
func (s *Server) queue(req *Request, uid int, content *os.File) (id string, temp bool, err error) {
	cfg := s.config()
	sender := req.Sender
	if sender != "" {
		m, err := address.ParseMailbox(sender)
		if err != nil {
			return "", false, fmt.Errorf("bad sender address %q: %v", sender, err)
		}
		sender = m.String()
	}
	env := &spool.Envelope{Sender: sender, Attrs: map[string]string{"origin": "pickup", "uid": strconv.Itoa(uid)}}
	if req.Ret != "" {
		env.Attrs["ret"] = strings.ToUpper(req.Ret)
	}
	if req.EnvID != "" {
		env.Attrs["envid"] = req.EnvID
	}
	if len(req.Recipients) == 0 || len(req.Recipients) > maxDropRcpts {
		return "", false, fmt.Errorf("need 1 to %d recipients, got %d", maxDropRcpts, len(req.Recipients))
	}
	for _, r := range req.Recipients {
		m, err := address.ParseMailbox(r)
		if err != nil || m.IsNull() {
			return "", false, fmt.Errorf("bad recipient address %q", r)
		}
		rc := spool.Recipient{Addr: m.String()}
		if req.Notify != "" {
			rc.Params = map[string]string{"NOTIFY": strings.ToUpper(req.Notify)}
		}
		env.Rcpts = append(env.Rcpts, rc)
	}
	st, err := content.Stat()
	if err != nil {
		return "", true, err
	}
	if st.Size() > cfg.MessageSizeLimit {
		return "", false, fmt.Errorf("message file too big (%d bytes, limit %d)", st.Size(), cfg.MessageSizeLimit)
	}
	w, err := s.spool.Create(env)
	if err != nil {
		s.log.Warning("%v", err)
		return "", true, errors.New("queue file write error")
	}
	// Postfix's Received: for local submissions.
	fmt.Fprintf(w, "Received: by %s (posthorn, from userid %d)\n\tid %s; %s\n",
		cfg.Hostname, uid, w.ID(), time.Now().Format("Mon, 2 Jan 2006 15:04:05 -0700 (MST)"))
	if _, err := io.Copy(w, io.NewSectionReader(content, 0, cfg.MessageSizeLimit)); err != nil {
		w.Abort()
		return "", true, errors.New("queue file write error")
	}
	if err := w.Commit(); err != nil {
		s.log.Warning("%v", err)
		return "", true, errors.New("queue file write error")
	}
	s.log.Info("%s: uid=%d from=<%s>", w.ID(), uid, sender)
	if err := s.notify.Notify(qmgr.Notice{Op: "new", ID: w.ID()}); err != nil {
		s.log.Warning("cannot notify qmgr (the message waits for its next scan): %v", err)
	}
	return w.ID(), false, nil
}

// WatchMaildrop queues files left in maildrop/ now, whenever a new one
// appears (inotify), and every few seconds in case a notification is lost.
func (s *Server) WatchMaildrop(ctx context.Context) {
	dir := filepath.Join(s.config().SpoolDir, spool.Maildrop)
	wake := make(chan struct{}, 1)
	if fd, err := unix.InotifyInit1(unix.IN_CLOEXEC); err == nil {
		if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_MOVED_TO|unix.IN_CLOSE_WRITE); err == nil {
			go func() {
				buf := make([]byte, 4096)
				for {
					if _, err := unix.Read(fd, buf); err != nil && err != unix.EINTR {
						return
					}
					select {
					case wake <- struct{}{}:
					default:
					}
				}
			}()
			defer unix.Close(fd)
		} else {
			unix.Close(fd)
		}
	}
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		s.drainMaildrop(dir)
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-tick.C:
		}
	}
}

func (s *Server) drainMaildrop(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		s.log.Warning("maildrop: %v", err)
		return
	}
	names, _ := d.Readdirnames(-1)
	d.Close()
	for _, n := range names {
		p := filepath.Join(dir, n)
		if strings.HasPrefix(n, ".") {
			// A sendmail that died mid-write; its file is never finished.
			if st, err := os.Lstat(p); err == nil && time.Since(st.ModTime()) > 24*time.Hour {
				os.Remove(p)
			}
			continue
		}
		if !validDropName(n) {
			s.log.Warning("maildrop: removing unexpected file %q", n)
			os.Remove(p)
			continue
		}
		s.pickupFile(p)
	}
}

func validDropName(n string) bool {
	if len(n) != 32 {
		return false
	}
	for _, c := range []byte(n) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// pickupFile queues one maildrop file, on behalf of the file's owner.
func (s *Server) pickupFile(p string) {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		s.log.Warning("maildrop: %v; removed", err)
		os.Remove(p)
		return
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Nlink != 1 {
		s.log.Warning("maildrop: %s is not a regular file with one link; removed", filepath.Base(p))
		os.Remove(p)
		return
	}
	uid := int(st.Uid)
	br := bufio.NewReaderSize(f, 8192)
	req, err := DecodeDrop(br)
	if err != nil {
		s.log.Warning("maildrop: %s from uid %d: %v; removed", filepath.Base(p), uid, err)
		os.Remove(p)
		return
	}
	// The rest of the file is the message: copy it into a private file so
	// queue() reads exactly what was there when it was checked.
	tmp, err := unix.MemfdCreate("posthorn-maildrop", unix.MFD_CLOEXEC)
	if err != nil {
		s.log.Warning("maildrop: %v", err)
		return
	}
	mf := os.NewFile(uintptr(tmp), "maildrop-message")
	defer mf.Close()
	limit := s.config().MessageSizeLimit
	if _, err := io.Copy(mf, io.LimitReader(br, limit+1)); err != nil {
		s.log.Warning("maildrop: %v", err)
		return
	}
	id, temp, err := s.queue(req, uid, mf)
	if err != nil {
		if temp {
			s.log.Warning("maildrop: %s: %v (kept for a later try)", filepath.Base(p), err)
			return
		}
		// Nobody is waiting for an answer: the user's mail is refused in
		// the log, as Postfix's pickup does for bad submissions.
		s.log.Warning("maildrop: %s from uid %d: %v; removed", filepath.Base(p), uid, err)
		os.Remove(p)
		return
	}
	if err := os.Remove(p); err != nil {
		s.log.Warning("%s: cannot remove maildrop file %s: %v", id, filepath.Base(p), err)
	}
}
