// Package daemon is the child side of master's supervision: every daemon's
// main calls Start, then serves on the listeners master bound for it until
// Ctx is done.
//
// Master hands listeners down as inherited file descriptors, described by
// two environment variables:
//
//	POSTHORN_FDS=smtp:3,smtp:4,qmgr:5   service name : descriptor, one per listener
//	POSTHORN_MASTER_FD=6                read end of a pipe master keeps open
//
// Master never writes to the pipe; end of file on it means master is gone,
// and a daemon must not outlive its master. Started by hand without these
// variables a daemon has no listeners and stops on signals only.
package daemon

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/posthorn/posthorn/pkg/config"
	"github.com/posthorn/posthorn/pkg/maillog"
)

// Environment variables of the inheritance protocol.
const (
	EnvFDs      = "POSTHORN_FDS"
	EnvMasterFD = "POSTHORN_MASTER_FD"
)

// ErrMasterGone is Ctx's cause when master exited.
var ErrMasterGone = errors.New("master process went away")

// D is one running daemon.
type D struct {
	Name string
	// Cfg is the configuration the daemon started with. After a reload the
	// daemon receives the new one on Reload; Config returns the latest.
	Cfg       *config.Config
	Log       *maillog.Logger
	Listeners map[string][]net.Listener
	// Ctx is cancelled on SIGTERM or SIGINT (stop accepting, finish what
	// is in flight) or when master goes away; context.Cause tells which.
	Ctx context.Context
	// Reload delivers a new, valid configuration after SIGHUP. It holds at
	// most one: a daemon that is slow to look sees the newest.
	Reload <-chan *config.Config

	mu     sync.Mutex
	cur    *config.Config
	reload chan *config.Config
	cancel context.CancelCauseFunc
}

// Start parses -c FILE (define other flags before calling it), loads the
// configuration, sets up logging as configured and takes the listeners
// inherited from master. Any error is fatal: a daemon that cannot start
// correctly must not start at all.
func Start(name string) *D {
	cf := flag.Lookup("c")
	if cf == nil {
		flag.String("c", config.PathFromEnv(), "configuration `file`")
		cf = flag.Lookup("c")
	}
	if !flag.Parsed() {
		flag.Parse()
	}
	maillog.Setup("posthorn", name, "stderr")
	cfg, err := config.Load(cf.Value.String())
	if err != nil {
		maillog.Fatal("%v", err)
	}
	log := maillog.Setup(cfg.Log.SyslogName, name, cfg.Log.Target)
	d, err := New(name, cfg, log)
	if err != nil {
		log.Fatal("%v", err)
	}
	return d
}

// New is Start without flag parsing and configuration loading, for daemons
// and tests that already hold a configuration.
func New(name string, cfg *config.Config, log *maillog.Logger) (*D, error) {
	listeners, masterPipe, err := inherit()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	reload := make(chan *config.Config, 1)
	d := &D{
		Name: name, Cfg: cfg, Log: log, Listeners: listeners,
		Ctx: ctx, Reload: reload,
		cur: cfg, reload: reload, cancel: cancel,
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	go d.signals(sigs)
	if masterPipe != nil {
		go d.watchMaster(masterPipe)
	}
	return d, nil
}

// Config returns the current configuration.
func (d *D) Config() *config.Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cur
}

func (d *D) signals(sigs chan os.Signal) {
	for s := range sigs {
		sig := s.(syscall.Signal)
		if sig == syscall.SIGHUP {
			d.reloadConfig()
			continue
		}
		d.cancel(fmt.Errorf("terminating on signal %d", sig))
		// A second signal takes the default action: an admin who asks
		// twice means now.
		signal.Reset(syscall.SIGTERM, syscall.SIGINT)
	}
}

func (d *D) reloadConfig() {
	path := d.Config().Path
	cfg, err := config.Load(path)
	if err != nil {
		d.Log.Warning("%v; keeping the old configuration", err)
		return
	}
	d.mu.Lock()
	d.cur = cfg
	d.mu.Unlock()
	// This goroutine is the only sender: after draining there is room.
	select {
	case <-d.reload:
	default:
	}
	d.reload <- cfg
}

func (d *D) watchMaster(f *os.File) {
	var b [1]byte
	f.Read(b[:]) // master never writes: any return means it is gone
	d.cancel(ErrMasterGone)
	// Normally the kernel's parent-death signal has already ended us. If
	// not, finish in-flight work for at most the stop grace, then go.
	grace := d.Config().Master.StopGrace.D()
	time.AfterFunc(grace, func() {
		d.Log.Warning("master process went away; exiting after %s", grace)
		os.Exit(1)
	})
}

// inherit takes the descriptors named in the environment and clears the
// variables so that processes this daemon starts do not claim them.
func inherit() (map[string][]net.Listener, *os.File, error) {
	fds, mfd := os.Getenv(EnvFDs), os.Getenv(EnvMasterFD)
	os.Unsetenv(EnvFDs)
	os.Unsetenv(EnvMasterFD)
	listeners := map[string][]net.Listener{}
	if fds != "" {
		for _, ent := range strings.Split(fds, ",") {
			name, num, ok := strings.Cut(ent, ":")
			fd, err := strconv.Atoi(num)
			if !ok || name == "" || err != nil || fd < 3 {
				return nil, nil, fmt.Errorf("%s: bad entry %q", EnvFDs, ent)
			}
			f := os.NewFile(uintptr(fd), name)
			l, err := net.FileListener(f)
			// FileListener holds its own copy; ours would leak into
			// every process the daemon starts.
			f.Close()
			if err != nil {
				return nil, nil, fmt.Errorf("%s: descriptor %d (%s): %w", EnvFDs, fd, name, err)
			}
			listeners[name] = append(listeners[name], l)
		}
	}
	var master *os.File
	if mfd != "" {
		fd, err := strconv.Atoi(mfd)
		if err != nil || fd < 3 {
			return nil, nil, fmt.Errorf("%s: bad descriptor %q", EnvMasterFD, mfd)
		}
		syscall.CloseOnExec(fd)
		master = os.NewFile(uintptr(fd), "master")
	}
	return listeners, master, nil
}
