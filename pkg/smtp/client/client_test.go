package client

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/pkg/smtp/client/smtptest"
)

func testConfig() Config {
	t := DefaultTimeouts()
	for _, d := range []*time.Duration{&t.Helo, &t.StartTLS, &t.Mail, &t.Rcpt, &t.DataInit, &t.DataXfer, &t.DataDone, &t.Rset, &t.Quit} {
		*d = 10 * time.Second
	}
	return Config{HeloName: "client.example", TLS: TLSMay, Timeouts: t}
}

func bg(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func dial(t *testing.T, addr string, cfg Config) (*Conn, error) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return New(bg(t), nc, cfg)
}

func mustDial(t *testing.T, addr string, cfg Config) *Conn {
	t.Helper()
	c, err := dial(t, addr, cfg)
	if err != nil {
		t.Fatalf("session start: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func clientErr(t *testing.T, err error) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T), want *client.Error", err, err)
	}
	return e
}

func TestPipelinedTransaction(t *testing.T) {
	got := make(chan []byte, 1)
	srv := smtptest.New(t, "127.0.0.1:0", func(c *smtptest.Conn) {
		c.Greet("PIPELINING", "SIZE 10000", "8BITMIME")
		// All of MAIL, RCPT, RCPT and DATA arrive before any reply.
		mail := c.Expect("MAIL FROM:<sender@x.example> SIZE=42 BODY=8BITMIME")
		c.Expect("RCPT TO:<a@y.example>")
		c.Expect("RCPT TO:<b@y.example>")
		c.Expect("DATA")
		if mail == "" {
			return
		}
		c.Send("250 2.1.0 Ok", "250 2.1.5 Ok", "550 5.1.1 <b@y.example>: unknown", "354 go ahead")
		got <- c.Data()
		c.Send("250 2.0.0 Ok: queued as 123")
		c.Expect("QUIT")
	})
	conn := mustDial(t, srv.Addr, testConfig())
	res, err := conn.Send(bg(t), &Envelope{From: "sender@x.example", To: []string{"a@y.example", "b@y.example"},
		Size: 42, EightBit: true}, strings.NewReader("Subject: ü\n\n.hidden\nend"))
	if err != nil {
		t.Fatal(err)
	}
	if !res[0].Delivered() || res[0].Reply.String() != "250 2.0.0 Ok: queued as 123" {
		t.Errorf("first recipient: %+v", res[0])
	}
	if res[1].Delivered() || res[1].Cmd != "RCPT TO" || res[1].Reply.DSN() != "5.1.1" {
		t.Errorf("second recipient: %+v %v", res[1], res[1].Reply)
	}
	if d := string(<-got); d != "Subject: ü\r\n\r\n..hidden\r\nend\r\n.\r\n" {
		t.Errorf("content on the wire: %q", d)
	}
	conn.Quit()
}

func TestLockstepWithoutPipelining(t *testing.T) {
	srv := smtptest.New(t, "127.0.0.1:0", func(c *smtptest.Conn) {
		c.Greet("SIZE")
		for _, want := range []string{"MAIL FROM:<> SIZE=9", "RCPT TO:<a@y.example>", "DATA"} {
			c.Expect(want)
			// Nothing more may have been sent before our reply.
			if n := c.R.Buffered(); n != 0 {
				t.Errorf("client sent %d octets ahead after %s without PIPELINING", n, want)
			}
			if want == "DATA" {
				c.Send("354 go")
			} else {
				c.Send("250 Ok")
			}
		}
		c.Data()
		c.Send("250 Ok")
	})
	conn := mustDial(t, srv.Addr, testConfig())
	res, err := conn.Send(bg(t), &Envelope{To: []string{"a@y.example"}, Size: 9, EightBit: true}, strings.NewReader("x\n"))
	if err != nil || !res[0].Delivered() {
		t.Fatalf("%v %v", res, err)
	}
	// No BODY=8BITMIME without the extension; the content is not MIME, so
	// it is sent as it is.
}

