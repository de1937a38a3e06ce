package auth

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/posthorn/posthorn/pkg/config"
)

func TestClientGroup(t *testing.T) {
	for ip, want := range map[string]string{
		"192.0.2.1":                  "192.0.2.1",
		"::ffff:192.0.2.1":           "192.0.2.1", // IPv4-mapped is IPv4
		"2001:db8:1:2::1":            "2001:db8:1::/48",
		"2001:db8:1:ffff:ffff::9":    "2001:db8:1::/48",
		"2001:db8:2::1":              "2001:db8:2::/48",
		"fe80::1%eth0":               "fe80::/48",
		"::1":                        "::/48",
		"2001:db8:abcd:1234:5678::1": "2001:db8:abcd::/48",
	} {
		if got := clientGroup(netip.MustParseAddr(ip)); got != want {
			t.Errorf("clientGroup(%s) = %s, want %s", ip, got, want)
		}
	}
}

func TestPenalty(t *testing.T) {
	var got []time.Duration
	for n := 1; n <= 6; n++ {
		got = append(got, penalty(2*time.Second, 15*time.Second, n))
	}
	if fmt.Sprint(got) != "[2s 4s 8s 15s 15s 15s]" {
		t.Fatalf("penalties %v", got)
	}
	if d := penalty(0, 15*time.Second, 1000); d != 0 {
		t.Fatalf("zero delay grew to %v", d)
	}
	if d := penalty(time.Second, time.Second, 1<<30); d != time.Second {
		t.Fatalf("huge count: %v", d)
	}
}

func testLimits() limits {
	return limits{delay: 2 * time.Second, maxDelay: 15 * time.Second, window: 10 * time.Minute, clientLimit: 3, userLimit: 2}
}

// The client limit: reached at exactly clientLimit failures in the window,
// lifted when the oldest leaves it.
func TestClientLimitAndWindow(t *testing.T) {
	l := newLimiter(testLimits())
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < 3; i++ {
		now := t0.Add(time.Duration(i) * time.Minute)
		if r, _, _ := l.admit(now, "192.0.2.1", ""); r != "" {
			t.Fatalf("failure %d refused: %s", i, r)
		}
		l.release("192.0.2.1")
		l.fail(now, "192.0.2.1", "")
	}
	if r, _, _ := l.admit(t0.Add(3*time.Minute), "192.0.2.1", ""); r != refusedClient {
		t.Fatalf("after 3 failures: %q", r)
	}
	// The first failure leaves the window at t0+10m.
	if r, _, _ := l.admit(t0.Add(10*time.Minute-time.Nanosecond), "192.0.2.1", ""); r != refusedClient {
		t.Fatalf("just inside the window: %q", r)
	}
	if r, _, _ := l.admit(t0.Add(10*time.Minute), "192.0.2.1", ""); r != "" {
		t.Fatalf("first failure out of the window: %q", r)
	}
}

// The user limit refuses only clients that failed.
func TestUserLimit(t *testing.T) {
	l := newLimiter(testLimits())
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l.fail(now, "192.0.2.1", "carol")
	l.fail(now, "192.0.2.2", "carol")
	if r, _, _ := l.admit(now, "192.0.2.1", "carol"); r != refusedUser {
		t.Fatalf("failed client: %q", r)
	}
	if r, _, _ := l.admit(now, "192.0.2.3", "carol"); r != "" {
		t.Fatalf("clean client: %q", r)
	}
	if r, _, _ := l.admit(now, "192.0.2.1", "alice"); r != "" {
		t.Fatalf("failed client, other user: %q", r)
	}
}

// Refusals are logged once a minute per client, with the count of the
// ones not logged.
func TestRefusalLogging(t *testing.T) {
	l := newLimiter(testLimits())
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < 3; i++ {
		l.fail(now, "192.0.2.1", "")
	}
	logged := 0
	for i := 0; i < 100; i++ {
		if _, log, _ := l.admit(now.Add(time.Duration(i)*time.Second/2), "192.0.2.1", ""); log {
			logged++
		}
	}
	if logged != 1 {
		t.Fatalf("%d of 100 refusals within a minute logged", logged)
	}
	_, log, unlogged := l.admit(now.Add(time.Minute), "192.0.2.1", "")
	if !log || unlogged != 99 {
		t.Fatalf("after a minute: log %v, %d unlogged", log, unlogged)
	}
}

// Each table holds at most maxTracked entries: a flood of clients or
// names cannot grow the daemon without bound. Entries with recent failures
// go last.
func TestLimiterTablesAreBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("fills the tables")
	}
	lim := testLimits()
	lim.clientLimit, lim.userLimit = 1000, 1000
	l := newLimiter(lim)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// A client that failed recently.
	l.fail(now, "198.51.100.1", "victim")
	// Then, after the window, more clients and names than the tables hold.
	later := now.Add(lim.window)
	l.fail(later, "198.51.100.2", "fresh")
	for i := 0; i < maxTracked+5000; i++ {
		l.fail(later, fmt.Sprintf("10.%d.%d.%d", i>>16, i>>8&0xff, i&0xff), fmt.Sprintf("user%d", i))
	}
	if len(l.clients) > maxTracked || len(l.users) > maxTracked {
		t.Fatalf("%d clients, %d users tracked, bound %d", len(l.clients), len(l.users), maxTracked)
	}
	if l.clients["198.51.100.1"] != nil {
		t.Fatal("an entry without recent failures survived the sweep")
	}
	// A client in the middle of a check is never dropped, so its slot is
	// given back to the entry that took it.
	l = newLimiter(lim)
	l.admit(now, "192.0.2.77", "")
	for i := 0; i < maxTracked+10; i++ {
		l.fail(now, fmt.Sprintf("10.%d.%d.%d", i>>16, i>>8&0xff, i&0xff), "")
	}
	if c := l.clients["192.0.2.77"]; c == nil || c.inFlight != 1 {
		t.Fatalf("busy client dropped: %+v", c)
	}
}

func TestLimiterKey(t *testing.T) {
	cfg := config.Defaults()
	cfg.LocalDomains = []string{"localhost", "mx.example.org"}
	for in, want := range map[string]string{
		"carol":                 "carol",
		"Carol":                 "carol",
		"carol@LocalHost":       "carol",
		"carol@mx.example.org":  "carol",
		"Alice@Example.org":     "alice@example.org",
		"%u":                    "",
		"carol@localhost@x.org": "",
	} {
		if got := limiterKey(cfg, in); got != want {
			t.Errorf("limiterKey(%q) = %q, want %q", in, got, want)
		}
	}
}
