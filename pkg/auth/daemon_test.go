package auth

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/posthorn/posthorn/pkg/auth/pam"
	"github.com/posthorn/posthorn/pkg/config"
	"github.com/posthorn/posthorn/pkg/daemon"
	"github.com/posthorn/posthorn/pkg/maillog"
)

// TestDaemonOverSocket runs the daemon as cmd/auth does, on a socket of
// its own, with real time, and talks to it with the Client.
func TestDaemonOverSocket(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	content := "alice@example.org:" + bcryptHash(t, "alice pw", 4) + "\n" +
		// A password that is not UTF-8 (Latin-1 "päss"): it must arrive
		// byte for byte.
		"latin@example.org:{PLAIN}p\xe4ss\n"
	if err := os.WriteFile(users, []byte(content), 0600); err != nil {
		t.Fatal(err)
	}
	cfg := config.Defaults()
	cfg.Virtual.Domains = []string{"example.org"}
	cfg.Virtual.UsersFile = users
	cfg.Auth.SystemUsers = false
	// Long enough that a failure is certainly still waiting while the
	// rest of the test runs; the stop at the end cuts it short.
	cfg.Auth.FailureDelay = config.Duration(30 * time.Second)
	cfg.Auth.MaxFailureDelay = config.Duration(time.Minute)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	logbuf := &syncBuffer{}
	log := maillog.New("posthorn", "auth", "stderr")
	log.SetOutput(logbuf)
	sock := filepath.Join(dir, "auth")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	d, err := daemon.New("auth", cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	d.Listeners["auth"] = []net.Listener{l}
	ran := make(chan error, 1)
	go func() { ran <- Run(d) }()

	c := NewClient(sock)
	ctx := context.Background()
	r := Request{Service: ServiceSMTP, User: "alice@example.org", Password: "alice pw", RemoteIP: "192.0.2.1", Secured: true}
	res, err := c.Verify(ctx, r)
	if err != nil || !res.OK || res.User != "alice@example.org" {
		t.Fatalf("alice: %+v %v", res, err)
	}
	r.User, r.Password = "latin@example.org", "p\xe4ss"
	if res, err := c.Verify(ctx, r); err != nil || !res.OK {
		t.Fatalf("Latin-1 password: %+v %v", res, err)
	}
	// A name that is not UTF-8 reaches the daemon as sent and is refused
	// as invalid, not looked up with U+FFFD in it.
	invalid := r
	invalid.User, invalid.Password = "al\xffice@example.org", "x"
	failed := make(chan Result, 1)
	go func() {
		res, err := c.Verify(ctx, invalid)
		if err != nil {
			t.Error(err)
		}
		failed <- res
	}()
	// While that failure waits out its delay, others are answered.
	r.User, r.Password = "alice@example.org", "alice pw"
	r.RemoteIP = "192.0.2.2"
	waitFor(t, func() bool { return strings.Contains(logbuf.String(), "invalid credentials") })
	if res, err := c.Verify(ctx, r); err != nil || !res.OK {
		t.Fatalf("alice while another request is delayed: %+v %v", res, err)
	}
	select {
	case res := <-failed:
		t.Fatalf("the failure was answered before its delay: %+v", res)
	default:
	}
	// A request the daemon refuses outright is an error, not a result.
	bad := r
	bad.Service = "ftp"
	if _, err := c.Verify(ctx, bad); err == nil || !strings.Contains(err.Error(), "unknown service") {
		t.Fatalf("bad request: %v", err)
	}
	// A client that gives up is not held up by the delay.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	wrong := r
	wrong.Password = "wrong"
	start := time.Now()
	if _, err := c.Verify(short, wrong); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled Verify: %v", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("cancelled Verify took %v", took)
	}
	// Stop as master does: SIGTERM ends Run, and the delayed failure is
	// answered on the way out.
	syscall.Kill(os.Getpid(), syscall.SIGTERM)
	select {
	case err := <-ran:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after SIGTERM")
	}
	if res := <-failed; res.OK || res.Temp || res.Reason != ErrBadUsername.Error() {
		t.Fatalf("invalid name: %+v", res)
	}
	if !strings.Contains(logbuf.String(), "passdb(al?ice@example.org,192.0.2.1): invalid credentials") {
		t.Fatalf("log:\n%s", logbuf)
	}
	if _, err := c.Verify(ctx, r); err == nil {
		t.Fatal("Verify succeeded with the daemon stopped")
	}
}

func TestRunWithoutListener(t *testing.T) {
	d := &daemon.D{Cfg: config.Defaults(), Listeners: nil}
	if err := Run(d); err == nil {
		t.Fatal("Run without a listener succeeded")
	}
}

// TestSystemUserThroughPAM checks a real system user, whose password
// chpasswd set (yescrypt on Debian 12), through PAM. It needs root.
func TestSystemUserThroughPAM(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates system users and reads /etc/shadow")
	}
	if !pam.Available {
		t.Skip("built without cgo, so without PAM")
	}
	const name, pw = "phauthtest", "Tr0ub4dor&3"
	const sysName = "phauthsys"
	mkuser := func(name string, extra ...string) {
		exec.Command("userdel", name).Run()
		args := append([]string{"--no-create-home", "--shell", "/usr/sbin/nologin"}, extra...)
		if out, err := exec.Command("useradd", append(args, name)...).CombinedOutput(); err != nil {
			t.Fatalf("useradd %s: %v\n%s", name, err, out)
		}
		t.Cleanup(func() { exec.Command("userdel", name).Run() })
		cmd := exec.Command("chpasswd")
		cmd.Stdin = strings.NewReader(name + ":" + pw + "\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("chpasswd: %v\n%s", err, out)
		}
	}
	mkuser(name)
	mkuser(sysName, "--system") // uid below 1000
	const pamFile = "/etc/pam.d/" + PAMService
	if _, err := os.Stat(pamFile); os.IsNotExist(err) {
		if err := os.WriteFile(pamFile, []byte(PAMConfig), 0644); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(pamFile) })
	}
	shadow, _ := os.ReadFile("/etc/shadow")
	for _, line := range strings.Split(string(shadow), "\n") {
		if strings.HasPrefix(line, name+":") && !strings.HasPrefix(line, name+":$y$") {
			t.Logf("chpasswd did not write yescrypt here: %.20s...", line)
		}
	}
	e := newEnv(t, nil)
	e.srv.system, e.srv.lookupUID = pam.Check, lookupUID
	for _, n := range []string{name, name + "@localhost"} {
		if res, d := e.attempt(req(n, pw, "192.0.2.1")); !res.OK || res.User != name || d != 0 {
			t.Fatalf("%s: %+v after %v", n, res, d)
		}
	}
	if res, d := e.attempt(req(name, pw+"!", "192.0.2.2")); res.OK || res.Temp || d == 0 {
		t.Fatalf("wrong password: %+v after %v", res, d)
	}
	if res, _ := e.attempt(req("phnosuchuser", pw, "192.0.2.3")); res.OK || res.Temp {
		t.Fatalf("unknown system user: %+v", res)
	}
	// The right password of a system account below first_valid_uid.
	if uid, ok := lookupUID(sysName); !ok || uid >= e.cfg.Auth.FirstValidUID {
		t.Fatalf("%s has uid %d", sysName, uid)
	}
	if res, _ := e.attempt(req(sysName, pw, "192.0.2.4")); res.OK || res.Temp || !strings.Contains(res.Reason, "first_valid_uid") {
		t.Fatalf("system account: %+v", res)
	}
	want := "pam(" + name + ",192.0.2.2): pam_authenticate() failed: Authentication failure (password mismatch?)"
	if !strings.Contains(e.log.String(), want) {
		t.Fatalf("log lacks %q:\n%s", want, e.log)
	}
	if h := dovecotHost(syslogLine("auth", want)); h != "192.0.2.2" {
		t.Fatalf("fail2ban finds %q in %s", h, want)
	}
}

// waitFor polls cond until it holds, for at most ten seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10 s")
		}
		time.Sleep(time.Millisecond)
	}
}
