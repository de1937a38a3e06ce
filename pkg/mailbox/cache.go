package mailbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"time"
)

// posthorn.cache — per folder, beside posthorn.index: opaque bytes the IMAP
// layer stores per UID (envelope, body structure, headers) so FETCH and
// SEARCH need not parse the message again. Format version 1, the same
// frames as posthorn.index:
//
//	'H' header  magic "posthorn.cache" version:u16le uidvalidity:u32le
//	'C' entry   uid:u32le data        ; a later entry for a UID wins
//
// Entries are appended in batches (up to cacheFlushSize, and at every Sync
// and close) and not fsynced: the cache is only an optimization. A frame
// that fails its checksum, a header for another UIDVALIDITY, or a file
// that cannot be read makes the cache empty and it is started anew. The file is rewritten without dead entries once
// they are most of it.

const (
	cacheName    = "posthorn.cache"
	cacheTmp     = "posthorn.cache.tmp"
	cacheMagic   = "posthorn.cache"
	cacheVersion = 1
	// MaxCacheEntry bounds what one UID may store.
	MaxCacheEntry = 60 << 10
)

// maxCacheSize bounds the cache file.
var maxCacheSize int64 = 1 << 30

// cacheFlushSize is how much a folder gathers in memory before it appends
// to the file: a FETCH that fills the cache for a large mailbox costs a
// write per batch, not per message.
const cacheFlushSize = 128 << 10

// cacheRecheck is how long a look at the file (a stat by name) stays good:
// the misses of a FETCH over a mailbox never cached do not each stat the
// file for what other processes appended. What they did append within
// that time is only missed, never wrong. A variable for tests.
var cacheRecheck = time.Second

// ErrCacheTooLarge is returned by SetCache for data over MaxCacheEntry.
var ErrCacheTooLarge = errors.New("mailbox: cache entry too large")

type cacheEnt struct {
	off int64 // of the frame
	n   int   // frame length including its 8-byte head
}

type cacheFile struct {
	uv   uint32
	ino  uint64
	fh   *os.File // open on inode ino, for reading entries; nil until needed
	wfh  *os.File // open on inode ino for appending; nil until needed
	good int64
	ents map[uint32]cacheEnt
	live int64
	bad  bool

	looked time.Time // of the last stat by name (cacheLoad)
	// pend holds frames set but not yet appended to the file; pendEnts
	// indexes them (offsets within pend).
	pend     []byte
	pendEnts map[uint32]cacheEnt
}

func (c *cacheFile) reset(f *folder, uv uint32) {
	c.close()
	*c = cacheFile{uv: uv}
}

// closeCache appends what is pending and releases the handles (f.mu held).
func (f *folder) closeCache() {
	f.flushCache()
	f.cache.close()
}

// close releases the handles; what is pending is dropped.
func (c *cacheFile) close() {
	for _, h := range []**os.File{&c.fh, &c.wfh} {
		if *h != nil {
			(*h).Close()
			*h = nil
		}
	}
}

// open opens cacheName with flag, checking that it is still inode ino.
func (f *folder) openCache(flag int) (*os.File, error) {
	fl, err := f.root.OpenFile(cacheName, flag, 0)
	if err != nil {
		return nil, err
	}
	if fi, err := fl.Stat(); err != nil || statStamp(fi).ino != f.cache.ino {
		fl.Close()
		return nil, errors.New("mailbox: posthorn.cache replaced")
	}
	return fl, nil
}

// readHandle returns the read handle on the indexed file.
func (f *folder) readHandle() (*os.File, error) {
	c := &f.cache
	if c.fh == nil {
		fl, err := f.openCache(os.O_RDONLY)
		if err != nil {
			return nil, err
		}
		c.fh = fl
	}
	return c.fh, nil
}

func (c *cacheFile) drop(uid uint32) {
	if e, ok := c.ents[uid]; ok {
		c.live -= int64(e.n)
		delete(c.ents, uid)
	}
}

// load reads entries appended since the last look; the caller holds f.mu.
func (f *folder) cacheLoad() {
	c := &f.cache
	if c.ino != 0 && !c.bad && time.Since(c.looked) < cacheRecheck {
		return
	}
	f.cacheLoadNow()
}

