package mailbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// posthorn.index — one per folder, next to dovecot-uidlist. Dovecot keeps
// modification sequences in its own index, not in the Maildir, so posthorn
// keeps this small file for CONDSTORE/QRESYNC (RFC 7162) and to SELECT
// without reading every file. Everything in it can be rebuilt from the
// Maildir; a missing, foreign-UIDVALIDITY or corrupt index is discarded and
// rebuilt.
//
// Format version 1. The file is a sequence of frames:
//
//	frame  = length:u32le crc:u32le body        ; crc is CRC-32C of body
//	body   = type:byte fields
//
//	'H' header   magic "posthorn.index" version:u16le uidvalidity:u32le
//	             (always the first frame)
//	'M' message  uid:u32 modseq:u64 size:i64 vsize:i64 mtime:i64(ns)
//	             bits:u8 (1 = file is in new/) name:str n:uvarint kw:str*n
//	             where str = uvarint length + bytes and kw are keywords that
//	             have no dovecot-keywords letter. A later M frame for a UID
//	             replaces the earlier one.
//	'X' expunge  uid:u32 modseq:u64
//	'R' recent   first-recent-uid:u32
//	             the lowest UID no IMAP session has taken as \Recent
//	             (RFC 3501 §2.3.2): a read-write SELECT, and each sync of
//	             such a session, takes the messages at or above it and
//	             raises it past them; EXAMINE and STATUS only count them.
//	             The last R frame holds. An index without one (rebuilt,
//	             or written before R existed) gets the uidlist's next
//	             UID: see folder.initRecent.
//	'S' stamp    highestmodseq:u64 cur:i64 new:i64 uidlist-size:i64
//	             uidlist-mtime:i64 uidlist-ino:u64 keywords-mtime:i64
//	             clean:u8
//	             the Maildir state the frames before it describe; when every
//	             value still matches, SELECT needs no directory scan.
//
// Integers are little-endian. Frames are only appended (by a writer holding
// dovecot-uidlist.lock, fsynced before the lock is released) or the whole
// file is rewritten to posthorn.index.tmp and renamed over it (compaction).
// A reader without the lock stops at an incomplete frame at the end (a
// writer may be appending it); a complete frame that fails its checksum
// means the file is corrupt, and the next writer rebuilds it.
//
// Expunged UIDs are kept for QRESYNC VANISHED (RFC 7162 §3.2.10): the last
// maxVanished of them. Older ones are summarized by the highest modseq
// dropped, so a client asking from before that gets an answer marked
// inexact.

const (
	indexFile    = "posthorn.index"
	indexTmp     = "posthorn.index.tmp"
	indexMagic   = "posthorn.index"
	indexVersion = 1
)

// maxVanished is how many expunged UIDs the index remembers.
const maxVanished = 10000

// maxFrame bounds one frame: a message record is under 40 KiB even with
// MaxKeywords keywords of MaxKeywordLen.
const maxFrame = 64 << 10

// maxIndexSize bounds what is read into memory.
var maxIndexSize int64 = 1 << 30

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var errIndexCorrupt = errors.New("mailbox: posthorn.index is corrupt")

type stamp struct {
	highestModSeq uint64
	cur, new      int64 // directory mtimes, ns
	uidlistSize   int64
	uidlistMtime  int64
	uidlistIno    uint64
	keywordsMtime int64
	clean         bool
	vanishFloor   uint64
}

type expunged struct {
	uid    uint32
	modseq uint64
}

// indexState is what an index file says.
type indexState struct {
	uidValidity uint32
	msgs        map[uint32]*msgRec
	expunges    []expunged
	stamp       stamp
	haveStamp   bool
	firstRecent uint32
	haveRecent  bool
	touched     []uint32 // UIDs of M and X frames read
	frames      int      // frames read, to decide on compaction
	good        int64    // end of the last complete, valid frame
}

func appendFrame(b []byte, body []byte) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(body)))
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(body, castagnoli))
	return append(b, body...)
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func headerFrame(b []byte, uidValidity uint32) []byte {
	body := []byte{'H'}
	body = append(body, indexMagic...)
	body = binary.LittleEndian.AppendUint16(body, indexVersion)
	body = binary.LittleEndian.AppendUint32(body, uidValidity)
	return appendFrame(b, body)
}

func msgFrame(b []byte, m *msgRec) []byte {
	body := make([]byte, 0, 64+len(m.name))
	body = append(body, 'M')
	body = binary.LittleEndian.AppendUint32(body, m.uid)
	body = binary.LittleEndian.AppendUint64(body, m.modseq)
	body = binary.LittleEndian.AppendUint64(body, uint64(m.size))
	body = binary.LittleEndian.AppendUint64(body, uint64(m.vsize))
	body = binary.LittleEndian.AppendUint64(body, uint64(m.mtime))
	var bits byte
	if m.inNew {
		bits |= 1
	}
	body = append(body, bits)
	body = appendStr(body, m.name)
	body = binary.AppendUvarint(body, uint64(len(m.extraKw)))
	for _, k := range m.extraKw {
		body = appendStr(body, k)
	}
	return appendFrame(b, body)
}

func expungeFrame(b []byte, e expunged) []byte {
	body := []byte{'X'}
	body = binary.LittleEndian.AppendUint32(body, e.uid)
	body = binary.LittleEndian.AppendUint64(body, e.modseq)
	return appendFrame(b, body)
}

