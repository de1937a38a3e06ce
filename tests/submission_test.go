package tests

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/pkg/certgen"
	"github.com/posthorn/posthorn/pkg/config"
	"github.com/posthorn/posthorn/pkg/spool"
)

// submissionSystem starts an instance with submission (STARTTLS) and
// submissions (implicit TLS) on free loopback ports, and the auth daemon's
// failure delays shortened so that failed logins do not slow the tests.
// Mail for other domains goes to a relay host that refuses connections,
// so that it stays queued for the tests to look at.
func submissionSystem(t *testing.T, tweak func(c *config.Config)) (s *System, sub, subs string) {
	t.Helper()
	sub = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	subs = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	s = StartSystem(t, func(c *config.Config) {
		c.SMTPD.SubmissionListen = []string{sub}
		c.SMTPD.SubmissionsListen = []string{subs}
		c.Auth.FailureDelay = config.Duration(20 * time.Millisecond)
		c.Auth.MaxFailureDelay = config.Duration(100 * time.Millisecond)
		c.SMTP.Relayhost = fmt.Sprintf("[127.0.0.1]:%d", freePort(t))
		if tweak != nil {
			tweak(c)
		}
	})
	s.AddUser("alice@example.test")
	s.AddUser("bob@example.test")
	return s, sub, subs
}

func needSwaks(t *testing.T) {
	if _, err := exec.LookPath("swaks"); err != nil {
		t.Fatal("swaks is not installed: make test installs it (apt-get install swaks)")
	}
}

// queued finds a message's queue file in any queue folder and reads its
// envelope; qmgr may be moving it while we look.
func (s *System) queued(id string) *spool.Envelope {
	s.t.Helper()
	var env *spool.Envelope
	s.WaitFor("queue file "+id, 10*time.Second, func() bool {
		for _, q := range []string{spool.Incoming, spool.Active, spool.Deferred, spool.Hold} {
			if e, _, err := spool.ReadEnvelope(filepath.Join(s.Cfg.SpoolDir, q, id)); err == nil {
				env = e
				return true
			}
		}
		return false
	})
	return env
}

// The whole submission path with real clients: swaks with STARTTLS on the
// submission port and with implicit TLS on the submissions port; a
// recipient in another domain is accepted for an authenticated user and
// queued (remote delivery is smtp(8)'s business).
func TestSubmissionSwaks(t *testing.T) {
	needSwaks(t)
	s, sub, subs := submissionSystem(t, nil)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"STARTTLS on submission", []string{"--server", sub, "-tls"}},
		{"implicit TLS on submissions", []string{"--server", subs, "--tlsc"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(tc.args, "--auth", "PLAIN", "--auth-user", "alice@example.test",
				"--auth-password", "pw-alice@example.test", "--from", "alice@example.test",
				"--to", "carol@elsewhere.example", "--header", "Subject: relayed")
			out, err := exec.Command("swaks", args...).CombinedOutput()
			if err != nil {
				t.Fatalf("swaks: %v\n%s\nlog:\n%s", err, out, tail(s.Log(), 30))
			}
			m := queuedAs.FindSubmatch(out)
			if m == nil || !bytes.Contains(out, []byte("235 2.7.0 Authentication successful")) {
				t.Fatalf("swaks transcript:\n%s", out)
			}
			env := s.queued(string(m[1]))
			if env.Sender != "alice@example.test" || len(env.Rcpts) != 1 || env.Rcpts[0].Addr != "carol@elsewhere.example" {
				t.Errorf("queued envelope %+v", env)
			}
			if env.Attrs["sasl_method"] != "PLAIN" || env.Attrs["sasl_username"] != "alice@example.test" {
				t.Errorf("queued attributes %v", env.Attrs)
			}
			s.WaitFor("client= line", 5*time.Second, func() bool {
				return strings.Contains(s.Log(), string(m[1])+": client=unknown[127.0.0.1], sasl_method=PLAIN, sasl_username=alice@example.test\n")
			})
		})
	}
	log := s.Log()
	for _, re := range []string{
		`smtpd\[\d+\]: Anonymous TLS connection established from unknown\[127\.0\.0\.1\]: TLSv1\.3 with cipher TLS_\w+ \(\d+/\d+ bits\)`,
	} {
		if !regexp.MustCompile(re).MatchString(log) {
			t.Errorf("log lacks %s", re)
		}
	}
}

