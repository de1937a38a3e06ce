package auth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/posthorn/posthorn/pkg/ipc"
)

// ClientTimeout bounds a Verify whose context has no deadline: a failed
// attempt is answered after up to auth.max_failure_delay (at most a
// minute), plus the check itself.
const ClientTimeout = 90 * time.Second

// Client asks the auth daemon. It is safe for concurrent use; each Verify
// uses its own connection, so a delayed failure holds up nobody else.
type Client struct {
	path    string
	timeout time.Duration // ClientTimeout; tests shorten it
}

// NewClient returns a client of the daemon listening at socketPath
// (<spool>/private/auth).
func NewClient(socketPath string) *Client { return &Client{path: socketPath, timeout: ClientTimeout} }

// Verify asks the daemon to check r. The error means no answer (the daemon
// is down, the request was invalid, ctx ended): the caller answers with a
// temporary failure and logs it with SMTPFailure or as it sees fit.
func (c *Client) Verify(ctx context.Context, r Request) (Result, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", c.path)
	if err != nil {
		return Result{}, fmt.Errorf("auth: %w", err)
	}
	conn := ipc.New(nc.(*net.UnixConn))
	defer conn.Close()
	// The end of ctx, by deadline or cancellation, wakes a blocked read or
	// write at once. It is the only deadline, so an error after it is
	// always reported as ctx's.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	err = conn.Send(wireRequest{
		Service: r.Service, User: []byte(r.User), Password: []byte(r.Password),
		RemoteIP: r.RemoteIP, Secured: r.Secured, IssueToken: r.IssueToken,
	})
	if err != nil {
		if ctx.Err() != nil {
			err = context.Cause(ctx)
		}
		return Result{}, fmt.Errorf("auth: %w", err)
	}
	var rep wireReply
	files, err := conn.Receive(&rep)
	for _, f := range files {
		f.Close()
	}
	if err != nil {
		if ctx.Err() != nil {
			err = context.Cause(ctx)
		}
		return Result{}, fmt.Errorf("auth: %w", err)
	}
	if rep.Error != "" {
		return Result{}, fmt.Errorf("auth: daemon refused the request: %w", errors.New(rep.Error))
	}
	return Result{OK: rep.OK, User: rep.User, Temp: rep.Temp, Reason: rep.Reason, Token: rep.Token}, nil
}
