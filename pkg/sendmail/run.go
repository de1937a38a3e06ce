package sendmail

import (
	"errors"
	"fmt"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	"github.com/posthorn/posthorn/pkg/address"
	"github.com/posthorn/posthorn/pkg/admin"
	"github.com/posthorn/posthorn/pkg/config"
	"github.com/posthorn/posthorn/pkg/master"
	"github.com/posthorn/posthorn/pkg/pickup"
	"github.com/posthorn/posthorn/pkg/qmgr"
	"github.com/posthorn/posthorn/pkg/spool"
)

// Exit statuses, sysexits(3): what cron, PHP and scripts look at.
const (
	exOK          = 0
	exUsage       = 64
	exDataErr     = 65
	exUnavailable = 69
	exTempFail    = 75
	exConfig      = 78
)

// Main runs sendmail (or mailq / newaliases, by prog) with args.
func Main(prog string, args []string, env admin.Env) int {
	prog = filepath.Base(prog)
	o, err := Parse(prog, args)
	if err != nil {
		fmt.Fprintf(env.Stderr, "%s: %v\n", prog, err)
		return exUsage
	}
	cfgArgs := []string{}
	if o.Config != "" {
		cfgArgs = []string{"-C", o.Config}
	}
	switch o.Mode {
	case ModeQueueList:
		return admin.Mailq(cfgArgs, env)
	case ModeNewaliases:
		return admin.Newaliases(cfgArgs, env)
	}
	path := o.Config
	if path == "" {
		path = config.PathFromEnv()
	}
	cfg, err := config.Load(path)
	if err != nil {
		fmt.Fprintf(env.Stderr, "%s: %v\n", prog, err)
		return exConfig
	}
	switch o.Mode {
	case ModeFlush:
		n := qmgr.NewNotifier(filepath.Join(cfg.SpoolDir, spool.Private, "qmgr"))
		if err := n.Notify(qmgr.Notice{Op: "flush"}); err != nil {
			fmt.Fprintf(env.Stderr, "%s: cannot flush: the mail system is down (%v)\n", prog, err)
			return exUnavailable
		}
		return exOK
	case ModeDaemon:
		if _, err := master.StartBackground(cfg, filepath.Join(cfg.DaemonDir, "master")); err != nil {
			fmt.Fprintf(env.Stderr, "%s: %v\n", prog, err)
			return exUnavailable
		}
		return exOK
	case ModeVerify:
		return verify(cfg, o, env)
	case ModeSMTP:
		fmt.Fprintf(env.Stderr, "%s: -bs is not supported by this version\n", prog)
		return exUnavailable
	}
	return deliver(cfg, o, env, prog)
}

// defaultSender is the invoking user at the host name (Postfix's
// myorigin), as cron's and mail(1)'s messages expect.
func defaultSender(cfg *config.Config) string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	return name + "@" + cfg.Hostname
}

func deliver(cfg *config.Config, o *Options, env admin.Env, prog string) int {
	sender := o.Sender
	if !o.SenderSet {
		sender = defaultSender(cfg)
	} else if sender != "" && !strings.Contains(sender, "@") {
		sender += "@" + cfg.Hostname
	}
	if sender != "" {
		if _, err := address.ParseMailbox(sender); err != nil {
			fmt.Fprintf(env.Stderr, "%s: bad sender address %q\n", prog, sender)
			return exUsage
		}
	}
	p, err := Prepare(o, env.Stdin, sender, cfg.Hostname, cfg.MessageSizeLimit, time.Now())
	switch {
	case errors.Is(err, ErrNoRecipients):
		fmt.Fprintf(env.Stderr, "%s: fatal: No recipient addresses found in message header\n", prog)
		return exUsage
	case errors.Is(err, ErrTooBig):
		fmt.Fprintf(env.Stderr, "%s: fatal: message file too big\n", prog)
		return exDataErr
	case err != nil:
		fmt.Fprintf(env.Stderr, "%s: fatal: %v\n", prog, err)
		return exDataErr
	}
	for _, r := range p.Recipients {
		if _, err := address.ParseMailbox(r); err != nil {
			fmt.Fprintf(env.Stderr, "%s: fatal: bad recipient address %q\n", prog, r)
			return exDataErr
		}
	}
	req := &pickup.Request{Sender: p.Sender, Recipients: p.Recipients, Notify: o.Notify, Ret: o.Ret, EnvID: o.EnvID}
	id, err := Submit(cfg.SpoolDir, req, p.Content)
	var se *SubmitError
	switch {
	case errors.As(err, &se):
		fmt.Fprintf(env.Stderr, "%s: fatal: %s\n", prog, se.Msg)
		if se.Temp {
			return exTempFail
		}
		return exDataErr
	case err != nil:
		fmt.Fprintf(env.Stderr, "%s: fatal: %v\n", prog, err)
		return exTempFail
	}
	if o.Verbose {
		if id == "" {
			fmt.Fprintf(env.Stderr, "%s: the mail system is down; the message waits in the maildrop\n", prog)
		} else {
			fmt.Fprintf(env.Stderr, "%s: queued as %s\n", prog, id)
		}
	}
	return exOK
}

// verify reports, for each recipient, how it would be delivered (-bv).
// Postfix mails this report; printing it serves the same scripts' purpose
// without sending anything.
func verify(cfg *config.Config, o *Options, env admin.Env) int {
	if len(o.Recipients) == 0 {
		fmt.Fprintln(env.Stderr, "sendmail: -bv needs recipients")
		return exUsage
	}
	status := exOK
	for _, r := range o.Recipients {
		m, err := address.ParseMailbox(r)
		switch {
		case err != nil:
			fmt.Fprintf(env.Stdout, "<%s>: undeliverable: bad address syntax\n", r)
			status = exDataErr
		case m.Domain == "" || cfg.IsLocalDomain(m.Domain) || cfg.IsVirtualDomain(m.Domain):
			fmt.Fprintf(env.Stdout, "<%s>: deliverable via local\n", m.String())
		default:
			fmt.Fprintf(env.Stdout, "<%s>: deliverable via smtp\n", m.String())
		}
	}
	return status
}
