package spool

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func newSpool(t *testing.T) *Spool {
	t.Helper()
	dir := t.TempDir()
	if err := Prepare(dir, -1, -1); err != nil {
		t.Fatal(err)
	}
	return Open(dir)
}

func write(t *testing.T, s *Spool, env *Envelope, content string) string {
	t.Helper()
	w, err := s.Create(env)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, content)
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	return w.ID()
}

func TestRoundTrip(t *testing.T) {
	s := newSpool(t)
	env := &Envelope{
		Sender: "",
		Attrs:  map[string]string{"helo": "evil\r\nrcpt injected", "client": "unknown[127.0.0.1]"},
		Rcpts: []Recipient{{Addr: "alice@example.test"},
			{Addr: `"odd user"@example.test`, Params: map[string]string{"ORCPT": "rfc822;a%0D%0Ab"}}},
	}
	content := "Subject: hi\n\nbody with % and spaces\x00 and 8bit \xff\n"
	id := write(t, s, env, content)
	if !ValidID(id) {
		t.Fatalf("queue ID %q is not valid", id)
	}
	qf, err := s.OpenFile(Incoming, id)
	if err != nil {
		t.Fatal(err)
	}
	defer qf.Close()
	if qf.Sender != "" || qf.Attrs["helo"] != "evil\r\nrcpt injected" || len(qf.Rcpts) != 2 {
		t.Fatalf("envelope read back wrong: %+v", qf.Envelope)
	}
	if qf.Rcpts[1].Addr != `"odd user"@example.test` || qf.Rcpts[1].Params["ORCPT"] != "rfc822;a%0D%0Ab" {
		t.Fatalf("recipient read back wrong: %+v", qf.Rcpts[1])
	}
	got, _ := io.ReadAll(qf.Content())
	if string(got) != content {
		t.Fatalf("content %q, want %q", got, content)
	}
	if at, _ := IDTime(id); !qf.Arrival.Equal(at) {
		t.Fatalf("arrival %v, id time %v", qf.Arrival, at)
	}
}

func TestRecordsSurviveReopenAndTornTail(t *testing.T) {
	s := newSpool(t)
	id := write(t, s, &Envelope{Sender: "a@b", Rcpts: []Recipient{{Addr: "x@y"}, {Addr: "z@y"}}}, "m\n")
	qf, err := s.OpenFile(Incoming, id)
	if err != nil {
		t.Fatal(err)
	}
	if err := qf.Record(Result{Index: 0, Status: StatusDeferred, DSN: "4.2.0", Reason: "mailbox busy now"}); err != nil {
		t.Fatal(err)
	}
	if err := qf.Record(Result{Index: 0, Status: StatusSent, DSN: "2.0.0", Reason: "delivered"}); err != nil {
		t.Fatal(err)
	}
	qf.Close()
	// A crash in the middle of an append leaves a line without newline.
	f, _ := os.OpenFile(s.Path(Incoming, id), os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString("done 1 sent 17")
	f.Close()
	qf, err = s.OpenFile(Incoming, id)
	if err != nil {
		t.Fatal(err)
	}
	if qf.Rcpts[0].Status != StatusSent || qf.Rcpts[0].Reason != "delivered" {
		t.Fatalf("rcpt 0: %+v", qf.Rcpts[0])
	}
	if qf.Rcpts[1].Status != StatusPending {
		t.Fatalf("torn record counted: %+v", qf.Rcpts[1])
	}
	if p := qf.Pending(); len(p) != 1 || p[0] != 1 {
		t.Fatalf("pending %v", p)
	}
	if err := qf.Record(Result{Index: 1, Status: StatusBounced, DSN: "5.1.1", Reason: "no such user"}); err != nil {
		t.Fatal(err)
	}
	qf.Close()
	env, _, err := ReadEnvelope(s.Path(Incoming, id))
	if err != nil || env.Rcpts[1].Status != StatusBounced || env.Rcpts[1].Reason != "no such user" {
		t.Fatalf("after torn tail and new record: %v %+v", err, env)
	}
}

func TestIncompleteAndCorruptFiles(t *testing.T) {
	s := newSpool(t)
	w, err := s.Create(&Envelope{Rcpts: []Recipient{{Addr: "x@y"}}})
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "partial")
	w.bw.Flush()
	if _, err := s.OpenFile(Incoming, w.ID()); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("open of a file being written: %v", err)
	}
	list, _ := s.List(Incoming)
	if len(list) != 1 || list[0].Complete {
		t.Fatalf("list shows %+v", list)
	}
	w.Abort()
	if list, _ := s.List(Incoming); len(list) != 0 {
		t.Fatalf("aborted file left: %+v", list)
	}
	for name, data := range map[string]string{
		"garbage":     "hello\n",
		"truncated":   "posthorn-queue 1\ntime 1\nfrom %\nrcpt a\ncontent 00000000000000000100\nshort",
		"norcpt":      "posthorn-queue 1\ntime 1\nfrom %\ncontent 00000000000000000001\nx",
		"badescape":   "posthorn-queue 1\ntime 1\nfrom %4\nrcpt a\ncontent 00000000000000000001\nx",
		"longrecord":  "posthorn-queue 1\ntime 1\nfrom " + strings.Repeat("a", 100000) + "\n",
		"unknownrec":  "posthorn-queue 1\nzzz 1\n",
		"placeholder": "posthorn-queue 1\ntime 1\nfrom %\nrcpt a\ncontent 00000000000000000000\n",
	} {
		id := NewID()
		os.WriteFile(s.Path(Active, id), []byte(data), 0700)
		if _, err := s.OpenFile(Active, id); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: got %v, want ErrCorrupt", name, err)
		}
	}
}

