package remote

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/posthorn/posthorn/pkg/agent"
	"github.com/posthorn/posthorn/pkg/config"
	"github.com/posthorn/posthorn/pkg/daemon"
	"github.com/posthorn/posthorn/pkg/maillog"
	"github.com/posthorn/posthorn/pkg/smtp/client/smtptest"
)

const content = "From: sender@origin.test\nTo: rcpt@example.test\nSubject: test\n\nline one\n.starts with a dot\nbare CR\rhere\nend"

func TestDeliverToSmtpSink(t *testing.T) {
	sink := smtptest.StartSink(t)
	h := newHarness(t, sink.Port, nil)
	h.zone("example.test. 300 IN MX 10 mx.example.test.", "mx.example.test. 300 IN A 127.0.0.1")
	rep := h.send("rcpt@example.test", content)
	h.expect(rep, agent.Sent, "2.0.0", "250 2.0.0 Ok")
	line := h.logLine("rcpt@example.test")
	if !strings.Contains(line, fmt.Sprintf("relay=mx.example.test[127.0.0.1]:%d, ", sink.Port)) ||
		!strings.HasSuffix(line, "dsn=2.0.0, status=sent (250 2.0.0 Ok)") {
		t.Fatalf("log line %q", line)
	}
	msgs := sink.Messages(t)
	if len(msgs) != 1 {
		t.Fatalf("%d messages at the sink", len(msgs))
	}
	m := msgs[0]
	for _, want := range []string{"X-Helo-Args: posthorn.test\n", "X-Mail-Args: <sender@origin.test>\n",
		"X-Rcpt-Args: <rcpt@example.test>\n",
		"\nFrom: sender@origin.test\nTo: rcpt@example.test\nSubject: test\n\nline one\n.starts with a dot\nbare CR\nhere\nend\n"} {
		if !strings.Contains(m, want) {
			t.Errorf("message at the sink lacks %q:\n%s", want, m)
		}
	}
}

func TestConnectionReusedThenClosed(t *testing.T) {
	srv := newServer(t, "127.0.0.1:0", "PIPELINING")
	h := newHarness(t, srv.Port, nil)
	h.zone("example.test. 300 IN MX 10 mx.example.test.", "mx.example.test. 300 IN A 127.0.0.1")
	id := h.queue("s@origin.test", "Subject: x\n\nhi\n", "a@example.test", "b@example.test", "c@example.test")
	for i, r := range []string{"a@example.test", "b@example.test", "c@example.test"} {
		h.expect(h.deliver(id, r), agent.Sent, "2.0.0", fmt.Sprintf("queued as M%d", i+1))
	}
	if n := srv.Connections(); n != 1 {
		t.Fatalf("%d connections for three messages in a row", n)
	}
	if n := srv.count("RSET"); n != 2 {
		t.Fatalf("%d RSET, want one before each reuse", n)
	}
	// After the cache time the session is ended with QUIT.
	waitFor(t, "QUIT", func() bool { return srv.count("QUIT") == 1 })
	if n := h.agent.cache.idleCount(); n != 0 {
		t.Fatalf("%d sessions still cached", n)
	}
	// The next message makes a new connection.
	h.expect(h.send("d@example.test", "x\n"), agent.Sent, "2.0.0", "")
	if n := srv.Connections(); n != 2 {
		t.Fatalf("%d connections", n)
	}
}

func TestStaleCachedSessionReplaced(t *testing.T) {
	var mu sync.Mutex
	conns := 0
	srv := smtptest.New(t, "127.0.0.1:0", func(c *smtptest.Conn) {
		mu.Lock()
		conns++
		mu.Unlock()
		c.Greet()
		c.Accept(1)
		// Dies without a word after its first message.
	})
	h := newHarness(t, srv.Port, nil)
	h.zone("example.test. 300 IN A 127.0.0.1")
	h.expect(h.send("a@example.test", "x\n"), agent.Sent, "2.0.0", "")
	h.expect(h.send("b@example.test", "x\n"), agent.Sent, "2.0.0", "")
	mu.Lock()
	defer mu.Unlock()
	if conns != 2 {
		t.Fatalf("%d connections", conns)
	}
}

// Fall-over to the next MX when the first refuses connections or answers
// 421, against smtp-sink.
func TestFallOverToNextMX(t *testing.T) {
	for _, first := range []string{"closed", "421 greeting", "4xx at RCPT"} {
		t.Run(first, func(t *testing.T) {
			port := freePortOn(t, "127.0.0.1", "127.0.0.2")
			switch first {
			case "421 greeting":
				smtptest.StartSinkAt(t, at("127.0.0.2", port), "-Q", "CONNECT")
			case "4xx at RCPT":
				smtptest.StartSinkAt(t, at("127.0.0.2", port), "-r", "RCPT")
			}
			good := smtptest.StartSinkAt(t, at("127.0.0.1", port))
			h := newHarness(t, port, nil)
			h.zone("example.test. 300 IN MX 10 mx1.example.test.", "example.test. 300 IN MX 20 mx2.example.test.",
				"mx1.example.test. 300 IN A 127.0.0.2", "mx2.example.test. 300 IN A 127.0.0.1")
			rep := h.send("rcpt@example.test", content)
			h.expect(rep, agent.Sent, "2.0.0", "250 2.0.0 Ok")
			if !strings.Contains(h.logLine("rcpt@example.test"), "relay=mx2.example.test[127.0.0.1]") {
				t.Fatal(h.logLine("rcpt@example.test"))
			}
			if len(good.Messages(t)) != 1 {
				t.Fatal("not delivered to the second MX")
			}
			// The skipped host is logged with the queue ID, as Postfix does.
			want := map[string]string{
				"closed":       fmt.Sprintf(": connect to mx1.example.test[127.0.0.2]:%d: Connection refused", port),
				"421 greeting": ": host mx1.example.test[127.0.0.2] refused to talk to me: 421 4.0.0 Server closing connection",
				"4xx at RCPT":  ": host mx1.example.test[127.0.0.2] said: 450 4.3.0 Error: command failed (in reply to RCPT TO command)",
			}[first]
			if !h.logHas(want) {
				t.Fatalf("log lacks %q", want)
			}
		})
	}
}

