// Command bench measures posthorn's throughput, latency, CPU and memory
// under an SMTP load, and Postfix's under the same load when Postfix is
// installed:
//
//	go run ./tests/bench [-n 5000] [-c 20] [-size 5120] [-client go|smtp-source] [-postfix=false]
//
// It starts a posthorn instance (and a private Postfix instance) in a
// temporary folder on a free loopback port, sends N messages over C
// concurrent SMTP sessions, one recipient each, waits until every message
// is in a Maildir and the queue is empty, and prints one line per system.
// It exits non-zero when a message is missing or the client saw an error.
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
	otherCPU  time.Duration // everything else on the machine
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

// measure runs the load against sys and waits for every delivery.
func measure(sys mailSystem, l load, client string) *result {
	r := &result{system: sys.Name(), l: l, client: client}
	// Start from clean page cache: nothing of an earlier run left to write.
	syscall.Sync()
	tr := newTracker(sys.MasterPid(), sys.Label)
	tr.Start(100 * time.Millisecond)
	busy0, own0, t0 := cpuBusy(), ownCPU(), time.Now()
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
	// Wait until the target is in the Maildirs and the queue is empty,
	// giving up after 60 seconds without progress.
	var last time.Time
	prev, prevQ, progress := -1, -1, time.Now()
	for {
		n, t := maildirCount(sys.Maildirs())
		q := sys.QueueFiles()
		r.delivered, last = n, t
		if n >= target && q == 0 {
			break
		}
		if n != prev || q != prevQ {
			prev, prevQ, progress = n, q, time.Now()
		} else if time.Since(progress) > 60*time.Second {
			r.problems = append(r.problems, fmt.Sprintf("stalled: %d messages in Maildirs, %d queue files, no progress for 60 s", n, q))
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.use = tr.Finish()
	r.window = time.Since(t0)
	r.clientCPU = ownCPU() - own0
	r.otherCPU = cpuBusy() - busy0 - r.clientCPU - time.Duration(r.use.total*float64(time.Second))
	if r.otherCPU < 0 {
		r.otherCPU = 0
	}
	// A late duplicate would show up here.
	time.Sleep(200 * time.Millisecond)
	r.delivered, last = maildirCount(sys.Maildirs())
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

var mainPrograms = []string{"smtpd", "cleanup", "qmgr", "local", "local worker", "virtual", "trivial-rewrite", "master"}

func (r *result) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-9s N=%d C=%d size=%d client=%s: %.0f msg/s end to end (%.2f s)", r.system, r.l.n, r.l.c, r.l.size, r.client, r.rate(), r.elapsed.Seconds())
	if len(r.lr.dataLat) > 0 {
		fmt.Fprintf(&b, ", 250-reply p50 %s p99 %s (session p50 %s p99 %s)", ms(percentile(r.lr.dataLat, 0.5)), ms(percentile(r.lr.dataLat, 0.99)),
			ms(percentile(r.lr.txnLat, 0.5)), ms(percentile(r.lr.txnLat, 0.99)))
	} else {
		fmt.Fprintf(&b, ", 250-reply latency n/a (client reports totals only)")
	}
	per := 1000 / float64(r.l.n)
	kernel := 0.0
	if r.use.total > 0 {
		kernel = 100 * r.use.sys / r.use.total
	}
	fmt.Fprintf(&b, ", CPU %.2f s/1000 msgs, %.0f%% in the kernel (", r.use.total*per, kernel)
	var parts []string
	var other float64
	for i, v := range order(r.use.cpu, mainPrograms) {
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
	for _, v := range order(r.use.rss, mainPrograms) {
		p := fmt.Sprintf("%s %.1f MB", v.name, v.value)
		if v.count > 1 {
			p += fmt.Sprintf(" (max of %d)", v.count)
		}
		parts = append(parts, p)
	}
	b.WriteString(strings.Join(parts, ", "))
	fmt.Fprintf(&b, "; delivered %d/%d", r.delivered, r.l.n)
	fmt.Fprintf(&b, "\n%-9s machine during the run (%.1f s x %d CPUs): %s %.1f CPU-s, client %.1f CPU-s, other processes %.1f CPU-s",
		"", r.window.Seconds(), numCPU(), r.system, r.use.total, r.clientCPU.Seconds(), r.otherCPU.Seconds())
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
	flag.Parse()
	if *n <= 0 || *c <= 0 || *size < 0 || *users <= 0 || *rounds <= 0 {
		fatalf("-n, -c, -users and -rounds must be positive, -size not negative")
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

	l := load{n: *n, c: *c, size: *size, users: *users, reuse: *reuse, heloArg: "bench.example.test"}
	conn := "one connection per message"
	if *reuse {
		conn = "each session sends its messages over one connection"
	}
	fmt.Printf("load: %d messages, %d-byte payload, %d concurrent sessions, %s; client %s\n", l.n, l.size, l.c, conn, *client)
	fmt.Printf("recipients: %d virtual users user0..user%d@example.test, round robin, one Maildir each\n", l.users, l.users-1)
	fmt.Printf("storage: spool and Maildirs of every instance under %s (%s); %s\n", work, mountOf(work), spread)
	fmt.Println("end to end = first connect to the last file in a Maildir new/; 250-reply = end of data to the 250; session = connect to the 250")
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
		fmt.Printf("postfix %s: private instance, virtual(8) to Maildir, default durability (queue file fsynced before the 250, Maildir file fsynced)\n", postfixVersion())
	}

	failed := false
	var phs, pfs []*result
	for round := 1; round <= *rounds; round++ {
		// Alternate who goes first, so neither always runs on a machine
		// still busy with the other's aftermath.
		order := []string{"posthorn", "postfix"}
		if round%2 == 0 {
			order = []string{"postfix", "posthorn"}
		}
		if *rounds > 1 {
			fmt.Printf("round %d/%d\n", round, *rounds)
		}
		for _, name := range order {
			var sys mailSystem
			var err error
			switch {
			case name == "posthorn":
				var ph *posthornSystem
				ph, err = startPosthorn(work, bins, l.users, l.c)
				if ph != nil {
					sys = ph
				}
			case comparePostfix:
				var pf *postfixSystem
				pf, err = startPostfix(work, l.users, l.c)
				if pf != nil {
					sys = pf
				}
			default:
				continue
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
			r := measure(sys, l, *client)
			if !r.ok() {
				failed = true
				fmt.Fprintf(os.Stderr, "%s log (last lines):\n%s\n", name, sys.LogTail(30))
			}
			if err := sys.Stop(); err != nil {
				fmt.Fprintf(os.Stderr, "bench: %v\n", err)
				failed = true
			}
			fmt.Println(r)
			if name == "posthorn" {
				phs = append(phs, r)
			} else {
				pfs = append(pfs, r)
			}
		}
	}
	ph := median(phs)
	if *rounds > 1 {
		fmt.Printf("median of %d rounds (the round with the median msg/s):\n", *rounds)
		fmt.Println(ph)
	}
	if comparePostfix {
		pf := median(pfs)
		if *rounds > 1 {
			fmt.Println(pf)
		}
		if pf.rate() > 0 {
			var each []string
			for i := range phs {
				if i < len(pfs) && pfs[i].rate() > 0 {
					each = append(each, fmt.Sprintf("%.2f", phs[i].rate()/pfs[i].rate()))
				}
			}
			fmt.Printf("ratio posthorn/postfix: %.2fx end-to-end msg/s", ph.rate()/pf.rate())
			if len(each) > 1 {
				fmt.Printf(" (per round: %s)", strings.Join(each, ", "))
			}
			// CPU per message depends much less on what else the machine
			// runs than throughput does.
			if pc, hc := medianCPU(pfs), medianCPU(phs); pc > 0 {
				fmt.Printf("; CPU per message %.2fx (median %.2f vs %.2f s/1000 msgs)", hc/pc, hc, pc)
			}
			fmt.Println()
		}
	}
	if failed {
		fmt.Println("FAIL")
		exit(1)
	}
	exit(0)
}