func TestIDsUniqueAndSorted(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]bool{}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			prev := ""
			for i := 0; i < 2000; i++ {
				id := NewID()
				if id <= prev {
					t.Errorf("ID %s not after %s", id, prev)
				}
				prev = id
				mu.Lock()
				if seen[id] {
					t.Errorf("duplicate ID %s", id)
				}
				seen[id] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, bad := range []string{"", "../etc/passw", "0123456789abc", "0123456789ABCD", "0123456789AB/"} {
		if ValidID(bad) {
			t.Errorf("ValidID(%q) = true", bad)
		}
	}
	if _, err := newSpool(t).OpenFile(Active, "../../etc/pas"); err == nil {
		t.Error("OpenFile accepted a path as ID")
	}
}

func TestConcurrentCommits(t *testing.T) {
	s := newSpool(t)
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w, err := s.Create(&Envelope{Sender: "s@x", Rcpts: []Recipient{{Addr: "r@x"}}})
			if err != nil {
				t.Error(err)
				return
			}
			w.Write(bytes.Repeat([]byte("line\n"), 1000))
			if err := w.Commit(); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	list, _ := s.List(Incoming)
	if len(list) != 50 {
		t.Fatalf("%d files, want 50", len(list))
	}
	for _, e := range list {
		if !e.Complete {
			t.Fatalf("%s not marked complete", e.ID)
		}
	}
	if err := s.Move(list[0].ID, Incoming, Deferred); err != nil {
		t.Fatal(err)
	}
	next := time.Now().Add(time.Hour).Truncate(time.Second)
	s.SetNextAttempt(Deferred, list[0].ID, next)
	d, _ := s.List(Deferred)
	if len(d) != 1 || !d[0].ModTime.Equal(next) {
		t.Fatalf("deferred list %+v", d)
	}
}