func TestAllMXDownDeferredThenSuspended(t *testing.T) {
	port := freePortOn(t, "127.0.0.1", "127.0.0.2")
	h := newHarness(t, port, func(c *config.Config, o *Options) { o.DeadTime = time.Minute })
	h.zone("example.test. 300 IN MX 10 mx1.example.test.", "example.test. 300 IN MX 20 mx2.example.test.",
		"mx1.example.test. 300 IN A 127.0.0.2", "mx2.example.test. 300 IN A 127.0.0.1")
	rep := h.send("a@example.test", "x\n")
	h.expect(rep, agent.Deferred, "4.4.1", fmt.Sprintf("connect to mx2.example.test[127.0.0.1]:%d: Connection refused", port))
	if !strings.Contains(h.logLine("a@example.test"), "relay=none, ") {
		t.Fatal(h.logLine("a@example.test"))
	}
	// The next recipient is not tried at all for a while.
	srv := newServer(t, at("127.0.0.1", port))
	rep = h.send("b@example.test", "x\n")
	h.expect(rep, agent.Deferred, "4.4.1", "delivery temporarily suspended: connect to mx2.example.test[127.0.0.1]")
	if srv.Connections() != 0 {
		t.Fatal("a suspended destination was tried")
	}
}

func TestRepliesMapped(t *testing.T) {
	for _, c := range []struct {
		opts           []string
		status, dsn    string
		text           string
		next, nextSent bool // a second MX is tried / gets the message
	}{
		{[]string{"-r", "RCPT"}, agent.Deferred, "4.3.0", "said: 450 4.3.0 Error: command failed (in reply to RCPT TO command)", true, true},
		{[]string{"-f", "RCPT"}, agent.Bounced, "5.3.0", "said: 500 5.3.0 Error: command failed (in reply to RCPT TO command)", false, false},
		{[]string{"-f", "MAIL"}, agent.Bounced, "5.3.0", "(in reply to MAIL FROM command)", false, false},
		{[]string{"-r", "DATA"}, agent.Deferred, "4.3.0", "(in reply to DATA command)", true, true},
		{[]string{"-f", "."}, agent.Bounced, "5.3.0", "(in reply to end of DATA command)", false, false},
		{[]string{"-B", "550 no such user here", "-f", "RCPT"}, agent.Bounced, "5.0.0", "said: 550 no such user here (in reply to RCPT TO command)", false, false},
		{[]string{"-q", "RCPT"}, agent.Deferred, "4.4.2", "lost connection with mx1.example.test[127.0.0.1] while sending RCPT TO", true, true},
	} {
		t.Run(strings.Join(c.opts, " "), func(t *testing.T) {
			// Alone: the reply decides.
			sink := smtptest.StartSink(t, c.opts...)
			h := newHarness(t, sink.Port, nil)
			h.zone("example.test. 300 IN MX 10 mx1.example.test.", "mx1.example.test. 300 IN A 127.0.0.1")
			h.expect(h.send("rcpt@example.test", content), c.status, c.dsn, c.text)

			// With a second MX: only temporary trouble moves on.
			port := freePortOn(t, "127.0.0.1", "127.0.0.2")
			smtptest.StartSinkAt(t, at("127.0.0.1", port), c.opts...)
			second := newServer(t, at("127.0.0.2", port))
			h = newHarness(t, port, nil)
			h.zone("example.test. 300 IN MX 10 mx1.example.test.", "example.test. 300 IN MX 20 mx2.example.test.",
				"mx1.example.test. 300 IN A 127.0.0.1", "mx2.example.test. 300 IN A 127.0.0.2")
			rep := h.send("rcpt@example.test", content)
			if (second.Connections() > 0) != c.next || (rep.Status == agent.Sent) != c.nextSent {
				t.Fatalf("second MX tried %v, result %+v", second.Connections() > 0, rep)
			}
		})
	}
}

