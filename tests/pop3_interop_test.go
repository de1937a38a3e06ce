package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// crlfToLF turns a POP3 transfer's line ends into the Maildir's.
func crlfToLF(s string) string { return strings.ReplaceAll(s, "\r\n", "\n") }

// messageBodies returns a Maildir's message contents, sorted.
func messageBodies(maildir string) []string {
	var out []string
	for _, m := range Messages(maildir) {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}

// TestCurlPOP3 downloads and deletes mail with curl's POP3 client: RETR of
// each message over plain POP3 (the content is the Maildir file's, dot
// unstuffed), UIDL and LIST, DELE of one message, and over POP3S and STLS.
func TestCurlPOP3(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
	s := StartSystem(t, nil)
	user, pass := "curly@example.test", "pw-curly@example.test"
	s.AddUser(user)
	if _, err := s.Python(`
import os, smtplib
s = smtplib.SMTP(os.environ["SMTP_HOST"], int(os.environ["SMTP_PORT"]))
for i in range(3):
    s.sendmail("a@example.org", ["curly@example.test"], b"Subject: curl %d\r\n\r\n.line with a dot\r\n..two dots\r\nbody %d\r\n" % (i, i))
s.quit()
`); err != nil {
		t.Fatal(err)
	}
	maildir := s.Maildir("curly")
	s.WaitMessages(maildir, 3, 15*time.Second)
	stored := messageBodies(maildir)
	plain, tlsPort := portOf(s.Cfg.POP3.Listen[0]), portOf(s.Cfg.POP3.ListenTLS[0])

	curl := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("curl", append([]string{"--silent", "--show-error", "--max-time", "20", "-u", user + ":" + pass}, args...)...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("curl %v: %v\n%s%s\nposthorn log:\n%s", args, err, out, stderr.String(), tail(s.Log(), 20))
		}
		return string(out)
	}

	// LIST and UIDL list three messages.
	list := strings.Split(strings.TrimSpace(crlfToLF(curl("pop3://127.0.0.1:"+plain+"/"))), "\n")
	if len(list) != 3 || !strings.HasPrefix(list[0], "1 ") || !strings.HasPrefix(list[2], "3 ") {
		t.Fatalf("LIST through curl: %q", list)
	}
	uidl := strings.Split(strings.TrimSpace(crlfToLF(curl("-X", "UIDL", "pop3://127.0.0.1:"+plain+"/"))), "\n")
	if len(uidl) != 3 {
		t.Fatalf("UIDL through curl: %q", uidl)
	}
	for i, l := range uidl {
		f := strings.Fields(l)
		if len(f) != 2 || f[0] != []string{"1", "2", "3"}[i] || len(f[1]) != 16 {
			t.Errorf("UIDL line %d through curl: %q", i+1, l)
		}
	}

	// RETR of each message gives the stored content.
	var got []string
	for _, n := range []string{"1", "2", "3"} {
		body := curl("pop3://127.0.0.1:" + plain + "/" + n)
		if !strings.Contains(body, "\r\n.line with a dot\r\n..two dots\r\n") {
			t.Errorf("message %s through curl is not dot-unstuffed or not CRLF:\n%q", n, body)
		}
		got = append(got, crlfToLF(body))
	}
	sort.Strings(got)
	for i := range stored {
		if crlfToLF(stored[i]) != got[i] {
			t.Errorf("message retrieved by curl differs from the Maildir's:\ncurl:    %q\nMaildir: %q", got[i], stored[i])
		}
	}

	// DELE of message 2 (the QUIT that follows commits it).
	curl("-X", "DELE", "-I", "pop3://127.0.0.1:"+plain+"/2")
	s.WaitFor("the deleted message to leave the Maildir", 10*time.Second, func() bool {
		return len(Messages(maildir)) == 2
	})
	left := strings.Split(strings.TrimSpace(crlfToLF(curl("-X", "UIDL", "pop3://127.0.0.1:"+plain+"/"))), "\n")
	if len(left) != 2 || strings.Fields(left[0])[1] != strings.Fields(uidl[0])[1] || strings.Fields(left[1])[1] != strings.Fields(uidl[2])[1] {
		t.Errorf("UIDL after deleting message 2: %q, want the UIDLs of 1 and 3 of %q", left, uidl)
	}

	// POP3S on the TLS port, and STLS on the plain one.
	for _, url := range []string{"pop3s://127.0.0.1:" + tlsPort + "/1", "pop3://127.0.0.1:" + plain + "/1"} {
		body := curl("--insecure", "--ssl-reqd", url)
		if crlfToLF(body) != got[0] && crlfToLF(body) != got[2] {
			t.Errorf("message 1 over %s: %q", url, body)
		}
	}
	curl("--insecure", "-X", "DELE", "-I", "pop3s://127.0.0.1:"+tlsPort+"/1")
	s.WaitFor("the message deleted over POP3S to leave the Maildir", 10*time.Second, func() bool {
		return len(Messages(maildir)) == 1
	})
	remaining := messageBodies(maildir)
	if uidlLeft := strings.Split(strings.TrimSpace(crlfToLF(curl("-X", "UIDL", "pop3://127.0.0.1:"+plain+"/"))), "\n"); len(uidlLeft) != 1 || strings.Fields(uidlLeft[0])[1] != strings.Fields(uidl[2])[1] {
		t.Errorf("UIDL after both deletions: %q, want the third message's of %q", uidlLeft, uidl)
	}
	if body := crlfToLF(curl("pop3://127.0.0.1:" + plain + "/1")); body != crlfToLF(remaining[0]) {
		t.Errorf("the message left: curl %q, Maildir %q", body, remaining[0])
	}
}

