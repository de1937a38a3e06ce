package mailbox

import (
	"errors"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// New mailboxes take their UIDVALIDITY from the Maildir root's
// dovecot-uidvalidity, exactly as Dovecot's mailbox-uidvalidity.c does: the
// file holds the last value as 8 hex digits, and an empty marker file
// "dovecot-uidvalidity.<8 hex>" is renamed to the next value, which makes the
// increment atomic between processes. When neither is usable the current
// time is used (the same fallback), never repeating a value in this process.

const uidValidityFile = "dovecot-uidvalidity"

const uidValidityRetries = 10

var fallback struct {
	sync.Mutex
	last uint32
}

func uidValidityFallback() uint32 {
	fallback.Lock()
	defer fallback.Unlock()
	now := uint32(time.Now().Unix())
	if fallback.last < now {
		fallback.last = now
	} else {
		fallback.last++
	}
	return fallback.last
}

func hex8(v uint32) string {
	s := strconv.FormatUint(uint64(v), 16)
	return strings.Repeat("0", 8-len(s)) + s
}

// nextUIDValidity returns the next UIDVALIDITY for a new mailbox of the
// store rooted at root.
func nextUIDValidity(root *os.Root) uint32 {
	f, err := root.OpenFile(uidValidityFile, os.O_RDWR, 0)
	if err != nil {
		return uidValidityRescan(root)
	}
	defer f.Close()
	buf := make([]byte, 8)
	n, _ := f.ReadAt(buf, 0)
	cur, err := strconv.ParseUint(strings.TrimSpace(string(buf[:n])), 16, 32)
	if n == 0 || err != nil {
		return uidValidityRescan(root)
	}
	v := uint32(cur)
	if err := uidValidityRename(root, &v); err != nil {
		return uidValidityRescan(root)
	}
	f.WriteAt([]byte(hex8(v)), 0)
	return v
}

// uidValidityRename moves the marker from *v to *v+1, trying the next values
// when another process got there first.
func uidValidityRename(root *os.Root, v *uint32) error {
	var err error
	for range uidValidityRetries {
		src := uidValidityFile + "." + hex8(*v)
		*v++
		if err = root.Rename(src, uidValidityFile+"."+hex8(*v)); err == nil || !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return err
}

func uidValidityRescan(root *os.Root) uint32 {
	d, err := root.Open(".")
	if err != nil {
		return uidValidityFallback()
	}
	names, _ := d.Readdirnames(-1)
	d.Close()
	var minV, maxV uint32 = ^uint32(0), 0
	for _, n := range names {
		h, ok := strings.CutPrefix(n, uidValidityFile+".")
		if !ok {
			continue
		}
		v, err := strconv.ParseUint(h, 16, 32)
		if err != nil {
			continue
		}
		minV, maxV = min(minV, uint32(v)), max(maxV, uint32(v))
	}
	if maxV == 0 {
		var v uint32
		for range uidValidityRetries {
			v = uidValidityFallback()
			f, err := root.OpenFile(uidValidityFile+"."+hex8(v), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0444)
			if err == nil {
				f.Close()
				break
			}
			if !errors.Is(err, fs.ErrExist) {
				return v
			}
		}
		writeUIDValidity(root, v)
		return v
	}
	if minV != maxV {
		root.Remove(uidValidityFile + "." + hex8(minV))
	}
	v := maxV
	if uidValidityRename(root, &v) != nil {
		return uidValidityFallback()
	}
	writeUIDValidity(root, v)
	return v
}

func writeUIDValidity(root *os.Root, v uint32) {
	f, err := root.OpenFile(uidValidityFile, os.O_RDWR|os.O_CREATE, 0600)
	if err != nil {
		return
	}
	f.WriteAt([]byte(hex8(v)), 0)
	f.Close()
}
