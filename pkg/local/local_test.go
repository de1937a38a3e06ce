package local

import (
	"context"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/pkg/agent"
	"github.com/posthorn/posthorn/pkg/config"
	"github.com/posthorn/posthorn/pkg/maillog"
	"github.com/posthorn/posthorn/pkg/spool"
	"github.com/posthorn/posthorn/pkg/userdb"
)

type fixture struct {
	a   *Agent
	cfg *config.Config
	sp  *spool.Spool
	log *strings.Builder
}

func newFixture(t *testing.T, tweak func(*config.Config)) *fixture {
	t.Helper()
	dir := t.TempDir()
	cfg := config.Defaults()
	cfg.Hostname = "mx.example.test"
	cfg.SpoolDir = filepath.Join(dir, "spool")
	cfg.AliasFile = filepath.Join(dir, "aliases")
	cfg.LocalDomains = []string{"localhost"}
	cfg.Virtual.Domains = []string{"example.test"}
	cfg.Virtual.UsersFile = filepath.Join(dir, "users")
	cfg.Virtual.Mailbox = filepath.Join(dir, "mail/%d/%n/Maildir")
	cfg.Virtual.User, cfg.Virtual.Group = "", ""
	cfg.Local.MailSpoolDir = filepath.Join(dir, "mail")
	os.WriteFile(cfg.AliasFile, []byte("team: alice@example.test, bob@example.test\nfar: someone@elsewhere.example\n"), 0644)
	for _, u := range []string{"alice@example.test", "bob@example.test"} {
		if err := userdb.Add(cfg.Virtual.UsersFile, u, "pw"); err != nil {
			t.Fatal(err)
		}
	}
	if tweak != nil {
		tweak(cfg)
	}
	spool.Prepare(cfg.SpoolDir, -1, -1)
	log := maillog.New("posthorn", "local", "stderr")
	var lb strings.Builder
	log.SetOutput(&lb)
	a := New(cfg, log)
	t.Cleanup(a.Close)
	return &fixture{a: a, cfg: cfg, sp: spool.Open(cfg.SpoolDir), log: &lb}
}

func (f *fixture) deliver(t *testing.T, sender, rcpt string) agent.Reply {
	t.Helper()
	return f.deliverMsg(t, sender, rcpt, "Subject: hi\n\nbody\n")
}

func (f *fixture) deliverMsg(t *testing.T, sender, rcpt, msg string) agent.Reply {
	t.Helper()
	w, err := f.sp.Create(&spool.Envelope{Sender: sender, Rcpts: []spool.Recipient{{Addr: rcpt}}})
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, msg)
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	qf, err := f.sp.OpenFile(spool.Incoming, w.ID())
	if err != nil {
		t.Fatal(err)
	}
	defer qf.Close()
	now := time.Now()
	return f.a.Deliver(context.Background(), agent.Request{QueueID: w.ID(), Sender: sender, Recipient: rcpt,
		Arrival: qf.Arrival, Active: now, Offset: qf.ContentOffset, Size: qf.ContentSize}, qf.OSFile())
}

func maildirFiles(t *testing.T, dir string) []string {
	ents, _ := os.ReadDir(filepath.Join(dir, "new"))
	var out []string
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, "new", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

func TestVirtualDeliveryAndHeaders(t *testing.T) {
	f := newFixture(t, nil)
	rep := f.deliver(t, "evil@x\r\nX-Injected: yes", "Alice+tag@Example.TEST")
	if rep.Status != agent.Sent || rep.DSN != "2.0.0" {
		t.Fatalf("reply %+v\n%s", rep, f.log.String())
	}
	files := maildirFiles(t, filepath.Join(filepath.Dir(f.cfg.Virtual.UsersFile), "mail/example.test/alice/Maildir"))
	if len(files) != 1 {
		t.Fatalf("%d files", len(files))
	}
	want := "Return-Path: <evil@xX-Injected: yes>\nX-Original-To: Alice+tag@Example.TEST\nDelivered-To: alice@example.test\nSubject: hi\n\nbody\n"
	if files[0] != want {
		t.Fatalf("delivered:\n%q\nwant:\n%q", files[0], want)
	}
	if !strings.Contains(f.log.String(), "to=<Alice+tag@Example.TEST>, relay=local, delay=") ||
		!strings.Contains(f.log.String(), "dsn=2.0.0, status=sent (delivered to maildir)") {
		t.Fatalf("log: %s", f.log.String())
	}
}

func TestAliasToSeveralUsers(t *testing.T) {
	f := newFixture(t, nil)
	if rep := f.deliver(t, "s@x", "team@localhost"); rep.Status != agent.Sent {
		t.Fatalf("reply %+v", rep)
	}
	base := filepath.Dir(f.cfg.Virtual.UsersFile)
	for _, u := range []string{"alice", "bob"} {
		files := maildirFiles(t, filepath.Join(base, "mail/example.test", u, "Maildir"))
		if len(files) != 1 || !strings.Contains(files[0], "X-Original-To: team@localhost\nDelivered-To: "+u+"@example.test\n") {
			t.Fatalf("%s got %q", u, files)
		}
	}
}

func TestFailuresAreBouncesOrDeferrals(t *testing.T) {
	f := newFixture(t, func(c *config.Config) { c.Local.HomeMailbox = "" })
	me, _ := user.Current()
	// A file where the mail spool folder should be.
	os.WriteFile(f.cfg.Local.MailSpoolDir, []byte("in the way"), 0600)
	for _, c := range []struct {
		rcpt, status, dsn string
	}{
		{"nobody@example.test", agent.Bounced, "5.1.1"},
		{me.Username + "@localhost", agent.Deferred, "4.2.0"},
		{"not an address", agent.Bounced, "5.1.3"},
	} {
		rep := f.deliver(t, "s@x", c.rcpt)
		if rep.Status != c.status || rep.DSN != c.dsn {
			t.Errorf("%s: %+v, want %s %s", c.rcpt, rep, c.status, c.dsn)
		}
	}
}

func TestUnwritableMaildirDefers(t *testing.T) {
	f := newFixture(t, nil)
	// A file where the mailbox folder should be fails even for root.
	mail := filepath.Join(filepath.Dir(f.cfg.Virtual.UsersFile), "mail")
	os.WriteFile(mail, []byte("in the way"), 0600)
	rep := f.deliver(t, "s@x", "alice@example.test")
	if rep.Status != agent.Deferred || !strings.HasPrefix(rep.DSN, "4.") {
		t.Fatalf("permission error gave %+v, want a deferral", rep)
	}
}

func TestRemoteAliasMemberIsForwarded(t *testing.T) {
	f := newFixture(t, nil)
	rep := f.deliver(t, "s@x", "far@localhost")
	if rep.Status != agent.Sent || len(rep.Forward) != 1 || rep.Forward[0] != "someone@elsewhere.example" {
		t.Fatalf("reply %+v", rep)
	}
}
