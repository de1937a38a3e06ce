// Package auth is posthorn's one place that checks passwords: the auth
// daemon, serving the private socket <spool>/private/auth, and its client,
// used by smtpd for SMTP AUTH and by the IMAP and POP3 login processes.
// The protocol engines decode SASL (package sasl) and send the plain
// credentials here; nothing else reads a password database.
//
// # Where a user is looked up
//
// A name with "@" in a virtual domain (virtual.domains) is looked up in
// the virtual users file and then in auth.passwd_files, Dovecot
// passwd-files whose schemes package userdb checks. A bare name, or one
// in a local domain (local_domains), is a system user, checked through PAM
// (package auth/pam) when auth.system_users is on: Debian 12 stores
// yescrypt hashes that only libxcrypt computes, and PAM applies the
// administrator's account policy too. Names in other domains are unknown.
//
// # What an attacker learns
//
// Nothing about which users exist: an unknown user costs a verification
// against a real hash from the same file (a dummy), system users whose
// account does not exist are held for as long as a real PAM check takes,
// every failed attempt is answered only after the failure delay, counted
// from the start of the request, and the reply is the same. Names are
// validated before any lookup (HOSTILE 34): valid UTF-8, no control
// characters, no "%" (Dovecot's variable expansion), no characters that
// could forge a log field, at most MaxUsernameLength bytes.
//
// # Brute force
//
// Failures are counted per client, an IPv4 address or an IPv6 /48 (what a
// single site, and a single attacker, is normally given: a /64 per client
// would let one attacker rotate through 65536 of them; Dovecot groups by
// /48 for the same reason), and per user name, over auth.failure_window.
// Each failure is answered after a delay that doubles from
// auth.failure_delay with every recent failure of the client or the user,
// up to auth.max_failure_delay, as Dovecot's auth penalty does (2 s to
// 15 s). A client with auth.client_failure_limit recent failures is
// refused with a temporary error without any check. A user name with
// auth.user_failure_limit recent failures is refused the same way, but
// only to clients that themselves failed recently: an attacker spreading
// guesses over many addresses is stopped, and the user, logging in from a
// client that has not failed, still gets in. A success is never delayed.
// A client has at most MaxClientInFlight checks running at once.
//
// # Logs and fail2ban
//
// Every failure is logged by the daemon in Dovecot's shape, which the
// stock fail2ban filter dovecot.conf matches:
//
//	passwd-file(alice@example.org,192.0.2.1): unknown user
//	passwd-file(alice@example.org,192.0.2.1): Password mismatch
//	pam(alice,192.0.2.1): pam_authenticate() failed: Authentication failure (password mismatch?)
//	passdb(?bad?name,192.0.2.1): invalid credentials
//
// smtpd logs each failed SMTP AUTH in Postfix's shape with SMTPFailure,
// for the stock postfix.conf filter (mode=auth, the postfix-sasl jail):
//
//	warning: unknown[192.0.2.1]: SASL LOGIN authentication failed: authentication failure, sasl_username=alice
//
// and the IMAP and POP3 login processes log a session that ends after
// failed logins with LoginFailure, which dovecot.conf matches too:
//
//	Disconnected (auth failed, 3 attempts in 12 secs): user=<alice>, method=PLAIN, rip=192.0.2.1, lip=192.0.2.25, TLS
//
// The filters find the program in the syslog tag: posthorn's tags are
// posthorn/smtpd, posthorn/auth..., so a jail names them:
//
//	[postfix-sasl]
//	filter = postfix[mode=auth, _daemon="posthorn/\w+"]
//	[dovecot]
//	filter = dovecot[_daemon="posthorn/[\w-]+"]
//
// with journalmatch = _SYSTEMD_UNIT=posthorn.service for the systemd
// backend.
package auth

import (
	"github.com/posthorn/posthorn/pkg/auth/pam"
)

// Request is one password check.
type Request struct {
	// Service is the protocol asking: "smtp", "imap" or "pop3".
	Service string
	// User and Password are as the client sent them (SASL authcid and
	// password, or IMAP LOGIN / POP3 USER+PASS).
	User     string
	Password string
	// RemoteIP is the client's address, without brackets or port.
	RemoteIP string
	// Secured: the connection is TLS or loopback. Passwords are never
	// checked otherwise (HOSTILE 10, Dovecot's auth_allow_cleartext = no).
	Secured bool
	// IssueToken asks for a one-time token on success, which the login
	// process hands to the mail process's dispatcher (pkg/login).
	IssueToken bool
}

// Result is the daemon's answer.
type Result struct {
	OK bool
	// User is the canonical login name: the name in the users file, or
	// the system user's name without a local domain.
	User string
	// Temp: the check could not be made (a backend failed, or the client
	// or user is over its failure limit): SMTP 454 4.7.0, IMAP NO
	// [UNAVAILABLE], POP3 -ERR [SYS/TEMP].
	Temp bool
	// Reason is for logs only and never shown to the client.
	Reason string
	// Token is the one-time token asked for with IssueToken.
	Token string
}

// Services a Request may name.
const (
	ServiceSMTP = "smtp"
	ServiceIMAP = "imap"
	ServicePOP3 = "pop3"
)

// PAMConfig is the content of /etc/pam.d/posthorn, which install.sh
// writes: the system's common-auth and common-account.
const PAMConfig = pam.Config

// PAMService is the PAM service name the daemon uses.
const PAMService = pam.Service
