// Package agent is the protocol between qmgr and the delivery agents
// (local now, smtp later): qmgr sends one request per recipient with the
// queue file attached as an open descriptor, the agent answers with the
// recipient's result. The agent never opens the spool itself.
package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/posthorn/posthorn/pkg/ipc"
)

// Request asks an agent to deliver one message to one recipient.
type Request struct {
	QueueID   string    `json:"id"`
	Sender    string    `json:"sender"`
	Recipient string    `json:"rcpt"`
	Orig      string    `json:"orig,omitempty"` // original recipient, before rewriting
	Arrival   time.Time `json:"arrival"`
	Active    time.Time `json:"active"` // when qmgr took the message (for delays=a/b/c/d)
	Offset    int64     `json:"offset"` // content within the attached queue file
	Size      int64     `json:"size"`
	// The original transaction's parameters: BODY= (RFC 6152), SMTPUTF8
	// (RFC 6531) and DSN (RFC 3461), for agents that pass them on.
	Body     string `json:"body,omitempty"`
	SMTPUTF8 bool   `json:"smtputf8,omitempty"`
	Notify   string `json:"notify,omitempty"`
	EnvID    string `json:"envid,omitempty"`
	Ret      string `json:"ret,omitempty"`
}

// Results an agent can give.
const (
	Sent     = "sent"
	Deferred = "deferred"
	Bounced  = "bounced"
)

// Reply is the agent's answer.
type Reply struct {
	Status string `json:"status"`
	DSN    string `json:"dsn"`
	Text   string `json:"text"`
	// Partial lists permanent failures of some of the mailboxes a recipient
	// expanded to (an alias with an unknown member) when the others got
	// the message: the recipient is done, and the sender is told of these.
	Partial []Failure `json:"partial,omitempty"`
	// Forward lists addresses the recipient's mail goes on to (an alias or
	// .forward naming other domains): qmgr queues a new message for them.
	Forward []string `json:"forward,omitempty"`
}

// Failure is one permanently failed part of a recipient.
type Failure struct {
	DSN  string `json:"dsn"`
	Text string `json:"text"`
}

// Tempfail and Permfail build replies.
func Tempfail(dsn, format string, args ...any) Reply {
	return Reply{Status: Deferred, DSN: dsn, Text: fmt.Sprintf(format, args...)}
}

func Permfail(dsn, format string, args ...any) Reply {
	return Reply{Status: Bounced, DSN: dsn, Text: fmt.Sprintf(format, args...)}
}

// ErrUnavailable wraps failures to reach an agent or lose it mid-request:
// nothing was learned about the recipient, so qmgr simply tries again soon.
var ErrUnavailable = errors.New("delivery agent unavailable")

// Client sends requests to one agent's socket over a pool of connections.
type Client struct {
	path string
	idle chan *ipc.Conn
}

// NewClient returns a client for the agent listening at path, keeping up to
// maxIdle connections open.
func NewClient(path string, maxIdle int) *Client {
	return &Client{path: path, idle: make(chan *ipc.Conn, maxIdle)}
}

// Deliver sends req with the queue file and waits for the reply.
func (c *Client) Deliver(ctx context.Context, req Request, qf *os.File) (Reply, error) {
	var conn *ipc.Conn
	select {
	case conn = <-c.idle:
	default:
		var err error
		conn, err = ipc.Dial(c.path, 5*time.Second)
		if err != nil {
			return Reply{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	} else {
		conn.SetDeadline(time.Time{})
	}
	var rep Reply
	err := conn.Send(req, qf)
	if err == nil {
		_, err = conn.Receive(&rep)
	}
	if err != nil {
		conn.Close()
		return Reply{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	select {
	case c.idle <- conn:
	default:
		conn.Close()
	}
	return rep, nil
}

// Close closes idle connections.
func (c *Client) Close() {
	for {
		select {
		case conn := <-c.idle:
			conn.Close()
		default:
			return
		}
	}
}

// Handler delivers one request; qf is the queue file (closed by Serve).
type Handler func(ctx context.Context, req Request, qf *os.File) Reply

// Server serves agent requests on a listener.
type Server struct {
	Handler Handler
	wg      sync.WaitGroup
}

// Serve accepts connections until l is closed, then waits for requests in
// flight to finish, so a stopping agent completes what it started.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	var mu sync.Mutex
	conns := map[*ipc.Conn]bool{}
	go func() {
		<-ctx.Done()
		l.Close()
		// Idle connections are closed; busy ones end after their request.
		mu.Lock()
		for c := range conns {
			c.SetDeadline(time.Now())
		}
		mu.Unlock()
	}()
	for {
		nc, err := l.Accept()
		if err != nil {
			s.wg.Wait()
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		uc, ok := nc.(*net.UnixConn)
		if !ok {
			nc.Close()
			continue
		}
		c := ipc.New(uc)
		mu.Lock()
		conns[c] = true
		mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() {
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
				c.Close()
			}()
			for {
				var req Request
				files, err := c.Receive(&req)
				if err != nil {
					return
				}
				if len(files) != 1 {
					for _, f := range files {
						f.Close()
					}
					c.Send(Tempfail("4.3.0", "internal error: request without queue file"))
					continue
				}
				// The request runs to its end even when stopping: its
				// result must reach qmgr to be recorded.
				rep := s.Handler(context.WithoutCancel(ctx), req, files[0])
				files[0].Close()
				c.SetDeadline(time.Time{})
				if err := c.Send(rep); err != nil {
					return
				}
				if ctx.Err() != nil {
					return
				}
			}
		}()
	}
}
