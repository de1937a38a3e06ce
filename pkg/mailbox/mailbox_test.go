package mailbox

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func newStore(t testing.TB) (*Store, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "Maildir")
	s, err := OpenStore(dir, Options{Hostname: "test.example", Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	s.noFsync = true
	t.Cleanup(func() { s.Close() })
	return s, dir
}

// reopen opens another store on the Maildir at dir, as another process
// would, closed when the test ends.
func reopen(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := OpenStore(dir, Options{Hostname: "test.example", Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustOpen(t testing.TB, s *Store, name string) *Mailbox {
	t.Helper()
	m, err := s.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func mustSync(t testing.TB, m *Mailbox) Changes {
	t.Helper()
	c, err := m.Sync()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func appendMsg(t testing.TB, m *Mailbox, body string, flags ...string) uint32 {
	t.Helper()
	uid, err := m.Append(strings.NewReader(body), flags, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	return uid
}

const msg1 = "From: a@example.org\r\nSubject: hi\r\n\r\nbody\r\n"

func TestAppendSyncFlagsExpunge(t *testing.T) {
	s, dir := newStore(t)
	m, err := s.Select("INBOX", RecentTake)
	if err != nil {
		t.Fatal(err)
	}
	if m.Count() != 0 {
		t.Fatal("new INBOX not empty")
	}
	uv := m.UIDValidity()
	if uv == 0 {
		t.Fatal("no UIDVALIDITY")
	}
	u1 := appendMsg(t, m, msg1)
	u2 := appendMsg(t, m, msg1, `\Seen`, "$Junk")
	if u1 != 1 || u2 != 2 {
		t.Fatalf("UIDs %d %d", u1, u2)
	}
	c := mustSync(t, m)
	if !slices.Equal(c.New, []uint32{1, 2}) || !slices.Equal(c.Recent, []uint32{1, 2}) {
		t.Fatalf("changes %+v", c)
	}
	msg, ok := m.Message(2)
	if !ok || !slices.Equal(msg.Flags, []string{`\Seen`, "$Junk"}) {
		t.Fatalf("message 2: %+v", msg)
	}
	if msg.Size != int64(len(msg1)) || !msg.InternalDate.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Fatalf("size %d date %v", msg.Size, msg.InternalDate)
	}
	// Stored with LF, served with CRLF.
	fl, err := m.Open(2)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(fl)
	fl.Seek(0, 0)
	crlf, _ := io.ReadAll(CRLFReader(fl))
	fl.Close()
	if string(raw) != strings.ReplaceAll(msg1, "\r\n", "\n") || string(crlf) != msg1 {
		t.Fatalf("content %q / %q", raw, crlf)
	}
	// No flags: new/, as Dovecot saves it; the next scan moves it to cur/
	// with ":2,".
	if n := ls(t, filepath.Join(dir, "new")); len(n) != 1 || strings.Contains(n[0], ":") {
		t.Fatalf("new/: %v", n)
	}
	if err := m.f.refresh(true); err != nil {
		t.Fatal(err)
	}
	names := ls(t, filepath.Join(dir, "cur"))
	if len(names) != 2 || !strings.HasSuffix(names[0], ":2,") && !strings.HasSuffix(names[1], ":2,") {
		t.Fatalf("cur/: %v", names)
	}
	kw, _ := os.ReadFile(filepath.Join(dir, "dovecot-keywords"))
	if string(kw) != "0 $Junk\n" {
		t.Fatalf("dovecot-keywords %q", kw)
	}
	hm := m.HighestModSeq()
	up, mod, err := m.SetFlags([]uint32{1, 2}, FlagsAdd, []string{`\Flagged`, `\Answered`}, 0)
	if err != nil || len(up) != 2 || len(mod) != 0 {
		t.Fatalf("SetFlags: %v %v %v", up, mod, err)
	}
	if up[0].ModSeq <= hm || m.HighestModSeq() != up[0].ModSeq {
		t.Fatalf("modseq %d after %d", up[0].ModSeq, hm)
	}
	if !slices.Equal(up[1].Flags, []string{`\Flagged`, `\Answered`, `\Seen`, "$Junk"}) {
		t.Fatalf("flags %v", up[1].Flags)
	}
	if !slices.ContainsFunc(ls(t, filepath.Join(dir, "cur")), func(n string) bool { return strings.HasSuffix(n, ":2,FRSa") }) {
		t.Fatalf("no FRSa file: %v", ls(t, filepath.Join(dir, "cur")))
	}
	// UNCHANGEDSINCE
	_, mod, err = m.SetFlags([]uint32{1}, FlagsRemove, []string{`\Flagged`}, hm)
	if err != nil || !slices.Equal(mod, []uint32{1}) {
		t.Fatalf("UNCHANGEDSINCE: %v %v", mod, err)
	}
	if c := mustSync(t, m); len(c.Flags) != 0 {
		t.Fatalf("own flag changes reported again: %+v", c)
	}
	// Another session sees the changes.
	m2 := mustOpen(t, s, "INBOX")
	if m2.Count() != 2 {
		t.Fatal("second session")
	}
	m.SetFlags([]uint32{1}, FlagsAdd, []string{`\Deleted`}, 0)
	if c := mustSync(t, m2); !slices.Equal(c.Flags, []uint32{1}) {
		t.Fatalf("second session changes %+v", c)
	}
	gone, err := m.Expunge(m.DeletedUIDs(), true)
	if err != nil || !slices.Equal(gone, []uint32{1}) {
		t.Fatalf("expunge %v %v", gone, err)
	}
	if c := mustSync(t, m2); !slices.Equal(c.Expunged, []uint32{1}) {
		t.Fatalf("expunge not seen: %+v", c)
	}
	if v, exact := m2.VanishedSince(hm); !slices.Equal(v, []uint32{1}) || !exact {
		t.Fatalf("vanished %v %v", v, exact)
	}
	if _, err := m.Open(1); err != ErrExpunged {
		t.Fatalf("open expunged: %v", err)
	}
	// A fresh store (another process) reads the same state from the index.
	s2, err := OpenStore(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	m3 := mustOpen(t, s2, "INBOX")
	if m3.UIDValidity() != uv || m3.Count() != 1 || m3.HighestModSeq() != m.HighestModSeq() || m3.UIDNext() != 3 {
		t.Fatalf("other process: uv %d count %d hms %d/%d next %d", m3.UIDValidity(), m3.Count(), m3.HighestModSeq(), m.HighestModSeq(), m3.UIDNext())
	}
	got, _ := m3.Message(2)
	if !slices.Equal(got.Flags, up[1].Flags) || got.ModSeq != up[1].ModSeq {
		t.Fatalf("other process sees %+v", got)
	}
	ul, _ := os.ReadFile(filepath.Join(dir, "dovecot-uidlist"))
	if !regexp.MustCompile(`^3 V\d+ N\d+ G[0-9a-f]{32}\n1 :\S+,S=\d+,W=\d+\n2 :\S+,S=\d+,W=\d+\n$`).Match(ul) {
		t.Fatalf("uidlist:\n%s", ul)
	}
}

func ls(t testing.TB, dir string) []string {
	t.Helper()
	d, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range d {
		out = append(out, e.Name())
	}
	return out
}

var _ = bytes.Equal
var _ = context.Background
var _ = fmt.Sprint
var _ sync.Mutex

// A scan reads no file's mtime when the names give the sizes; INTERNALDATE
// is the mtime all the same, read on first use, and a file renamed behind
// the folder's back answers with the delivery time in its name.
func TestInternalDateReadOnFirstUse(t *testing.T) {
	s, dir := newStore(t)
	mustOpen(t, s, "INBOX") // creates the Maildir
	body := []byte("Subject: x\n\nhi\n")
	when := time.Date(2025, 6, 7, 8, 9, 10, 0, time.UTC)
	var names []string
	for i, secs := range []int64{1700000000, 1700000100} {
		name := fmt.Sprintf("%d.M%dP9.host,S=%d,W=%d:2,S", secs, i, len(body), len(body)+2)
		p := filepath.Join(dir, "cur", name)
		if err := os.WriteFile(p, body, 0600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, when, when); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	s2 := reopen(t, dir)
	m := mustOpen(t, s2, "INBOX")
	if m.Count() != 2 {
		t.Fatalf("%d messages", m.Count())
	}
	msg, _ := m.Message(1)
	if msg.Size != int64(len(body)+2) {
		t.Fatalf("size %d", msg.Size)
	}
	if got := m.InternalDate(1); !got.Equal(when) {
		t.Fatalf("INTERNALDATE %v, want %v", got, when)
	}
	if msg, _ := m.Message(1); !msg.InternalDate.Equal(when) {
		t.Fatalf("INTERNALDATE once read %v, want %v", msg.InternalDate, when)
	}
	// Another process changes the second message's flags: the name this
	// view knows is gone until the next Sync.
	if err := os.Rename(filepath.Join(dir, "cur", names[1]), filepath.Join(dir, "cur", strings.TrimSuffix(names[1], "S")+"FS")); err != nil {
		t.Fatal(err)
	}
	if got := m.InternalDate(2); !got.Equal(time.Unix(1700000100, 0)) {
		t.Fatalf("INTERNALDATE of a renamed file %v, want the time in its name", got)
	}
	mustSync(t, m)
	if got := m.InternalDate(2); !got.Equal(when) {
		t.Fatalf("INTERNALDATE after Sync %v, want %v", got, when)
	}
	if got := m.InternalDate(99); !got.IsZero() {
		t.Fatalf("INTERNALDATE of no message %v", got)
	}
}

// A FIFO or a folder under a message's name is listed without a stat, so
// opening it is where it is refused: at once, never blocking on the FIFO.
func TestOpenRefusesFifoAndFolderUnderMessageNames(t *testing.T) {
	s, dir := newStore(t)
	mustOpen(t, s, "INBOX")
	names := []string{"1700000000.M1P9.host,S=5,W=6:2,", "1700000001.M1P9.host,S=5,W=6:2,"}
	if err := syscall.Mkfifo(filepath.Join(dir, "cur", names[0]), 0600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "cur", names[1]), 0700); err != nil {
		t.Fatal(err)
	}
	s2 := reopen(t, dir)
	m := mustOpen(t, s2, "INBOX")
	if m.Count() != 2 {
		t.Fatalf("%d messages listed, want the 2 names", m.Count())
	}
	for uid := uint32(1); uid <= 2; uid++ {
		done := make(chan error, 1)
		go func() {
			f, err := m.Open(uid)
			if err == nil {
				f.Close()
			}
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil {
				t.Fatalf("UID %d: a non-file opened as a message", uid)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("UID %d: open blocked", uid)
		}
	}
}

// A large folder seen for the first time gets its UIDs in delivery order,
// as Dovecot assigns them, however the directory lists the files (the
// sort runs in two halves above a size, merged).
func TestFirstScanOfLargeFolderAssignsUIDsInDeliveryOrder(t *testing.T) {
	s, dir := newStore(t)
	mustOpen(t, s, "INBOX")
	const n = 16500
	perm := rand.Perm(n)
	for _, i := range perm {
		name := fmt.Sprintf("%d.M%dP1.h,S=1,W=2:2,", 1700000000+i/1000, i%1000)
		if err := os.WriteFile(filepath.Join(dir, "cur", name), []byte("x"), 0600); err != nil {
			t.Fatal(err)
		}
	}
	s2 := reopen(t, dir)
	if m := mustOpen(t, s2, "INBOX"); m.Count() != n {
		t.Fatalf("%d messages", m.Count())
	}
	b, err := os.ReadFile(filepath.Join(dir, uidlistFile))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")[1:]
	if len(lines) != n {
		t.Fatalf("%d uidlist records", len(lines))
	}
	for i, l := range lines {
		want := fmt.Sprintf("%d :%d.M%dP1.h,S=1,W=2", i+1, 1700000000+i/1000, i%1000)
		if l != want {
			t.Fatalf("record %d is %q, want %q", i, l, want)
		}
	}
}
