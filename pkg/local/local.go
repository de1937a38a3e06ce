// Package local is the local delivery agent: it resolves a recipient in a
// local or virtual domain (virtual aliases, aliases, ~/.forward,
// :include:, subaddresses, users) and delivers the message to mailboxes,
// commands and files, each as the user whose rights local(8) says apply.
//
// The daemon runs as root only so it can become each of those users. It
// never writes a mailbox, runs a command or reads a user's file as root:
// that work goes to a worker process running as exactly that uid and gid
// (worker.go), so a path the user controls (a symlinked Maildir or
// ~/.forward, a planted tmp/ file) gives the user nothing they did not
// have. Work for the daemon's own uid and gid — every virtual mailbox when
// the daemon runs as vmail, everything on the development instance — is
// done in-process.
package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
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
	a := &Agent{log: log, writer: maildir.NewWriter(cfg.Hostname), workers: newWorkerPool(log, cfg.Hostname)}
	a.SetConfig(cfg)
	return a
}

// SetConfig applies a reloaded configuration.
func (a *Agent) SetConfig(cfg *config.Config) {
	res := recipient.New(cfg)
	res.SetOpener(a.open)
	a.mu.Lock()
	a.cfg, a.resolver = cfg, res
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
	rep := a.deliver(req, qf)
	a.logResult(req, start, rep)
	return rep
}

func (a *Agent) deliver(req agent.Request, qf *os.File) agent.Reply {
	cfg, res := a.current()
	mb, err := address.ParseMailbox(req.Recipient)
	if err != nil {
		return agent.Permfail("5.1.3", "bad recipient address syntax: %v", err)
	}
	// local(8): "If mail arrives for a recipient that is already listed in
	// a Delivered-To: header, the message is bounced."
	seen, err := deliveredTo(io.NewSectionReader(qf, req.Offset, req.Size))
	if errors.Is(err, errTooManyDeliveredTo) {
		return agent.Permfail("5.4.6", "mail forwarding loop for %s: more than %d Delivered-To headers", req.Recipient, maxDeliveredTo)
	}
	if err != nil {
		return agent.Tempfail("4.3.0", "cannot read the message: %v", err)
	}
	if seen[strings.ToLower(req.Recipient)] {
		return agent.Permfail("5.4.6", "mail forwarding loop for %s", req.Recipient)
	}
	targets, err := res.Resolve(mb.Local, mb.Domain)
	fails, permanent := recipient.Failures(err)
	if !permanent {
		return agent.Tempfail("4.3.0", "cannot resolve recipient: %v", err)
	}
	if len(targets) == 0 {
		if len(fails) == 1 && errors.Is(fails[0], recipient.ErrUnknownUser) {
			return agent.Permfail("5.1.1", "unknown user: %q", mb.Local)
		}
		return combine(toAgentFailures(fails))
	}
	// Parts that fail for good (an unknown member, a command that bounced)
	// are reported to the sender while the others are delivered; a part
	// that fails temporarily defers the whole recipient, and the next
	// attempt delivers to all parts again (as Postfix's local does).
	partial := toAgentFailures(fails)
	var what, forward []string
	for _, t := range targets {
		if t.Kind == recipient.Remote || t.Kind == recipient.Forward {
			// A new message carries it on, with its own loop check.
			forward = append(forward, t.Address)
			continue
		}
		if seen[strings.ToLower(t.Address)] {
			partial = append(partial, agent.Failure{DSN: "5.4.6", Text: "mail forwarding loop for " + t.Address})
			continue
		}
		rep := a.deliverTarget(cfg, res, req, mb, qf, t)
		switch rep.Status {
		case agent.Sent:
			what = append(what, rep.Text)
		case agent.Bounced:
			partial = append(partial, agent.Failure{DSN: rep.DSN, Text: rep.Text})
		default:
			return rep
		}
	}
	if len(what) == 0 && len(forward) == 0 {
		return combine(partial)
	}
	if len(forward) > 0 {
		what = append(what, "forwarded as new message")
	}
	return agent.Reply{Status: agent.Sent, DSN: "2.0.0", Text: strings.Join(what, ", "), Partial: partial, Forward: forward}
}

func toAgentFailures(fs []*recipient.Failure) []agent.Failure {
	var out []agent.Failure
	for _, f := range fs {
		out = append(out, agent.Failure{DSN: f.DSN, Text: f.Text})
	}
	return out
}

// combine makes one bounce of failures: the first one's status code, every
// reason.
func combine(fs []agent.Failure) agent.Reply {
	if len(fs) == 0 {
		return agent.Permfail("5.1.1", "recipient resolves to no mailbox")
	}
	texts := make([]string, len(fs))
	for i, f := range fs {
		texts[i] = f.Text
	}
	return agent.Permfail(fs[0].DSN, "%s", strings.Join(texts, "; "))
}

