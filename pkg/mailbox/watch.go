package mailbox

import (
	"bytes"
	"os"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Watch calls fn soon after anything changes in the folder: a delivery to
// new/, a flag rename or expunge in cur/, a rewrite of dovecot-uidlist
// (inotify on new/, cur/ and the folder directory), until stop is called.
// Calls are coalesced per batch of events and fn must not block; it
// typically wakes the session, which calls Sync. Changes made through this
// process are notified too.
//
// Every Watch of a process shares one inotify instance and one set of
// watches per folder, and no goroutine is kept per watcher: the kernel
// allows a user few instances (128 by default), and one IMAP worker serves
// every session of its owner — for virtual users, of all of them.
func (m *Mailbox) Watch(fn func()) (stop func(), err error) {
	w, err := theWatcher()
	if err != nil {
		return nil, err
	}
	sub := &subscriber{fn: fn}
	fw, err := w.subscribe(m.f.s.path+"/"+m.f.dir, sub)
	if err != nil {
		return nil, err
	}
	var once sync.Once
	return func() { once.Do(func() { w.unsubscribe(fw, sub) }) }, nil
}

// subscriber is one Watch.
type subscriber struct{ fn func() }

const watchMask = unix.IN_CREATE | unix.IN_DELETE | unix.IN_MOVED_FROM | unix.IN_MOVED_TO |
	unix.IN_CLOSE_WRITE | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_ONLYDIR | unix.IN_DONT_FOLLOW

// watcher is the process's inotify instance.
type watcher struct {
	fd   int
	file *os.File

	mu      sync.Mutex
	linger  time.Duration           // watchLinger; shorter in tests
	folders map[string]*folderWatch // by folder path
	byWd    map[int32][]*folderWatch
	wdRefs  map[int32]int // folders using each watch (one directory, one wd)
}

// folderWatch is the watches on one folder's new/, cur/ and directory.
type folderWatch struct {
	base    string
	wds     [3]int32 // new/, cur/, the folder itself
	subs    map[*subscriber]struct{}
	failed  bool // a watched directory went away: subscribers were told
	dropped bool // its watches are removed: no longer usable
}

var (
	watcherOnce sync.Once
	watcherInst *watcher
	watcherErr  error
)

func theWatcher() (*watcher, error) {
	watcherOnce.Do(func() {
		fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
		if err != nil {
			watcherErr = err
			return
		}
		// A non-blocking descriptor goes through the runtime poller.
		w := &watcher{fd: fd, file: os.NewFile(uintptr(fd), "inotify"), linger: watchLinger,
			folders: map[string]*folderWatch{}, byWd: map[int32][]*folderWatch{}, wdRefs: map[int32]int{}}
		go w.run()
		watcherInst = w
	})
	return watcherInst, watcherErr
}

func (w *watcher) subscribe(base string, sub *subscriber) (*folderWatch, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	fw := w.folders[base]
	if fw == nil || fw.failed || fw.dropped {
		fw = &folderWatch{base: base, subs: map[*subscriber]struct{}{}}
		for i, d := range []string{base + "/new", base + "/cur", base} {
			wd, err := unix.InotifyAddWatch(w.fd, d, watchMask)
			if err != nil {
				for _, prev := range fw.wds[:i] {
					w.dropWd(prev, fw)
				}
				return nil, err
			}
			fw.wds[i] = int32(wd)
			w.byWd[int32(wd)] = append(w.byWd[int32(wd)], fw)
			w.wdRefs[int32(wd)]++
		}
		w.folders[base] = fw
	}
	fw.subs[sub] = struct{}{}
	return fw, nil
}

func (w *watcher) unsubscribe(fw *folderWatch, sub *subscriber) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(fw.subs, sub)
	if len(fw.subs) == 0 {
		// Removing a watch waits for the kernel (an RCU grace period,
		// milliseconds): the folder keeps its watches a while for the
		// next session, which commonly follows at once.
		time.AfterFunc(w.linger, func() {
			w.mu.Lock()
			defer w.mu.Unlock()
			if len(fw.subs) == 0 && !fw.dropped {
				fw.dropped = true
				for _, wd := range fw.wds {
					w.dropWd(wd, fw)
				}
				if w.folders[fw.base] == fw {
					delete(w.folders, fw.base)
				}
			}
		})
	}
}

// watchLinger is how long a folder nobody watches keeps its watches.
const watchLinger = time.Minute

// dropWd releases fw's use of watch wd, removing it from the kernel with
// its last user; w.mu is held.
func (w *watcher) dropWd(wd int32, fw *folderWatch) {
	list := w.byWd[wd]
	for i, x := range list {
		if x == fw {
			list = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(w.byWd, wd)
	} else {
		w.byWd[wd] = list
	}
	if _, live := w.wdRefs[wd]; !live {
		return // removed by the kernel (IN_IGNORED); the number may be reused
	}
	if w.wdRefs[wd]--; w.wdRefs[wd] <= 0 {
		delete(w.wdRefs, wd)
		unix.InotifyRmWatch(w.fd, uint32(wd))
	}
}

// run reads events and wakes the subscribers of the folders they concern.
func (w *watcher) run() {
	buf := make([]byte, 64<<10)
	for {
		n, err := w.file.Read(buf)
		if err != nil {
			return
		}
		w.dispatch(buf[:n])
	}
}

func (w *watcher) dispatch(b []byte) {
	// The callbacks run after w.mu is released: they take their own
	// locks, which Watch and stop may hold while taking w.mu.
	var calls []func()
	defer func() {
		for _, fn := range calls {
			fn()
		}
	}()
	w.mu.Lock()
	defer w.mu.Unlock()
	wake := map[*folderWatch]bool{}
	for len(b) >= unix.SizeofInotifyEvent {
		ev := (*unix.InotifyEvent)(unsafe.Pointer(&b[0]))
		end := unix.SizeofInotifyEvent + int(ev.Len)
		if end > len(b) {
			break
		}
		name := string(bytes.TrimRight(b[unix.SizeofInotifyEvent:end], "\x00"))
		b = b[end:]
		if ev.Mask&unix.IN_Q_OVERFLOW != 0 {
			// Events were lost: everyone syncs.
			for _, list := range w.byWd {
				for _, fw := range list {
					wake[fw] = true
				}
			}
			continue
		}
		if ev.Mask&unix.IN_IGNORED != 0 {
			// The kernel dropped the watch (its directory is gone) and
			// may give its number to another.
			for _, fw := range w.byWd[ev.Wd] {
				fw.failed = true
				wake[fw] = true
			}
			delete(w.byWd, ev.Wd)
			delete(w.wdRefs, ev.Wd)
			continue
		}
		for _, fw := range w.byWd[ev.Wd] {
			if ev.Mask&(unix.IN_DELETE_SELF|unix.IN_MOVE_SELF) != 0 {
				// The folder (or its new/ or cur/) went away or moved:
				// its watches no longer say anything. Subscribers are
				// told; their next Sync finds out what happened.
				fw.failed = true
				wake[fw] = true
				continue
			}
			// In the folder directory only dovecot-uidlist matters, not
			// posthorn's own index, cache and lock files.
			if ev.Wd != fw.wds[2] || name == uidlistFile {
				wake[fw] = true
			}
		}
	}
	for fw := range wake {
		for sub := range fw.subs {
			calls = append(calls, sub.fn)
		}
		if fw.failed && w.folders[fw.base] == fw {
			// The next Watch of this folder adds fresh watches.
			delete(w.folders, fw.base)
		}
	}
}