// Python's smtplib: starttls() + login() on submission, SMTP_SSL + login()
// on submissions. The messages lack Date: and Message-ID:, which
// submission adds; Received: says ESMTPSA without naming the login.
func TestSubmissionSmtplib(t *testing.T) {
	s, sub, subs := submissionSystem(t, nil)
	script := `
import os, smtplib, ssl
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
host, sub, subs = os.environ["SMTP_HOST"], int(os.environ["SUB"]), int(os.environ["SUBS"])
msg = b"Subject: %s\r\nFrom: alice@example.test\r\n\r\nbody\r\n"

s = smtplib.SMTP(host, sub)
s.ehlo("client.example.org")
# AUTH before TLS: the client is on loopback (allow_plaintext_auth_on_loopback).
print("before TLS:", "auth" in s.esmtp_features, "starttls" in s.esmtp_features)
s.starttls(context=ctx)
s.ehlo("client.example.org")
print("after TLS:", s.esmtp_features.get("auth", "").strip(), "starttls" in s.esmtp_features, "dsn" in s.esmtp_features)
print(s.login("alice@example.test", "pw-alice@example.test"))
print(s.sendmail("alice@example.test", ["bob@example.test"], msg % b"via starttls"))
s.quit()

s = smtplib.SMTP_SSL(host, subs, context=ctx)
s.ehlo("client.example.org")
s.login("alice@example.test", "pw-alice@example.test")
print(s.sendmail("alice@example.test", ["bob@example.test"], msg % b"via implicit tls"))
s.quit()
`
	out, err := s.Python(script, "SUB="+strings.Split(sub, ":")[1], "SUBS="+strings.Split(subs, ":")[1])
	if err != nil {
		t.Fatalf("smtplib: %v\n%s\nlog:\n%s", err, out, tail(s.Log(), 30))
	}
	for _, want := range []string{"before TLS: True True", "after TLS: PLAIN LOGIN False True", "(235, b'2.7.0 Authentication successful')"} {
		if !strings.Contains(out, want) {
			t.Errorf("smtplib output lacks %q:\n%s", want, out)
		}
	}
	msgs := s.WaitMessages(s.Maildir("bob"), 2, 15*time.Second)
	for _, body := range msgs {
		for _, re := range []string{
			`(?m)^Received: from client\.example\.org \(unknown \[127\.0\.0\.1\]\)\n\tby mail\.example\.test \(posthorn\) with ESMTPSA id [0-9A-F]+`,
			`(?m)^Date: [A-Z][a-z]{2}, \d{1,2} [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4}`,
			`(?m)^Message-ID: <\d{14}\.[0-9A-F]+@mail\.example\.test>$`,
			`(?m)^Subject: via (starttls|implicit tls)$`,
		} {
			if !regexp.MustCompile(re).MatchString(body) {
				t.Errorf("delivered message does not match %s:\n%s", re, body)
			}
		}
		if strings.Contains(body, "Authenticated sender") {
			t.Errorf("login named in Received: without received_auth_user:\n%s", body)
		}
	}
}

// Without AUTH nobody relays: not on port 25 and not on the submission
// ports, where MAIL itself needs AUTH.
func TestSubmissionRelayDeniedWithoutAuth(t *testing.T) {
	s, sub, _ := submissionSystem(t, nil)
	out, err := s.Python(`
import os, smtplib
s = smtplib.SMTP(os.environ["SMTP_HOST"], int(os.environ["SMTP_PORT"]))
s.ehlo("x")
s.mail("alice@example.test")
print(s.rcpt("carol@elsewhere.example"))
s.quit()
host, port = os.environ["SUB"].split(":")
s = smtplib.SMTP(host, int(port))
s.ehlo("x")
print(s.mail("alice@example.test"))
s.quit()
`, "SUB="+sub)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"(554, b'5.7.1 <carol@elsewhere.example>: Relay access denied')",
		"(530, b'5.7.0 Authentication required')",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("replies lack %s:\n%s", want, out)
		}
	}
}

