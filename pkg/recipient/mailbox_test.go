package recipient

import (
	"errors"
	"os"
	"os/user"
	"path/filepath"
	"testing"

	"github.com/posthorn/posthorn/pkg/config"
)

func TestMailboxOfALogin(t *testing.T) {
	cfg := config.Defaults()
	cfg.Virtual.Domains = []string{"example.test"}
	cfg.Virtual.Mailbox = "/srv/mail/%d/%n/Maildir"
	cfg.Virtual.User, cfg.Virtual.Group = "", ""
	cfg.LocalDomains = []string{"localhost"}
	cfg.Local.HomeMailbox = "Maildir/"
	r := New(cfg)
	tg, err := r.Mailbox("Alice@Example.TEST")
	if err != nil || tg.Path != "/srv/mail/example.test/alice/Maildir" || tg.UID != os.Getuid() {
		t.Fatalf("virtual: %+v %v", tg, err)
	}
	me, _ := user.Current()
	tg, err = r.Mailbox(me.Username)
	if err != nil || tg.Path != filepath.Join(me.HomeDir, "Maildir") {
		t.Fatalf("system: %+v %v", tg, err)
	}
	if _, err := r.Mailbox("x@elsewhere.example"); !errors.Is(err, ErrNotLocal) {
		t.Errorf("foreign domain: %v", err)
	}
	if _, err := r.Mailbox("../etc@example.test"); err == nil {
		t.Errorf("a path in the user name was accepted")
	}
	cfg.Local.HomeMailbox = ""
	if _, err := New(cfg).Mailbox(me.Username); !errors.Is(err, ErrNoMaildir) {
		t.Errorf("mbox user: %v", err)
	}
}
