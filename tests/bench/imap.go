package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/posthorn/posthorn/pkg/config"
)

// raiseNofile lifts this process's open-file limit (soft and hard) to at
// least want; the servers started afterwards inherit it. Calling
// Setrlimit also keeps Go from restoring the original soft limit in
// child processes.
func raiseNofile(want uint64) (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	if rl.Max < want {
		rl.Max = want
	}
	rl.Cur = rl.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
		rl.Cur = rl.Max
		err2 := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
		if err2 != nil {
			return 0, err2
		}
		return rl.Cur, err
	}
	return rl.Cur, nil
}

// nofileOf reads "Max open files" (soft) of a process.
func nofileOf(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "Max open files") {
			f := strings.Fields(l)
			if len(f) >= 4 {
				return f[3]
			}
		}
	}
	return "?"
}

// memKB returns VmRSS (/proc/<pid>/status) and Pss (smaps_rollup) in kB.
func memKB(pid int) (rss, pss uint64) {
	field := func(path, name string) uint64 {
		b, err := os.ReadFile(path)
		if err != nil {
			return 0
		}
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, name) {
				f := strings.Fields(l[len(name):])
				if len(f) > 0 {
					v, _ := strconv.ParseUint(f[0], 10, 64)
					return v
				}
			}
		}
		return 0
	}
	return field(fmt.Sprintf("/proc/%d/status", pid), "VmRSS:"), field(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Pss:")
}

// memSum adds up the memory of the processes below root whose label
// keep accepts, per label.
type memSum struct {
	rss, pss uint64 // kB
	procs    map[string]int
}

func (m memSum) String() string {
	var names []string
	for n, c := range m.procs {
		names = append(names, fmt.Sprintf("%s x%d", n, c))
	}
	sort.Strings(names)
	return fmt.Sprintf("RSS %.1f MB, PSS %.1f MB (%s)", float64(m.rss)/1024, float64(m.pss)/1024, strings.Join(names, ", "))
}

func sumMem(root int, label func(procInfo) string, keep func(string) bool) memSum {
	m := memSum{procs: map[string]int{}}
	for _, p := range processTree(root) {
		name := label(p)
		if !keep(name) {
			continue
		}
		r, s := memKB(p.pid)
		m.rss += r
		m.pss += s
		m.procs[name]++
	}
	return m
}

// imapTimes are one run of the timed operations.
type imapTimes struct {
	login, sel, flags, env, search, total time.Duration
	exists, fetched, envs, found          int
	bytes                                 int64
}

// imapRun logs in and times SELECT, FETCH 1:* (FLAGS UID RFC822.SIZE),
// FETCH 1:* ENVELOPE and SEARCH TEXT, checking the counts.
func imapRun(addr string, n int) (imapTimes, error) {
	var t imapTimes
	t0 := time.Now()
	ic, err := dialIMAP(addr)
	if err != nil {
		return t, err
	}
	defer ic.Close()
	if err := ic.login(mailUser); err != nil {
		return t, fmt.Errorf("LOGIN: %v", err)
	}
	t.login = time.Since(t0)
	const limit = 600 * time.Second
	step := func(d *time.Duration, format string, args ...any) (imapReply, error) {
		s := time.Now()
		r, err := ic.cmd(limit, format, args...)
		*d = time.Since(s)
		t.bytes += r.bytes
		return r, err
	}
	s := time.Now()
	ic.tagN++
	tag := fmt.Sprintf("a%d", ic.tagN)
	fmt.Fprintf(ic.w, "%s SELECT INBOX\r\n", tag)
	ic.w.Flush()
	ic.c.SetReadDeadline(time.Now().Add(limit))
	for {
		l, _, err := ic.line()
		if err != nil {
			return t, fmt.Errorf("SELECT: %v", err)
		}
		if strings.HasPrefix(l, "* ") && strings.HasSuffix(strings.TrimSpace(l), " EXISTS") {
			t.exists, _ = strconv.Atoi(strings.Fields(l)[1])
		}
		if strings.HasPrefix(l, tag+" ") {
			if !strings.HasPrefix(l, tag+" OK") {
				return t, fmt.Errorf("SELECT: %s", strings.TrimSpace(l))
			}
			break
		}
	}
	t.sel = time.Since(s)
	r, err := step(&t.flags, "FETCH 1:* (FLAGS UID RFC822.SIZE)")
	if err != nil {
		return t, fmt.Errorf("FETCH FLAGS: %v", err)
	}
	t.fetched = r.untagged
	r, err = step(&t.env, "FETCH 1:* ENVELOPE")
	if err != nil {
		return t, fmt.Errorf("FETCH ENVELOPE: %v", err)
	}
	t.envs = r.untagged
	r, err = step(&t.search, "SEARCH TEXT %s", searchWord)
	if err != nil {
		return t, fmt.Errorf("SEARCH: %v", err)
	}
	t.found = len(r.search)
	ic.cmd(30*time.Second, "LOGOUT")
	t.total = time.Since(t0)
	want := (n + rareEvery/2) / rareEvery
	if t.exists != n || t.fetched != n || t.envs != n || t.found != want {
		return t, fmt.Errorf("counts: %d EXISTS, %d FETCH FLAGS, %d FETCH ENVELOPE, %d found, want %d, %d, %d, %d",
			t.exists, t.fetched, t.envs, t.found, n, n, n, want)
	}
	return t, nil
}

