package imapstore

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/posthorn/posthorn/pkg/imap"
	"github.com/posthorn/posthorn/pkg/imap/server"
	"github.com/posthorn/posthorn/pkg/mailbox"
	"github.com/posthorn/posthorn/pkg/maildir"
	"github.com/posthorn/posthorn/pkg/maillog"
)

// benchMessages is the size of the Maildir the FETCH benchmarks build;
// POSTHORN_BENCH_MESSAGES overrides it.
func benchMessages() int {
	if n, err := strconv.Atoi(os.Getenv("POSTHORN_BENCH_MESSAGES")); err == nil && n > 0 {
		return n
	}
	return 10000
}

var benchNames = []string{"Alice Example", "Bob Builder", "Carol =?UTF-8?Q?M=C3=BCller?=", "Dave", "\"Eve, the auditor\"",
	"Frank O'Connor", "Grace Hopper", "=?ISO-8859-1?B?SvxyZ2Vu?= Schmidt", "Heidi", "Ivan Petrov"}
var benchDomains = []string{"example.com", "example.org", "mail.example.net", "lists.example.io", "corp.example"}
var benchWords = strings.Fields(`the quick brown fox jumps over lazy dog meeting report quarterly budget
	review draft please find attached invoice schedule release notes server outage update thanks regards
	tomorrow agenda minutes project status deadline contract proposal feedback question answer`)

func benchAddr(r *rand.Rand) string {
	n := benchNames[r.IntN(len(benchNames))]
	local := strings.ToLower(strings.Fields(strings.Trim(n, "\"=?"))[0])
	local = strings.Map(func(c rune) rune {
		if c >= 'a' && c <= 'z' {
			return c
		}
		return -1
	}, local)
	if local == "" {
		local = "user"
	}
	return n + " <" + local + strconv.Itoa(r.IntN(50)) + "@" + benchDomains[r.IntN(len(benchDomains))] + ">"
}

func benchText(r *rand.Rand, n int) string {
	var b strings.Builder
	col := 0
	for b.Len() < n {
		w := benchWords[r.IntN(len(benchWords))]
		if col+len(w) > 72 {
			b.WriteString("\n")
			col = 0
		} else if col > 0 {
			b.WriteString(" ")
			col++
		}
		b.WriteString(w)
		col += len(w)
	}
	b.WriteString("\n")
	return b.String()
}

func benchBase64(r *rand.Rand, n int) string {
	const alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteByte(alpha[r.IntN(64)])
		if i%76 == 75 {
			b.WriteByte('\n')
		}
	}
	b.WriteString("\n")
	return b.String()
}

