package master

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/posthorn/posthorn/pkg/config"
	"github.com/posthorn/posthorn/pkg/spool"
	"golang.org/x/sys/unix"
)

func TestServe(t *testing.T) {
	e := newEnv(t)
	e.conf.generate = true
	e.writeConfig()
	e.start()
	kids := e.ready("smtpd", "qmgr", "local")
	cfg := e.config()

	if pid, ok := Running(cfg); !ok || pid != e.cmd.Process.Pid {
		t.Errorf("Running = %d, %v; want %d, true", pid, ok, e.cmd.Process.Pid)
	}
	b, err := os.ReadFile(PidFile(cfg))
	if err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(e.cmd.Process.Pid) {
		t.Errorf("pid file holds %q, %v", b, err)
	}

	addrs := listenAddrs(e.log, "smtpd", kids["smtpd"], "smtp")
	if len(addrs) != 1 || !strings.HasPrefix(addrs[0], "127.0.0.1:") {
		t.Fatalf("smtpd listeners %v", addrs)
	}
	if name, pid := ask(t, "tcp", addrs[0]); name != "smtp" || pid != kids["smtpd"] {
		t.Errorf("smtp answered %s %d, want smtp %d", name, pid, kids["smtpd"])
	}

	wantUID := os.Getuid()
	if os.Geteuid() == 0 {
		u, _ := user.Lookup(testUser)
		wantUID, _ = strconv.Atoi(u.Uid)
	}
	for _, svc := range []string{"qmgr", "local"} {
		sock := filepath.Join(cfg.SpoolDir, spool.Private, svc)
		if name, pid := ask(t, "unix", sock); name != svc || pid != kids[svc] {
			t.Errorf("%s answered %s %d, want %s %d", sock, name, pid, svc, kids[svc])
		}
		fi, err := os.Stat(sock)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0600 || int(st.Uid) != wantUID {
			t.Errorf("%s: mode %v owner %d; want socket 0600 owned by %d", sock, fi.Mode(), st.Uid, wantUID)
		}
	}

	// Every thread of the daemons that move mail runs with their timer
	// slack; the others keep master's own.
	slackOf := func(pid int) []string {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
		var out []string
		for _, task := range tasks {
			// Read per thread as /proc/TID/timerslack_ns.
			b, err := os.ReadFile(filepath.Join("/proc", filepath.Base(task), "timerslack_ns"))
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, strings.TrimSpace(string(b)))
		}
		if len(out) == 0 {
			t.Fatalf("pid %d: no threads found", pid)
		}
		return out
	}
	masterSlack := slackOf(e.cmd.Process.Pid)[0]
	for svc, pid := range kids {
		want := masterSlack
		switch svc {
		case "smtpd", "qmgr", "local", "smtp", "pickup":
			want = strconv.FormatInt(int64(mailFlowTimerSlack), 10)
		}
		for _, got := range slackOf(pid) {
			if got != want {
				t.Errorf("%s: a thread's timer slack is %s ns, want %s", svc, got, want)
			}
		}
	}
	if _, ok := kids["auth"]; !ok {
		t.Errorf("no auth daemon among %v to compare with", kids)
	}

	fi, err := os.Stat(cfg.TLS.KeyFile)
	if err != nil {
		t.Fatalf("no generated key: %v", err)
	}
	if st := fi.Sys().(*syscall.Stat_t); fi.Mode().Perm() != 0600 || int(st.Uid) != wantUID {
		t.Errorf("key mode %v owner %d; want 0600 owned by %d", fi.Mode().Perm(), st.Uid, wantUID)
	}
	if _, err := os.Stat(cfg.TLS.CertFile); err != nil {
		t.Errorf("no generated certificate: %v", err)
	}
}

func TestSecondMasterRefused(t *testing.T) {
	e := newEnv(t)
	e.start()
	second, log := e.masterCmd()
	err := second.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("second master: %v, want exit status 1\n%s", err, log)
	}
	want := fmt.Sprintf("posthorn/master[%d]: fatal: the posthorn mail system is already running (pid %d)", second.Process.Pid, e.cmd.Process.Pid)
	if !strings.Contains(log.String(), want) {
		t.Errorf("second master logged\n%s\nwant %q", log, want)
	}
	// The first one is untouched.
	cfg := e.config()
	if pid, ok := Running(cfg); !ok || pid != e.cmd.Process.Pid {
		t.Errorf("Running = %d, %v after the refused start", pid, ok)
	}
	if name, _ := ask(t, "unix", filepath.Join(cfg.SpoolDir, spool.Private, "qmgr")); name != "qmgr" {
		t.Errorf("qmgr socket answered %q", name)
	}
}

