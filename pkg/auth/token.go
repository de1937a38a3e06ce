package auth

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/posthorn/posthorn/pkg/ipc"
)

// One-time tokens carry an authentication from the login process to the
// mail process (pkg/login): the login process gets one with a successful
// Verify, the dispatcher (running as root) redeems it for the user name.
// A login process that is taken over thus cannot open a mailbox whose
// password it did not present, and a token is worth one session, for a
// short while.
const (
	tokenTTL    = 30 * time.Second
	maxTokens   = 100000
	tokenLength = 16 // bytes of randomness
)

type tokenEntry struct {
	user, service string
	expires       time.Time
}

type tokenTable struct {
	mu sync.Mutex
	m  map[string]tokenEntry
}

func (t *tokenTable) issue(user, service string) string {
	var b [tokenLength]byte
	if _, err := rand.Read(b[:]); err != nil {
		return ""
	}
	tok := hex.EncodeToString(b[:])
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[string]tokenEntry{}
	}
	if len(t.m) >= maxTokens {
		for k, e := range t.m {
			if now.After(e.expires) {
				delete(t.m, k)
			}
		}
		if len(t.m) >= maxTokens {
			return "" // a flood of logins nobody redeems: refuse, do not grow
		}
	}
	t.m[tok] = tokenEntry{user: user, service: service, expires: now.Add(tokenTTL)}
	return tok
}

func (t *tokenTable) take(tok, service string) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[tok]
	delete(t.m, tok)
	switch {
	case !ok:
		return "", errors.New("unknown or used token")
	case time.Now().After(e.expires):
		return "", errors.New("expired token")
	case e.service != service:
		return "", fmt.Errorf("token for %s presented for %s", e.service, service)
	}
	return e.user, nil
}

// redeem answers a dispatcher. Only root (or, on a development instance
// where everything runs as one user, that user) may redeem: the kernel
// says who is asking.
func (s *Server) redeem(conn *ipc.Conn, tok, service string) wireReply {
	uid, err := conn.PeerUID()
	if err != nil || (uid != 0 && uid != os.Geteuid()) {
		return wireReply{Error: "token redemption is reserved to the mail processes"}
	}
	user, err := s.tokens.take(tok, service)
	if err != nil {
		s.log.Warning("token for %s refused: %v", service, err)
		return wireReply{Reason: err.Error()}
	}
	return wireReply{OK: true, User: user}
}

// Redeem trades a one-time token for the user it was issued to.
func (c *Client) Redeem(ctx context.Context, token, service string) (string, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", c.path)
	if err != nil {
		return "", fmt.Errorf("auth: %w", err)
	}
	conn := ipc.New(nc.(*net.UnixConn))
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if err := conn.Send(wireRequest{Op: "redeem", Token: token, Service: service}); err != nil {
		return "", fmt.Errorf("auth: %w", err)
	}
	var rep wireReply
	files, err := conn.Receive(&rep)
	for _, f := range files {
		f.Close()
	}
	if err != nil {
		return "", fmt.Errorf("auth: %w", err)
	}
	if rep.Error != "" {
		return "", fmt.Errorf("auth: %s", rep.Error)
	}
	if !rep.OK {
		return "", fmt.Errorf("auth: %s", rep.Reason)
	}
	return rep.User, nil
}