func TestHELOFallback(t *testing.T) {
	srv := smtptest.New(t, "127.0.0.1:0", func(c *smtptest.Conn) {
		c.Send("220 old.example SMTP")
		c.Expect("EHLO client.example")
		c.Send("502 5.5.1 Command not implemented")
		c.Expect("HELO client.example")
		c.Send("250 old.example")
		c.Expect("MAIL FROM:<s@x.example>")
		c.Send("250 Ok")
		c.Expect("RCPT TO:<a@y.example>")
		c.Send("451 4.3.0 try later")
	})
	conn := mustDial(t, srv.Addr, testConfig())
	res, err := conn.Send(bg(t), &Envelope{From: "s@x.example", To: []string{"a@y.example"}, Size: 100}, strings.NewReader("x\n"))
	if err != nil || res[0].Reply.Code != 451 || res[0].Cmd != "RCPT TO" {
		t.Fatalf("%+v %v", res, err)
	}
}

func TestHandshakeRefusals(t *testing.T) {
	for _, c := range []struct {
		name   string
		script func(c *smtptest.Conn)
		cmd    string
		code   int
		temp   bool
	}{
		{"greeting 554", func(c *smtptest.Conn) { c.Send("554 5.7.1 go away") }, "greeting", 554, false},
		{"greeting 421", func(c *smtptest.Conn) { c.Send("421 4.3.2 busy") }, "greeting", 421, true},
		{"EHLO 421", func(c *smtptest.Conn) {
			c.Send("220 x")
			c.Expect("EHLO")
			c.Send("421 4.7.0 later")
		}, "EHLO", 421, true},
		{"HELO 550", func(c *smtptest.Conn) {
			c.Send("220 x")
			c.Expect("EHLO")
			c.Send("500 no")
			c.Expect("HELO")
			c.Send("550 5.7.1 not you")
		}, "HELO", 550, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := smtptest.New(t, "127.0.0.1:0", c.script)
			_, err := dial(t, srv.Addr, testConfig())
			e := clientErr(t, err)
			if e.Cmd != c.cmd || e.Reply == nil || e.Reply.Code != c.code || e.Temporary() != c.temp {
				t.Fatalf("%+v", e)
			}
		})
	}
}

func TestRcptResultsAndDataRefusal(t *testing.T) {
	srv := smtptest.New(t, "127.0.0.1:0", func(c *smtptest.Conn) {
		c.Greet("PIPELINING")
		c.Expect("MAIL")
		c.Expect("RCPT")
		c.Expect("RCPT")
		c.Expect("RCPT")
		c.Expect("DATA")
		c.Send("250 Ok", "550 5.1.1 no", "450 4.2.1 busy", "250 Ok", "554 5.5.1 no thanks")
	})
	conn := mustDial(t, srv.Addr, testConfig())
	res, err := conn.Send(bg(t), &Envelope{From: "s@x", To: []string{"a@y", "b@y", "c@y"}}, strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"RCPT TO 550", "RCPT TO 450", "DATA 554"}
	for i, r := range res {
		if got := r.Cmd + " " + strings.Fields(r.Reply.String())[0]; got != want[i] {
			t.Errorf("recipient %d: %s, want %s", i, got, want[i])
		}
	}
}

func TestMailRefusedWhilePipelining(t *testing.T) {
	dot := make(chan string, 1)
	srv := smtptest.New(t, "127.0.0.1:0", func(c *smtptest.Conn) {
		c.Greet("PIPELINING")
		c.Expect("MAIL")
		c.Expect("RCPT")
		c.Expect("DATA")
		// A broken server that accepts DATA after refusing everything: the
		// client must end the empty message at once (RFC 2920 §3.1).
		c.Send("553 5.1.8 bad sender", "503 5.5.1 need MAIL", "354 go")
		dot <- string(c.Data())
		c.Send("554 no valid recipients")
	})
	conn := mustDial(t, srv.Addr, testConfig())
	res, err := conn.Send(bg(t), &Envelope{From: "s@x", To: []string{"a@y"}}, strings.NewReader("secret content\n"))
	if err != nil || res[0].Cmd != "MAIL FROM" || res[0].Reply.Code != 553 {
		t.Fatalf("%+v %v", res, err)
	}
	if d := <-dot; d != ".\r\n" {
		t.Fatalf("sent %q after a 354 without recipients", d)
	}
}

