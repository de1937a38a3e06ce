package auth

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// SMTP AUTH failure texts, as Postfix's smtpd writes them after
// "authentication failed: ". fail2ban's postfix filter (mode=auth) counts
// every failure except the ones whose text starts with "Connection lost
// to authentication server": the auth service failing is not the client's
// doing.
const (
	smtpFailureText     = "authentication failure"
	smtpUnavailableText = "Connection lost to authentication server"
)

// SMTPFailure returns the text smtpd logs, with Logger.Warning, when SMTP
// AUTH fails, in the shape of Postfix's smtpd_sasl_glue.c:
//
//	unknown[192.0.2.1]: SASL LOGIN authentication failed: authentication failure, sasl_username=alice
//
// clientName is the client's verified host name or "unknown", clientIP
// its address, mechanism the SASL mechanism (or "" when the client named
// none smtpd offers), user the name the client sent ("" when it sent none,
// for example a malformed response). res and err are what Client.Verify
// returned; for a failure found before asking the daemon (a malformed or
// cancelled response) pass Result{} and nil. A failure of the auth service
// itself (err != nil, or a temporary result that is not a limit) is logged
// with the text fail2ban ignores.
func SMTPFailure(clientName, clientIP, mechanism, user string, res Result, err error) string {
	text := smtpFailureText
	if err != nil || res.Temp && !res.Limited() {
		text = smtpUnavailableText
	}
	line := fmt.Sprintf("%s[%s]: SASL %s authentication failed: %s",
		logHost(clientName), logAddr(clientIP), logMethod(mechanism), text)
	if user != "" {
		line += ", sasl_username=" + logName(user)
	}
	return line
}

// LoginFailure returns the line imap-login and pop3-login log, with
// Logger.Info, when a session that failed to log in ends, in the shape of
// Dovecot's login processes, which fail2ban's dovecot filter matches:
//
//	Disconnected (auth failed, 3 attempts in 12 secs): user=<alice>, method=PLAIN, rip=192.0.2.1, lip=192.0.2.25, TLS
//
// attempts is the number of failed logins of the session, took its
// length, user the last name tried, method the mechanism or "LOGIN" /
// "USER" for the protocols' own commands.
func LoginFailure(attempts int, took time.Duration, user, method, remoteIP, localIP string, tls bool) string {
	line := fmt.Sprintf("Disconnected (auth failed, %d attempts in %d secs): user=<%s>, method=%s, rip=%s, lip=%s",
		attempts, int(took/time.Second), logName(user), logMethod(method), logAddr(remoteIP), logAddr(localIP))
	if tls {
		line += ", TLS"
	}
	return line
}

// logAddr is an address as a log line may show it: canonical, or "?" for
// something that is not an address.
func logAddr(s string) string {
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return "?"
	}
	return ip.WithZone("").Unmap().String()
}

// logHost is a client host name as a log line may show it. The filter
// takes the address from the first "[", so a name that could hold one
// (DNS labels may contain any octet) is shown as "unknown".
func logHost(name string) string {
	if name == "" || len(name) > 255 {
		return "unknown"
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !isAlnum(c) && c != '.' && c != '-' && c != '_' {
			return "unknown"
		}
	}
	return name
}

func logMethod(m string) string {
	m = strings.ToUpper(m)
	for i := 0; i < len(m); i++ {
		if c := m[i]; !isAlnum(c) && c != '-' && c != '_' {
			return "?"
		}
	}
	if m == "" {
		return "?"
	}
	return m
}

// Limited reports whether a temporary result is a refusal by the failure
// limits: the client's doing, counted by fail2ban, where any other
// temporary result means the auth service could not check.
func (r Result) Limited() bool { return r.Temp && isLimitReason(r.Reason) }

// isLimitReason reports whether a temporary result came from the failure
// limits, which count as failures for fail2ban, rather than from a
// backend that failed.
func isLimitReason(reason string) bool {
	switch refusal(reason) {
	case refusedClient, refusedUser, refusedInFlight:
		return true
	}
	return false
}
