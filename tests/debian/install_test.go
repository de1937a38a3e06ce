package debian

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// deliveryWait bounds each wait for a local delivery.
const deliveryWait = 30 * time.Second

func TestInstallOnDebian(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("installing into a Debian root needs root (debootstrap, chroot, namespaces): run make test as root, as CI does")
	}
	requireTools(t)
	start := time.Now()
	deb := buildPackage(t)
	dir := prepareRoot(t)
	c := enter(t, dir, true)
	debIn := copySource(t, c, deb)
	t.Logf("package %s built and root ready in %s", deb, time.Since(start).Round(time.Second))

	uninstalled := false
	t.Run("fresh", func(t *testing.T) { c.t = t; testFreshInstall(t, c, debIn); uninstalled = true })
	if !uninstalled {
		return // stopped half-way: the root is in no state to go on
	}
	t.Run("replace", func(t *testing.T) { c.t = t; testReplace(t, c, debIn) })
	t.Logf("whole test: %s", time.Since(start).Round(time.Second))
}

// status returns dpkg's status of a package in the root ("" when unknown).
func status(c *chroot, pkg string) string {
	out, err := c.sh("dpkg-query -W -f='${Status}' " + pkg + " 2>/dev/null")
	if err != nil {
		return ""
	}
	return out
}

