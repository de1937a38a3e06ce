package pop3

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// fail2ban's dovecot filter in Go's syntax, in two versions: Debian 12's
// fail2ban 1.0.2 and the current upstream filter.d/dovecot.conf. <HOST>
// becomes a named group taking an address; %(__prefix_line)s is the
// syslog prefix of common.conf with _daemon as a posthorn jail sets it
// (filter = dovecot[_daemon="posthorn/[\w-]+"]).
var (
	f2bPrefix = func(daemon string) string {
		return `^(?:\[\])?\s*(?:<[^.]+\.[^.]+>\s+)?(?:\S+\s+)?(?:kernel:\s?\[ *\d+\.\d+\]:?\s+)?(?:@vserver_\S+\s+)?` +
			`(?:(?:(?:\[\d+\])?:\s+[\[\(]?` + daemon + `(?:\(\S+\))?[\]\)]?:?|[\[\(]?` + daemon + `(?:\(\S+\))?[\]\)]?:?(?:\[\d+\])?:?)\s+)?` +
			`(?:\[ID \d+ \S+\]\s+)?`
	}
	f2bHost = `(?P<host>[0-9A-Fa-f:.]+)`

	f2bFilters = []struct {
		name   string
		prefix *regexp.Regexp
		fail   *regexp.Regexp
	}{
		{"fail2ban 1.0.2",
			regexp.MustCompile(f2bPrefix(`posthorn/[\w-]+`) +
				`(?:(?:dovecot: )?auth(?:-worker)?(?:\([^\)]+\))?: )?(?:pam_unix(?:\(dovecot:auth\))?: |(?:pop3|imap|managesieve|submission)-login: )?(?:Info: )?` +
				`(?:conn \w+:auth(?:-worker)? \([^\)]+\): auth(?:-worker)?<\d+>: )?(?P<content>.+)$`),
			regexp.MustCompile(`^(?:Aborted login|Disconnected|Remote closed connection|Client has quit the connection)(?:: (?:\w+\([^\):]*\) \w+|[^\(]+))* \((?:auth failed, \d+ attempts(?: in \d+ secs)?|tried to use (?:disabled|disallowed) \S+ auth|proxy dest auth failed)\):(?: user=<[^>]*>,)?(?: method=\S+,)? rip=` + f2bHost + `(?:[^>]*(?:, session=<\S+>)?)\s*$`)},
		{"fail2ban upstream",
			regexp.MustCompile(f2bPrefix(`posthorn/[\w-]+`) +
				`(?:(?:dovecot: )?auth(?:-worker)?(?:\([^\)]+\))?: )?(?:pam_unix(?:\(dovecot:auth\))?: |(?:pop3|imap)-login: )?(?:Info: )?(?P<content>.+)$`),
			regexp.MustCompile(`^(?:Aborted login|Disconnected)(?::(?: [^ \(]+)+)? \((?:auth failed, \d+ attempts(?: in \d+ secs)?|tried to use (?:disabled|disallowed) \S+ auth)\):(?: user=<[^>]*>,)?(?: method=\S+,)? rip=` + f2bHost + `(?:[^>]*(?:, session=<\S+>)?)\s*$`)},
	}
)

// bannedHost returns the address each filter version finds in a syslog
// line; every version must agree.
func bannedHost(t *testing.T, line string) string {
	t.Helper()
	var hosts []string
	for _, f := range f2bFilters {
		h := ""
		if m := f.prefix.FindStringSubmatch(line); m != nil {
			if a := f.fail.FindStringSubmatch(m[f.prefix.SubexpIndex("content")]); a != nil {
				h = a[f.fail.SubexpIndex("host")]
			}
		}
		hosts = append(hosts, h)
	}
	for _, h := range hosts[1:] {
		if h != hosts[0] {
			t.Errorf("%s: filters disagree: %q", line, hosts)
		}
	}
	return hosts[0]
}

// syslogLine is a logged message as rsyslog writes it to mail.log with
// the tag posthorn/pop3-login, without the date fail2ban removes first.
func syslogLine(msg string) string { return "mx posthorn/pop3-login[4242]: " + msg }

// loginLog runs one login session from remote and returns what it logged.
func loginLog(t *testing.T, remote net.Addr, cfg LoginConfig, script func(c *client)) []string {
	t.Helper()
	log := newTestLog()
	cfg.Log = log.l
	if cfg.AllowPlaintext == nil {
		cfg.AllowPlaintext = func(net.Conn) bool { return true }
	}
	c, res := loginPipe(t, context.Background(), cfg, newFakeAuth(), func(nc net.Conn) net.Conn {
		return addrConn{nc, remote, localAddr}
	})
	c.line()
	script(c)
	wait(t, res)
	return log.lines()
}