// cacheLoadNow is cacheLoad without the grace of cacheRecheck.
func (f *folder) cacheLoadNow() {
	c := &f.cache
	c.looked = time.Now()
	fi, err := f.root.Lstat(cacheName)
	if err != nil {
		c.close()
		c.ents, c.ino, c.good, c.live = nil, 0, 0, 0
		return
	}
	st := statStamp(fi)
	if st.ino != c.ino || st.size < c.good {
		c.close()
		c.ents, c.ino, c.good, c.live, c.bad = nil, st.ino, 0, 0, false
	}
	if st.size == c.good || c.bad {
		return
	}
	if st.size > maxCacheSize {
		c.bad = true
		return
	}
	fh, err := f.readHandle()
	if err != nil {
		return // replaced between the Lstat and the open: next time
	}
	data := make([]byte, st.size-c.good)
	n, err := fh.ReadAt(data, c.good)
	if err != nil && err != io.EOF {
		c.bad = true
		return
	}
	data = data[:n]
	off := 0
	for len(data)-off >= 8 {
		l := int(binary.LittleEndian.Uint32(data[off:]))
		if l < 1 || l > maxFrame {
			c.bad = true
			break
		}
		if len(data)-off-8 < l {
			break
		}
		body := data[off+8 : off+8+l]
		if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(data[off+4:]) {
			c.bad = true
			break
		}
		pos := c.good + int64(off)
		switch {
		case pos == 0:
			if body[0] != 'H' || len(body) != 1+len(cacheMagic)+6 || string(body[1:1+len(cacheMagic)]) != cacheMagic ||
				binary.LittleEndian.Uint16(body[1+len(cacheMagic):]) != cacheVersion ||
				binary.LittleEndian.Uint32(body[3+len(cacheMagic):]) != f.uidValidity {
				c.bad = true
			}
		case body[0] == 'C' && len(body) >= 5:
			uid := binary.LittleEndian.Uint32(body[1:])
			if f.msgs[uid] != nil {
				c.drop(uid)
				if c.ents == nil {
					c.ents = map[uint32]cacheEnt{}
				}
				c.ents[uid] = cacheEnt{off: pos, n: 8 + l}
				c.live += int64(8 + l)
			}
		default:
			c.bad = true
		}
		if c.bad {
			break
		}
		off += 8 + l
	}
	c.good += int64(off)
	if c.bad {
		c.ents, c.live = nil, 0
	}
}

// getCache returns uid's entry. An entry already indexed is read through
// the handle open on the file it was indexed from (the file is only
// appended to, or replaced by a rename, so it stays valid there); only a
// miss looks for what other processes appended. FETCH of a large mailbox
// so costs one pread per message, not a stat, open and close.
func (f *folder) getCache(uid uint32) ([]byte, bool) {
	c := &f.cache
	if e, ok := c.pendEnts[uid]; ok {
		fr := c.pend[e.off : e.off+int64(e.n)]
		return append([]byte(nil), fr[8+5:]...), true
	}
	e, ok := c.ents[uid]
	if !ok || c.bad {
		f.cacheLoad()
		if e, ok = c.ents[uid]; !ok {
			return nil, false
		}
	}
	fh, err := f.readHandle()
	if err != nil {
		f.cacheLoad() // replaced since it was indexed: index it again
		return nil, false
	}
	b := make([]byte, e.n)
	if _, err := fh.ReadAt(b, e.off); err != nil {
		return nil, false
	}
	body := b[8:]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(b[4:]) || body[0] != 'C' ||
		binary.LittleEndian.Uint32(body[1:]) != uid {
		return nil, false
	}
	return body[5:], true
}