// testFreshInstall installs posthorn on a Debian system with Exim, its
// default MTA, and uses it as a Debian administrator and Debian's programs
// would.
func testFreshInstall(t *testing.T, c *chroot, deb string) {
	if st := status(c, "exim4-daemon-light"); st != "install ok installed" {
		t.Fatalf("the root should start with Exim installed, not %q", st)
	}
	if out := c.must("sh /root/posthorn/install.sh --help"); !strings.Contains(out, "--replace") || !strings.Contains(out, "--uninstall") {
		t.Errorf("install.sh --help:\n%s", out)
	}
	out := c.must("sh /root/posthorn/install.sh --deb " + deb)
	t.Logf("install.sh:\n%s", tail([]byte(out), 30))

	// apt replaced Exim and kept what needs an MTA.
	for pkg, want := range map[string]string{"posthorn": "install ok installed", "bsd-mailx": "install ok installed",
		"cron": "install ok installed"} {
		if st := status(c, pkg); st != want {
			t.Errorf("package %s: status %q, want %q", pkg, st, want)
		}
	}
	if st := status(c, "exim4-daemon-light"); strings.HasPrefix(st, "install ok") {
		t.Errorf("exim4-daemon-light is still installed (%q): posthorn must replace it", st)
	}
	c.must("apt-get check") // every dependency satisfied

	// Users, folders, files.
	for user, want := range map[string]string{
		"posthorn": ":/var/spool/posthorn:/usr/sbin/nologin",
		"vmail":    ":/var/vmail:/usr/sbin/nologin",
	} {
		if pw := strings.TrimSpace(c.must("getent passwd " + user)); !strings.HasSuffix(pw, want) {
			t.Errorf("user %s: %q, want home and shell %q", user, pw, want)
		}
		c.must("getent group " + user)
	}
	stat := func(p string) string { return strings.TrimSpace(c.must("stat -c '%a %U:%G %F' " + p)) }
	for p, want := range map[string]string{
		"/var/spool/posthorn":                  "755 root:root directory",
		"/var/spool/posthorn/incoming":         "700 posthorn:posthorn directory",
		"/var/spool/posthorn/active":           "700 posthorn:posthorn directory",
		"/var/spool/posthorn/deferred":         "700 posthorn:posthorn directory",
		"/var/spool/posthorn/hold":             "700 posthorn:posthorn directory",
		"/var/spool/posthorn/corrupt":          "700 posthorn:posthorn directory",
		"/var/spool/posthorn/private":          "700 posthorn:posthorn directory",
		"/var/spool/posthorn/public":           "711 posthorn:posthorn directory",
		"/var/spool/posthorn/maildrop":         "1733 posthorn:posthorn directory",
		"/var/lib/posthorn":                    "755 root:root directory",
		"/var/vmail":                           "750 vmail:vmail directory",
		"/etc/posthorn/posthorn.toml":          "644 root:root regular file",
		"/etc/pam.d/posthorn":                  "644 root:root regular file",
		"/lib/systemd/system/posthorn.service": "644 root:root regular file",
		"/usr/lib/posthorn/master":             "755 root:root regular file",
		"/usr/sbin/posthorn":                   "755 root:root regular file",
		"/usr/sbin/sendmail":                   "755 root:root regular file",
		"/usr/bin/mailq":                       "755 root:root regular file",
		"/usr/bin/newaliases":                  "755 root:root regular file",
		"/usr/lib/sendmail":                    "777 root:root symbolic link",
	} {
		if got := stat(p); got != want {
			t.Errorf("%s: %s, want %s", p, got, want)
		}
	}
	if l := strings.TrimSpace(c.must("readlink /usr/lib/sendmail")); l != "../sbin/sendmail" {
		t.Errorf("/usr/lib/sendmail -> %s, want ../sbin/sendmail", l)
	}
	if pam, want := c.read("/etc/pam.d/posthorn"), c.must("/usr/lib/posthorn/auth -pam-config"); pam != want {
		t.Errorf("/etc/pam.d/posthorn is\n%s\nwant auth -pam-config's\n%s", pam, want)
	}
	if conf, want := c.read("/etc/posthorn/posthorn.toml"), c.read("/root/posthorn/etc/posthorn.toml"); conf != want {
		t.Errorf("/etc/posthorn/posthorn.toml is not the example configuration")
	}
	c.must("man -w 8 posthorn && man -w 5 posthorn.toml && man -w 1 sendmail && man -w 8 pickup && man -w 8 auth")

	// systemd's own check of the installed unit: syntax, the commands it
	// runs, the units it names, and its manual pages.
	if out, err := c.sh("systemd-analyze verify /lib/systemd/system/posthorn.service 2>&1"); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify posthorn.service: %v\n%s", err, out)
	}
	if l, _ := c.sh("readlink /etc/systemd/system/multi-user.target.wants/posthorn.service"); strings.TrimSpace(l) != "/lib/systemd/system/posthorn.service" {
		t.Errorf("posthorn.service is not enabled: multi-user.target.wants/posthorn.service -> %q", l)
	}

	// An administrator's change, which --uninstall must keep.
	c.must(`sed -i 's|^#maximal_queue_lifetime = .*|maximal_queue_lifetime = "3d"|' /etc/posthorn/posthorn.toml && grep -q '^maximal_queue_lifetime' /etc/posthorn/posthorn.toml`)
	c.must("posthorn check")
	m := startMaster(t, c)
	// Root's mail goes where it goes on a fresh Debian system: mbox in
	// /var/mail/root.
	inbox := func() string { return c.read("/var/mail/root") }

	// mail(1) from bsd-mailx, as a user types it. It runs "sendmail -i
	// -t" with "To: root" in the header.
	bare(t, c, "echo 'body from mailx' | mail -s 'test from mailx' root",
		"echo 'body from mailx' | mail -s 'test from mailx' root@"+hostname)
	waitFor(t, "mail(1)'s message in root's mailbox", deliveryWait, m, func() bool {
		return strings.Contains(inbox(), "Subject: test from mailx")
	})
	if in := inbox(); !strings.HasPrefix(in, "From root@"+hostname+" ") || !strings.Contains(in, "body from mailx") ||
		!strings.Contains(in, "Delivered-To: root@"+hostname) {
		t.Errorf("root's mailbox /var/mail/root after mail(1):\n%s", in)
	}
	if st := stat("/var/mail/root"); st != "600 root:mail regular file" && st != "660 root:mail regular file" {
		t.Errorf("/var/mail/root: %s, want mode 600 or 660, root:mail (Debian Policy 11.6)", st)
	}
	// mail(1) reads it back (and leaves it: x quits without changes).
	if out := c.must("echo x | mail -f /var/mail/root"); !strings.Contains(out, "test from mailx") {
		t.Errorf("mail -f /var/mail/root:\n%s", out)
	}

	// cron: Debian's cron runs "sendmail -FCronDaemon -i -B8BITMIME -oem
	// root" with its own headers on standard input.
	c.must(`printf 'From: root (Cron Daemon)\nTo: root\nSubject: Cron <root@` + hostname + `> run-parts /etc/cron.daily\nMIME-Version: 1.0\nContent-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: 8bit\nX-Cron-Env: <SHELL=/bin/sh>\n\ncron job output\n' | /usr/sbin/sendmail -FCronDaemon -i -B8BITMIME -oem root`)
	// and scripts that take the recipients from the header (-t).
	report := `printf 'To: %s\nSubject: report via sendmail -t\n\nline one\n.\nline after a dot\n' | /usr/sbin/sendmail -t -oi`
	bare(t, c, fmt.Sprintf(report, "root"), fmt.Sprintf(report, "root@"+hostname))
	waitFor(t, "cron's and sendmail -t's messages", deliveryWait, m, func() bool {
		in := inbox()
		return strings.Contains(in, "run-parts /etc/cron.daily") && strings.Contains(in, "Subject: report via sendmail -t")
	})
	if in := inbox(); !strings.Contains(in, "cron job output") || !strings.Contains(in, "line after a dot") {
		t.Errorf("root's mailbox after cron and sendmail -t:\n%s", in)
	}

	// Mail for another domain cannot leave (the root has no network): it
	// waits in the queue, and mailq lists it in Postfix's format.
	c.must("echo 'to the world' | sendmail -f root nobody@remote.example")
	var q string
	waitFor(t, "the remote message to be deferred", deliveryWait, m, func() bool {
		q = c.must("mailq")
		// The reason of a deferral, and the message out of active/ (a "*"
		// after its ID while qmgr is still moving it to deferred/).
		return strings.Contains(q, "(") && !strings.Contains(q, "* ")
	})
	checkMailq(t, q)
	if sm := c.must("sendmail -bp"); sm != q {
		t.Errorf("sendmail -bp differs from mailq:\n%s\n%s", sm, q)
	}

	// newaliases after editing /etc/aliases: the alias works.
	c.must("printf 'ops: root\\n' >>/etc/aliases")
	if out := c.must("newaliases"); !strings.Contains(out, "/etc/aliases") {
		t.Errorf("newaliases printed %q", out)
	}
	bare(t, c, "echo 'for the ops team' | mail -s 'to ops' ops", "echo 'for the ops team' | mail -s 'to ops' ops@"+hostname)
	waitFor(t, "the message to the new alias ops", deliveryWait, m, func() bool {
		return strings.Contains(inbox(), "Subject: to ops")
	})

	// pflogsumm reads the log as it reads Postfix's.
	checkPflogsumm(t, c, m)

	// A second run of install.sh changes nothing.
	// Everything but the kernel's and the test's files, the logs and the
	// mailboxes; the queue holds one deferred message, untouched until
	// its retry minutes later.
	exclude := []string{"/proc", "/dev", "/sys", "/run", "/tmp", "/var/log", "/root", "/var/mail"}
	before := listing(t, c, exclude...)
	out = c.must("sh /root/posthorn/install.sh --deb " + deb)
	if !strings.Contains(out, "nothing to do") {
		t.Errorf("second install.sh run:\n%s", out)
	}
	after := listing(t, c, exclude...)
	if before != after {
		onlyBefore, onlyAfter := diffLines(before, after)
		t.Errorf("the second install.sh run changed files:\nbefore:\n%s\nafter:\n%s",
			strings.Join(onlyBefore, "\n"), strings.Join(onlyAfter, "\n"))
	}

	// --uninstall stops posthorn and removes it; mail stays.
	mailBefore := inbox()
	deferred := strings.TrimSpace(c.must("find /var/spool/posthorn/deferred -type f | wc -l"))
	out = c.must("sh /root/posthorn/install.sh --uninstall")
	t.Logf("install.sh --uninstall:\n%s", tail([]byte(out), 30))
	m.wait(t)
	if st := status(c, "posthorn"); st != "" && st != "unknown ok not-installed" && st != "deinstall ok not-installed" {
		t.Errorf("after --uninstall the package's status is %q", st)
	}
	for _, p := range []string{"/usr/lib/posthorn", "/usr/sbin/posthorn", "/usr/sbin/sendmail", "/usr/lib/sendmail",
		"/usr/bin/mailq", "/usr/bin/newaliases", "/lib/systemd/system/posthorn.service", "/etc/pam.d/posthorn",
		"/etc/posthorn/posthorn.toml", "/etc/systemd/system/multi-user.target.wants/posthorn.service",
		"/var/lib/posthorn", "/var/spool/posthorn/private", "/usr/share/man/man8/posthorn.8.gz"} {
		if _, err := os.Lstat(c.path(p)); err == nil {
			t.Errorf("%s is still there after --uninstall", p)
		}
	}
	if got := c.read("/etc/posthorn/posthorn.toml.removed"); !strings.Contains(got, "\nmaximal_queue_lifetime = \"3d\"") {
		t.Errorf("the changed configuration was not kept as posthorn.toml.removed: %q", got)
	}
	if inbox() != mailBefore || mailBefore == "" {
		t.Errorf("root's mailbox /var/mail/root changed at --uninstall")
	}
	if n := strings.TrimSpace(c.must("find /var/spool/posthorn/deferred -type f | wc -l")); n != deferred || n == "0" {
		t.Errorf("queued mail: %s files before --uninstall, %s after", deferred, n)
	}
	c.must("getent passwd posthorn && getent passwd vmail && test -d /var/vmail")
}

