package server

import (
	"bytes"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/posthorn/posthorn/pkg/imap/memstore"
)

// idleFleet is n sessions logged in, with INBOX selected, in IDLE.
type idleFleet struct {
	srv     *Server
	user    *memstore.User
	clients []net.Conn
	buf     []byte
}

// readUntil reads from c into the shared buffer until want shows up; the
// clients hold no buffers of their own, so the measurement is the
// server's (plus the pipes).
func (f *idleFleet) readUntil(tb testing.TB, c net.Conn, want string) {
	tb.Helper()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	got := 0
	for !bytes.Contains(f.buf[:got], []byte(want)) {
		if got == len(f.buf) {
			tb.Fatalf("no %q in %q", want, f.buf[:got])
		}
		n, err := c.Read(f.buf[got:])
		if err != nil {
			tb.Fatalf("read: %v after %q", err, f.buf[:got])
		}
		got += n
	}
}

func heapAndStack() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC() // a second cycle empties the sync.Pool victim caches
	runtime.ReadMemStats(&m)
	return m.HeapAlloc + m.StackInuse
}

// openIdleFleet opens n sessions over net.Pipe and returns the memory
// they take, heap and goroutine stacks, per session.
func openIdleFleet(tb testing.TB, n int) (*idleFleet, float64) { return openFleet(tb, n, false) }

// openFleet opens n sessions over net.Pipe, or over loopback TCP when tcp
// is set (both ends in this process, so their sockets count too).
func openFleet(tb testing.TB, n int, tcp bool) (*idleFleet, float64) {
	be := memstore.New()
	u := be.AddUser("alice", "secret")
	for i := 0; i < 10; i++ {
		u.Deliver("INBOX", []byte(simpleMsg))
	}
	srv := New(Config{Backend: be, AllowCleartext: true, AuthFailureDelay: -1, Log: quietLog()})
	f := &idleFleet{srv: srv, user: u, buf: make([]byte, 64*1024)}
	var l net.Listener
	if tcp {
		var err error
		if l, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			tb.Fatal(err)
		}
		go srv.Serve(l)
	}
	before := heapAndStack()
	for i := 0; i < n; i++ {
		var cli net.Conn
		if tcp {
			var err error
			if cli, err = net.Dial("tcp", l.Addr().String()); err != nil {
				tb.Fatal(err)
			}
		} else {
			var sv net.Conn
			cli, sv = net.Pipe()
			go srv.ServeConn(sv)
		}
		f.readUntil(tb, cli, "ready.\r\n")
		cli.SetWriteDeadline(time.Now().Add(30 * time.Second))
		cli.Write([]byte("a LOGIN alice secret\r\nb SELECT INBOX\r\nc IDLE\r\n"))
		f.readUntil(tb, cli, "+ idling\r\n")
		f.clients = append(f.clients, cli)
	}
	after := heapAndStack()
	return f, float64(after-before) / float64(n)
}

func (f *idleFleet) close(tb testing.TB) {
	for _, c := range f.clients {
		c.Close()
	}
	deadline := time.Now().Add(30 * time.Second)
	for f.srv.Sessions() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := f.srv.Sessions(); n > 0 {
		tb.Fatalf("%d sessions left", n)
	}
}

// deliverToAll delivers one message and waits until every IDLE session
// has reported it, returning how long that took.
func (f *idleFleet) deliverToAll(tb testing.TB, exists string) time.Duration {
	start := time.Now()
	f.user.Deliver("INBOX", []byte(simpleMsg))
	for _, c := range f.clients {
		f.readUntil(tb, c, exists)
	}
	return time.Since(start)
}

// The budget: 10,000 IDLE sessions under 20 KB each. The test
// runs 2,000 to stay quick; BenchmarkIdleSessions runs 10,000.
func TestIdleSessionMemory(t *testing.T) {
	n := 2000
	if testing.Short() {
		n = 200
	}
	f, per := openIdleFleet(t, n)
	defer f.close(t)
	t.Logf("%d IDLE sessions: %.0f bytes of heap and stack per session", n, per)
	if per > 20*1024 && !raceEnabled {
		t.Fatalf("%.0f bytes per idle session, budget 20 KiB", per)
	}
	d := f.deliverToAll(t, "* 11 EXISTS\r\n")
	t.Logf("a delivery reached all %d sessions in %v", n, d)
	if d > time.Second {
		t.Fatalf("delivery took %v to reach every IDLE session", d)
	}
}

// Over loopback TCP (both ends in this process).
func TestIdleSessionMemoryTCP(t *testing.T) {
	n := 2000
	if testing.Short() {
		n = 200
	}
	f, per := openFleet(t, n, true)
	defer f.close(t)
	t.Logf("%d IDLE sessions over TCP: %.0f bytes of heap and stack per session, client sockets included", n, per)
	if per > 20*1024 && !raceEnabled {
		t.Fatalf("%.0f bytes per idle session, budget 20 KiB", per)
	}
}

// BenchmarkIdleSessions opens 10,000 sessions in IDLE and reports their
// memory (heap and goroutine stacks) per session, and how long one
// delivery takes to be announced in all of them.
func BenchmarkIdleSessions(b *testing.B) {
	const n = 10000
	for i := 0; i < b.N; i++ {
		f, per := openIdleFleet(b, n)
		b.ReportMetric(per, "B/session")
		d := f.deliverToAll(b, "* 11 EXISTS\r\n")
		b.ReportMetric(float64(d.Milliseconds()), "ms-to-notify-all")
		f.close(b)
	}
}

// A 30 MB message goes out as it is read from the store: the engine
// allocates a small, fixed amount however large the body (the store here
// keeps the message in memory; that is the store's business).
func TestLargeFetchIsStreamed(t *testing.T) {
	ts := newTestServer(t, nil)
	body := bytes.Repeat([]byte("0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n"), 30<<20/74)
	msg := append([]byte("Subject: big\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"), body...)
	ts.user.Deliver("INBOX", msg)
	c := ts.loginSelect()
	for _, item := range []string{"BODY.PEEK[]", "BINARY.PEEK[1]", "BODY.PEEK[TEXT]<1000.20000000>"} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		c.write("f FETCH 1 " + item + "\r\n")
		buf := make([]byte, 64*1024)
		total := 0
		for {
			n, err := c.r.Read(buf)
			total += n
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(buf[:n], []byte("f OK Fetch completed")) {
				break
			}
		}
		runtime.ReadMemStats(&after)
		alloc := after.TotalAlloc - before.TotalAlloc
		t.Logf("FETCH %s: %d octets sent, %d octets allocated", item, total, alloc)
		if total < 15<<20 {
			t.Fatalf("only %d octets", total)
		}
		if alloc > 2<<20 && !raceEnabled {
			t.Fatalf("FETCH %s allocated %d octets for a %d-octet message", item, alloc, len(msg))
		}
	}
}