// benchMessage makes the i-th message of a realistic mailbox: relay
// headers, several recipients, encoded words, and a mix of plain text,
// alternative text/HTML, attachments and forwarded messages.
func benchMessage(r *rand.Rand, i int) string {
	var h strings.Builder
	for k := 0; k < 2+r.IntN(3); k++ {
		fmt.Fprintf(&h, "Received: from mx%d.%s (mx%d.%s [192.0.2.%d])\n\tby mail.example.com (Postfix) with ESMTPS id %X\n\tfor <alice@example.com>; Mon, 3 Jun 2024 10:%02d:%02d +0200\n",
			k, benchDomains[r.IntN(len(benchDomains))], k, benchDomains[r.IntN(len(benchDomains))], r.IntN(250), r.Uint32(), r.IntN(60), r.IntN(60))
	}
	fmt.Fprintf(&h, "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=sel;\n\th=from:to:subject:date; bh=%s;\n\tb=%s", benchBase64(r, 44), benchBase64(r, 300))
	fmt.Fprintf(&h, "Date: Mon, %d Jun 2024 %02d:%02d:%02d +0200\n", 1+i%28, r.IntN(24), r.IntN(60), r.IntN(60))
	fmt.Fprintf(&h, "From: %s\n", benchAddr(r))
	to := []string{}
	for k := 0; k < 1+r.IntN(4); k++ {
		to = append(to, benchAddr(r))
	}
	fmt.Fprintf(&h, "To: %s\n", strings.Join(to, ",\n "))
	if r.IntN(3) == 0 {
		fmt.Fprintf(&h, "Cc: %s, %s\n", benchAddr(r), benchAddr(r))
	}
	subj := benchText(r, 20+r.IntN(50))
	subj = strings.ReplaceAll(strings.TrimSpace(subj), "\n", " ")
	switch r.IntN(4) {
	case 0:
		subj = "Re: " + subj
	case 1:
		subj = "=?UTF-8?Q?" + strings.ReplaceAll(subj, " ", "_") + "_=E2=9C=93?="
	}
	fmt.Fprintf(&h, "Subject: %s\n", subj)
	fmt.Fprintf(&h, "Message-ID: <%d.%x@%s>\n", i, r.Uint64(), benchDomains[r.IntN(len(benchDomains))])
	if r.IntN(2) == 0 {
		fmt.Fprintf(&h, "In-Reply-To: <%d.%x@example.org>\nReferences: <%d.%x@example.org>\n", i-1, r.Uint64(), i-2, r.Uint64())
	}
	h.WriteString("MIME-Version: 1.0\n")
	switch k := r.IntN(10); {
	case k < 4:
		h.WriteString("Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n")
		h.WriteString(benchText(r, 500+r.IntN(6000)))
	case k < 7:
		h.WriteString("Content-Type: multipart/alternative; boundary=\"alt-b\"\n\nThis is a multi-part message in MIME format.\n")
		h.WriteString("--alt-b\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n")
		txt := benchText(r, 500+r.IntN(3000))
		h.WriteString(txt)
		h.WriteString("--alt-b\nContent-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n<html><body><p>\n")
		h.WriteString(txt)
		h.WriteString("</p></body></html>\n--alt-b--\n")
	case k < 9:
		h.WriteString("Content-Type: multipart/mixed; boundary=\"mix-b\"\n\n")
		h.WriteString("--mix-b\nContent-Type: text/plain; charset=us-ascii\n\n")
		h.WriteString(benchText(r, 200+r.IntN(1500)))
		fmt.Fprintf(&h, "--mix-b\nContent-Type: application/pdf; name=\"report-%d.pdf\"\nContent-Disposition: attachment; filename=\"report-%d.pdf\"\nContent-Transfer-Encoding: base64\n\n", i, i)
		h.WriteString(benchBase64(r, 4000+r.IntN(40000)))
		h.WriteString("--mix-b--\n")
	default:
		h.WriteString("Content-Type: multipart/mixed; boundary=\"fwd-b\"\n\n")
		h.WriteString("--fwd-b\nContent-Type: text/plain\n\nForwarded message below.\n")
		h.WriteString("--fwd-b\nContent-Type: message/rfc822\n\n")
		fmt.Fprintf(&h, "From: %s\nTo: %s\nSubject: original %d\nDate: Sun, 2 Jun 2024 09:00:00 +0000\nMessage-ID: <orig.%d@example.net>\nContent-Type: text/plain\n\n", benchAddr(r), benchAddr(r), i, i)
		h.WriteString(benchText(r, 300+r.IntN(2000)))
		h.WriteString("--fwd-b--\n")
	}
	return h.String()
}

// buildBenchMaildir writes n messages straight into cur/ (LF line ends,
// names with S= and W= as delivery writes them) and returns the root.
func buildBenchMaildir(b *testing.B, n int) string {
	root := filepath.Join(b.TempDir(), "Maildir")
	st, err := mailbox.OpenStore(root, mailbox.Options{})
	if err != nil {
		b.Fatal(err)
	}
	st.Close()
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < n; i++ {
		msg := benchMessage(r, i)
		lines := int64(strings.Count(msg, "\n"))
		name := maildir.UniqueBase("bench.example") + ",S=" + strconv.Itoa(len(msg)) + ",W=" + strconv.FormatInt(int64(len(msg))+lines, 10) + ":2,S"
		if err := os.WriteFile(filepath.Join(root, "cur", name), []byte(msg), 0600); err != nil {
			b.Fatal(err)
		}
	}
	return root
}

// benchClient is a minimal IMAP client that counts responses.
type benchClient struct {
	c   net.Conn
	r   *bufio.Reader
	tag int
}

func (cl *benchClient) do(b *testing.B, cmd string) int {
	cl.tag++
	tag := "b" + strconv.Itoa(cl.tag) + " "
	if _, err := io.WriteString(cl.c, tag+cmd+"\r\n"); err != nil {
		b.Fatal(err)
	}
	n := 0
	for {
		l, err := cl.r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			b.Fatal(err)
		}
		if strings.HasPrefix(string(l), tag) {
			if !strings.HasPrefix(string(l[len(tag):]), "OK") {
				b.Fatalf("%s: %s", cmd, l)
			}
			return n
		}
		if strings.HasPrefix(string(l), "* ") && strings.Contains(string(l), " FETCH (") {
			n++
		}
	}
}

