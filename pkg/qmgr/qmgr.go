// Package qmgr is the queue manager: it owns the spool, takes new messages
// from incoming/ into active/, hands each recipient to a delivery agent,
// records every result in the queue file before acting on it, defers with
// Postfix's backoff, bounces, and removes a message only once every
// recipient is final (DESIGN §2.3, §2.7).
package qmgr

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/posthorn/posthorn/pkg/agent"
	"github.com/posthorn/posthorn/pkg/bounce"
	"github.com/posthorn/posthorn/pkg/config"
	"github.com/posthorn/posthorn/pkg/ipc"
	"github.com/posthorn/posthorn/pkg/maillog"
	"github.com/posthorn/posthorn/pkg/spool"
)

// Notice is what other programs send on the qmgr socket.
type Notice struct {
	Op string `json:"op"` // "new": a message is in incoming/; "flush": retry all deferred now
	ID string `json:"id,omitempty"`
}

// Notify tells the queue manager listening at socket about new work. It is
// a hint: a lost notice only delays the message until the next scan.
type Notifier struct {
	path string
	mu   sync.Mutex
	conn *ipc.Conn
}

// NewNotifier returns a notifier for the qmgr socket at path.
func NewNotifier(path string) *Notifier { return &Notifier{path: path} }

// Notify sends n, reconnecting once if the connection went away.
func (n *Notifier) Notify(msg Notice) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	for try := 0; try < 2; try++ {
		if n.conn == nil {
			c, err := ipc.Dial(n.path, time.Second)
			if err != nil {
				return err
			}
			n.conn = c
		}
		n.conn.SetDeadline(time.Now().Add(time.Second))
		err := n.conn.Send(msg)
		if err == nil {
			return nil
		}
		n.conn.Close()
		n.conn = nil
	}
	return fmt.Errorf("qmgr notify: cannot reach %s", n.path)
}

// Manager schedules deliveries.
type Manager struct {
	log   *maillog.Logger
	spool *spool.Spool
	// Delivery agents by transport name: "local" for local and virtual
	// domains, "smtp" for everything else.
	agents map[string]*agent.Client

	cfgMu sync.Mutex
	cfg   *config.Config

	work chan job
	mu   sync.Mutex
	busy map[string]bool // queue IDs being handled or waiting in work

	retryMu sync.Mutex
	waiting map[string]*retry // messages waiting to retry after an agent failure
}

type job struct {
	id    string
	queue string
}

// New returns a manager for cfg's spool.
func New(cfg *config.Config, log *maillog.Logger) *Manager {
	return &Manager{
		log:   log,
		cfg:   cfg,
		spool: spool.Open(cfg.SpoolDir),
		agents: map[string]*agent.Client{
			"local": agent.NewClient(filepath.Join(cfg.SpoolDir, spool.Private, "local"), cfg.Queue.LocalConcurrency),
			"smtp":  agent.NewClient(filepath.Join(cfg.SpoolDir, spool.Private, "smtp"), cfg.Queue.LocalConcurrency),
		},
		work: make(chan job, 100000),
		busy: map[string]bool{},
	}
}

// SetConfig applies a reloaded configuration to later decisions.
func (m *Manager) SetConfig(cfg *config.Config) {
	m.cfgMu.Lock()
	m.cfg = cfg
	m.cfgMu.Unlock()
}

func (m *Manager) config() *config.Config {
	m.cfgMu.Lock()
	defer m.cfgMu.Unlock()
	return m.cfg
}

// Run serves notifications on l and delivers until ctx is cancelled, then
// lets deliveries in flight finish and returns.
func (m *Manager) Run(ctx context.Context, l net.Listener) error {
	if l != nil {
		go m.listen(ctx, l)
	}
	var wg sync.WaitGroup
	for i := 0; i < m.config().Queue.LocalConcurrency; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case j := <-m.work:
					m.handle(ctx, j)
				}
			}
		}()
	}
	// Whatever is in active/ at start-up was in flight when the last qmgr
	// stopped: it goes first, then everything else waiting.
	m.scan(spool.Active, false)
	m.scan(spool.Incoming, false)
	m.scan(spool.Deferred, false)
	tick := time.NewTicker(m.config().Queue.RunDelay.D())
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			for _, a := range m.agents {
				a.Close()
			}
			// Removals still waiting for their scheduled fsync.
			if err := m.spool.SyncQueue(spool.Active); err != nil {
				m.log.Warning("sync %s: %v", spool.Active, err)
			}
			return nil
		case <-tick.C:
			m.scan(spool.Incoming, false)
			m.scan(spool.Deferred, false)
		}
	}
}

