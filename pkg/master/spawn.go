package master

import (
	"os/exec"
	"runtime"
	"sync"
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
	cmd  *exec.Cmd
	done chan error
}

func spawn(cmd *exec.Cmd) error {
	spawnOnce.Do(func() { go spawner() })
	done := make(chan error)
	spawnReq <- spawnCall{cmd, done}
	return <-done
}

func spawner() {
	runtime.LockOSThread() // never unlocked, and this goroutine never returns
	for c := range spawnReq {
		c.done <- c.cmd.Start()
	}
}
