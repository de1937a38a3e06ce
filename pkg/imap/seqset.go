package imap

import (
	"errors"
	"sort"
	"strconv"
)

// Star stands for "*" in a SeqSet: the largest number in use
// (RFC 3501 §9 seq-number).
const Star uint32 = 0

// Range is an inclusive interval. In a SeqSet either end may be Star; in a
// UIDSet Lo <= Hi and both are non-zero.
type Range struct{ Lo, Hi uint32 }

// SeqSet is a sequence-set as the client wrote it: ranges, possibly with
// "*", or "$" for the saved search result (RFC 5182 §2.1). It is never
// expanded into individual numbers: a set of a million ranges costs a
// million Range values at most, bounded by the command length limit.
type SeqSet struct {
	Ranges []Range
	Saved  bool // "$"
}

// ErrBadSet is returned for a set that is not RFC 9051 sequence-set syntax:
// empty, a 0, or a number beyond 2^32-1 (HOSTILE 44).
var ErrBadSet = errors.New("invalid sequence set")

// ParseSeqSet parses the sequence-set grammar of RFC 9051 §9 including "$".
func ParseSeqSet(s string) (SeqSet, error) {
	if s == "$" {
		return SeqSet{Saved: true}, nil
	}
	if s == "" {
		return SeqSet{}, ErrBadSet
	}
	var set SeqSet
	for i := 0; i < len(s); {
		lo, n, err := parseSeqNumber(s[i:])
		if err != nil {
			return SeqSet{}, err
		}
		i += n
		hi := lo
		if i < len(s) && s[i] == ':' {
			i++
			hi, n, err = parseSeqNumber(s[i:])
			if err != nil {
				return SeqSet{}, err
			}
			i += n
		}
		set.Ranges = append(set.Ranges, Range{lo, hi})
		if i == len(s) {
			break
		}
		if s[i] != ',' || i+1 == len(s) {
			return SeqSet{}, ErrBadSet
		}
		i++
	}
	return set, nil
}

// parseSeqNumber reads nz-number or "*" from the start of s.
func parseSeqNumber(s string) (v uint32, n int, err error) {
	if s == "" {
		return 0, 0, ErrBadSet
	}
	if s[0] == '*' {
		return Star, 1, nil
	}
	if s[0] < '1' || s[0] > '9' {
		return 0, 0, ErrBadSet
	}
	var x uint64
	for n < len(s) && s[n] >= '0' && s[n] <= '9' {
		x = x*10 + uint64(s[n]-'0')
		if x > 0xFFFFFFFF {
			return 0, 0, ErrBadSet
		}
		n++
	}
	return uint32(x), n, nil
}

// String formats the set back into sequence-set syntax.
func (s SeqSet) String() string {
	if s.Saved {
		return "$"
	}
	var b []byte
	num := func(v uint32) {
		if v == Star {
			b = append(b, '*')
		} else {
			b = strconv.AppendUint(b, uint64(v), 10)
		}
	}
	for i, r := range s.Ranges {
		if i > 0 {
			b = append(b, ',')
		}
		num(r.Lo)
		if r.Hi != r.Lo {
			b = append(b, ':')
			num(r.Hi)
		}
	}
	return string(b)
}

// Resolve turns the set into a UIDSet with "*" replaced by max. Numbers
// above max are kept (UID sets may name UIDs that do not exist), so the
// result may span up to 2^32-1 values: iterate messages and test
// membership, never iterate the ranges. A range is taken in either order
// (RFC 3501 §9: "2:4" and "4:2" are the same).
func (s SeqSet) Resolve(max uint32) UIDSet {
	var u UIDSet
	for _, r := range s.Ranges {
		lo, hi := r.Lo, r.Hi
		if lo == Star {
			lo = max
		}
		if hi == Star {
			hi = max
		}
		if lo > hi {
			lo, hi = hi, lo
		}
		if lo == 0 {
			if hi == 0 {
				continue
			}
			lo = 1
		}
		u = u.AddRange(lo, hi)
	}
	return u
}

// MaxNumber returns the largest explicit number in the set (Star excluded).
func (s SeqSet) MaxNumber() uint32 {
	var m uint32
	for _, r := range s.Ranges {
		if r.Lo > m {
			m = r.Lo
		}
		if r.Hi > m {
			m = r.Hi
		}
	}
	return m
}

// HasStar reports whether "*" occurs in the set.
func (s SeqSet) HasStar() bool {
	for _, r := range s.Ranges {
		if r.Lo == Star || r.Hi == Star {
			return true
		}
	}
	return false
}

