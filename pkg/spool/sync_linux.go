package spool

import (
	"os"

	"golang.org/x/sys/unix"
)

// fdatasync flushes the file's data and the metadata needed to read it back
// (its size), which is all an appended result record needs.
func fdatasync(f *os.File) error {
	for {
		err := unix.Fdatasync(int(f.Fd()))
		if err != unix.EINTR {
			return err
		}
	}
}