// deliverTarget delivers to one mailbox, command or file.
func (a *Agent) deliverTarget(cfg *config.Config, res *recipient.Resolver, req agent.Request, mb address.Mailbox,
	qf *os.File, t recipient.Target) agent.Reply {
	base := workRequest{Prefix: deliveryHeaders(req, t), Offset: req.Offset, Size: req.Size, Sender: req.Sender,
		Group: -1, Owner: -1}
	c := creds{uid: t.UID, gid: t.GID, group: -1}
	switch t.Kind {
	case recipient.Maildir:
		base.Root = t.Path
		rep, _, err := a.run(c, base, qf)
		if err == nil && rep.Err != "" {
			err = errors.New(rep.Err)
		}
		if err != nil {
			// Disk full, quota, permissions: never a loss, always a retry
			// (DESIGN §2.6).
			return agent.Tempfail("4.2.0", "cannot write maildir %s: %v", t.Path, err)
		}
		return agent.Reply{Status: agent.Sent, DSN: "2.0.0", Text: "delivered to maildir"}

	case recipient.Mbox:
		base.Op, base.Path, base.Owner = opMbox, t.Path, t.UID
		base.Mode, base.LockTimeout = 0600, cfg.Local.LockTimeout.D()
		if g, ok := spoolGroup(filepath.Dir(t.Path), t.GID); ok {
			// Debian's /var/mail is 2775 root:mail: mailboxes are 0660
			// user:mail (Policy §11.6), and the dotlock needs group mail.
			c.group, base.Group, base.Mode = g, g, 0660
		}
		rep, _, err := a.run(c, base, qf)
		if err == nil && rep.Err != "" {
			err = errors.New(rep.Err)
		}
		switch {
		case err == nil:
			return agent.Reply{Status: agent.Sent, DSN: "2.0.0", Text: "delivered to mailbox"}
		case rep.Locked:
			return agent.Tempfail("4.2.0", "cannot update mailbox %s: %v", t.Path, err)
		}
		// A symlink or hard link in the spool is the administrator's to
		// fix, like any other failure to write: defer, never lose.
		return agent.Tempfail("4.2.0", "cannot write mailbox %s: %v", t.Path, err)

	case recipient.File:
		return a.deliverFile(cfg, c, base, qf, t)

	case recipient.Pipe:
		base.Op, base.Command = opPipe, t.Path
		base.TimeLimit = cfg.Local.CommandTimeLimit.D()
		base.Env = commandEnv(res, req, mb, t)
		rep, _, err := a.run(c, base, qf)
		if err != nil {
			return agent.Tempfail("4.3.0", "cannot run command %q: %v", t.Path, err)
		}
		return commandResult(t.Path, rep)
	}
	return agent.Tempfail("4.3.0", "delivery to %s (%s) is not available", t.Path, t.Kind)
}

// deliverFile appends to a file named in an alias or .forward, in mbox
// format with the same locking as a mailbox; a name ending in "/" is a
// Maildir, and /dev/null takes anything (local(8)).
func (a *Agent) deliverFile(cfg *config.Config, c creds, base workRequest, qf *os.File, t recipient.Target) agent.Reply {
	if t.Path == "/dev/null" {
		return agent.Reply{Status: agent.Sent, DSN: "2.0.0", Text: "delivered to file: /dev/null"}
	}
	if strings.HasSuffix(t.Path, "/") {
		base.Root = filepath.Clean(t.Path)
		rep, _, err := a.run(c, base, qf)
		if err == nil && rep.Err != "" {
			err = errors.New(rep.Err)
		}
		if err != nil {
			return agent.Tempfail("4.2.0", "cannot write maildir %s: %v", t.Path, err)
		}
		return agent.Reply{Status: agent.Sent, DSN: "2.0.0", Text: "delivered to maildir: " + t.Path}
	}
	base.Op, base.Path, base.Mode, base.NoExec = opMbox, t.Path, 0600, true
	base.DotlockMayFail, base.LockTimeout = true, cfg.Local.LockTimeout.D()
	rep, _, err := a.run(c, base, qf)
	if err == nil && rep.Err != "" {
		err = errors.New(rep.Err)
	}
	switch {
	case err == nil:
		return agent.Reply{Status: agent.Sent, DSN: "2.0.0", Text: "delivered to file: " + t.Path}
	case rep.Executable:
		// HOSTILE 52: never append to a program.
		return agent.Permfail("5.7.1", "cannot deliver to file %s: it has execute permission", t.Path)
	case rep.Unacceptable:
		return agent.Permfail("5.2.0", "cannot deliver to file %s: %v", t.Path, err)
	}
	return agent.Tempfail("4.2.0", "cannot write file %s: %v", t.Path, err)
}

