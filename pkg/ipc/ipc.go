// Package ipc is the one framing every posthorn daemon speaks over the Unix
// stream sockets in the spool's private/ folder (DESIGN §1).
//
// A frame is a 4-byte big-endian length followed by that many bytes of JSON,
// or of a type's own compact encoding (encoding.BinaryAppender and
// BinaryUnmarshaler) for what crosses a socket once per message: such a body
// starts with a control byte below 0x09 (tab), which no JSON text does, not
// even with leading white space, so a receiver tells the two apart.
//
// Open files travel beside a frame as SCM_RIGHTS ancillary data, so a daemon
// can hand another one exactly the file it may use (qmgr passes a queue file
// to local, which never needs access to the spool).
//
// Frames are small control messages; message content never travels inline.
package ipc

import (
	"encoding"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// MaxFrame bounds a frame so a confused or hostile peer cannot make us
// allocate without limit.
const MaxFrame = 1 << 20

// MaxFiles is the most descriptors accepted with one frame.
const MaxFiles = 4

// Conn is one end of a posthorn IPC connection. Send and Receive may be used
// by different goroutines; each is serialised on its own.
type Conn struct {
	c *net.UnixConn

	wmu sync.Mutex

	rmu   sync.Mutex
	buf   []byte     // bytes read but not yet returned
	files []*os.File // descriptors received but not yet returned
}

// New wraps an established Unix connection.
func New(c *net.UnixConn) *Conn { return &Conn{c: c} }

// Dial connects to the socket at path.
func Dial(path string, timeout time.Duration) (*Conn, error) {
	d := net.Dialer{Timeout: timeout}
	c, err := d.Dial("unix", path)
	if err != nil {
		return nil, err
	}
	return New(c.(*net.UnixConn)), nil
}

// Close closes the connection and any received descriptors not yet
// claimed. The socket goes first: that wakes a Receive blocked in another
// goroutine, which holds the read lock until it returns.
func (c *Conn) Close() error {
	err := c.c.Close()
	c.rmu.Lock()
	for _, f := range c.files {
		f.Close()
	}
	c.files = nil
	c.rmu.Unlock()
	return err
}

// SetDeadline sets the read and write deadline.
func (c *Conn) SetDeadline(t time.Time) error { return c.c.SetDeadline(t) }

// SetWriteDeadline bounds Send alone, for a connection another goroutine
// keeps reading.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.c.SetWriteDeadline(t) }

// Send writes v as one frame, with files attached: in v's own encoding when
// it has one (encoding.BinaryAppender), else as JSON.
func (c *Conn) Send(v any, files ...*os.File) error {
	var frame []byte
	if a, ok := v.(encoding.BinaryAppender); ok {
		var err error
		frame, err = a.AppendBinary(make([]byte, 4, 256))
		if err != nil {
			return fmt.Errorf("ipc: encode: %w", err)
		}
		if len(frame) == 4 || !binaryBody(frame[4:]) {
			return errors.New("ipc: encode: a binary body must start with a byte below 0x09")
		}
	} else {
		body, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("ipc: encode: %w", err)
		}
		frame = make([]byte, 4+len(body))
		copy(frame[4:], body)
	}
	if len(frame)-4 > MaxFrame {
		return fmt.Errorf("ipc: frame of %d bytes exceeds %d", len(frame)-4, MaxFrame)
	}
	if len(files) > MaxFiles {
		return fmt.Errorf("ipc: %d files exceed %d", len(files), MaxFiles)
	}
	binary.BigEndian.PutUint32(frame, uint32(len(frame)-4))
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			fds[i] = int(f.Fd())
		}
		oob = syscall.UnixRights(fds...)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	// The descriptors ride on the first write; the rest of a large frame follows.
	n, _, err := c.c.WriteMsgUnix(frame, oob, nil)
	if err != nil {
		return fmt.Errorf("ipc: send: %w", err)
	}
	for n < len(frame) {
		m, err := c.c.Write(frame[n:])
		if err != nil {
			return fmt.Errorf("ipc: send: %w", err)
		}
		n += m
	}
	return nil
}