func TestSizeLimitAndSMTPUTF8RefusedBeforeSending(t *testing.T) {
	next := make(chan string, 4)
	srv := smtptest.New(t, "127.0.0.1:0", func(c *smtptest.Conn) {
		c.Greet("SIZE 1000", "PIPELINING")
		for {
			l := c.Line()
			next <- l
			if l == "" || strings.HasPrefix(l, "QUIT") {
				return
			}
			c.Send("250 Ok")
		}
	})
	conn := mustDial(t, srv.Addr, testConfig())
	_, err := conn.Send(bg(t), &Envelope{From: "s@x", To: []string{"a@y"}, Size: 1001}, strings.NewReader("x"))
	e := clientErr(t, err)
	if e.Status != "5.3.4" || e.Temporary() || !strings.Contains(e.Error(), "exceeds size limit 1000") {
		t.Fatalf("%v %s", e, e.Status)
	}
	_, err = conn.Send(bg(t), &Envelope{From: "s@x", To: []string{"ü@y"}, RequireSMTPUTF8: true}, strings.NewReader("x"))
	e = clientErr(t, err)
	if e.DSN() != "5.6.7" || e.Temporary() || conn.Broken() {
		t.Fatalf("%v %s", e, e.DSN())
	}
	conn.Quit()
	if l := <-next; !strings.HasPrefix(l, "QUIT") {
		t.Fatalf("server saw %q before QUIT", l)
	}
}

func TestSMTPUTF8Requested(t *testing.T) {
	srv := smtptest.New(t, "127.0.0.1:0", func(c *smtptest.Conn) {
		c.Greet("SMTPUTF8", "8BITMIME")
		c.Expect("MAIL FROM:<ü@x.example> BODY=8BITMIME SMTPUTF8")
		c.Send("250 Ok")
		c.Expect("RCPT TO:<b@y>")
		c.Send("250 Ok")
		c.Expect("DATA")
		c.Send("354 go")
		c.Data()
		c.Send("250 Ok")
	})
	conn := mustDial(t, srv.Addr, testConfig())
	res, err := conn.Send(bg(t), &Envelope{From: "ü@x.example", To: []string{"b@y"}, EightBit: true, RequireSMTPUTF8: true},
		strings.NewReader("Subject: ü\n\nü\n"))
	if err != nil || !res[0].Delivered() {
		t.Fatalf("%+v %v", res, err)
	}
}

func TestDowngradeForServerWithout8BITMIME(t *testing.T) {
	got := make(chan []byte, 1)
	srv2 := smtptest.New(t, "127.0.0.1:0", func(c *smtptest.Conn) {
		c.Greet("SIZE")
		if l := c.Expect("MAIL FROM:<s@x>"); strings.Contains(l, "BODY=") {
			t.Errorf("BODY= sent to a server without 8BITMIME: %q", l)
		}
		c.Send("250 Ok")
		c.Expect("RCPT")
		c.Send("250 Ok")
		c.Expect("DATA")
		c.Send("354 go")
		got <- c.Data()
		c.Send("250 Ok")
	})
	conn := mustDial(t, srv2.Addr, testConfig())
	msg := "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nGrüße\n"
	res, err := conn.Send(bg(t), &Envelope{From: "s@x", To: []string{"a@y"}, EightBit: true}, strings.NewReader(msg))
	if err != nil || !res[0].Delivered() {
		t.Fatalf("%+v %v", res, err)
	}
	want := "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nGr=C3=BC=C3=9Fe\r\n.\r\n"
	if d := string(<-got); d != want {
		t.Fatalf("wire %q, want %q", d, want)
	}
}

func TestSTARTTLS(t *testing.T) {
	srv := smtptest.New(t, "127.0.0.1:0", func(c *smtptest.Conn) {
		c.Greet("STARTTLS", "AUTH PLAIN", "SIZE 5")
		c.Expect("STARTTLS")
		c.Send("220 2.0.0 Ready to start TLS")
		c.StartTLS()
		// RFC 3207 §4.2: a new EHLO, and what was said before is forgotten.
		c.Expect("EHLO client.example")
		c.Send("250-test.example", "250 PIPELINING")
		if l := c.Line(); l != "MAIL FROM:<s@x>" {
			t.Errorf("MAIL with parameters announced before TLS: %q", l)
		}
		c.Expect("RCPT")
		c.Expect("DATA")
		c.Send("250 Ok", "250 Ok", "354 go")
		c.Data()
		c.Send("250 Ok")
	})
	conn := mustDial(t, srv.Addr, testConfig())
	if conn.TLS() == nil {
		t.Fatal("no TLS after STARTTLS")
	}
	if _, ok := conn.Extension("AUTH"); ok || conn.SizeLimit() != 0 {
		t.Fatal("extensions from before TLS kept")
	}
	res, err := conn.Send(bg(t), &Envelope{From: "s@x", To: []string{"a@y"}, Size: 100}, strings.NewReader("x\n"))
	if err != nil || !res[0].Delivered() {
		t.Fatalf("%+v %v", res, err)
	}
}