func TestDNSFailures(t *testing.T) {
	srv := newServer(t, "127.0.0.1:0")
	h := newHarness(t, srv.Port, nil)
	h.zone("null.test. 300 IN MX 0 .", "null.test. 300 IN A 127.0.0.1",
		"noaddr.test. 300 IN MX 10 gone.noaddr.test.",
		"loop.test. 300 IN MX 10 a.loop.test.", "a.loop.test. 300 IN CNAME b.loop.test.", "b.loop.test. 300 IN CNAME a.loop.test.")
	h.dns.Handle("fail.test.", func(w mdns.ResponseWriter, req *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetRcode(req, mdns.RcodeServerFailure)
		w.WriteMsg(m)
	})
	for _, c := range []struct{ rcpt, status, dsn, text string }{
		{"a@null.test", agent.Bounced, "5.1.10", "Domain null.test does not accept mail (nullMX)"},
		{"a@nxdomain.test", agent.Bounced, "5.4.4", "Host or domain name not found. Name service error for name=nxdomain.test type=MX: Host not found"},
		{"a@fail.test", agent.Deferred, "4.4.3", "name=fail.test type=MX: Host not found, try again"},
		{"a@noaddr.test", agent.Bounced, "5.4.4", "no MX host for noaddr.test has a valid address record: Host or domain name not found. Name service error for name=gone.noaddr.test type="},
		{"a@loop.test", agent.Deferred, "4.4.3", "CNAME loop"},
	} {
		h.expect(h.send(c.rcpt, "x\n"), c.status, c.dsn, c.text)
		if !strings.Contains(h.logLine(c.rcpt), "relay=none, ") {
			t.Errorf("%s: %s", c.rcpt, h.logLine(c.rcpt))
		}
	}
	if srv.Connections() != 0 {
		t.Fatal("connected although no MX was usable")
	}
}

func TestLoopsBackToMyself(t *testing.T) {
	srv := newServer(t, "127.0.0.1:0")
	h := newHarness(t, srv.Port, func(c *config.Config, o *Options) {
		// smtpd listens where the mail exchanger points: this host.
		c.SMTPD.Listen = []string{fmt.Sprintf("127.0.0.1:%d", c.SMTP.Port)}
	})
	other := newServer(t, at("127.0.0.3", srv.Port))
	h.zone("self.test. 300 IN MX 10 mx.self.test.", "mx.self.test. 300 IN A 127.0.0.1",
		"backup.test. 300 IN MX 10 primary.backup.test.", "backup.test. 300 IN MX 20 mx.self.test.",
		"primary.backup.test. 300 IN A 127.0.0.3",
		"lost.test. 300 IN MX 5 gone.lost.test.", "lost.test. 300 IN MX 10 mx.self.test.",
		"implicit.test. 300 IN A 127.0.0.1")
	h.expect(h.send("a@self.test", "x\n"), agent.Bounced, "5.4.6", "mail for self.test loops back to myself")
	h.expect(h.send("a@implicit.test", "x\n"), agent.Bounced, "5.4.6", "mail for implicit.test loops back to myself")
	h.expect(h.send("a@[127.0.0.1]", "x\n"), agent.Bounced, "5.4.6", "loops back to myself")
	// A backup MX: only the better ones are tried.
	h.expect(h.send("a@backup.test", "x\n"), agent.Sent, "2.0.0", "")
	// The better MX has no address: wait for it rather than bounce.
	h.expect(h.send("a@lost.test", "x\n"), agent.Deferred, "4.4.4", "unable to find primary relay for lost.test")
	if srv.Connections() != 0 || other.Connections() != 1 {
		t.Fatalf("self contacted %d times, primary %d", srv.Connections(), other.Connections())
	}
}

func TestIsSelf(t *testing.T) {
	a := &Agent{local: localAddrs{list: func() ([]net.Addr, error) {
		return []net.Addr{&net.IPNet{IP: net.ParseIP("192.0.2.10"), Mask: net.CIDRMask(24, 32)},
			&net.IPNet{IP: net.ParseIP("2001:db8::10"), Mask: net.CIDRMask(64, 128)}}, nil
	}}}
	cfg := config.Defaults() // 0.0.0.0:25 and [::]:25
	for addr, want := range map[string]bool{
		"127.0.0.1:25": true, "192.0.2.10:25": true, "[::1]:25": true, "[2001:db8::10]:25": true,
		"0.0.0.0:25": true, "[::]:2525": true, "192.0.2.11:25": false, "127.0.0.1:2525": false,
		"[2001:db8::11]:25": false,
	} {
		ap := netip.MustParseAddrPort(addr)
		if got := a.isSelf(cfg, ap.Addr(), int(ap.Port())); got != want {
			t.Errorf("isSelf(%s) = %v", addr, got)
		}
	}
	cfg.SMTPD.Listen = []string{"192.0.2.10:2525"}
	if a.isSelf(cfg, netip.MustParseAddr("127.0.0.1"), 2525) || !a.isSelf(cfg, netip.MustParseAddr("192.0.2.10"), 2525) {
		t.Fatal("a specific listen address")
	}
}

func TestAddressAndSessionLimits(t *testing.T) {
	hosts := []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.7", "127.0.0.8"}
	port := freePortOn(t, hosts...)
	var mu sync.Mutex
	conns := 0
	refuse := func(c *smtptest.Conn) {
		mu.Lock()
		conns++
		mu.Unlock()
		c.Send("421 4.3.2 busy")
	}
	for _, a := range hosts {
		smtptest.New(t, at(a, port), refuse)
	}
	h := newHarness(t, port, nil)
	h.zone("many.test. 300 IN MX 10 mx.many.test.")
	for _, a := range hosts {
		h.zone("mx.many.test. 300 IN A " + a)
	}
	h.expect(h.send("a@many.test", "x\n"), agent.Deferred, "4.3.2", "refused to talk to me: 421 4.3.2 busy")
	mu.Lock()
	if conns != 5 {
		t.Fatalf("%d addresses tried, limit 5", conns)
	}
	mu.Unlock()

}