// An authenticated user sends only as itself, unless sender_login_map says
// otherwise.
func TestSubmissionSenderOwnership(t *testing.T) {
	var mapFile string
	s, sub, _ := submissionSystem(t, func(c *config.Config) {
		mapFile = filepath.Join(filepath.Dir(c.SpoolDir), "senders")
		c.SMTPD.SenderLoginMap = mapFile
	})
	if err := os.WriteFile(mapFile, []byte("sales@example.test  alice@example.test, bob@example.test\n"), 0644); err != nil {
		t.Fatal(err)
	}
	out, err := s.Python(`
import os, smtplib, ssl
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
host, port = os.environ["SUB"].split(":")
s = smtplib.SMTP(host, int(port))
s.starttls(context=ctx)
s.login("alice@example.test", "pw-alice@example.test")
for sender in ["bob@example.test", "alice@example.test", "alice+tag@example.test", "sales@example.test", "root@localhost"]:
    print(s.mail(sender))
    s.rset()
s.quit()
`, "SUB="+sub)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	want := []string{
		"(553, b'5.7.1 <bob@example.test>: Sender address rejected: not owned by user alice@example.test')",
		"(250, b'2.1.0 Ok')",
		"(250, b'2.1.0 Ok')",
		"(250, b'2.1.0 Ok')",
		"(553, b'5.7.1 <root@localhost>: Sender address rejected: not owned by user alice@example.test')",
	}
	if got := strings.Split(strings.TrimSpace(out), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("MAIL replies:\n%s\nwant\n%s", out, strings.Join(want, "\n"))
	}
	s.WaitFor("reject line", 5*time.Second, func() bool {
		return strings.Contains(s.Log(), "NOQUEUE: reject: MAIL from unknown[127.0.0.1]: 553 5.7.1 <bob@example.test>: Sender address rejected: not owned by user alice@example.test; from=<bob@example.test> proto=ESMTP helo=<")
	})
}

// HOSTILE 10: with plaintext AUTH on loopback switched off, a loopback
// client is treated as any other: no AUTH before TLS. With the default
// (the development instance) it may log in without TLS.
func TestSubmissionAuthNeedsTLS(t *testing.T) {
	script := `
import os, smtplib
host, port = os.environ["SUB"].split(":")
s = smtplib.SMTP(host, int(port))
s.ehlo("x")
print("auth offered:", "auth" in s.esmtp_features)
print(s.docmd("AUTH", "PLAIN " + __import__("base64").b64encode(b"\0alice@example.test\0pw-alice@example.test").decode()))
s.quit()
`
	s, sub, _ := submissionSystem(t, func(c *config.Config) { c.SMTPD.AllowPlaintextAuthOnLoopback = false })
	out, err := s.Python(script, "SUB="+sub)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "auth offered: False") || !strings.Contains(out, "(538, b'5.7.11 Encryption required for requested authentication mechanism')") {
		t.Errorf("plaintext AUTH off:\n%s", out)
	}

	s, sub, _ = submissionSystem(t, nil)
	out, err = s.Python(script, "SUB="+sub)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "auth offered: True") || !strings.Contains(out, "(235, b'2.7.0 Authentication successful')") {
		t.Errorf("plaintext AUTH on loopback:\n%s", out)
	}
}

