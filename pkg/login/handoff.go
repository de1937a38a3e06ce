package login

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/posthorn/posthorn/pkg/ipc"
)

// Handoff gives the authenticated connection c to the dispatcher listening
// at socketPath. A plain TCP connection changes process and Handoff returns
// at once; a TLS connection is relayed by this process until either side
// closes, so Handoff returns when the session ends. Either way c is closed
// when Handoff returns. When no backend took the connection (the dispatcher
// is unreachable or refused it), refused, if not nil, is called first so
// the client hears a temporary failure instead of a dropped connection.
func Handoff(ctx context.Context, socketPath, token string, c net.Conn, s Session, refused func(net.Conn)) error {
	defer c.Close()
	var (
		send  *os.File
		relay net.Conn // our end of the socketpair, for TLS
	)
	if _, ok := c.(*tls.Conn); ok {
		fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("login handoff: %w", err)
		}
		ours := os.NewFile(uintptr(fds[0]), "relay")
		send = os.NewFile(uintptr(fds[1]), "session")
		relay, err = net.FileConn(ours)
		ours.Close()
		if err != nil {
			send.Close()
			return fmt.Errorf("login handoff: %w", err)
		}
		defer relay.Close()
		s.TLS = true
	} else {
		f, err := fileOf(c)
		if err != nil {
			return fmt.Errorf("login handoff: %w", err)
		}
		send = f
	}
	taken, err := dispatch(socketPath, handoff{Token: token, Session: s}, send)
	send.Close()
	if err != nil {
		if !taken && refused != nil {
			refused(c)
		}
		return err
	}
	if relay == nil {
		return nil
	}
	pump(ctx, c, relay)
	return nil
}

// dispatch sends the request with the descriptor and waits for the answer.
// taken is false when the descriptor surely reached no backend; after the
// request went out without an answer, it may have.
func dispatch(socketPath string, h handoff, f *os.File) (taken bool, err error) {
	dc, err := ipc.Dial(socketPath, handoffTimeout)
	if err != nil {
		return false, fmt.Errorf("login handoff: %w", err)
	}
	defer dc.Close()
	dc.SetDeadline(time.Now().Add(handoffTimeout))
	if err := dc.Send(h, f); err != nil {
		return false, fmt.Errorf("login handoff: %w", err)
	}
	var r reply
	if _, err := dc.Receive(&r); err != nil {
		return true, fmt.Errorf("login handoff: %w", err)
	}
	if !r.OK {
		return false, fmt.Errorf("login handoff refused: %s", r.Error)
	}
	return true, nil
}

// fileOf duplicates the descriptor under a connection.
func fileOf(c net.Conn) (*os.File, error) {
	type filer interface{ File() (*os.File, error) }
	if fc, ok := c.(filer); ok {
		return fc.File()
	}
	return nil, errors.New("connection has no descriptor to pass")
}

// pump relays bytes both ways until one side ends, then closes both.
func pump(ctx context.Context, a, b net.Conn) {
	var once sync.Once
	closeBoth := func() { once.Do(func() { a.Close(); b.Close() }) }
	stop := context.AfterFunc(ctx, closeBoth)
	defer stop()
	var wg sync.WaitGroup
	wg.Add(2)
	// Small buffers: an idle IMAP session should cost little here.
	go func() { defer wg.Done(); io.CopyBuffer(a, b, make([]byte, 4096)); closeBoth() }()
	go func() { defer wg.Done(); io.CopyBuffer(b, a, make([]byte, 4096)); closeBoth() }()
	wg.Wait()
}
