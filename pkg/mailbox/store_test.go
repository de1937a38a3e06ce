package mailbox

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestUTF7(t *testing.T) {
	good := map[string]string{
		"INBOX":              "INBOX",
		"a&b":                "a&-b",
		"Entwürfe":           "Entw&APw-rfe",
		"~peter/mail/台北/日本語": "~peter/mail/&U,BTFw-/&ZeVnLIqe-",
		"😀":                  "&2D3eAA-",
		"":                   "",
	}
	for u, e := range good {
		got, err := EncodeUTF7(u)
		if err != nil || got != e {
			t.Errorf("Encode(%q) = %q, %v; want %q", u, got, err, e)
		}
		back, err := DecodeUTF7(e)
		if err != nil || back != u {
			t.Errorf("Decode(%q) = %q, %v; want %q", e, back, err, u)
		}
	}
	// HOSTILE 43.
	for _, bad := range []string{"&", "&Jjo", "&Jjo!", "&U,BTFw-&ZeVnLIqe-", "&AGE-", "p\xe4\xe4", "&2D0-", "&3gA-", "&AAA", "&-&", "a\tb", "&2D3eAA,-"} {
		if got, err := DecodeUTF7(bad); err == nil {
			t.Errorf("Decode(%q) accepted: %q", bad, got)
		}
	}
	if _, err := EncodeUTF7("\xff"); err == nil {
		t.Error("encoded invalid UTF-8")
	}
}

