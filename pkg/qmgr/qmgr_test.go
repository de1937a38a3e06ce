package qmgr

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posthorn/posthorn/pkg/agent"
	"github.com/posthorn/posthorn/pkg/config"
	"github.com/posthorn/posthorn/pkg/maillog"
	"github.com/posthorn/posthorn/pkg/spool"
)

// fakeAgent answers delivery requests with a programmable result and
// records what it was sent.
type fakeAgent struct {
	mu      sync.Mutex
	results map[string]agent.Reply // by recipient; default sent
	got     []string               // "rcpt content"
}

func (f *fakeAgent) handle(_ context.Context, req agent.Request, qf *os.File) agent.Reply {
	b, _ := io.ReadAll(io.NewSectionReader(qf, req.Offset, req.Size))
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, req.Recipient+" "+string(b))
	if r, ok := f.results[req.Recipient]; ok {
		return r
	}
	return agent.Reply{Status: agent.Sent, DSN: "2.0.0", Text: "delivered"}
}

func (f *fakeAgent) count(prefix string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, g := range f.got {
		if strings.HasPrefix(g, prefix) {
			n++
		}
	}
	return n
}

type harness struct {
	t      *testing.T
	cfg    *config.Config
	sp     *spool.Spool
	agent  *fakeAgent // local
	remote *fakeAgent // smtp
	log    *logBuf
	note   *Notifier
	stop   func()
}

