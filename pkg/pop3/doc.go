// Package pop3 is posthorn's POP3 protocol engine: RFC 1939 with CAPA and
// response codes (RFC 2449, RFC 3206), STLS (RFC 2595) and AUTH
// (RFC 5034), in two stages that can run in two processes (DESIGN §1):
//
//	pop3-login (unprivileged)                  pop3d (the mailbox owner)
//	h, err := pop3.ServeLogin(ctx, conn,       err := pop3.ServeSession(ctx, h,
//	        loginCfg, authenticator)                   store, sessionCfg)
//	    greeting, CAPA, STLS, USER/PASS,           maildrop lock, "+OK Logged in.",
//	    AUTH PLAIN/LOGIN, QUIT                     STAT LIST RETR DELE RSET NOOP TOP
//	    → Handoff{User, Conn, TLS, Buffered}       UIDL CAPA, QUIT → UPDATE
//
// ServeLogin never touches mail and ServeSession never sees a password.
// Between them the integrator moves the connection (package login); the
// answer to the successful PASS or AUTH is sent by ServeSession, because
// only it can tell whether the maildrop can be locked and opened
// (RFC 1939 §4).
//
// Mail comes from package mailbox, the Dovecot-compatible Maildir store:
// UIDLs are Dovecot's (a stored P field, or its default "%08Xu%08Xv": UID
// and UIDVALIDITY as eight lower-case hex digits each), so clients that used Dovecot's POP3 do not fetch
// everything again; message sizes are RFC822.SIZE; the message order a
// migration preserved (O fields) is kept.
//
// Limits (HOSTILE 8, 10, 11, 14, 46-49): command lines of 255 octets
// (RFC 2449 §4), AUTH continuation lines of sasl.MaxLine; no control
// characters in commands; 10 bad commands, 3 failed logins or 50
// commands without logging in end the connection; 60 seconds of silence
// before login, 10 minutes after (RFC 1939 §3); each write has its own
// timeout. Passwords are refused without TLS except on loopback (or where
// LoginConfig.AllowPlaintext says so); plaintext pipelined after STLS is
// dropped before the handshake. Deletions happen only in UPDATE, and RETR
// and TOP output is byte-stuffed so no message content can end the
// response.
package pop3
