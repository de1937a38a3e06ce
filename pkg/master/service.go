package master

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/posthorn/posthorn/pkg/config"
	"github.com/posthorn/posthorn/pkg/spool"
)

// Restart backoff: quick enough that a crash costs a fraction of a second,
// slow enough that a daemon failing at start-up does not spin.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 10 * time.Second
	// A child that stayed up this long was healthy: its next crash starts
	// the backoff over.
	resetAfter = 10 * time.Second
)

// spec is one line of what Postfix keeps in master.cf: a daemon program,
// the user it runs as and the listeners it inherits.
type spec struct {
	name    string // program in DaemonDir and its log name
	user    string // "" runs it as the user who started master
	setting string // where user comes from, for error messages
	listen  []listenSpec
	// tls: the daemon reads the TLS key (tls.key_file) itself, and gets
	// the group that may read it (keyGroup).
	tls bool
	// mailFlow: the daemon moves mail through the spool, one short
	// system call after another, and runs with mailFlowTimerSlack.
	mailFlow bool
}

// listenSpec is one listening socket. name is what the daemon looks it up
// by (smtp, qmgr); several sockets may share a name.
type listenSpec struct {
	name    string
	network string // tcp4, tcp6, tcp or unix
	addr    string
	mode    os.FileMode // of a Unix socket; 0 means 0600
}

func (l listenSpec) key() string { return l.network + " " + l.addr }

// specs is the table of services master runs for cfg. A new daemon is one
// more entry here.
func specs(cfg *config.Config) ([]spec, error) {
	private := func(name string) []listenSpec {
		return []listenSpec{{name, "unix", filepath.Join(cfg.SpoolDir, spool.Private, name), 0}}
	}
	var out []spec
	// One smtpd serves the MX service and both submission services; the
	// listener's name tells it which service a socket is.
	var ls []listenSpec
	for _, svc := range []struct {
		name, setting string
		addrs         []string
	}{
		{"smtp", "smtpd.listen", cfg.SMTPD.Listen},
		{"submission", "smtpd.submission_listen", cfg.SMTPD.SubmissionListen},
		{"submissions", "smtpd.submissions_listen", cfg.SMTPD.SubmissionsListen},
	} {
		for _, a := range svc.addrs {
			n, err := tcpNetwork(a)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", svc.setting, err)
			}
			ls = append(ls, listenSpec{svc.name, n, a, 0})
		}
	}
	if len(ls) > 0 {
		out = append(out, spec{name: "smtpd", user: cfg.MailOwner, setting: "mail_owner", listen: ls, tls: true, mailFlow: true})
	}
	out = append(out,
		spec{name: "qmgr", user: cfg.MailOwner, setting: "mail_owner", listen: private("qmgr"), mailFlow: true},
		// Any local user may submit mail: public/pickup is world-writable;
		// pickup learns who connected from the kernel (SO_PEERCRED).
		spec{name: "pickup", user: cfg.MailOwner, setting: "mail_owner", mailFlow: true,
			listen: []listenSpec{{"pickup", "unix", filepath.Join(cfg.SpoolDir, spool.Public, "pickup"), 0666}}},
		spec{name: "local", user: cfg.Local.DeliveryUser, setting: "local.delivery_user", listen: private("local"), mailFlow: true},
		// smtp parses what remote servers send: it runs as the mail owner.
		spec{name: "smtp", user: cfg.MailOwner, setting: "mail_owner", listen: private("smtp"), mailFlow: true},
		// auth keeps master's user, root in production: pam_unix reads
		// /etc/shadow itself only as root (otherwise its helper checks
		// the calling user's own password and nobody else's). Its socket
		// belongs to the mail owner, as every private socket, so that
		// smtpd and the login processes can ask it and nobody else can.
		spec{name: "auth", listen: private("auth")},
	)
	// POP3: the login process parses the network as the mail owner; the
	// dispatcher only passes descriptors and needs root to start each
	// mailbox owner's worker.
	var pl []listenSpec
	for _, svc := range []struct {
		name, setting string
		addrs         []string
	}{{"pop3", "pop3.listen", cfg.POP3.Listen}, {"pop3s", "pop3.listen_tls", cfg.POP3.ListenTLS}} {
		for _, a := range svc.addrs {
			n, err := tcpNetwork(a)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", svc.setting, err)
			}
			pl = append(pl, listenSpec{svc.name, n, a, 0})
		}
	}
	if len(pl) > 0 {
		out = append(out,
			spec{name: "pop3-login", user: cfg.MailOwner, setting: "mail_owner", listen: pl, tls: true},
			spec{name: "pop3d", listen: private("pop3d")})
	}
	// IMAP, the same way: imap-login parses the network as the mail
	// owner; imapd only passes descriptors and needs root to start each
	// mailbox owner's worker.
	var il []listenSpec
	for _, svc := range []struct {
		name, setting string
		addrs         []string
	}{{"imap", "imap.listen", cfg.IMAP.Listen}, {"imaps", "imap.listen_tls", cfg.IMAP.ListenTLS}} {
		for _, a := range svc.addrs {
			n, err := tcpNetwork(a)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", svc.setting, err)
			}
			il = append(il, listenSpec{svc.name, n, a, 0})
		}
	}
	if len(il) > 0 {
		out = append(out,
			spec{name: "imap-login", user: cfg.MailOwner, setting: "mail_owner", listen: il, tls: true},
			spec{name: "imapd", listen: private("imapd")})
	}
	return out, nil
}