func (m *Manager) listen(ctx context.Context, l net.Listener) {
	go func() { <-ctx.Done(); l.Close() }()
	for {
		nc, err := l.Accept()
		if err != nil {
			return
		}
		uc, ok := nc.(*net.UnixConn)
		if !ok {
			nc.Close()
			continue
		}
		go func() {
			c := ipc.New(uc)
			defer c.Close()
			for {
				var n Notice
				files, err := c.Receive(&n)
				for _, f := range files {
					f.Close()
				}
				if err != nil {
					return
				}
				switch n.Op {
				case "new":
					if spool.ValidID(n.ID) {
						m.enqueue(n.ID, spool.Incoming)
					}
				case "flush":
					m.scan(spool.Deferred, true)
					m.scan(spool.Incoming, false)
				}
			}
		}()
	}
}

// enqueue schedules id unless it is already being handled.
func (m *Manager) enqueue(id, queue string) {
	m.mu.Lock()
	if m.busy[id] {
		m.mu.Unlock()
		return
	}
	m.busy[id] = true
	m.mu.Unlock()
	select {
	case m.work <- job{id, queue}:
	default:
		// The in-memory queue is full; the next scan finds the message.
		m.done(id)
	}
}

func (m *Manager) done(id string) {
	m.mu.Lock()
	delete(m.busy, id)
	m.mu.Unlock()
}

// scan queues the messages of one folder: in deferred/ those due (or all
// when force), elsewhere every complete file.
func (m *Manager) scan(queue string, force bool) {
	entries, err := m.spool.List(queue)
	if err != nil {
		m.log.Warning("scan %s: %v", queue, err)
		return
	}
	now := time.Now()
	for _, e := range entries {
		if !e.Complete {
			// A writer died half-way (its sender never got 250).
			if queue == spool.Incoming && m.spool.RemoveAbandoned(e.ID) {
				m.log.Info("%s: removed incomplete queue file of a receiving process that died", e.ID)
			}
			continue
		}
		if queue == spool.Deferred && !force && e.ModTime.After(now) {
			continue
		}
		m.enqueue(e.ID, queue)
	}
}

