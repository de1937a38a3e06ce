package main

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

// Linux's inode flags ioctls (linux/fs.h) and the Orlov allocator's
// top-of-hierarchy flag (chattr +T).
const (
	fsIocGetFlags = 0x80086601
	fsIocSetFlags = 0x40086602
	fsTopdirFl    = 0x00020000
)

// setTopDir marks dir as the top of a directory hierarchy for ext4's
// Orlov allocator, so every folder created in it lands in a block group of
// its own choosing (one with few folders and many free inodes) instead of
// next to its parent.
//
// This matters on an ext4 without a journal, such as this machine's: there
// the inode allocator skips every inode of the group freed in the last
// minute (up to six while its inode table block is dirty), checking each
// in turn, so creating a file costs time proportional to the files
// recently deleted in its group. A mail system deletes a queue file per
// message; without this, the second system measured would also pay for
// the first one's deletions.
func setTopDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	var flags int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), fsIocGetFlags, uintptr(unsafe.Pointer(&flags))); e != 0 {
		return e
	}
	flags |= fsTopdirFl
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), fsIocSetFlags, uintptr(unsafe.Pointer(&flags))); e != 0 {
		return e
	}
	return nil
}

// cpuTimes returns, from /proc/stat, the CPU time all processors spent
// busy since boot (not idle, not waiting for I/O, not stolen) and the time
// the hypervisor took from them (steal): on a shared virtual machine the
// second varies from one round to the next and explains rounds that stand
// out.
func cpuTimes() (busy, steal time.Duration) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0
	}
	var busyT, stealT uint64
	for i, s := range f[1:] {
		if i >= 8 { // guest time is already in user
			break
		}
		v, _ := strconv.ParseUint(s, 10, 64)
		switch i {
		case 3, 4: // idle, iowait
		case 7:
			stealT = v
		default:
			busyT += v
		}
	}
	ticks := func(t uint64) time.Duration { return time.Duration(float64(t) / clockTicks * float64(time.Second)) }
	return ticks(busyT), ticks(stealT)
}

// ownCPU is the CPU time of this program and of the children it has
// waited for (smtp-source).
func ownCPU() time.Duration {
	var total time.Duration
	for _, who := range []int{syscall.RUSAGE_SELF, syscall.RUSAGE_CHILDREN} {
		var ru syscall.Rusage
		if syscall.Getrusage(who, &ru) == nil {
			total += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
	}
	return total
}

func numCPU() int {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "cpu") && len(line) > 3 && line[3] >= '0' && line[3] <= '9' {
			n++
		}
	}
	return n
}
