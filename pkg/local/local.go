// Package local is the local delivery agent: it resolves a recipient in a
// local or virtual domain (aliases, subaddresses, users) and writes the
// message into the mailbox as the mailbox's owner.
//
// The daemon runs as root only so it can become each owner. It never writes
// a user's mailbox as root: deliveries for another uid go to a worker
// process running as exactly that uid and gid, with no supplementary groups
// (worker.go), so a path the user controls (a symlinked Maildir, a planted
// tmp/ file) gives the user nothing they did not have. Deliveries for the
// daemon's own uid — every virtual mailbox when the daemon runs as vmail,
// everything on the development instance — are written in-process.
package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/posthorn/posthorn/pkg/address"
	"github.com/posthorn/posthorn/pkg/agent"
	"github.com/posthorn/posthorn/pkg/config"
	"github.com/posthorn/posthorn/pkg/maildir"
	"github.com/posthorn/posthorn/pkg/maillog"
	"github.com/posthorn/posthorn/pkg/recipient"
)

// Agent delivers requests from qmgr.
type Agent struct {
	log *maillog.Logger

	mu       sync.Mutex
	cfg      *config.Config
	resolver *recipient.Resolver

	writer  *maildir.Writer
	workers *workerPool
}

// New returns an agent for cfg.
func New(cfg *config.Config, log *maillog.Logger) *Agent {
	return &Agent{log: log, cfg: cfg, resolver: recipient.New(cfg),
		writer: maildir.NewWriter(cfg.Hostname), workers: newWorkerPool(log, cfg.Hostname)}
}

// SetConfig applies a reloaded configuration.
func (a *Agent) SetConfig(cfg *config.Config) {
	a.mu.Lock()
	a.cfg, a.resolver = cfg, recipient.New(cfg)
	a.mu.Unlock()
}

func (a *Agent) current() (*config.Config, *recipient.Resolver) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cfg, a.resolver
}

// Close stops the worker processes.
func (a *Agent) Close() { a.workers.close() }

// Deliver handles one request; it is an agent.Handler.
func (a *Agent) Deliver(ctx context.Context, req agent.Request, qf *os.File) agent.Reply {
	start := time.Now()
	rep, what := a.deliver(req, qf)
	a.logResult(req, start, rep, what)
	return rep
}

func (a *Agent) deliver(req agent.Request, qf *os.File) (agent.Reply, string) {
	_, res := a.current()
	mb, err := address.ParseMailbox(req.Recipient)
	if err != nil {
		return agent.Permfail("5.1.3", "bad recipient address syntax: %v", err), ""
	}
	targets, err := res.Resolve(mb.Local, mb.Domain)
	var partial []agent.Failure
	if errors.Is(err, recipient.ErrUnknownUser) {
		if len(targets) == 0 {
			return agent.Permfail("5.1.1", "unknown user: %q", mb.Local), ""
		}
		// Some members of an alias are unknown: the others get the message,
		// the sender hears about these (as Postfix's local does).
		partial = append(partial, agent.Failure{DSN: "5.1.1", Text: err.Error()})
	} else if err != nil {
		return agent.Tempfail("4.3.0", "cannot resolve recipient: %v", err), ""
	}
	if len(targets) == 0 {
		return agent.Permfail("5.1.1", "recipient resolves to no mailbox"), ""
	}
	// Every target must succeed for the recipient to be done; a retry
	// redelivers to all (as Postfix's local does).
	var what, forward []string
	for _, t := range targets {
		if t.Kind == recipient.Remote {
			forward = append(forward, t.Address)
			continue
		}
		rep, w := a.deliverTarget(req, qf, t)
		if rep.Status != agent.Sent {
			return rep, w
		}
		what = append(what, w)
	}
	if len(forward) > 0 {
		what = append(what, "forwarded as new message")
	}
	return agent.Reply{Status: agent.Sent, DSN: "2.0.0", Text: strings.Join(what, ", "), Partial: partial, Forward: forward}, ""
}

func (a *Agent) deliverTarget(req agent.Request, qf *os.File, t recipient.Target) (agent.Reply, string) {
	switch t.Kind {
	case recipient.Maildir:
	case recipient.Mbox:
		return agent.Tempfail("4.3.0", "mbox delivery to %s is not available in this version; set local.home_mailbox = \"Maildir/\"", t.Path), ""
	default:
		return agent.Tempfail("4.3.0", "delivery to %s is not available in this version", t.Path), ""
	}
	prefix := deliveryHeaders(req, t)
	var err error
	if t.UID == os.Geteuid() && t.GID == os.Getegid() {
		_, err = a.writer.Deliver(t.Path, prefix, io.NewSectionReader(qf, req.Offset, req.Size))
	} else if os.Geteuid() != 0 {
		return agent.Tempfail("4.3.0", "cannot deliver as uid %d: the local daemon does not run as root", t.UID), ""
	} else {
		err = a.workers.deliver(t.UID, t.GID, workRequest{Root: t.Path, Prefix: prefix, Offset: req.Offset, Size: req.Size}, qf)
	}
	if err != nil {
		// Disk full, quota, permissions: never a loss, always a retry (DESIGN §2.6).
		return agent.Tempfail("4.2.0", "cannot write maildir %s: %v", t.Path, err), ""
	}
	return agent.Reply{Status: agent.Sent, DSN: "2.0.0", Text: "delivered to maildir"}, "delivered to maildir"
}

// deliveryHeaders are the lines local(8) prepends: Return-Path with the
// envelope sender, X-Original-To with the recipient as received, and
// Delivered-To with the mailbox's address (for loop detection).
func deliveryHeaders(req agent.Request, t recipient.Target) []byte {
	clean := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r == '\r' || r == '\n' {
				return -1
			}
			return r
		}, s)
	}
	return []byte(fmt.Sprintf("Return-Path: <%s>\nX-Original-To: %s\nDelivered-To: %s\n",
		clean(req.Sender), clean(req.Recipient), clean(t.Address)))
}

// logResult writes Postfix's delivery line:
// to=<..>, relay=local, delay=.., delays=a/b/c/d, dsn=.., status=.. (..)
func (a *Agent) logResult(req agent.Request, start time.Time, rep agent.Reply, _ string) {
	now := time.Now()
	d := maillog.Delay
	delays := fmt.Sprintf("%s/%s/0/%s", d(req.Active.Sub(req.Arrival)), d(start.Sub(req.Active)), d(now.Sub(start)))
	a.log.Info("%s: to=<%s>, relay=local, delay=%s, delays=%s, dsn=%s, status=%s (%s)",
		req.QueueID, req.Recipient, d(now.Sub(req.Arrival)), delays, rep.DSN, rep.Status, rep.Text)
}
