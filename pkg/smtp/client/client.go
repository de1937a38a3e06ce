// Package client is the SMTP client protocol engine of the outbound
// delivery agent: greeting, EHLO (HELO when EHLO is refused), opportunistic
// or mandatory STARTTLS (RFC 3207), AUTH PLAIN/LOGIN for a relay host
// (RFC 4954), and mail transactions with PIPELINING (RFC 2920), SIZE (RFC
// 1870), 8BITMIME (RFC 6152) and SMTPUTF8 (RFC 6531), with a time limit on
// every stage and a bounded reply parser. It knows nothing of DNS or
// queues: the caller dials, hands over the connection, and maps results.
package client

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// Timeouts limit each stage of a session. The defaults are Postfix's
// smtp_*_timeout values.
type Timeouts struct {
	Helo     time.Duration // greeting, EHLO/HELO, AUTH
	StartTLS time.Duration // STARTTLS and the TLS handshake
	Mail     time.Duration // MAIL FROM reply
	Rcpt     time.Duration // RCPT TO reply
	DataInit time.Duration // DATA reply
	DataXfer time.Duration // no progress while sending the content
	DataDone time.Duration // reply to the final "."
	Rset     time.Duration
	Quit     time.Duration
}

// DefaultTimeouts returns Postfix's defaults: helo 300 s, starttls 300 s,
// mail 300 s, rcpt 300 s, data init 120 s, data xfer 180 s, data done
// 600 s, rset 20 s, quit 300 s.
func DefaultTimeouts() Timeouts {
	return Timeouts{
		Helo: 300 * time.Second, StartTLS: 300 * time.Second,
		Mail: 300 * time.Second, Rcpt: 300 * time.Second,
		DataInit: 120 * time.Second, DataXfer: 180 * time.Second, DataDone: 600 * time.Second,
		Rset: 20 * time.Second, Quit: 300 * time.Second,
	}
}

// TLSMode is the TLS policy of a session (Postfix's smtp_tls_security_level).
type TLSMode int

const (
	// TLSNone never sends STARTTLS.
	TLSNone TLSMode = iota
	// TLSMay uses STARTTLS when offered and goes on in plaintext when it
	// is not (RFC 3207 opportunistic TLS; certificates are not verified).
	TLSMay
	// TLSEncrypt requires STARTTLS; certificates are not verified
	// (Postfix's "encrypt" level).
	TLSEncrypt
)

// Config describes how to run a session.
type Config struct {
	// HeloName is the name sent in EHLO/HELO.
	HeloName string
	TLS      TLSMode
	// TLSConfig, when set, is used for the handshake as is; otherwise a
	// configuration that verifies nothing, with ServerName for SNI.
	TLSConfig  *tls.Config
	ServerName string
	// Username and Password, when Username is set, are sent with AUTH
	// after EHLO (after STARTTLS when TLS is used).
	Username, Password string
	// AllowCleartextAuth permits AUTH over a connection without TLS;
	// otherwise credentials are never sent in the clear.
	AllowCleartextAuth bool
	Timeouts           Timeouts
}

// Error is a failed step of a session.
type Error struct {
	// Cmd is what was being done: "greeting", "EHLO", "HELO", "STARTTLS",
	// "AUTH", "RSET", "MAIL FROM", "RCPT TO", "DATA", "message body" or
	// "end of DATA".
	Cmd string
	// Reply is the server's refusal; nil when the step failed otherwise.
	Reply *Reply
	// Err is an I/O error, a protocol error (ErrProtocol), or a local
	// refusal to go on (then Status is set).
	Err error
	// Status is the enhanced status code of a local refusal ("5.3.4" for
	// a message larger than the server takes).
	Status string
	// TLSHandshake marks a failed TLS handshake, after which an
	// opportunistic client may try the same server in plaintext.
	TLSHandshake bool
}

func (e *Error) Error() string {
	if e.Reply != nil {
		return fmt.Sprintf("%s (in reply to %s command)", e.Reply, e.Cmd)
	}
	return fmt.Sprintf("%v while %s", e.Err, e.Stage())
}

func (e *Error) Unwrap() error { return e.Err }

// Stage says what was being done in the words Postfix logs after "while".
func (e *Error) Stage() string {
	switch e.Cmd {
	case "greeting":
		return "receiving the initial server greeting"
	case "EHLO", "HELO":
		return "performing the " + e.Cmd + " handshake"
	case "AUTH":
		return "authenticating"
	case "message body":
		return "sending message body"
	case "end of DATA":
		return "sending end of data -- message may be sent more than once"
	}
	return "sending " + e.Cmd
}