// HOSTILE-INPUTS 9: plaintext sent with the STARTTLS reply must never be
// read as a reply inside TLS.
func TestSTARTTLSResponseInjection(t *testing.T) {
	srv := smtptest.New(t, "127.0.0.1:0", func(c *smtptest.Conn) {
		c.Greet("STARTTLS")
		c.Expect("STARTTLS")
		c.Raw("220 Go ahead\r\n250-injected\r\n250 PIPELINING\r\n")
		c.Line()
	})
	_, err := dial(t, srv.Addr, testConfig())
	e := clientErr(t, err)
	if e.Cmd != "STARTTLS" || !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "response injection") ||
		!e.Temporary() || e.TLSHandshake {
		t.Fatalf("%v", err)
	}
}

func TestSTARTTLSRefusedOrMissing(t *testing.T) {
	refuse := func(c *smtptest.Conn) {
		c.Greet("STARTTLS")
		c.Expect("STARTTLS")
		c.Send("454 4.7.0 TLS not available")
		c.Line()
	}
	// Opportunistic: go on in plaintext.
	cfg := testConfig()
	conn := mustDial(t, smtptest.New(t, "127.0.0.1:0", refuse).Addr, cfg)
	if conn.TLS() != nil {
		t.Fatal("TLS after 454")
	}
	conn.Quit()
	// Mandatory: fail, temporarily.
	cfg.TLS = TLSEncrypt
	_, err := dial(t, smtptest.New(t, "127.0.0.1:0", refuse).Addr, cfg)
	if e := clientErr(t, err); e.Reply == nil || e.Reply.Code != 454 || !e.Temporary() {
		t.Fatalf("%v", err)
	}
	_, err = dial(t, smtptest.New(t, "127.0.0.1:0", func(c *smtptest.Conn) { c.Greet("PIPELINING"); c.Line() }).Addr, cfg)
	if e := clientErr(t, err); e.DSN() != "4.7.4" || !strings.Contains(e.Error(), "TLS is required, but was not offered") {
		t.Fatalf("%v", err)
	}
	// TLS none: STARTTLS is never sent.
	cfg.TLS = TLSNone
	conn = mustDial(t, smtptest.New(t, "127.0.0.1:0", func(c *smtptest.Conn) {
		c.Greet("STARTTLS")
		c.Expect("QUIT")
	}).Addr, cfg)
	conn.Quit()
}

func TestTLSHandshakeFailure(t *testing.T) {
	srv := smtptest.New(t, "127.0.0.1:0", func(c *smtptest.Conn) {
		c.Greet("STARTTLS")
		c.Expect("STARTTLS")
		c.Send("220 go")
		c.R.ReadByte()
		c.Raw("this is not TLS\r\n")
	})
	_, err := dial(t, srv.Addr, testConfig())
	if e := clientErr(t, err); !e.TLSHandshake || !e.Temporary() {
		t.Fatalf("%v", err)
	}
}

func authServer(t *testing.T, ext string, tlsOn bool, check func(c *smtptest.Conn)) string {
	return smtptest.New(t, "127.0.0.1:0", func(c *smtptest.Conn) {
		if tlsOn {
			c.Greet("STARTTLS")
			c.Expect("STARTTLS")
			c.Send("220 go")
			c.StartTLS()
			c.Expect("EHLO")
			c.Send("250-x", "250 "+ext)
		} else {
			c.Greet(ext)
		}
		check(c)
	}).Addr
}

