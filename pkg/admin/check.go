package admin

import (
	"errors"
	"fmt"
	"net"
	"os"
	osuser "os/user"
	"path/filepath"

	"github.com/posthorn/posthorn/pkg/aliases"
	"github.com/posthorn/posthorn/pkg/config"
	"github.com/posthorn/posthorn/pkg/master"
	"github.com/posthorn/posthorn/pkg/spool"
	"github.com/posthorn/posthorn/pkg/userdb"
)

// check finds misconfiguration before it costs mail, and says how to fix
// each problem. As root it also creates or repairs the spool folders, as
// postfix check does.
func check(cfg *config.Config, env Env) int {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	owner := -1
	ownerGID := -1
	for _, u := range []struct{ setting, name string }{
		{"mail_owner", cfg.MailOwner}, {"local.delivery_user", cfg.Local.DeliveryUser}, {"virtual.user", cfg.Virtual.User},
	} {
		if u.name == "" {
			continue
		}
		pw, err := osuser.Lookup(u.name)
		if err != nil {
			bad("%s: no user %q: create it (useradd --system %s) or change the setting", u.setting, u.name, u.name)
			continue
		}
		if u.setting == "mail_owner" {
			fmt.Sscan(pw.Uid, &owner)
			fmt.Sscan(pw.Gid, &ownerGID)
		}
	}
	if cfg.Virtual.Group != "" {
		if _, err := osuser.LookupGroup(cfg.Virtual.Group); err != nil {
			bad("virtual.group: no group %q: create it (groupadd --system %s)", cfg.Virtual.Group, cfg.Virtual.Group)
		}
	}
	for _, d := range []string{"master", "smtpd", "qmgr", "local"} {
		p := filepath.Join(cfg.DaemonDir, d)
		if st, err := os.Stat(p); err != nil || st.Mode().Perm()&0111 == 0 {
			bad("daemon_directory: %s is missing or not executable: run make install or install.sh", p)
		}
	}
	if os.Geteuid() == 0 {
		if cfg.MailOwner == "" {
			owner, ownerGID = -1, -1
		}
		if owner >= 0 || cfg.MailOwner == "" {
			if err := spool.Prepare(cfg.SpoolDir, owner, ownerGID); err != nil {
				bad("spool: %v", err)
			}
		}
	}
	for _, q := range []string{spool.Incoming, spool.Active, spool.Deferred, spool.Hold, spool.Corrupt, spool.Private} {
		p := filepath.Join(cfg.SpoolDir, q)
		st, err := os.Stat(p)
		switch {
		case err != nil:
			bad("spool: %s is missing: posthorn start creates it (or run posthorn check as root)", p)
		case st.Mode().Perm()&0077 != 0:
			bad("spool: %s has mode %o, want 0700: chmod 700 %s", p, st.Mode().Perm(), p)
		}
	}
	if _, err := aliases.Load(cfg.AliasFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		bad("alias_file: %v", err)
	}
	if _, err := userdb.Load(cfg.Virtual.UsersFile); err != nil {
		bad("virtual.users_file: %v", err)
	}
	if !cfg.TLS.Generate {
		for _, f := range []string{cfg.TLS.CertFile, cfg.TLS.KeyFile} {
			if fh, err := os.Open(f); err != nil {
				bad("tls: cannot read %s: %v", f, err)
			} else {
				fh.Close()
			}
		}
	}
	if _, running := master.Running(cfg); !running {
		// A port held by a running Postfix, Exim or Dovecot is the usual
		// conflict on a host being moved over.
		mta, imap := "is another mail server running? systemctl stop postfix exim4", "is Dovecot running? systemctl stop dovecot"
		for _, g := range []struct {
			key, hint string
			addrs     []string
		}{
			{"smtpd.listen", mta, cfg.SMTPD.Listen},
			{"smtpd.submission_listen", mta, cfg.SMTPD.SubmissionListen},
			{"smtpd.submissions_listen", mta, cfg.SMTPD.SubmissionsListen},
			{"imap.listen", imap, cfg.IMAP.Listen},
			{"imap.listen_tls", imap, cfg.IMAP.ListenTLS},
			{"pop3.listen", imap, cfg.POP3.Listen},
			{"pop3.listen_tls", imap, cfg.POP3.ListenTLS},
		} {
			for _, a := range g.addrs {
				l, err := net.Listen("tcp", a)
				if err != nil {
					bad("%s: %s: %v (%s)", g.key, a, err, g.hint)
					continue
				}
				l.Close()
			}
		}
	}
	for _, p := range problems {
		fmt.Fprintf(env.Stderr, "posthorn: %s\n", p)
	}
	if len(problems) > 0 {
		return exitConfig
	}
	fmt.Fprintf(env.Stdout, "posthorn: configuration %s is valid\n", cfg.Path)
	return exitOK
}
