package server

import (
	"net/smtp"
	"strings"
	"testing"
)

// Go's own client, a real-world peer, against Serve on loopback.
func TestNetSMTPClient(t *testing.T) {
	be := newBackend()
	ts := startServer(t, testConfig(), be)
	c, err := smtp.Dial(ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.example"); err != nil {
		t.Fatal(err)
	}
	for _, ext := range []string{"PIPELINING", "SIZE", "8BITMIME", "SMTPUTF8", "CHUNKING", "ENHANCEDSTATUSCODES"} {
		if ok, _ := c.Extension(ext); !ok {
			t.Errorf("extension %s not announced", ext)
		}
	}
	if ok, param := c.Extension("SIZE"); !ok || param != "10240000" {
		t.Errorf("SIZE %q", param)
	}
	for i := 0; i < 2; i++ {
		if err := c.Mail("alice@example.org"); err != nil {
			t.Fatal(err)
		}
		if err := c.Rcpt("bob@example.test"); err != nil {
			t.Fatal(err)
		}
		if err := c.Rcpt("carol@example.test"); err != nil {
			t.Fatal(err)
		}
		w, err := c.Data()
		if err != nil {
			t.Fatal(err)
		}
		// net/smtp turns "\n" into CRLF and stuffs the dot.
		if _, err := w.Write([]byte("Subject: test\n\n.hidden dot\nbody\n")); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Rcpt("x@example.test"); err == nil || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "5.5.1 Error: need MAIL command") {
		t.Errorf("RCPT without MAIL: %v", err)
	}
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}
	if err := c.Noop(); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	msgs := be.committed()
	if len(msgs) != 2 {
		t.Fatalf("committed %d", len(msgs))
	}
	for _, m := range msgs {
		if m.content() != "Subject: test\n\n.hidden dot\nbody\n" || len(m.rcpts) != 2 {
			t.Errorf("message %q rcpts %v", m.content(), m.rcpts)
		}
		// net/smtp declares BODY=8BITMIME and SMTPUTF8 when offered.
		if m.env.Body != "8BITMIME" || !m.env.SMTPUTF8 {
			t.Errorf("envelope %+v", m.env)
		}
	}
	ts.waitLog("disconnect from unknown[127.0.0.1] ")
	if l := ts.logs.String(); !strings.Contains(l, "ehlo=1 mail=2 rcpt=4/5 data=2 rset=1 noop=1 quit=1 commands=12/13") {
		t.Errorf("log %s", l)
	}
}