// idleResult is K sessions held in IDLE.
type idleResult struct {
	user         string
	msgs         int
	want, opened int
	open         time.Duration
	before       memSum
	after        memSum
	err          string
	reduced      string
	nofile       string
}

// holdIdle opens k sessions (LOGIN, SELECT INBOX, IDLE) with c at a time,
// giving up opening new ones after budget, measures the memory of the
// processes keep accepts below root, then closes them.
func holdIdle(addr, user string, msgs, k, c int, budget time.Duration, root int, label func(procInfo) string, keep func(string) bool) idleResult {
	res := idleResult{want: k, user: user, msgs: msgs}
	// One session first, not counted: the process serving them is then
	// running, and the figure is what each further session adds.
	anchor, err := dialIMAP(addr)
	if err == nil {
		if err = anchor.login(user); err == nil {
			_, err = anchor.cmd(120*time.Second, "SELECT INBOX")
		}
		defer anchor.Close()
	}
	if err != nil {
		res.err = "first session: " + err.Error()
		return res
	}
	time.Sleep(time.Second)
	res.before = sumMem(root, label, keep)
	var mu sync.Mutex
	var conns []*imapConn
	var firstErr string
	jobs := make(chan int)
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(budget)
	for w := 0; w < c; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				ic, err := dialIMAP(addr)
				if err == nil {
					if err = ic.login(user); err == nil {
						if _, err = ic.cmd(120*time.Second, "SELECT INBOX"); err == nil {
							ic.tagN++
							fmt.Fprintf(ic.w, "a%d IDLE\r\n", ic.tagN)
							ic.w.Flush()
							var l string
							l, _, err = ic.line()
							if err == nil && !strings.HasPrefix(l, "+") {
								err = fmt.Errorf("IDLE: %q", strings.TrimSpace(l))
							}
						}
					}
					if err != nil {
						ic.Close()
					}
				}
				mu.Lock()
				if err != nil {
					if firstErr == "" {
						firstErr = err.Error()
					}
				} else {
					conns = append(conns, ic)
				}
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < k; i++ {
		if time.Now().After(deadline) {
			res.reduced = fmt.Sprintf("stopped opening sessions after %v", budget)
			break
		}
		mu.Lock()
		bad := firstErr != ""
		mu.Unlock()
		if bad {
			break
		}
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	res.open = time.Since(start)
	res.opened = len(conns)
	res.err = firstErr
	time.Sleep(2 * time.Second)
	res.after = sumMem(root, label, keep)
	// The process holding the sessions' descriptors: its limit.
	for _, p := range processTree(root) {
		if l := label(p); l == "imapd worker" || l == "imap" {
			res.nofile = nofileOf(p.pid)
			break
		}
	}
	for _, ic := range conns {
		ic.Close()
	}
	return res
}

func (r idleResult) perSession() (rss, pss float64) {
	if r.opened == 0 {
		return 0, 0
	}
	d := func(a, b uint64) float64 {
		if a < b {
			return 0
		}
		return float64(a-b) / float64(r.opened)
	}
	return d(r.after.rss, r.before.rss), d(r.after.pss, r.before.pss)
}

func (r idleResult) String() string {
	rss, pss := r.perSession()
	s := fmt.Sprintf("%s, %d-message INBOX: %d/%d sessions open in %.1f s; before %s; with the sessions %s; per session %.1f KB RSS, %.1f KB PSS (open-file limit of the serving process %s)",
		r.user, r.msgs, r.opened, r.want, r.open.Seconds(), r.before, r.after, rss, pss, r.nofile)
	if r.reduced != "" {
		s += "; " + r.reduced
	}
	if r.err != "" {
		s += "; first error: " + r.err
	}
	return s
}

func secs(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

func ratio(a, b time.Duration) string {
	if a <= 0 || b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", float64(a)/float64(b))
}

// maildirExtras lists the files beside cur/, new/ and tmp/.
func maildirExtras(dir string) string {
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		switch e.Name() {
		case "cur", "new", "tmp":
			continue
		}
		names = append(names, e.Name())
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, " ")
}

// mailInstance starts posthorn serving user0's Maildir over IMAP or POP3
// on a free loopback port, the Maildir written first with n messages.
func mailInstance(work, bins, proto string, n int, uid, gid int) (*posthornSystem, string, string, time.Duration, error) {
	var addr string
	ph, err := startPosthorn(work, bins, 0, 1, nil, func(c *config.Config) error {
		port, err := freePort()
		if err != nil {
			return err
		}
		addr = fmt.Sprintf("127.0.0.1:%d", port)
		if proto == "imap" {
			c.IMAP.Listen = []string{addr}
		} else {
			c.POP3.Listen = []string{addr}
		}
		c.Virtual.User, c.Virtual.Group = mailOwner, mailOwner
		return os.WriteFile(c.Virtual.UsersFile, []byte(passwdLine(uid, gid)), 0644)
	})
	if ph != nil {
		atExit(func() { ph.Stop() })
	}
	if err != nil {
		return ph, "", "", 0, err
	}
	if err := waitBanner(addr, "* OK", "+OK", 20*time.Second); err != nil {
		return ph, "", "", 0, fmt.Errorf("%v\n%s", err, ph.LogTail(20))
	}
	maildir := filepath.Join(ph.dir, "mail", localDomain, "user0", "Maildir")
	t0 := time.Now()
	if err := writeMaildir(maildir, n, uid, gid); err != nil {
		return ph, "", "", 0, err
	}
	if proto == "imap" {
		if err := writeMaildir(filepath.Join(ph.dir, "mail", localDomain, "user1", "Maildir"), idleMsgs, uid, gid); err != nil {
			return ph, "", "", 0, err
		}
	}
	syscall.Sync()
	return ph, addr, maildir, time.Since(t0), nil
}

// runIMAPCase measures posthorn's IMAP server, and Dovecot's on the same
// Maildir when compare is set.
func runIMAPCase(work, bins string, n, k, dk, bigK int, idleBudget time.Duration, compare, bare bool) bool {
	ok := true
	uid, gid, err := mailOwnerIDs()
	if err != nil {
		fatalf("imap case: user %s: %v", mailOwner, err)
	}
	ph, addr, maildir, took, err := mailInstance(work, bins, "imap", n, uid, gid)
	if err != nil {
		fatalf("imap case: starting posthorn: %v", err)
	}
	fmt.Printf("Maildir of %d messages (%d in cur/, one in %d with %q in its body) written directly in %.1f s, owned by %s; both servers run their mail processes as %s\n",
		n, n, rareEvery, searchWord, took.Seconds(), mailOwner, mailOwner)
	type sysRuns struct {
		name        string
		cold, warm  imapTimes
		idle        idleResult
		bigIdle     idleResult
		coldErr     error
		warmErr     error
		extrasFirst string
	}
	runs := func(name, a, extras string) sysRuns {
		s := sysRuns{name: name, extrasFirst: extras}
		s.cold, s.coldErr = imapRun(a, n)
		s.warm, s.warmErr = imapRun(a, n)
		for _, e := range []error{s.coldErr, s.warmErr} {
			if e != nil {
				ok = false
				fmt.Printf("  FAIL: %s: %v\n", name, e)
			}
		}
		return s
	}
	phLabel := ph.Label
	phKeep := func(l string) bool { return strings.HasPrefix(l, "imap") }
	// The sessions on the small mailbox first, in a fresh worker: a Go
	// heap keeps for a while what it grew to for the large mailbox, and
	// the sessions would reuse it unseen. It is another Maildir, so the
	// timed runs on the large one stay cold.
	idle := holdIdle(addr, idleUser, idleMsgs, k, 50, idleBudget, ph.MasterPid(), phLabel, phKeep)
	fmt.Printf("posthorn IDLE: %s\n", idle)
	settle(ph.MasterPid())
	pr := runs("posthorn", addr, maildirExtras(maildir))
	pr.idle = idle
	fmt.Printf("posthorn: %d-message run read %.1f MB\n", n, float64(pr.cold.bytes)/(1<<20))
	pr.bigIdle = holdIdle(addr, mailUser, n, bigK, 50, idleBudget, ph.MasterPid(), phLabel, phKeep)
	fmt.Printf("posthorn IDLE: %s\n", pr.bigIdle)
	if pr.idle.err != "" || pr.bigIdle.err != "" || pr.idle.opened < k && pr.idle.reduced == "" {
		ok = false
		fmt.Printf("posthorn log (last lines):\n%s\n", ph.LogTail(15))
	}
	if err := ph.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
	}
	var dr *sysRuns
	if compare {
		if bare {
			// The same start as posthorn's first session: no UIDs assigned.
			ents, _ := os.ReadDir(maildir)
			for _, e := range ents {
				if n := e.Name(); n != "cur" && n != "new" && n != "tmp" {
					os.RemoveAll(filepath.Join(maildir, n))
				}
			}
		}
		extras := maildirExtras(maildir)
		dv, err := startDovecot(work, filepath.Join(ph.dir, "mail"), uid, gid, true, false, dk+bigK)
		if dv != nil {
			atExit(func() { dv.Stop() })
		}
		if err != nil {
			fatalf("imap case: starting dovecot: %v", err)
		}
		dlabel := func(p procInfo) string { return p.comm }
		dkeep := func(l string) bool { return l == "imap" || l == "imap-login" }
		idle := holdIdle(dv.imap, idleUser, idleMsgs, dk, 50, idleBudget, dv.MasterPid(), dlabel, dkeep)
		fmt.Printf("dovecot IDLE: %s\n", idle)
		time.Sleep(2 * time.Second) // the closed sessions' processes exit
		settle(dv.MasterPid())
		r := runs("dovecot", dv.imap, extras)
		r.idle = idle
		r.bigIdle = holdIdle(dv.imap, mailUser, n, bigK, 50, idleBudget, dv.MasterPid(), dlabel, dkeep)
		fmt.Printf("dovecot IDLE: %s\n", r.bigIdle)
		if r.idle.err != "" || r.bigIdle.err != "" {
			fmt.Printf("dovecot log (last lines):\n%s\n", dv.LogTail(15))
		}
		if err := dv.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		}
		dr = &r
	}
	fmt.Printf("%-44s %12s %12s %8s\n", fmt.Sprintf("IMAP, %d messages", n), "posthorn", "dovecot", "ratio")
	row := func(what string, p, d time.Duration) {
		ds, rs := "-", "-"
		if dr != nil {
			ds, rs = secs(d), ratio(p, d)
		}
		fmt.Printf("%-44s %12s %12s %8s\n", what, secs(p), ds, rs)
	}
	get := func(f func(imapTimes) time.Duration) (time.Duration, time.Duration, time.Duration, time.Duration) {
		var dc, dw time.Duration
		if dr != nil {
			dc, dw = f(dr.cold), f(dr.warm)
		}
		return f(pr.cold), dc, f(pr.warm), dw
	}
	for _, op := range []struct {
		name string
		f    func(imapTimes) time.Duration
	}{
		{"connect+LOGIN", func(t imapTimes) time.Duration { return t.login }},
		{"SELECT INBOX", func(t imapTimes) time.Duration { return t.sel }},
		{"FETCH 1:* (FLAGS UID RFC822.SIZE)", func(t imapTimes) time.Duration { return t.flags }},
		{"FETCH 1:* ENVELOPE", func(t imapTimes) time.Duration { return t.env }},
		{"SEARCH TEXT " + searchWord, func(t imapTimes) time.Duration { return t.search }},
		{"whole session", func(t imapTimes) time.Duration { return t.total }},
	} {
		pc, dc, pw, dw := get(op.f)
		row("cold: "+op.name, pc, dc)
		row("warm: "+op.name, pw, dw)
	}
	for _, which := range []struct {
		what string
		p, d func(sysRuns) idleResult
	}{
		{fmt.Sprintf("IDLE on a %d-msg INBOX", idleMsgs), func(s sysRuns) idleResult { return s.idle }, nil},
		{fmt.Sprintf("IDLE on the %d-msg INBOX", n), func(s sysRuns) idleResult { return s.bigIdle }, nil},
	} {
		pi := which.p(pr)
		prss, ppss := pi.perSession()
		if dr != nil {
			di := which.p(*dr)
			drss, dpss := di.perSession()
			fmt.Printf("%-44s %9.1f KB %9.1f KB %8s\n", which.what+", RSS/session", prss, drss, fratio(prss, drss))
			fmt.Printf("%-44s %9.1f KB %9.1f KB %8s\n", which.what+", PSS/session", ppss, dpss, fratio(ppss, dpss))
			fmt.Printf("%-44s %12d %12d\n", which.what+", sessions", pi.opened, di.opened)
		} else {
			fmt.Printf("%-44s %9.1f KB\n%-44s %9.1f KB\n%-44s %12d\n", which.what+", RSS/session", prss, which.what+", PSS/session", ppss, which.what+", sessions", pi.opened)
		}
	}
	fmt.Println("ratio = posthorn/dovecot: time, or memory; below 1 is posthorn ahead")
	fmt.Printf("cold = the first session after the server started (posthorn: Maildir holding %s; dovecot: Maildir holding %s%s); warm = a second session right after\n",
		pr.extrasFirst, func() string {
			if dr != nil {
				return dr.extrasFirst
			}
			return "-"
		}(), func() string {
			switch {
			case dr == nil:
				return ""
			case bare:
				return ", posthorn's files removed first, so both assigned every UID"
			}
			return ", left by posthorn's runs, so Dovecot assigned no UIDs but built its own index and cache"
		}())
	return ok
}

