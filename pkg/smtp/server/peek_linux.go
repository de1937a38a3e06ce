package server

import (
	"net"
	"syscall"
	"unsafe"
)

// inputPending reports whether the kernel holds unread input for c, without
// reading it. It sees what a client sent before it was allowed to, even when
// that arrived in a later segment than the command before it.
func inputPending(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var n int32
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		// Raw: TIOCINQ only reads a counter, it never blocks.
		_, _, errno = syscall.RawSyscall(syscall.SYS_IOCTL, fd, syscall.TIOCINQ, uintptr(unsafe.Pointer(&n)))
	}); err != nil || errno != 0 {
		return false
	}
	return n > 0
}
