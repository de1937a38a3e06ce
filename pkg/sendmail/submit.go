package sendmail

import (
	"crypto/rand"
	"encoding/hex"

	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/posthorn/posthorn/pkg/ipc"
	"github.com/posthorn/posthorn/pkg/pickup"
	"github.com/posthorn/posthorn/pkg/spool"
)

// SubmitError is a refusal from pickup.
type SubmitError struct {
	Msg  string
	Temp bool
}

func (e *SubmitError) Error() string { return e.Msg }

// Submit hands a prepared message to the pickup daemon and returns its
// queue ID. When the daemons are down it leaves the message in maildrop/
// instead and returns "" with no error: it is delivered once they start.
func Submit(spoolDir string, req *pickup.Request, content []byte) (string, error) {
	fd, err := unix.MemfdCreate("posthorn-message", unix.MFD_CLOEXEC)
	if err != nil {
		return "", fmt.Errorf("sendmail: %w", err)
	}
	f := os.NewFile(uintptr(fd), "message")
	defer f.Close()
	if _, err := f.Write(content); err != nil {
		return "", fmt.Errorf("sendmail: %w", err)
	}
	if _, err := f.Seek(0, 0); err != nil {
		return "", fmt.Errorf("sendmail: %w", err)
	}
	c, err := ipc.Dial(filepath.Join(spoolDir, spool.Public, "pickup"), 5*time.Second)
	if err != nil {
		return "", dropOff(spoolDir, req, content)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Minute))
	if err := c.Send(req, f); err != nil {
		return "", dropOff(spoolDir, req, content)
	}
	var rep pickup.Reply
	if _, err := c.Receive(&rep); err != nil {
		// pickup died with our message: we cannot know whether it was
		// queued, so leave it to the maildrop (a rare duplicate beats a loss).
		return "", dropOff(spoolDir, req, content)
	}
	if rep.Error != "" {
		return "", &SubmitError{Msg: rep.Error, Temp: rep.Temp}
	}
	return rep.QueueID, nil
}

// dropOff writes the message into maildrop/ under a random name: first a
// hidden name, then a rename, so pickup only ever sees complete files.
// Mode 0604: pickup (another user) must read it; other users cannot list
// the folder to find it (package pickup explains the scheme).
func dropOff(spoolDir string, req *pickup.Request, content []byte) error {
	var rnd [16]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return err
	}
	name := hex.EncodeToString(rnd[:])
	dir := filepath.Join(spoolDir, spool.Maildrop)
	tmp := filepath.Join(dir, "."+name)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0604)
	if err != nil {
		return fmt.Errorf("sendmail: the mail system is down and maildrop is not writable: %w", err)
	}
	err = f.Chmod(0604) // whatever the umask said
	if err == nil {
		err = pickup.EncodeDrop(f, req)
	}
	if err == nil {
		_, err = f.Write(content)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("sendmail: write maildrop file: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