// handle takes one message through one delivery round.
func (m *Manager) handle(ctx context.Context, j job) {
	retry := false
	defer func() {
		m.done(j.id)
		if retry {
			m.retryLater(j.id)
		}
	}()
	if j.queue != spool.Active {
		if err := m.spool.Move(j.id, j.queue, spool.Active); err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				m.log.Warning("%s: %v", j.id, err)
			}
			return
		}
	}
	qf, err := m.spool.OpenFile(spool.Active, j.id)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return
		}
		if errors.Is(err, spool.ErrCorrupt) {
			m.log.Warning("%s: %v; moved to %s/", j.id, err, spool.Corrupt)
			if err := m.spool.Move(j.id, spool.Active, spool.Corrupt); err != nil {
				m.log.Warning("%s: %v", j.id, err)
			}
			return
		}
		m.log.Warning("%s: open queue file: %v", j.id, err)
		retry = true
		return
	}
	defer qf.Close()
	cfg := m.config()
	activeAt := time.Now()
	m.log.Info("%s: from=<%s>, size=%d, nrcpt=%d (queue active)", j.id, qf.Sender, qf.ContentSize, len(qf.Rcpts))

	pending := qf.Pending()
	lifetime := cfg.Queue.MaximalLifetime.D()
	if qf.Sender == "" {
		lifetime = cfg.Queue.BounceLifetime.D()
	}
	expired := time.Since(qf.Arrival) > lifetime

	for _, i := range pending {
		rc := qf.Rcpts[i]
		// Past its lifetime a message is returned, whatever kept it: failed
		// attempts or a transport that never came up.
		if expired {
			reason := rc.Reason
			if reason == "" {
				reason = "delivery temporarily suspended"
			}
			m.log.Info("%s: to=<%s>, relay=none, delay=%s, dsn=%s, status=expired, returned to sender (%s)",
				j.id, rc.Addr, maillog.Delay(time.Since(qf.Arrival)), permanent(rc.DSN), reason)
			if err := qf.Record(spool.Result{Index: i, Status: spool.StatusBounced, DSN: permanent(rc.DSN),
				Reason: "message expired: " + reason}); err != nil {
				m.log.Warning("%v", err)
				retry = true
				return
			}
			continue
		}
		req := agent.Request{QueueID: j.id, Sender: qf.Sender, Recipient: rc.Addr, Orig: rc.Params["ORCPT"],
			Arrival: qf.Arrival, Active: activeAt, Offset: qf.ContentOffset, Size: qf.ContentSize,
			Body: qf.Attrs["body"], SMTPUTF8: qf.Attrs["smtputf8"] == "yes", Notify: rc.Params["NOTIFY"],
			EnvID: qf.Attrs["envid"], Ret: qf.Attrs["ret"]}
		rep, err := m.agents[transport(cfg, rc.Addr)].Deliver(ctx, req, qf.OSFile())
		if err != nil {
			// Nothing was learned about this recipient; the others still get
			// their turn, and the message stays active to be tried soon.
			m.log.Warning("%s: %v", j.id, err)
			retry = true
			continue
		}
		m.agentOK(j.id)
		if len(rep.Partial) > 0 && rep.Status == agent.Sent {
			// Tell the sender about the parts that failed before the
			// recipient is recorded as done.
			var fs []bounce.Failure
			for _, p := range rep.Partial {
				fs = append(fs, bounce.Failure{Recipient: rc.Addr, Orig: rc.Params["ORCPT"], DSN: p.DSN, Reason: p.Text})
			}
			if qf.Sender != "" {
				if err := m.queueBounce(qf, fs); err != nil {
					m.log.Warning("%s: cannot queue bounce: %v", j.id, err)
					retry = true
					return
				}
			}
		}
		if len(rep.Forward) > 0 && rep.Status == agent.Sent {
			// An alias or .forward sent the recipient elsewhere: the new
			// message is durably queued before this recipient counts as done.
			if err := m.queueForward(qf, rc.Addr, rep.Forward); err != nil {
				m.log.Warning("%s: cannot queue forwarded message: %v", j.id, err)
				retry = true
				return
			}
		}
		st := spool.StatusDeferred
		switch rep.Status {
		case agent.Sent:
			st = spool.StatusSent
		case agent.Bounced:
			st = spool.StatusBounced
		}
		// The last recipient of a message needs no record when delivered:
		// removing the file records it.
		if st == spool.StatusSent && len(qf.Pending()) == 1 {
			qf.Rcpts[i].Status = st
			continue
		}
		if err := qf.Record(spool.Result{Index: i, Status: st, DSN: rep.DSN, Reason: rep.Text}); err != nil {
			m.log.Warning("%v", err)
			retry = true
			return
		}
	}
	if retry {
		return
	}
	m.finish(qf)
}

// finish bounces, defers or removes a message after a round.
func (m *Manager) finish(qf *spool.File) {
	cfg := m.config()
	if len(qf.Pending()) > 0 {
		if err := m.spool.Move(qf.ID, spool.Active, spool.Deferred); err != nil {
			// Gone: the administrator deleted or held it meanwhile.
			if !errors.Is(err, os.ErrNotExist) {
				m.log.Warning("%v", err)
			}
			return
		}
		// Postfix's backoff: wait as long as the message has been queued,
		// within [minimal_backoff_time, maximal_backoff_time].
		wait := time.Since(qf.Arrival)
		if wait < cfg.Queue.MinimalBackoff.D() {
			wait = cfg.Queue.MinimalBackoff.D()
		}
		if wait > cfg.Queue.MaximalBackoff.D() {
			wait = cfg.Queue.MaximalBackoff.D()
		}
		if err := m.spool.SetNextAttempt(spool.Deferred, qf.ID, time.Now().Add(wait)); err != nil {
			m.log.Warning("%s: %v", qf.ID, err)
		}
		m.warnDelay(qf)
		return
	}
	var failures, delivered []bounce.Failure
	for _, rc := range qf.Rcpts {
		switch {
		case rc.Status == spool.StatusBounced:
			failures = append(failures, bounce.Failure{Recipient: rc.Addr, Orig: rc.Params["ORCPT"], DSN: rc.DSN, Reason: rc.Reason})
		case rc.Status == spool.StatusSent && transport(cfg, rc.Addr) == "local" && bounce.Wants(rc.Params["NOTIFY"], "SUCCESS"):
			// RFC 3461 §4.1 NOTIFY=SUCCESS, final delivery here. Mail
			// relayed elsewhere is the next hop's to confirm.
			reason := rc.Reason
			if reason == "" {
				reason = "delivered"
			}
			delivered = append(delivered, bounce.Failure{Recipient: rc.Addr, Orig: rc.Params["ORCPT"],
				DSN: "2.0.0", Reason: reason, Action: bounce.ActionDelivered})
		}
	}
	if len(failures) > 0 {
		if qf.Sender == "" {
			// Never bounce a bounce (RFC 5321 §6.1).
			m.log.Info("%s: undeliverable bounce discarded", qf.ID)
		} else if err := m.queueBounce(qf, failures); err != nil {
			// The original stays until its bounce is safely queued.
			m.log.Warning("%s: cannot queue bounce: %v", qf.ID, err)
			m.spool.Move(qf.ID, spool.Active, spool.Deferred)
			m.spool.SetNextAttempt(spool.Deferred, qf.ID, time.Now().Add(cfg.Queue.MinimalBackoff.D()))
			return
		}
	}
	if len(delivered) > 0 && qf.Sender != "" {
		// A success notice is a courtesy: failing to queue it must not keep
		// (and so deliver again) a message that is done.
		if err := m.queueBounce(qf, delivered); err != nil {
			m.log.Warning("%s: cannot queue delivery status notification: %v", qf.ID, err)
		}
	}
	if err := m.spool.Remove(spool.Active, qf.ID); err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			m.log.Warning("%v", err)
		}
		return
	}
	// The removal is made durable within removeSyncDelay, in one fsync
	// for every message finished meanwhile: until then only a crash of
	// the whole machine (not of a process) could deliver it again.
	m.spool.SyncQueueSoon(spool.Active, removeSyncDelay, func(err error) {
		m.log.Warning("sync %s: %v", spool.Active, err)
	})
	m.log.Info("%s: removed", qf.ID)
}

// warnDelay tells the sender, once, that a message has waited longer than
// queue.delay_warning_time (RFC 3464 Action: delayed), for the recipients
// still pending whose NOTIFY asks for delays.
func (m *Manager) warnDelay(qf *spool.File) {
	wt := m.config().Queue.DelayWarningTime.D()
	if wt <= 0 || qf.Sender == "" || !qf.Warned.IsZero() || time.Since(qf.Arrival) < wt {
		return
	}
	var delayed []bounce.Failure
	for _, i := range qf.Pending() {
		rc := qf.Rcpts[i]
		delayed = append(delayed, bounce.Failure{Recipient: rc.Addr, Orig: rc.Params["ORCPT"],
			DSN: rc.DSN, Reason: rc.Reason, Action: bounce.ActionDelayed})
	}
	if err := m.queueBounce(qf, delayed); err != nil {
		m.log.Warning("%s: cannot queue delay warning: %v", qf.ID, err)
		return
	}
	if err := qf.MarkWarned(time.Now()); err != nil {
		m.log.Warning("%v", err)
	}
}

// queueBounce durably queues a delivery status notification to the
// sender: a non-delivery report, or a success notice when every entry is
// bounce.ActionDelivered. Recipients whose NOTIFY did not ask for this kind
// of notice (RFC 3461 §4.1: NEVER, or a list without FAILURE) are left out,
// and nothing is queued when none remains. ENVID and RET come back as the
// sender gave them.
func (m *Manager) queueBounce(qf *spool.File, failures []bounce.Failure) error {
	cfg := m.config()
	var report []bounce.Failure
	success := true
	for _, f := range failures {
		kind := "SUCCESS"
		switch f.Action {
		case bounce.ActionDelayed:
			kind, success = "DELAY", false
		case bounce.ActionDelivered:
		default:
			kind, success = "FAILURE", false
		}
		notify := ""
		for _, rc := range qf.Rcpts {
			if rc.Addr == f.Recipient {
				notify = rc.Params["NOTIFY"]
				break
			}
		}
		if bounce.Wants(notify, kind) {
			report = append(report, f)
		}
	}
	if len(report) == 0 {
		return nil
	}
	msg := bounce.Build(bounce.Report{Hostname: cfg.Hostname, QueueID: qf.ID, Sender: qf.Sender,
		Arrival: qf.Arrival, Failures: report, EnvID: qf.Attrs["envid"], Ret: qf.Attrs["ret"]}, qf.Content())
	env := &spool.Envelope{Sender: "", Attrs: map[string]string{"origin": "bounce", "orig_queue_id": qf.ID},
		Rcpts: []spool.Recipient{{Addr: qf.Sender}}}
	w, err := m.spool.Create(env)
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		w.Abort()
		return err
	}
	if err := w.Commit(); err != nil {
		return err
	}
	if success {
		m.log.Info("%s: sender delivery status notification: %s", qf.ID, w.ID())
	} else if report[0].Action == bounce.ActionDelayed {
		m.log.Info("%s: sender delay notification: %s", qf.ID, w.ID())
	} else {
		m.log.Info("%s: sender non-delivery notification: %s", qf.ID, w.ID())
	}
	m.enqueue(w.ID(), spool.Incoming)
	return nil
}

