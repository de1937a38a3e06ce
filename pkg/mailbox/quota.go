package mailbox

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Maildir++ quota: the maildirsize file at the Maildir root, as Courier
// and Dovecot's quota-maildir.c use it.
//
//	first line: the limits, "<bytes>S,<count>C" (a zero limit is left
//	            out; "0S" when there is none)
//	then:       "<bytes> <count>" lines, the first the totals at the last
//	            recount, each later one a change appended with one
//	            O_APPEND write.
//
// Bytes are physical sizes (S=). The file is recounted over every folder's
// new/ and cur/ and replaced (through maildirsize.lock) when it is missing,
// larger than 5120 bytes, unparsable, negative, written with other limits
// than the configured ones, or over quota with more than the summary line
// or older than 15 minutes (a stale count must not refuse mail).

const (
	quotaFile       = "maildirsize"
	quotaMaxSize    = 5120
	quotaStaleAfter = 15 * time.Minute
)

// QuotaLimits are a user's limits from configuration; zero is unlimited.
type QuotaLimits struct {
	Bytes int64
	Count int64
}

func (q QuotaLimits) line() string {
	var parts []string
	if q.Bytes != 0 || q.Count == 0 {
		parts = append(parts, strconv.FormatInt(q.Bytes, 10)+"S")
	}
	if q.Count != 0 {
		parts = append(parts, strconv.FormatInt(q.Count, 10)+"C")
	}
	return strings.Join(parts, ",")
}

// parseLimits reads the first line; 0 means unlimited.
func parseLimits(s string) (q QuotaLimits, ok bool) {
	ok = true
	for _, p := range strings.Split(s, ",") {
		if len(p) < 2 {
			ok = false
			continue
		}
		v, err := strconv.ParseInt(p[:len(p)-1], 10, 64)
		if err != nil || v < 0 {
			ok = false
			continue
		}
		switch p[len(p)-1] {
		case 'S':
			q.Bytes = v
		case 'C':
			q.Count = v
		default:
			ok = false
		}
	}
	return q, ok
}

// parseMaildirsize returns the limits and the summed usage, and whether the
// file can be trusted as it is.
func parseMaildirsize(data []byte, limits QuotaLimits, mtime time.Time) (bytes, count int64, ok bool) {
	if len(data) >= quotaMaxSize {
		return 0, 0, false
	}
	// A last line without "\n" is being written; leave it out.
	if i := strings.LastIndexByte(string(data), '\n'); i >= 0 {
		data = data[:i]
	} else {
		return 0, 0, false
	}
	lines := strings.Split(string(data), "\n")
	fl, good := parseLimits(lines[0])
	if !good || fl != limits {
		return 0, 0, false
	}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) != 2 {
			return 0, 0, false
		}
		b, err1 := strconv.ParseInt(f[0], 10, 64)
		c, err2 := strconv.ParseInt(f[1], 10, 64)
		if err1 != nil || err2 != nil {
			return 0, 0, false
		}
		bytes += b
		count += c
	}
	if len(lines) < 2 || bytes < 0 || count < 0 {
		return 0, 0, false
	}
	over := (limits.Bytes != 0 && bytes > limits.Bytes) || (limits.Count != 0 && count > limits.Count)
	if over && (len(lines) > 2 || time.Since(mtime) > quotaStaleAfter) {
		return 0, 0, false
	}
	return bytes, count, true
}

// QuotaLimits returns the configured limits, and false when the store keeps
// no quota.
func (s *Store) QuotaLimits() (QuotaLimits, bool) {
	if s.opts.Quota == nil {
		return QuotaLimits{}, false
	}
	return *s.opts.Quota, true
}

// QuotaUsage returns the bytes and messages the store holds (RFC 9208
// STORAGE and MESSAGE), from maildirsize, recounting when that is missing
// or cannot be trusted.
func (s *Store) QuotaUsage() (bytes, count int64, err error) {
	limits, _ := s.QuotaLimits()
	f, err := s.root.Open(quotaFile)
	if err == nil {
		data := make([]byte, quotaMaxSize)
		n, rerr := io.ReadFull(f, data)
		fi, serr := f.Stat()
		f.Close()
		if (rerr == nil || rerr == io.ErrUnexpectedEOF || rerr == io.EOF) && serr == nil {
			if b, c, ok := parseMaildirsize(data[:n], limits, fi.ModTime()); ok {
				return b, c, nil
			}
		}
	}
	return s.recountQuota(limits)
}