func TestAuth(t *testing.T) {
	cfg := testConfig()
	cfg.Username, cfg.Password = "user", "pa ss"
	plain := "AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00user\x00pa ss"))
	addr := authServer(t, "AUTH LOGIN PLAIN", true, func(c *smtptest.Conn) {
		c.Expect(plain)
		c.Send("235 2.7.0 Authentication successful")
		c.Expect("QUIT")
	})
	conn := mustDial(t, addr, cfg)
	if !conn.Authenticated() {
		t.Fatal("not authenticated")
	}
	conn.Quit()

	addr = authServer(t, "AUTH=LOGIN", true, func(c *smtptest.Conn) {
		c.Expect("AUTH LOGIN")
		c.Send("334 VXNlcm5hbWU6")
		c.Expect(base64.StdEncoding.EncodeToString([]byte("user")))
		c.Send("334 UGFzc3dvcmQ6")
		c.Expect(base64.StdEncoding.EncodeToString([]byte("pa ss")))
		c.Send("235 ok")
	})
	mustDial(t, addr, cfg)

	addr = authServer(t, "AUTH PLAIN", true, func(c *smtptest.Conn) {
		c.Expect("AUTH PLAIN")
		c.Send("535 5.7.8 Authentication credentials invalid")
	})
	_, err := dial(t, addr, cfg)
	if e := clientErr(t, err); e.Cmd != "AUTH" || e.Reply.Code != 535 {
		t.Fatalf("%v", err)
	}

	addr = authServer(t, "AUTH CRAM-MD5", true, func(c *smtptest.Conn) { c.Line() })
	_, err = dial(t, addr, cfg)
	if e := clientErr(t, err); e.Cmd != "AUTH" || !e.Temporary() || !strings.Contains(e.Error(), "no supported authentication mechanism") {
		t.Fatalf("%v", err)
	}
}

func TestAuthNeverInCleartextUnlessAllowed(t *testing.T) {
	cfg := testConfig()
	cfg.Username, cfg.Password = "user", "secret"
	saw := make(chan string, 1)
	addr := authServer(t, "AUTH PLAIN", false, func(c *smtptest.Conn) { saw <- c.Line() })
	_, err := dial(t, addr, cfg)
	if e := clientErr(t, err); e.Cmd != "AUTH" || e.DSN() != "4.7.0" || !e.Temporary() {
		t.Fatalf("%v", err)
	}
	if l := <-saw; strings.HasPrefix(l, "AUTH") {
		t.Fatalf("credentials sent without TLS: %q", l)
	}
	cfg.AllowCleartextAuth = true
	addr = authServer(t, "AUTH PLAIN", false, func(c *smtptest.Conn) {
		c.Expect("AUTH PLAIN ")
		c.Send("235 ok")
	})
	if conn := mustDial(t, addr, cfg); !conn.Authenticated() {
		t.Fatal("not authenticated")
	}
}

func TestRSETBetweenTransactions(t *testing.T) {
	srv := smtptest.New(t, "127.0.0.1:0", func(c *smtptest.Conn) {
		c.Greet()
		c.Accept(1)
		c.Expect("RSET")
		c.Send("250 Ok")
		c.Accept(1)
		// The session then dies: the next RSET finds out.
	})
	conn := mustDial(t, srv.Addr, testConfig())
	for i := 0; i < 2; i++ {
		res, err := conn.Send(bg(t), &Envelope{From: "s@x", To: []string{"a@y"}}, strings.NewReader("x"))
		if err != nil || !res[0].Delivered() {
			t.Fatalf("transaction %d: %+v %v", i, res, err)
		}
	}
	_, err := conn.Send(bg(t), &Envelope{From: "s@x", To: []string{"a@y"}}, strings.NewReader("x"))
	if e := clientErr(t, err); e.Cmd != "RSET" || !conn.Broken() {
		t.Fatalf("%v", err)
	}
}

