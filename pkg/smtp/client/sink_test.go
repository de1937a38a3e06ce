package client

import (
	"strings"
	"testing"

	"github.com/posthorn/posthorn/pkg/smtp/client/smtptest"
)

// Against Postfix's smtp-sink: a server nobody here wrote.

func TestSinkDelivery(t *testing.T) {
	sink := smtptest.StartSink(t)
	conn := mustDial(t, sink.Addr, testConfig())
	if _, ok := conn.Extension("PIPELINING"); !ok {
		t.Fatal("smtp-sink announces PIPELINING")
	}
	content := "From: a@x.example\nSubject: hi\n\n.leading dot\n..two\nlast line without newline"
	for i := 0; i < 2; i++ { // the second on the same session, after RSET
		res, err := conn.Send(bg(t), &Envelope{From: "a@x.example", To: []string{"b@y.example", "c@y.example"},
			Size: 80, EightBit: true}, strings.NewReader(content))
		if err != nil || !res[0].Delivered() || !res[1].Delivered() {
			t.Fatalf("transaction %d: %+v %v", i, res, err)
		}
	}
	conn.Quit()
	msgs := sink.Messages(t)
	if len(msgs) != 2 {
		t.Fatalf("%d messages saved", len(msgs))
	}
	for _, m := range msgs {
		for _, want := range []string{"X-Mail-Args: <a@x.example> BODY=8BITMIME\n", // no SIZE= without the extension
			"X-Rcpt-Args: <b@y.example>\nX-Rcpt-Args: <c@y.example>\n", "X-Helo-Args: client.example\n",
			"\nFrom: a@x.example\nSubject: hi\n\n.leading dot\n..two\nlast line without newline\n"} {
			if !strings.Contains(m, want) {
				t.Errorf("saved message lacks %q:\n%s", want, m)
			}
		}
	}
}

func TestSinkRefusals(t *testing.T) {
	env := &Envelope{From: "a@x.example", To: []string{"b@y.example"}}
	for _, c := range []struct {
		opts []string
		cmd  string
		code int
	}{
		{[]string{"-r", "MAIL"}, "MAIL FROM", 450},
		{[]string{"-f", "RCPT"}, "RCPT TO", 500},
		{[]string{"-f", "DATA"}, "DATA", 500},
		{[]string{"-r", "."}, "end of DATA", 450},
	} {
		sink := smtptest.StartSink(t, c.opts...)
		conn := mustDial(t, sink.Addr, testConfig())
		res, err := conn.Send(bg(t), env, strings.NewReader("x\n"))
		if err != nil || res[0].Cmd != c.cmd || res[0].Reply.Code != c.code || res[0].Delivered() {
			t.Errorf("smtp-sink %v: %+v %v", c.opts, res, err)
		}
		conn.Quit()
	}
	// 421 and disconnect after EHLO.
	sink := smtptest.StartSink(t, "-Q", "EHLO")
	_, err := dial(t, sink.Addr, testConfig())
	if e := clientErr(t, err); e.Cmd != "EHLO" || e.Reply == nil || e.Reply.Code != 421 || !e.Temporary() {
		t.Fatalf("%v", err)
	}
	// Disconnect without a reply after RCPT.
	sink = smtptest.StartSink(t, "-q", "RCPT")
	conn := mustDial(t, sink.Addr, testConfig())
	_, err = conn.Send(bg(t), env, strings.NewReader("x\n"))
	if e := clientErr(t, err); !IsLost(err) || !e.Temporary() || !conn.Broken() {
		t.Fatalf("%v", err)
	}
}

func TestSinkWithoutESMTPOr8BITMIME(t *testing.T) {
	// -e: EHLO is refused, HELO it is, and no extension is used.
	sink := smtptest.StartSink(t, "-e")
	conn := mustDial(t, sink.Addr, testConfig())
	if _, ok := conn.Extension("PIPELINING"); ok {
		t.Fatal("extensions without EHLO")
	}
	res, err := conn.Send(bg(t), &Envelope{From: "a@x", To: []string{"b@y"}, Size: 10}, strings.NewReader("x\n"))
	if err != nil || !res[0].Delivered() {
		t.Fatalf("%+v %v", res, err)
	}
	conn.Quit()
	if m := sink.Messages(t); len(m) != 1 || !strings.Contains(m[0], "X-Client-Proto: SMTP\n") || !strings.Contains(m[0], "X-Mail-Args: <a@x>\n") {
		t.Fatalf("%q", m)
	}

	// -8: no 8BITMIME, so an 8bit MIME part arrives quoted-printable.
	sink = smtptest.StartSink(t, "-8")
	conn = mustDial(t, sink.Addr, testConfig())
	msg := "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nÄrger\n"
	res, err = conn.Send(bg(t), &Envelope{From: "a@x", To: []string{"b@y"}, EightBit: true}, strings.NewReader(msg))
	if err != nil || !res[0].Delivered() {
		t.Fatalf("%+v %v", res, err)
	}
	conn.Quit()
	m := sink.Messages(t)
	if len(m) != 1 || !strings.Contains(m[0], "Content-Transfer-Encoding: quoted-printable\n\n=C3=84rger\n") ||
		strings.Contains(m[0], "BODY=") {
		t.Fatalf("%q", m)
	}
}
