package server

import (
	"net"
	"strings"
	"time"
)

// maxNameLen caps client-chosen names (HELO, PTR) in headers and logs: a
// DNS name is at most 255 octets, and RFC 5322 §2.1.1 caps a header line at
// 998, which three such names plus the rest of a Received: line still meet.
const maxNameLen = 255

// neuter makes a client-chosen name safe for a Received: comment and a log
// line, as Postfix does with its NEUTER_CHARACTERS: controls, blanks and
// 8-bit octets become '?', and so do the characters that would close or nest
// an RFC 5322 comment or fake a field ("()<>\\\";@").
func neuter(s string) string {
	if len(s) > maxNameLen {
		s = s[:maxNameLen]
	}
	b := []byte(s)
	for i, c := range b {
		if c <= ' ' || c >= 0x7f || strings.IndexByte("()<>\\\";@", c) >= 0 {
			b[i] = '?'
		}
	}
	return string(b)
}

// tcpInfoAddr writes an IP as RFC 5321 §4.1.3 address-literal content.
func tcpInfoAddr(ip net.IP) string {
	if ip == nil {
		return "unknown"
	}
	if ip.To4() != nil {
		return ip.String()
	}
	return "IPv6:" + ip.String()
}

// neuterComment makes a client-chosen value safe inside an RFC 5322
// comment: controls, blanks, 8-bit octets and the characters that would
// close, nest or escape a comment (parentheses, backslash) become '?'. Unlike neuter it keeps
// '@', so a login name such as alice@example.org stays readable.
func neuterComment(s string) string {
	if len(s) > maxNameLen {
		s = s[:maxNameLen]
	}
	b := []byte(s)
	for i, c := range b {
		if c <= ' ' || c >= 0x7f || c == '(' || c == ')' || c == '\\' {
			b[i] = '?'
		}
	}
	return string(b)
}

// receivedProto is the "with" keyword of the Received: field: SMTP after
// HELO, ESMTP after EHLO, UTF8SMTP with SMTPUTF8 (RFC 6531 §3.7.3), with
// "S" for TLS and "A" for AUTH appended as RFC 3848 defines (ESMTPS,
// ESMTPA, ESMTPSA, and likewise for UTF8SMTP).
func receivedProto(env *Envelope) string {
	c := env.Conn
	if !c.ESMTP {
		return "SMTP"
	}
	proto := "ESMTP"
	if env.SMTPUTF8 {
		proto = "UTF8SMTP"
	}
	if c.TLS != nil {
		proto += "S"
	}
	if c.AuthUser != "" {
		proto += "A"
	}
	return proto
}

// receivedHeader builds the trace field of RFC 5321 §4.4 in Postfix's layout:
//
//	Received: from helo (name [addr])
//		(Authenticated sender: login)
//		by host (posthorn) with ESMTPSA id QUEUEID
//		for <rcpt>; date
//
// "for" is written only for a single recipient, so a message to many does
// not disclose its other recipients. The login appears only when authUser
// is set (Config.ReceivedAuthUser).
func receivedHeader(env *Envelope, hostname, queueID string, now time.Time, authUser bool) string {
	c := env.Conn
	var b strings.Builder
	b.WriteString("Received: from ")
	b.WriteString(c.Helo)
	b.WriteString(" (")
	b.WriteString(c.RemoteName)
	b.WriteString(" [")
	b.WriteString(tcpInfoAddr(c.RemoteIP))
	b.WriteString("])\n")
	if authUser && c.AuthUser != "" {
		b.WriteString("\t(Authenticated sender: ")
		b.WriteString(neuterComment(c.AuthUser))
		b.WriteString(")\n")
	}
	b.WriteString("\tby ")
	b.WriteString(hostname)
	b.WriteString(" (posthorn) with ")
	b.WriteString(receivedProto(env))
	b.WriteString(" id ")
	b.WriteString(queueID)
	date := now.Format("Mon, 2 Jan 2006 15:04:05 -0700 (MST)")
	if len(env.Rcpts) == 1 {
		b.WriteString("\n\tfor <")
		b.WriteString(env.Rcpts[0].Addr.String())
		b.WriteString(">; ")
	} else {
		b.WriteString(";\n\t")
	}
	b.WriteString(date)
	b.WriteString("\n")
	return b.String()
}
