package mailbox

import (
	"bytes"
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// dovecot-uidlist (maildir-uidlist.c) maps UIDs to Maildir base names.
//
//	v3 header: 3 V<uidvalidity> N<nextuid> G<mailbox guid, 32 hex> [<key><value> ...]
//	v3 record: <uid> [<key><value> ...] :<file name up to its ":">
//	v1 header: 1 <uidvalidity> <nextuid>
//	v1 record: <uid> <file name>
//
// Record keys are capital letters: S physical size, W virtual size, P POP3
// UIDL, O POP3 order, G message GUID; unknown header fields are kept and
// written back after G, as Dovecot does. Records are written in UID order
// and never edited in place: writers either append new records or write
// dovecot-uidlist.tmp and rename it over the file, holding
// dovecot-uidlist.lock. A v1 file is rewritten as v3, as Dovecot does.

const (
	uidlistFile = "dovecot-uidlist"
	uidlistTmp  = "dovecot-uidlist.tmp"
)

// maxUidlistSize bounds what is read into memory: about 4 million records.
var maxUidlistSize int64 = 256 << 20

// maxUidlistLine bounds one record: a 255-byte name plus extensions.
const maxUidlistLine = 4096

var errUidlistBroken = errors.New("mailbox: dovecot-uidlist is broken")

type uidRec struct {
	uid uint32
	ext []string // "<key><value>" in file order
	key string   // file name without ":info"
}

type uidlist struct {
	version     int
	uidValidity uint32
	nextUID     uint32 // header N, raised past the last record
	guid        string
	hdrExt      []string
	recs        []uidRec       // ascending UID
	parsed      int64          // bytes consumed (complete lines only)
	byKey       map[string]int // key -> index in recs, built on demand
}

// keys returns the key -> record index map, building it when needed.
func (u *uidlist) keys() map[string]int {
	if u.byKey == nil {
		u.byKey = make(map[string]int, len(u.recs)+64)
		for i, r := range u.recs {
			u.byKey[r.key] = i
		}
	}
	return u.byKey
}

// reserve sizes an empty uidlist for n records about to be added.
func (u *uidlist) reserve(n int) {
	if len(u.recs) == 0 {
		u.byKey = nil // built from recs when needed (keys)
		u.recs = slices.Grow(u.recs, n)
	}
}

// add appends a record for a new file with the next UID.
func (u *uidlist) add(key string) uint32 {
	uid := u.nextUID
	u.nextUID++
	if u.byKey != nil { // else keys builds it from recs, this one included
		u.byKey[key] = len(u.recs)
	}
	u.recs = append(u.recs, uidRec{uid: uid, key: key})
	return uid
}

// restore inserts a record for a known UID in UID order.
func (u *uidlist) restore(uid uint32, key string) {
	i, _ := slices.BinarySearchFunc(u.recs, uid, func(r uidRec, t uint32) int { return cmp.Compare(r.uid, t) })
	u.recs = slices.Insert(u.recs, i, uidRec{uid: uid, key: key})
	u.byKey = nil
	if uid >= u.nextUID {
		u.nextUID = uid + 1
	}
}

// lookup returns the record of UID uid.
func (u *uidlist) lookup(uid uint32) *uidRec {
	i, ok := slices.BinarySearchFunc(u.recs, uid, func(r uidRec, t uint32) int { return cmp.Compare(r.uid, t) })
	if !ok {
		return nil
	}
	return &u.recs[i]
}

func newGUID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func validGUID(s string) bool {
	if len(s) != 32 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

func parseUint32(s string) (uint32, bool) {
	if s == "" || len(s) > 10 || s[0] == '+' {
		return 0, false
	}
	v, err := strconv.ParseUint(s, 10, 32)
	return uint32(v), err == nil
}

// parseUidlist reads a whole file. A trailing line without "\n" is left
// for later: a writer may be appending it.
func parseUidlist(data []byte) (*uidlist, error) {
	if int64(len(data)) > maxUidlistSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", errUidlistBroken, maxUidlistSize)
	}
	nl := bytes.IndexByte(data, '\n')
	if nl < 0 {
		return nil, fmt.Errorf("%w: no header", errUidlistBroken)
	}
	u := &uidlist{}
	if err := u.parseHeader(string(data[:nl])); err != nil {
		return nil, err
	}
	u.parsed = int64(nl + 1)
	if err := u.parseRecords(data[nl+1:]); err != nil {
		return nil, err
	}
	return u, nil
}

func (u *uidlist) parseHeader(line string) error {
	if len(line) < 2 || line[0] < '0' || line[0] > '9' || line[1] != ' ' {
		return fmt.Errorf("%w: invalid version", errUidlistBroken)
	}
	u.version = int(line[0] - '0')
	rest := line[2:]
	switch u.version {
	case 1:
		f := strings.Fields(rest)
		if len(f) != 2 {
			return fmt.Errorf("%w: v1 header", errUidlistBroken)
		}
		u.uidValidity, _ = parseUint32(f[0])
		u.nextUID, _ = parseUint32(f[1])
	case 3:
		for _, f := range strings.Fields(rest) {
			key, val := f[0], f[1:]
			switch key {
			case 'V':
				u.uidValidity, _ = parseUint32(val)
			case 'N':
				u.nextUID, _ = parseUint32(val)
			case 'G':
				if !validGUID(val) {
					return fmt.Errorf("%w: mailbox GUID %q", errUidlistBroken, val)
				}
				u.guid = strings.ToLower(val)
			default:
				u.hdrExt = append(u.hdrExt, f)
			}
		}
	default:
		return fmt.Errorf("%w: unsupported version %d", errUidlistBroken, u.version)
	}
	if u.uidValidity == 0 || u.nextUID == 0 {
		return fmt.Errorf("%w: header without UIDVALIDITY or next UID", errUidlistBroken)
	}
	return nil
}

// parseRecords adds the complete lines of data (which follows what was
// already parsed) to u.
func (u *uidlist) parseRecords(data []byte) error {
	dups := 0
	defer func() {
		if dups == 0 {
			return
		}
		out := u.recs[:0]
		for _, r := range u.recs {
			if r.key != "" {
				out = append(out, r)
			}
		}
		u.recs = out
		u.byKey = nil
	}()
	for len(data) > 0 {
		nl := bytes.IndexByte(data, '\n')
		if nl < 0 {
			break
		}
		line := string(data[:nl])
		data = data[nl+1:]
		if len(line) > maxUidlistLine {
			return fmt.Errorf("%w: line longer than %d bytes", errUidlistBroken, maxUidlistLine)
		}
		rec, err := u.parseRecord(line)
		if err != nil {
			return err
		}
		if n := len(u.recs); n > 0 && rec.uid <= u.recs[n-1].uid {
			return fmt.Errorf("%w: UIDs not ordered (%d after %d)", errUidlistBroken, rec.uid, u.recs[n-1].uid)
		}
		// A name listed twice: the later UID wins, as in Dovecot (an
		// expunged file moved back and appended again). The earlier record
		// is marked and dropped below, keeping this linear.
		if i, dup := u.keys()[rec.key]; dup {
			u.recs[i].key = ""
			dups++
		}
		u.byKey[rec.key] = len(u.recs)
		u.recs = append(u.recs, rec)
		u.parsed += int64(nl + 1)
		if rec.uid >= u.nextUID {
			u.nextUID = rec.uid + 1
		}
	}
	return nil
}

func (u *uidlist) parseRecord(line string) (uidRec, error) {
	var r uidRec
	num, rest, ok := strings.Cut(line, " ")
	uid, good := parseUint32(num)
	if !ok || !good || uid == 0 || uid == ^uint32(0) {
		return r, fmt.Errorf("%w: invalid record %q", errUidlistBroken, trunc(line))
	}
	r.uid = uid
	if u.version == 3 {
		for rest != "" && rest[0] != ':' {
			var f string
			f, rest, _ = strings.Cut(rest, " ")
			if f == "" {
				continue
			}
			// Dovecot drops invalid extension keys and rewrites the file.
			if f[0] >= 'A' && f[0] <= 'Z' {
				r.ext = append(r.ext, f)
			}
		}
		if rest == "" {
			return r, fmt.Errorf("%w: record without file name %q", errUidlistBroken, trunc(line))
		}
		rest = rest[1:]
	}
	// v1 records may carry ":2,flags"; the key stops at the ":".
	key, _, _ := strings.Cut(rest, ":")
	if key == "" || strings.ContainsRune(key, '/') {
		return r, fmt.Errorf("%w: broken file name %q", errUidlistBroken, trunc(line))
	}
	r.key = key
	return r, nil
}

func trunc(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// header renders the v3 header line.
func (u *uidlist) header() []byte {
	b := make([]byte, 0, 80)
	b = append(b, "3 V"...)
	b = strconv.AppendUint(b, uint64(u.uidValidity), 10)
	b = append(b, " N"...)
	b = strconv.AppendUint(b, uint64(u.nextUID), 10)
	b = append(b, " G"...)
	b = append(b, u.guid...)
	for _, e := range u.hdrExt {
		b = append(b, ' ')
		b = append(b, e...)
	}
	return append(b, '\n')
}

func appendRecord(b []byte, r *uidRec) []byte {
	b = strconv.AppendUint(b, uint64(r.uid), 10)
	for _, e := range r.ext {
		b = append(b, ' ')
		b = append(b, e...)
	}
	b = append(b, " :"...)
	b = append(b, r.key...)
	return append(b, '\n')
}

// marshal renders the whole file in v3 form.
func (u *uidlist) marshal() []byte {
	b := u.header()
	for i := range u.recs {
		b = appendRecord(b, &u.recs[i])
	}
	return b
}

// extValue returns the value of extension key in r, or "".
func (r *uidRec) extValue(key byte) string {
	for _, e := range r.ext {
		if e[0] == key {
			return e[1:]
		}
	}
	return ""
}
