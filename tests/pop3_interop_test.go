package tests

import (
	"os/exec"
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
