package auth

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/posthorn/posthorn/pkg/config"
	"github.com/posthorn/posthorn/pkg/daemon"
	"github.com/posthorn/posthorn/pkg/maillog"
)

func TestTokensAreOneTimeAndBoundToTheService(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	os.WriteFile(users, []byte("alice@example.org:"+bcryptHash(t, "pw", 4)+"\n"), 0600)
	cfg := config.Defaults()
	cfg.Virtual.Domains = []string{"example.org"}
	cfg.Virtual.UsersFile = users
	cfg.Auth.SystemUsers = false
	log := maillog.New("posthorn", "auth", "stderr")
	log.SetOutput(&syncBuffer{})
	sock := filepath.Join(dir, "auth")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	d, err := daemon.New("auth", cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	d.Listeners["auth"] = []net.Listener{l}
	go Run(d)
	c := NewClient(sock)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	res, err := c.Verify(ctx, Request{Service: ServiceIMAP, User: "alice@example.org", Password: "pw",
		RemoteIP: "192.0.2.1", Secured: true, IssueToken: true})
	if err != nil || !res.OK || len(res.Token) != 32 {
		t.Fatalf("verify with a token: %+v %v", res, err)
	}
	if res2, _ := c.Verify(ctx, Request{Service: ServiceIMAP, User: "alice@example.org", Password: "pw",
		RemoteIP: "192.0.2.1", Secured: true}); res2.Token != "" {
		t.Fatal("a token was issued unasked")
	}
	if _, err := c.Redeem(ctx, res.Token, ServicePOP3); err == nil {
		t.Fatal("an IMAP token was accepted for POP3")
	}
	// That failed attempt used the token up.
	if _, err := c.Redeem(ctx, res.Token, ServiceIMAP); err == nil {
		t.Fatal("a token was accepted after a failed redemption")
	}
	res, _ = c.Verify(ctx, Request{Service: ServiceIMAP, User: "alice@example.org", Password: "pw",
		RemoteIP: "192.0.2.1", Secured: true, IssueToken: true})
	if user, err := c.Redeem(ctx, res.Token, ServiceIMAP); err != nil || user != "alice@example.org" {
		t.Fatalf("redeem: %q %v", user, err)
	}
	if _, err := c.Redeem(ctx, res.Token, ServiceIMAP); err == nil {
		t.Fatal("a token was redeemed twice")
	}
	if _, err := c.Redeem(ctx, "0123456789abcdef0123456789abcdef", ServiceIMAP); err == nil {
		t.Fatal("a forged token was redeemed")
	}
	var tt tokenTable
	tok := tt.issue("bob", ServiceIMAP)
	tt.m[tok] = tokenEntry{user: "bob", service: ServiceIMAP, expires: time.Now().Add(-time.Second)}
	if _, err := tt.take(tok, ServiceIMAP); err == nil {
		t.Fatal("an expired token was accepted")
	}
}