func TestSessionLimit(t *testing.T) {
	hosts := []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}
	port := freePortOn(t, hosts...)
	var servers []*server
	for _, a := range hosts {
		s := newServer(t, at(a, port))
		s.rcptRep = "451 4.3.0 try later"
		servers = append(servers, s)
	}
	h := newHarness(t, port, nil)
	h.zone("ses.test. 300 IN MX 10 mx1.ses.test.", "ses.test. 300 IN MX 20 mx2.ses.test.", "ses.test. 300 IN MX 30 mx3.ses.test.",
		"mx1.ses.test. 300 IN A 127.0.0.2", "mx2.ses.test. 300 IN A 127.0.0.3", "mx3.ses.test. 300 IN A 127.0.0.4")
	h.expect(h.send("a@ses.test", "x\n"), agent.Deferred, "4.3.0", "host mx2.ses.test[127.0.0.3] said: 451 4.3.0 try later")
	if servers[0].Connections() != 1 || servers[1].Connections() != 1 || servers[2].Connections() != 0 {
		t.Fatalf("connections %d %d %d; want 1 1 0", servers[0].Connections(), servers[1].Connections(), servers[2].Connections())
	}
}

func TestDestinationConcurrencyLimit(t *testing.T) {
	srv := newServer(t, "127.0.0.1:0")
	srv.dataGate = make(chan struct{})
	h := newHarness(t, srv.Port, func(c *config.Config, o *Options) { c.SMTP.DestinationConcurrencyLimit = 2 })
	h.zone("busy.test. 300 IN A 127.0.0.1")
	var wg sync.WaitGroup
	for i := 0; i < 5; i++ {
		id := h.queue("s@origin.test", "x\n", fmt.Sprintf("r%d@busy.test", i))
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.expect(h.deliver(id, fmt.Sprintf("r%d@busy.test", i)), agent.Sent, "2.0.0", "")
		}()
	}
	// Two transactions reach the end of their data; the rest wait.
	waitFor(t, "two transactions", func() bool {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		return srv.active == 2
	})
	for i := 0; i < 5; i++ {
		srv.dataGate <- struct{}{}
	}
	wg.Wait()
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.maxAct != 2 {
		t.Fatalf("%d deliveries at once, limit 2", srv.maxAct)
	}
}

func TestRelayhost(t *testing.T) {
	sink := smtptest.StartSink(t)
	h := newHarness(t, 25, func(c *config.Config, o *Options) {
		c.SMTP.Relayhost = fmt.Sprintf("[127.0.0.1]:%d", sink.Port)
	})
	h.expect(h.send("a@anywhere.test", "x\n"), agent.Sent, "2.0.0", "")
	if n := h.dns.Queries("anywhere.test.", "MX", ""); n != 0 {
		t.Fatal("MX lookup despite a bracketed relay host")
	}
	if !strings.Contains(h.logLine("a@anywhere.test"), fmt.Sprintf("relay=127.0.0.1[127.0.0.1]:%d", sink.Port)) {
		t.Fatal(h.logLine("a@anywhere.test"))
	}
	// Without brackets the relay host's MX records count.
	h2 := newHarness(t, 25, func(c *config.Config, o *Options) {
		c.SMTP.Relayhost = fmt.Sprintf("relay.test:%d", sink.Port)
	})
	h2.zone("relay.test. 300 IN MX 10 smart.relay.test.", "smart.relay.test. 300 IN A 127.0.0.1")
	h2.expect(h2.send("a@anywhere.test", "x\n"), agent.Sent, "2.0.0", "")
	if h2.dns.Queries("relay.test.", "MX", "") != 1 || h2.dns.Queries("anywhere.test.", "MX", "") != 0 {
		t.Fatal("wrong lookups for an unbracketed relay host")
	}
	if len(sink.Messages(t)) != 2 {
		t.Fatal("not at the relay host")
	}
}

func TestRelayhostAuth(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	os.WriteFile(pwFile, []byte("s3cret\n"), 0600)
	// smtp-sink offers AUTH but no STARTTLS: the password stays home.
	sink := smtptest.StartSink(t)
	setup := func(cleartext bool) func(c *config.Config, o *Options) {
		return func(c *config.Config, o *Options) {
			c.SMTP.Relayhost = fmt.Sprintf("[127.0.0.1]:%d", sink.Port)
			c.SMTP.RelayhostUsername = "user"
			c.SMTP.RelayhostPasswordFile = pwFile
			c.SMTP.AuthAllowCleartext = cleartext
		}
	}
	h := newHarness(t, 25, setup(false))
	h.expect(h.send("a@anywhere.test", "x\n"), agent.Deferred, "4.7.0",
		"SASL authentication failed; cannot authenticate to server 127.0.0.1[127.0.0.1]: refusing to send credentials over a connection without TLS")
	h = newHarness(t, 25, setup(true))
	h.expect(h.send("a@anywhere.test", "x\n"), agent.Sent, "2.0.0", "")

	// Over TLS, with the password from the file, to a server that checks it.
	creds := make(chan string, 1)
	srv := smtptest.New(t, "127.0.0.1:0", func(c *smtptest.Conn) {
		if c.N > 1 {
			return // the test of the missing password file: never spoken to
		}
		c.Greet("STARTTLS")
		c.Expect("STARTTLS")
		c.Send("220 go ahead")
		c.StartTLS()
		c.Expect("EHLO")
		c.Send("250-relay", "250 AUTH PLAIN")
		creds <- c.Line()
		c.Send("235 2.7.0 ok")
		c.Accept(1)
	})
	h = newHarness(t, 25, func(c *config.Config, o *Options) {
		setup(false)(c, o)
		c.SMTP.Relayhost = fmt.Sprintf("[127.0.0.1]:%d", srv.Port)
	})
	h.expect(h.send("a@anywhere.test", "x\n"), agent.Sent, "2.0.0", "")
	if got := <-creds; got != "AUTH PLAIN AHVzZXIAczNjcmV0" {
		t.Fatalf("AUTH line %q", got)
	}
	// A password file that cannot be read defers (a configuration problem).
	os.Remove(pwFile)
	h.expect(h.send("b@anywhere.test", "x\n"), agent.Deferred, "4.3.5", "cannot read smtp.relayhost_password_file")
}

