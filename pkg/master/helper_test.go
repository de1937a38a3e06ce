package master

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/posthorn/posthorn/pkg/config"
	"github.com/posthorn/posthorn/pkg/daemon"
	"github.com/posthorn/posthorn/pkg/maillog"
)

// The test binary plays master and the daemons when this is set; argv[0]'s
// base name says which.
const helperEnv = "POSTHORN_MASTER_TEST_HELPER"

const testUser = "posthorn-test"

// binDir holds a copy of the test binary that the unprivileged test user
// can execute (go test's build folder is private to root), and the links
// master, smtpd, qmgr and local to it.
var binDir string

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		switch name := filepath.Base(os.Args[0]); name {
		case "master":
			fs := flag.NewFlagSet("master", flag.ExitOnError)
			c := fs.String("c", "", "")
			v := fs.Bool("v", false, "")
			fs.Parse(os.Args[1:])
			if err := Run(*c, *v); err != nil {
				maillog.Fatal("%v", err)
			}
			os.Exit(0)
		case "smtpd", "qmgr", "local", "pickup", "auth", "smtp", "imap-login", "imapd", "pop3-login", "pop3d":
			// Every daemon of the service table is played by the test daemon.
			testDaemon(name)
			os.Exit(0)
		case "worker":
			// Stands for a delivery process that ignores its parent's stop.
			signal.Ignore(syscall.SIGTERM)
			for {
				time.Sleep(time.Hour)
			}
		}
	}
	os.Setenv(helperEnv, "1")
	if err := setupBinDir(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if os.Geteuid() == 0 {
		if err := ensureTestUser(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.RemoveAll(binDir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(binDir)
	os.Exit(code)
}

func setupBinDir() error {
	var err error
	if binDir, err = os.MkdirTemp("", "posthorn-master-bin-"); err != nil {
		return err
	}
	if err := os.Chmod(binDir, 0755); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	src, err := os.Open(self)
	if err != nil {
		return err
	}
	defer src.Close()
	exe := filepath.Join(binDir, "master.test")
	dst, err := os.OpenFile(exe, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		return err
	}
	if err := dst.Close(); err != nil {
		return err
	}
	for _, n := range []string{"master", "smtpd", "qmgr", "local", "pickup", "auth", "smtp", "imap-login", "imapd", "pop3-login", "pop3d"} {
		if err := os.Symlink("master.test", filepath.Join(binDir, n)); err != nil {
			return err
		}
	}
	return nil
}

func ensureTestUser() error {
	if _, err := user.Lookup(testUser); err == nil {
		return nil
	}
	out, err := exec.Command("useradd", "--system", "--no-create-home", testUser).CombinedOutput()
	if _, lerr := user.Lookup(testUser); lerr != nil {
		return fmt.Errorf("useradd %s: %v: %s", testUser, err, out)
	}
	return nil
}

// testDaemon answers each connection with "<listener name> <pid>" and logs
// what the tests look for. Environment switches, each a list of daemon
// names: POSTHORN_TEST_IGNORE_TERM (ignore SIGTERM), POSTHORN_TEST_WORKER
// (start a worker process in its process group).
func testDaemon(name string) {
	d := daemon.Start(name)
	if os.Getenv("NOTIFY_SOCKET") != "" {
		d.Log.Warning("test: NOTIFY_SOCKET leaked to a daemon")
	}
	if strings.Contains(os.Getenv("POSTHORN_TEST_IGNORE_TERM"), name) {
		signal.Ignore(syscall.SIGTERM)
	}
	if strings.Contains(os.Getenv("POSTHORN_TEST_WORKER"), name) {
		w := &exec.Cmd{Path: "/proc/self/exe", Args: []string{"worker"}}
		if err := w.Start(); err != nil {
			d.Log.Fatal("test: worker: %v", err)
		}
		d.Log.Info("test: worker pid %d", w.Process.Pid)
	}
	// SIGUSR1 makes a daemon crash with exit status 3.
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	for lname, ls := range d.Listeners {
		for _, l := range ls {
			d.Log.Info("test: listening %s %s %s", lname, l.Addr().Network(), l.Addr())
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					fmt.Fprintf(c, "%s %d\n", lname, os.Getpid())
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
		case <-d.Reload:
			d.Log.Info("test: reloaded")
		case <-usr1:
			os.Exit(3)
		}
	}
}

// logBuf collects master's standard error, which its children share.
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

func (l *logBuf) lines(sub string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(l.String()))
	for sc.Scan() {
		if strings.Contains(sc.Text(), sub) {
			out = append(out, sc.Text())
		}
	}
	return out
}

// waitN polls until n lines contain sub and returns the nth.
func (l *logBuf) waitN(t *testing.T, sub string, n int) string {
	t.Helper()
	var got []string
	ok := poll(func() bool { got = l.lines(sub); return len(got) >= n })
	if !ok {
		t.Fatalf("want %d log lines with %q, have %d:\n%s", n, sub, len(got), l)
	}
	return got[n-1]
}

func (l *logBuf) waitFor(t *testing.T, sub string) string { t.Helper(); return l.waitN(t, sub, 1) }

// poll reports whether cond became true within ten seconds, generous for
// a loaded two-core machine.
func poll(cond func() bool) bool {
	deadline := time.Now().Add(10 * time.Second)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// conf is what the tests vary in the configuration.
type conf struct {
	hostname  string
	listen    []string
	grace     string
	generate  bool
	owner     string
	delivery  string
	extraTOML string
}

// env is one master under test with its own spool and configuration.
type env struct {
	t       *testing.T
	dir     string
	cfgPath string
	conf    conf
	cmd     *exec.Cmd
	log     *logBuf
	exited  chan error
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir, err := os.MkdirTemp("", "posthorn-master-test-")
	if err != nil {
		t.Fatal(err)
	}
	// The daemons run as the test user and read the configuration here.
	if err := os.Chmod(dir, 0755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	e := &env{t: t, dir: dir, cfgPath: filepath.Join(dir, "posthorn.toml")}
	e.conf = conf{hostname: "mx.example.test", listen: []string{"127.0.0.1:0"}, grace: "5s"}
	if os.Geteuid() == 0 {
		e.conf.owner, e.conf.delivery = testUser, "root"
	}
	e.writeConfig()
	t.Cleanup(e.kill)
	return e
}

func (e *env) writeConfig() {
	e.t.Helper()
	c := e.conf
	q := func(ss []string) string {
		var out []string
		for _, s := range ss {
			out = append(out, strconv.Quote(s))
		}
		return "[" + strings.Join(out, ", ") + "]"
	}
	body := fmt.Sprintf(`hostname = %q
mail_owner = %q
spool_directory = "spool"
state_directory = "state"
daemon_directory = %q
%s
[smtpd]
listen = %s
submission_listen = []
submissions_listen = []
[pop3]
listen = []
listen_tls = []
[imap]
listen = []
listen_tls = []
[local]
delivery_user = %q
[tls]
generate = %v
cert_file = "state/tls/cert.pem"
key_file = "state/tls/key.pem"
[master]
stop_grace = %q
`, c.hostname, c.owner, binDir, c.extraTOML, q(c.listen), c.delivery, c.generate, c.grace)
	if err := os.WriteFile(e.cfgPath, []byte(body), 0644); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) config() *config.Config {
	e.t.Helper()
	cfg, err := config.Load(e.cfgPath)
	if err != nil {
		e.t.Fatal(err)
	}
	return cfg
}

func (e *env) masterCmd(extraEnv ...string) (*exec.Cmd, *logBuf) {
	cmd := exec.Command(filepath.Join(binDir, "master"), "-c", e.cfgPath, "-v")
	log := &logBuf{}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), extraEnv...)
	return cmd, log
}

// start runs master and waits until every daemon is serving.
func (e *env) start(extraEnv ...string) {
	e.t.Helper()
	e.cmd, e.log = e.masterCmd(extraEnv...)
	if err := e.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.exited = make(chan error, 1)
	go func() { e.exited <- e.cmd.Wait() }()
	e.log.waitFor(e.t, "daemon started -- version "+Version+", configuration "+e.cfgPath)
	e.ready("smtpd", "qmgr", "local")
}

// ready waits until the named daemons run and have logged readiness, and
// returns their pids.
func (e *env) ready(names ...string) map[string]int {
	e.t.Helper()
	var kids map[string]int
	ok := poll(func() bool {
		kids = childrenOf(e.cmd.Process.Pid)
		for _, n := range names {
			pid, ok := kids[n]
			if !ok || len(e.log.lines(fmt.Sprintf("posthorn/%s[%d]: test: ready", n, pid))) == 0 {
				return false
			}
		}
		return true
	})
	if !ok {
		e.t.Fatalf("daemons %v not ready (have %v):\n%s", names, kids, e.log)
	}
	return kids
}

// wait returns master's exit error once it has exited.
func (e *env) wait(within time.Duration) error {
	e.t.Helper()
	select {
	case err := <-e.exited:
		e.exited <- err // later callers see it too
		return err
	case <-time.After(within):
		e.t.Fatalf("master still running after %s:\n%s", within, e.log)
		return nil
	}
}

// kill is the cleanup of a test that failed halfway.
func (e *env) kill() {
	if e.cmd == nil || e.cmd.Process == nil {
		return
	}
	select {
	case err := <-e.exited:
		e.exited <- err
		return
	default:
	}
	kids := childrenOf(e.cmd.Process.Pid)
	e.cmd.Process.Kill()
	<-e.exited
	for _, pid := range kids {
		syscall.Kill(-pid, syscall.SIGKILL)
	}
}

// ask connects to a listener and returns the "<name> <pid>" answer.
func ask(t *testing.T, network, addr string) (string, int) {
	t.Helper()
	c, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s %s: %v", network, addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("read from %s %s: %v", network, addr, err)
	}
	name, pid, _ := strings.Cut(strings.TrimSpace(line), " ")
	n, _ := strconv.Atoi(pid)
	return name, n
}

// listenAddrs returns the addresses daemon pid logged for its listeners.
func listenAddrs(log *logBuf, daemon string, pid int, lname string) []string {
	var out []string
	for _, l := range log.lines(fmt.Sprintf("posthorn/%s[%d]: test: listening %s ", daemon, pid, lname)) {
		f := strings.Fields(l)
		out = append(out, f[len(f)-1])
	}
	return out
}

// procStat reads the state, parent and process group of pid.
func procStat(pid int) (state byte, ppid, pgid int, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	f := strings.Fields(s[i+1:])
	if len(f) < 3 {
		return 0, 0, 0, false
	}
	ppid, _ = strconv.Atoi(f[1])
	pgid, _ = strconv.Atoi(f[2])
	return f[0][0], ppid, pgid, true
}

// alive reports whether pid is a running process (a zombie whose parent
// has not reaped it yet does not count: it runs nothing).
func alive(pid int) bool {
	st, _, _, ok := procStat(pid)
	return ok && st != 'Z'
}

func pids() []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// childrenOf maps the live children of ppid by program name.
func childrenOf(ppid int) map[string]int {
	kids := map[string]int{}
	for _, pid := range pids() {
		st, pp, _, ok := procStat(pid)
		if !ok || pp != ppid || st == 'Z' {
			continue
		}
		argv, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		arg0, _, _ := strings.Cut(string(argv), "\x00")
		kids[filepath.Base(arg0)] = pid
	}
	return kids
}

// inGroups returns the live processes whose process group is in groups.
func inGroups(groups map[int]bool) []int {
	var out []int
	for _, pid := range pids() {
		st, _, pg, ok := procStat(pid)
		if ok && st != 'Z' && groups[pg] {
			out = append(out, pid)
		}
	}
	return out
}

// procIDs returns the Uid, Gid and Groups lines of /proc/pid/status.
func procIDs(t *testing.T, pid int) (uid, gid, groups string) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(l, ":")
		v = strings.Join(strings.Fields(v), " ")
		switch k {
		case "Uid":
			uid = v
		case "Gid":
			gid = v
		case "Groups":
			groups = v
		}
	}
	return
}