// benchServer serves the Maildir at root with the engine on loopback and
// returns its store and a logged-in client.
func benchServer(b *testing.B, root string) (*mailbox.Store, *benchClient) {
	st, err := mailbox.OpenStore(root, mailbox.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	lg := maillog.New("posthorn", "imapstore-bench", "stderr")
	lg.SetOutput(io.Discard)
	srv := server.New(server.Config{Backend: backend{st}, AuthFailureDelay: -1, Log: lg})
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
	cl := &benchClient{c: c, r: bufio.NewReaderSize(c, 64<<10)}
	if _, err := cl.r.ReadString('\n'); err != nil {
		b.Fatal(err)
	}
	cl.do(b, "LOGIN alice secret")
	return st, cl
}

// BenchmarkFetchWarm times FETCH 1:* of ENVELOPE and BODYSTRUCTURE through
// the engine on a large Maildir whose cache is filled (the first FETCH,
// untimed, fills it), and the store alone serving ENVELOPE.
func BenchmarkFetchWarm(b *testing.B) {
	n := benchMessages()
	root := buildBenchMaildir(b, n)
	st, cl := benchServer(b, root)
	cl.do(b, "EXAMINE INBOX")
	if got := cl.do(b, "FETCH 1:* (ENVELOPE BODYSTRUCTURE)"); got != n {
		b.Fatalf("%d FETCH responses, want %d", got, n)
	}
	for _, item := range []string{"ENVELOPE", "BODYSTRUCTURE"} {
		b.Run(item, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if got := cl.do(b, "FETCH 1:* "+item); got != n {
					b.Fatalf("%d FETCH responses, want %d", got, n)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/msg")
		})
	}
	// The store alone: what the engine asks for ENVELOPE.
	b.Run("store-ENVELOPE", func(b *testing.B) {
		u := New("alice", st, nil)
		mb, err := u.Open(context.Background(), "INBOX", true)
		if err != nil {
			b.Fatal(err)
		}
		defer mb.Close()
		all := imap.UIDSet{}.AddRange(1, uint32(n))
		b.ReportAllocs()
		for b.Loop() {
			total := 0
			err := mb.Fetch(context.Background(), all, func(mi *imap.MessageInfo) error {
				msg, err := mb.OpenMessage(context.Background(), mi.UID)
				if err != nil {
					return err
				}
				defer msg.Close()
				env, err := benchEnvelope(msg)
				total += len(env)
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
			if total == 0 {
				b.Fatal("no envelopes")
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/msg")
	})
}

// benchEnvelope gets the ENVELOPE text the way the engine does: the text
// when the store has it, else after Structure has parsed the message.
func benchEnvelope(msg imap.Message) (string, error) {
	st := msg.(imap.StructureText)
	if env := st.EnvelopeText(); env != "" {
		return env, nil
	}
	if _, err := msg.Structure(); err != nil {
		return "", err
	}
	return st.EnvelopeText(), nil
}

// BenchmarkSelectWarm times SELECT of a large mailbox that the process
// already has up to date: what a client's next session costs.
func BenchmarkSelectWarm(b *testing.B) {
	n := benchMessages()
	root := buildBenchMaildir(b, n)
	_, cl := benchServer(b, root)
	cl.do(b, "SELECT INBOX")
	for b.Loop() {
		cl.do(b, "SELECT INBOX")
	}
}

// BenchmarkFetchCold times FETCH 1:* ENVELOPE on a large Maildir the
// server has just indexed but never read: every message is opened,
// parsed and cached (the first session's cost).
func BenchmarkFetchCold(b *testing.B) {
	n := benchMessages()
	root := buildBenchMaildir(b, n)
	for b.Loop() {
		b.StopTimer()
		for _, f := range []string{"posthorn.cache", "posthorn.index"} {
			os.Remove(filepath.Join(root, f))
		}
		_, cl := benchServer(b, root)
		cl.do(b, "SELECT INBOX")
		b.StartTimer()
		if got := cl.do(b, "FETCH 1:* ENVELOPE"); got != n {
			b.Fatalf("%d FETCH responses, want %d", got, n)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/msg")
}
