package master

import (
	"os/exec"
	"runtime"
	"sync"
	"time"

	"github.com/posthorn/posthorn/pkg/maillog"
	"golang.org/x/sys/unix"
)

// The kernel's parent-death signal (Pdeathsig) fires when the thread that
// forked the child exits, not the process. Go may retire threads at any
// time, so every child is forked from one thread that is locked for good
// and never exits: the signal then means exactly "master died".
var (
	spawnOnce sync.Once
	spawnReq  = make(chan spawnCall)
)

type spawnCall struct {
	cmd   *exec.Cmd
	slack time.Duration
	done  chan error
}

// spawn starts cmd from the spawning thread, with timer slack slack (0:
// the default one).
func spawn(cmd *exec.Cmd, slack time.Duration) error {
	spawnOnce.Do(func() { go spawner() })
	done := make(chan error)
	spawnReq <- spawnCall{cmd, slack, done}
	return <-done
}

// mailFlowTimerSlack is the timer slack (prctl(2) PR_SET_TIMERSLACK) of the
// daemons that move mail (smtpd, qmgr, local, smtp, pickup), as systemd's
// TimerSlackNSec= would set it. A child inherits it from the thread that
// forked it, keeps it across execve, and hands it to every thread it
// starts. None of them has a timer that needs to fire within a
// millisecond, whereas the Go runtime's scheduler thread (sysmon), once it
// has taken a processor from a thread in a system call, polls every 20 µs
// for a while: with the default 50 µs slack that is tens of thousands of
// wake-ups a second under load, each a costly timer on a virtual machine;
// with 1 ms the kernel folds them into other wake-ups. Measured on the
// local-delivery benchmark: 13-15% less CPU per message. The IMAP and POP3
// daemons keep the default: their heavy work is computation spread over
// processors (a large folder's first listing), which the runtime's own
// short sleeps coordinate, and a coarser slack measurably slowed it.
const mailFlowTimerSlack = time.Millisecond

func spawner() {
	runtime.LockOSThread() // never unlocked, and this goroutine never returns
	var current time.Duration
	for c := range spawnReq {
		if c.slack != current {
			// 0 restores the thread's default slack.
			if err := unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(c.slack), 0, 0, 0); err != nil {
				maillog.Warning("cannot set the timer slack of %s: %v", c.cmd.Path, err)
			} else {
				current = c.slack
			}
		}
		c.done <- c.cmd.Start()
	}
}
