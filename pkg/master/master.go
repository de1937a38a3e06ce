// Package master is posthorn's supervisor (DESIGN §1). It runs as root only
// to bind privileged ports, create the daemons' sockets and start each
// daemon under its configured user; it never reads network input. It
// restarts crashed daemons with backoff, reloads on SIGHUP and stops
// everything on SIGTERM.
package master

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/posthorn/posthorn/pkg/certgen"
	"github.com/posthorn/posthorn/pkg/config"
	"github.com/posthorn/posthorn/pkg/daemon"
	"github.com/posthorn/posthorn/pkg/maillog"
	"github.com/posthorn/posthorn/pkg/spool"
	"golang.org/x/sys/unix"
)

// Version is logged at start and reload.
var Version = "0.1"

// ErrRunning and ErrNotRunning are what the control helpers report.
var (
	ErrRunning    = errors.New("the posthorn mail system is already running")
	ErrNotRunning = errors.New("the posthorn mail system is not running")
)

// killWait bounds the wait for SIGKILLed processes to be reaped at stop.
const killWait = 5 * time.Second

type service struct {
	spec
	path      string
	cred      *syscall.Credential
	listeners []*listener
	child     *child // nil while not running
	backoff   time.Duration
	gen       int // invalidates pending restart timers
	timer     *time.Timer
	restart   bool // start again as soon as the current child exits
	removed   bool // gone from the configuration; do not restart
}

type child struct {
	svc      *service
	cmd      *exec.Cmd
	pid      int
	started  time.Time
	stopping bool // asked to stop: its exit is no crash
	reaped   bool
}

type wake struct {
	s   *service
	gen int
}

// Master is one running supervisor. Its state belongs to the goroutine
// running loop; timers and exit watchers report through channels.
type Master struct {
	cfg      *config.Config
	log      *maillog.Logger
	verbose  bool
	root     bool
	uid, gid int // the mail owner, -1 when master runs as the invoking user
	lock     *os.File
	pipeR    *os.File // passed to every child; EOF there means master is gone
	pipeW    *os.File // never written, closed only by master's exit
	env      []string
	notify   *notifier
	services []*service
	children map[*child]bool
	stopping bool

	exits   chan *child
	wake    chan wake
	overdue chan *child
	done    chan struct{}
}

// Run runs master with the configuration at configPath until SIGTERM or
// SIGINT. An error means master could not start; it has logged nothing
// about it, the caller reports it as fatal.
func Run(configPath string, verbose bool) error {
	cfg, err := config.Load(configPath)
	if err != nil {
		return err
	}
	m := &Master{
		cfg:      cfg,
		log:      maillog.Setup(cfg.Log.SyslogName, "master", cfg.Log.Target),
		verbose:  verbose,
		root:     os.Geteuid() == 0,
		uid:      -1,
		gid:      -1,
		notify:   newNotifier(),
		children: map[*child]bool{},
		exits:    make(chan *child),
		wake:     make(chan wake),
		overdue:  make(chan *child),
		done:     make(chan struct{}),
	}
	// As Postfix's master: files the daemons create are not group or
	// world writable whatever the invoking shell's umask was.
	syscall.Umask(022)
	// Before anything is started, so a stop request during start-up waits
	// in the channel instead of killing master halfway.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)

	if err := m.setup(); err != nil {
		m.release()
		return err
	}
	m.log.Info("daemon started -- version %s, configuration %s", Version, cfg.Path)
	for _, s := range m.services {
		m.start(s)
	}
	if err := m.notify.send("READY=1"); err != nil {
		m.log.Warning("%v", err)
	}
	m.loop(sigs)
	return nil
}