func recentFrame(b []byte, firstRecent uint32) []byte {
	body := []byte{'R'}
	body = binary.LittleEndian.AppendUint32(body, firstRecent)
	return appendFrame(b, body)
}

func stampFrame(b []byte, s *stamp) []byte {
	body := []byte{'S'}
	body = binary.LittleEndian.AppendUint64(body, s.highestModSeq)
	for _, v := range []int64{s.cur, s.new, s.uidlistSize, s.uidlistMtime} {
		body = binary.LittleEndian.AppendUint64(body, uint64(v))
	}
	body = binary.LittleEndian.AppendUint64(body, s.uidlistIno)
	body = binary.LittleEndian.AppendUint64(body, uint64(s.keywordsMtime))
	body = binary.LittleEndian.AppendUint64(body, s.vanishFloor)
	if s.clean {
		body = append(body, 1)
	} else {
		body = append(body, 0)
	}
	return appendFrame(b, body)
}

// reader decodes fields of one frame body.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) n(k int) []byte {
	if r.bad || len(r.b) < k {
		r.bad = true
		return make([]byte, k)
	}
	v := r.b[:k]
	r.b = r.b[k:]
	return v
}
func (r *reader) u8() byte    { return r.n(1)[0] }
func (r *reader) u16() uint16 { return binary.LittleEndian.Uint16(r.n(2)) }
func (r *reader) u32() uint32 { return binary.LittleEndian.Uint32(r.n(4)) }
func (r *reader) u64() uint64 { return binary.LittleEndian.Uint64(r.n(8)) }
func (r *reader) uvarint() uint64 {
	if r.bad {
		return 0
	}
	v, k := binary.Uvarint(r.b)
	if k <= 0 {
		r.bad = true
		return 0
	}
	r.b = r.b[k:]
	return v
}
func (r *reader) str(max int) string {
	l := r.uvarint()
	if l > uint64(max) {
		r.bad = true
		return ""
	}
	return string(r.n(int(l)))
}

// parseIndex decodes data, which starts at offset base of the file, into
// st. With base 0 the first frame must be the header. It returns
// errIndexCorrupt for a bad frame; an incomplete last frame just ends the
// data (st.good tells where).
func parseIndex(data []byte, base int64, st *indexState) error {
	off := 0
	for {
		if len(data)-off < 8 {
			return nil
		}
		l := int(binary.LittleEndian.Uint32(data[off:]))
		if l < 1 || l > maxFrame {
			return fmt.Errorf("%w: frame length %d at %d", errIndexCorrupt, l, base+int64(off))
		}
		if len(data)-off-8 < l {
			return nil
		}
		body := data[off+8 : off+8+l]
		if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(data[off+4:]) {
			return fmt.Errorf("%w: checksum at %d", errIndexCorrupt, base+int64(off))
		}
		first := base == 0 && off == 0
		if err := st.apply(body, first); err != nil {
			return fmt.Errorf("%w at %d: %v", errIndexCorrupt, base+int64(off), err)
		}
		off += 8 + l
		st.good = base + int64(off)
		st.frames++
	}
}

func (st *indexState) apply(body []byte, first bool) error {
	r := &reader{b: body[1:]}
	typ := body[0]
	if first != (typ == 'H') {
		return errors.New("header frame misplaced")
	}
	switch typ {
	case 'H':
		if string(r.n(len(indexMagic))) != indexMagic || r.u16() != indexVersion {
			return errors.New("not a version 1 index")
		}
		st.uidValidity = r.u32()
	case 'M':
		m := &msgRec{uid: r.u32(), modseq: r.u64(), size: int64(r.u64()), vsize: int64(r.u64()), mtime: int64(r.u64())}
		m.inNew = r.u8()&1 != 0
		m.name = r.str(255)
		n := r.uvarint()
		if n > MaxKeywords {
			return errors.New("too many keywords")
		}
		for range n {
			m.extraKw = append(m.extraKw, r.str(MaxKeywordLen))
		}
		if r.bad || m.uid == 0 || !validFileName(m.name) {
			return errors.New("bad message record")
		}
		if st.msgs == nil {
			st.msgs = make(map[uint32]*msgRec)
		}
		st.msgs[m.uid] = m
		st.touched = append(st.touched, m.uid)
	case 'X':
		e := expunged{uid: r.u32(), modseq: r.u64()}
		if r.bad {
			return errors.New("bad expunge record")
		}
		delete(st.msgs, e.uid)
		st.expunges = append(st.expunges, e)
		st.touched = append(st.touched, e.uid)
	case 'R':
		st.firstRecent = r.u32()
		if r.bad {
			return errors.New("bad recent record")
		}
		st.haveRecent = true
	case 'S':
		s := stamp{highestModSeq: r.u64(), cur: int64(r.u64()), new: int64(r.u64()),
			uidlistSize: int64(r.u64()), uidlistMtime: int64(r.u64()), uidlistIno: r.u64(),
			keywordsMtime: int64(r.u64()), vanishFloor: r.u64(), clean: r.u8() == 1}
		if r.bad {
			return errors.New("bad stamp record")
		}
		st.stamp, st.haveStamp = s, true
	default:
		return fmt.Errorf("unknown frame type %q", typ)
	}
	if len(r.b) != 0 {
		return errors.New("trailing bytes in frame")
	}
	return nil
}

// validFileName accepts what readers of cur/ and new/ accept (HOSTILE 54).
func validFileName(name string) bool {
	_, _, _, _, ok := parseFileName(name)
	return ok
}
