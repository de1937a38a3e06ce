package spool

import (
	"fmt"
	"os"
	"path/filepath"
)

// Queue folders, DESIGN §2. private/ holds the daemons' sockets, public/ the
// sockets local users may talk to, pid/ the master's lock.
const (
	Incoming = "incoming"
	Active   = "active"
	Deferred = "deferred"
	Hold     = "hold"
	Corrupt  = "corrupt"
	Private  = "private"
	Public   = "public"
	Maildrop = "maildrop"
	PidDir   = "pid"
)

// Prepare creates the spool folders with their modes and, when uid >= 0,
// hands them to the mail owner. It is idempotent and repairs modes.
func Prepare(dir string, uid, gid int) error {
	if err := os.MkdirAll(dir, 0755); err != nil {
		return fmt.Errorf("spool %s: %w", dir, err)
	}
	modes := map[string]os.FileMode{
		Incoming: 0700, Active: 0700, Deferred: 0700, Hold: 0700, Corrupt: 0700,
		Private: 0700, Public: 0711, PidDir: 0755,
		// Anyone may drop a file, nobody may list, read or remove another's:
		// sticky, world-writable, not world-readable. (Go spells the sticky
		// bit os.ModeSticky, not 01000.)
		Maildrop: 0733 | os.ModeSticky,
	}
	for name, mode := range modes {
		p := filepath.Join(dir, name)
		if err := os.Mkdir(p, mode); err != nil && !os.IsExist(err) {
			return fmt.Errorf("spool %s: %w", p, err)
		}
		if err := os.Chmod(p, mode); err != nil {
			return fmt.Errorf("spool %s: %w", p, err)
		}
		if uid >= 0 && name != PidDir {
			if err := os.Chown(p, uid, gid); err != nil {
				return fmt.Errorf("spool %s: %w", p, err)
			}
		}
	}
	return nil
}
