package remote

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posthorn/posthorn/pkg/agent"
	"github.com/posthorn/posthorn/pkg/config"
	"github.com/posthorn/posthorn/pkg/dns/dnstest"
	"github.com/posthorn/posthorn/pkg/maillog"
	"github.com/posthorn/posthorn/pkg/smtp/client/smtptest"
	"github.com/posthorn/posthorn/pkg/spool"
)

// harness runs the agent behind agent.Server on a Unix socket, as master
// and qmgr would, with a test name server and a spool to take messages
// from.
type harness struct {
	t      *testing.T
	dns    *dnstest.Server
	cfg    *config.Config
	opt    Options
	agent  *Agent
	client *agent.Client
	spool  *spool.Spool
	log    *logBuf
	port   int // the SMTP port mail exchangers listen on
}

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// testOptions are DefaultOptions with short waits.
func testOptions() Options {
	o := DefaultOptions()
	o.DeadTime = 0
	o.CacheTime = 500 * time.Millisecond
	o.DNSTimeout = 10 * time.Second
	for _, d := range []*time.Duration{&o.Timeouts.Helo, &o.Timeouts.StartTLS, &o.Timeouts.Mail, &o.Timeouts.Rcpt,
		&o.Timeouts.DataInit, &o.Timeouts.DataXfer, &o.Timeouts.DataDone, &o.Timeouts.Rset, &o.Timeouts.Quit} {
		*d = 10 * time.Second
	}
	return o
}

// newHarness starts everything; port is the port of the mail exchangers
// (smtp.port), setup may change the configuration and options.
func newHarness(t *testing.T, port int, setup func(*config.Config, *Options)) *harness {
	t.Helper()
	h := &harness{t: t, dns: dnstest.New(t), port: port, log: &logBuf{}}
	dir := t.TempDir()
	cfg := config.Defaults()
	cfg.Hostname = "posthorn.test"
	cfg.SpoolDir = filepath.Join(dir, "spool")
	cfg.SMTP.HeloName = "posthorn.test"
	cfg.SMTP.Port = port
	// Not this test's port: no mail exchanger is "this host" by accident.
	cfg.SMTPD.Listen = []string{"127.0.0.1:1"}
	cfg.DNS.Resolvers = []string{h.dns.Addr}
	h.opt = testOptions()
	if setup != nil {
		setup(cfg, &h.opt)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	h.cfg = cfg
	if err := spool.Prepare(cfg.SpoolDir, -1, -1); err != nil {
		t.Fatal(err)
	}
	h.spool = spool.Open(cfg.SpoolDir)
	log := maillog.New("posthorn", "smtp", "stderr")
	log.SetOutput(h.log)
	a, err := New(cfg, log, h.opt)
	if err != nil {
		t.Fatal(err)
	}
	h.agent = a
	sock := filepath.Join(dir, "smtp.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := &agent.Server{Handler: a.Deliver}
	done := make(chan struct{})
	go func() { srv.Serve(ctx, l); close(done) }()
	h.client = agent.NewClient(sock, 4)
	t.Cleanup(func() {
		h.client.Close()
		cancel()
		<-done
		a.Close()
		if t.Failed() {
			t.Logf("log:\n%s", h.log)
		}
	})
	return h
}

// zone adds DNS records.
func (h *harness) zone(lines ...string) { h.dns.Add(h.t, lines...) }

// queue writes a message into the spool and returns its ID.
func (h *harness) queue(sender, content string, rcpts ...string) string {
	h.t.Helper()
	env := &spool.Envelope{Sender: sender, Attrs: map[string]string{}}
	for _, r := range rcpts {
		env.Rcpts = append(env.Rcpts, spool.Recipient{Addr: r})
	}
	w, err := h.spool.Create(env)
	if err != nil {
		h.t.Fatal(err)
	}
	w.Write([]byte(content))
	if err := w.Commit(); err != nil {
		h.t.Fatal(err)
	}
	return w.ID()
}

// deliver asks the agent, through the socket, to deliver message id to rcpt.
func (h *harness) deliver(id, rcpt string) agent.Reply {
	h.t.Helper()
	qf, err := h.spool.OpenFile(spool.Incoming, id)
	if err != nil {
		h.t.Fatal(err)
	}
	defer qf.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req := agent.Request{QueueID: id, Sender: qf.Sender, Recipient: rcpt, Arrival: qf.Arrival,
		Active: time.Now(), Offset: qf.ContentOffset, Size: qf.ContentSize}
	rep, err := h.client.Deliver(ctx, req, qf.OSFile())
	if err != nil {
		h.t.Fatal(err)
	}
	return rep
}

// send queues a message to rcpt and delivers it.
func (h *harness) send(rcpt, content string) agent.Reply {
	h.t.Helper()
	return h.deliver(h.queue("sender@origin.test", content, rcpt), rcpt)
}

func (h *harness) expect(rep agent.Reply, status, dsn, text string) {
	h.t.Helper()
	if rep.Status != status || rep.DSN != dsn || !strings.Contains(rep.Text, text) {
		h.t.Fatalf("got %s %s (%s), want %s %s (...%s...)", rep.Status, rep.DSN, rep.Text, status, dsn, text)
	}
}

// logLine returns the delivery line for rcpt, checking its shape.
func (h *harness) logLine(rcpt string) string {
	h.t.Helper()
	re := regexp.MustCompile(`^posthorn/smtp\[\d+\]: [0-9A-F]{13}: to=<` + regexp.QuoteMeta(rcpt) +
		`>, relay=\S+, delay=[0-9.]+, delays=[0-9.]+/[0-9.]+/[0-9.]+/[0-9.]+, dsn=\d\.\d{1,3}\.\d{1,3}, status=(sent|deferred|bounced) \(.*\)$`)
	var found []string
	for _, l := range strings.Split(h.log.String(), "\n") {
		if strings.Contains(l, " to=<"+rcpt+">") {
			if !re.MatchString(l) {
				h.t.Fatalf("log line not in Postfix's shape: %q", l)
			}
			found = append(found, l)
		}
	}
	if len(found) == 0 {
		h.t.Fatalf("no log line for %s in:\n%s", rcpt, h.log)
	}
	return found[len(found)-1]
}

func (h *harness) logHas(sub string) bool { return strings.Contains(h.log.String(), sub) }

// waitFor polls cond (an observable state, not a guess at timing) until
// it holds or ten seconds pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// server is a scripted SMTP server that serves any number of transactions
// per connection and records the commands it saw.
type server struct {
	*smtptest.Server
	mu       sync.Mutex
	cmds     []string
	data     [][]byte
	active   int // connections inside a transaction now
	maxAct   int
	ext      []string
	rcptRep  string        // reply to RCPT, "250 2.1.5 Ok" when empty
	dataGate chan struct{} // when set, the end of data waits for a value
}

func newServer(t *testing.T, addr string, ext ...string) *server {
	s := &server{ext: ext}
	s.Server = smtptest.New(t, addr, s.serve)
	return s
}

func (s *server) record(cmd string) {
	s.mu.Lock()
	s.cmds = append(s.cmds, cmd)
	s.mu.Unlock()
}

func (s *server) commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.cmds...)
}

