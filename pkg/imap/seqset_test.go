package imap

import (
	"math/rand"
	"sort"
	"testing"
)

func TestParseSeqSet(t *testing.T) {
	good := map[string]string{
		"1": "1", "1:*": "1:*", "*": "*", "$": "$", "2,4:7,9,12:*": "2,4:7,9,12:*",
		"4294967295": "4294967295", "*:4": "*:4",
	}
	for in, want := range good {
		s, err := ParseSeqSet(in)
		if err != nil || s.String() != want {
			t.Errorf("ParseSeqSet(%q) = %v, %v", in, s, err)
		}
	}
	// HOSTILE 44.
	for _, in := range []string{"", "0", "*:0", "0:*", "1:4294967296", "99999999999999999999", "1,", ",1", "1::2", "$,1", "1,$", "a", "1:2:3", "01"} {
		if s, err := ParseSeqSet(in); err == nil {
			t.Errorf("ParseSeqSet(%q) = %v, want error", in, s)
		}
	}
}

func TestResolve(t *testing.T) {
	s, _ := ParseSeqSet("5:*,2,7:3")
	if got := s.Resolve(6).String(); got != "2:7" {
		t.Fatal(got)
	}
	s, _ = ParseSeqSet("*")
	if got := s.Resolve(0); len(got) != 0 {
		t.Fatal(got) // '*' alone on an empty mailbox names nothing
	}
	s, _ = ParseSeqSet("100:*")
	if got := s.Resolve(50).String(); got != "50:100" {
		t.Fatal(got) // RFC 3501 §9: n:* includes the last message even when n > *
	}
}

// TestUIDSetModel checks the set operations against a map.
func TestUIDSetModel(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for round := 0; round < 200; round++ {
		var u UIDSet
		model := map[uint32]bool{}
		for i := 0; i < 50; i++ {
			lo := uint32(rng.Intn(100) + 1)
			hi := lo + uint32(rng.Intn(5))
			switch rng.Intn(3) {
			case 0, 1:
				u = u.AddRange(lo, hi)
				for v := lo; v <= hi; v++ {
					model[v] = true
				}
			case 2:
				u = u.Remove(lo)
				delete(model, lo)
			}
		}
		for i := 1; i < len(u); i++ {
			if u[i].Lo <= u[i-1].Hi+1 {
				t.Fatalf("not normalised: %v", u)
			}
		}
		var keys []uint32
		for v := range model {
			keys = append(keys, v)
		}
		sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
		var got []uint32
		u.Each(func(v uint32) bool { got = append(got, v); return true })
		if len(got) != len(keys) || u.Count() != uint64(len(keys)) {
			t.Fatalf("%v vs %v", got, keys)
		}
		for i := range got {
			if got[i] != keys[i] {
				t.Fatalf("%v vs %v", got, keys)
			}
		}
		for v := uint32(0); v < 110; v++ {
			if u.Contains(v) != model[v] {
				t.Fatalf("Contains(%d) on %v", v, u)
			}
		}
		var o UIDSet
		o = o.AddRange(20, 60)
		in := u.Intersect(o)
		for v := uint32(0); v < 110; v++ {
			if in.Contains(v) != (model[v] && v >= 20 && v <= 60) {
				t.Fatalf("Intersect at %d", v)
			}
		}
	}
	// Edges at 2^32-1 do not overflow.
	var u UIDSet
	u = u.AddRange(4294967290, 4294967295).Add(4294967295).AddRange(1, 3)
	if u.String() != "1:3,4294967290:4294967295" || u.Count() != 9 {
		t.Fatal(u.String())
	}
}

func FuzzSeqSet(f *testing.F) {
	for _, s := range []string{"1", "1:*", "$", "2,4:7,9,12:*", "0", "1:4294967296", "4294967295:1", "*:0"} {
		f.Add(s, uint32(10))
	}
	f.Fuzz(func(t *testing.T, s string, max uint32) {
		set, err := ParseSeqSet(s)
		if err != nil {
			return
		}
		again, err := ParseSeqSet(set.String())
		if err != nil || again.String() != set.String() {
			t.Fatalf("round trip %q -> %q", s, set.String())
		}
		if set.Saved {
			return
		}
		u := set.Resolve(max)
		for i := 1; i < len(u); i++ {
			if u[i].Lo <= u[i-1].Hi || u[i].Lo > u[i].Hi {
				t.Fatalf("not normalised: %v", u)
			}
		}
		for _, r := range set.Ranges {
			lo := r.Lo
			if lo == Star {
				lo = max
			}
			if lo != 0 && !u.Contains(lo) {
				t.Fatalf("%d missing from %v", lo, u)
			}
		}
	})
}