// Temporary reports whether the failure may go away on a later attempt:
// 4xx replies, I/O and protocol errors, and local refusals with a 4.x.x
// status.
func (e *Error) Temporary() bool {
	if e.Reply != nil {
		return !e.Reply.Permanent()
	}
	return !strings.HasPrefix(e.Status, "5")
}

// DSN is the enhanced status code of the failure.
func (e *Error) DSN() string {
	switch {
	case e.Reply != nil:
		return e.Reply.DSN()
	case e.Status != "":
		return e.Status
	case errors.Is(e.Err, ErrProtocol):
		return "4.5.0"
	}
	return "4.4.2" // lost connection or timed out (Postfix's code)
}

// Conn is an SMTP session that has passed the greeting and EHLO/HELO (and
// STARTTLS and AUTH, when they apply): ready for mail transactions.
type Conn struct {
	nc   net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	cfg  Config
	dw   deadlineWriter
	ext  map[string]string // EHLO keywords (upper case) and their parameters
	tls  *tls.ConnectionState
	auth bool

	// Greeting is the server's 220 reply.
	Greeting *Reply
	// Created is when the connection was made, for reuse limits.
	Created time.Time
	// Transactions counts the messages sent (or tried) on this session.
	Transactions int
	broken       bool
}

// deadlineWriter pushes the write deadline forward before each write, so
// a timeout measures lack of progress (Postfix's smtp_data_xfer_timeout),
// not the length of a big message.
type deadlineWriter struct {
	nc      net.Conn
	timeout time.Duration
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	w.nc.SetWriteDeadline(time.Now().Add(w.timeout))
	return w.nc.Write(p)
}

