package local

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"syscall"
	"time"

	"github.com/posthorn/posthorn/pkg/maildir"
	"github.com/posthorn/posthorn/pkg/mbox"
	"github.com/posthorn/posthorn/pkg/recipient"
)

// The operations a delivery needs done with a mailbox owner's rights. They
// run in a worker process started with those rights, or in the local daemon
// itself when it already has them (ops never change credentials).
const (
	opMaildir = "" // the zero value, for requests of older workers
	opMbox    = "mbox"
	opPipe    = "pipe"
	opOpen    = "open"
)

type workRequest struct {
	Seq uint64 `json:"seq"`
	Op  string `json:"op,omitempty"`
	// Root is the Maildir (opMaildir).
	Root string `json:"root,omitempty"`
	// Path is the mbox file (opMbox) or the file to open (opOpen).
	Path string `json:"path,omitempty"`
	// Prefix holds the header lines local adds; Offset and Size locate the
	// message in the queue file sent with the request.
	Prefix []byte `json:"prefix,omitempty"`
	Offset int64  `json:"offset"`
	Size   int64  `json:"size"`
	// Sender is for the From_ line (opMbox, opPipe).
	Sender string `json:"sender,omitempty"`

	// opMbox: see mbox.Delivery.
	Mode           uint32        `json:"mode,omitempty"`
	Group          int           `json:"group"`
	Owner          int           `json:"owner"`
	NoExec         bool          `json:"noexec,omitempty"`
	DotlockMayFail bool          `json:"dotlock_may_fail,omitempty"`
	LockTimeout    time.Duration `json:"lock_timeout,omitempty"`

	// opPipe: the command for /bin/sh -c, its environment and time limit.
	Command   string        `json:"command,omitempty"`
	Env       []string      `json:"env,omitempty"`
	TimeLimit time.Duration `json:"time_limit,omitempty"`

	// opOpen: refuse a symbolic link.
	NoFollow bool `json:"nofollow,omitempty"`
}

func (r workRequest) needsMessage() bool { return r.Op != opOpen }

type workReply struct {
	Seq  uint64 `json:"seq"`
	Name string `json:"name,omitempty"`
	Err  string `json:"err,omitempty"`
	// Errno is the system error of a failed opOpen, so the caller can
	// tell a missing file from a symbolic link or a denied one.
	Errno int `json:"errno,omitempty"`
	// Unacceptable and Locked classify an opMbox error (mbox.Unacceptable,
	// mbox.ErrLockTimeout); Executable says the file had execute bits.
	Unacceptable bool `json:"unacceptable,omitempty"`
	Executable   bool `json:"executable,omitempty"`
	Locked       bool `json:"locked,omitempty"`

	// opPipe results.
	Exit     int    `json:"exit"`
	Signal   int    `json:"signal,omitempty"`
	TimedOut bool   `json:"timed_out,omitempty"`
	Output   string `json:"output,omitempty"`
}

// runOp performs req; for opOpen it returns the opened file as well.
func runOp(req workRequest, qf *os.File, mw *maildir.Writer) (workReply, *os.File) {
	var rep workReply
	var body io.Reader
	if qf != nil {
		body = io.NewSectionReader(qf, req.Offset, req.Size)
	}
	switch req.Op {
	case opMaildir:
		name, err := mw.Deliver(req.Root, req.Prefix, body)
		rep.Name = name
		if err != nil {
			rep.Err = err.Error()
		}
	case opMbox:
		dl := mbox.DotlockRequired
		if req.DotlockMayFail {
			dl = mbox.DotlockMayFail
		}
		_, err := mbox.Append(mbox.Delivery{Path: req.Path, Sender: req.Sender, Prefix: req.Prefix,
			Mode: fs.FileMode(req.Mode), Group: req.Group, Owner: req.Owner, NoExec: req.NoExec,
			LockTimeout: req.LockTimeout, Dotlock: dl}, body)
		if err != nil {
			rep.Err = err.Error()
			rep.Unacceptable = mbox.Unacceptable(err)
			rep.Executable = errors.Is(err, mbox.ErrExecutable)
			rep.Locked = errors.Is(err, mbox.ErrLockTimeout)
		}
	case opPipe:
		rep = runCommand(req, body)
	case opOpen:
		f, err := recipient.OpenFile(recipient.OpenRequest{Path: req.Path, NoFollow: req.NoFollow})
		if err != nil {
			rep.Err = err.Error()
			var errno syscall.Errno
			if errors.As(err, &errno) {
				rep.Errno = int(errno)
			}
			return rep, nil
		}
		return rep, f
	default:
		rep.Err = "unknown operation " + req.Op
	}
	return rep, nil
}
