package client

import (
	"bufio"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits on what a server may send as one reply. RFC 5321 §4.5.3.1.5 caps
// a reply line at 512 octets, but real servers send longer ones, so a few
// KB are accepted; past these limits the server is broken or hostile and
// the session ends with a temporary failure (OpenSMTPD CVE-2020-8794 came
// from an unbounded multi-line reply).
const (
	MaxReplyLine  = 4096 // octets of one line, line ending included
	MaxReplyLines = 100  // lines of one multi-line reply
)

// ErrProtocol marks a reply that does not follow RFC 5321 §4.2.
var ErrProtocol = errors.New("protocol error")

// Reply is one server reply, single- or multi-line (RFC 5321 §4.2.1).
type Reply struct {
	Code int
	// Enhanced is the RFC 3463 status code of the first line ("5.1.1"),
	// when there is one whose class agrees with Code.
	Enhanced string
	// Text holds each line after the code and separator, with control
	// characters and invalid UTF-8 replaced by '?': it goes into logs and
	// bounces.
	Text []string
}

// String is the reply as Postfix logs it: every line with its code, joined
// by spaces ("550-5.7.1 first 550 5.7.1 second").
func (r *Reply) String() string {
	var b strings.Builder
	for i, t := range r.Text {
		if i > 0 {
			b.WriteByte(' ')
		}
		sep := byte('-')
		if i == len(r.Text)-1 {
			sep = ' '
		}
		b.WriteString(strconv.Itoa(r.Code))
		if t != "" || sep == '-' {
			b.WriteByte(sep)
		}
		b.WriteString(t)
	}
	return b.String()
}

// Positive, Temporary and Permanent classify the code (RFC 5321 §4.2.1).
// Positive is a completion (2yz): the intermediate 3yz replies are
// checked for by code where one is expected (354, 334).
func (r *Reply) Positive() bool  { return r.Code >= 200 && r.Code < 300 }
func (r *Reply) Temporary() bool { return r.Code >= 400 && r.Code < 500 }
func (r *Reply) Permanent() bool { return r.Code >= 500 }

// DSN is the enhanced status code of the reply, or one made from the
// reply code's class (2.0.0, 4.0.0, 5.0.0) when the server gave none.
func (r *Reply) DSN() string {
	if r.Enhanced != "" {
		return r.Enhanced
	}
	return fmt.Sprintf("%d.0.0", r.Code/100)
}

// ReadReply reads one reply. Lines may end in CRLF or a bare LF (servers
// do that, and nothing in the reply is ever relayed). Every line must
// carry the same code; a malformed or overlong reply is an error wrapping
// ErrProtocol.
func ReadReply(r *bufio.Reader) (*Reply, error) {
	rep := &Reply{}
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) || len(line) > MaxReplyLine {
			return nil, fmt.Errorf("%w: reply line longer than %d octets", ErrProtocol, MaxReplyLine)
		}
		if err != nil {
			return nil, err
		}
		line = line[:len(line)-1]
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		code, last, text, ok := parseLine(line)
		if !ok {
			return nil, fmt.Errorf("%w: malformed reply line %q", ErrProtocol, truncate(sanitize(line), 80))
		}
		if len(rep.Text) == 0 {
			rep.Code = code
		} else if code != rep.Code {
			return nil, fmt.Errorf("%w: reply lines with codes %d and %d", ErrProtocol, rep.Code, code)
		}
		rep.Text = append(rep.Text, sanitize(text))
		if last {
			rep.Enhanced = enhanced(rep.Code, rep.Text[0])
			return rep, nil
		}
		if len(rep.Text) >= MaxReplyLines {
			return nil, fmt.Errorf("%w: reply of more than %d lines", ErrProtocol, MaxReplyLines)
		}
	}
}

// parseLine splits "250-text", "250 text" or "250". Codes are 2yz to 5yz
// with y in 0-5 (RFC 5321 §4.2.1); 1yz replies do not occur in SMTP.
func parseLine(l []byte) (code int, last bool, text []byte, ok bool) {
	if len(l) < 3 || l[0] < '2' || l[0] > '5' || l[1] < '0' || l[1] > '5' || l[2] < '0' || l[2] > '9' {
		return 0, false, nil, false
	}
	code = int(l[0]-'0')*100 + int(l[1]-'0')*10 + int(l[2]-'0')
	switch {
	case len(l) == 3:
		return code, true, nil, true
	case l[3] == ' ':
		return code, true, l[4:], true
	case l[3] == '-':
		return code, false, l[4:], true
	}
	return 0, false, nil, false
}

// enhanced returns the RFC 3463 code at the start of text when its class
// matches the reply code's first digit and it is followed by a space or
// the end of the line ("550 5.7.2" without text is fine). Postfix's
// dsn_split once read past the end in exactly that case (CVE-2026-43964).
func enhanced(code int, text string) string {
	end := strings.IndexByte(text, ' ')
	if end < 0 {
		end = len(text)
	}
	f := strings.Split(text[:end], ".")
	if len(f) != 3 || len(f[0]) != 1 || f[0][0] != byte('0'+code/100) || code/100 == 3 {
		return ""
	}
	for _, p := range f[1:] {
		if len(p) < 1 || len(p) > 3 || strings.Trim(p, "0123456789") != "" {
			return ""
		}
	}
	return text[:end]
}

// sanitize makes reply text safe for logs and bounce messages.
func sanitize(b []byte) string {
	var out strings.Builder
	out.Grow(len(b))
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		switch {
		case r == utf8.RuneError && n <= 1, r < 0x20 && r != '\t', r == 0x7f, r >= 0x80 && r < 0xa0:
			out.WriteByte('?')
		default:
			out.Write(b[:n])
		}
		b = b[n:]
	}
	return out.String()
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