// New runs the start of a session on a connected socket: greeting,
// EHLO, STARTTLS, AUTH. On error the socket is closed.
func New(ctx context.Context, nc net.Conn, cfg Config) (*Conn, error) {
	c := &Conn{nc: nc, cfg: cfg, Created: time.Now()}
	c.setConn(nc)
	if err := c.start(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

func (c *Conn) setConn(nc net.Conn) {
	c.nc = nc
	c.dw = deadlineWriter{nc: nc, timeout: c.cfg.Timeouts.Helo}
	c.br = bufio.NewReaderSize(nc, MaxReplyLine)
	c.bw = bufio.NewWriterSize(&c.dw, 32<<10)
}

func checkLine(line string) error {
	if strings.ContainsAny(line, "\r\n\x00") {
		return fmt.Errorf("refusing to send a command with a line break or NUL: %q", line)
	}
	return nil
}

// watch makes ctx's cancellation interrupt blocked I/O.
func (c *Conn) watch(ctx context.Context) (stop func() bool) {
	return context.AfterFunc(ctx, func() { c.nc.SetDeadline(time.Now()) })
}

func (c *Conn) start(ctx context.Context) error {
	defer c.watch(ctx)()
	greet, err := c.read("greeting", c.cfg.Timeouts.Helo)
	if err != nil {
		return err
	}
	c.Greeting = greet
	if greet.Code != 220 {
		return &Error{Cmd: "greeting", Reply: greet}
	}
	if err := c.hello(); err != nil {
		return err
	}
	if c.cfg.TLS != TLSNone {
		if err := c.startTLS(); err != nil {
			return err
		}
	}
	if c.cfg.Username != "" {
		if err := c.authenticate(); err != nil {
			return err
		}
	}
	return nil
}

// cmd writes one command line. Arguments come from envelope addresses
// that were parsed before, but a line break or NUL in one would let it
// forge commands, so they are refused here once more.
func (c *Conn) cmd(timeout time.Duration, line string) error {
	if err := checkLine(line); err != nil {
		return err
	}
	c.dw.timeout = timeout
	c.bw.WriteString(line)
	c.bw.WriteString("\r\n")
	return nil
}

func (c *Conn) flush(stage string) error {
	if err := c.bw.Flush(); err != nil {
		c.broken = true
		return &Error{Cmd: stage, Err: ioErr(err)}
	}
	return nil
}

// read reads the reply to stage within timeout.
func (c *Conn) read(stage string, timeout time.Duration) (*Reply, error) {
	c.nc.SetReadDeadline(time.Now().Add(timeout))
	r, err := ReadReply(c.br)
	if err != nil {
		c.broken = true
		return nil, &Error{Cmd: stage, Err: ioErr(err)}
	}
	if r.Code == 421 {
		// RFC 5321 §3.8: the server is closing the session.
		c.broken = true
	}
	return r, nil
}

// ioErr words network errors as Postfix logs them.
func ioErr(err error) error {
	var ne net.Error
	switch {
	case errors.Is(err, ErrProtocol):
		return err
	case errors.As(err, &ne) && ne.Timeout():
		return errTimeout
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return errLost
	}
	return err
}

// Errors of a session that ended without a reply. Their text is what
// Postfix says: "lost connection with HOST while ...", "conversation with
// HOST timed out while ...".
var (
	errLost    = errors.New("lost connection")
	errTimeout = errors.New("conversation timed out")
)

// IsTimeout and IsLost tell the two apart for log wording.
func IsTimeout(err error) bool { return errors.Is(err, errTimeout) }
func IsLost(err error) bool    { return errors.Is(err, errLost) }

// hello sends EHLO, and HELO when the server refuses EHLO with a 5xx
// (RFC 5321 §4.1.4, §3.2).
func (c *Conn) hello() error {
	if err := c.cmd(c.cfg.Timeouts.Helo, "EHLO "+c.cfg.HeloName); err != nil {
		return &Error{Cmd: "EHLO", Err: err, Status: "5.3.5"}
	}
	if err := c.flush("EHLO"); err != nil {
		return err
	}
	r, err := c.read("EHLO", c.cfg.Timeouts.Helo)
	if err != nil {
		return err
	}
	if r.Code == 250 {
		c.ext = parseEHLO(r)
		return nil
	}
	if !r.Permanent() || c.broken {
		return &Error{Cmd: "EHLO", Reply: r}
	}
	c.cmd(c.cfg.Timeouts.Helo, "HELO "+c.cfg.HeloName)
	if err := c.flush("HELO"); err != nil {
		return err
	}
	r, err = c.read("HELO", c.cfg.Timeouts.Helo)
	if err != nil {
		return err
	}
	if r.Code != 250 {
		return &Error{Cmd: "HELO", Reply: r}
	}
	c.ext = map[string]string{}
	return nil
}

// parseEHLO collects the service extensions of an EHLO reply (RFC 5321
// §4.1.1.1): one keyword per line after the first, with parameters.
func parseEHLO(r *Reply) map[string]string {
	ext := map[string]string{}
	for _, line := range r.Text[1:] {
		kw, params, _ := strings.Cut(strings.TrimSpace(line), " ")
		kw = strings.ToUpper(kw)
		if m, ok := strings.CutPrefix(kw, "AUTH="); ok {
			// Pre-RFC 4954 servers announce "AUTH=LOGIN PLAIN".
			kw, params = "AUTH", strings.TrimSpace(m+" "+params)
		}
		if kw == "" {
			continue
		}
		if old, ok := ext[kw]; ok && kw == "AUTH" {
			params = old + " " + params
		}
		ext[kw] = strings.TrimSpace(params)
	}
	return ext
}

// Extension reports whether the server announced kw and its parameters.
func (c *Conn) Extension(kw string) (string, bool) {
	p, ok := c.ext[strings.ToUpper(kw)]
	return p, ok
}

// SizeLimit is the server's SIZE (RFC 1870 §4), 0 when it gave none.
func (c *Conn) SizeLimit() int64 {
	p, ok := c.ext["SIZE"]
	if !ok {
		return 0
	}
	n, err := strconv.ParseInt(strings.Fields(p + " 0")[0], 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// TLS returns the state of the TLS session, nil for a plaintext one.
func (c *Conn) TLS() *tls.ConnectionState { return c.tls }

// Broken reports whether the session can no longer be used: an I/O or
// protocol error, or a 421 reply.
func (c *Conn) Broken() bool { return c.broken }

var errInjection = errors.New("server sent data after its reply to STARTTLS (response injection)")

// startTLS upgrades the session (RFC 3207), then says EHLO again: what the
// server announced in plaintext is forgotten (§4.2).
func (c *Conn) startTLS() error {
	if _, ok := c.ext["STARTTLS"]; !ok {
		if c.cfg.TLS == TLSEncrypt {
			return &Error{Cmd: "STARTTLS", Status: "4.7.4", Err: errors.New("TLS is required, but was not offered by host")}
		}
		return nil
	}
	c.cmd(c.cfg.Timeouts.StartTLS, "STARTTLS")
	if err := c.flush("STARTTLS"); err != nil {
		return err
	}
	r, err := c.read("STARTTLS", c.cfg.Timeouts.StartTLS)
	if err != nil {
		return err
	}
	if r.Code != 220 {
		if c.cfg.TLS == TLSEncrypt || c.broken {
			return &Error{Cmd: "STARTTLS", Reply: r}
		}
		return nil // opportunistic: go on in plaintext
	}
	// Anything already read past the 220 came before the handshake, in
	// plaintext, and must never be taken as a reply within TLS
	// (HOSTILE-INPUTS 9; CVE-2011-0411 is the server-side twin).
	if c.br.Buffered() > 0 {
		c.broken = true
		return &Error{Cmd: "STARTTLS", Err: fmt.Errorf("%w: %v", ErrProtocol, errInjection)}
	}
	cfg := c.cfg.TLSConfig
	if cfg == nil {
		cfg = &tls.Config{InsecureSkipVerify: true, ServerName: c.cfg.ServerName}
		if net.ParseIP(cfg.ServerName) != nil {
			cfg.ServerName = "" // no SNI for an address (RFC 6066 §3)
		}
	}
	tc := tls.Client(c.nc, cfg)
	tc.SetDeadline(time.Now().Add(c.cfg.Timeouts.StartTLS))
	if err := tc.Handshake(); err != nil {
		c.broken = true
		return &Error{Cmd: "STARTTLS", Err: fmt.Errorf("TLS handshake failed: %v", err), TLSHandshake: true}
	}
	tc.SetDeadline(time.Time{})
	st := tc.ConnectionState()
	c.tls = &st
	c.setConn(tc)
	c.ext = nil
	return c.hello()
}

// authenticate logs in with PLAIN (RFC 4616) or LOGIN, never in the clear
// unless allowed.
func (c *Conn) authenticate() error {
	if c.tls == nil && !c.cfg.AllowCleartextAuth {
		return &Error{Cmd: "AUTH", Status: "4.7.0",
			Err: errors.New("refusing to send credentials over a connection without TLS")}
	}
	mechs := strings.Fields(strings.ToUpper(c.ext["AUTH"]))
	has := func(m string) bool {
		for _, x := range mechs {
			if x == m {
				return true
			}
		}
		return false
	}
	b64 := base64.StdEncoding.EncodeToString
	t := c.cfg.Timeouts.Helo
	var r *Reply
	var err error
	step := func(line string) {
		if err != nil {
			return
		}
		// Credentials are base64: no line break can get into the command.
		c.cmd(t, line)
		if err = c.flush("AUTH"); err == nil {
			r, err = c.read("AUTH", t)
		}
	}
	switch {
	case has("PLAIN"):
		step("AUTH PLAIN " + b64([]byte("\x00"+c.cfg.Username+"\x00"+c.cfg.Password)))
		if err == nil && r.Code == 334 {
			step("") // an empty challenge to an initial response
		}
	case has("LOGIN"):
		step("AUTH LOGIN")
		if err == nil && r.Code == 334 {
			step(b64([]byte(c.cfg.Username)))
		}
		if err == nil && r.Code == 334 {
			step(b64([]byte(c.cfg.Password)))
		}
	default:
		return &Error{Cmd: "AUTH", Status: "4.7.0",
			Err: fmt.Errorf("no supported authentication mechanism (server offers %q)", c.ext["AUTH"])}
	}
	if err != nil {
		return err
	}
	// 235 is success (RFC 4954 §6); any 2xx is taken as one, as Postfix does.
	if !r.Positive() {
		if r.Code == 334 {
			// Still asking: cancel (RFC 4954 §4) rather than guess.
			c.cmd(t, "*")
			c.flush("AUTH")
			c.read("AUTH", t)
		}
		return &Error{Cmd: "AUTH", Reply: r}
	}
	c.auth = true
	return nil
}

// Authenticated reports whether AUTH succeeded on this session.
func (c *Conn) Authenticated() bool { return c.auth }

// Quit ends the session politely and closes it. Like Postfix
// (smtp_skip_quit_response) it does not wait for the reply.
func (c *Conn) Quit() {
	if !c.broken {
		c.nc.SetWriteDeadline(time.Now().Add(c.cfg.Timeouts.Quit))
		c.cmd(c.cfg.Timeouts.Quit, "QUIT")
		c.bw.Flush()
	}
	c.nc.Close()
}

// Close closes the connection without QUIT.
func (c *Conn) Close() error {
	c.broken = true
	return c.nc.Close()
}

// RemoteAddr is the server's address.
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }
