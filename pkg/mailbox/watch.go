package mailbox

import (
	"bytes"
	"context"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Watch returns a channel that receives a value soon after anything
// changes in the folder: a delivery to new/, a flag rename or expunge in
// cur/, a rewrite of dovecot-uidlist (inotify on new/, cur/ and the folder
// directory). Notifications are coalesced; the receiver calls Sync. The
// channel is closed when ctx ends or the watch fails. Changes made through
// this process are notified too.
func (m *Mailbox) Watch(ctx context.Context) (<-chan struct{}, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, err
	}
	base := m.f.s.path + "/" + m.f.dir
	const mask = unix.IN_CREATE | unix.IN_DELETE | unix.IN_MOVED_FROM | unix.IN_MOVED_TO |
		unix.IN_CLOSE_WRITE | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_ONLYDIR | unix.IN_DONT_FOLLOW
	var rootWd int
	for i, d := range []string{base + "/new", base + "/cur", base} {
		wd, err := unix.InotifyAddWatch(fd, d, mask)
		if err != nil {
			unix.Close(fd)
			return nil, err
		}
		if i == 2 {
			rootWd = wd
		}
	}
	// A non-blocking descriptor goes through the runtime poller, so Close
	// wakes the reader.
	file := os.NewFile(uintptr(fd), "inotify")
	ch := make(chan struct{}, 1)
	go func() {
		<-ctx.Done()
		file.Close()
	}()
	go func() {
		defer close(ch)
		buf := make([]byte, 64<<10)
		for {
			n, err := file.Read(buf)
			if err != nil {
				return
			}
			if relevant(buf[:n], rootWd) {
				select {
				case ch <- struct{}{}:
				default:
				}
			}
		}
	}()
	return ch, nil
}

// relevant reports whether a batch of inotify events matters: anything in
// new/ or cur/, and in the folder directory only dovecot-uidlist (not
// posthorn's own index, cache and lock files).
func relevant(b []byte, rootWd int) bool {
	for len(b) >= unix.SizeofInotifyEvent {
		ev := (*unix.InotifyEvent)(unsafe.Pointer(&b[0]))
		end := unix.SizeofInotifyEvent + int(ev.Len)
		if end > len(b) {
			return true
		}
		if int(ev.Wd) != rootWd || ev.Mask&(unix.IN_DELETE_SELF|unix.IN_MOVE_SELF|unix.IN_Q_OVERFLOW) != 0 {
			return true
		}
		name := string(bytes.TrimRight(b[unix.SizeofInotifyEvent:end], "\x00"))
		if name == uidlistFile {
			return true
		}
		b = b[end:]
	}
	return false
}
