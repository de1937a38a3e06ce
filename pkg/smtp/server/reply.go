package server

import (
	"fmt"
	"strings"
)

// Reply is an SMTP reply: a code, an RFC 3463 enhanced status code and text.
// It implements error so a Backend or a parser can return it as is.
type Reply struct {
	Code     int
	Enhanced string // "5.1.1"; empty only for the greeting and EHLO/HELO (RFC 2034 §3)
	Text     string // may hold several lines separated by "\n"
}

func (r *Reply) Error() string {
	if r.Enhanced == "" {
		return fmt.Sprintf("%d %s", r.Code, r.Text)
	}
	return fmt.Sprintf("%d %s %s", r.Code, r.Enhanced, r.Text)
}

// Temporary reports a 4xx reply.
func (r *Reply) Temporary() bool { return r.Code >= 400 && r.Code < 500 }

// wire formats the reply for the client, one "code-" line per text line and
// "code " on the last (RFC 5321 §4.2.1). Text comes partly from backends, so
// CR and other controls are neutralised here: a reply must never turn into
// two replies.
func (r *Reply) wire() string {
	code := r.Code
	if code < 200 || code > 599 {
		code = 451 // a backend bug must not produce a reply the client cannot parse
	}
	text := strings.TrimRight(r.Text, "\r\n")
	var b strings.Builder
	b.Grow(len(text) + len(r.Enhanced) + 8)
	for {
		l, rest, more := strings.Cut(text, "\n")
		text = rest
		sep := byte(' ')
		if more {
			sep = '-'
		}
		b.WriteByte(byte('0' + code/100))
		b.WriteByte(byte('0' + code/10%10))
		b.WriteByte(byte('0' + code%10))
		b.WriteByte(sep)
		if r.Enhanced != "" {
			b.WriteString(r.Enhanced)
			b.WriteByte(' ')
		}
		b.WriteString(printable(strings.TrimSuffix(l, "\r")))
		b.WriteString("\r\n")
		if !more {
			return b.String()
		}
	}
}

// printable maps C0 controls and DEL to '?'; UTF-8 passes (RFC 6531 §3.7.4.2
// allows it in replies to SMTPUTF8 clients, others just see odd octets).
func printable(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c == 0x7f {
			b[i] = '?'
		}
	}
	return string(b)
}

func reply(code int, enhanced, format string, args ...any) *Reply {
	if len(args) > 0 {
		format = fmt.Sprintf(format, args...)
	}
	return &Reply{Code: code, Enhanced: enhanced, Text: format}
}