func tlsServer(t *testing.T, addr string, n *int, mu *sync.Mutex) *smtptest.Server {
	return smtptest.New(t, addr, func(c *smtptest.Conn) {
		mu.Lock()
		*n++
		first := *n == 1
		mu.Unlock()
		c.Greet("STARTTLS", "PIPELINING")
		l := c.Line()
		if first {
			// The handshake fails: garbage instead of TLS.
			c.Send("220 go ahead")
			c.R.ReadByte()
			c.Raw("not TLS at all\r\n")
			return
		}
		if l == "STARTTLS" {
			c.Send("220 go ahead")
			c.StartTLS()
			c.Expect("EHLO")
			c.Send("250-x", "250 PIPELINING")
			l = c.Line()
		}
		if !strings.HasPrefix(l, "MAIL") {
			t.Errorf("got %q", l)
		}
		c.Expect("RCPT")
		c.Expect("DATA")
		c.Send("250 ok", "250 ok", "354 go")
		c.Data()
		c.Send("250 2.0.0 Ok")
	})
}

func TestTLS(t *testing.T) {
	var mu sync.Mutex
	n := 0
	srv := tlsServer(t, "127.0.0.1:0", &n, &mu)
	h := newHarness(t, srv.Port, nil)
	h.zone("tls.test. 300 IN MX 10 mx.tls.test.", "mx.tls.test. 300 IN A 127.0.0.1")
	// The first connection's handshake fails; the same server is tried
	// again without TLS.
	h.expect(h.send("a@tls.test", "x\n"), agent.Sent, "2.0.0", "")
	mu.Lock()
	conns := n
	mu.Unlock()
	if conns != 2 || !h.logHas("Cannot start TLS with mx.tls.test[127.0.0.1]: TLS handshake failed") {
		t.Fatalf("%d connections; log:\n%s", conns, h.log)
	}
	// Connection three: TLS, logged as Postfix does.
	h.agent.cache.flush(false)
	h.expect(h.send("b@tls.test", "x\n"), agent.Sent, "2.0.0", "")
	want := fmt.Sprintf("posthorn/smtp[%d]: Untrusted TLS connection established to mx.tls.test[127.0.0.1]:%d: TLSv1.3 with cipher TLS_", os.Getpid(), srv.Port)
	if !h.logHas(want) {
		t.Fatalf("log lacks %q", want)
	}
	// Mandatory TLS with a server that has none: deferred.
	sink := smtptest.StartSink(t)
	h = newHarness(t, sink.Port, func(c *config.Config, o *Options) { c.SMTP.TLS = "encrypt" })
	h.zone("tls.test. 300 IN MX 10 mx.tls.test.", "mx.tls.test. 300 IN A 127.0.0.1")
	h.expect(h.send("a@tls.test", "x\n"), agent.Deferred, "4.7.4", "TLS is required, but was not offered by host mx.tls.test[127.0.0.1]")
}

// HOSTILE-INPUTS 9 and 58 through the agent: a temporary failure, and the
// next MX gets the message.
func TestHostileServer(t *testing.T) {
	for name, script := range map[string]func(c *smtptest.Conn){
		"STARTTLS injection": func(c *smtptest.Conn) {
			c.Greet("STARTTLS")
			c.Expect("STARTTLS")
			c.Raw("220 go ahead\r\n250-injected\r\n250 PIPELINING\r\n")
			c.Line()
		},
		"endless continuation": func(c *smtptest.Conn) {
			c.Raw("220-x\r\n")
			for i := 0; i < 100000; i++ {
				if _, err := c.Write([]byte("220-more\r\n")); err != nil {
					return
				}
			}
		},
		"100 KB line": func(c *smtptest.Conn) {
			c.Greet()
			c.Expect("MAIL")
			c.Raw("250 " + strings.Repeat("x", 100<<10) + "\r\n")
		},
		"mismatched codes": func(c *smtptest.Conn) {
			c.Send("220 x")
			c.Expect("EHLO")
			c.Send("250-x", "550 y")
		},
	} {
		t.Run(name, func(t *testing.T) {
			port := freePortOn(t, "127.0.0.1", "127.0.0.2")
			smtptest.New(t, at("127.0.0.1", port), script)
			good := newServer(t, at("127.0.0.2", port))
			h := newHarness(t, port, nil)
			h.zone("example.test. 300 IN MX 10 bad.example.test.", "bad.example.test. 300 IN A 127.0.0.1")
			rep := h.send("a@example.test", "x\n")
			h.expect(rep, agent.Deferred, "4.5.0", "protocol error")
			h2 := newHarness(t, port, nil)
			h2.zone("example.test. 300 IN MX 10 bad.example.test.", "bad.example.test. 300 IN A 127.0.0.1",
				"example.test. 300 IN MX 20 good.example.test.", "good.example.test. 300 IN A 127.0.0.2")
			h2.expect(h2.send("a@example.test", "x\n"), agent.Sent, "2.0.0", "")
			if good.Connections() != 1 {
				t.Fatal("the next MX was not tried")
			}
		})
	}
}