// Receive reads one frame into v and returns the files that arrived with it.
// The caller owns (and must close) the returned files.
func (c *Conn) Receive(v any) ([]*os.File, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for {
		if len(c.buf) >= 4 {
			n := binary.BigEndian.Uint32(c.buf)
			if n > MaxFrame {
				return nil, fmt.Errorf("ipc: frame of %d bytes exceeds %d", n, MaxFrame)
			}
			if len(c.buf) >= 4+int(n) {
				body := c.buf[4 : 4+n]
				err := decode(body, v)
				c.buf = append(c.buf[:0], c.buf[4+n:]...)
				files := c.files
				c.files = nil
				if err != nil {
					for _, f := range files {
						f.Close()
					}
					return nil, fmt.Errorf("ipc: decode: %w", err)
				}
				return files, nil
			}
		}
		if err := c.fill(); err != nil {
			return nil, err
		}
	}
}

// readBuf is what one receive reads into before the bytes join the
// connection's buffer. Pooled rather than kept per connection: an imapd
// holds thousands of mostly idle connections, and a daemon receives a frame
// per message, where a fresh 64 KB each time would be most of what it
// allocates.
type readBuf struct {
	data [64 * 1024]byte
	oob  [64]byte
}

var readBufs = sync.Pool{New: func() any { return new(readBuf) }}

func init() {
	if syscall.CmsgSpace(MaxFiles*4) > len(readBuf{}.oob) {
		panic("ipc: readBuf.oob too small for MaxFiles")
	}
}

// decode reads a frame's body into v: v's own decoder for a body in a
// binary encoding, JSON otherwise.
func decode(body []byte, v any) error {
	if binaryBody(body) {
		u, ok := v.(encoding.BinaryUnmarshaler)
		if !ok {
			return fmt.Errorf("binary frame for %T, which has no binary encoding", v)
		}
		return u.UnmarshalBinary(body)
	}
	return json.Unmarshal(body, v)
}

func binaryBody(body []byte) bool { return len(body) > 0 && body[0] < 0x09 }

func (c *Conn) fill() error {
	rb := readBufs.Get().(*readBuf)
	defer readBufs.Put(rb)
	tmp, oob := rb.data[:], rb.oob[:syscall.CmsgSpace(MaxFiles*4)]
	n, oobn, flags, _, err := c.c.ReadMsgUnix(tmp, oob)
	// On some errors the counts come back negative.
	n, oobn = max(n, 0), max(oobn, 0)
	if oobn > 0 {
		if ferr := c.takeFiles(oob[:oobn]); ferr != nil && err == nil {
			err = ferr
		}
	}
	if flags&syscall.MSG_CTRUNC != 0 && err == nil {
		err = errors.New("ipc: too many descriptors with one frame")
	}
	c.buf = append(c.buf, tmp[:n]...)
	if err != nil {
		return fmt.Errorf("ipc: receive: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("ipc: receive: %w", net.ErrClosed)
	}
	return nil
}

func (c *Conn) takeFiles(oob []byte) error {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return fmt.Errorf("ipc: control message: %w", err)
	}
	for _, m := range msgs {
		fds, err := syscall.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			syscall.CloseOnExec(fd)
			c.files = append(c.files, os.NewFile(uintptr(fd), "ipc"))
		}
	}
	if len(c.files) > MaxFiles {
		for _, f := range c.files {
			f.Close()
		}
		c.files = nil
		return errors.New("ipc: too many descriptors with one frame")
	}
	return nil
}

// PeerUID is the uid of the process at the other end, from the kernel
// (SO_PEERCRED), never from anything it sent.
func (c *Conn) PeerUID() (int, error) {
	raw, err := c.c.SyscallConn()
	if err != nil {
		return -1, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return -1, err
	}
	if cerr != nil {
		return -1, cerr
	}
	return int(cred.Uid), nil
}
