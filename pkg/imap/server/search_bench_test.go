package server

import (
	"bufio"
	"fmt"
	"io"
	"math/rand"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/pkg/imap/memstore"
)

// benchWords is the vocabulary of the generated bodies.
var benchWords = strings.Fields(`the of and to in is was that for it with as his on be at by
this had not are but from or have an they which one you were her all she there would
their we him been has when who will more no if out so said what up its about into than
them can only other new some could time these two may then do first any my now such like
our over man me even most made after also did many before must through back years where
much your way well down should because each just those people Mr how too little state
good very make world still own see men work long get here between both life being under
never day same another know while last might us great old year off come since against go
came right used take three meeting report invoice schedule quarterly budget project Monday
Tuesday review draft attached please regards thanks customer order shipment delivery`)

// benchMessage builds a plausible message of a few KB: a header with
// Received and DKIM lines, and one of a plain, quoted-printable Latin-1,
// multipart/alternative or multipart/mixed body with an attachment. When
// needle is set it goes into the subject or the text.
func benchMessage(r *rand.Rand, i int, needle string) string {
	para := func(n int) string {
		var b strings.Builder
		col := 0
		for j := 0; j < n; j++ {
			w := benchWords[r.Intn(len(benchWords))]
			if col+len(w) > 72 {
				b.WriteString("\r\n")
				col = 0
			} else if j > 0 {
				b.WriteByte(' ')
				col++
			}
			b.WriteString(w)
			col += len(w)
		}
		b.WriteString("\r\n")
		return b.String()
	}
	subject := "Re: " + benchWords[r.Intn(len(benchWords))] + " " + benchWords[r.Intn(len(benchWords))]
	where := -1
	if needle != "" {
		where = i % 3
		if where == 0 {
			subject += " " + needle
		}
	}
	text := para(300 + r.Intn(500))
	switch where {
	case 1:
		text += "See you in " + needle + " next week.\r\n"
	case 2:
		text = needle + " " + text
	}
	var h strings.Builder
	for k := 0; k < 3; k++ {
		fmt.Fprintf(&h, "Received: from mx%d.example.net (mx%d.example.net [192.0.2.%d])\r\n\tby mail.example.test (Posthorn) with ESMTPS id %08x\r\n\tfor <alice@example.test>; Mon, 1 Jan 2024 10:%02d:00 +0000\r\n", k, k, r.Intn(250), r.Uint32(), k)
	}
	fmt.Fprintf(&h, "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.net; s=sel;\r\n\th=from:to:subject:date:message-id; bh=%016x=;\r\n\tb=%032x%032x\r\n", r.Uint64(), r.Uint64(), r.Uint64())
	fmt.Fprintf(&h, "From: Sender %d <sender%d@example.net>\r\nTo: Alice <alice@example.test>\r\nSubject: %s\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <%d.%x@example.net>\r\nMIME-Version: 1.0\r\nX-Mailer: Bench 1.0\r\n", i%97, i%97, subject, i, r.Uint32())
	switch k := i % 20; {
	case k < 14:
		h.WriteString("Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n")
		h.WriteString(text)
	case k < 16:
		h.WriteString("Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
		h.WriteString(strings.ReplaceAll(text, "e ", "=E9 "))
	case k < 19:
		h.WriteString("Content-Type: multipart/alternative; boundary=\"alt-b\"\r\n\r\n--alt-b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
		h.WriteString(text)
		h.WriteString("--alt-b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>")
		h.WriteString(strings.ReplaceAll(text, "\r\n", "<br>\r\n"))
		h.WriteString("</p></body></html>\r\n--alt-b--\r\n")
	default:
		h.WriteString("Content-Type: multipart/mixed; boundary=\"mix-b\"\r\n\r\nThis is a multi-part message in MIME format.\r\n--mix-b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
		h.WriteString(text)
		h.WriteString("--mix-b\r\nContent-Type: application/pdf; name=\"doc.pdf\"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"doc.pdf\"\r\n\r\n")
		for l := 0; l < 40; l++ {
			for c := 0; c < 76; c++ {
				h.WriteByte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[r.Intn(64)])
			}
			h.WriteString("\r\n")
		}
		h.WriteString("--mix-b--\r\n")
	}
	return h.String()
}

// benchSearchServer starts a server over an in-memory mailbox of n
// generated messages, one in 1000 holding "Zanzibar", and returns a
// logged-in client with INBOX selected. With content the messages
// implement imap.MessageContent.
func benchSearchServer(b *testing.B, n int, content bool) (send func(string) []string) {
	be := memstore.New()
	u := be.AddUser("alice", "secret")
	cb := &contentBackend{Backend: be, msgs: map[uint32][]byte{}}
	r := rand.New(rand.NewSource(1))
	for i := 0; i < n; i++ {
		needle := ""
		if i%1000 == 500 {
			needle = "Zanzibar"
		}
		m := []byte(benchMessage(r, i, needle))
		cb.msgs[u.Deliver("INBOX", m)] = m
	}
	cfg := Config{Backend: be, AuthFailureDelay: -1, Log: quietLog()}
	if content {
		cfg.Backend = cb
	}
	srv := New(cfg)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(l)
	b.Cleanup(func() { srv.Close() })
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	br := bufio.NewReader(c)
	if _, err := br.ReadString('\n'); err != nil {
		b.Fatal(err)
	}
	send = func(line string) []string {
		c.SetDeadline(time.Now().Add(5 * time.Minute))
		tag, _, _ := strings.Cut(line, " ")
		if _, err := io.WriteString(c, line+"\r\n"); err != nil {
			b.Fatal(err)
		}
		var out []string
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				b.Fatal(err)
			}
			out = append(out, l)
			if strings.HasPrefix(l, tag+" ") {
				if !strings.HasPrefix(l, tag+" OK") {
					b.Fatalf("%s: %q", line, out)
				}
				return out
			}
		}
	}
	send("l LOGIN alice secret")
	send("s SELECT INBOX")
	return send
}

// BenchmarkSearchText is SEARCH TEXT (and BODY, and a non-ASCII TEXT)
// over a few thousand messages of a few KB, warm: the structures are
// parsed by a first search before the timer starts. The Reader runs read
// the messages through Message.Reader, the Content ones get them whole
// (imap.MessageContent).
func BenchmarkSearchText(b *testing.B) {
	const n = 3000
	for _, content := range []bool{false, true} {
		send := benchSearchServer(b, n, content)
		via := "Reader"
		if content {
			via = "Content"
		}
		for _, bc := range []struct{ name, cmd, want string }{
			{"TEXT", "a SEARCH TEXT zanzibar", "* SEARCH 501 1501 2501\r\n"},
			{"BODY", "a SEARCH BODY zanzibar", "* SEARCH 501 2501\r\n"},
			{"TEXTUTF8", "a SEARCH CHARSET UTF-8 TEXT {5}\r\nzänz", "* SEARCH\r\n"},
		} {
			b.Run(via+"/"+bc.name, func(b *testing.B) {
				if out := send(bc.cmd); !strings.Contains(strings.Join(out, ""), bc.want) {
					b.Fatalf("%q", out)
				}
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					send(bc.cmd)
				}
			})
		}
	}
}
