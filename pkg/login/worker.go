package login

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/posthorn/posthorn/pkg/ipc"
)

// ServeFunc serves one handed-over session; c reads first what the login
// stage had already buffered.
type ServeFunc func(ctx context.Context, c net.Conn, s Session)

// RunWorker is a worker's main loop: fd 3 connects it to the dispatcher,
// which sends it sessions. It serves each in its own goroutine and exits
// once it has had no session for idle (after the dispatcher agrees, so no
// session is lost in between) or when the dispatcher goes away; sessions in
// progress are waited for.
func RunWorker(ctx context.Context, serve ServeFunc, idle time.Duration) error {
	f := os.NewFile(3, "dispatcher")
	nc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	c := ipc.New(nc.(*net.UnixConn))
	defer c.Close()

	var (
		mu     sync.Mutex
		active int
		last   = time.Now()
		wg     sync.WaitGroup
	)
	defer wg.Wait()
	msgs := make(chan workerMsg)
	conns := make(chan *os.File)
	go func() {
		defer close(msgs)
		for {
			var m workerMsg
			files, err := c.Receive(&m)
			if err != nil {
				return
			}
			if m.Op == "session" && len(files) == 1 && m.Session != nil {
				msgs <- m
				conns <- files[0]
				continue
			}
			for _, f := range files {
				f.Close()
			}
			msgs <- m
		}
	}()
	tick := time.NewTicker(idle / 4)
	defer tick.Stop()
	asked := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-msgs:
			if !ok {
				return nil // the dispatcher is gone
			}
			switch m.Op {
			case "exit":
				return nil
			case "session":
				f := <-conns
				asked = false
				s := *m.Session
				sc, err := sessionConn(f, s)
				f.Close()
				if err != nil {
					continue
				}
				mu.Lock()
				active++
				mu.Unlock()
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer sc.Close()
					serve(ctx, sc, s)
					mu.Lock()
					active--
					last = time.Now()
					mu.Unlock()
				}()
			}
		case <-tick.C:
			mu.Lock()
			quiet := active == 0 && time.Since(last) > idle
			mu.Unlock()
			if quiet && !asked {
				asked = true
				c.Send(workerMsg{Op: "idle"})
			}
		}
	}
}

// sessionConn turns a received descriptor into the session's connection.
func sessionConn(f *os.File, s Session) (net.Conn, error) {
	raw, err := net.FileConn(f)
	if err != nil {
		return nil, err
	}
	network := "tcp"
	if s.TLS {
		network = "tls"
	}
	var c net.Conn = &conn{Conn: raw, remote: strAddr{network, s.Remote}, local: strAddr{network, s.Local}}
	if len(s.Buffered) > 0 {
		c = &prefixed{Conn: c, r: io.MultiReader(bytes.NewReader(s.Buffered), c)}
	}
	return c, nil
}

// prefixed replays bytes the login stage read ahead before the connection.
type prefixed struct {
	net.Conn
	r io.Reader
}

func (p *prefixed) Read(b []byte) (int, error) { return p.r.Read(b) }
