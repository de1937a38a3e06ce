package mailbox

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// buildBig writes an n-message Maildir as Dovecot leaves it: small files in
// cur/ named with S= and W= and flags, and a dovecot-uidlist for them.
func buildBig(b *testing.B, n int) string {
	dir := filepath.Join(b.TempDir(), "Maildir")
	for _, d := range []string{"cur", "new", "tmp"} {
		os.MkdirAll(filepath.Join(dir, d), 0700)
	}
	body := []byte("From: a@example.org\nSubject: test\n\nhello\n")
	ul := []byte("3 V1700000000 N" + strconv.Itoa(n+1) + " G0123456789abcdef0123456789abcdef\n")
	for i := range n {
		base := fmt.Sprintf("%d.M%dP1.bench,S=%d,W=%d", 1700000000+i/1000, i%1000, len(body), len(body)+4)
		flags := ":2,S"
		if i%7 == 0 {
			flags = ":2,FS"
		}
		if err := os.WriteFile(filepath.Join(dir, "cur", base+flags), body, 0600); err != nil {
			b.Fatal(err)
		}
		ul = append(ul, strconv.Itoa(i+1)+" :"+base+"\n"...)
	}
	os.WriteFile(filepath.Join(dir, uidlistFile), ul, 0600)
	time.Sleep(1100 * time.Millisecond) // let the directory mtimes age (syncSecs)
	return dir
}

func openBig(b *testing.B, dir string, n int) {
	s, err := OpenStore(dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	m, err := s.Open("INBOX")
	if err != nil {
		b.Fatal(err)
	}
	if m.Count() != n {
		b.Fatalf("%d messages", m.Count())
	}
	s.Close()
}

// BenchmarkSelect100k times Open+Sync of a 100,000-message folder: cold
// (no posthorn.index: every name parsed and every file stat'ed for its
// INTERNALDATE) and warm (index up to date: no directory scan).
func BenchmarkSelect100k(b *testing.B) {
	const n = 100000
	dir := buildBig(b, n)
	b.Run("cold", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			os.Remove(filepath.Join(dir, indexFile))
			b.StartTimer()
			openBig(b, dir, n)
		}
	})
	// A Maildir nobody indexed: UIDs assigned and dovecot-uidlist written too.
	b.Run("cold-no-uidlist", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			os.Remove(filepath.Join(dir, indexFile))
			os.Remove(filepath.Join(dir, uidlistFile))
			b.StartTimer()
			openBig(b, dir, n)
		}
	})
	openBig(b, dir, n)
	b.Run("warm", func(b *testing.B) {
		for b.Loop() {
			openBig(b, dir, n)
		}
	})
	b.Run("sync-unchanged", func(b *testing.B) {
		s, _ := OpenStore(dir, Options{})
		defer s.Close()
		m, _ := s.Open("INBOX")
		for b.Loop() {
			if _, err := m.Sync(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkSelectAgain100k times what a second IMAP session of the same
// user costs: Select of a folder this process already has up to date.
func BenchmarkSelectAgain100k(b *testing.B) {
	const n = 100000
	dir := buildBig(b, n)
	s, err := OpenStore(dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Select("INBOX", RecentTake); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		m, err := s.Select("INBOX", RecentTake)
		if err != nil {
			b.Fatal(err)
		}
		if uids, _ := m.SharedUIDs(); len(uids) != n {
			b.Fatal(len(uids))
		}
	}
}
