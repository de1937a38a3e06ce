package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// clockTicks is USER_HZ, the unit of the CPU times in /proc/<pid>/stat.
var clockTicks = func() float64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if v, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && v > 0 {
			return float64(v)
		}
	}
	return 100
}()

// procInfo is what /proc tells about one process.
type procInfo struct {
	pid, ppid int
	comm      string
	// utime, stime: the process's own CPU; cutime, cstime: that of its
	// children it has reaped. All in clock ticks.
	utime, stime, cutime, cstime uint64
	hwmKB                        uint64 // VmHWM, peak resident set
}

func (p procInfo) own() uint64 { return p.utime + p.stime }
func (p procInfo) all() uint64 { return p.utime + p.stime + p.cutime + p.cstime }
func (p procInfo) sys() uint64 { return p.stime + p.cstime }

// readStat parses /proc/<pid>/stat (proc(5)).
func readStat(pid int) (procInfo, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procInfo{}, err
	}
	open, close := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || close < open {
		return procInfo{}, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[close+1:]))
	// f[0] is field 3 (state); field k is f[k-3].
	if len(f) < 15 {
		return procInfo{}, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	num := func(k int) uint64 { v, _ := strconv.ParseUint(f[k-3], 10, 64); return v }
	return procInfo{
		pid: pid, ppid: int(num(4)), comm: string(b[open+1 : close]),
		utime: num(14), stime: num(15), cutime: num(16), cstime: num(17),
	}, nil
}

// readHWM returns VmHWM in kB (0 for a zombie).
func readHWM(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			v, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(line[6:]), " kB"), 10, 64)
			return v
		}
	}
	return 0
}

// processTree returns root and all its descendants.
func processTree(root int) []procInfo {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	all := map[int]procInfo{}
	kids := map[int][]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		p, err := readStat(pid)
		if err != nil {
			continue
		}
		all[pid] = p
		kids[p.ppid] = append(kids[p.ppid], pid)
	}
	if _, ok := all[root]; !ok {
		return nil
	}
	var out []procInfo
	queue := []int{root}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		p := all[pid]
		p.hwmKB = readHWM(pid)
		out = append(out, p)
		queue = append(queue, kids[pid]...)
	}
	return out
}

// tracker samples a process tree during a run: CPU time per program and in
// total, and the peak resident set of each program.
type tracker struct {
	root  int
	label func(p procInfo) string // program name of a process

	mu        sync.Mutex
	base      map[int]procInfo // at start
	baseTotal uint64
	baseSys   uint64
	last      map[int]procInfo // latest sample of every process seen
	names     map[int]string
	stop      chan struct{}
	done      chan struct{}
}

func newTracker(root int, label func(p procInfo) string) *tracker {
	return &tracker{root: root, label: label, base: map[int]procInfo{}, last: map[int]procInfo{},
		names: map[int]string{}, stop: make(chan struct{}), done: make(chan struct{})}
}

// treeTotal is the CPU time of a whole tree: every live process's own time
// plus what it has reaped, which covers every process that has exited (as
// long as its parent was in the tree).
func treeTotal(ps []procInfo) (all, sys uint64) {
	for _, p := range ps {
		all += p.all()
		sys += p.sys()
	}
	return all, sys
}

func (t *tracker) record(ps []procInfo) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range ps {
		// A process forked by master carries master's name until it
		// executes its program: name it again when its comm changes.
		if old, ok := t.last[p.pid]; !ok || old.comm != p.comm {
			t.names[p.pid] = t.label(p)
		}
		if old, ok := t.last[p.pid]; ok && p.hwmKB == 0 {
			p.hwmKB = old.hwmKB // a zombie reports none
		}
		t.last[p.pid] = p
	}
}

// Start takes the baseline and samples every interval until Finish.
func (t *tracker) Start(interval time.Duration) {
	ps := processTree(t.root)
	for _, p := range ps {
		t.base[p.pid] = p
	}
	t.baseTotal, t.baseSys = treeTotal(ps)
	t.record(ps)
	go func() {
		defer close(t.done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-t.stop:
				return
			case <-tick.C:
				t.record(processTree(t.root))
			}
		}
	}()
}

type nameValue struct {
	name  string
	value float64
	count int // processes that ran this program
}

// usage is what a run cost.
type usage struct {
	total float64 // CPU seconds of the whole tree
	sys   float64 // the part spent in the kernel
	cpu   []nameValue
	rss   []nameValue // peak RSS in MB, the largest process of each program
}

// Finish takes the last sample and computes the usage since Start.
func (t *tracker) Finish() usage {
	ps := processTree(t.root)
	t.record(ps)
	close(t.stop)
	<-t.done
	t.mu.Lock()
	defer t.mu.Unlock()
	var u usage
	if len(ps) > 0 {
		all, sys := treeTotal(ps)
		u.total = float64(all-t.baseTotal) / clockTicks
		u.sys = float64(sys-t.baseSys) / clockTicks
	}
	cpu := map[string]float64{}
	rss := map[string]float64{}
	count := map[string]int{}
	var attributed float64
	rootName := t.names[t.root]
	for pid, p := range t.last {
		name := t.names[pid]
		if pid != t.root && name == rootName {
			// master forked, not yet running the daemon: its time is
			// master's, its memory is master's pages.
			p.hwmKB = 0
		}
		own := p.own()
		if b, ok := t.base[pid]; ok {
			own -= b.own()
		}
		s := float64(own) / clockTicks
		cpu[name] += s
		attributed += s
		if mb := float64(p.hwmKB) / 1024; mb > rss[name] {
			rss[name] = mb
		}
		if p.hwmKB > 0 || pid == t.root {
			count[name]++
		}
	}
	for name, v := range cpu {
		u.cpu = append(u.cpu, nameValue{name, v, count[name]})
		u.rss = append(u.rss, nameValue{name, rss[name], count[name]})
	}
	// Processes that exited between two samples: their last moments are
	// in their parent's reaped time only.
	if rest := u.total - attributed; rest >= 0.01 && rest >= u.total/100 {
		u.cpu = append(u.cpu, nameValue{"exited", rest, 0})
	}
	sort.SliceStable(u.cpu, func(i, j int) bool { return u.cpu[i].value > u.cpu[j].value })
	sort.SliceStable(u.rss, func(i, j int) bool { return u.rss[i].value > u.rss[j].value })
	return u
}

// settle waits until the process tree under root has used no CPU for
// 300 ms (at most 15 s): the work a step left behind (sessions closing)
// is not timed as the next step's.
func settle(root int) {
	deadline := time.Now().Add(15 * time.Second)
	last, quiet := uint64(0), 0
	for time.Now().Before(deadline) && quiet < 3 {
		all, _ := treeTotal(processTree(root))
		if all == last {
			quiet++
		} else {
			last, quiet = all, 0
		}
		time.Sleep(100 * time.Millisecond)
	}
}
