package mailbox

import (
	"path/filepath"
	"testing"
	"time"
)

// Sessions of one Maildir share its Store, which outlives the last one
// for the linger time and is then closed.
func TestStorePool(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "Maildir")
	p := NewStorePool(Options{Hostname: "test.example"}, 50*time.Millisecond)
	a, ra, err := p.Get(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, rb, _ := p.Get(dir)
	if a != b {
		t.Fatal("two sessions got two stores")
	}
	ra()
	ra() // twice is harmless
	rb()
	c, rc, _ := p.Get(dir)
	if c != a {
		t.Fatal("a session right after the last one did not get the lingering store")
	}
	rc()
	deadline := time.Now().Add(5 * time.Second)
	for {
		p.mu.Lock()
		_, open := p.open[dir]
		p.mu.Unlock()
		if !open {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the store was never closed after its last session")
		}
		time.Sleep(10 * time.Millisecond)
	}
	d, rd, err := p.Get(dir)
	if err != nil || d == a {
		t.Fatalf("after expiry: same store %v, %v", d == a, err)
	}
	rd()
}