// tcpNetwork picks the address family from the address: an IPv6 socket
// bound to [::] must not also claim IPv4, or "0.0.0.0:25" and "[::]:25"
// (the default) would collide, which is why Postfix sets IPV6_V6ONLY too.
func tcpNetwork(addr string) (string, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("%q: %w", addr, err)
	}
	ip := net.ParseIP(host)
	switch {
	case ip == nil:
		return "tcp", nil
	case ip.To4() != nil:
		return "tcp4", nil
	default:
		return "tcp6", nil
	}
}

// credential returns how a child of a root master runs as name: its uid,
// its primary group and no supplementary groups, so nothing root happened
// to be a member of leaks into an unprivileged daemon. nil runs the child
// as master's own user.
func credential(name, setting string, root bool) (*syscall.Credential, error) {
	if !root || name == "" {
		return nil, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		var unknown user.UnknownUserError
		if errors.As(err, &unknown) {
			return nil, fmt.Errorf("%s: unknown user %q", setting, name)
		}
		return nil, fmt.Errorf("%s: look up user %q: %w", setting, name, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("%s: user %q has uid %q gid %q", setting, name, u.Uid, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

func sameCred(a, b *syscall.Credential) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Uid == b.Uid && a.Gid == b.Gid
}

// listener is a socket master bound and holds for the life of its service.
type listener struct {
	listenSpec
	file *os.File
}

// bind creates a listening socket. Unix sockets are handed to the mail
// owner (uid >= 0) with mode 0600 unless the spec says otherwise: the
// daemons that connect to private ones all run as that user, and private/
// keeps everybody else out anyway.
func bind(l listenSpec, uid, gid int) (*listener, error) {
	if l.network != "unix" {
		nl, err := net.Listen(l.network, l.addr)
		if err != nil {
			return nil, err
		}
		f, err := nl.(*net.TCPListener).File()
		nl.Close() // f is a duplicate; the socket keeps listening
		if err != nil {
			return nil, fmt.Errorf("listen %s: %w", l.key(), err)
		}
		return &listener{l, f}, nil
	}
	if fi, err := os.Lstat(l.addr); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("listen unix %s: exists and is not a socket", l.addr)
		}
		// Left by an earlier master; we hold the lock, so nobody serves it.
		if err := os.Remove(l.addr); err != nil {
			return nil, fmt.Errorf("listen unix %s: remove stale socket: %w", l.addr, err)
		}
	}
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: l.addr, Net: "unix"})
	if err != nil {
		return nil, err
	}
	ul.SetUnlinkOnClose(false)
	f, err := ul.File()
	ul.Close()
	if err == nil {
		mode := l.mode
		if mode == 0 {
			mode = 0600
		}
		err = os.Chmod(l.addr, mode)
	}
	if err == nil && uid >= 0 {
		err = os.Chown(l.addr, uid, gid)
	}
	if err != nil {
		if f != nil {
			f.Close()
		}
		return nil, fmt.Errorf("listen unix %s: %w", l.addr, err)
	}
	return &listener{l, f}, nil
}

// rebind returns listeners for want, reusing those in have with the same
// address: a socket that stays must not be closed and bound again, or
// connections waiting in its backlog would be lost (and a TCP port could
// not be bound twice anyway). Listeners of have that are not reused are
// returned as unused; on error nothing new is left open.
func rebind(want []listenSpec, have []*listener, uid, gid int) (ls, unused []*listener, err error) {
	byKey := map[string]*listener{}
	for _, l := range have {
		byKey[l.key()] = l
	}
	var fresh []*listener
	for _, w := range want {
		if l := byKey[w.key()]; l != nil {
			delete(byKey, w.key())
			ls = append(ls, &listener{w, l.file})
			continue
		}
		l, err := bind(w, uid, gid)
		if err != nil {
			for _, f := range fresh {
				f.file.Close()
			}
			return nil, nil, err
		}
		fresh = append(fresh, l)
		ls = append(ls, l)
	}
	for _, l := range have {
		if byKey[l.key()] == l {
			unused = append(unused, l)
		}
	}
	return ls, unused, nil
}

func sameListen(a []listenSpec, b []*listener) bool {
	return slices.EqualFunc(a, b, func(x listenSpec, y *listener) bool { return x == y.listenSpec })
}

// keyGroup returns the group through which a daemon running as uid:gid may
// read the TLS key, when only a group grants it: Debian's snakeoil key is
// root:ssl-cert 0640, readable by members of ssl-cert (as Postfix's and
// Dovecot's packages arrange by group membership). It returns -1 when the
// daemon can read the key anyway or no group helps.
func keyGroup(keyFile string, uid, gid uint32) int {
	fi, err := os.Stat(keyFile)
	if err != nil {
		return -1
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return -1
	}
	mode := fi.Mode().Perm()
	switch {
	case st.Uid == uid && mode&0400 != 0, st.Gid == gid && mode&0040 != 0, mode&0004 != 0:
		return -1
	case mode&0040 != 0:
		return int(st.Gid)
	}
	return -1
}
