package pop3

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"
)

// Log lines. The login stage's lines have the shape of Dovecot's
// pop3-login, which fail2ban's stock dovecot filter matches when the
// syslog tag is posthorn/pop3-login (jail: filter = dovecot[_daemon=
// "posthorn/[\w-]+"], see package auth):
//
//	Login: user=<alice>, method=PLAIN, rip=192.0.2.1, lip=192.0.2.25, TLS
//	Disconnected (auth failed, 2 attempts in 5 secs): user=<alice>, method=PLAIN, rip=192.0.2.1, lip=192.0.2.25, TLS
//	Disconnected: Inactivity (auth failed, 1 attempts in 60 secs): user=<alice>, method=PLAIN, rip=192.0.2.1, lip=192.0.2.25
//	Disconnected (tried to use disallowed plaintext auth): user=<alice>, rip=192.0.2.1, lip=192.0.2.25
//	Disconnected (no auth attempts in 0 secs): user=<>, rip=192.0.2.1, lip=192.0.2.25
//
// The transaction stage logs the end of every session as Dovecot's pop3
// process does with its default pop3_logout_format:
//
//	pop3(alice)<4242>: Disconnected: Logged out top=0/0, retr=1/1234, del=0/1, size=5678
//
// top and retr are commands/octets sent, del is messages deleted/messages
// in the maildrop, size the maildrop's size at login.

// loginLine formats the end of a login stage that did not hand over.
// reason is "" or a ": Reason" suffix for "Disconnected".
func loginLine(reason string, failures int, disallowed bool, took time.Duration, user, method string, remote, local net.Addr, sec string) string {
	var what string
	switch {
	case failures > 0:
		what = fmt.Sprintf("auth failed, %d attempts in %d secs", failures, int(took/time.Second))
	case disallowed:
		what = "tried to use disallowed plaintext auth"
	default:
		what = fmt.Sprintf("no auth attempts in %d secs", int(took/time.Second))
	}
	line := fmt.Sprintf("Disconnected%s (%s): user=<%s>, ", reason, what, logName(user))
	if failures > 0 {
		line += "method=" + method + ", "
	}
	return line + addrFields(remote, local) + sec
}

// successLine formats a login that is handed over.
func successLine(user, method string, remote, local net.Addr, sec string) string {
	return fmt.Sprintf("Login: user=<%s>, method=%s, %s%s", logName(user), method, addrFields(remote, local), sec)
}

func addrFields(remote, local net.Addr) string {
	return "rip=" + logIP(remote) + ", lip=" + logIP(local)
}

// secField is what Dovecot appends for the connection's security.
func secField(tls, secured bool) string {
	switch {
	case tls:
		return ", TLS"
	case secured:
		return ", secured"
	}
	return ""
}

// logIP is the address of a, without port or zone, or "?" when a is not
// an IP address (a pipe in tests, a Unix socket).
func logIP(a net.Addr) string {
	ip, ok := addrIP(a)
	if !ok {
		return "?"
	}
	return ip.String()
}

func addrIP(a net.Addr) (netip.Addr, bool) {
	if a == nil {
		return netip.Addr{}, false
	}
	if t, ok := a.(*net.TCPAddr); ok {
		ip, ok := netip.AddrFromSlice(t.IP)
		return ip.Unmap(), ok
	}
	s := a.String()
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().WithZone("").Unmap(), true
	}
	if ip, err := netip.ParseAddr(s); err == nil {
		return ip.WithZone("").Unmap(), true
	}
	return netip.Addr{}, false
}

// isLoopback reports whether a is a loopback address, where plaintext
// passwords are allowed by default (DESIGN §5).
func isLoopback(a net.Addr) bool {
	ip, ok := addrIP(a)
	return ok && ip.IsLoopback()
}

// maxLoggedName is how much of a user name a log line shows.
const maxLoggedName = 64

// logName is a user name as a log line may show it: the name a client
// sent is untrusted, and ">", "," or "=" in it could forge the fields that
// fail2ban reads (rip=). Anything outside letters, digits and "._-@+"
// becomes "?".
func logName(name string) string {
	var b strings.Builder
	for i := 0; i < len(name) && i < maxLoggedName; i++ {
		c := name[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("._-@+", c) >= 0 {
			b.WriteByte(c)
		} else {
			b.WriteByte('?')
		}
	}
	if len(name) > maxLoggedName {
		b.WriteString("...")
	}
	return b.String()
}
