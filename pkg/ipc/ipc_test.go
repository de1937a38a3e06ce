package ipc

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func pair(t *testing.T) (*Conn, *Conn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	mk := func(fd int) *Conn {
		f := os.NewFile(uintptr(fd), "sock")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return New(c.(*net.UnixConn))
	}
	a, b := mk(fds[0]), mk(fds[1])
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

type msg struct {
	Op string `json:"op"`
	N  int    `json:"n"`
}

func TestFramesAndFiles(t *testing.T) {
	a, b := pair(t)
	p := filepath.Join(t.TempDir(), "f")
	os.WriteFile(p, []byte("queue file content"), 0600)
	f, _ := os.Open(p)
	defer f.Close()
	go func() {
		a.Send(msg{"one", 1}, f)
		a.Send(msg{"two", 2})
		a.Send(msg{Op: strings.Repeat("x", 200000), N: 3})
	}()
	var m msg
	files, err := b.Receive(&m)
	if err != nil || m.Op != "one" || len(files) != 1 {
		t.Fatalf("first frame: %v %+v %d files", err, m, len(files))
	}
	got, _ := io.ReadAll(files[0])
	files[0].Close()
	if string(got) != "queue file content" {
		t.Fatalf("passed file reads %q", got)
	}
	files, err = b.Receive(&m)
	if err != nil || m.Op != "two" || len(files) != 0 {
		t.Fatalf("second frame: %v %+v %d files", err, m, len(files))
	}
	if _, err = b.Receive(&m); err != nil || m.N != 3 || len(m.Op) != 200000 {
		t.Fatalf("large frame: %v n=%d len=%d", err, m.N, len(m.Op))
	}
}

func TestOversizedFrameRejected(t *testing.T) {
	a, b := pair(t)
	go a.c.Write([]byte{0x7f, 0xff, 0xff, 0xff, '{'})
	var m msg
	if _, err := b.Receive(&m); err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Fatalf("oversized frame: %v", err)
	}
	if err := a.Send(msg{Op: strings.Repeat("y", MaxFrame)}); err == nil {
		t.Fatal("sending an oversized frame succeeded")
	}
}

func TestGarbageAndEOF(t *testing.T) {
	a, b := pair(t)
	go func() {
		a.c.Write([]byte{0, 0, 0, 3, 'x', 'y', 'z'})
		a.c.CloseWrite()
	}()
	var m msg
	if _, err := b.Receive(&m); err == nil {
		t.Fatal("garbage frame decoded")
	}
	if _, err := b.Receive(&m); err == nil {
		t.Fatal("receive after EOF succeeded")
	}
}

func TestDeadlineIsAnErrorNotAPanic(t *testing.T) {
	_, b := pair(t)
	b.SetDeadline(time.Now().Add(-time.Second))
	var m msg
	if _, err := b.Receive(&m); err == nil {
		t.Fatal("receive past the deadline succeeded")
	}
}

func TestCloseDuringReceive(t *testing.T) {
	_, b := pair(t)
	done := make(chan error, 1)
	go func() {
		var m msg
		_, err := b.Receive(&m)
		done <- err
	}()
	time.Sleep(10 * time.Millisecond) // let Receive block (either order must work)
	closed := make(chan struct{})
	go func() { b.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close blocked behind a Receive in progress")
	}
	if err := <-done; err == nil {
		t.Fatal("Receive on a closed connection succeeded")
	}
}

// bin has a binary encoding of its own: one version byte, then the text.
type bin struct{ S string }

func (b bin) AppendBinary(p []byte) ([]byte, error) { return append(append(p, 1), b.S...), nil }

func (b *bin) UnmarshalBinary(p []byte) error {
	if len(p) == 0 || p[0] != 1 {
		return io.ErrUnexpectedEOF
	}
	b.S = string(p[1:])
	return nil
}

// A type with a binary encoding travels in it, and still reads a JSON
// frame (a peer from before it had one); a binary frame for a type without
// one is an error, not a guess.
func TestBinaryFrames(t *testing.T) {
	a, b := pair(t)
	go func() {
		a.Send(bin{"compact"})
		a.Send(struct{ S string }{"as json"})
		a.Send(bin{"to the wrong type"})
	}()
	var v bin
	if _, err := b.Receive(&v); err != nil || v.S != "compact" {
		t.Fatalf("binary frame: %+v, %v", v, err)
	}
	if _, err := b.Receive(&v); err != nil || v.S != "as json" {
		t.Fatalf("JSON frame into a binary type: %+v, %v", v, err)
	}
	var m msg
	if _, err := b.Receive(&m); err == nil {
		t.Fatalf("binary frame decoded into %T: %+v", m, m)
	}
}
