package mailbox

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// A Maildir as Dovecot leaves it: v3 uidlist with extension fields and an
// unknown header field, keywords, a message in new/, one in cur/ with
// keyword letters and an unknown flag.
func dovecotFixture(t *testing.T) string {
	dir := filepath.Join(t.TempDir(), "Maildir")
	for _, d := range []string{"cur", "new", "tmp"} {
		os.MkdirAll(filepath.Join(dir, d), 0700)
	}
	files := map[string]string{
		"cur/1276528487.M364837P9451.kurkku,S=24,W=26:2,PSab": "Subject: a\n\nfirst\n",
		"cur/1276528488.M1P9451.kurkku,S=24,W=26:2,":          "Subject: b\n\nsecond\n",
		"new/1276528490.M5P9999.kurkku,S=24,W=26":             "Subject: c\n\nthird\n",
	}
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(c), 0600); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, "dovecot-keywords"), []byte("0 $Junk\n1 NonJunk\n"), 0600)
	os.WriteFile(filepath.Join(dir, "dovecot-uidlist"), []byte(uidlistFixture), 0600)
	return dir
}

const uidlistFixture = "3 V1276528400 N7 G1d1d6b1a5f0c2e4b9a8f7e6d5c4b3a29 Xfuture\n" +
	"3 P0000000301276528400 O1 :1276528487.M364837P9451.kurkku,S=24,W=26\n" +
	"5 G5f0c2e4b9a8f7e6d5c4b3a291d1d6b1a :1276528488.M1P9451.kurkku,S=24,W=26\n" +
	"6 :1276528489.M9P9451.kurkku,S=24,W=26\n"

