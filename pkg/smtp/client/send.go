package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Envelope is one mail transaction.
type Envelope struct {
	// From is the reverse-path without angle brackets, "" for the null
	// sender; To are the forward-paths. Both must be valid addresses
	// already (pkg/address); they are not parsed here.
	From string
	To   []string
	// Size is the content's size as sent (with CRLF line endings), for
	// the SIZE parameter; 0 if unknown.
	Size int64
	// EightBit says the content has octets above 127: BODY=8BITMIME is
	// declared when the server offers it, and the content is downgraded
	// to 7-bit MIME when it does not (see Downgrade).
	EightBit bool
	// SMTPUTF8 asks for SMTPUTF8 when the server offers it (headers with
	// UTF-8); RequireSMTPUTF8 means the message cannot be sent at all
	// without it (a UTF-8 address, or the sender asked for it).
	SMTPUTF8, RequireSMTPUTF8 bool
}

// RcptResult is what became of one recipient.
type RcptResult struct {
	// Reply settles the recipient: the refusal of MAIL FROM, RCPT TO or
	// DATA, or the reply to the end of the data.
	Reply *Reply
	// Cmd is the command Reply answers: "MAIL FROM", "RCPT TO", "DATA"
	// or "end of DATA".
	Cmd string
}

// Delivered reports whether the server took the message for the recipient.
func (r RcptResult) Delivered() bool { return r.Cmd == "end of DATA" && r.Reply.Positive() }