func (m *Master) setup() error {
	cfg := m.cfg
	specs, err := specs(cfg)
	if err != nil {
		return err
	}
	creds, err := m.credentials(specs)
	if err != nil {
		return err
	}
	if owner, err := credential(cfg.MailOwner, "mail_owner", m.root); err != nil {
		return err
	} else if owner != nil {
		m.uid, m.gid = int(owner.Uid), int(owner.Gid)
	}
	if err := spool.Prepare(cfg.SpoolDir, m.uid, m.gid); err != nil {
		return err
	}
	if m.lock, err = lockPidFile(PidFile(cfg)); err != nil {
		return err
	}
	if cfg.TLS.Generate {
		if err := certgen.Ensure(cfg.TLS.CertFile, cfg.TLS.KeyFile, cfg.Hostname, m.uid, m.gid); err != nil {
			return err
		}
	}
	if m.pipeR, m.pipeW, err = os.Pipe(); err != nil {
		return fmt.Errorf("master pipe: %w", err)
	}
	m.env = childEnv()
	for i, sp := range specs {
		s := &service{spec: sp, path: filepath.Join(cfg.DaemonDir, sp.name), cred: creds[i], backoff: minBackoff}
		if err := checkExecutable(s.path); err != nil {
			return err
		}
		m.services = append(m.services, s)
		for _, l := range sp.listen {
			bl, err := bind(l, m.uid, m.gid)
			if err != nil {
				return fmt.Errorf("%s: %w", sp.name, err)
			}
			s.listeners = append(s.listeners, bl)
		}
	}
	return nil
}

func (m *Master) credentials(specs []spec) ([]*syscall.Credential, error) {
	creds := make([]*syscall.Credential, len(specs))
	for i, sp := range specs {
		c, err := credential(sp.user, sp.setting, m.root)
		if err != nil {
			return nil, err
		}
		if sp.tls && c != nil {
			if g := keyGroup(m.cfg.TLS.KeyFile, c.Uid, c.Gid); g >= 0 {
				c.Groups = []uint32{uint32(g)}
			}
		}
		creds[i] = c
	}
	return creds, nil
}

func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0111 == 0 {
		return fmt.Errorf("%s: not an executable file", path)
	}
	return nil
}

// childEnv is master's environment without what belongs to master alone.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case daemon.EnvFDs, daemon.EnvMasterFD, "NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES":
			continue
		}
		env = append(env, kv)
	}
	return env
}

// release undoes setup: listeners closed, lock dropped and pid file gone.
// Socket files stay; the next master replaces them.
func (m *Master) release() {
	for _, s := range m.services {
		for _, l := range s.listeners {
			l.file.Close()
		}
	}
	if m.lock != nil {
		os.Remove(m.lock.Name()) // before unlocking: see lockPidFile
		m.lock.Close()
		m.lock = nil
	}
}

func (m *Master) loop(sigs <-chan os.Signal) {
	for {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				m.reload()
				continue
			}
			m.shutdown(sig.(syscall.Signal), sigs)
			return
		case c := <-m.exits:
			m.reaped(c)
		case w := <-m.wake:
			if w.gen == w.s.gen && w.s.child == nil && !w.s.removed {
				m.start(w.s)
			}
		case c := <-m.overdue:
			if !c.reaped {
				m.log.Warning("process %s pid %d did not stop within %s; killing it", c.svc.path, c.pid, m.cfg.Master.StopGrace.D())
				syscall.Kill(-c.pid, syscall.SIGKILL)
			}
		}
	}
}

// start forks s's daemon. Listeners come first in the child's descriptor
// table (3, 4, ...), the master pipe after them.
func (m *Master) start(s *service) {
	cmd := exec.Command(s.path, "-c", m.cfg.Path)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr // stdin stays /dev/null
	var fds []string
	for i, l := range s.listeners {
		cmd.ExtraFiles = append(cmd.ExtraFiles, l.file)
		fds = append(fds, fmt.Sprintf("%s:%d", l.name, 3+i))
	}
	cmd.ExtraFiles = append(cmd.ExtraFiles, m.pipeR)
	cmd.Env = append(m.env[:len(m.env):len(m.env)], fmt.Sprintf("%s=%d", daemon.EnvMasterFD, 3+len(s.listeners)))
	if len(fds) > 0 {
		cmd.Env = append(cmd.Env, daemon.EnvFDs+"="+strings.Join(fds, ","))
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Its own process group: a terminal's Ctrl-C reaches master only,
		// and one kill reaches the daemon and every worker it started.
		Setpgid:    true,
		Pdeathsig:  syscall.SIGKILL,
		Credential: s.cred,
	}
	var slack time.Duration
	if s.mailFlow {
		slack = mailFlowTimerSlack
	}
	if err := spawn(cmd, slack); err != nil {
		m.log.Warning("cannot start %s: %v", s.path, err)
		m.schedule(s)
		return
	}
	c := &child{svc: s, cmd: cmd, pid: cmd.Process.Pid, started: time.Now()}
	s.child = c
	m.children[c] = true
	if m.verbose {
		who := "as the invoking user"
		if s.cred != nil {
			who = fmt.Sprintf("as uid %d gid %d", s.cred.Uid, s.cred.Gid)
		}
		m.log.Info("started process %s pid %d %s", s.path, c.pid, who)
	}
	go m.watch(c)
}

// watch waits for c to exit without reaping it: until master has reaped
// it, its pid cannot be reused, so killing its process group is safe.
func (m *Master) watch(c *child) {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, c.pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			break
		}
	}
	select {
	case m.exits <- c:
	case <-m.done:
	}
}

// reaped handles a child that has exited.
func (m *Master) reaped(c *child) {
	// Workers it left behind go with it, then the pid is released.
	syscall.Kill(-c.pid, syscall.SIGKILL)
	c.cmd.Wait()
	c.reaped = true
	delete(m.children, c)
	s := c.svc
	if s.child == c {
		s.child = nil
	}
	if c.stopping {
		if m.verbose {
			m.log.Info("process %s pid %d stopped: %s", s.path, c.pid, status(c.cmd.ProcessState))
		}
		if s.restart && !s.removed && !m.stopping {
			s.restart = false
			s.backoff = minBackoff
			m.start(s)
		}
		return
	}
	m.log.Warning("process %s pid %d %s", s.path, c.pid, status(c.cmd.ProcessState))
	if m.stopping || s.removed {
		return
	}
	if time.Since(c.started) >= resetAfter {
		s.backoff = minBackoff
	}
	m.schedule(s)
}

func status(ps *os.ProcessState) string {
	ws, ok := ps.Sys().(syscall.WaitStatus)
	switch {
	case !ok:
		return ps.String()
	case ws.Signaled():
		return fmt.Sprintf("killed by signal %d", ws.Signal())
	default:
		return fmt.Sprintf("exit status %d", ws.ExitStatus())
	}
}

// schedule starts s again after its backoff, which then doubles.
func (m *Master) schedule(s *service) {
	d := s.backoff
	s.backoff = min(2*d, maxBackoff)
	s.gen++
	w := wake{s, s.gen}
	s.timer = time.AfterFunc(d, func() {
		select {
		case m.wake <- w:
		case <-m.done:
		}
	})
}

// stopChild asks c to stop and kills it if it has not after the grace.
func (m *Master) stopChild(c *child) {
	c.stopping = true
	c.cmd.Process.Signal(syscall.SIGTERM)
	time.AfterFunc(m.cfg.Master.StopGrace.D(), func() {
		select {
		case m.overdue <- c:
		case <-m.done:
		}
	})
}

