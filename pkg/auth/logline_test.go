package auth

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The filters of fail2ban 1.0.2 (Debian 12), filter.d/postfix.conf and
// filter.d/dovecot.conf, in Go's syntax: <HOST> becomes a named group that
// takes an address, %(__prefix_line)s the syslog prefix of common.conf
// with _daemon set as the jail sets it for posthorn, and Python's negative
// lookahead in postfix's mdre-auth is checked separately.
var (
	// __prefix_line of logtype "file" (date already removed by fail2ban).
	prefix = func(daemon string) string {
		return `^(?:\[\])?\s*(?:<[^.]+\.[^.]+>\s+)?(?:\S+\s+)?(?:kernel:\s?\[ *\d+\.\d+\]:?\s+)?(?:@vserver_\S+\s+)?` +
			`(?:(?:(?:\[\d+\])?:\s+[\[\(]?` + daemon + `(?:\(\S+\))?[\]\)]?:?|[\[\(]?` + daemon + `(?:\(\S+\))?[\]\)]?:?(?:\[\d+\])?:?)\s+)?` +
			`(?:\[ID \d+ \S+\]\s+)?`
	}
	host = `(?P<host>[0-9A-Fa-f:.]+)`

	// postfix.conf, mode=auth.
	postfixPrefix = regexp.MustCompile(prefix(`posthorn/\w+`) + `warning: (?P<content>.+)$`)
	postfixAuth   = regexp.MustCompile(`^[^[]*\[` + host + `\](?::\d+)?: SASL ((?i)LOGIN|PLAIN|(?:CRAM|DIGEST)-MD5) authentication failed:(?P<rest>.*)`)

	// dovecot.conf, mode=normal.
	dovecotPrefix = regexp.MustCompile(prefix(`posthorn/[\w-]+`) +
		`(?:(?:dovecot: )?auth(?:-worker)?(?:\([^\)]+\))?: )?(?:pam_unix(?:\(dovecot:auth\))?: |(?:pop3|imap|managesieve|submission)-login: )?(?:Info: )?` +
		`(?:conn \w+:auth(?:-worker)? \([^\)]+\): auth(?:-worker)?<\d+>: )?(?P<content>.+)$`)
	dovecotFail = []*regexp.Regexp{
		regexp.MustCompile(`^authentication failure; logname=\S* uid=\S* euid=\S* tty=dovecot ruser=\S* rhost=` + host + `(?:\s+user=\S*)?\s*$`),
		regexp.MustCompile(`^(?:Aborted login|Disconnected|Remote closed connection|Client has quit the connection)(?:: (?:\w+\([^\):]*\) \w+|[^\(]+))* \((?:auth failed, \d+ attempts(?: in \d+ secs)?|tried to use (?:disabled|disallowed) \S+ auth|proxy dest auth failed)\):(?: user=<[^>]*>,)?(?: method=\S+,)? rip=` + host + `(?:[^>]*(?:, session=<\S+>)?)\s*$`),
		regexp.MustCompile(`^pam\(\S+,` + host + `(?:,\S*)?\): pam_authenticate\(\) failed: (?:User not known to the underlying authentication module: \d+ Time\(s\)|Authentication failure \([Pp]assword mismatch\?\)|Permission denied)\s*$`),
		regexp.MustCompile(`^[a-z\-]{3,15}\(\S*,` + host + `(?:,\S*)?\): (?:[Uu]nknown user|[Ii]nvalid credentials|[Pp]assword mismatch)`),
	}
)

// postfixHost returns the address fail2ban's postfix filter (mode=auth)
// finds in a syslog line, or "" when it does not match.
func postfixHost(line string) string {
	m := postfixPrefix.FindStringSubmatch(line)
	if m == nil {
		return ""
	}
	c := m[postfixPrefix.SubexpIndex("content")]
	a := postfixAuth.FindStringSubmatch(c)
	if a == nil {
		return ""
	}
	rest := a[postfixAuth.SubexpIndex("rest")]
	if strings.HasPrefix(rest, " Connection lost to authentication server") || strings.HasPrefix(rest, " Invalid authentication mechanism") {
		return ""
	}
	return a[postfixAuth.SubexpIndex("host")]
}

