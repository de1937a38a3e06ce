package tests

import (
	"bufio"
	"fmt"
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
)

// ensureUser creates a system user once (idempotent), with a home folder
// when home is true, and returns its uid and gid.
func ensureUser(t *testing.T, name string, home bool) (int, int, string) {
	t.Helper()
	if _, err := user.Lookup(name); err != nil {
		args := []string{"--system", "--user-group", "--shell", "/usr/sbin/nologin"}
		if home {
			args = append(args, "--create-home", "--home-dir", "/home/"+name)
		} else {
			args = append(args, "--no-create-home", "--home-dir", "/nonexistent")
		}
		if out, err := exec.Command("useradd", append(args, name)...).CombinedOutput(); err != nil {
			t.Fatalf("useradd %s: %v\n%s", name, err, out)
		}
	}
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if home {
		os.MkdirAll(u.HomeDir, 0750)
		os.Chown(u.HomeDir, uid, gid)
	}
	return uid, gid, u.HomeDir
}

// procIDs reads the real uid, gid and supplementary groups of a process.
func procIDs(t *testing.T, pid int) (uid, gid, groups string) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		fields := strings.Fields(v)
		switch k {
		case "Uid":
			uid = fields[0]
		case "Gid":
			gid = fields[0]
		case "Groups":
			groups = strings.Join(fields, " ")
		}
	}
	return
}

func fileOwner(t *testing.T, path string) (int, int) {
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	s := st.Sys().(*syscall.Stat_t)
	return int(s.Uid), int(s.Gid)
}

// TestPrivilegeSeparation runs the system as root with real users: the
// network-facing daemons run as the mail owner, local as root, and every
// mailbox is written by its owner — a virtual one by the vmail user, a
// system user's ~/Maildir by that user, never by root.
func TestPrivilegeSeparation(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("privilege separation needs root (CI runs as root)")
	}
	ownerUID, ownerGID, _ := ensureUser(t, "posthorn-test", false)
	vmailUID, vmailGID, _ := ensureUser(t, "phvmail-test", false)
	userUID, userGID, home := ensureUser(t, "phuser-test", true)
	evilUID, evilGID, evilHome := ensureUser(t, "phevil-test", true)
	os.RemoveAll(filepath.Join(home, "Maildir"))

	// Every daemon must reach the programs and the instance's folder.
	os.Chmod(binDir, 0755)
	s := NewSystem(t, func(c *config.Config) {
		c.MailOwner = "posthorn-test"
		c.Local.DeliveryUser = "root"
		c.Virtual.User, c.Virtual.Group = "phvmail-test", "phvmail-test"
	})
	for d := s.Dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0755)
	}
	// As on a real host, the virtual mail base belongs to vmail.
	os.MkdirAll(filepath.Join(s.Dir, "mail"), 0750)
	os.Chown(filepath.Join(s.Dir, "mail"), vmailUID, vmailGID)
	// A hostile user points ~/Maildir at a folder of root's.
	target := filepath.Join(s.Dir, "rootonly")
	os.MkdirAll(target, 0777)
	os.RemoveAll(filepath.Join(evilHome, "Maildir"))
	if err := os.Symlink(target, filepath.Join(evilHome, "Maildir")); err != nil {
		t.Fatal(err)
	}
	os.Lchown(filepath.Join(evilHome, "Maildir"), evilUID, evilGID)

	s.Start()
	t.Cleanup(s.Stop)
	s.AddUser("vuser@example.test")
	if uid, gid := fileOwner(t, s.Cfg.Virtual.UsersFile); uid != 0 || gid != ownerGID {
		t.Errorf("users file owned by %d:%d, want root:posthorn-test (%d)", uid, gid, ownerGID)
	}

	out, err := s.Python(`
import os, smtplib
s = smtplib.SMTP(os.environ["SMTP_HOST"], int(os.environ["SMTP_PORT"]))
print(s.sendmail("a@example.org", ["vuser@example.test", "phuser-test@localhost"], b"Subject: owners\r\n\r\nbody\r\n"))
print(s.sendmail("a@example.org", ["phevil-test@localhost"], b"Subject: evil\r\n\r\nbody\r\n"))
s.quit()
`)
	if err != nil {
		t.Fatalf("smtplib: %v\n%s", err, s.Log())
	}
	if strings.Count(out, "{}") != 2 {
		t.Fatalf("sendmail results: %s", out)
	}

	for _, c := range []struct {
		maildir  string
		uid, gid int
	}{{s.Maildir("vuser"), vmailUID, vmailGID}, {filepath.Join(home, "Maildir"), userUID, userGID}} {
		for name := range s.WaitMessages(c.maildir, 1, 20*time.Second) {
			uid, gid := fileOwner(t, filepath.Join(c.maildir, name))
			if uid != c.uid || gid != c.gid {
				t.Errorf("%s/%s owned by %d:%d, want %d:%d", c.maildir, name, uid, gid, c.uid, c.gid)
			}
		}
		if uid, _ := fileOwner(t, c.maildir); uid != c.uid {
			t.Errorf("%s created by uid %d, want %d", c.maildir, uid, c.uid)
		}
	}

	for _, d := range []struct {
		name, uid string
	}{{"smtpd", strconv.Itoa(ownerUID)}, {"qmgr", strconv.Itoa(ownerUID)}, {"local", "0"}} {
		pids := s.DaemonPids(d.name)
		if len(pids) != 1 {
			t.Fatalf("%d %s processes", len(pids), d.name)
		}
		uid, gid, groups := procIDs(t, pids[0])
		if uid != d.uid || groups != "" {
			t.Errorf("%s runs as uid %s gid %s groups %q; want uid %s and no supplementary groups", d.name, uid, gid, groups, d.uid)
		}
		if d.name != "local" && gid != strconv.Itoa(ownerGID) {
			t.Errorf("%s runs with gid %s, want %d", d.name, gid, ownerGID)
		}
	}

	// The symlinked Maildir got nothing; the message waits in the queue.
	s.WaitFor("the hostile user's message to be deferred", 20*time.Second, func() bool {
		q, _ := s.Posthorn("", "queue", "list")
		return strings.Contains(q, "phevil-test@localhost") && strings.Contains(q, "maildir")
	})
	if ents, _ := os.ReadDir(target); len(ents) != 0 {
		t.Errorf("delivery followed the symlinked Maildir into %s: %v", target, ents)
	}
}