func TestCrashRestart(t *testing.T) {
	e := newEnv(t)
	e.start()
	kids := e.ready("smtpd")
	addr := listenAddrs(e.log, "smtpd", kids["smtpd"], "smtp")[0]
	smtpd := filepath.Join(binDir, "smtpd")

	// Backoff 100 ms, doubling: five crashes in a row cost about 3 s.
	begin := time.Now()
	for i := 1; i <= 5; i++ {
		old := kids["smtpd"]
		if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		e.log.waitFor(t, fmt.Sprintf("posthorn/master[%d]: warning: process %s pid %d killed by signal 9", e.cmd.Process.Pid, smtpd, old))
		kids = e.ready("smtpd")
		if kids["smtpd"] == old {
			t.Fatal("smtpd not replaced")
		}
		// The listening socket is master's: the new smtpd serves the same port.
		if name, pid := ask(t, "tcp", addr); name != "smtp" || pid != kids["smtpd"] {
			t.Errorf("after crash %d: %s %d answered, want smtp %d", i, name, pid, kids["smtpd"])
		}
	}
	if d := time.Since(begin); d > 8*time.Second {
		t.Errorf("five restarts took %s", d)
	}

	old := kids["qmgr"]
	syscall.Kill(old, syscall.SIGUSR1)
	e.log.waitFor(t, fmt.Sprintf("warning: process %s pid %d exit status 3", filepath.Join(binDir, "qmgr"), old))
	if kids := e.ready("qmgr"); kids["qmgr"] == old {
		t.Error("qmgr not replaced")
	}
}

func TestMasterKilled(t *testing.T) {
	e := newEnv(t)
	e.start()
	kids := e.ready("smtpd", "qmgr", "local")

	// Workers a daemon starts are that daemon's to bind to its own life;
	// master, killed, can only rely on its children's parent-death signal
	// and pipe.
	e.cmd.Process.Kill()
	e.wait(10 * time.Second)
	all := []int{kids["smtpd"], kids["qmgr"], kids["local"]}
	if !poll(func() bool {
		for _, pid := range all {
			if alive(pid) {
				return false
			}
		}
		return true
	}) {
		t.Fatalf("processes outlived their master: %v\n%s", all, e.log)
	}

	// The pid file is stale now; a new master takes over the spool.
	cfg := e.config()
	if pid, ok := Running(cfg); ok {
		t.Fatalf("Running = %d after master was killed", pid)
	}
	e.start()
	kids = e.ready("qmgr")
	if name, pid := ask(t, "unix", filepath.Join(cfg.SpoolDir, spool.Private, "qmgr")); name != "qmgr" || pid != kids["qmgr"] {
		t.Errorf("new qmgr socket answered %s %d", name, pid)
	}
}