func FuzzParse(f *testing.F) {
	s := Open(f.TempDir())
	_ = s
	f.Add([]byte("posthorn-queue 1\ntime 1\nfrom a@b\nattr helo x\nrcpt c@d NOTIFY=NEVER\ncontent 00000000000000000002\nx\ndone 0 sent 5 2.0.0 ok\n"))
	f.Add([]byte("posthorn-queue 1\ntime 1\nfrom %\nrcpt c@d\ncontent 00000000000000000001\nx"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := parse(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		if p.contentOffset+p.contentSize > int64(len(data)) || p.validEnd > int64(len(data)) {
			t.Fatalf("offsets beyond the data: %+v", p)
		}
		// What parses re-encodes to a header that parses the same way.
		hdr, off := encodeHeader(&p.env)
		copy(hdr[off:], []byte("00000000000000000001"))
		q, err := parse(bytes.NewReader(append(hdr, 'x')), int64(len(hdr)+1))
		if err != nil || q.env.Sender != p.env.Sender || len(q.env.Rcpts) != len(p.env.Rcpts) {
			t.Fatalf("re-encoded header differs: %v", err)
		}
	})
}

func TestRemoveAbandoned(t *testing.T) {
	s := newSpool(t)
	w, err := s.Create(&Envelope{Rcpts: []Recipient{{Addr: "x@y"}}})
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "half a message")
	old := time.Now().Add(-time.Minute)
	os.Chtimes(s.Path(Incoming, w.ID()), old, old)
	if s.RemoveAbandoned(w.ID()) {
		t.Fatal("removed a file whose writer is alive")
	}
	// The writer dies: its descriptor (and lock) go away, the file stays.
	w.f.Close()
	w.done = true
	os.Chtimes(s.Path(Incoming, w.ID()), time.Now(), time.Now())
	if s.RemoveAbandoned(w.ID()) {
		t.Fatal("removed a file younger than the grace period")
	}
	os.Chtimes(s.Path(Incoming, w.ID()), old, old)
	if !s.RemoveAbandoned(w.ID()) {
		t.Fatal("abandoned file not removed")
	}
	// A complete file is never removed this way.
	id := write(t, s, &Envelope{Rcpts: []Recipient{{Addr: "x@y"}}}, "m\n")
	os.Chtimes(s.Path(Incoming, id), old, old)
	if s.RemoveAbandoned(id) {
		t.Fatal("removed a complete queue file")
	}
}

func TestPrepareModes(t *testing.T) {
	dir := t.TempDir()
	if err := Prepare(dir, -1, -1); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]os.FileMode{Incoming: 0700 | os.ModeDir, Private: 0700 | os.ModeDir,
		Maildrop: 0733 | os.ModeDir | os.ModeSticky} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode() != want {
			t.Errorf("%s has mode %v, want %v", name, st.Mode(), want)
		}
	}
}

func TestFormatIDIsFixedWidthUpperHex(t *testing.T) {
	for _, usec := range []int64{0, 1, 999999, 1000000, 1764213000123456, 0xFFFFFFFF*1e6 + 999999} {
		got, want := FormatID(usec), fmt.Sprintf("%08X%05X", usec/1e6, usec%1e6)
		if got != want || !ValidID(got) {
			t.Fatalf("FormatID(%d) = %q, want %q", usec, got, want)
		}
		if tm, ok := IDTime(got); !ok || tm.UnixMicro() != usec {
			t.Fatalf("IDTime(%q) = %v", got, tm)
		}
	}
}

func FuzzEscape(f *testing.F) {
	for _, s := range []string{"", "%", "a b", "user@example.test", "\x00\xff%41", "ORCPT=rfc822;x+2By@z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e := Escape(s)
		for i := 0; i < len(e); i++ {
			if c := e[i]; c <= 0x20 || c >= 0x7f {
				t.Fatalf("Escape(%q) = %q holds %#x", s, e, c)
			}
		}
		back, err := Unescape(e)
		if err != nil || back != s {
			t.Fatalf("Unescape(Escape(%q)) = %q, %v", s, back, err)
		}
	})
}

// A queue file is never moved over another: the second of two files with
// one ID (the clock stepped back) stays where it was, and both survive.
func TestMoveNeverReplacesAQueueFile(t *testing.T) {
	s := newSpool(t)
	const id = "6B0902DF76B24"
	for q, body := range map[string]string{Incoming: "new", Deferred: "old"} {
		if err := os.WriteFile(s.Path(q, id), []byte(body), 0700); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Move(id, Incoming, Deferred); err == nil || !errors.Is(err, os.ErrExist) {
		t.Fatalf("move over a queued file: %v", err)
	}
	for q, want := range map[string]string{Incoming: "new", Deferred: "old"} {
		if b, err := os.ReadFile(s.Path(q, id)); err != nil || string(b) != want {
			t.Fatalf("%s/%s: %q %v", q, id, b, err)
		}
	}
	if err := s.Move(id, Incoming, Active); err != nil {
		t.Fatal(err)
	}
	if err := s.Move(id, Incoming, Active); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("move of a file gone: %v", err)
	}
}