func TestSMTPUTF8AndSize(t *testing.T) {
	sink := smtptest.StartSink(t) // no SMTPUTF8, no SIZE
	h := newHarness(t, sink.Port, nil)
	h.zone("example.test. 300 IN A 127.0.0.1", "xn--bcher-kva.test. 300 IN A 127.0.0.1")
	h.expect(h.send("jürgen@example.test", "x\n"), agent.Bounced, "5.6.7",
		"SMTPUTF8 is required, but was not offered by host example.test[127.0.0.1]")
	// A UTF-8 domain with an ASCII local part goes out with A-labels.
	h.expect(h.send("user@bücher.test", "x\n"), agent.Sent, "2.0.0", "")
	if m := sink.Messages(t); len(m) != 1 || !strings.Contains(m[0], "X-Rcpt-Args: <user@xn--bcher-kva.test>\n") {
		t.Fatalf("%q", m)
	}

	small := smtptest.New(t, "127.0.0.1:0", func(c *smtptest.Conn) {
		c.Greet("SIZE 100")
		c.Line()
	})
	h = newHarness(t, small.Port, nil)
	h.zone("example.test. 300 IN A 127.0.0.1")
	big := strings.Repeat("line\n", 30) // 150 octets, 180 with CRLF
	h.expect(h.send("a@example.test", big), agent.Bounced, "5.3.4",
		"message size 180 exceeds size limit 100 of server example.test[127.0.0.1]")
}

func TestEightBitAnnounced(t *testing.T) {
	sink := smtptest.StartSink(t)
	h := newHarness(t, sink.Port, nil)
	h.zone("example.test. 300 IN A 127.0.0.1")
	h.expect(h.send("a@example.test", "Subject: x\n\nGrüße\n"), agent.Sent, "2.0.0", "")
	if m := sink.Messages(t); len(m) != 1 || !strings.Contains(m[0], "X-Mail-Args: <sender@origin.test> BODY=8BITMIME\n") {
		t.Fatalf("%q", m)
	}
}

func TestAddressLiteralAndBadAddresses(t *testing.T) {
	sink := smtptest.StartSink(t)
	h := newHarness(t, sink.Port, nil)
	h.expect(h.send("a@[127.0.0.1]", "x\n"), agent.Sent, "2.0.0", "")
	if !strings.Contains(h.logLine("a@[127.0.0.1]"), fmt.Sprintf("relay=127.0.0.1[127.0.0.1]:%d", sink.Port)) {
		t.Fatal(h.logLine("a@[127.0.0.1]"))
	}
	if m := sink.Messages(t); len(m) != 1 || !strings.Contains(m[0], "X-Rcpt-Args: <a@[127.0.0.1]>\n") {
		t.Fatalf("%q", m)
	}
	id := h.queue("s@origin.test", "x\n", "a@example.test")
	h.expect(h.deliver(id, "no-domain"), agent.Bounced, "5.1.3", "bad recipient address syntax")
	h.expect(h.deliver(id, "a@b@c"), agent.Bounced, "5.1.3", "bad recipient address syntax")
	h.expect(h.deliver(id, "a@[999.1.1.1]"), agent.Bounced, "5.1.3", "")
}

func TestBounceSenderNull(t *testing.T) {
	sink := smtptest.StartSink(t)
	h := newHarness(t, sink.Port, nil)
	h.zone("example.test. 300 IN A 127.0.0.1")
	id := h.queue("", "x\n", "a@example.test")
	h.expect(h.deliver(id, "a@example.test"), agent.Sent, "2.0.0", "")
	if m := sink.Messages(t); len(m) != 1 || !strings.Contains(m[0], "X-Mail-Args: <>\n") {
		t.Fatalf("%q", m)
	}
}

func TestTimeoutDefersAndMovesOn(t *testing.T) {
	port := freePortOn(t, "127.0.0.1", "127.0.0.2")
	smtptest.New(t, at("127.0.0.1", port), func(c *smtptest.Conn) { c.Line() }) // never greets
	good := newServer(t, at("127.0.0.2", port))
	h := newHarness(t, port, func(c *config.Config, o *Options) { o.Timeouts.Helo = 300 * time.Millisecond })
	h.zone("example.test. 300 IN MX 10 slow.example.test.", "slow.example.test. 300 IN A 127.0.0.1",
		"example.test. 300 IN MX 20 good.example.test.", "good.example.test. 300 IN A 127.0.0.2")
	h.expect(h.send("a@example.test", "x\n"), agent.Sent, "2.0.0", "")
	if !h.logHas(": conversation with slow.example.test[127.0.0.1] timed out while receiving the initial server greeting") ||
		good.Connections() != 1 {
		t.Fatalf("log:\n%s", h.log)
	}
}