func TestReload(t *testing.T) {
	e := newEnv(t)
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(e.dir, "notify"), Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()
	expect := func(want string) {
		t.Helper()
		notify.SetReadDeadline(time.Now().Add(10 * time.Second))
		b := make([]byte, 512)
		n, err := notify.Read(b)
		if err != nil || !strings.HasPrefix(string(b[:n]), want) {
			t.Fatalf("notify: %q, %v; want %q", b[:n], err, want)
		}
	}
	e.start("NOTIFY_SOCKET=" + filepath.Join(e.dir, "notify"))
	expect("READY=1")
	kids := e.ready("smtpd", "qmgr", "local")
	addr := listenAddrs(e.log, "smtpd", kids["smtpd"], "smtp")[0]

	syscall.Kill(e.cmd.Process.Pid, syscall.SIGHUP)
	e.log.waitFor(t, "posthorn/master["+strconv.Itoa(e.cmd.Process.Pid)+"]: reload -- version "+Version+", configuration "+e.cfgPath)
	expect("RELOADING=1\nMONOTONIC_USEC=")
	expect("READY=1")
	for name, pid := range kids {
		e.log.waitFor(t, fmt.Sprintf("posthorn/%s[%d]: test: reloaded", name, pid))
	}

	// A new listener: smtpd restarts on both; the old port is the same socket.
	e.conf.listen = []string{"127.0.0.1:0", "127.0.0.2:0"}
	e.writeConfig()
	syscall.Kill(e.cmd.Process.Pid, syscall.SIGHUP)
	e.log.waitN(t, "reload -- version", 2)
	e.log.waitFor(t, fmt.Sprintf("posthorn/smtpd[%d]: test: stopping: terminating on signal 15", kids["smtpd"]))
	var now map[string]int
	if !poll(func() bool {
		now = e.ready("smtpd", "qmgr", "local")
		return now["smtpd"] != kids["smtpd"]
	}) {
		t.Fatal("smtpd not restarted")
	}
	addrs := listenAddrs(e.log, "smtpd", now["smtpd"], "smtp")
	if len(addrs) != 2 || addrs[0] != addr || !strings.HasPrefix(addrs[1], "127.0.0.2:") {
		t.Fatalf("new smtpd listens on %v; want %s and 127.0.0.2", addrs, addr)
	}
	for _, a := range addrs {
		if _, pid := ask(t, "tcp", a); pid != now["smtpd"] {
			t.Errorf("%s answered by %d, want %d", a, pid, now["smtpd"])
		}
	}
	if now["qmgr"] != kids["qmgr"] || now["local"] != kids["local"] {
		t.Errorf("unchanged services were restarted: %v -> %v", kids, now)
	}
	if len(e.log.lines("warning: process")) != 0 {
		t.Errorf("a planned restart was logged as a crash:\n%s", e.log)
	}
	expect("RELOADING=1")
	expect("READY=1")

	// A broken configuration changes nothing and reaches no daemon.
	reloaded := len(e.log.lines("test: reloaded"))
	os.WriteFile(e.cfgPath, []byte("hostname = \"mx.example.test\"\nno_such_setting = 1\n"), 0644)
	syscall.Kill(e.cmd.Process.Pid, syscall.SIGHUP)
	e.log.waitFor(t, "warning: config "+e.cfgPath+": unknown setting no_such_setting; configuration not reloaded")
	e.writeConfig()
	syscall.Kill(e.cmd.Process.Pid, syscall.SIGHUP)
	e.log.waitN(t, "reload -- version", 3)
	expect("RELOADING=1")
	expect("READY=1")
	cfg, err := config.Load(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	ss, _ := specs(cfg)
	e.log.waitN(t, "test: reloaded", reloaded+len(ss))
	if n := len(e.log.lines("test: reloaded")); n != reloaded+len(ss) {
		t.Errorf("%d reloads reached the daemons, want one per daemon (%d)", n-reloaded, len(ss))
	}

	syscall.Kill(e.cmd.Process.Pid, syscall.SIGTERM)
	expect("STOPPING=1")
	if err := e.wait(15 * time.Second); err != nil {
		t.Errorf("master: %v", err)
	}
	if lines := e.log.lines("NOTIFY_SOCKET leaked"); len(lines) > 0 {
		t.Errorf("daemons saw NOTIFY_SOCKET: %v", lines)
	}
}

// stopAndCheck sends sig to master and checks that it exits 0 and leaves
// no process of any daemon's process group behind.
func stopAndCheck(t *testing.T, e *env, sig syscall.Signal, within time.Duration, extra ...int) time.Duration {
	t.Helper()
	kids := childrenOf(e.cmd.Process.Pid)
	groups := map[int]bool{}
	for _, pid := range kids {
		groups[pid] = true
	}
	began := time.Now()
	syscall.Kill(e.cmd.Process.Pid, sig)
	if err := e.wait(within); err != nil {
		t.Fatalf("master: %v\n%s", err, e.log)
	}
	took := time.Since(began)
	e.log.waitFor(t, fmt.Sprintf("posthorn/master[%d]: terminating on signal %d", e.cmd.Process.Pid, sig))
	if left := inGroups(groups); len(left) > 0 {
		t.Errorf("processes left behind: %v", left)
	}
	for _, pid := range extra {
		if alive(pid) {
			t.Errorf("process %d left behind", pid)
		}
	}
	cfg := e.config()
	if _, err := os.Stat(PidFile(cfg)); !os.IsNotExist(err) {
		t.Errorf("pid file remains: %v", err)
	}
	if pid, ok := Running(cfg); ok {
		t.Errorf("Running = %d after stop", pid)
	}
	return took
}

func TestStop(t *testing.T) {
	e := newEnv(t)
	e.start("POSTHORN_TEST_WORKER=local")
	kids := e.ready("smtpd", "qmgr", "local")
	w := e.log.waitFor(t, fmt.Sprintf("posthorn/local[%d]: test: worker pid ", kids["local"]))
	worker, _ := strconv.Atoi(w[strings.LastIndexByte(w, ' ')+1:])

	stopAndCheck(t, e, syscall.SIGTERM, 15*time.Second, worker)
	for name, pid := range kids {
		e.log.waitFor(t, fmt.Sprintf("posthorn/%s[%d]: test: stopping: terminating on signal 15", name, pid))
	}
	if lines := e.log.lines("warning:"); len(lines) > 0 {
		t.Errorf("warnings on a clean stop: %v", lines)
	}
}

func TestStopKillsStubborn(t *testing.T) {
	e := newEnv(t)
	e.conf.grace = "1s"
	e.writeConfig()
	e.start("POSTHORN_TEST_IGNORE_TERM=local", "POSTHORN_TEST_WORKER=local")
	kids := e.ready("smtpd", "qmgr", "local")
	w := e.log.waitFor(t, fmt.Sprintf("posthorn/local[%d]: test: worker pid ", kids["local"]))
	worker, _ := strconv.Atoi(w[strings.LastIndexByte(w, ' ')+1:])

	took := stopAndCheck(t, e, syscall.SIGINT, 15*time.Second, worker)
	if took < 900*time.Millisecond {
		t.Errorf("stop took %s: the grace was not granted", took)
	}
	e.log.waitFor(t, fmt.Sprintf("warning: process %s pid %d did not stop; killing it", filepath.Join(binDir, "local"), kids["local"]))
	e.log.waitFor(t, fmt.Sprintf("posthorn/smtpd[%d]: test: stopping", kids["smtpd"]))
}

func TestCredentials(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("not root: daemons run as the invoking user, there are no credentials to change")
	}
	u, err := user.Lookup(testUser)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	e.start()
	kids := e.ready("smtpd", "qmgr", "local")
	ids := func(id string) string { return strings.Repeat(id+" ", 3) + id }
	for name, want := range map[string][2]string{
		"smtpd": {u.Uid, u.Gid}, "qmgr": {u.Uid, u.Gid}, "local": {"0", "0"},
	} {
		uid, gid, groups := procIDs(t, kids[name])
		if uid != ids(want[0]) || gid != ids(want[1]) || groups != "" {
			t.Errorf("%s: Uid %q Gid %q Groups %q; want uid %s gid %s, no groups", name, uid, gid, groups, want[0], want[1])
		}
	}
	fi, err := os.Stat(filepath.Join(e.config().SpoolDir, spool.Private))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); strconv.Itoa(int(st.Uid)) != u.Uid {
		t.Errorf("private/ owned by %d, want %s", st.Uid, u.Uid)
	}
}

func TestUnknownUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("not root: users are not looked up, daemons run as the invoking user")
	}
	e := newEnv(t)
	e.conf.delivery = "posthorn-no-such-user"
	e.writeConfig()
	cmd, log := e.masterCmd()
	err := cmd.Run()
	if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 1 {
		t.Fatalf("master: %v, want exit status 1", err)
	}
	if want := `fatal: local.delivery_user: unknown user "posthorn-no-such-user"`; !strings.Contains(log.String(), want) {
		t.Errorf("logged %q, want %q", log, want)
	}
	if _, err := os.Stat(PidFile(e.config())); !os.IsNotExist(err) {
		t.Errorf("pid file after a failed start: %v", err)
	}
}

func TestControl(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	if err := Stop(cfg, 0); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Stop before start: %v", err)
	}
	pid, err := StartBackground(cfg, filepath.Join(binDir, "master"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	if p, ok := Running(cfg); !ok || p != pid {
		t.Fatalf("Running = %d, %v; want %d", p, ok, pid)
	}
	if sid, _ := unix.Getsid(pid); sid != pid {
		t.Errorf("master session %d, want its own (%d)", sid, pid)
	}
	readLog := func(sub string) bool {
		b, _ := os.ReadFile(LogFile(cfg))
		return strings.Contains(string(b), sub)
	}
	if !poll(func() bool { return readLog(fmt.Sprintf("posthorn/master[%d]: daemon started", pid)) }) {
		t.Fatalf("no start in %s", LogFile(cfg))
	}
	if p, err := StartBackground(cfg, filepath.Join(binDir, "master")); !errors.Is(err, ErrRunning) || p != pid {
		t.Errorf("second start: %d, %v", p, err)
	}
	if err := Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if !poll(func() bool { return readLog(fmt.Sprintf("posthorn/master[%d]: reload -- version", pid)) }) {
		t.Errorf("reload not logged")
	}
	if err := Stop(cfg, 0); err != nil {
		t.Fatal(err)
	}
	if _, ok := Running(cfg); ok {
		t.Error("still running after Stop")
	}
	if !poll(func() bool { return !alive(pid) }) {
		t.Error("master process still there after Stop")
	}
	if err := Reload(cfg); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Reload after stop: %v", err)
	}

	// A master that cannot start reports why.
	e.conf.listen = []string{"127.0.0.1:99999"}
	e.writeConfig()
	_, err = StartBackground(e.config(), filepath.Join(binDir, "master"))
	if err == nil || !strings.Contains(err.Error(), "fatal: smtpd: listen tcp4") {
		t.Errorf("failed start: %v", err)
	}
}