type logBuf struct {
	mu sync.Mutex
	b  strings.Builder
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

func start(t *testing.T, tweak func(*config.Config)) *harness {
	t.Helper()
	dir := t.TempDir()
	cfg := config.Defaults()
	cfg.SpoolDir = dir
	cfg.Hostname = "mx.example.test"
	cfg.LocalDomains = []string{"x", "y"}
	cfg.Queue.RunDelay = config.Duration(100 * time.Millisecond)
	cfg.Queue.MinimalBackoff = config.Duration(300 * time.Millisecond)
	cfg.Queue.MaximalBackoff = config.Duration(time.Second)
	if tweak != nil {
		tweak(cfg)
	}
	if err := spool.Prepare(dir, -1, -1); err != nil {
		t.Fatal(err)
	}
	fa := &fakeAgent{results: map[string]agent.Reply{}}
	al, err := net.Listen("unix", filepath.Join(dir, spool.Private, "local"))
	if err != nil {
		t.Fatal(err)
	}
	remote := &fakeAgent{results: map[string]agent.Reply{}}
	sl, err := net.Listen("unix", filepath.Join(dir, spool.Private, "smtp"))
	if err != nil {
		t.Fatal(err)
	}
	ql, err := net.Listen("unix", filepath.Join(dir, spool.Private, "qmgr"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := &agent.Server{Handler: fa.handle}
	go srv.Serve(ctx, al)
	go (&agent.Server{Handler: remote.handle}).Serve(ctx, sl)
	lb := &logBuf{}
	log := maillog.New("posthorn", "qmgr", "stderr")
	log.SetOutput(lb)
	m := New(cfg, log)
	done := make(chan struct{})
	go func() { m.Run(ctx, ql); close(done) }()
	h := &harness{t: t, cfg: cfg, sp: spool.Open(dir), agent: fa, remote: remote, log: lb,
		note: NewNotifier(filepath.Join(dir, spool.Private, "qmgr"))}
	h.stop = func() { cancel(); <-done }
	t.Cleanup(h.stop)
	return h
}

func (h *harness) queue(sender string, rcpts ...string) string {
	h.t.Helper()
	env := &spool.Envelope{Sender: sender}
	for _, r := range rcpts {
		env.Rcpts = append(env.Rcpts, spool.Recipient{Addr: r})
	}
	w, err := h.sp.Create(env)
	if err != nil {
		h.t.Fatal(err)
	}
	io.WriteString(w, "Subject: test\n\nbody\n")
	if err := w.Commit(); err != nil {
		h.t.Fatal(err)
	}
	h.note.Notify(Notice{Op: "new", ID: w.ID()})
	return w.ID()
}

func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s\nlog:\n%s", what, h.log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (h *harness) inQueue(queue, id string) bool {
	_, err := os.Stat(h.sp.Path(queue, id))
	return err == nil
}

func TestDeliveredMessageIsRemoved(t *testing.T) {
	h := start(t, nil)
	id := h.queue("s@x", "a@y", "b@y")
	h.waitFor("removal", func() bool { return strings.Contains(h.log.String(), id+": removed") })
	if h.agent.count("a@y Subject: test\n\nbody\n") != 1 || h.agent.count("b@y ") != 1 {
		t.Fatalf("agent got %v", h.agent.got)
	}
	for _, q := range []string{spool.Incoming, spool.Active, spool.Deferred} {
		if h.inQueue(q, id) {
			t.Fatalf("message left in %s", q)
		}
	}
	if !strings.Contains(h.log.String(), id+": from=<s@x>, size=20, nrcpt=2 (queue active)") {
		t.Fatalf("log:\n%s", h.log.String())
	}
}

func TestDeferRecordsAndRetriesOnlyPending(t *testing.T) {
	h := start(t, nil)
	h.agent.results["slow@y"] = agent.Tempfail("4.2.1", "mailbox busy")
	id := h.queue("s@x", "fast@y", "slow@y")
	h.waitFor("deferral", func() bool { return h.inQueue(spool.Deferred, id) })
	env, _, err := spool.ReadEnvelope(h.sp.Path(spool.Deferred, id))
	if err != nil {
		t.Fatal(err)
	}
	if env.Rcpts[0].Status != spool.StatusSent || env.Rcpts[1].Status != spool.StatusDeferred || env.Rcpts[1].Reason != "mailbox busy" {
		t.Fatalf("recorded results: %+v", env.Rcpts)
	}
	st, _ := os.Stat(h.sp.Path(spool.Deferred, id))
	if d := time.Until(st.ModTime()); d < 100*time.Millisecond || d > 2*time.Second {
		t.Fatalf("next attempt in %v, want the minimal backoff", d)
	}
	// The retry goes to the deferred recipient only, then succeeds.
	h.agent.mu.Lock()
	delete(h.agent.results, "slow@y")
	h.agent.mu.Unlock()
	h.waitFor("removal after retry", func() bool { return strings.Contains(h.log.String(), id+": removed") })
	if n := h.agent.count("fast@y"); n != 1 {
		t.Fatalf("delivered recipient retried: %d attempts", n)
	}
	if n := h.agent.count("slow@y"); n < 2 {
		t.Fatalf("deferred recipient tried %d times", n)
	}
}

func TestBounceQueuedBeforeOriginalRemoved(t *testing.T) {
	h := start(t, nil)
	h.agent.results["gone@y"] = agent.Permfail("5.1.1", "unknown user")
	id := h.queue("sender@x", "gone@y", "ok@y")
	h.waitFor("bounce delivery", func() bool { return h.agent.count("sender@x ") == 1 })
	h.waitFor("removal", func() bool { return strings.Contains(h.log.String(), id+": removed") })
	h.agent.mu.Lock()
	var bounce string
	for _, g := range h.agent.got {
		if strings.HasPrefix(g, "sender@x ") {
			bounce = g
		}
	}
	h.agent.mu.Unlock()
	for _, want := range []string{"Subject: Undelivered Mail Returned to Sender", "Final-Recipient: rfc822; gone@y",
		"Status: 5.1.1", "Subject: test"} {
		if !strings.Contains(bounce, want) {
			t.Errorf("bounce lacks %q:\n%s", want, bounce)
		}
	}
	if strings.Contains(bounce, "ok@y") {
		t.Errorf("bounce names a delivered recipient:\n%s", bounce)
	}
	if !strings.Contains(h.log.String(), id+": sender non-delivery notification: ") {
		t.Errorf("bounce not logged")
	}
}

func TestNoBounceForBounce(t *testing.T) {
	h := start(t, nil)
	h.agent.results["gone@y"] = agent.Permfail("5.1.1", "unknown user")
	id := h.queue("", "gone@y")
	h.waitFor("removal", func() bool { return strings.Contains(h.log.String(), id+": removed") })
	if !strings.Contains(h.log.String(), id+": undeliverable bounce discarded") {
		t.Fatalf("log:\n%s", h.log.String())
	}
	h.agent.mu.Lock()
	n := len(h.agent.got)
	h.agent.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d deliveries for a failed bounce, want 1", n)
	}
}

func TestExpiredMessageBounces(t *testing.T) {
	h := start(t, func(c *config.Config) { c.Queue.MaximalLifetime = config.Duration(time.Second) })
	h.agent.results["stuck@y"] = agent.Tempfail("4.4.1", "connection refused")
	id := h.queue("sender@x", "stuck@y")
	h.waitFor("expiry", func() bool { return strings.Contains(h.log.String(), id+": removed") })
	log := h.log.String()
	if !strings.Contains(log, "to=<stuck@y>, relay=none") || !strings.Contains(log, "dsn=5.4.1, status=expired") {
		t.Fatalf("expiry not logged Postfix-style:\n%s", log)
	}
	h.waitFor("bounce", func() bool { return h.agent.count("sender@x ") == 1 })
}

func TestCorruptFileMovedAside(t *testing.T) {
	h := start(t, nil)
	id := spool.NewID()
	os.WriteFile(h.sp.Path(spool.Incoming, id), []byte("not a queue file\n"), 0700)
	h.note.Notify(Notice{Op: "new", ID: id})
	h.waitFor("move to corrupt/", func() bool { return h.inQueue(spool.Corrupt, id) })
	if !strings.Contains(h.log.String(), "warning: "+id+": ") {
		t.Fatalf("no warning logged:\n%s", h.log.String())
	}
	// qmgr keeps working.
	ok := h.queue("s@x", "a@y")
	h.waitFor("next message", func() bool { return strings.Contains(h.log.String(), ok+": removed") })
}

func TestLostNotificationFoundByScan(t *testing.T) {
	h := start(t, nil)
	env := &spool.Envelope{Sender: "s@x", Rcpts: []spool.Recipient{{Addr: "quiet@y"}}}
	w, _ := h.sp.Create(env)
	io.WriteString(w, "x\n")
	w.Commit()
	h.waitFor("scan to deliver", func() bool { return strings.Contains(h.log.String(), w.ID()+": removed") })
}

func TestAgentDownKeepsMessage(t *testing.T) {
	h := start(t, nil)
	// No agent: remove its socket.
	os.Remove(filepath.Join(h.cfg.SpoolDir, spool.Private, "local"))
	id := h.queue("s@x", "a@y")
	h.waitFor("an agent failure", func() bool { return strings.Contains(h.log.String(), ErrAgentText) })
	if !h.inQueue(spool.Active, id) {
		t.Fatalf("message left the active queue while the agent was down")
	}
	// The agent comes back: delivery happens without waiting for a backoff.
	al, err := net.Listen("unix", filepath.Join(h.cfg.SpoolDir, spool.Private, "local"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go (&agent.Server{Handler: h.agent.handle}).Serve(ctx, al)
	h.waitFor("delivery after the agent returns", func() bool { return strings.Contains(h.log.String(), id+": removed") })
}

// ErrAgentText is how an unreachable agent shows in the log.
const ErrAgentText = "delivery agent unavailable"

func TestRoutingAndForwarding(t *testing.T) {
	h := start(t, nil)
	h.agent.results["alias@y"] = agent.Reply{Status: agent.Sent, DSN: "2.0.0", Text: "forwarded",
		Forward: []string{"far@z.example", "near@y"}}
	id := h.queue("s@x", "alias@y", "direct@z.example")
	h.waitFor("removal", func() bool { return strings.Contains(h.log.String(), id+": removed") })
	h.waitFor("forwarded copies", func() bool {
		return h.remote.count("far@z.example Delivered-To: alias@y\nSubject: test") == 1 && h.agent.count("near@y Delivered-To: alias@y\n") == 1
	})
	if h.remote.count("direct@z.example Subject: test") != 1 || h.agent.count("direct@") != 0 {
		t.Fatalf("remote recipient not routed to smtp: local %v, smtp %v", h.agent.got, h.remote.got)
	}
	if !strings.Contains(h.log.String(), id+": forwarded as ") {
		t.Fatalf("forward not logged:\n%s", h.log.String())
	}
}

func TestUnreachableTransportDoesNotBlockOthersAndExpires(t *testing.T) {
	h := start(t, func(c *config.Config) { c.Queue.MaximalLifetime = config.Duration(2 * time.Second) })
	os.Remove(filepath.Join(h.cfg.SpoolDir, spool.Private, "smtp"))
	id := h.queue("sender@x", "far@z.example", "near@y")
	h.waitFor("the local recipient", func() bool { return h.agent.count("near@y ") == 1 })
	h.waitFor("expiry of the unreachable one", func() bool { return strings.Contains(h.log.String(), id+": removed") })
	if !strings.Contains(h.log.String(), id+": to=<far@z.example>, relay=none") || h.agent.count("near@y ") != 1 {
		t.Fatalf("log:\n%s", h.log.String())
	}
	h.waitFor("the bounce to the sender", func() bool { return h.agent.count("sender@x ") == 1 })
}

func TestDelayWarningOnce(t *testing.T) {
	h := start(t, func(c *config.Config) { c.Queue.DelayWarningTime = config.Duration(500 * time.Millisecond) })
	h.agent.results["slow@y"] = agent.Tempfail("4.2.1", "mailbox busy")
	id := h.queue("sender@x", "slow@y")
	h.waitFor("a delay warning", func() bool { return h.agent.count("sender@x ") == 1 })
	h.agent.mu.Lock()
	var warning string
	for _, g := range h.agent.got {
		if strings.HasPrefix(g, "sender@x ") {
			warning = g
		}
	}
	h.agent.mu.Unlock()
	for _, want := range []string{"Subject: Delayed Mail (still being retried)", "Action: delayed", "Status: 4.2.1", "Final-Recipient: rfc822; slow@y"} {
		if !strings.Contains(warning, want) {
			t.Errorf("warning lacks %q:\n%s", want, warning)
		}
	}
	// More attempts, no second warning.
	h.waitFor("two more attempts", func() bool { return h.agent.count("slow@y ") >= 3 })
	if n := h.agent.count("sender@x "); n != 1 {
		t.Fatalf("%d warnings, want 1", n)
	}
	h.waitFor("the warning recorded in the queue file", func() bool {
		for _, q := range []string{spool.Deferred, spool.Active} {
			if env, _, err := spool.ReadEnvelope(h.sp.Path(q, id)); err == nil && !env.Warned.IsZero() {
				return true
			}
		}
		return false
	})
}
