package pam

import (
	"os"
	"os/exec"
	"os/user"
	"strings"
	"testing"
)

// setupSystemUser creates the system user name with password set by
// chpasswd, which on Debian 12 writes a yescrypt hash, and makes sure
// /etc/pam.d/posthorn exists. It needs root; both are undone at cleanup.
func setupSystemUser(t *testing.T, name, password string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a system user and reads /etc/shadow")
	}
	if !Available {
		t.Skip("built without cgo, so without PAM")
	}
	if _, err := user.Lookup(name); err == nil {
		exec.Command("userdel", name).Run()
	}
	if out, err := exec.Command("useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("userdel", name).Run() })
	cmd := exec.Command("chpasswd")
	cmd.Stdin = strings.NewReader(name + ":" + password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chpasswd: %v\n%s", err, out)
	}
	const path = "/etc/pam.d/" + Service
	if _, err := os.Stat(path); os.IsNotExist(err) {
		if err := os.WriteFile(path, []byte(Config), 0644); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(path) })
	}
}

func shadowHash(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("/etc/shadow")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Split(line, ":"); len(f) > 1 && f[0] == name {
			return f[1]
		}
	}
	t.Fatalf("%s not in /etc/shadow", name)
	return ""
}

func TestCheckSystemUser(t *testing.T) {
	const name, pw = "phpamtest", "Corr3ct horse"
	setupSystemUser(t, name, pw)
	if h := shadowHash(t, name); !strings.HasPrefix(h, "$y$") {
		t.Logf("chpasswd wrote %.4s..., not yescrypt: this system's default differs from Debian 12's", h)
	}
	r, err := Check(name, pw, "192.0.2.1", "imap")
	if err != nil || !r.OK || r.User != name {
		t.Fatalf("right password: %+v %v", r, err)
	}
	r, err = Check(name, pw+"x", "192.0.2.1", "imap")
	if err != nil || r.OK || r.Temp || r.Stage != Authenticate || r.Message != "Authentication failure (password mismatch?)" {
		t.Fatalf("wrong password: %+v %v", r, err)
	}
	r, err = Check("phpamnosuchuser", pw, "192.0.2.1", "imap")
	if err != nil || r.OK || r.Temp {
		t.Fatalf("unknown user: %+v %v", r, err)
	}
	// Locked account (passwd -l puts "!" before the hash): the right
	// password fails.
	if out, err := exec.Command("usermod", "-L", name).CombinedOutput(); err != nil {
		t.Fatalf("usermod -L: %v %s", err, out)
	}
	if r, _ := Check(name, pw, "192.0.2.1", "imap"); r.OK {
		t.Fatalf("locked account accepted: %+v", r)
	}
	exec.Command("usermod", "-U", name).Run()
	// Expired account: authentication passes, the account check fails.
	if out, err := exec.Command("usermod", "--expiredate", "1970-01-02", name).CombinedOutput(); err != nil {
		t.Fatalf("usermod --expiredate: %v %s", err, out)
	}
	r, _ = Check(name, pw, "192.0.2.1", "imap")
	if r.OK || r.Temp || r.Stage != AccountCheck {
		t.Fatalf("expired account: %+v", r)
	}
}

func TestUnavailableWithoutCgo(t *testing.T) {
	if Available {
		t.Skip("built with PAM")
	}
	r, err := Check("alice", "pw", "192.0.2.1", "imap")
	if err != ErrUnavailable || r.OK || !r.Temp {
		t.Fatalf("%+v %v", r, err)
	}
}
