// Package fsync flushes a file or folder to disk without holding a thread
// of the Go runtime in the kernel while the disk works.
//
// A plain fsync(2) blocks the calling thread for the disk's round trip. The
// runtime notices a thread stuck in a system call only by polling (its
// sysmon thread, every 20 µs while it keeps finding one), then hands the
// thread's processor to another thread, and takes it back when the call
// returns: on a daemon that fsyncs for every message, this polling and
// handing over cost more CPU than the fsync itself. Through io_uring(7) the
// fsync runs in the kernel's own worker; the caller's goroutine waits on an
// eventfd in the runtime's network poller, like any socket, and no thread
// blocks.
//
// Where io_uring is missing or refused (old kernels, seccomp filters,
// kernel.io_uring_disabled), Fd falls back to fsync(2): the same durability,
// at the old cost. Only IORING_OP_FSYNC is ever submitted, on descriptors
// the caller holds; no buffers are shared with the kernel.
package fsync

import (
	"os"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Fd flushes the file or folder open as fd (fsync(2), not fdatasync). fd
// must stay open until Fd returns.
func Fd(fd int) error {
	once.Do(setup)
	if r := theRing; r != nil {
		if err, ok := r.fsync(fd); ok {
			return err
		}
	}
	return plain(fd)
}

// File is Fd for an *os.File, with the file's name in the error.
func File(f *os.File) error {
	sc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := sc.Control(func(fd uintptr) { ferr = Fd(int(fd)) }); err != nil {
		return err
	}
	if ferr != nil {
		return &os.PathError{Op: "fsync", Path: f.Name(), Err: ferr}
	}
	return nil
}

func plain(fd int) error {
	for {
		if err := unix.Fsync(fd); err != unix.EINTR {
			return err
		}
	}
}

var (
	once    sync.Once
	theRing *ring
)

// disabled turns the ring off (tests compare both paths).
var disabled atomic.Bool

func setup() {
	r, err := newRing(entries)
	if err == nil {
		theRing = r
	}
}

// entries bounds the fsyncs in flight through the ring; more callers wait
// for a slot. The completion queue is twice as large (the kernel's
// default), so it can never overflow.
const entries = 128

// Kernel ABI (include/uapi/linux/io_uring.h).
const (
	sysSetup    = 425
	sysEnter    = 426
	sysRegister = 427

	opFsync         = 3
	registerEventfd = 4
	featSingleMmap  = 1 << 0

	offSQRing = 0
	offCQRing = 0x8000000
	offSQEs   = 0x10000000

	sqeSize = 64
	cqeSize = 16
)

type sqringOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type cqringOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

type params struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
	resv                                                                   [3]uint32
	sqOff                                                                  sqringOffsets
	cqOff                                                                  cqringOffsets
}

type ring struct {
	fd int

	mu     sync.Mutex // serializes submission
	sqTail *uint32
	sqHead *uint32
	sqMask uint32
	sqArr  unsafe.Pointer
	sqes   []byte

	cqHead *uint32
	cqTail *uint32
	cqMask uint32
	cqes   unsafe.Pointer

	ev *os.File // eventfd the kernel signals for every completion

	slots   chan uint32  // free request slots; also bounds what is in flight
	waiters []chan int32 // per slot: the result of its fsync
	mem     [][]byte     // the mappings, kept referenced
}