// dovecotHost is the same for the dovecot filter.
func dovecotHost(line string) string {
	m := dovecotPrefix.FindStringSubmatch(line)
	if m == nil {
		return ""
	}
	c := m[dovecotPrefix.SubexpIndex("content")]
	for _, re := range dovecotFail {
		if a := re.FindStringSubmatch(c); a != nil {
			return a[re.SubexpIndex("host")]
		}
	}
	return ""
}

// syslogLine is a line as rsyslog writes it to /var/log/mail.log, without
// the date that fail2ban removes first.
func syslogLine(program, msg string) string {
	return "mx posthorn/" + program + "[4242]: " + msg
}

func TestSMTPFailureLine(t *testing.T) {
	cases := []struct {
		name, ip, mech, user string
		res                  Result
		err                  error
		want                 string
		host                 string // what fail2ban bans; "" for no match
	}{
		{"unknown", "192.0.2.1", "LOGIN", "alice", Result{}, nil,
			"unknown[192.0.2.1]: SASL LOGIN authentication failed: authentication failure, sasl_username=alice", "192.0.2.1"},
		{"client.example.net", "2001:db8::7", "plain", "", Result{}, nil,
			"client.example.net[2001:db8::7]: SASL PLAIN authentication failed: authentication failure", "2001:db8::7"},
		// Over a limit: still the client's doing.
		{"unknown", "192.0.2.1", "PLAIN", "carol", Result{Temp: true, Reason: string(refusedClient)}, nil,
			"unknown[192.0.2.1]: SASL PLAIN authentication failed: authentication failure, sasl_username=carol", "192.0.2.1"},
		// The auth service failing: not counted.
		{"unknown", "192.0.2.1", "PLAIN", "carol", Result{Temp: true, Reason: "pam: pam_authenticate() failed: Module is unknown"}, nil,
			"unknown[192.0.2.1]: SASL PLAIN authentication failed: Connection lost to authentication server, sasl_username=carol", ""},
		{"unknown", "192.0.2.1", "PLAIN", "carol", Result{}, errors.New("auth: dial unix: no such file"),
			"unknown[192.0.2.1]: SASL PLAIN authentication failed: Connection lost to authentication server, sasl_username=carol", ""},
		// A hostile name cannot move the address fail2ban finds.
		{"unknown", "192.0.2.1", "LOGIN", "x]: SASL LOGIN authentication failed: [10.0.0.1", Result{}, nil,
			"unknown[192.0.2.1]: SASL LOGIN authentication failed: authentication failure, sasl_username=x???SASL?LOGIN?authentication?failed???10.0.0.1", "192.0.2.1"},
		// Nor a hostile host name.
		{"evil[10.0.0.1]", "192.0.2.1", "LOGIN", "", Result{}, nil,
			"unknown[192.0.2.1]: SASL LOGIN authentication failed: authentication failure", "192.0.2.1"},
	}
	for _, c := range cases {
		got := SMTPFailure(c.name, c.ip, c.mech, c.user, c.res, c.err)
		if got != c.want {
			t.Errorf("SMTPFailure:\n got %s\nwant %s", got, c.want)
			continue
		}
		// smtpd logs it as a warning.
		line := syslogLine("smtpd", "warning: "+got)
		if h := postfixHost(line); h != c.host {
			t.Errorf("%s: fail2ban postfix filter finds %q, want %q", line, h, c.host)
		}
	}
}

func TestLimited(t *testing.T) {
	for _, r := range []refusal{refusedClient, refusedUser, refusedInFlight} {
		if !(Result{Temp: true, Reason: string(r)}).Limited() {
			t.Errorf("%s: not Limited", r)
		}
	}
	for _, res := range []Result{
		{Temp: true, Reason: "pam: pam_authenticate() failed: Module is unknown"},
		{Reason: string(refusedClient)}, // not temporary: cannot be a limit
		{OK: true},
	} {
		if res.Limited() {
			t.Errorf("%+v: Limited", res)
		}
	}
}

