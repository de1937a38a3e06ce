// Package admin is the posthorn command: the one admin tool (DESIGN §4).
//
//	posthorn [-c FILE] start | stop | reload | status | check
//	posthorn [-c FILE] queue list | show | flush | delete | hold | release | requeue
//	posthorn [-c FILE] config [-n | -d]
//	posthorn [-c FILE] user add | del | passwd NAME, user list
//	posthorn [-c FILE] aliases
//
// mailq and newaliases are the same code under Postfix's names.
package admin

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	osuser "os/user"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"golang.org/x/term"

	"github.com/posthorn/posthorn/pkg/aliases"
	"github.com/posthorn/posthorn/pkg/config"
	"github.com/posthorn/posthorn/pkg/mailq"
	"github.com/posthorn/posthorn/pkg/master"
	"github.com/posthorn/posthorn/pkg/spool"
	"github.com/posthorn/posthorn/pkg/userdb"
)

// Env is what a command needs from its surroundings, so tests can drive it.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

// Exit statuses follow sysexits(3) where a script may care.
const (
	exitOK       = 0
	exitFail     = 1
	exitUsage    = 64 // EX_USAGE
	exitNoInput  = 66 // EX_NOINPUT
	exitSoftware = 70 // EX_SOFTWARE
	exitConfig   = 78 // EX_CONFIG
)

const usage = `usage: posthorn [-c FILE] COMMAND [ARGS]

commands:
  start              start the mail system in the background
  stop               stop it, letting deliveries in flight finish
  reload             re-read the configuration (SIGHUP to master)
  status             exit 0 if the mail system is running
  check              validate configuration, permissions and spool
  queue list         list the queue in mailq format
  queue show ID      print a queued message with its envelope (postcat -q)
  queue flush        retry every deferred message now (postqueue -f)
  queue delete ID..  delete messages; ALL for every one, - to read IDs (postsuper -d)
  queue hold ID..    put messages on hold (postsuper -h)
  queue release ID.. release held messages (postsuper -H)
  queue requeue ID.. queue messages again from the start (postsuper -r)
  config [-n|-d]     print the effective settings (-n: non-default only, -d: defaults)
  user add NAME      add a virtual user; password on standard input
  user passwd NAME   change a virtual user's password (standard input)
  user del NAME      delete a virtual user
  user list          list virtual users
  aliases            validate the aliases file (newaliases)

-c FILE selects another configuration (default $POSTHORN_CONFIG, else /etc/posthorn/posthorn.toml).
`

// helps is what "posthorn COMMAND --help" says beyond the usage line.
var helps = map[string]string{
	"start": `Starts master(8) in the background with the configuration and waits until
it runs (or says why it did not). Under systemd use "systemctl start
posthorn" instead.`,
	"stop": `Stops the mail system: master stops accepting connections, lets
deliveries in flight finish within the grace period, and exits with all
its daemons. Mail already accepted stays queued.`,
	"reload": `Sends SIGHUP to master: daemons read the configuration again (and the TLS
certificate); sessions and deliveries in progress are not cut.`,
	"status": `Exits 0 and says so when the mail system of this configuration is
running, 1 when it is not.`,
	"check": `Validates the configuration and the installation, and says how to fix what
it finds: settings, users and groups, the daemon directory, the spool's
folders and modes, the TLS certificate and key, the aliases and users
files, and ports that another program (a running Postfix, Exim or Dovecot)
already holds.
Exits 0 when nothing is wrong.`,
	"queue": `Works on the mail queue as Postfix's postqueue, postsuper and postcat do.
A queue ID is the 13-digit hexadecimal ID of the logs and of mailq;
"queue delete ALL" empties the queue, "-" reads IDs from standard input.`,
	"config": `Prints the effective settings as TOML: every setting (the default),
only those that differ from the defaults (-n), or the defaults (-d), as
postconf, postconf -n and postconf -d do.`,
	"user": `Manages the virtual users file (virtual.users_file): "user add" and
"user passwd" read the password from standard input (twice when it is a
terminal) and store it hashed; "user list" prints one address per line.`,
	"aliases": `Reads and validates the aliases file (aliases(5)) as newaliases does:
a syntax error is reported with its file and line and the running system
keeps using the last good version.`,
}

// commandHelp prints the usage lines of cmd and what it does.
func commandHelp(w io.Writer, cmd string, rest []string) int {
	text, ok := helps[cmd]
	if !ok {
		fmt.Fprint(w, usage)
		return exitUsage
	}
	fmt.Fprintln(w, "usage:")
	for _, l := range strings.Split(usage, "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == cmd && strings.HasPrefix(l, "  ") {
			fmt.Fprintln(w, "  posthorn [-c FILE] "+strings.TrimSpace(l))
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, text)
	return exitOK
}

// Main runs the posthorn command with args (without the program name).
func Main(args []string, env Env) int {
	fs := flag.NewFlagSet("posthorn", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	cfgPath := fs.String("c", config.PathFromEnv(), "configuration file")
	fs.Usage = func() { fmt.Fprint(env.Stderr, usage) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fs.Usage()
		return exitUsage
	}
	cmd, rest := rest[0], rest[1:]
	if cmd == "help" || cmd == "--help" || cmd == "-h" {
		fmt.Fprint(env.Stdout, usage)
		return exitOK
	}
	if slices.Contains(rest, "--help") || slices.Contains(rest, "-h") {
		return commandHelp(env.Stdout, cmd, rest)
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintf(env.Stderr, "posthorn: %v\n", err)
		return exitConfig
	}
	switch cmd {
	case "start":
		return start(cfg, env)
	case "stop":
		return stop(cfg, env)
	case "reload":
		if err := master.Reload(cfg); err != nil {
			fmt.Fprintf(env.Stderr, "posthorn: reload: %v\n", err)
			return exitFail
		}
		return exitOK
	case "status":
		if pid, ok := master.Running(cfg); ok {
			fmt.Fprintf(env.Stdout, "posthorn is running (pid %d)\n", pid)
			return exitOK
		}
		fmt.Fprintln(env.Stdout, "posthorn is not running")
		return exitFail
	case "check":
		return check(cfg, env)
	case "queue":
		return queueCmd(cfg, rest, env)
	case "config":
		return showConfig(cfg, rest, env)
	case "user":
		return user(cfg, rest, env)
	case "aliases":
		return checkAliases(cfg, env, "posthorn")
	}
	fmt.Fprintf(env.Stderr, "posthorn: unknown command %q\n", cmd)
	fs.Usage()
	return exitUsage
}

func start(cfg *config.Config, env Env) int {
	if pid, ok := master.Running(cfg); ok {
		fmt.Fprintf(env.Stderr, "posthorn: the mail system is already running (pid %d)\n", pid)
		return exitFail
	}
	pid, err := master.StartBackground(cfg, filepath.Join(cfg.DaemonDir, "master"))
	if err != nil {
		fmt.Fprintf(env.Stderr, "posthorn: start: %v\n", err)
		return exitFail
	}
	fmt.Fprintf(env.Stdout, "posthorn started (pid %d)\n", pid)
	return exitOK
}

func stop(cfg *config.Config, env Env) int {
	if _, ok := master.Running(cfg); !ok {
		fmt.Fprintln(env.Stderr, "posthorn: the mail system is not running")
		return exitFail
	}
	if err := master.Stop(cfg, cfg.Master.StopGrace.D()+10*time.Second); err != nil {
		fmt.Fprintf(env.Stderr, "posthorn: stop: %v\n", err)
		return exitFail
	}
	fmt.Fprintln(env.Stdout, "posthorn stopped")
	return exitOK
}

func listQueue(cfg *config.Config, env Env) int {
	msgs, err := mailq.Scan(spool.Open(cfg.SpoolDir))
	if err != nil {
		fmt.Fprintf(env.Stderr, "posthorn: %v\n", err)
		return exitNoInput
	}
	mailq.Write(env.Stdout, msgs)
	return exitOK
}

// showConfig prints settings as TOML: all effective ones, only those that
// differ from the defaults (-n, as postconf -n) or the defaults (-d).
func showConfig(cfg *config.Config, args []string, env Env) int {
	mode := ""
	if len(args) > 0 {
		mode = args[0]
	}
	var v any = cfg
	switch mode {
	case "":
	case "-d":
		v = config.Defaults()
	case "-n":
		var all, def map[string]any
		if err := roundTrip(cfg, &all); err != nil {
			fmt.Fprintf(env.Stderr, "posthorn: %v\n", err)
			return exitSoftware
		}
		roundTrip(config.Defaults(), &def)
		v = diff(all, def)
	default:
		fmt.Fprintln(env.Stderr, "usage: posthorn config [-n | -d]")
		return exitUsage
	}
	if err := toml.NewEncoder(env.Stdout).Encode(v); err != nil {
		fmt.Fprintf(env.Stderr, "posthorn: %v\n", err)
		return exitSoftware
	}
	return exitOK
}

func roundTrip(v any, out *map[string]any) error {
	var b bytes.Buffer
	if err := toml.NewEncoder(&b).Encode(v); err != nil {
		return err
	}
	_, err := toml.Decode(b.String(), out)
	return err
}

// diff keeps the keys of a whose values differ from b's, recursively.
func diff(a, b map[string]any) map[string]any {
	out := map[string]any{}
	for k, av := range a {
		bv, ok := b[k]
		am, aIsMap := av.(map[string]any)
		bm, bIsMap := bv.(map[string]any)
		switch {
		case aIsMap && bIsMap:
			if d := diff(am, bm); len(d) > 0 {
				out[k] = d
			}
		case !ok || fmt.Sprint(av) != fmt.Sprint(bv):
			out[k] = av
		}
	}
	return out
}

func user(cfg *config.Config, args []string, env Env) int {
	const u = "usage: posthorn user add|passwd|del NAME, posthorn user list"
	if len(args) == 0 {
		fmt.Fprintln(env.Stderr, u)
		return exitUsage
	}
	path := cfg.Virtual.UsersFile
	switch {
	case args[0] == "list" && len(args) == 1:
		db, err := userdb.Load(path)
		if err != nil {
			fmt.Fprintf(env.Stderr, "posthorn: %v\n", err)
			return exitNoInput
		}
		var names []string
		for _, usr := range db.List() {
			names = append(names, usr.Name)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintln(env.Stdout, n)
		}
		return exitOK
	case (args[0] == "add" || args[0] == "passwd") && len(args) == 2:
		name := strings.ToLower(args[1])
		if _, domain, ok := strings.Cut(name, "@"); !ok || !cfg.IsVirtualDomain(domain) {
			fmt.Fprintf(env.Stderr, "posthorn: %s is not in a virtual domain (virtual.domains = %v)\n", name, cfg.Virtual.Domains)
			return exitUsage
		}
		pw, err := readPassword(env)
		if err != nil {
			fmt.Fprintf(env.Stderr, "posthorn: %v\n", err)
			return exitUsage
		}
		if args[0] == "add" {
			_, statErr := os.Stat(path)
			err = userdb.Add(path, name, pw)
			if err == nil && os.IsNotExist(statErr) {
				err = shareWithMailOwner(cfg, path)
			}
		} else {
			err = userdb.SetPassword(path, name, pw)
		}
		if err != nil {
			fmt.Fprintf(env.Stderr, "posthorn: %v\n", err)
			return exitFail
		}
		return exitOK
	case args[0] == "del" && len(args) == 2:
		if err := userdb.Delete(path, strings.ToLower(args[1])); err != nil {
			fmt.Fprintf(env.Stderr, "posthorn: %v\n", err)
			return exitFail
		}
		return exitOK
	}
	fmt.Fprintln(env.Stderr, u)
	return exitUsage
}

// readPassword reads a new password: prompted twice on a terminal; from a
// pipe the first line, and a second line, when given, must repeat it.
func readPassword(env Env) (string, error) {
	if f, ok := env.Stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(env.Stderr, "Password: ")
		a, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(env.Stderr)
		if err != nil {
			return "", err
		}
		fmt.Fprint(env.Stderr, "Retype password: ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(env.Stderr)
		if err != nil {
			return "", err
		}
		if string(a) != string(b) {
			return "", errors.New("passwords do not match")
		}
		if len(a) == 0 {
			return "", errors.New("empty password")
		}
		return string(a), nil
	}
	sc := bufio.NewScanner(io.LimitReader(env.Stdin, 64*1024))
	var lines []string
	for sc.Scan() && len(lines) < 2 {
		lines = append(lines, strings.TrimSuffix(sc.Text(), "\r"))
	}
	if len(lines) == 0 || lines[0] == "" {
		return "", errors.New("no password on standard input")
	}
	if len(lines) == 2 && lines[1] != lines[0] {
		return "", errors.New("passwords do not match")
	}
	return lines[0], nil
}

// checkAliases validates the aliases file, as newaliases does; the daemons
// read the file directly and notice changes by themselves.
func checkAliases(cfg *config.Config, env Env, prog string) int {
	m, err := aliases.Load(cfg.AliasFile)
	if errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(env.Stdout, "%s: %s does not exist: no aliases\n", prog, cfg.AliasFile)
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(env.Stderr, "%s: %v\n", prog, err)
		return exitConfig
	}
	fmt.Fprintf(env.Stdout, "%s: %s: %d aliases\n", prog, cfg.AliasFile, m.Len())
	return exitOK
}

// shareWithMailOwner makes a users file that root just created readable by
// the mail owner's group (root:posthorn 0640), since smtpd checks
// recipients against it; an admin's later choice of owner is kept by every
// edit.
func shareWithMailOwner(cfg *config.Config, path string) error {
	if os.Geteuid() != 0 || cfg.MailOwner == "" {
		return nil
	}
	u, err := osuser.Lookup(cfg.MailOwner)
	if err != nil {
		return fmt.Errorf("mail_owner %q: %w", cfg.MailOwner, err)
	}
	var gid int
	fmt.Sscan(u.Gid, &gid)
	return os.Chown(path, 0, gid)
}