// HOSTILE 33: ten wrong passwords from one client are logged for fail2ban
// and delayed by the auth daemon; the user, logging in from elsewhere
// (127.0.0.2), still gets in.
func TestSubmissionBruteForce(t *testing.T) {
	s, sub, _ := submissionSystem(t, nil)
	out, err := s.Python(`
import os, smtplib, ssl, time
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
host, port = os.environ["SUB"].split(":")
s = smtplib.SMTP(host, int(port))
s.starttls(context=ctx)
s.ehlo("attacker")
start = time.monotonic()
for i in range(10):
    code, _ = s.docmd("AUTH", "PLAIN " + __import__("base64").b64encode(b"\0alice@example.test\0guess%d" % i).decode())
    print(code)
print("elapsed %.3f" % (time.monotonic() - start))
s.close()
s = smtplib.SMTP(host, int(port), source_address=("127.0.0.2", 0))
s.starttls(context=ctx)
print(s.login("alice@example.test", "pw-alice@example.test"))
s.quit()
`, "SUB="+sub)
	if err != nil {
		t.Fatalf("%v\n%s\n%s", err, out, tail(s.Log(), 30))
	}
	if n := strings.Count(out, "535\n"); n != 10 {
		t.Errorf("%d replies 535 to wrong passwords:\n%s", n, out)
	}
	var elapsed float64
	fmt.Sscanf(out[strings.Index(out, "elapsed ")+8:], "%g", &elapsed)
	if elapsed < 10*0.020 {
		t.Errorf("ten failures took %.3fs: the auth daemon's delay is not applied", elapsed)
	}
	if !strings.Contains(out, "(235, b'2.7.0 Authentication successful')") {
		t.Errorf("the legitimate login failed:\n%s", out)
	}
	// Exactly Postfix's line, which fail2ban's postfix filter (mode auth)
	// and the older postfix-sasl filter match.
	f2b := regexp.MustCompile(`(?m)^posthorn/smtpd\[\d+\]: warning: [-._\w]+\[(127\.0\.0\.1)\]: SASL ((?i)LOGIN|PLAIN|(?:CRAM|DIGEST)-MD5) authentication failed(: [ A-Za-z0-9+/]*={0,2})?\s*$`)
	var lines []string
	s.WaitFor("ten failure lines", 5*time.Second, func() bool {
		lines = f2b.FindAllString(s.Log(), -1)
		return len(lines) == 10
	})
	if !strings.HasSuffix(lines[0], ": warning: unknown[127.0.0.1]: SASL PLAIN authentication failed: authentication failure") {
		t.Errorf("failure line %q", lines[0])
	}
}

// DSN end to end: NOTIFY=SUCCESS brings a success notice with the ENVID
// back to the sender's mailbox; the parameters are kept in the queue file
// for relayed mail.
func TestSubmissionDSN(t *testing.T) {
	s, sub, _ := submissionSystem(t, nil)
	out, err := s.Python(`
import os, smtplib, ssl
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
host, port = os.environ["SUB"].split(":")
s = smtplib.SMTP(host, int(port))
s.starttls(context=ctx)
s.login("alice@example.test", "pw-alice@example.test")
print(s.sendmail("alice@example.test", ["bob@example.test"], b"Subject: dsn\r\n\r\nbody\r\n",
    mail_options=["RET=HDRS", "ENVID=QQ+2B314159"], rcpt_options=["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;Bob@Example.TEST"]))
s.mail("alice@example.test", ["ENVID=relay1"])
print(s.rcpt("carol@elsewhere.example", ["NOTIFY=NEVER", "ORCPT=rfc822;carol+2Bx@elsewhere.example"]))
code, msg = s.data(b"Subject: relayed\r\n\r\nbody\r\n")
print(code, msg.decode())
print(s.mail("alice@example.test", ["ENVID=a+0D+0Ab"]))
s.quit()
`, "SUB="+sub)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, "(501, b'5.5.4 Bad ENVID parameter syntax')") {
		t.Errorf("ENVID with CR LF accepted:\n%s", out)
	}
	m := queuedAs.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no queue ID:\n%s", out)
	}
	env := s.queued(m[1])
	if env.Attrs["envid"] != "relay1" || env.Rcpts[0].Params["NOTIFY"] != "NEVER" || env.Rcpts[0].Params["ORCPT"] != "rfc822;carol+x@elsewhere.example" {
		t.Errorf("queued DSN parameters: %v %+v", env.Attrs, env.Rcpts)
	}
	s.WaitMessages(s.Maildir("bob"), 1, 15*time.Second)
	var notice string
	s.WaitFor("success notice", 15*time.Second, func() bool {
		for _, body := range Messages(s.Maildir("alice")) {
			if strings.Contains(body, "Subject: Successful Mail Delivery Report") {
				notice = body
				return true
			}
		}
		return false
	})
	for _, want := range []string{
		"Original-Envelope-Id: QQ+314159\n",
		"Original-Recipient: rfc822;Bob@Example.TEST\nFinal-Recipient: rfc822; bob@example.test\nAction: delivered\nStatus: 2.0.0\n",
		"Content-Type: text/rfc822-headers\n",
		"Subject: dsn\n",
	} {
		if !strings.Contains(notice, want) {
			t.Errorf("success notice lacks %q:\n%s", want, notice)
		}
	}
	if !regexp.MustCompile(`: sender delivery status notification: [0-9A-F]+\n`).MatchString(s.Log()) {
		t.Errorf("notice not logged")
	}
}