func TestDovecotMaildirInterop(t *testing.T) {
	dir := dovecotFixture(t)
	s, err := OpenStore(dir, Options{Hostname: "posthorn.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m := mustOpen(t, s, "inbox")
	if m.UIDValidity() != 1276528400 || m.MailboxGUID() != "1d1d6b1a5f0c2e4b9a8f7e6d5c4b3a29" {
		t.Fatalf("uidvalidity %d guid %s", m.UIDValidity(), m.MailboxGUID())
	}
	if got := m.UIDs(); !slices.Equal(got, []uint32{3, 5, 7}) {
		t.Fatalf("UIDs %v (the new/ file takes N=7)", got)
	}
	if m.UIDNext() != 8 {
		t.Fatalf("UIDNEXT %d", m.UIDNext())
	}
	m3, _ := m.Message(3)
	if !slices.Equal(m3.Flags, []string{`\Seen`, "$Junk", "NonJunk"}) || m3.Size != 26 {
		t.Fatalf("message 3: %+v", m3)
	}
	// The uidlist kept its lines byte for byte; the new UID was appended.
	ul, _ := os.ReadFile(filepath.Join(dir, "dovecot-uidlist"))
	if !strings.HasPrefix(string(ul), uidlistFixture) || !strings.HasSuffix(string(ul), "7 :1276528490.M5P9999.kurkku,S=24,W=26\n") {
		t.Fatalf("uidlist:\n%s", ul)
	}
	// new/ was emptied into cur/ with ":2,".
	if n := ls(t, filepath.Join(dir, "new")); len(n) != 0 {
		t.Fatalf("new/ %v", n)
	}
	if _, err := os.Stat(filepath.Join(dir, "cur", "1276528490.M5P9999.kurkku,S=24,W=26:2,")); err != nil {
		t.Fatal(err)
	}
	// Flag change keeps the unknown flag P in place and keyword letters.
	if _, _, err := m.SetFlags([]uint32{3}, FlagsRemove, []string{"NonJunk"}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "cur", "1276528487.M364837P9451.kurkku,S=24,W=26:2,PSa")); err != nil {
		t.Fatalf("flag rename: %v %v", err, ls(t, filepath.Join(dir, "cur")))
	}
	// A third keyword takes letter c.
	if _, _, err := m.SetFlags([]uint32{5}, FlagsAdd, []string{"$Forwarded"}, 0); err != nil {
		t.Fatal(err)
	}
	kw, _ := os.ReadFile(filepath.Join(dir, "dovecot-keywords"))
	if string(kw) != "0 $Junk\n1 NonJunk\n2 $Forwarded\n" {
		t.Fatalf("keywords %q", kw)
	}
	// Expunging enough forces a rewrite, which keeps the unknown header
	// field and the P/O/G fields of surviving records, and drops gone ones.
	if _, err := m.Expunge([]uint32{7}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Append(strings.NewReader("x\n"), nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	ul, _ = os.ReadFile(filepath.Join(dir, "dovecot-uidlist"))
	lines := strings.Split(strings.TrimSuffix(string(ul), "\n"), "\n")
	if lines[0] != "3 V1276528400 N9 G1d1d6b1a5f0c2e4b9a8f7e6d5c4b3a29 Xfuture" ||
		lines[1] != "3 P0000000301276528400 O1 :1276528487.M364837P9451.kurkku,S=24,W=26" ||
		lines[2] != "5 G5f0c2e4b9a8f7e6d5c4b3a291d1d6b1a :1276528488.M1P9451.kurkku,S=24,W=26" ||
		!strings.HasPrefix(lines[3], "8 :") || len(lines) != 4 {
		t.Fatalf("rewritten uidlist:\n%s", ul)
	}
}

func TestUidlistV1(t *testing.T) {
	u, err := parseUidlist([]byte("1 1000 5\n1 a.b.c:2,S\n3 d.e.f\n"))
	if err != nil {
		t.Fatal(err)
	}
	if u.uidValidity != 1000 || u.nextUID != 5 || len(u.recs) != 2 || u.recs[0].key != "a.b.c" {
		t.Fatalf("%+v", u)
	}
	u.guid = "00000000000000000000000000000001"
	if got := string(u.marshal()); got != "3 V1000 N5 G00000000000000000000000000000001\n1 :a.b.c\n3 :d.e.f\n" {
		t.Fatalf("%q", got)
	}
	for _, bad := range []string{"", "9 V1\n", "3 V0 N1\n", "3 V1 N1\n2 :a\n1 :b\n", "3 V1 N1\nx :a\n", "3 V1 N1\n1 :a/b\n", "3 V1 N1 Gzz\n", "3 V1 N1\n1 S1\n"} {
		if _, err := parseUidlist([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
	// Duplicate file: the later UID wins.
	u, _ = parseUidlist([]byte("3 V1 N1\n1 :a\n2 :b\n3 :a\n"))
	if len(u.recs) != 2 || u.recs[1].uid != 3 || u.recs[0].key != "b" {
		t.Fatalf("dup: %+v", u.recs)
	}
	// A partial last line is left for later.
	u, _ = parseUidlist([]byte("3 V1 N1\n1 :a\n2 :b"))
	if len(u.recs) != 1 || u.parsed != int64(len("3 V1 N1\n1 :a\n")) {
		t.Fatalf("partial: %+v", u)
	}
}

func TestUidlistTooLarge(t *testing.T) {
	old := maxUidlistSize
	maxUidlistSize = 64
	defer func() { maxUidlistSize = old }()
	if _, err := parseUidlist([]byte("3 V1 N1\n" + strings.Repeat("1 :a\n", 20))); err == nil {
		t.Fatal("accepted a uidlist over the limit")
	}
	if _, err := parseUidlist([]byte("3 V1 N1\n1 :" + strings.Repeat("a", maxUidlistLine) + "\n")); err == nil {
		t.Fatal("accepted an overlong line")
	}
}

// Several sessions of two stores (two processes) append at once: every
// message gets its own UID and every session ends up seeing all of them.
func TestConcurrentAppend(t *testing.T) {
	s1, dir := newStore(t)
	s2, err := OpenStore(dir, Options{Hostname: "other.example"})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	const workers, each = 6, 15
	var wg sync.WaitGroup
	uids := make(chan uint32, workers*each)
	for w := range workers {
		st := s1
		if w%2 == 1 {
			st = s2
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			m, err := st.Open("INBOX")
			if err != nil {
				t.Error(err)
				return
			}
			for i := range each {
				flags := []string{}
				if i%3 == 0 {
					flags = []string{`\Seen`}
				}
				uid, err := m.Append(strings.NewReader("Subject: x\n\nbody\n"), flags, time.Time{})
				if err != nil {
					t.Error(err)
					return
				}
				uids <- uid
				if i%5 == 0 {
					if _, err := m.Sync(); err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	wg.Wait()
	close(uids)
	seen := map[uint32]bool{}
	for u := range uids {
		if seen[u] {
			t.Fatalf("UID %d given twice", u)
		}
		seen[u] = true
	}
	for _, st := range []*Store{s1, s2} {
		m := mustOpen(t, st, "INBOX")
		if m.Count() != workers*each {
			t.Fatalf("a session sees %d of %d messages", m.Count(), workers*each)
		}
		for _, u := range m.UIDs() {
			if !seen[u] {
				t.Fatalf("unexpected UID %d", u)
			}
		}
	}
	if n := len(ls(t, filepath.Join(dir, "cur"))) + len(ls(t, filepath.Join(dir, "new"))); n != workers*each {
		t.Fatalf("%d files", n)
	}
}

// Flags renamed by another program (Dovecot, a MUA) are noticed with a new
// modseq; a file removed is an expunge.
func TestExternalChanges(t *testing.T) {
	s, dir := newStore(t)
	m := mustOpen(t, s, "INBOX")
	appendMsg(t, m, msg1, `\Seen`)
	appendMsg(t, m, msg1, `\Seen`)
	mustSync(t, m)
	before := m.HighestModSeq()
	cur := ls(t, filepath.Join(dir, "cur"))
	slices.Sort(cur)
	time.Sleep(10 * time.Millisecond)
	if err := os.Rename(filepath.Join(dir, "cur", cur[0]), filepath.Join(dir, "cur", strings.TrimSuffix(cur[0], "S")+"FS")); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, "cur", cur[1]))
	c := mustSync(t, m)
	if !slices.Equal(c.Flags, []uint32{1}) || !slices.Equal(c.Expunged, []uint32{2}) {
		t.Fatalf("changes %+v", c)
	}
	got, _ := m.Message(1)
	if !slices.Equal(got.Flags, []string{`\Flagged`, `\Seen`}) || got.ModSeq <= before {
		t.Fatalf("after external rename: %+v (before %d)", got, before)
	}
	// Open of a file renamed behind our back finds it again.
	cur = ls(t, filepath.Join(dir, "cur"))
	os.Rename(filepath.Join(dir, "cur", cur[0]), filepath.Join(dir, "cur", strings.TrimSuffix(cur[0], "FS")+"S"))
	f, err := m.Open(1)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
}

func TestPOP3UIDL(t *testing.T) {
	dir := dovecotFixture(t)
	s, _ := OpenStore(dir, Options{})
	defer s.Close()
	m := mustOpen(t, s, "INBOX")
	if got := m.POP3UIDL(3); got != "0000000301276528400" || m.POP3Order(3) != 1 {
		t.Fatalf("stored UIDL %q order %d", got, m.POP3Order(3))
	}
	if got := m.POP3UIDL(5); got != "000000054c164710" {
		t.Fatalf("default UIDL %q", got)
	}
}
