package tests

import (
	"fmt"
	"math/rand"
	"net/smtp"
	"regexp"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestCrashUnderLoad kills smtpd, qmgr and local with SIGKILL at random
// moments while senders deliver, and the master itself once; after a
// restart every message that got 250 must be in a Maildir. Duplicates are
// allowed (a delivery whose result was not yet recorded) and reported.
func TestCrashUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test skipped in -short mode")
	}
	s := StartSystem(t, nil)
	const users = 4
	for i := 0; i < users; i++ {
		s.AddUser(fmt.Sprintf("crash%d@example.test", i))
	}

	var (
		mu      sync.Mutex
		acked   = map[int]bool{}
		seq     atomic.Int64
		stop    atomic.Bool
		failed  atomic.Int64
		wg      sync.WaitGroup
		masterM sync.RWMutex // held for writing while master restarts
	)
	send := func() {
		defer wg.Done()
		for !stop.Load() {
			masterM.RLock()
			n := int(seq.Add(1))
			err := sendOne(s.Addr, n, fmt.Sprintf("crash%d@example.test", n%users))
			masterM.RUnlock()
			if err != nil {
				failed.Add(1)
				time.Sleep(20 * time.Millisecond)
				continue
			}
			mu.Lock()
			acked[n] = true
			mu.Unlock()
		}
	}
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go send()
	}

	kills := map[string]int{}
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	deadline := time.Now().Add(12 * time.Second)
	masterKilled := false
	for time.Now().Before(deadline) {
		time.Sleep(time.Duration(150+rng.Intn(450)) * time.Millisecond)
		if !masterKilled && time.Until(deadline) < 6*time.Second {
			masterKilled = true
			masterM.Lock()
			s.KillMaster()
			s.Start()
			masterM.Unlock()
			kills["master"]++
			continue
		}
		name := []string{"smtpd", "qmgr", "local"}[rng.Intn(3)]
		for _, pid := range s.DaemonPids(name) {
			if syscall.Kill(pid, syscall.SIGKILL) == nil {
				kills[name]++
			}
		}
	}
	stop.Store(true)
	wg.Wait()

	mu.Lock()
	nAcked := len(acked)
	mu.Unlock()
	if nAcked < 50 {
		t.Fatalf("only %d messages acknowledged under the crash load (%d failed sends); the test proves too little\n%s",
			nAcked, failed.Load(), tail(s.Log(), 30))
	}
	// Everything acknowledged must arrive once the system is left alone.
	counts := map[int]int{}
	var missing []int
	limit := time.Now().Add(90 * time.Second)
	for {
		counts = map[int]int{}
		for i := 0; i < users; i++ {
			for _, b := range Messages(s.Maildir(fmt.Sprintf("crash%d", i))) {
				if m := seqHeader.FindStringSubmatch(b); m != nil {
					var n int
					fmt.Sscan(m[1], &n)
					counts[n]++
				}
			}
		}
		missing = missing[:0]
		for n := range acked {
			if counts[n] == 0 {
				missing = append(missing, n)
			}
		}
		if len(missing) == 0 && s.QueueEmpty() {
			break
		}
		if time.Now().After(limit) {
			q, _ := s.Posthorn("", "queue", "list")
			t.Fatalf("after 90 s, %d acknowledged messages are missing (e.g. %v); queue:\n%s\nlog:\n%s",
				len(missing), missing[:min(len(missing), 10)], q, tail(s.Log(), 30))
		}
		time.Sleep(50 * time.Millisecond)
	}
	dups := 0
	for _, c := range counts {
		if c > 1 {
			dups += c - 1
		}
	}
	t.Logf("crash test: %d messages acknowledged, %d sends failed, %d delivered (including unacknowledged ones that were committed), %d duplicates; kills: %v",
		nAcked, failed.Load(), len(counts), dups, kills)
	if kills["smtpd"]+kills["qmgr"]+kills["local"] < 5 {
		t.Errorf("too few kills happened: %v", kills)
	}
}

var seqHeader = regexp.MustCompile(`X-Seq: (\d+)`)

// sendOne sends one small numbered message with Go's net/smtp client and
// returns nil only if the server answered 250 to the end of data.
func sendOne(addr string, n int, rcpt string) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello("crash.example.org"); err != nil {
		return err
	}
	if err := c.Mail("load@example.org"); err != nil {
		return err
	}
	if err := c.Rcpt(rcpt); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "Subject: crash %d\r\nX-Seq: %d\r\n\r\nmessage %d\r\n", n, n, n)
	if err := w.Close(); err != nil {
		return err
	}
	c.Quit()
	return nil
}