func TestLoginFailureLinesMatchFail2ban(t *testing.T) {
	v6 := &net.TCPAddr{IP: net.ParseIP("2001:db8::7"), Port: 5000}
	cases := []struct {
		name   string
		remote net.Addr
		cfg    LoginConfig
		script func(c *client)
		want   string // the line
		host   string // what fail2ban bans; "" for nothing
	}{
		{"failures then QUIT", remoteAddr, LoginConfig{}, func(c *client) {
			c.expect("USER alice", "+OK")
			c.expect("PASS wrong", msgAuthFailed)
			c.expect("AUTH PLAIN "+plainIR("", "alice", "nope"), msgAuthFailed)
			c.expect("QUIT", "+OK Logging out.")
		}, "pop3-login: Disconnected: Aborted login by logging out (auth failed, 2 attempts in 0 secs): user=<alice>, method=PLAIN, rip=192.0.2.1, lip=192.0.2.25, secured", "192.0.2.1"},
		{"failure then disconnect, IPv6", v6, LoginConfig{}, func(c *client) {
			c.expect("AUTH LOGIN", "+ "+b64("Username:"))
			c.expect(b64("carol"), "+ "+b64("Password:"))
			c.expect(b64("pw"), msgAuthFailed)
			c.c.Close()
		}, "pop3-login: Disconnected (auth failed, 1 attempts in 0 secs): user=<carol>, method=LOGIN, rip=2001:db8::7, lip=192.0.2.25, secured", "2001:db8::7"},
		{"failure then silence", remoteAddr, LoginConfig{Timeout: 50 * time.Millisecond}, func(c *client) {
			c.expect("USER alice", "+OK")
			c.expect("PASS wrong", msgAuthFailed)
			c.line()
		}, "pop3-login: Disconnected: Inactivity (auth failed, 1 attempts in 0 secs): user=<alice>, method=PLAIN, rip=192.0.2.1, lip=192.0.2.25, secured", "192.0.2.1"},
		{"plaintext refused", remoteAddr, LoginConfig{AllowPlaintext: func(net.Conn) bool { return false }}, func(c *client) {
			c.expect("USER alice", msgPlaintextDisallowed)
			c.c.Close()
		}, "pop3-login: Disconnected (tried to use disallowed plaintext auth): user=<alice>, rip=192.0.2.1, lip=192.0.2.25", "192.0.2.1"},
		// A name built to plant another rip= is neutralised.
		{"hostile name", remoteAddr, LoginConfig{}, func(c *client) {
			c.expect("USER x>, method=PLAIN, rip=10.0.0.1, lip=1", "+OK")
			c.expect("PASS wrong", msgAuthFailed)
			c.c.Close()
		}, "pop3-login: Disconnected (auth failed, 1 attempts in 0 secs): user=<x???method?PLAIN??rip?10.0.0.1??lip?1>, method=PLAIN, rip=192.0.2.1, lip=192.0.2.25, secured", "192.0.2.1"},
		// Not a guess: fail2ban's normal mode ignores it.
		{"no attempt", remoteAddr, LoginConfig{}, func(c *client) {
			c.expect("CAPA", "+OK")
			c.multi()
			c.expect("QUIT", "+OK Logging out.")
		}, "pop3-login: Disconnected: Aborted login by logging out (no auth attempts in 0 secs): user=<>, rip=192.0.2.1, lip=192.0.2.25, secured", ""},
		{"success", remoteAddr, LoginConfig{}, func(c *client) {
			c.expect("USER alice", "+OK")
			c.send("PASS secret\r\n")
		}, "pop3-login: Login: user=<alice>, method=PLAIN, rip=192.0.2.1, lip=192.0.2.25, secured", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lines := loginLog(t, tc.remote, tc.cfg, tc.script)
			if len(lines) != 1 || lines[0] != tc.want {
				t.Fatalf("log %q\nwant %q", lines, tc.want)
			}
			if h := bannedHost(t, syslogLine(lines[0])); h != tc.host {
				t.Fatalf("fail2ban bans %q, want %q", h, tc.host)
			}
		})
	}
}

func TestLogoutLineIsNotAFailure(t *testing.T) {
	line := syslogLine("pop3(alice)<4242>: Disconnected: Logged out top=0/0, retr=1/1234, del=0/1, size=5678")
	if h := bannedHost(t, line); h != "" {
		t.Fatalf("fail2ban bans %q for a logout", h)
	}
}

// TestFail2banRegex runs fail2ban's own matcher on a failure line when
// fail2ban is installed.
func TestFail2banRegex(t *testing.T) {
	f2b, err := exec.LookPath("fail2ban-regex")
	if err != nil {
		t.Skip("fail2ban is not installed")
	}
	lines := loginLog(t, remoteAddr, LoginConfig{}, func(c *client) {
		c.expect("USER alice", "+OK")
		c.expect("PASS wrong", msgAuthFailed)
		c.c.Close()
	})
	log := filepath.Join(t.TempDir(), "mail.log")
	if err := os.WriteFile(log, []byte("Nov 26 10:00:00 "+syslogLine(lines[0])+"\n"), 0600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(f2b, log, `dovecot[_daemon="posthorn/[\w-]+"]`).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "1 matched") {
		t.Fatalf("fail2ban-regex: %v\n%s", err, out)
	}
}

func TestLogName(t *testing.T) {
	for in, want := range map[string]string{
		"alice@example.org":      "alice@example.org",
		"a+tag@example.org":      "a+tag@example.org",
		"":                       "",
		"x\x00y\r\nz":            "x?y??z",
		"ä":                      "??",
		strings.Repeat("a", 100): strings.Repeat("a", 64) + "...",
	} {
		if got := logName(in); got != want {
			t.Errorf("logName(%q) = %q, want %q", in, got, want)
		}
	}
}