// HOSTILE-INPUTS 58: replies no real server sends end the session with a
// temporary failure.
func TestHostileReplies(t *testing.T) {
	for _, c := range []struct {
		name  string
		reply func(c *smtptest.Conn)
	}{
		{"endless continuation", func(c *smtptest.Conn) {
			c.Raw("220-x\r\n")
			line := []byte("220-more\r\n")
			for i := 0; i < 100000; i++ {
				if _, err := c.Write(line); err != nil {
					return
				}
			}
		}},
		{"100 KB line", func(c *smtptest.Conn) { c.Raw("220 " + strings.Repeat("x", 100<<10) + "\r\n") }},
		{"no line end ever", func(c *smtptest.Conn) { c.Raw("220 " + strings.Repeat("x", 100<<10)) }},
		{"mismatched codes", func(c *smtptest.Conn) {
			c.Send("220 x")
			c.Expect("EHLO")
			c.Send("250-x", "250-PIPELINING", "550 SIZE")
		}},
		{"garbage", func(c *smtptest.Conn) { c.Raw("\x16\x03\x01\x00\x05hello\r\n") }},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := smtptest.New(t, "127.0.0.1:0", c.reply)
			_, err := dial(t, srv.Addr, testConfig())
			e := clientErr(t, err)
			if !errors.Is(err, ErrProtocol) || !e.Temporary() || e.DSN() != "4.5.0" {
				t.Fatalf("%v (dsn %s)", err, e.DSN())
			}
		})
	}
	// An enhanced code without text is a normal refusal.
	srv := smtptest.New(t, "127.0.0.1:0", func(c *smtptest.Conn) {
		c.Greet()
		c.Expect("MAIL")
		c.Send("250 Ok")
		c.Expect("RCPT")
		c.Send("550 5.7.2")
	})
	conn := mustDial(t, srv.Addr, testConfig())
	res, err := conn.Send(bg(t), &Envelope{From: "s@x", To: []string{"a@y"}}, strings.NewReader("x"))
	if err != nil || res[0].Reply.DSN() != "5.7.2" || res[0].Reply.String() != "550 5.7.2" {
		t.Fatalf("%+v %v", res, err)
	}
}

func TestTimeouts(t *testing.T) {
	short := 200 * time.Millisecond
	for _, c := range []struct {
		name   string
		script func(c *smtptest.Conn)
		set    func(*Timeouts)
		cmd    string
		stage  string
	}{
		{"greeting", func(c *smtptest.Conn) { c.Line() }, func(t *Timeouts) { t.Helo = short },
			"greeting", "receiving the initial server greeting"},
		{"EHLO", func(c *smtptest.Conn) { c.Send("220 x"); c.Line(); c.Line() }, func(t *Timeouts) { t.Helo = short },
			"EHLO", "performing the EHLO handshake"},
		{"RCPT", func(c *smtptest.Conn) {
			c.Greet()
			c.Expect("MAIL")
			c.Send("250 ok")
			c.Line()
			c.Line()
		}, func(t *Timeouts) { t.Rcpt = short }, "RCPT TO", "sending RCPT TO"},
		{"end of data", func(c *smtptest.Conn) {
			c.Greet("PIPELINING")
			c.Expect("MAIL")
			c.Expect("RCPT")
			c.Expect("DATA")
			c.Send("250 ok", "250 ok", "354 go")
			c.Data()
			c.Line()
		}, func(t *Timeouts) { t.DataDone = short }, "end of DATA", "sending end of data -- message may be sent more than once"},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := smtptest.New(t, "127.0.0.1:0", c.script)
			cfg := testConfig()
			c.set(&cfg.Timeouts)
			start := time.Now()
			conn, err := dial(t, srv.Addr, cfg)
			if err == nil {
				_, err = conn.Send(bg(t), &Envelope{From: "s@x", To: []string{"a@y"}}, strings.NewReader("x"))
				conn.Close()
			}
			e := clientErr(t, err)
			if e.Cmd != c.cmd || !IsTimeout(err) || e.Stage() != c.stage || !e.Temporary() || e.DSN() != "4.4.2" {
				t.Fatalf("%v: cmd %q stage %q", err, e.Cmd, e.Stage())
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("took %v", d)
			}
		})
	}
}

func TestContextCancelInterrupts(t *testing.T) {
	srv := smtptest.New(t, "127.0.0.1:0", func(c *smtptest.Conn) { c.Line() })
	nc, err := net.Dial("tcp", srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err = New(ctx, nc, testConfig())
	if err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("%v after %v", err, time.Since(start))
	}
}

func Test421ClosesSession(t *testing.T) {
	srv := smtptest.New(t, "127.0.0.1:0", func(c *smtptest.Conn) {
		c.Greet()
		c.Expect("MAIL")
		c.Send("421 4.7.0 closing")
	})
	conn := mustDial(t, srv.Addr, testConfig())
	res, err := conn.Send(bg(t), &Envelope{From: "s@x", To: []string{"a@y"}}, strings.NewReader("x"))
	if err != nil || res[0].Reply.Code != 421 || !conn.Broken() {
		t.Fatalf("%+v %v broken %v", res, err, conn.Broken())
	}
}