func (f *folder) setCache(uid uint32, data []byte) error {
	if len(data) > MaxCacheEntry {
		return fmt.Errorf("%w: %d bytes (at most %d)", ErrCacheTooLarge, len(data), MaxCacheEntry)
	}
	if f.msgs[uid] == nil {
		return ErrExpunged
	}
	f.cacheLoad()
	c := &f.cache
	var b []byte
	if c.bad || c.ino == 0 {
		// Start a new file: write it whole and rename it into place.
		hb := []byte{'H'}
		hb = append(hb, cacheMagic...)
		hb = binary.LittleEndian.AppendUint16(hb, cacheVersion)
		hb = binary.LittleEndian.AppendUint32(hb, f.uidValidity)
		b = appendFrame(nil, hb)
		b = appendFrame(b, append(binary.LittleEndian.AppendUint32([]byte{'C'}, uid), data...))
		fl, err := f.root.OpenFile(cacheTmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0600)
		if err != nil {
			return err
		}
		_, err = fl.Write(b)
		fl.Close()
		if err == nil {
			err = f.root.Rename(cacheTmp, cacheName)
		}
		if err != nil {
			f.root.Remove(cacheTmp)
			return err
		}
		c.reset(f, f.uidValidity)
		f.cacheLoad()
		return nil
	}
	start := len(c.pend)
	c.pend = appendFrame(c.pend, append(binary.LittleEndian.AppendUint32([]byte{'C'}, uid), data...))
	if c.pendEnts == nil {
		c.pendEnts = map[uint32]cacheEnt{}
	}
	c.pendEnts[uid] = cacheEnt{off: int64(start), n: len(c.pend) - start}
	if len(c.pend) >= cacheFlushSize {
		return f.flushCache()
	}
	return nil
}

// flushCache appends the pending frames with one write through a handle
// kept open: frames of several processes interleave whole (O_APPEND), and
// cacheLoad indexes ours with whatever others appended. f.mu is held.
func (f *folder) flushCache() error {
	c := &f.cache
	if len(c.pend) == 0 {
		return nil
	}
	pend, ents := c.pend, c.pendEnts
	c.pend, c.pendEnts = nil, nil
	if c.wfh == nil {
		fl, err := f.openCache(os.O_WRONLY | os.O_APPEND)
		if err != nil {
			c.reset(f, f.uidValidity)
			return err
		}
		c.wfh = fl
	}
	if _, err := c.wfh.Write(pend); err != nil {
		return err
	}
	// When the file ends where the batch does, nobody appended before it:
	// index it without reading it back.
	if fi, err := c.wfh.Stat(); err == nil && !c.bad && statStamp(fi).ino == c.ino && fi.Size() == c.good+int64(len(pend)) {
		if c.ents == nil {
			c.ents = map[uint32]cacheEnt{}
		}
		for uid, e := range ents {
			if f.msgs[uid] == nil {
				continue
			}
			c.drop(uid)
			c.ents[uid] = cacheEnt{off: c.good + e.off, n: e.n}
			c.live += int64(e.n)
		}
		c.good += int64(len(pend))
		return nil
	}
	f.cacheLoadNow()
	return nil
}

// compactCache rewrites the cache without dead entries when they are over
// three quarters of a file larger than 1 MiB. The caller holds the uidlist
// lock, so no other writer renames at the same time.
func (f *folder) compactCache() {
	f.flushCache()
	f.cacheLoadNow()
	c := &f.cache
	if c.ino == 0 || c.good < 1<<20 || c.live*4 > c.good {
		return
	}
	src, err := f.root.Open(cacheName)
	if err != nil {
		return
	}
	defer src.Close()
	hb := []byte{'H'}
	hb = append(hb, cacheMagic...)
	hb = binary.LittleEndian.AppendUint16(hb, cacheVersion)
	hb = binary.LittleEndian.AppendUint32(hb, f.uidValidity)
	b := appendFrame(nil, hb)
	for _, m := range f.recs {
		e, ok := c.ents[m.uid]
		if !ok {
			continue
		}
		fr := make([]byte, e.n)
		if _, err := src.ReadAt(fr, e.off); err != nil {
			return
		}
		b = append(b, fr...)
	}
	fl, err := f.root.OpenFile(cacheTmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0600)
	if err != nil {
		return
	}
	_, err = fl.Write(b)
	fl.Close()
	if err == nil && f.root.Rename(cacheTmp, cacheName) == nil {
		c.reset(f, f.uidValidity)
		f.cacheLoad()
		return
	}
	f.root.Remove(cacheTmp)
}