// reload re-reads the configuration. A bad one changes nothing; a good one
// reaches every daemon by SIGHUP, and a service whose listeners, program
// or user changed is restarted on new listeners.
func (m *Master) reload() {
	cfg, err := config.Load(m.cfg.Path)
	if err == nil {
		err = m.reloadable(cfg)
	}
	var sps []spec
	if err == nil {
		sps, err = specs(cfg)
	}
	var creds []*syscall.Credential
	if err == nil {
		creds, err = m.credentials(sps)
	}
	if err != nil {
		m.log.Warning("%v; configuration not reloaded", err)
		return
	}
	if err := m.notify.send(reloading()); err != nil {
		m.log.Warning("%v", err)
	}
	if cfg.Log != m.cfg.Log {
		m.log = maillog.Setup(cfg.Log.SyslogName, "master", cfg.Log.Target)
	}
	m.log.Info("reload -- version %s, configuration %s", Version, cfg.Path)
	m.cfg = cfg
	if cfg.TLS.Generate {
		if err := certgen.Ensure(cfg.TLS.CertFile, cfg.TLS.KeyFile, cfg.Hostname, m.uid, m.gid); err != nil {
			m.log.Warning("%v", err)
		}
	}

	old := map[string]*service{}
	for _, s := range m.services {
		old[s.name] = s
	}
	var next []*service
	for i, sp := range sps {
		path := filepath.Join(cfg.DaemonDir, sp.name)
		s := old[sp.name]
		delete(old, sp.name)
		if s == nil {
			s = &service{spec: sp, path: path, cred: creds[i], backoff: minBackoff}
			ls, _, err := rebind(sp.listen, nil, m.uid, m.gid)
			if err != nil {
				m.log.Warning("%s: %v", sp.name, err)
				continue
			}
			s.listeners = ls
			next = append(next, s)
			m.start(s)
			continue
		}
		next = append(next, s)
		if path == s.path && sameCred(creds[i], s.cred) && sameListen(sp.listen, s.listeners) {
			if s.child != nil {
				s.child.cmd.Process.Signal(syscall.SIGHUP)
			}
			continue
		}
		ls, unused, err := rebind(sp.listen, s.listeners, m.uid, m.gid)
		if err != nil {
			m.log.Warning("%s: %v; keeping its old listeners", sp.name, err)
			if s.child != nil {
				s.child.cmd.Process.Signal(syscall.SIGHUP)
			}
			continue
		}
		for _, l := range unused {
			l.file.Close() // the old child keeps its own copy until it exits
		}
		s.spec, s.path, s.cred, s.listeners = sp, path, creds[i], ls
		if s.child != nil {
			s.restart = true
			m.stopChild(s.child)
		} else {
			s.gen++ // cancels a pending restart
			s.backoff = minBackoff
			m.start(s)
		}
	}
	for _, s := range old {
		s.removed = true
		s.gen++
		for _, l := range s.listeners {
			l.file.Close()
		}
		if s.child != nil {
			m.stopChild(s.child)
		}
	}
	m.services = next
	if err := m.notify.send("READY=1"); err != nil {
		m.log.Warning("%v", err)
	}
}

// reloadable refuses changes that only a restart can apply.
func (m *Master) reloadable(cfg *config.Config) error {
	switch {
	case cfg.SpoolDir != m.cfg.SpoolDir:
		return fmt.Errorf("config %s: spool_directory changed; stop and start posthorn to apply it", cfg.Path)
	case cfg.MailOwner != m.cfg.MailOwner:
		return fmt.Errorf("config %s: mail_owner changed; stop and start posthorn to apply it", cfg.Path)
	}
	return nil
}

// shutdown stops every daemon: SIGTERM, the grace for deliveries in flight,
// then SIGKILL to each process group. A second SIGTERM or SIGINT skips the
// grace.
func (m *Master) shutdown(sig syscall.Signal, sigs <-chan os.Signal) {
	m.log.Info("terminating on signal %d", sig)
	if err := m.notify.send("STOPPING=1"); err != nil {
		m.log.Warning("%v", err)
	}
	m.stopping = true
	for _, s := range m.services {
		s.gen++
		if s.timer != nil {
			s.timer.Stop()
		}
	}
	for c := range m.children {
		c.stopping = true
		c.cmd.Process.Signal(syscall.SIGTERM)
	}
	grace := time.NewTimer(m.cfg.Master.StopGrace.D())
	defer grace.Stop()
	var giveUp <-chan time.Time
	killAll := func() {
		for c := range m.children {
			m.log.Warning("process %s pid %d did not stop; killing it", c.svc.path, c.pid)
			syscall.Kill(-c.pid, syscall.SIGKILL)
		}
		giveUp = time.After(killWait)
	}
	for len(m.children) > 0 {
		select {
		case c := <-m.exits:
			m.reaped(c)
		case <-grace.C:
			killAll()
		case s := <-sigs:
			if s != syscall.SIGHUP && giveUp == nil {
				killAll()
			}
		case <-giveUp:
			m.log.Warning("%d processes did not exit after SIGKILL", len(m.children))
			m.children = nil
		case <-m.wake:
		case <-m.overdue:
		}
	}
	close(m.done)
	m.release()
}