// CheckQuota returns ErrOverQuota when adding the given bytes and messages
// would go over a limit.
func (s *Store) CheckQuota(addBytes, addCount int64) error {
	limits, on := s.QuotaLimits()
	if !on || (limits.Bytes == 0 && limits.Count == 0) {
		return nil
	}
	b, c, err := s.QuotaUsage()
	if err != nil {
		return err
	}
	if limits.Bytes != 0 && b+addBytes > limits.Bytes {
		return fmt.Errorf("%w: storage %d + %d > %d bytes", ErrOverQuota, b, addBytes, limits.Bytes)
	}
	if limits.Count != 0 && c+addCount > limits.Count {
		return fmt.Errorf("%w: %d + %d > %d messages", ErrOverQuota, c, addCount, limits.Count)
	}
	return nil
}

// quotaUpdate appends a change line; a missing file is recounted instead
// (which includes the change).
func (s *Store) quotaUpdate(db, dc int64) {
	if s.opts.Quota == nil {
		return
	}
	f, err := s.root.OpenFile(quotaFile, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		s.recountQuota(*s.opts.Quota)
		return
	}
	f.Write([]byte(strconv.FormatInt(db, 10) + " " + strconv.FormatInt(dc, 10) + "\n"))
	f.Close()
}

// recountQuota sums every folder and replaces maildirsize. When another
// process holds maildirsize.lock it is recounting too; the sum is returned
// without writing.
func (s *Store) recountQuota(limits QuotaLimits) (int64, int64, error) {
	list, err := s.List()
	if err != nil {
		return 0, 0, err
	}
	start := time.Now()
	var tb, tc int64
	for _, mi := range list {
		if slices.Contains(mi.Attributes, `\NonExistent`) {
			continue
		}
		b, c := sumFolder(s.root, folderDir(mi.Name))
		tb += b
		tc += c
	}
	if s.opts.Quota == nil {
		return tb, tc, nil
	}
	lock := quotaFile + ".lock"
	f, err := s.root.OpenFile(lock, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fileMode)
	if err != nil {
		// Busy, unless the lock is stale (Dovecot's 30 s for this file).
		if fi, e := s.root.Lstat(lock); e == nil && time.Since(fi.ModTime()) > 30*time.Second {
			s.root.Remove(lock)
		}
		return tb, tc, nil
	}
	content := limits.line() + "\n" + strconv.FormatInt(tb, 10) + " " + strconv.FormatInt(tc, 10) + "\n"
	_, err = f.WriteString(content)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	// Messages that arrived during the count make it stale at once; write
	// it anyway only if nothing changed (Dovecot does the same check).
	changed := false
	for _, mi := range list {
		for _, sub := range []string{"/new", "/cur"} {
			if fi, e := s.root.Stat(folderDir(mi.Name) + sub); e == nil && fi.ModTime().After(start) {
				changed = true
			}
		}
	}
	if err == nil && !changed {
		err = s.root.Rename(lock, quotaFile)
	}
	if err != nil || changed {
		s.root.Remove(lock)
	}
	return tb, tc, nil
}

// sumFolder counts a folder's messages the way quota-maildir.c does: every
// entry of new/ and cur/, sized by ",S=" or else by stat.
func sumFolder(root *os.Root, dir string) (bytes, count int64) {
	for _, sub := range []string{"/new", "/cur"} {
		d, err := root.Open(dir + sub)
		if err != nil {
			continue
		}
		names, _ := d.Readdirnames(-1)
		d.Close()
		for _, n := range names {
			if _, size, _, _, ok := parseFileName(n); ok && size >= 0 {
				bytes += size
				count++
				continue
			}
			if fi, err := root.Lstat(dir + sub + "/" + n); err == nil && fi.Mode().IsRegular() {
				bytes += fi.Size()
				count++
			}
		}
	}
	return bytes, count
}