// Send runs one mail transaction and returns a result for each recipient,
// in the order of env.To. The error is for what ends the transaction
// for every recipient without a reply to show for it: I/O and protocol
// errors (the session is Broken then), and the local refusals that come
// before anything is sent (SIZE too small, SMTPUTF8 missing), after which
// the session can still be used. On a session that already carried a
// transaction, RSET comes first (RFC 5321 §4.1.1.5); an error with Cmd
// "RSET" means the session went stale and nothing was sent.
func (c *Conn) Send(ctx context.Context, env *Envelope, content io.Reader) ([]RcptResult, error) {
	if c.broken {
		return nil, &Error{Cmd: "RSET", Err: errLost}
	}
	defer c.watch(ctx)()
	t := c.cfg.Timeouts
	if c.Transactions > 0 {
		c.cmd(t.Rset, "RSET")
		if err := c.flush("RSET"); err != nil {
			return nil, err
		}
		r, err := c.read("RSET", t.Rset)
		if err != nil {
			return nil, err
		}
		if r.Code != 250 {
			c.broken = true
			return nil, &Error{Cmd: "RSET", Reply: r}
		}
	}
	_, utf8 := c.ext["SMTPUTF8"]
	if env.RequireSMTPUTF8 && !utf8 {
		// RFC 6531 §3.2: no downgrade exists for UTF-8 addresses.
		return nil, &Error{Cmd: "MAIL FROM", Status: "5.6.7",
			Err: errors.New("SMTPUTF8 is required, but was not offered by host")}
	}
	if lim := c.SizeLimit(); lim > 0 && env.Size > lim {
		// RFC 1870 §6: a message known to be too big is not sent.
		return nil, &Error{Cmd: "MAIL FROM", Status: "5.3.4",
			Err: fmt.Errorf("message size %d exceeds size limit %d of server", env.Size, lim)}
	}
	mail := "MAIL FROM:<" + env.From + ">"
	if _, ok := c.ext["SIZE"]; ok && env.Size > 0 {
		mail += " SIZE=" + strconv.FormatInt(env.Size, 10)
	}
	_, eightBitMIME := c.ext["8BITMIME"]
	if env.EightBit && eightBitMIME {
		mail += " BODY=8BITMIME"
	}
	if utf8 && (env.SMTPUTF8 || env.RequireSMTPUTF8) {
		mail += " SMTPUTF8"
	}
	if err := checkLine(mail); err != nil {
		return nil, &Error{Cmd: "MAIL FROM", Status: "5.1.7", Err: err}
	}
	rcpts := make([]string, len(env.To))
	for i, to := range env.To {
		rcpts[i] = "RCPT TO:<" + to + ">"
		if err := checkLine(rcpts[i]); err != nil {
			return nil, &Error{Cmd: "RCPT TO", Status: "5.1.3", Err: err}
		}
	}
	c.Transactions++
	c.cmd(t.Mail, mail)

	res := make([]RcptResult, len(env.To))
	// closing ends the transaction when the server said 421 (RFC 5321
	// §3.8) and closes: every recipient not refused already gets that
	// reply, and nothing more is read.
	closing := func(r *Reply, cmd string) []RcptResult {
		for i := range res {
			if res[i].Reply == nil || res[i].Reply.Positive() {
				res[i] = RcptResult{Reply: r, Cmd: cmd}
			}
		}
		return res
	}
	_, pipelining := c.ext["PIPELINING"]
	if pipelining {
		// RFC 2920 §3.1: MAIL, RCPT and DATA go in one group; DATA is the
		// last command of it.
		for _, r := range rcpts {
			c.cmd(t.Rcpt, r)
		}
		c.cmd(t.DataInit, "DATA")
	}
	if err := c.flush("MAIL FROM"); err != nil {
		return nil, err
	}
	mailRep, err := c.read("MAIL FROM", t.Mail)
	if err != nil {
		return nil, err
	}
	if !mailRep.Positive() {
		closing(mailRep, "MAIL FROM")
		if c.broken || !pipelining {
			return res, nil
		}
	}
	var accepted []int
	for i, r := range rcpts {
		if !pipelining {
			c.cmd(t.Rcpt, r)
			if err := c.flush("RCPT TO"); err != nil {
				return nil, err
			}
		}
		rep, err := c.read("RCPT TO", t.Rcpt)
		if err != nil {
			return nil, err
		}
		if c.broken {
			return closing(rep, "RCPT TO"), nil
		}
		if mailRep.Positive() {
			res[i] = RcptResult{Reply: rep, Cmd: "RCPT TO"}
			if rep.Positive() {
				accepted = append(accepted, i)
			}
		}
	}
	if !pipelining && len(accepted) == 0 {
		return res, nil
	}
	if !pipelining {
		c.cmd(t.DataInit, "DATA")
		if err := c.flush("DATA"); err != nil {
			return nil, err
		}
	}
	dataRep, err := c.read("DATA", t.DataInit)
	if err != nil {
		return nil, err
	}
	if dataRep.Code != 354 {
		for _, i := range accepted {
			res[i] = RcptResult{Reply: dataRep, Cmd: "DATA"}
		}
		return res, nil
	}
	if len(accepted) == 0 {
		// A pipelined DATA was accepted although no recipient was: end
		// the empty message at once (RFC 2920 §3.1) and ignore its reply.
		c.dw.timeout = t.DataXfer
		c.bw.WriteString(".\r\n")
		if err := c.flush("end of DATA"); err != nil {
			return nil, err
		}
		if _, err := c.read("end of DATA", t.DataDone); err != nil {
			return nil, err
		}
		return res, nil
	}

	c.dw.timeout = t.DataXfer
	src := &readErr{r: content}
	dw := newDataWriter(c.bw)
	if env.EightBit && !eightBitMIME {
		err = Downgrade(dw, src)
	} else {
		_, err = io.Copy(dw, src)
	}
	if err == nil {
		err = dw.Close()
	}
	if src.err != nil {
		// The content could not be read: the message must not be ended
		// with ".", or the server would deliver it cut short.
		c.Close()
		return nil, &Error{Cmd: "message body", Status: "4.3.0", Err: fmt.Errorf("local data error: %v", src.err)}
	}
	if err != nil {
		c.broken = true
		return nil, &Error{Cmd: "message body", Err: ioErr(err)}
	}
	if err := c.flush("end of DATA"); err != nil {
		return nil, err
	}
	final, err := c.read("end of DATA", t.DataDone)
	if err != nil {
		return nil, err
	}
	for _, i := range accepted {
		res[i] = RcptResult{Reply: final, Cmd: "end of DATA"}
	}
	return res, nil
}

// readErr remembers an error of the content reader, to tell it from an
// error writing to the server.
type readErr struct {
	r   io.Reader
	err error
}

func (r *readErr) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}