func fratio(a, b float64) string {
	if a <= 0 || b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", a/b)
}

// pop3Times is one download.
type pop3Times struct {
	login, list, retr, total time.Duration
	msgs                     int
	bytes                    int64
}

// pop3Download logs in, LISTs, RETRs every message and QUITs without DELE.
func pop3Download(addr string, n int) (pop3Times, error) {
	var t pop3Times
	t0 := time.Now()
	pc, err := dialPOP3(addr)
	if err != nil {
		return t, err
	}
	defer pc.c.Close()
	if _, err := pc.cmd("USER %s", mailUser); err != nil {
		return t, fmt.Errorf("USER: %v", err)
	}
	if _, err := pc.cmd("PASS %s", mailPass); err != nil {
		return t, fmt.Errorf("PASS: %v", err)
	}
	t.login = time.Since(t0)
	s := time.Now()
	if _, err := pc.cmd("LIST"); err != nil {
		return t, fmt.Errorf("LIST: %v", err)
	}
	lines, _, err := pc.multi(true)
	if err != nil {
		return t, fmt.Errorf("LIST: %v", err)
	}
	t.list = time.Since(s)
	s = time.Now()
	for _, l := range lines {
		num := strings.Fields(l)[0]
		if _, err := pc.cmd("RETR %s", num); err != nil {
			return t, fmt.Errorf("RETR %s: %v", num, err)
		}
		_, b, err := pc.multi(false)
		if err != nil {
			return t, fmt.Errorf("RETR %s: %v", num, err)
		}
		t.bytes += b
		t.msgs++
	}
	t.retr = time.Since(s)
	if _, err := pc.cmd("QUIT"); err != nil {
		return t, fmt.Errorf("QUIT: %v", err)
	}
	t.total = time.Since(t0)
	if t.msgs != n {
		return t, fmt.Errorf("downloaded %d messages, want %d", t.msgs, n)
	}
	return t, nil
}