func TestLoginFailureLine(t *testing.T) {
	got := LoginFailure(3, 12500*time.Millisecond, "alice@example.org", "plain", "192.0.2.1", "192.0.2.25", true)
	want := "Disconnected (auth failed, 3 attempts in 12 secs): user=<alice@example.org>, method=PLAIN, rip=192.0.2.1, lip=192.0.2.25, TLS"
	if got != want {
		t.Fatalf("LoginFailure:\n got %s\nwant %s", got, want)
	}
	for _, program := range []string{"imap-login", "pop3-login"} {
		if h := dovecotHost(syslogLine(program, got)); h != "192.0.2.1" {
			t.Errorf("%s: fail2ban dovecot filter finds %q", program, h)
		}
	}
	// A hostile name: user=<...> cannot be closed early to plant an rip.
	got = LoginFailure(1, 0, "x>, method=PLAIN, rip=10.0.0.1, lip=1", "LOGIN", "2001:db8::1", "::1", false)
	if h := dovecotHost(syslogLine("imap-login", got)); h != "2001:db8::1" {
		t.Errorf("%s: fail2ban finds %q", got, h)
	}
}

// The daemon's own lines, as the tests of the server produce them, with
// the address each one must get banned.
func TestDaemonLinesMatchDovecotFilter(t *testing.T) {
	e := newEnv(t, nil)
	e.attempt(req("alice@example.org", "wrong", "192.0.2.1"))
	e.attempt(req("nobody@example.org", "wrong", "192.0.2.2"))
	e.attempt(req("carol", "wrong", "2001:db8::3"))
	e.attempt(req("a,10.0.0.1", "wrong", "192.0.2.4"))
	e.attempt(req("x(10.0.0.1): Password mismatch", "wrong", "192.0.2.5"))
	e.attempt(req("carol@elsewhere.example", "wrong", "192.0.2.6"))
	want := []string{"192.0.2.1", "192.0.2.2", "2001:db8::3", "192.0.2.4", "192.0.2.5", "192.0.2.6"}
	lines := e.log.lines()
	if len(lines) != len(want) {
		t.Fatalf("%d lines:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	for i, l := range lines {
		if h := dovecotHost(syslogLine("auth", l)); h != want[i] {
			t.Errorf("%s: fail2ban finds %q, want %q", l, h, want[i])
		}
	}
	// Lines that are not failed guesses are not counted.
	for _, l := range []string{
		"passdb(alice,192.0.2.1): too many authentication failures from this client 192.0.2.1: refused without checking (0 more refused since the last such line)",
		"passdb(alice,192.0.2.1): password sent without TLS refused",
		"pam(root,192.0.2.1): uid 0 below first_valid_uid 1000",
	} {
		if h := dovecotHost(syslogLine("auth", l)); h != "" {
			t.Errorf("%s: fail2ban finds %q", l, h)
		}
	}
}

// TestFail2banRegex runs fail2ban's own matcher, with the filters and
// jail options the package documents, when fail2ban is installed.
func TestFail2banRegex(t *testing.T) {
	f2b, err := exec.LookPath("fail2ban-regex")
	if err != nil {
		t.Skip("fail2ban is not installed")
	}
	lines := []struct{ filter, line string }{
		{`postfix[mode=auth, _daemon="posthorn/\w+"]`,
			syslogLine("smtpd", "warning: "+SMTPFailure("unknown", "192.0.2.1", "LOGIN", "alice", Result{}, nil))},
		{`dovecot[_daemon="posthorn/[\w-]+"]`, syslogLine("auth", "passwd-file(alice@example.org,192.0.2.1): Password mismatch")},
		{`dovecot[_daemon="posthorn/[\w-]+"]`, syslogLine("auth", "passwd-file(alice@example.org,192.0.2.1): unknown user")},
		{`dovecot[_daemon="posthorn/[\w-]+"]`, syslogLine("auth", "pam(carol,192.0.2.1): pam_authenticate() failed: Authentication failure (password mismatch?)")},
		{`dovecot[_daemon="posthorn/[\w-]+"]`, syslogLine("auth", "passdb(a?b,192.0.2.1): invalid credentials")},
		{`dovecot[_daemon="posthorn/[\w-]+"]`,
			syslogLine("imap-login", LoginFailure(2, 5*time.Second, "alice", "PLAIN", "192.0.2.1", "192.0.2.25", true))},
	}
	dir := t.TempDir()
	for i, l := range lines {
		log := filepath.Join(dir, "log")
		if err := os.WriteFile(log, []byte("Nov 26 10:00:00 "+l.line+"\n"), 0600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(f2b, log, l.filter).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "1 matched") {
			t.Errorf("line %d: fail2ban-regex %s %q: %v\n%s", i, l.filter, l.line, err, out)
		}
	}
}
