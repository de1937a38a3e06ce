package master

import (
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// notifier speaks systemd's sd_notify protocol for Type=notify units: one
// datagram per state change to $NOTIFY_SOCKET.
type notifier struct {
	addr string // "" when not started by systemd
}

func newNotifier() *notifier {
	n := &notifier{addr: os.Getenv("NOTIFY_SOCKET")}
	// The daemons are not the unit's main process; systemd would reject
	// their messages, so they must not see the socket.
	os.Unsetenv("NOTIFY_SOCKET")
	return n
}

func (n *notifier) send(state string) error {
	if n.addr == "" {
		return nil
	}
	// Go maps a leading "@" to Linux's abstract namespace, as systemd means it.
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: n.addr, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("notify %s: %w", n.addr, err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("notify %s: %w", n.addr, err)
	}
	return nil
}

// reloading is RELOADING=1 with the timestamp Type=notify-reload requires.
func reloading() string {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", ts.Nano()/1000)
}
