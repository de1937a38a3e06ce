package mailbox

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func FuzzUTF7(f *testing.F) {
	for _, s := range []string{"INBOX", "a&-b", "Entw&APw-rfe", "&U,BTFw-&ZeVnLIqe-", "&2D3eAA-", "&", "&Jjo!", "&AGE-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		// Decoding then encoding gives back the input: one spelling only.
		if u, err := DecodeUTF7(s); err == nil {
			e, err := EncodeUTF7(u)
			if err != nil || e != s {
				t.Fatalf("%q -> %q -> %q %v", s, u, e, err)
			}
		}
		// Encoding valid UTF-8 always decodes back.
		if e, err := EncodeUTF7(s); err == nil {
			u, err := DecodeUTF7(e)
			if err != nil || u != s {
				t.Fatalf("%q -> %q -> %q %v", s, e, u, err)
			}
		}
	})
}

func FuzzValidateName(f *testing.F) {
	for _, s := range []string{"INBOX", "Archive.2026", "../../etc", "a..b", "~root", "e\u0301", "cur"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ValidateName(s, true)
		if err != nil {
			return
		}
		d := folderDir(n)
		if strings.Contains(d, "/") || strings.Contains(d, "..") || len(d) > 255 {
			t.Fatalf("%q maps to unsafe directory %q", s, d)
		}
		if n != Inbox && nameFromDir(d) != n {
			t.Fatalf("%q -> %q -> %q", s, d, nameFromDir(d))
		}
	})
}

func FuzzParseUidlist(f *testing.F) {
	f.Add([]byte(uidlistFixture))
	f.Add([]byte("1 1000 5\n1 a.b.c:2,S\n3 d.e.f\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		u, err := parseUidlist(data)
		if err != nil {
			return
		}
		if u.guid == "" {
			u.guid = newGUID()
		}
		// What is written reads back the same.
		u2, err := parseUidlist(u.marshal())
		if err != nil {
			t.Fatalf("rewrite unreadable: %v\n%q", err, u.marshal())
		}
		if len(u2.recs) != len(u.recs) || u2.uidValidity != u.uidValidity || u2.nextUID != u.nextUID {
			t.Fatalf("rewrite differs")
		}
		for i := range u.recs {
			if u.recs[i].uid != u2.recs[i].uid || u.recs[i].key != u2.recs[i].key || strings.Join(u.recs[i].ext, " ") != strings.Join(u2.recs[i].ext, " ") {
				t.Fatalf("record %d differs: %+v %+v", i, u.recs[i], u2.recs[i])
			}
		}
	})
}

func FuzzFlags(f *testing.F) {
	f.Add([]byte("0 $Junk\n1 NonJunk\n"), "1276528487.M1P1.h,S=1:2,PSab,x", byte(3), "cz")
	f.Fuzz(func(t *testing.T, kw []byte, name string, sys byte, letters string) {
		tab := parseKeywords(kw)
		if tab2 := parseKeywords(tab.marshal()); tab2 != tab {
			t.Fatal("keywords do not round-trip")
		}
		if _, _, _, _, ok := parseFileName(name); !ok {
			return
		}
		var lb []byte
		for i := 0; i < len(letters); i++ {
			if c := letters[i]; c >= 'a' && c <= 'z' {
				lb = append(lb, c)
			}
		}
		sys &= 0x1f
		n := withFlags(name, sys, string(lb))
		gs, gl := infoFlags(n)
		if gs != sys {
			t.Fatalf("%q: flags %x, want %x", n, gs, sys)
		}
		for _, c := range lb {
			if !strings.ContainsRune(gl, rune(c)) {
				t.Fatalf("%q lost keyword %c", n, c)
			}
		}
		if k1, _, _, _, _ := parseFileName(n); !strings.HasPrefix(name, k1) {
			t.Fatalf("base changed: %q -> %q", name, n)
		}
	})
}

func FuzzParseIndex(f *testing.F) {
	var b []byte
	b = headerFrame(b, 42)
	b = msgFrame(b, &msgRec{uid: 1, name: "1.M1P1.h,S=1,W=2:2,S", modseq: 5, extraKw: []string{"kw"}})
	b = expungeFrame(b, expunged{uid: 2, modseq: 6})
	b = stampFrame(b, &stamp{highestModSeq: 7, clean: true})
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		st := &indexState{msgs: map[uint32]*msgRec{}}
		err := parseIndex(data, 0, st)
		if st.good > int64(len(data)) {
			t.Fatal("read past the end")
		}
		if err == nil && st.frames > 0 {
			for _, m := range st.msgs {
				if !validFileName(m.name) || len(m.extraKw) > MaxKeywords {
					t.Fatalf("accepted bad record %+v", m)
				}
			}
		}
	})
}

func FuzzSubscriptions(f *testing.F) {
	f.Add([]byte("V\t2\n\nINBOX\nArchive\t2026\na\x01tb\n"))
	f.Add([]byte("INBOX\nSent.old\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, names, raw := parseSubscriptions(data)
		if len(names) != len(raw) {
			t.Fatal("names and lines differ")
		}
		for _, n := range names {
			if strings.ContainsRune(n, '\t') && v == 1 {
				continue
			}
			if v == 2 {
				line := subsLine(2, n)
				_, back, _ := parseSubscriptions([]byte(subsHeader + line + "\n"))
				if !strings.Contains(n, "\n") && (len(back) != 1 || back[0] != n) {
					t.Fatalf("%q -> %q -> %q", n, line, back)
				}
			}
		}
	})
}

func FuzzMaildirsize(f *testing.F) {
	f.Add([]byte("1000S,3C\n14 2\n-4 -1\n"), int64(1000), int64(3))
	f.Add([]byte("0S\n0 0\n"), int64(0), int64(0))
	f.Fuzz(func(t *testing.T, data []byte, lb, lc int64) {
		if lb < 0 || lc < 0 {
			return
		}
		q := QuotaLimits{Bytes: lb, Count: lc}
		if got, ok := parseLimits(q.line()); !ok || got != q {
			t.Fatalf("limits %+v -> %q -> %+v", q, q.line(), got)
		}
		b, c, ok := parseMaildirsize(data, q, time.Now())
		if ok && (b < 0 || c < 0 || len(data) >= quotaMaxSize) {
			t.Fatalf("trusted %d %d from %q", b, c, data)
		}
	})
}

func FuzzCRLF(f *testing.F) {
	f.Add([]byte("a\r\nb\nc\r\r\n\r"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var out bytes.Buffer
		bw := bufioWriter(&out)
		lw := &lfWriter{w: bw}
		lw.Write(data)
		lw.Close()
		bw.Flush()
		stored := out.Bytes()
		_, vsize, _ := countSizes(bytes.NewReader(stored))
		if lw.n != int64(len(stored)) || lw.n+lw.lines != vsize {
			t.Fatalf("sizes %d+%d vs %d/%d", lw.n, lw.lines, len(stored), vsize)
		}
		var view bytes.Buffer
		view.ReadFrom(CRLFReader(bytes.NewReader(stored)))
		if int64(view.Len()) != vsize {
			t.Fatalf("CRLF view %d bytes, W=%d", view.Len(), vsize)
		}
	})
}