func TestValidateName(t *testing.T) {
	for _, ok := range []string{"INBOX", "inbox", "Sent", "Archive.2026", "Entwürfe", "a b", "INBOX.x", "é"} {
		if _, err := ValidateName(ok, true); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	long := strings.Repeat("a", maxStorageName+1)
	deep := strings.Repeat("a.", maxNameLevels) + "a"
	// HOSTILE 42.
	for _, bad := range []string{"", "../../etc", "/etc/passwd", "~root/x", "a//b", "./x", "INBOX/..", "a..b", ".a", "a.", "a\x01b", "a\x7fb",
		"e\u0301", "cur", "x.new", "tmp.y", "#news", "\xff", long, deep, "a*", "b%"} {
		if _, err := ValidateName(bad, true); err == nil || !errors.Is(err, ErrBadName) {
			t.Errorf("%q accepted", bad)
		}
	}
	if n, _ := ValidateName("iNbOx", false); n != "INBOX" {
		t.Errorf("INBOX not normalized: %q", n)
	}
	if nameFromDir(".Entw&APw-rfe.2026") != "Entwürfe.2026" || nameFromDir(".bad&") != "" || nameFromDir("..DOVECOT-TRASHED") != "" ||
		nameFromDir(".INBOX") != "" || nameFromDir("cur") != "" || nameFromDir(".a..b") != "" || nameFromDir(".&AGE-") != "" {
		t.Error("nameFromDir")
	}
}

func TestStoreFolders(t *testing.T) {
	s, dir := newStore(t)
	for _, n := range []string{"Sent", "Archive.2026", "Entwürfe", "Projects.a", "Projects.a.b"} {
		if err := s.Create(n, ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Create("Sent", ""); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate create: %v", err)
	}
	if err := s.Create("Stuff", `\Archive`); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{".Sent", ".Archive.2026", ".Entw&APw-rfe", ".Projects.a.b"} {
		for _, sub := range []string{"cur", "new", "tmp", "maildirfolder"} {
			if _, err := os.Stat(filepath.Join(dir, d, sub)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Hostile entries in the root are skipped.
	os.Mkdir(filepath.Join(dir, ".bad&"), 0700)
	os.Symlink("/etc", filepath.Join(dir, ".Evil"))
	os.WriteFile(filepath.Join(dir, ".File"), nil, 0600)
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	var order []string
	for _, mi := range list {
		got[mi.Name] = mi.Attributes
		order = append(order, mi.Name)
	}
	want := []string{"INBOX", "Archive", "Archive.2026", "Entwürfe", "Projects", "Projects.a", "Projects.a.b", "Sent", "Stuff"}
	if !slices.Equal(order, want) {
		t.Fatalf("list %v", order)
	}
	if !slices.Equal(got["Archive"], []string{`\NonExistent`, `\HasChildren`}) ||
		!slices.Equal(got["Sent"], []string{`\HasNoChildren`, `\Sent`}) ||
		!slices.Equal(got["Stuff"], []string{`\HasNoChildren`, `\Archive`}) {
		t.Fatalf("attributes %v", got)
	}
	if _, err := s.Open(".Evil"); err == nil {
		t.Fatal("opened a bad name")
	}
	// Rename with children, special use follows.
	m := mustOpen(t, s, "Projects.a")
	appendMsg(t, m, msg1)
	if err := s.Rename("Projects", "Old"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("rename of a \\NonExistent level: %v", err)
	}
	if err := s.Rename("Projects.a", "Done.x"); err != nil {
		t.Fatal(err)
	}
	if s.Exists("Projects.a") || s.Exists("Projects.a.b") || !s.Exists("Done.x") || !s.Exists("Done.x.b") {
		t.Fatal("rename did not move children")
	}
	if m := mustOpen(t, s, "Done.x"); m.Count() != 1 {
		t.Fatal("message lost in rename")
	}
	s.Rename("Stuff", "Things")
	if s.SpecialUse("Things") != `\Archive` {
		t.Fatal("special use did not follow the rename")
	}
	if err := s.Rename("INBOX", "X"); !errors.Is(err, ErrInbox) {
		t.Fatal(err)
	}
	// Delete via ..DOVECOT-TRASHED; the child stays.
	if err := s.Delete("Done.x"); err != nil {
		t.Fatal(err)
	}
	if s.Exists("Done.x") || !s.Exists("Done.x.b") {
		t.Fatal("delete")
	}
	if _, err := os.Stat(filepath.Join(dir, trashDir)); !os.IsNotExist(err) {
		t.Fatal("trash left")
	}
	if err := s.Delete("INBOX"); !errors.Is(err, ErrInbox) {
		t.Fatal(err)
	}
	if err := s.Delete("Nope"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
}

func TestSubscriptions(t *testing.T) {
	s, dir := newStore(t)
	path := filepath.Join(dir, "subscriptions")
	s.Subscribe("inbox")
	s.Subscribe("Archive.2026")
	s.Subscribe("Entwürfe")
	s.Subscribe("Sent")
	s.Unsubscribe("Sent")
	b, _ := os.ReadFile(path)
	if string(b) != "V\t2\n\nINBOX\nArchive\t2026\nEntw&APw-rfe\n" {
		t.Fatalf("%q", b)
	}
	subs, _ := s.Subscriptions()
	if !slices.Equal(subs, []string{"INBOX", "Archive.2026", "Entwürfe"}) {
		t.Fatalf("%v", subs)
	}
	// A v1 file stays v1; unknown lines are kept.
	os.WriteFile(path, []byte("INBOX\nSent.old\n&bogus\n"), 0600)
	s.Subscribe("Trash")
	b, _ = os.ReadFile(path)
	if string(b) != "INBOX\nSent.old\n&bogus\nTrash\n" {
		t.Fatalf("v1: %q", b)
	}
	subs, _ = s.Subscriptions()
	if !slices.Equal(subs, []string{"INBOX", "Sent.old", "Trash"}) {
		t.Fatalf("%v", subs)
	}
	// Tab escaping (a name posthorn would refuse is still read).
	_, names, _ := parseSubscriptions([]byte("V\t2\n\na\x01tb\tc\n"))
	if names[0] != "a\tb.c" {
		t.Fatalf("%q", names)
	}
}

func TestQuota(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "Maildir")
	s, err := OpenStore(dir, Options{Quota: &QuotaLimits{Bytes: 1000, Count: 3}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m := mustOpen(t, s, "INBOX")
	s.Create("Sent", "")
	sent := mustOpen(t, s, "Sent")
	appendMsg(t, m, "aaaa\n")
	appendMsg(t, sent, "bbbbbbbb\n")
	b, c, err := s.QuotaUsage()
	if err != nil || b != 14 || c != 2 {
		t.Fatalf("usage %d %d %v", b, c, err)
	}
	data, _ := os.ReadFile(filepath.Join(dir, "maildirsize"))
	if !strings.HasPrefix(string(data), "1000S,3C\n") {
		t.Fatalf("maildirsize %q", data)
	}
	appendMsg(t, m, "c\n")
	if _, err := m.Append(strings.NewReader("d\n"), nil, time.Time{}); !errors.Is(err, ErrOverQuota) {
		t.Fatalf("over count: %v", err)
	}
	m.Sync()
	m.Expunge(m.UIDs()[:1], false)
	if b, c, _ := s.QuotaUsage(); b != 11 || c != 2 {
		t.Fatalf("after expunge %d %d", b, c)
	}
	if _, err := m.Append(strings.NewReader(strings.Repeat("x", 1000)), nil, time.Time{}); !errors.Is(err, ErrOverQuota) {
		t.Fatalf("over bytes: %v", err)
	}
	// Other limits in the file, a file over 5120 bytes, a broken file, a
	// missing one: recounted.
	for _, content := range []string{"5S\n14 2\n", "1000S,3C\n" + strings.Repeat("1 0\n", 2000), "1000S,3C\nx y\n", ""} {
		if content == "" {
			os.Remove(filepath.Join(dir, "maildirsize"))
		} else {
			os.WriteFile(filepath.Join(dir, "maildirsize"), []byte(content), 0600)
		}
		if b, c, _ := s.QuotaUsage(); b != 11 || c != 2 {
			t.Fatalf("recount of %.20q: %d %d", content, b, c)
		}
		data, _ := os.ReadFile(filepath.Join(dir, "maildirsize"))
		if string(data) != "1000S,3C\n11 2\n" {
			t.Fatalf("rewritten %q", data)
		}
	}
	if (QuotaLimits{}).line() != "0S" || (QuotaLimits{Count: 5}).line() != "5C" {
		t.Fatal("limit line")
	}
}

func TestWatch(t *testing.T) {
	s, dir := newStore(t)
	m := mustOpen(t, s, "INBOX")
	ch, stop := watchChan(t, m)
	// A delivery into new/ by another program.
	os.WriteFile(filepath.Join(dir, "new", "1700000000.M1P1.host,S=2,W=3"), []byte("x\n"), 0600)
	select {
	case <-ch:
	case <-time.After(time.Second):
		t.Fatal("no notification within a second")
	}
	if c := mustSync(t, m); len(c.New) != 1 {
		t.Fatalf("%+v", c)
	}
	stop()
}

func TestLimits(t *testing.T) {
	s, _ := newStore(t)
	m := mustOpen(t, s, "INBOX")
	uid := appendMsg(t, m, msg1)
	mustSync(t, m)
	if err := m.SetCache(uid, make([]byte, MaxCacheEntry+1)); !errors.Is(err, ErrCacheTooLarge) {
		t.Fatalf("cache entry over the limit: %v", err)
	}
	if err := m.SetCache(uid, []byte("envelope")); err != nil {
		t.Fatal(err)
	}
	if b, ok := m.Cache(uid); !ok || string(b) != "envelope" {
		t.Fatalf("cache %q %v", b, ok)
	}
	if _, _, err := m.SetFlags([]uint32{uid}, FlagsAdd, []string{strings.Repeat("k", MaxKeywordLen+1)}, 0); err == nil {
		t.Fatal("keyword over the length limit")
	}
	if _, _, err := m.SetFlags([]uint32{uid}, FlagsAdd, []string{`\Bogus`}, 0); err == nil {
		t.Fatal("unknown system flag")
	}
	// 26 keywords get letters, more live in the index, beyond MaxKeywords
	// they are refused.
	var kws []string
	for i := range MaxKeywords {
		kws = append(kws, "kw"+string(rune('A'+i/26))+string(rune('a'+i%26)))
	}
	if _, _, err := m.SetFlags([]uint32{uid}, FlagsAdd, kws, 0); err != nil {
		t.Fatal(err)
	}
	msg, _ := m.Message(uid)
	if len(msg.Flags) != len(kws) {
		t.Fatalf("%d flags", len(msg.Flags))
	}
	if _, _, err := m.SetFlags([]uint32{uid}, FlagsAdd, []string{"one-too-many"}, 0); err == nil {
		t.Fatal("keyword over MaxKeywords")
	}
	// Extra keywords survive a reload from the index.
	s2, _ := OpenStore(s.Path(), Options{})
	defer s2.Close()
	m2 := mustOpen(t, s2, "INBOX")
	if msg2, _ := m2.Message(uid); len(msg2.Flags) != len(kws) {
		t.Fatalf("after reload %d flags", len(msg2.Flags))
	}
	if b, ok := m2.Cache(uid); !ok || string(b) != "envelope" {
		t.Fatal("cache not shared")
	}
}

// Odd files in cur/ and new/ (HOSTILE 54) and a cur/ that is a symlink out
// of the Maildir (HOSTILE 53).
func TestHostileMaildir(t *testing.T) {
	s, dir := newStore(t)
	for _, n := range []string{".hidden", "x:3,S", "bad,S=abc", "long" + strings.Repeat("x", 300), "ok.M1P1.host:2,S"} {
		os.WriteFile(filepath.Join(dir, "cur", n), []byte("x\n"), 0600)
	}
	os.Mkdir(filepath.Join(dir, "cur", "adir"), 0700)
	os.Symlink("/etc/passwd", filepath.Join(dir, "cur", "link.M1P1.host:2,"))
	m := mustOpen(t, s, "INBOX")
	if m.Count() != 1 {
		t.Fatalf("%d messages, want the one valid file", m.Count())
	}
	os.Mkdir(filepath.Join(dir, ".Out"), 0700)
	os.Symlink("/etc", filepath.Join(dir, ".Out", "cur"))
	os.Mkdir(filepath.Join(dir, ".Out", "new"), 0700)
	if _, err := s.Open("Out"); err == nil {
		t.Fatal("opened a folder whose cur/ is a symlink")
	}
}