// bare runs script, which submits a message whose header names a
// recipient by a bare local name ("To: root"), as mail(1), cron and
// system scripts do. When sendmail refuses it, the test fails, and goes on
// with qualified, which names the recipient with the domain, so that the
// checks after this one still run.
func bare(t *testing.T, c *chroot, script, qualified string) {
	t.Helper()
	out, err := c.sh(script)
	if err == nil {
		return
	}
	t.Errorf("sendmail refuses a bare local name in the header: %s: %v\n%s", script, err, out)
	c.must(qualified)
}

// checkMailq checks a listing with one deferred message from root to
// nobody@remote.example in Postfix's mailq format (long queue IDs).
func checkMailq(t *testing.T, q string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(q, "\n"), "\n")
	pats := []string{
		`^-+Queue ID-+ --Size-- -+Arrival Time-+ --Sender/Recipient-+$`,
		`^[0-9A-F]{10,} +\d+ (Mon|Tue|Wed|Thu|Fri|Sat|Sun) [A-Z][a-z]{2} [ 1-3]\d \d\d:\d\d:\d\d root@` + hostname + `$`,
		`^ *\(.+\)$`, // right-aligned; a long reason starts the line
		`^ +nobody@remote\.example$`,
		`^$`,
		`^-- \d+ Kbytes in 1 Request\.$`,
	}
	if len(lines) != len(pats) {
		t.Fatalf("mailq printed %d lines, want %d:\n%s", len(lines), len(pats), q)
	}
	for i, p := range pats {
		if !regexp.MustCompile(p).MatchString(lines[i]) {
			t.Errorf("mailq line %d %q does not match %s\n%s", i+1, lines[i], p, q)
		}
	}
}

// checkPflogsumm runs pflogsumm on the log and checks its totals: five
// messages received (mail(1), cron, sendmail -t, the remote one, the one
// to ops), four delivered, one deferred.
func checkPflogsumm(t *testing.T, c *chroot, m *master) {
	t.Helper()
	out := c.must("pflogsumm --syslog-name=posthorn /var/log/mail.log")
	total := func(what string) int {
		mm := regexp.MustCompile(`(?m)^\s*(\d+)\s+` + what + `\b`).FindStringSubmatch(out)
		if mm == nil {
			t.Fatalf("pflogsumm reports no %q:\n%s\nlog:\n%s", what, out, c.read("/var/log/mail.log"))
		}
		n, _ := strconv.Atoi(mm[1])
		return n
	}
	for what, want := range map[string]int{"received": 5, "delivered": 4, "deferred": 1, "bounced": 0, "rejected": 0} {
		if got := total(what); got != want {
			t.Errorf("pflogsumm: %d %s, want %d\n%s\nlog:\n%s", got, what, want, out, c.read("/var/log/mail.log"))
		}
	}
}