type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, errors.New("disk on fire")
	}
	n := copy(p, strings.Repeat("y", min(len(p), r.n)))
	r.n -= n
	return n, nil
}

func TestLocalReadErrorNeverEndsData(t *testing.T) {
	got := make(chan []byte, 1)
	srv := smtptest.New(t, "127.0.0.1:0", func(c *smtptest.Conn) {
		c.Greet()
		c.Expect("MAIL")
		c.Send("250 ok")
		c.Expect("RCPT")
		c.Send("250 ok")
		c.Expect("DATA")
		c.Send("354 go")
		b, _ := io.ReadAll(c.R)
		got <- b
	})
	conn := mustDial(t, srv.Addr, testConfig())
	_, err := conn.Send(bg(t), &Envelope{From: "s@x", To: []string{"a@y"}}, &failingReader{n: 100000})
	if e := clientErr(t, err); e.DSN() != "4.3.0" || !strings.Contains(e.Error(), "disk on fire") {
		t.Fatalf("%v", err)
	}
	if b := <-got; strings.HasSuffix(string(b), "\r\n.\r\n") {
		t.Fatal("a message cut short was ended with a dot")
	}
}

func TestCommandInjectionRefused(t *testing.T) {
	srv := smtptest.New(t, "127.0.0.1:0", func(c *smtptest.Conn) {
		c.Greet()
		if l := c.Line(); l != "QUIT" && l != "" {
			t.Errorf("server got %q", l)
		}
	})
	conn := mustDial(t, srv.Addr, testConfig())
	for _, env := range []*Envelope{
		{From: "a@x>\r\nRCPT TO:<victim@y", To: []string{"b@y"}},
		{From: "a@x", To: []string{"b@y>\nDATA"}},
		{From: "a@x", To: []string{"b\x00@y"}},
	} {
		_, err := conn.Send(bg(t), env, strings.NewReader("x"))
		if e := clientErr(t, err); e.Temporary() {
			t.Fatalf("%v", err)
		}
	}
	conn.Quit()
}

func TestDataTransferTimeout(t *testing.T) {
	stop := make(chan struct{})
	srv := smtptest.New(t, "127.0.0.1:0", func(c *smtptest.Conn) {
		c.Greet("PIPELINING")
		c.Expect("MAIL")
		c.Expect("RCPT")
		c.Expect("DATA")
		c.Send("250 ok", "250 ok", "354 go")
		// Stops reading: the client's writes stall once the socket
		// buffers are full.
		c.Conn.(*net.TCPConn).SetReadBuffer(4096)
		<-stop
	})
	defer close(stop)
	cfg := testConfig()
	cfg.Timeouts.DataXfer = 300 * time.Millisecond
	conn := mustDial(t, srv.Addr, cfg)
	start := time.Now()
	big := strings.Repeat(strings.Repeat("x", 76)+"\n", 400000) // 30 MB
	_, err := conn.Send(bg(t), &Envelope{From: "s@x", To: []string{"a@y"}}, strings.NewReader(big))
	e := clientErr(t, err)
	if e.Cmd != "message body" || !IsTimeout(err) || e.Stage() != "sending message body" {
		t.Fatalf("%v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("took %v", d)
	}
	conn.Close()
}

func Test421MidTransaction(t *testing.T) {
	srv := smtptest.New(t, "127.0.0.1:0", func(c *smtptest.Conn) {
		c.Greet("PIPELINING")
		c.Expect("MAIL")
		c.Expect("RCPT")
		c.Expect("RCPT")
		c.Expect("RCPT")
		c.Expect("DATA")
		c.Send("250 ok", "550 5.1.1 unknown", "250 ok", "421 4.3.2 shutting down")
	})
	conn := mustDial(t, srv.Addr, testConfig())
	res, err := conn.Send(bg(t), &Envelope{From: "s@x", To: []string{"a@y", "b@y", "c@y"}}, strings.NewReader("x"))
	if err != nil || !conn.Broken() {
		t.Fatalf("%v broken %v", err, conn.Broken())
	}
	// The refused recipient keeps its 550; the accepted one and the one
	// cut off get the 421.
	for i, want := range []string{"550", "421", "421"} {
		if res[i].Cmd != "RCPT TO" || strings.Fields(res[i].Reply.String())[0] != want {
			t.Errorf("recipient %d: %s %s", i, res[i].Cmd, res[i].Reply)
		}
	}
}