// SIGHUP makes smtpd use a replaced certificate for the next handshake.
func TestSubmissionCertificateReload(t *testing.T) {
	s, _, subs := submissionSystem(t, nil)
	fingerprint := func() [32]byte {
		c, err := tls.Dial("tcp", subs, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return sha256.Sum256(c.ConnectionState().PeerCertificates[0].Raw)
	}
	before := fingerprint()
	dir := t.TempDir()
	if err := certgen.Ensure(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), "new.example.test", -1, -1); err != nil {
		t.Fatal(err)
	}
	for _, f := range [][2]string{{"cert.pem", s.Cfg.TLS.CertFile}, {"key.pem", s.Cfg.TLS.KeyFile}} {
		b, err := os.ReadFile(filepath.Join(dir, f[0]))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f[1]+".new", b, 0600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(f[1]+".new", f[1]); err != nil {
			t.Fatal(err)
		}
	}
	if fingerprint() != before {
		t.Fatal("the certificate changed before the reload")
	}
	if out, err := s.Posthorn("", "reload"); err != nil {
		t.Fatalf("reload: %v\n%s", err, out)
	}
	s.WaitFor("the new certificate", 10*time.Second, func() bool { return fingerprint() != before })
}

// HOSTILE 22-27 on the MX port, without AUTH: no form of address gets
// mail relayed, and none reaches anything but the recipient check.
func TestRelayTricksWithoutAuth(t *testing.T) {
	s, _, _ := submissionSystem(t, nil)
	out, err := s.Python(`
import os, smtplib
s = smtplib.SMTP(os.environ["SMTP_HOST"], int(os.environ["SMTP_PORT"]))
s.ehlo("x")
s.mail("a@example.org")
for r in ["victim%elsewhere.example@example.test", "@example.test:victim@elsewhere.example",
          "elsewhere.example!victim@example.test", "victim@elsewhere.example@example.test",
          '"victim@elsewhere.example"@example.test', '"a..b"@example.test', '""@example.test',
          "a" * 65 + "@example.test", "postmaster@[192.0.2.1]", "a@[IPv6:::1]", "a@[999.1.1.1]",
          "a@[tag:x]", "${run{/bin/sh}}@example.test", "-oQ/tmp@example.test", "victim@elsewhere.example"]:
    code, resp = s.docmd("RCPT TO:<%s>" % r)
    print(code, r)
s.quit()
`)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.HasPrefix(l, "5") {
			t.Errorf("accepted without AUTH: %s", l)
		}
	}
	if !strings.HasSuffix(strings.TrimSpace(out), "554 victim@elsewhere.example") {
		t.Errorf("replies:\n%s", out)
	}
}