// spoolGroup returns the group to add to a worker writing an mbox in dir:
// the folder's group when the folder is writable by that group and not by
// everyone (Debian's /var/mail, 2775 root:mail), as Postfix's local writes
// such a spool with the mail group; none when the user's own gid already
// is that group, or the folder is world-writable (sticky /var/mail, where
// anyone may create the dotlock). Group root is never lent to anyone.
func spoolGroup(dir string, userGID int) (int, bool) {
	fi, err := os.Stat(dir)
	if err != nil {
		return -1, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || fi.Mode()&0020 == 0 || fi.Mode()&0002 != 0 {
		return -1, false
	}
	g := int(st.Gid)
	if g == userGID || g == 0 {
		return -1, false
	}
	return g, true
}

// run does req with credentials c: in this process when it has them
// already, in a worker otherwise (which needs root).
func (a *Agent) run(c creds, req workRequest, qf *os.File) (workReply, *os.File, error) {
	if c.uid == os.Geteuid() && c.gid == os.Getegid() {
		rep, f := runOp(req, qf, a.writer)
		return rep, f, nil
	}
	if os.Geteuid() != 0 {
		return workReply{}, nil, fmt.Errorf("cannot deliver as uid %d: the local daemon does not run as root", c.uid)
	}
	return a.workers.call(c, req, qf)
}

// open is the resolver's Opener: a ~/.forward or :include: file opened by
// a worker running as the user, so a link to a file the user may not read
// gives nothing.
func (a *Agent) open(req recipient.OpenRequest) (*os.File, error) {
	if req.UID == os.Geteuid() && (req.GID == os.Getegid() || req.UID == 0) {
		return recipient.OpenFile(req)
	}
	if os.Geteuid() != 0 {
		return nil, &fs.PathError{Op: fmt.Sprintf("open as uid %d", req.UID), Path: req.Path, Err: fs.ErrPermission}
	}
	rep, f, err := a.workers.call(creds{uid: req.UID, gid: req.GID, group: -1},
		workRequest{Op: opOpen, Path: req.Path, NoFollow: req.NoFollow}, nil)
	if err != nil {
		return nil, err
	}
	if rep.Errno != 0 {
		return nil, &fs.PathError{Op: "open", Path: req.Path, Err: syscall.Errno(rep.Errno)}
	}
	if rep.Err != "" || f == nil {
		return nil, fmt.Errorf("open %s: %s", req.Path, rep.Err)
	}
	return f, nil
}

// commandEnv is the environment of a command, as local(8) gives it:
// envelope values filtered to safe characters, the rights user's HOME,
// SHELL and LOGNAME, and a fixed PATH.
func commandEnv(res *recipient.Resolver, req agent.Request, mb address.Mailbox, t recipient.Target) []string {
	orig := req.Orig
	if i := strings.IndexByte(orig, ';'); i >= 0 {
		orig = orig[i+1:] // ORCPT=rfc822;addr
	}
	if orig == "" {
		orig = req.Recipient
	}
	local := strings.ToLower(mb.Local)
	user := local
	if ext := res.Extension(local); ext != "" {
		user = local[:len(local)-len(ext)-1]
	}
	env := []string{
		"PATH=/usr/bin:/bin",
		"SENDER=" + filterEnv(req.Sender),
		"RECIPIENT=" + filterEnv(req.Recipient),
		"ORIGINAL_RECIPIENT=" + filterEnv(orig),
		"LOCAL=" + filterEnv(local),
		"DOMAIN=" + filterEnv(strings.ToLower(mb.Domain)),
		"EXTENSION=" + filterEnv(res.Extension(local)),
		"USER=" + filterEnv(user),
		"LOGNAME=" + filterEnv(t.User),
	}
	if t.Home != "" {
		env = append(env, "HOME="+t.Home)
	}
	if t.Shell != "" {
		env = append(env, "SHELL="+t.Shell)
	}
	if tz, ok := os.LookupEnv("TZ"); ok {
		env = append(env, "TZ="+tz) // local(8): "TZ ... is always passed on"
	}
	return env
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
func (a *Agent) logResult(req agent.Request, start time.Time, rep agent.Reply) {
	now := time.Now()
	d := maillog.Delay
	delays := fmt.Sprintf("%s/%s/0/%s", d(req.Active.Sub(req.Arrival)), d(start.Sub(req.Active)), d(now.Sub(start)))
	a.log.Info("%s: to=<%s>, relay=local, delay=%s, delays=%s, dsn=%s, status=%s (%s)",
		req.QueueID, req.Recipient, d(now.Sub(req.Arrival)), delays, rep.DSN, rep.Status, rep.Text)
}