// runPOP3Case measures a full POP3 download from posthorn, and from
// Dovecot's pop3 on the same Maildir when compare is set.
func runPOP3Case(work, bins string, n int, compare bool) bool {
	ok := true
	uid, gid, err := mailOwnerIDs()
	if err != nil {
		fatalf("pop3 case: user %s: %v", mailOwner, err)
	}
	ph, addr, maildir, took, err := mailInstance(work, bins, "pop3", n, uid, gid)
	if err != nil {
		fatalf("pop3 case: starting posthorn: %v", err)
	}
	fmt.Printf("Maildir of %d messages in cur/ written directly in %.1f s\n", n, took.Seconds())
	dl := func(name, a string) (pop3Times, pop3Times) {
		c, err := pop3Download(a, n)
		if err != nil {
			ok = false
			fmt.Printf("  FAIL: %s cold: %v\n", name, err)
		}
		w, err := pop3Download(a, n)
		if err != nil {
			ok = false
			fmt.Printf("  FAIL: %s warm: %v\n", name, err)
		}
		return c, w
	}
	pc, pw := dl("posthorn", addr)
	if !ok {
		fmt.Printf("posthorn log (last lines):\n%s\n", ph.LogTail(15))
	}
	ph.Stop()
	var dc, dw pop3Times
	if compare {
		dv, err := startDovecot(work, filepath.Dir(filepath.Dir(filepath.Dir(maildir))), uid, gid, false, true, 10)
		if dv != nil {
			atExit(func() { dv.Stop() })
		}
		if err != nil {
			fatalf("pop3 case: starting dovecot: %v", err)
		}
		dc, dw = dl("dovecot", dv.pop3)
		dv.Stop()
	}
	fmt.Printf("%-44s %12s %12s %8s\n", fmt.Sprintf("POP3, %d messages", n), "posthorn", "dovecot", "ratio")
	row := func(what string, p, d time.Duration) {
		ds, rs := "-", "-"
		if compare {
			ds, rs = secs(d), ratio(p, d)
		}
		fmt.Printf("%-44s %12s %12s %8s\n", what, secs(p), ds, rs)
	}
	for _, run := range []struct {
		name string
		p, d pop3Times
	}{{"cold", pc, dc}, {"warm", pw, dw}} {
		row(run.name+": connect+USER/PASS", run.p.login, run.d.login)
		row(run.name+": LIST", run.p.list, run.d.list)
		row(run.name+": RETR of every message", run.p.retr, run.d.retr)
		row(run.name+": whole download", run.p.total, run.d.total)
	}
	fmt.Printf("downloaded %.1f MB per run (posthorn), %.1f MB (dovecot); one command at a time, no pipelining\n", float64(pc.bytes)/(1<<20), float64(dc.bytes)/(1<<20))
	fmt.Println("ratio = posthorn/dovecot time; cold = the first download after the server started (dovecot after posthorn's runs on the same Maildir), warm = a second one right after")
	return ok
}
