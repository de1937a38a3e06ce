// Package pam checks a system user's password through PAM, the way the
// system's own logins do: on Debian 12 /etc/shadow holds yescrypt hashes
// ($y$) that pam_unix verifies through libxcrypt, and an administrator's
// PAM stack (pam_faillock, LDAP, account expiry) applies to mail as well.
//
// The PAM service is Service ("posthorn"), read from /etc/pam.d/posthorn;
// without that file PAM uses /etc/pam.d/other, which on Debian includes
// the same common-auth and common-account. Config is the file's intended
// content, written by the installer.
//
// pam_unix reads /etc/shadow directly only when it runs as root; otherwise
// it asks its set-gid helper unix_chkpwd, which checks only the calling
// user's own password. That is why the auth daemon runs as root.
package pam

import "errors"

// Service is the PAM service name.
const Service = "posthorn"

// Config is /etc/pam.d/posthorn: the system's password check and account
// check (expiry, locks), nothing else. Mail logins open no session.
const Config = `# PAM configuration for posthorn's auth daemon: how system users'
# passwords are checked for SMTP AUTH, IMAP and POP3 logins.
@include common-auth
@include common-account
`

// Stage says which PAM call gave a result.
type Stage string

const (
	Authenticate Stage = "pam_authenticate()"
	AccountCheck Stage = "pam_acct_mgmt()"
	Start        Stage = "pam_start()"
)

// Result is the outcome of one check.
type Result struct {
	// OK: password right and account usable.
	OK bool
	// User is PAM's name for the user after the check (PAM_USER), which
	// a module may have changed.
	User string
	// UnknownUser: a module said the user does not exist. Debian's
	// common-auth hides this (pam_deny answers for pam_unix), so it is
	// rarely seen; the reply to the client is the same either way.
	UnknownUser bool
	// Temp: PAM could not decide (module missing, system error): neither
	// the user's fault nor evidence of an attack.
	Temp bool
	// Stage and Message say what failed, in PAM's words.
	Stage   Stage
	Message string
}

// ErrUnavailable is returned by a build without PAM support.
var ErrUnavailable = errors.New("pam: this program was built without PAM (cgo disabled)")