func TestRunServesSocketUntilStopped(t *testing.T) {
	sink := smtptest.StartSink(t)
	h := newHarness(t, sink.Port, nil) // for the spool, DNS and configuration
	h.zone("example.test. 300 IN A 127.0.0.1")
	log := maillog.New("posthorn", "smtp", "stderr")
	log.SetOutput(h.log)
	d, err := daemon.New("smtp", h.cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "smtp")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	d.Listeners = map[string][]net.Listener{"smtp": {l}}
	ctx, cancel := context.WithCancel(context.Background())
	d.Ctx = ctx
	done := make(chan error, 1)
	go func() { done <- Run(d) }()
	c := agent.NewClient(sock, 1)
	defer c.Close()
	id := h.queue("s@origin.test", "x\n", "a@example.test")
	qf, err := h.spool.OpenFile("incoming", id)
	if err != nil {
		t.Fatal(err)
	}
	defer qf.Close()
	rep, err := c.Deliver(context.Background(), agent.Request{QueueID: id, Sender: qf.Sender, Recipient: "a@example.test",
		Arrival: qf.Arrival, Active: time.Now(), Offset: qf.ContentOffset, Size: qf.ContentSize}, qf.OSFile())
	if err != nil || rep.Status != agent.Sent {
		t.Fatalf("%+v %v", rep, err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after stop")
	}
	d2, _ := daemon.New("smtp", h.cfg, log)
	if err := Run(d2); err == nil || !strings.Contains(err.Error(), "no listening socket") {
		t.Fatalf("Run without a socket: %v", err)
	}
}

func TestConfigSettings(t *testing.T) {
	for relay, want := range map[string]string{
		"[mail.example]:587":       "mail.example 587 true",
		"[mail.example]":           "mail.example 25 true",
		"mail.example:2525":        "mail.example 2525 false",
		"Mail.Example.":            "mail.example 25 false",
		"[192.0.2.1]:26":           "192.0.2.1 26 true",
		"[ipv6:2001:db8::1]:587":   "2001:db8::1 587 true",
		"[2001:db8::1]":            "2001:db8::1 25 true",
		"[IPv6:2001:db8::1]":       "2001:db8::1 25 true",
		"[mail.example]:0":         "error",
		"mail.example:x":           "error",
		"[mail.example":            "error",
		"2001:db8::1":              "error",
		"mail example":             "error",
		"[mail.example]:587:1":     "error",
		"[mail.example]junk":       "error",
		"user@mail.example":        "error",
		"[mail.example]:123456789": "error",
	} {
		s := config.SMTP{Relayhost: relay, Port: 25}
		host, port, br, err := s.RelayhostParts()
		got := fmt.Sprintf("%s %d %v", host, port, br)
		if err != nil {
			got = "error"
		}
		if got != want {
			t.Errorf("RelayhostParts(%q) = %s, want %s", relay, got, want)
		}
	}
	dir := t.TempDir()
	for body, wantErr := range map[string]string{
		"[smtp]\nrelayhost = \"[smtp.example]:587\"\nrelayhost_username = \"u\"\nrelayhost_password_file = \"pw\"\n": "",
		"[smtp]\ntls = \"encrypt\"\naddress_preference = \"ipv6\"\nhelo_name = \"out.example\"\n":                    "",
		"[dns]\nresolvers = [\"127.0.0.1:5353\", \"::1\", \"[2001:db8::1]:53\"]\n":                                   "",
		"[smtp]\ntls = \"dane\"\n":                    "smtp.tls",
		"[smtp]\naddress_preference = \"v6\"\n":       "smtp.address_preference",
		"[smtp]\nport = 0\n":                          "smtp.port",
		"[smtp]\nconnect_timeout = \"0s\"\n":          "smtp.connect_timeout",
		"[smtp]\ndestination_concurrency_limit = 0\n": "smtp.destination_concurrency_limit",
		"[smtp]\nhelo_name = \"a b\"\n":               "smtp.helo_name",
		"[smtp]\nrelayhost = \"[x\"\n":                "smtp.relayhost",
		"[smtp]\nrelayhost_username = \"u\"\n":        "relayhost_username needs",
		"[dns]\nresolvers = [\"ns.example\"]\n":       "dns.resolvers",
		"[smtp]\nrelayhost_pasword_file = \"x\"\n":    "unknown setting",
	} {
		p := filepath.Join(dir, "c.toml")
		os.WriteFile(p, []byte(body), 0644)
		cfg, err := config.Load(p)
		if wantErr == "" {
			if err != nil {
				t.Errorf("%q: %v", body, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%q: error %v, want %s", body, err, wantErr)
		}
		_ = cfg
	}
	cfg, err := config.Load(filepath.Join(dir, "empty.toml"))
	if err == nil {
		t.Fatal("missing file loaded")
	}
	os.WriteFile(filepath.Join(dir, "empty.toml"), nil, 0644)
	os.WriteFile(filepath.Join(dir, "h.toml"), []byte("hostname = \"mx.example\"\n[smtp]\nrelayhost_password_file = \"pw\"\n"), 0644)
	if cfg, err = config.Load(filepath.Join(dir, "h.toml")); err != nil {
		t.Fatal(err)
	}
	if cfg.SMTP.HeloName != "mx.example" || cfg.SMTP.RelayhostPasswordFile != filepath.Join(dir, "pw") ||
		cfg.SMTP.Port != 25 || cfg.SMTP.TLS != "may" || cfg.SMTP.AddressPreference != "any" ||
		cfg.SMTP.ConnectTimeout.D() != 30*time.Second || cfg.SMTP.DestinationConcurrencyLimit != 20 {
		t.Fatalf("defaults: %+v", cfg.SMTP)
	}
}

func TestMXHostLimit(t *testing.T) {
	srv := newServer(t, "127.0.0.1:0")
	h := newHarness(t, srv.Port, nil)
	// Fifteen MX hosts without addresses before one that has an address:
	// only MXHostLimit (10) are looked up, so the mail waits.
	for i := 0; i < 15; i++ {
		h.zone(fmt.Sprintf("wide.test. 300 IN MX %d mx%02d.wide.test.", i, i), fmt.Sprintf("mx%02d.wide.test. 300 IN TXT \"no address\"", i))
	}
	h.zone("wide.test. 300 IN MX 99 last.wide.test.", "last.wide.test. 300 IN A 127.0.0.1")
	h.expect(h.send("a@wide.test", "x\n"), agent.Bounced, "5.4.4", "no MX host for wide.test has a valid address record")
	for i := 0; i < 15; i++ {
		n := h.dns.Queries(fmt.Sprintf("mx%02d.wide.test.", i), "A", "")
		if (i < 10) != (n == 1) {
			t.Fatalf("mx%02d looked up %d times", i, n)
		}
	}
	if srv.Connections() != 0 || h.dns.Queries("last.wide.test.", "A", "") != 0 {
		t.Fatal("looked beyond the limit")
	}
	// Lookups also stop once there are twice the address limit.
	for i := 0; i < 6; i++ {
		h.zone(fmt.Sprintf("two.test. 300 IN MX %d m%d.two.test.", i, i), fmt.Sprintf("m%d.two.test. 300 IN A 127.0.0.1", i),
			fmt.Sprintf("m%d.two.test. 300 IN A 127.0.0.%d", i, i+2))
	}
	h.expect(h.send("a@two.test", "x\n"), agent.Sent, "2.0.0", "")
	if h.dns.Queries("m4.two.test.", "A", "") != 1 || h.dns.Queries("m5.two.test.", "A", "") != 0 {
		t.Fatal("did not stop at 10 addresses")
	}
}

func TestCacheLimits(t *testing.T) {
	a := newServer(t, "127.0.0.1:0")
	h := newHarness(t, a.Port, func(c *config.Config, o *Options) { o.CacheLimit = 1; o.CacheTime = time.Minute })
	h.zone("one.test. 300 IN A 127.0.0.1", "two.test. 300 IN A 127.0.0.1")
	h.expect(h.send("a@one.test", "x\n"), agent.Sent, "2.0.0", "")
	h.expect(h.send("a@two.test", "x\n"), agent.Sent, "2.0.0", "")
	// Only one session is kept: the other got QUIT at once.
	if n := h.agent.cache.idleCount(); n != 1 {
		t.Fatalf("%d sessions cached, limit 1", n)
	}
	waitFor(t, "QUIT", func() bool { return a.count("QUIT") == 1 })

	// A session older than the reuse time is not used again.
	b := newServer(t, "127.0.0.1:0")
	h = newHarness(t, b.Port, func(c *config.Config, o *Options) { o.ReuseTime = time.Nanosecond })
	h.zone("one.test. 300 IN A 127.0.0.1")
	h.expect(h.send("a@one.test", "x\n"), agent.Sent, "2.0.0", "")
	h.expect(h.send("b@one.test", "x\n"), agent.Sent, "2.0.0", "")
	if b.Connections() != 2 || b.count("RSET") != 0 {
		t.Fatalf("%d connections, %d RSET", b.Connections(), b.count("RSET"))
	}
}

func TestDNSTimeout(t *testing.T) {
	h := newHarness(t, 25, func(c *config.Config, o *Options) { o.DNSTimeout = 300 * time.Millisecond })
	h.dns.Handle("silent.test.", func(w mdns.ResponseWriter, req *mdns.Msg) {})
	start := time.Now()
	h.expect(h.send("a@silent.test", "x\n"), agent.Deferred, "4.4.3", "name=silent.test type=MX")
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("took %v with a DNS time limit of 300ms", d)
	}
}

// A listener whose accept queue is full drops new connections' SYNs: the
// connection attempt hangs until connect_timeout.
func fullListener(t *testing.T) int {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, _ := syscall.Getsockname(fd)
	port := sa.(*syscall.SockaddrInet4).Port
	// Fill the queue (a backlog of 0 holds one connection).
	for i := 0; i < 2; i++ {
		c, err := net.DialTimeout("tcp", at("127.0.0.1", port), 200*time.Millisecond)
		if err == nil {
			t.Cleanup(func() { c.Close() })
		}
	}
	return port
}

func TestConnectTimeout(t *testing.T) {
	port := fullListener(t)
	h := newHarness(t, port, func(c *config.Config, o *Options) { c.SMTP.ConnectTimeout = config.Duration(300 * time.Millisecond) })
	h.zone("full.test. 300 IN A 127.0.0.1")
	start := time.Now()
	h.expect(h.send("a@full.test", "x\n"), agent.Deferred, "4.4.1", fmt.Sprintf("connect to full.test[127.0.0.1]:%d: Connection timed out", port))
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
}
