// Command bench measures posthorn's throughput, latency, CPU and memory
// under an SMTP load, and Postfix's under the same load when Postfix is
// installed:
//
//	go run ./tests/bench [-case local|relay|both] [-n 5000] [-relay-n N] [-c 20] [-size 5120] [-client go|smtp-source] [-postfix=false]
//
// It starts a posthorn instance (and a private Postfix instance) in a
// temporary folder on a free loopback port, sends N messages over C
// concurrent SMTP sessions, one recipient each, waits until every message
// is delivered and the queue is empty, and prints one line per system.
// It exits non-zero when a message is missing or the client saw an error.
//
// The local case delivers to virtual users' Maildirs. The relay case
// submits mail for another domain (to posthorn's submission port, with
// AUTH) and has each system relay it over SMTP to a private smtp-sink,
// Postfix's test server, which counts what arrives.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/posthorn/posthorn/pkg/userdb"
)

// cleanups run at exit, also on SIGINT/SIGTERM, so no instance survives
// the bench.
var (
	cleanupMu sync.Mutex
	cleanups  []func()
)

func atExit(f func()) {
	var once sync.Once
	cleanupMu.Lock()
	cleanups = append(cleanups, func() { once.Do(f) })
	cleanupMu.Unlock()
}

func runCleanups() {
	cleanupMu.Lock()
	fs := append([]func(){}, cleanups...)
	cleanupMu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

func exit(code int) {
	runCleanups()
	os.Exit(code)
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
	exit(1)
}

// moduleRoot finds the folder holding go.mod, from the working directory up.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// mountOf describes the filesystem holding path, from /proc/self/mountinfo.
func mountOf(path string) string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "?"
	}
	defer f.Close()
	best, desc := "", "?"
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, x := range fields {
			if x == "-" {
				sep = i
				break
			}
		}
		if len(fields) < 5 || sep < 0 || sep+2 >= len(fields) {
			continue
		}
		mp := fields[4]
		if (path == mp || strings.HasPrefix(path, strings.TrimSuffix(mp, "/")+"/")) && len(mp) >= len(best) {
			best, desc = mp, fmt.Sprintf("%s on %s, mounted at %s", fields[sep+1], fields[sep+2], mp)
		}
	}
	return desc
}

// result is one system's figures.
type result struct {
	system    string
	l         load
	client    string
	lr        loadResult
	elapsed   time.Duration // first connect to last Maildir file
	delivered int
	use       usage
	clientCPU time.Duration // this program (the Go client, sampling) and smtp-source
	sinkCPU   time.Duration // smtp-sink, in the relay case
	otherCPU  time.Duration // everything else on the machine
	stealCPU  time.Duration // taken by the hypervisor (steal)
	relay     bool          // the relay case: delivered means received by smtp-sink
	window    time.Duration // from the start of the load to the empty queue
	problems  []string
}

func (r *result) ok() bool { return len(r.problems) == 0 }

func (r *result) rate() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.delivered) / r.elapsed.Seconds()
}

// maildirCount counts the messages in the Maildirs, and returns the time
// of the last delivery: the latest modification of a new/ folder (every
// delivery renames or links a file into it).
func maildirCount(dirs []string) (int, time.Time) {
	n := 0
	var last time.Time
	for _, d := range dirs {
		for _, sub := range []string{"new", "cur"} {
			f, err := os.Open(filepath.Join(d, sub))
			if err != nil {
				continue
			}
			names, _ := f.Readdirnames(-1)
			f.Close()
			n += len(names)
		}
		if st, err := os.Stat(filepath.Join(d, "new")); err == nil && st.ModTime().After(last) {
			last = st.ModTime()
		}
	}
	return n, last
}

// measure runs the load against sys and waits for every delivery: into
// the Maildirs, or with sk set (the relay case) into smtp-sink.
func measure(sys mailSystem, l load, client string, sk *sink) *result {
	r := &result{system: sys.Name(), l: l, client: client, relay: sk != nil}
	// Start from clean page cache: nothing of an earlier run left to write.
	syscall.Sync()
	tr := newTracker(sys.MasterPid(), sys.Label)
	tr.Start(100 * time.Millisecond)
	var sink0 uint64
	if sk != nil {
		if p, err := readStat(sk.Pid()); err == nil {
			sink0 = p.all()
		}
	}
	busy0, steal0 := cpuTimes()
	own0, t0 := ownCPU(), time.Now()
	l.addr = sys.Addr()
	if client == "smtp-source" {
		r.lr = runSmtpSource(l)
	} else {
		r.lr = runGo(l)
	}
	target := l.n
	if client == "go" {
		target = r.lr.accepted
	}
	count := func() (int, time.Time) {
		if sk != nil {
			return sk.count(), time.Time{}
		}
		return maildirCount(sys.Maildirs())
	}
	where := "in Maildirs"
	if sk != nil {
		where = "at smtp-sink"
	}
	// Wait until the target is delivered and the queue is empty, giving
	// up after 60 seconds without progress.
	var last time.Time
	prev, prevQ, progress := -1, -1, time.Now()
	for {
		n, t := count()
		q := sys.QueueFiles()
		r.delivered, last = n, t
		if n >= target && q == 0 {
			break
		}
		if n != prev || q != prevQ {
			prev, prevQ, progress = n, q, time.Now()
		} else if time.Since(progress) > 60*time.Second {
			r.problems = append(r.problems, fmt.Sprintf("stalled: %d messages %s, %d queue files, no progress for 60 s", n, where, q))
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.use = tr.Finish()
	r.window = time.Since(t0)
	r.clientCPU = ownCPU() - own0
	if sk != nil {
		if p, err := readStat(sk.Pid()); err == nil && p.all() >= sink0 {
			r.sinkCPU = time.Duration(float64(p.all()-sink0) / clockTicks * float64(time.Second))
		}
	}
	busy1, steal1 := cpuTimes()
	r.stealCPU = steal1 - steal0
	r.otherCPU = busy1 - busy0 - r.clientCPU - r.sinkCPU - time.Duration(r.use.total*float64(time.Second))
	if r.otherCPU < 0 {
		r.otherCPU = 0
	}
	// A late duplicate would show up here.
	time.Sleep(200 * time.Millisecond)
	if sk != nil {
		c := sk.check()
		r.delivered, last = c.files, c.last
		if dup := c.files - c.noID - c.ids; dup > 0 {
			r.problems = append(r.problems, fmt.Sprintf("smtp-sink received %d messages with a Message-ID seen before", dup))
		}
		if c.wrongRcpt > 0 {
			r.problems = append(r.problems, fmt.Sprintf("smtp-sink received %d messages not for @%s", c.wrongRcpt, remoteDomain))
		}
	} else {
		r.delivered, last = maildirCount(sys.Maildirs())
	}
	if last.Before(r.lr.start) {
		last = time.Now()
	}
	r.elapsed = last.Sub(r.lr.start)
	if r.lr.failed > 0 {
		r.problems = append(r.problems, fmt.Sprintf("client: %d messages not accepted, e.g. %s", r.lr.failed, strings.Join(r.lr.failures, "; ")))
	}
	if r.delivered != l.n {
		r.problems = append(r.problems, fmt.Sprintf("delivered %d messages, want %d", r.delivered, l.n))
	}
	return r
}

// median returns the result with the median rate (the lower one of an
// even count).
func median(rs []*result) *result {
	s := append([]*result(nil), rs...)
	sort.SliceStable(s, func(i, j int) bool { return s[i].rate() < s[j].rate() })
	return s[(len(s)-1)/2]
}

// medianCPU is the median CPU seconds per 1000 messages.
func medianCPU(rs []*result) float64 {
	var v []float64
	for _, r := range rs {
		v = append(v, r.use.total*1000/float64(r.l.n))
	}
	sort.Float64s(v)
	return v[(len(v)-1)/2]
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	k := int(p*float64(len(s))+0.999999) - 1
	if k < 0 {
		k = 0
	}
	if k >= len(s) {
		k = len(s) - 1
	}
	return s[k]
}

func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	if v < 10 {
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.0f ms", v)
}

// order puts the named programs first, then the rest as sorted.
func order(vs []nameValue, first []string) []nameValue {
	rank := map[string]int{}
	for i, n := range first {
		rank[n] = i + 1
	}
	out := append([]nameValue(nil), vs...)
	sort.SliceStable(out, func(i, j int) bool {
		ri, rj := rank[out[i].name], rank[out[j].name]
		if ri == 0 {
			ri = len(first) + 1
		}
		if rj == 0 {
			rj = len(first) + 1
		}
		return ri < rj
	})
	return out
}

var (
	mainPrograms  = []string{"smtpd", "cleanup", "qmgr", "local", "local worker", "virtual", "trivial-rewrite", "master"}
	relayPrograms = []string{"smtpd", "cleanup", "qmgr", "smtp", "auth", "trivial-rewrite", "master"}
)

func (r *result) String() string {
	var b strings.Builder
	kind, programs := "", mainPrograms
	if r.relay {
		kind, programs = " relay", relayPrograms
	}
	fmt.Fprintf(&b, "%-9s%s N=%d C=%d size=%d client=%s: %.0f msg/s end to end (%.2f s", r.system, kind, r.l.n, r.l.c, r.l.size, r.client, r.rate(), r.elapsed.Seconds())
	if !r.lr.done.IsZero() && r.lr.done.After(r.lr.start) {
		// How far delivery trailed the client: its last session ended here.
		fmt.Fprintf(&b, "; client done at %.2f s", r.lr.done.Sub(r.lr.start).Seconds())
	}
	b.WriteString(")")
	if len(r.lr.dataLat) > 0 {
		fmt.Fprintf(&b, ", 250-reply p50 %s p99 %s (session p50 %s p99 %s)", ms(percentile(r.lr.dataLat, 0.5)), ms(percentile(r.lr.dataLat, 0.99)),
			ms(percentile(r.lr.txnLat, 0.5)), ms(percentile(r.lr.txnLat, 0.99)))
	} else {
		fmt.Fprintf(&b, ", 250-reply latency n/a (client reports totals only)")
	}
	if len(r.lr.authLat) > 0 {
		fmt.Fprintf(&b, ", AUTH p50 %s p99 %s (%d logins", ms(percentile(r.lr.authLat, 0.5)), ms(percentile(r.lr.authLat, 0.99)), len(r.lr.authLat))
		if r.lr.authRetries > 0 {
			fmt.Fprintf(&b, "; %d AUTH commands refused with 454 and sent again after %v or more", r.lr.authRetries, authRetryDelay)
		}
		b.WriteString(")")
	}
	per := 1000 / float64(r.l.n)
	kernel := 0.0
	if r.use.total > 0 {
		kernel = 100 * r.use.sys / r.use.total
	}
	fmt.Fprintf(&b, ", CPU %.2f s/1000 msgs, %.0f%% in the kernel (", r.use.total*per, kernel)
	var parts []string
	var other float64
	for i, v := range order(r.use.cpu, programs) {
		if i >= 6 {
			other += v.value
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %.2f", v.name, v.value*per))
	}
	if other > 0 {
		parts = append(parts, fmt.Sprintf("other %.2f", other*per))
	}
	b.WriteString(strings.Join(parts, ", "))
	b.WriteString("), peak RSS ")
	parts = parts[:0]
	for _, v := range order(r.use.rss, programs) {
		p := fmt.Sprintf("%s %.1f MB", v.name, v.value)
		if v.count > 1 {
			p += fmt.Sprintf(" (max of %d)", v.count)
		}
		parts = append(parts, p)
	}
	b.WriteString(strings.Join(parts, ", "))
	if r.relay {
		fmt.Fprintf(&b, "; relayed %d/%d to smtp-sink", r.delivered, r.l.n)
	} else {
		fmt.Fprintf(&b, "; delivered %d/%d", r.delivered, r.l.n)
	}
	fmt.Fprintf(&b, "\n%-9s machine during the run (%.1f s x %d CPUs): %s %.1f CPU-s, client %.1f CPU-s, ", "", r.window.Seconds(), numCPU(), r.system, r.use.total, r.clientCPU.Seconds())
	if r.relay {
		fmt.Fprintf(&b, "smtp-sink %.1f CPU-s, ", r.sinkCPU.Seconds())
	}
	fmt.Fprintf(&b, "other processes %.1f CPU-s, taken by the hypervisor (steal) %.1f CPU-s", r.otherCPU.Seconds(), r.stealCPU.Seconds())
	for _, p := range r.problems {
		fmt.Fprintf(&b, "\n  FAIL: %s", p)
	}
	return b.String()
}

func main() {
	defer func() {
		if v := recover(); v != nil {
			runCleanups()
			panic(v)
		}
	}()
	defClient := os.Getenv("BENCH_CLIENT")
	if defClient == "" {
		defClient = "go"
	}
	n := flag.Int("n", 5000, "messages to send")
	c := flag.Int("c", 20, "concurrent SMTP sessions")
	size := flag.Int("size", 5120, "payload bytes per message, headers not included (as smtp-source -l)")
	client := flag.String("client", defClient, `load generator: "go" (built in, measures time to 250) or "smtp-source" (Postfix's); default $BENCH_CLIENT or go`)
	withPostfix := flag.Bool("postfix", postfixInstalled(), "also measure a private Postfix instance (default: when "+postfixCmd+" exists)")
	users := flag.Int("users", 4, "virtual users; recipients go round robin to user0..user<users-1>@example.test")
	reuse := flag.Bool("reuse", false, "send a session's messages over one connection (smtp-source -d); default one connection per message")
	binDir := flag.String("bin", "", "folder with the built programs (default: build them into a temporary folder)")
	base := flag.String("dir", os.TempDir(), "where the instances keep their spool and Maildirs")
	keep := flag.Bool("keep", false, "keep the instances' folders")
	rounds := flag.Int("rounds", 3, "measure each system this many times, alternating which goes first; the median is reported")
	benchCase := flag.String("case", "both", `"local" (delivery to Maildirs), "relay" (submission relayed to smtp-sink), "both" (local and relay), "imap", "pop3", or "all"; several may be given separated by commas`)
	imapN := flag.Int("imap-n", 100000, "imap case: messages in the mailbox")
	idleK := flag.Int("idle-k", 10000, "imap case: concurrent IDLE sessions to posthorn")
	dovecotIdleK := flag.Int("dovecot-idle-k", 1000, "imap case: concurrent IDLE sessions to Dovecot (one imap process each)")
	bigIdleK := flag.Int("big-idle-k", 200, "imap case: concurrent IDLE sessions on the large INBOX, to each server")
	dovecotBare := flag.Bool("dovecot-bare", true, "imap case: Dovecot's first session starts, as posthorn's did, from the Maildir alone (the dovecot-uidlist and index files posthorn's runs left are removed first); false: Dovecot finds them and assigns no UIDs")
	idleBudget := flag.Duration("idle-budget", 60*time.Second, "imap case: stop opening IDLE sessions after this long and measure those open")
	pop3N := flag.Int("pop3-n", 10000, "pop3 case: messages in the mailbox")
	withDovecot := flag.Bool("dovecot", true, "imap and pop3 cases: also measure a private Dovecot when it is installed")
	relayN := flag.Int("relay-n", 0, "messages to send in the relay case (default: -n)")
	relayAuth := flag.Bool("relay-auth", true, "relay case: submit to posthorn's submission port with AUTH PLAIN (client go only); false: its MX port, relaying for smtpd.relay_networks 127.0.0.0/8")
	relayReuse := flag.Bool("relay-reuse", true, "relay case: send a session's messages over one connection, logging in once (as -reuse); false: one connection and one login per message")
	flag.Parse()
	if *relayN == 0 {
		*relayN = *n
	}
	if *n <= 0 || *c <= 0 || *size < 0 || *users <= 0 || *rounds <= 0 || *relayN <= 0 {
		fatalf("-n, -relay-n, -c, -users and -rounds must be positive, -size not negative")
	}
	doLocal, doRelay, doIMAP, doPOP3 := false, false, false, false
	for _, bc := range strings.Split(*benchCase, ",") {
		switch bc {
		case "local":
			doLocal = true
		case "relay":
			doRelay = true
		case "both":
			doLocal, doRelay = true, true
		case "imap":
			doIMAP = true
		case "pop3":
			doPOP3 = true
		case "all":
			doLocal, doRelay, doIMAP, doPOP3 = true, true, true, true
		default:
			fatalf("unknown case %q: want local, relay, both, imap, pop3 or all", bc)
		}
	}
	if *imapN <= 0 || *idleK <= 0 || *dovecotIdleK <= 0 || *bigIdleK <= 0 || *pop3N <= 0 {
		fatalf("-imap-n, -idle-k, -dovecot-idle-k and -pop3-n must be positive")
	}
	if doRelay {
		if _, err := os.Stat(smtpSink); err != nil {
			if !doLocal && !doIMAP && !doPOP3 {
				fatalf("relay case: %s not found (Debian package postfix)", smtpSink)
			}
			fmt.Printf("relay case skipped: %s not found (Debian package postfix)\n", smtpSink)
			doRelay = false
		}
	}
	if *client != "go" && *client != "smtp-source" {
		fatalf("unknown client %q: want go or smtp-source", *client)
	}
	if *client == "smtp-source" {
		if _, err := os.Stat(smtpSource); err != nil {
			fatalf("client smtp-source: %s not found (Debian package postfix)", smtpSource)
		}
	}
	if *users > *c {
		*users = *c // smtp-source sends to one address per process
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "bench: %v: stopping\n", s)
		exit(130)
	}()

	absBase, err := filepath.Abs(*base)
	if err != nil {
		fatalf("%v", err)
	}
	// One folder for the whole bench, each instance in a folder of its own
	// below it, spread to its own block group (see setTopDir).
	work, err := os.MkdirTemp(absBase, "bench-")
	if err != nil {
		fatalf("%v", err)
	}
	atExit(func() {
		if *keep {
			fmt.Printf("kept %s\n", work)
		} else {
			os.RemoveAll(work)
		}
	})
	os.Chmod(work, 0755)
	spread := "each instance in its own folder, in a block group of its own (ext4 Orlov top-directory flag)"
	if err := setTopDir(work); err != nil {
		spread = fmt.Sprintf("each instance in its own folder (cannot set the top-directory flag: %v)", err)
	}
	bins := *binDir
	if bins == "" {
		root, err := moduleRoot()
		if err != nil {
			fatalf("%v", err)
		}
		tmp, err := os.MkdirTemp("", "posthorn-bench-bin-")
		if err != nil {
			fatalf("%v", err)
		}
		atExit(func() { os.RemoveAll(tmp) })
		build := exec.Command("go", "build", "-trimpath", "-o", tmp+"/", "./cmd/...")
		build.Dir = root
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			fatalf("building the programs: %v\n%s", err, out)
		}
		bins = tmp
	}
	if bins, err = filepath.Abs(bins); err != nil {
		fatalf("%v", err)
	}

	l := load{n: *n, c: *c, size: *size, users: *users, reuse: *reuse, heloArg: "bench.example.test", domain: localDomain, sender: sender}
	connDesc := func(reuse bool) string {
		if reuse {
			return "each session sends its messages over one connection"
		}
		return "one connection per message"
	}
	fmt.Printf("load: %d-byte payload, %d concurrent sessions, one recipient per message; client %s\n", l.size, l.c, *client)
	fmt.Printf("storage: spool and Maildirs of every instance under %s (%s); %s\n", work, mountOf(work), spread)
	fmt.Println("CPU = utime+stime of master and all its descendants (/proc/<pid>/stat, reaped children included), before the load to empty queue")

	comparePostfix := false
	switch {
	case !postfixInstalled():
		fmt.Println("postfix not installed: comparison skipped")
	case !*withPostfix:
		fmt.Println("postfix comparison not requested (-postfix=false): comparison skipped")
	case os.Geteuid() != 0:
		fmt.Println("postfix needs root to start: comparison skipped")
	default:
		comparePostfix = true
		fmt.Printf("postfix %s: private instance, default durability (queue file fsynced before the 250)\n", postfixVersion())
	}

	var summary []string
	failed := false
	if doLocal {
		fmt.Printf("== local case: %d messages, %s, SMTP on the MX port, delivered to Maildirs\n", l.n, connDesc(l.reuse))
		fmt.Printf("recipients: %d virtual users user0..user%d@%s, round robin, one Maildir each\n", l.users, l.users-1, localDomain)
		fmt.Println("end to end = first connect to the last file in a Maildir new/; 250-reply = end of data to the 250; session = connect to the 250")
		if comparePostfix {
			fmt.Println("postfix: smtpd, virtual(8) to Maildir (Maildir file fsynced)")
		}
		line, ok := runCase(work, bins, l, *client, *rounds, comparePostfix, nil)
		failed = failed || !ok
		summary = append(summary, "local: "+line)
	}
	if doRelay {
		rl := l
		rl.n, rl.reuse, rl.domain, rl.sender = *relayN, *relayReuse, remoteDomain, relaySender
		auth := *relayAuth && *client == "go"
		fmt.Printf("== relay case: %d messages (-relay-n), %s, relayed to smtp-sink over SMTP\n", rl.n, connDesc(rl.reuse))
		fmt.Printf("recipients: user0..user%d@%s, round robin; envelope sender %s; relay host [127.0.0.1]:<sink port>, plain SMTP (smtp-sink offers no STARTTLS)\n", rl.users-1, remoteDomain, rl.sender)
		if auth {
			rl.authUser, rl.authPass = relaySender, relayPass
			fmt.Println("posthorn: submission port (STARTTLS and AUTH offered), AUTH PLAIN without TLS as the client is on loopback, once per connection; password hash " + userdb.Scheme + " as made by 'posthorn user add'")
		} else {
			why := "-relay-auth=false"
			if *client != "go" {
				why = "smtp-source cannot log in"
			}
			fmt.Printf("posthorn: MX port, relaying for smtpd.relay_networks 127.0.0.0/8 without AUTH (%s)\n", why)
		}
		if comparePostfix {
			fmt.Println("postfix: submission smtpd on its own port without TLS or SASL, relaying for mynetworks 127.0.0.0/8 without AUTH; smtp(8), default_destination_concurrency_limit 20 (default)")
		}
		fmt.Println("smtp-sink: one fresh instance per measurement, each message dumped to a file of its own (no fsync); it answers 250 at once")
		fmt.Println("end to end = first connect to the end of the last message at smtp-sink (latest modification of its dump files); 250-reply and session as above, at the submitting server")
		line, ok := runCase(work, bins, rl, *client, *rounds, comparePostfix, &relaySetup{auth: auth})
		failed = failed || !ok
		summary = append(summary, "relay: "+line)
	}
	if doIMAP || doPOP3 {
		if os.Geteuid() != 0 {
			fatalf("imap and pop3 cases: need root (the servers run their mail processes as %s)", mailOwner)
		}
	}
	if doIMAP {
		// Every session is a descriptor here and in the process serving it;
		// posthorn's daemons inherit master's limit, master inherits ours.
		lim, err := raiseNofile(uint64(*idleK) + uint64(*dovecotIdleK) + uint64(*bigIdleK) + 4096)
		k := *idleK
		if need := uint64(k) + 1024; lim < need {
			k = int(lim) - 1024
			fmt.Printf("imap case: open-file limit %d (%v): IDLE sessions reduced from %d to %d\n", lim, err, *idleK, k)
		}
		dk := *dovecotIdleK
		fmt.Printf("== imap case: %d-message INBOX; client: raw IMAP over loopback TCP, LOGIN in plaintext, one command at a time; open-file limit of this process and the servers %d\n", *imapN, lim)
		if *imapN < 100000 {
			fmt.Printf("imap case: N=%d, reduced from the issue's 100000 (-imap-n)\n", *imapN)
		}
		if k < 10000 {
			fmt.Printf("imap case: %d IDLE sessions, reduced from the issue's 10000 (-idle-k)\n", k)
		}
		fmt.Printf("IDLE: %d sessions of %s on a %d-message INBOX (the issue's 10000 sessions); and, to show how a session's memory grows with its mailbox, %d sessions of %s on the %d-message INBOX (-big-idle-k); each LOGIN, SELECT INBOX, IDLE, 50 opened at a time, opening stopped after %v (-idle-budget)\n",
			k, idleUser, idleMsgs, *bigIdleK, mailUser, *imapN, *idleBudget)
		compare := *withDovecot && dovecotInstalled() && dovecotHas("imap")
		if compare {
			fmt.Printf("dovecot %s: private instance, imap only, plaintext on loopback, Maildir with its default indexes in the Maildir; IDLE with %d sessions on the small INBOX, one imap process each (its default service_count=1 login, client_limit=1 imap): reduced from %d to keep the bench short (-dovecot-idle-k)\n", dovecotVersion(), dk, k)
		} else {
			fmt.Printf("dovecot comparison skipped: %s or /usr/lib/dovecot/imap absent (Debian package dovecot-imapd), or -dovecot=false\n", dovecotCmd)
		}
		fmt.Println("IDLE memory = sum over imap-login, imapd dispatcher and worker(s) (dovecot: imap-login and imap processes) of VmRSS (/proc/<pid>/status) and Pss (/proc/<pid>/smaps_rollup) with the sessions open in IDLE, minus the same sum with one session (not counted) open before them, divided by the sessions open; the small-INBOX sessions come first, before the timed runs, in a fresh posthorn worker")
		ok := runIMAPCase(work, bins, *imapN, k, dk, *bigIdleK, *idleBudget, compare, *dovecotBare)
		failed = failed || !ok
		summary = append(summary, "imap: see the table above")
	}
	if doPOP3 {
		compare := *withDovecot && dovecotInstalled() && dovecotHas("pop3")
		fmt.Printf("== pop3 case: %d-message mailbox downloaded with a raw POP3 client: USER/PASS, LIST, RETR of every message, QUIT without DELE\n", *pop3N)
		if *pop3N < 10000 {
			fmt.Printf("pop3 case: N=%d, reduced from the issue's 10000 (-pop3-n)\n", *pop3N)
		}
		if compare {
			fmt.Printf("dovecot %s: private instance, pop3 only, plaintext on loopback\n", dovecotVersion())
		} else {
			fmt.Printf("dovecot comparison skipped: %s or /usr/lib/dovecot/pop3 absent (Debian package dovecot-pop3d), or -dovecot=false\n", dovecotCmd)
		}
		ok := runPOP3Case(work, bins, *pop3N, compare)
		failed = failed || !ok
		summary = append(summary, "pop3: see the table above")
	}
	if len(summary) > 1 {
		fmt.Println("summary:")
		for _, s := range summary {
			fmt.Println("  " + s)
		}
	}
	if failed {
		fmt.Println("FAIL")
		exit(1)
	}
	exit(0)
}

// runCase measures posthorn, and Postfix with comparePostfix, rounds
// times each, prints every result, the medians and the ratio, and returns
// the line with the ratio (or posthorn's median rate) and whether every
// run was clean. relay nil is the local case; otherwise its sinkAddr is
// filled in for each run with a fresh smtp-sink.
func runCase(work, bins string, l load, client string, rounds int, comparePostfix bool, relay *relaySetup) (string, bool) {
	ok := true
	var phs, pfs []*result
	for round := 1; round <= rounds; round++ {
		// Alternate who goes first, so neither always runs on a machine
		// still busy with the other's aftermath.
		order := []string{"posthorn", "postfix"}
		if round%2 == 0 {
			order = []string{"postfix", "posthorn"}
		}
		if rounds > 1 {
			fmt.Printf("round %d/%d\n", round, rounds)
		}
		for _, name := range order {
			if name == "postfix" && !comparePostfix {
				continue
			}
			var sk *sink
			var rs *relaySetup
			if relay != nil {
				var err error
				sk, err = startSink(work)
				atExit(sk.Stop)
				if err != nil {
					fatalf("starting smtp-sink: %v", err)
				}
				rs = &relaySetup{sinkAddr: sk.addr, auth: relay.auth}
			}
			var sys mailSystem
			var err error
			if name == "posthorn" {
				var ph *posthornSystem
				ph, err = startPosthorn(work, bins, l.users, l.c, rs, nil)
				if ph != nil {
					sys = ph
				}
			} else {
				var pf *postfixSystem
				pf, err = startPostfix(work, l.users, l.c, rs)
				if pf != nil {
					sys = pf
				}
			}
			if sys != nil {
				atExit(func() {
					if err := sys.Stop(); err != nil {
						fmt.Fprintf(os.Stderr, "bench: %v\n", err)
					}
				})
			}
			if err != nil {
				fatalf("starting %s: %v", name, err)
			}
			ln := l
			if name == "postfix" {
				// Postfix relays for mynetworks: no login.
				ln.authUser, ln.authPass = "", ""
			}
			r := measure(sys, ln, client, sk)
			if !r.ok() {
				ok = false
				fmt.Fprintf(os.Stderr, "%s log (last lines):\n%s\n", name, sys.LogTail(30))
			}
			if err := sys.Stop(); err != nil {
				fmt.Fprintf(os.Stderr, "bench: %v\n", err)
				ok = false
			}
			sk.Stop()
			fmt.Println(r)
			if name == "posthorn" {
				phs = append(phs, r)
			} else {
				pfs = append(pfs, r)
			}
		}
	}
	ph := median(phs)
	if rounds > 1 {
		fmt.Printf("median of %d rounds (the round with the median msg/s):\n", rounds)
		fmt.Println(ph)
	}
	line := fmt.Sprintf("posthorn %.0f msg/s end to end (median), no comparison", ph.rate())
	if !comparePostfix {
		return line, ok
	}
	pf := median(pfs)
	if rounds > 1 {
		fmt.Println(pf)
	}
	if pf.rate() <= 0 {
		return line, ok
	}
	var each []string
	for i := range phs {
		if i < len(pfs) && pfs[i].rate() > 0 {
			each = append(each, fmt.Sprintf("%.2f", phs[i].rate()/pfs[i].rate()))
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "ratio posthorn/postfix: %.2fx end-to-end msg/s (%.0f vs %.0f)", ph.rate()/pf.rate(), ph.rate(), pf.rate())
	if len(each) > 1 {
		fmt.Fprintf(&b, " (per round: %s)", strings.Join(each, ", "))
	}
	// CPU per message depends much less on what else the machine runs
	// than throughput does.
	if pc, hc := medianCPU(pfs), medianCPU(phs); pc > 0 {
		fmt.Fprintf(&b, "; CPU per message %.2fx (median %.2f vs %.2f s/1000 msgs)", hc/pc, hc, pc)
	}
	fmt.Println(b.String())
	return b.String(), ok
}