func (s *server) count(prefix string) int {
	n := 0
	for _, c := range s.commands() {
		if strings.HasPrefix(c, prefix) {
			n++
		}
	}
	return n
}

func (s *server) serve(c *smtptest.Conn) {
	c.Greet(s.ext...)
	s.record("EHLO")
	for {
		l := c.Line()
		if l == "" {
			return
		}
		s.record(l)
		cmd := strings.ToUpper(l)
		switch {
		case strings.HasPrefix(cmd, "MAIL"):
			s.mu.Lock()
			s.active++
			s.maxAct = max(s.maxAct, s.active)
			s.mu.Unlock()
			c.Send("250 2.1.0 Ok")
		case strings.HasPrefix(cmd, "RCPT"):
			rep := s.rcptRep
			if rep == "" {
				rep = "250 2.1.5 Ok"
			}
			c.Send(rep)
		case cmd == "DATA":
			c.Send("354 go ahead")
			d := c.Data()
			if s.dataGate != nil {
				<-s.dataGate
			}
			s.mu.Lock()
			s.data = append(s.data, d)
			s.active--
			n := len(s.data)
			s.mu.Unlock()
			c.Send(fmt.Sprintf("250 2.0.0 Ok: queued as M%d", n))
		case cmd == "RSET":
			c.Send("250 2.0.0 Ok")
		case cmd == "QUIT":
			c.Send("221 2.0.0 Bye")
			return
		default:
			c.Send("502 5.5.2 Error: command not recognized")
		}
	}
}

// freePortOn returns a port free on every address given.
func freePortOn(t *testing.T, addrs ...string) int {
	t.Helper()
	for try := 0; try < 50; try++ {
		p, err := strconv.Atoi(strings.TrimPrefix(smtptest.ClosedPort(t)[len("127.0.0.1"):], ":"))
		if err != nil {
			t.Fatal(err)
		}
		ok := true
		for _, a := range addrs {
			l, err := net.Listen("tcp", net.JoinHostPort(a, strconv.Itoa(p)))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		if ok {
			return p
		}
	}
	t.Fatal("no port free on all addresses")
	return 0
}

func at(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }
