// Package login hands an authenticated IMAP or POP3 connection from the
// unprivileged login process to a mail process running as the mailbox
// owner (DESIGN §1: imap-login → imapd, pop3-login → pop3d).
//
// Three parties take part:
//
//   - the login process (imap-login, pop3-login: the mail owner) speaks the
//     protocol until the user authenticates through the auth daemon, which
//     answers with a one-time token;
//   - the dispatcher (imapd, pop3d under master: root, parsing nothing from
//     the network) receives the connection's descriptor and the token,
//     asks the auth daemon who the token belongs to — so a compromised login
//     process cannot open a mailbox it did not authenticate for — finds the
//     user's mailbox and owner, and passes the connection to that owner's
//     worker;
//   - the worker (imapd or pop3d started as "worker", as exactly the owner's
//     uid and gid, no supplementary groups) serves every session of that
//     owner, so one user's mail process never holds another user's mail.
//
// A TLS connection cannot change process: its keys live in the login
// process. There the login process keeps the TLS session and relays the
// plaintext over a socketpair whose other end is handed over (as Dovecot's
// login processes proxy SSL).
package login

import (
	"net"
	"time"
)

// Session describes a handed-over connection to the worker that serves it.
type Session struct {
	Service  string `json:"service"` // imap, pop3
	User     string `json:"user"`    // canonical login name
	Maildir  string `json:"maildir"` // the user's Maildir root
	Remote   string `json:"remote"`  // client address, for logs
	Local    string `json:"local"`   // our address, for logs
	Secured  bool   `json:"secured"` // TLS, or loopback
	TLS      bool   `json:"tls"`     // the connection is a relay from a TLS session
	Buffered []byte `json:"buffered,omitempty"`
	// Pre-authentication protocol state the login stage already settled,
	// e.g. IMAP's ENABLEd extensions or the tag of the login command.
	State map[string]string `json:"state,omitempty"`
}

// handoff is the login process's request to the dispatcher.
type handoff struct {
	Token   string  `json:"token"`
	Session Session `json:"session"`
}

type reply struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// Mailbox is what the dispatcher needs to know about a user.
type Mailbox struct {
	UID, GID int
	Maildir  string
}

// conn wraps an inherited descriptor's connection with the session's
// addresses, so logs and loopback checks in the worker see the client.
type conn struct {
	net.Conn
	remote, local net.Addr
}

func (c *conn) RemoteAddr() net.Addr { return c.remote }
func (c *conn) LocalAddr() net.Addr  { return c.local }

type strAddr struct{ network, addr string }

func (a strAddr) Network() string { return a.network }
func (a strAddr) String() string  { return a.addr }

// handoffTimeout bounds each step of a handoff.
const handoffTimeout = 10 * time.Second