func newRing(n uint32) (*ring, error) {
	if disabled.Load() {
		return nil, unix.ENOSYS
	}
	var p params
	fd, _, errno := unix.Syscall(sysSetup, uintptr(n), uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return nil, errno
	}
	r := &ring{fd: int(fd)}
	fail := func(err error) (*ring, error) {
		for _, m := range r.mem {
			unix.Munmap(m)
		}
		unix.Close(r.fd)
		return nil, err
	}
	if p.features&featSingleMmap == 0 {
		return fail(unix.ENOSYS) // kernels before 5.4: keep to fsync(2)
	}
	sqSize := int(p.sqOff.array + p.sqEntries*4)
	if cq := int(p.cqOff.cqes + p.cqEntries*cqeSize); cq > sqSize {
		sqSize = cq
	}
	rings, err := unix.Mmap(r.fd, offSQRing, sqSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fail(err)
	}
	r.mem = append(r.mem, rings)
	sqes, err := unix.Mmap(r.fd, offSQEs, int(p.sqEntries)*sqeSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fail(err)
	}
	r.mem = append(r.mem, sqes)
	base := unsafe.Pointer(&rings[0])
	at := func(off uint32) *uint32 { return (*uint32)(unsafe.Add(base, off)) }
	r.sqHead, r.sqTail = at(p.sqOff.head), at(p.sqOff.tail)
	r.sqMask = *at(p.sqOff.ringMask)
	r.sqArr = unsafe.Add(base, p.sqOff.array)
	r.sqes = sqes
	r.cqHead, r.cqTail = at(p.cqOff.head), at(p.cqOff.tail)
	r.cqMask = *at(p.cqOff.ringMask)
	r.cqes = unsafe.Add(base, p.cqOff.cqes)

	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return fail(err)
	}
	ev32 := int32(efd)
	if _, _, errno := unix.Syscall6(sysRegister, fd, registerEventfd, uintptr(unsafe.Pointer(&ev32)), 1, 0, 0); errno != 0 {
		unix.Close(efd)
		return fail(errno)
	}
	// A non-blocking descriptor is handed to the runtime's poller.
	r.ev = os.NewFile(uintptr(efd), "io_uring eventfd")

	slots := p.sqEntries
	if slots > p.cqEntries {
		slots = p.cqEntries
	}
	r.slots = make(chan uint32, slots)
	r.waiters = make([]chan int32, slots)
	for i := range slots {
		r.slots <- i
		r.waiters[i] = make(chan int32, 1)
	}
	go r.reap()
	return r, nil
}

// fsync submits an fsync of fd and waits for it. ok is false when the ring
// could not take it (the caller then uses fsync(2)).
func (r *ring) fsync(fd int) (err error, ok bool) {
	slot := <-r.slots
	defer func() { r.slots <- slot }()

	r.mu.Lock()
	tail := *r.sqTail // only this side moves the tail
	idx := tail & r.sqMask
	sqe := r.sqes[idx*sqeSize : (idx+1)*sqeSize]
	clear(sqe)
	sqe[0] = opFsync
	*(*int32)(unsafe.Pointer(&sqe[4])) = int32(fd)
	*(*uint64)(unsafe.Pointer(&sqe[32])) = uint64(slot)
	*(*uint32)(unsafe.Add(r.sqArr, idx*4)) = idx
	atomic.StoreUint32(r.sqTail, tail+1)
	for {
		n, _, errno := unix.Syscall6(sysEnter, uintptr(r.fd), 1, 0, 0, 0, 0)
		if errno == unix.EINTR || errno == unix.EAGAIN || errno == unix.EBUSY {
			if atomic.LoadUint32(r.sqHead) != tail {
				break // consumed after all
			}
			continue
		}
		if errno != 0 || n != 1 {
			// Not consumed: without SQPOLL the kernel reads the queue only
			// inside io_uring_enter, which this lock serializes, so the
			// entry can be taken back.
			if atomic.LoadUint32(r.sqHead) == tail {
				atomic.StoreUint32(r.sqTail, tail)
				r.mu.Unlock()
				return nil, false
			}
		}
		break
	}
	r.mu.Unlock()

	res := <-r.waiters[slot]
	switch {
	case res == -int32(unix.ECANCELED) || res == -int32(unix.EINTR):
		// The submitting thread exited (its requests are cancelled with
		// it) or the worker was interrupted: do it here instead.
		return nil, false
	case res < 0:
		return unix.Errno(-res), true
	}
	return nil, true
}

// reap waits on the eventfd and hands each completion to its waiter.
func (r *ring) reap() {
	var b [8]byte
	for {
		if _, err := r.ev.Read(b[:]); err != nil {
			// Cannot happen with an eventfd; never leave waiters hanging.
			if err != unix.EINTR {
				panic("fsync: io_uring eventfd: " + err.Error())
			}
		}
		head := *r.cqHead
		for {
			tail := atomic.LoadUint32(r.cqTail)
			if head == tail {
				break
			}
			for ; head != tail; head++ {
				cqe := unsafe.Add(r.cqes, (head&r.cqMask)*cqeSize)
				slot := *(*uint64)(cqe)
				res := *(*int32)(unsafe.Add(cqe, 8))
				if slot < uint64(len(r.waiters)) {
					r.waiters[slot] <- res
				}
			}
			atomic.StoreUint32(r.cqHead, head)
		}
	}
}