// withoutFetchmailReceived removes the Received header fetchmail adds
// (above the message's first Received header), or returns "" if there is
// none.
func withoutFetchmailReceived(msg string) string {
	i := strings.Index(msg, "Received: from 127.0.0.1 [127.0.0.1]\n")
	if i < 0 {
		return ""
	}
	j := i + strings.Index(msg[i:], "\n") + 1
	for j < len(msg) && msg[j] == '\t' {
		j += strings.Index(msg[j:], "\n") + 1
	}
	if !strings.Contains(msg[i:j], "with POP3 (fetchmail-") {
		return ""
	}
	return msg[:i] + msg[j:]
}

// TestFetchmail downloads mail with fetchmail into an MDA and deletes it
// on the server (--nokeep): first over plain POP3 upgraded with STLS, then
// over POP3S; a last run finds nothing new.
func TestFetchmail(t *testing.T) {
	if _, err := exec.LookPath("fetchmail"); err != nil {
		t.Skip("fetchmail not installed")
	}
	s := StartSystem(t, nil)
	user, pass := "fetcher@example.test", "pw-fetcher@example.test"
	s.AddUser(user)
	maildir := s.Maildir("fetcher")
	dir := t.TempDir()
	out := filepath.Join(dir, "delivered")
	if err := os.Mkdir(out, 0700); err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(dir, "fetchmailhome")
	if err := os.Mkdir(home, 0700); err != nil {
		t.Fatal(err)
	}
	fetch := func(what, port, ssl string, wantCode int) string {
		t.Helper()
		rc := filepath.Join(dir, "fetchmailrc")
		conf := fmt.Sprintf("set no syslog\npoll 127.0.0.1 protocol pop3 port %s:\n  user %q password %q\n  %s no sslcertck\n  no rewrite\n  mda \"cat > $(mktemp %s/msg.XXXXXX)\"\n",
			port, user, pass, ssl, out)
		if err := os.WriteFile(rc, []byte(conf), 0600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("fetchmail", "-f", rc, "-v", "--nosyslog", "--nokeep", "--nodetach")
		cmd.Env = append(os.Environ(), "FETCHMAILHOME="+home, "HOME="+dir)
		b, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("fetchmail (%s): %v", what, err)
		}
		if code != wantCode {
			t.Fatalf("fetchmail (%s): exit status %d, want %d\n%s\nposthorn log:\n%s", what, code, wantCode, b, tail(s.Log(), 20))
		}
		return string(b)
	}
	delivered := func() []string {
		var msgs []string
		ents, _ := os.ReadDir(out)
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(out, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			msgs = append(msgs, string(b))
		}
		sort.Strings(msgs)
		return msgs
	}
	// check verifies that every message that was in the Maildir reached the
	// MDA whole (but for fetchmail's Received header), once.
	check := func(what string, stored []string, log string) {
		t.Helper()
		got := delivered()
		if len(got) != len(stored) {
			t.Fatalf("%s: %d messages delivered to the MDA, want %d\n%s", what, len(got), len(stored), log)
		}
		for _, m := range stored {
			n := 0
			for _, g := range got {
				if withoutFetchmailReceived(g) == crlfToLF(m) {
					n++
				}
			}
			if n != 1 {
				t.Errorf("%s: the Maildir message\n%q\nreached the MDA %d times; delivered:\n%q", what, m, n, got)
			}
		}
		s.WaitFor("the Maildir to be empty after fetchmail --nokeep", 10*time.Second, func() bool {
			return len(Messages(maildir)) == 0
		})
	}

	sendMail(t, s, user, 3, "fetch one", "fetch two", "fetch three")
	if _, err := s.Python(`
import os, smtplib
s = smtplib.SMTP(os.environ["SMTP_HOST"], int(os.environ["SMTP_PORT"]))
s.sendmail("a@example.org", ["fetcher@example.test"], b"Subject: dots\r\n\r\n.line with a dot\r\n..two dots\r\n.\r\nafter a lone dot\r\n")
s.quit()
`); err != nil {
		t.Fatal(err)
	}
	s.WaitMessages(maildir, 4, 15*time.Second)
	stored := messageBodies(maildir)
	log := fetch("STLS", portOf(s.Cfg.POP3.Listen[0]), "sslproto 'tls1.2+'", 0)
	if !strings.Contains(log, "STLS") {
		t.Errorf("fetchmail did not use STLS:\n%s", log)
	}
	check("over STLS", stored, log)

	sendMail(t, s, user, 2, "fetch four", "fetch five")
	s.WaitMessages(maildir, 2, 15*time.Second)
	more := messageBodies(maildir)
	log = fetch("POP3S", portOf(s.Cfg.POP3.ListenTLS[0]), "ssl", 0)
	if !strings.Contains(log, "SSL/TLS: using protocol") {
		t.Errorf("fetchmail did not use TLS on the POP3S port:\n%s", log)
	}
	check("over POP3S", append(stored, more...), log)

	// Nothing new: fetchmail exits with status 1 and delivers nothing.
	log = fetch("nothing new", portOf(s.Cfg.POP3.Listen[0]), "sslproto 'tls1.2+'", 1)
	check("a run with nothing new", append(stored, more...), log)
}
