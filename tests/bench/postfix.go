package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Debian's paths of the postfix package.
const (
	postfixCmd  = "/usr/sbin/postfix"
	postfixMeta = "/etc/postfix" // meta_directory: read only, to copy from
)

var errNeedRoot = errors.New("postfix runs only when started by root")

func postfixInstalled() bool {
	_, err := os.Stat(postfixCmd)
	return err == nil
}

func postfixVersion() string {
	out, err := exec.Command("/usr/sbin/postconf", "-d", "-h", "mail_version").Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}

// postfixSystem is a private Postfix instance: its own config_directory,
// queue_directory and data_directory in a temporary folder, smtpd on a free
// loopback port only, delivering with virtual(8) to Maildirs under the same
// folder. The system's /etc/postfix is only read (the meta files are
// copied) and port 25 is not used.
type postfixSystem struct {
	dir, etc, spool, data, mail string
	addr                        string // the MX smtpd
	submit                      string // where the load goes: addr, or the submission smtpd
	users                       int
	pid                         int
	started                     bool
}

func lookupIDs(userName, groupName string) (int, int, error) {
	u, err := user.Lookup(userName)
	if err != nil {
		return 0, 0, err
	}
	g, err := user.LookupGroup(groupName)
	if err != nil {
		return 0, 0, err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(g.Gid)
	return uid, gid, nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// startPostfix starts an instance delivering to virtual users' Maildirs,
// or, with relay set, relaying every message to relay.sinkAddr. In the
// relay case the load goes to a second smtpd, the submission service,
// which relays for mynetworks (127.0.0.0/8) without AUTH: a Postfix SASL
// server needs Cyrus saslauthd/sasldb or Dovecot, neither of which comes
// with the postfix package.
func startPostfix(base string, users, sessions int, relay *relaySetup) (*postfixSystem, error) {
	if os.Geteuid() != 0 {
		return nil, errNeedRoot
	}
	if _, err := user.Lookup("postfix"); err != nil {
		return nil, fmt.Errorf("no postfix user: %w", err)
	}
	if _, err := user.LookupGroup("postdrop"); err != nil {
		return nil, fmt.Errorf("no postdrop group: %w", err)
	}
	// virtual(8) refuses uid 0 (virtual_minimum_uid), so the mailboxes
	// belong to nobody:nogroup.
	vuid, vgid, err := lookupIDs("nobody", "nogroup")
	if err != nil {
		return nil, fmt.Errorf("mailbox owner: %w", err)
	}
	dir, err := os.MkdirTemp(base, "postfix-bench-")
	if err != nil {
		return nil, err
	}
	os.Chmod(dir, 0755)
	s := &postfixSystem{dir: dir, users: users,
		etc: filepath.Join(dir, "etc"), spool: filepath.Join(dir, "spool"),
		data: filepath.Join(dir, "data"), mail: filepath.Join(dir, "mail")}
	for _, d := range []string{s.etc, s.spool, s.data, s.mail} {
		if err := os.Mkdir(d, 0755); err != nil {
			return s, err
		}
	}
	if err := os.Chown(s.mail, vuid, vgid); err != nil {
		return s, err
	}
	puid, pgid, err := lookupIDs("postfix", "postfix")
	if err != nil {
		return s, err
	}
	if err := os.Chown(s.data, puid, pgid); err != nil {
		return s, err
	}
	os.Chmod(s.data, 0700)
	// The meta files post-install reads, so nothing under /etc/postfix is
	// ever written.
	for _, name := range []string{"postfix-files", "dynamicmaps.cf", "main.cf.proto", "master.cf.proto", "makedefs.out"} {
		if err := copyFile(filepath.Join(postfixMeta, name), filepath.Join(s.etc, name)); err != nil && !os.IsNotExist(err) {
			return s, err
		}
	}
	for _, d := range []string{"postfix-files.d", "dynamicmaps.cf.d"} {
		os.Mkdir(filepath.Join(s.etc, d), 0755)
		ents, _ := os.ReadDir(filepath.Join(postfixMeta, d))
		for _, e := range ents {
			if e.Type().IsRegular() {
				copyFile(filepath.Join(postfixMeta, d, e.Name()), filepath.Join(s.etc, d, e.Name()))
			}
		}
	}
	port, err := freePort()
	if err != nil {
		return s, err
	}
	s.addr = fmt.Sprintf("127.0.0.1:%d", port)
	s.submit = s.addr
	relayhost, submission := "", ""
	if relay != nil {
		relayhost = "[" + strings.Replace(relay.sinkAddr, ":", "]:", 1)
		sport, err := freePort()
		if err != nil {
			return s, err
		}
		s.submit = fmt.Sprintf("127.0.0.1:%d", sport)
		submission = s.submit
	}
	var vmap strings.Builder
	for i := 0; i < users; i++ {
		fmt.Fprintf(&vmap, "%s example.test/user%d/Maildir/\n", rcpt(i), i)
	}
	if err := os.WriteFile(filepath.Join(s.etc, "vmailbox"), []byte(vmap.String()), 0644); err != nil {
		return s, err
	}
	// Defaults everywhere except where the instance must be private; the
	// durability settings are Postfix's own (queue file fsynced before
	// the 250, Maildir file fsynced before the delivery is recorded).
	main := fmt.Sprintf(`compatibility_level = 3.6
meta_directory = %[1]s
queue_directory = %[2]s
data_directory = %[3]s
mail_owner = postfix
setgid_group = postdrop
myhostname = mail.example.test
mydomain = example.test
myorigin = $myhostname
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = %[9]s
alias_maps =
alias_database =
biff = no
maillog_file = %[4]s
maillog_file_prefixes = %[8]s
virtual_mailbox_domains = example.test
virtual_mailbox_base = %[5]s
virtual_mailbox_maps = texthash:%[1]s/vmailbox
virtual_uid_maps = static:%[6]d
virtual_gid_maps = static:%[7]d
`, s.etc, s.spool, s.data, filepath.Join(dir, "maillog"), s.mail, vuid, vgid, dir, relayhost)
	if err := os.WriteFile(filepath.Join(s.etc, "main.cf"), []byte(main), 0644); err != nil {
		return s, err
	}
	smtpdLimit := "-"
	if sessions+10 > 100 {
		smtpdLimit = strconv.Itoa(sessions + 10)
	}
	// Debian's master.cf without chroot (the instance has no chroot
	// tree) and with smtpd on the private port only.
	master := fmt.Sprintf(`%s inet n - n - %s smtpd
`, s.addr, smtpdLimit)
	if submission != "" {
		// Debian's submission entry without the TLS and SASL options.
		master += fmt.Sprintf(`%s inet n - n - %s smtpd
  -o syslog_name=postfix/submission
`, submission, smtpdLimit)
	}
	master += `pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`
	if err := os.WriteFile(filepath.Join(s.etc, "master.cf"), []byte(master), 0644); err != nil {
		return s, err
	}
	s.started = true // from here on, Stop runs postfix stop
	if out, err := s.postfix("start"); err != nil {
		return s, fmt.Errorf("postfix -c %s start: %v\n%s\n%s", s.etc, err, out, s.LogTail(20))
	}
	b, err := os.ReadFile(filepath.Join(s.spool, "pid", "master.pid"))
	if err != nil {
		return s, fmt.Errorf("postfix master pid: %w", err)
	}
	if s.pid, err = strconv.Atoi(strings.TrimSpace(string(b))); err != nil {
		return s, fmt.Errorf("postfix master pid: %w", err)
	}
	for _, a := range []string{s.addr, s.submit} {
		if err := waitGreeting(a, 20*time.Second); err != nil {
			return s, fmt.Errorf("%v\n%s", err, s.LogTail(20))
		}
	}
	return s, nil
}

func (s *postfixSystem) postfix(args ...string) (string, error) {
	cmd := exec.Command(postfixCmd, append([]string{"-c", s.etc}, args...)...)
	cmd.Env = append(os.Environ(), "MAIL_CONFIG="+s.etc)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (s *postfixSystem) Name() string            { return "postfix" }
func (s *postfixSystem) Addr() string            { return s.submit }
func (s *postfixSystem) MasterPid() int          { return s.pid }
func (s *postfixSystem) Label(p procInfo) string { return p.comm }

func (s *postfixSystem) Maildirs() []string {
	var out []string
	for i := 0; i < s.users; i++ {
		out = append(out, filepath.Join(s.mail, "example.test", fmt.Sprintf("user%d", i), "Maildir"))
	}
	return out
}

func (s *postfixSystem) QueueFiles() int {
	var dirs []string
	for _, q := range []string{"maildrop", "incoming", "active", "deferred", "hold"} {
		dirs = append(dirs, filepath.Join(s.spool, q))
	}
	return countFiles(dirs...)
}

func (s *postfixSystem) LogTail(lines int) string {
	return tailFile(filepath.Join(s.dir, "maillog"), lines)
}

// running reports whether pid is a live process (not a zombie).
func running(pid int) bool {
	if pid <= 0 {
		return false
	}
	p, err := readStat(pid)
	if err != nil {
		return false
	}
	st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid))
	return !strings.Contains(string(st), ") Z ")
}

func waitGone(pid int, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for running(pid) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// Stop runs postfix stop and waits for master to exit; if it does not,
// postfix abort, and finally SIGKILL to master's process group.
func (s *postfixSystem) Stop() error {
	if s == nil || !s.started {
		return nil
	}
	s.started = false
	pid := s.pid
	if pid == 0 {
		// Start failed before the pid was read: the pid file may exist.
		if b, err := os.ReadFile(filepath.Join(s.spool, "pid", "master.pid")); err == nil {
			pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		}
	}
	if !running(pid) {
		s.postfix("stop") // harmless when nothing runs
		return nil
	}
	// Every process of the instance must be gone, not only master.
	var pids []int
	for _, p := range processTree(pid) {
		pids = append(pids, p.pid)
	}
	allGone := func(limit time.Duration) bool {
		deadline := time.Now().Add(limit)
		for _, p := range pids {
			if !waitGone(p, time.Until(deadline)) {
				return false
			}
		}
		return true
	}
	out, err := s.postfix("stop")
	if err == nil && allGone(30*time.Second) {
		return nil
	}
	s.postfix("abort")
	if allGone(10 * time.Second) {
		return fmt.Errorf("postfix stop failed (%v: %s); aborted", err, strings.TrimSpace(out))
	}
	for _, p := range pids {
		if running(p) {
			syscall.Kill(p, syscall.SIGKILL)
		}
	}
	allGone(5 * time.Second)
	return fmt.Errorf("postfix master %d did not stop; killed", pid)
}