// queueForward queues the message again for the addresses a recipient
// forwards to, keeping the envelope sender (so bounces reach the original
// sender) and adding Delivered-To for loop detection, as Postfix's local
// does for aliases and .forward.
func (m *Manager) queueForward(qf *spool.File, rcpt string, to []string) error {
	env := &spool.Envelope{Sender: qf.Sender, Attrs: map[string]string{"origin": "forward", "orig_queue_id": qf.ID}}
	for k, v := range qf.Attrs {
		if k == "body" || k == "smtputf8" {
			env.Attrs[k] = v
		}
	}
	for _, a := range to {
		env.Rcpts = append(env.Rcpts, spool.Recipient{Addr: a, Params: map[string]string{"ORCPT": "rfc822;" + rcpt}})
	}
	w, err := m.spool.Create(env)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(w, "Delivered-To: %s\n", rcpt); err != nil {
		w.Abort()
		return err
	}
	if _, err := io.Copy(w, qf.Content()); err != nil {
		w.Abort()
		return err
	}
	if err := w.Commit(); err != nil {
		return err
	}
	m.log.Info("%s: forwarded as %s", qf.ID, w.ID())
	m.enqueue(w.ID(), spool.Incoming)
	return nil
}

// transport chooses the delivery agent for a recipient: local and virtual
// domains are delivered here, every other domain by SMTP.
func transport(cfg *config.Config, addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return "local"
	}
	d := addr[at+1:]
	if cfg.IsLocalDomain(d) || cfg.IsVirtualDomain(d) {
		return "local"
	}
	return "smtp"
}

// retry is a message waiting for an unreachable delivery agent.
type retry struct {
	timer *time.Timer
	delay time.Duration
}

// Agent failure backoff, per message: a restarting agent is usually back
// within a second (master restarts crashed daemons after 100 ms), one that
// stays away is tried at most every maxAgentRetry.
// removeSyncDelay bounds how long a finished message's removal from
// active/ may wait for the fsync it shares with others.
const removeSyncDelay = 50 * time.Millisecond

const (
	minAgentRetry = 200 * time.Millisecond
	maxAgentRetry = 30 * time.Second
)

// retryLater brings a message back after a delivery agent failure, waiting
// longer each time this message meets an unreachable agent.
func (m *Manager) retryLater(id string) {
	m.retryMu.Lock()
	defer m.retryMu.Unlock()
	if m.waiting == nil {
		m.waiting = map[string]*retry{}
	}
	r := m.waiting[id]
	if r == nil {
		r = &retry{delay: minAgentRetry}
		m.waiting[id] = r
	} else {
		r.delay = min(2*r.delay, maxAgentRetry)
	}
	r.timer = time.AfterFunc(r.delay, func() {
		m.retryMu.Lock()
		if m.waiting[id] == r {
			r.timer = nil
		}
		m.retryMu.Unlock()
		m.enqueue(id, spool.Active)
	})
}

// agentOK is called when an agent answered: messages waiting for one are
// tried now rather than when their timers run out.
func (m *Manager) agentOK(id string) {
	m.retryMu.Lock()
	var now []string
	for wid, r := range m.waiting {
		if wid == id {
			delete(m.waiting, wid)
			continue
		}
		if r.timer != nil && r.timer.Stop() {
			r.timer = nil
			now = append(now, wid)
		}
	}
	m.retryMu.Unlock()
	for _, wid := range now {
		m.enqueue(wid, spool.Active)
	}
}

// permanent turns a temporary status code into the permanent one reported
// when a message expires.
func permanent(dsn string) string {
	if len(dsn) > 1 && dsn[0] == '4' {
		return "5" + dsn[1:]
	}
	if dsn == "" {
		return "5.4.7"
	}
	return dsn
}