// UIDSet is a normalised set of numbers: sorted, non-overlapping,
// non-adjacent ranges. The zero value is the empty set.
type UIDSet []Range

// Contains reports whether v is in the set, in O(log ranges).
func (u UIDSet) Contains(v uint32) bool {
	i := sort.Search(len(u), func(i int) bool { return u[i].Hi >= v })
	return i < len(u) && u[i].Lo <= v
}

// Add returns the set with v added; adding in ascending order is O(1).
func (u UIDSet) Add(v uint32) UIDSet { return u.AddRange(v, v) }

// AddRange returns the set with [lo, hi] added.
func (u UIDSet) AddRange(lo, hi uint32) UIDSet {
	if lo > hi {
		lo, hi = hi, lo
	}
	if lo == 0 {
		if hi == 0 {
			return u
		}
		lo = 1
	}
	n := len(u)
	// Fast path: append after the last range.
	if n == 0 || lo > u[n-1].Hi {
		if n > 0 && u[n-1].Hi != 0xFFFFFFFF && lo == u[n-1].Hi+1 {
			u[n-1].Hi = hi
			return u
		}
		return append(u, Range{lo, hi})
	}
	// General case: find the first range that may touch [lo, hi].
	i := sort.Search(n, func(i int) bool { return u[i].Hi >= lo-min(lo, 1) })
	j := i
	for j < n && (u[j].Lo <= hi || (hi != 0xFFFFFFFF && u[j].Lo == hi+1)) {
		lo = min(lo, u[j].Lo)
		hi = max(hi, u[j].Hi)
		j++
	}
	if i == j {
		u = append(u, Range{})
		copy(u[i+1:], u[i:])
		u[i] = Range{lo, hi}
		return u
	}
	u[i] = Range{lo, hi}
	return append(u[:i+1], u[j:]...)
}

// Remove returns the set without v.
func (u UIDSet) Remove(v uint32) UIDSet {
	i := sort.Search(len(u), func(i int) bool { return u[i].Hi >= v })
	if i == len(u) || u[i].Lo > v {
		return u
	}
	r := u[i]
	switch {
	case r.Lo == v && r.Hi == v:
		return append(u[:i], u[i+1:]...)
	case r.Lo == v:
		u[i].Lo++
	case r.Hi == v:
		u[i].Hi--
	default:
		u = append(u, Range{})
		copy(u[i+2:], u[i+1:])
		u[i] = Range{r.Lo, v - 1}
		u[i+1] = Range{v + 1, r.Hi}
	}
	return u
}

// Count returns the number of members.
func (u UIDSet) Count() uint64 {
	var n uint64
	for _, r := range u {
		n += uint64(r.Hi-r.Lo) + 1
	}
	return n
}

// Min and Max return the smallest and largest member, or 0 when empty.
func (u UIDSet) Min() uint32 {
	if len(u) == 0 {
		return 0
	}
	return u[0].Lo
}

// Max returns the largest member, or 0 when empty.
func (u UIDSet) Max() uint32 {
	if len(u) == 0 {
		return 0
	}
	return u[len(u)-1].Hi
}

// Each calls fn for every member in ascending order until fn returns false.
func (u UIDSet) Each(fn func(uint32) bool) {
	for _, r := range u {
		for v := r.Lo; ; v++ {
			if !fn(v) {
				return
			}
			if v == r.Hi {
				break
			}
		}
	}
}

// Intersect returns the members present in both sets.
func (u UIDSet) Intersect(o UIDSet) UIDSet {
	var out UIDSet
	i, j := 0, 0
	for i < len(u) && j < len(o) {
		lo := max(u[i].Lo, o[j].Lo)
		hi := min(u[i].Hi, o[j].Hi)
		if lo <= hi {
			out = append(out, Range{lo, hi})
		}
		if u[i].Hi < o[j].Hi {
			i++
		} else {
			j++
		}
	}
	return out
}

// String formats the set in sequence-set syntax ("1:3,7"), "" when empty.
func (u UIDSet) String() string {
	return string(u.AppendTo(nil))
}

// AppendTo appends the String form to b.
func (u UIDSet) AppendTo(b []byte) []byte {
	for i, r := range u {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, uint64(r.Lo), 10)
		if r.Hi != r.Lo {
			b = append(b, ':')
			b = strconv.AppendUint(b, uint64(r.Hi), 10)
		}
	}
	return b
}

// Clone returns a copy that does not share storage with u.
func (u UIDSet) Clone() UIDSet {
	if u == nil {
		return nil
	}
	return append(UIDSet(nil), u...)
}
