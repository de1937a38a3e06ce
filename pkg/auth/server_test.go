package auth

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posthorn/posthorn/pkg/config"
	"github.com/posthorn/posthorn/pkg/userdb"
	"golang.org/x/crypto/bcrypt"
)

func TestVirtualUsers(t *testing.T) {
	e := newEnv(t, nil)
	res, d := e.attempt(req("alice@example.org", "alice pw", "192.0.2.1"))
	if !res.OK || res.User != "alice@example.org" || res.Temp || d != 0 {
		t.Fatalf("alice: %+v after %v", res, d)
	}
	// Case-insensitive lookup; the canonical name is the file's.
	res, _ = e.attempt(req("bob@EXAMPLE.ORG", "bob pw", "192.0.2.1"))
	if !res.OK || res.User != "Bob@Example.org" {
		t.Fatalf("bob: %+v", res)
	}
	res, d = e.attempt(req("alice@example.org", "wrong", "192.0.2.2"))
	if res.OK || res.Temp || res.Reason != "password mismatch" || d != 2*time.Second {
		t.Fatalf("wrong password: %+v after %v", res, d)
	}
	// A virtual domain without the user: unknown.
	res, _ = e.attempt(req("alice@example.net", "alice pw", "192.0.2.3"))
	if res.OK || res.Reason != "unknown user" {
		t.Fatalf("alice@example.net: %+v", res)
	}
	if e.sys.callCount() != 0 {
		t.Fatal("a virtual name reached the system users")
	}
	want := []string{
		"passwd-file(alice@example.org,192.0.2.2): Password mismatch",
		"passwd-file(alice@example.net,192.0.2.3): unknown user",
	}
	if got := e.log.lines(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("log:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestSystemUsers(t *testing.T) {
	e := newEnv(t, nil)
	for _, name := range []string{"carol", "carol@localhost", "carol@MX.example.org"} {
		res, d := e.attempt(req(name, "carol pw", "192.0.2.1"))
		if !res.OK || res.User != "carol" || d != 0 {
			t.Fatalf("%s: %+v after %v", name, res, d)
		}
	}
	res, d := e.attempt(req("carol", "wrong", "192.0.2.2"))
	if res.OK || res.Temp || d != 2*time.Second {
		t.Fatalf("wrong password: %+v after %v", res, d)
	}
	// first_valid_uid: the right root password is no login.
	res, _ = e.attempt(req("root", "root pw", "192.0.2.3"))
	if res.OK || res.Temp || !strings.Contains(res.Reason, "below first_valid_uid 1000") {
		t.Fatalf("root: %+v", res)
	}
	// A domain that is neither local nor virtual: unknown, no PAM.
	calls := e.sys.callCount()
	res, _ = e.attempt(req("carol@elsewhere.example", "carol pw", "192.0.2.4"))
	if res.OK || res.Reason != "unknown user" || e.sys.callCount() != calls {
		t.Fatalf("other domain: %+v", res)
	}
	lines := e.log.lines()
	want := []string{
		"pam(carol,192.0.2.2): pam_authenticate() failed: Authentication failure (password mismatch?)",
		"pam(root,192.0.2.3): uid 0 below first_valid_uid 1000",
		"passdb(carol@elsewhere.example,192.0.2.4): unknown user",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("log:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

func TestSystemUsersOff(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Auth.SystemUsers = false })
	for _, name := range []string{"carol", "carol@localhost"} {
		res, _ := e.attempt(req(name, "carol pw", "192.0.2.1"))
		if res.OK || res.Reason != "unknown user" {
			t.Fatalf("%s with system_users off: %+v", name, res)
		}
	}
	if e.sys.callCount() != 0 {
		t.Fatal("PAM asked with system_users off")
	}
	// Virtual users are unaffected.
	if res, _ := e.attempt(req("alice@example.org", "alice pw", "192.0.2.1")); !res.OK {
		t.Fatalf("alice: %+v", res)
	}
}

func TestPasswdFiles(t *testing.T) {
	var extra string
	e := newEnv(t, func(c *config.Config) {
		extra = filepath.Join(filepath.Dir(c.Virtual.UsersFile), "extra")
		c.Auth.PasswdFiles = []string{extra}
	})
	// SHA512-CRYPT, as a Dovecot passwd-file holds it.
	content := "dave@example.org:{SHA512-CRYPT}$6$saltsalt$YTeBOLnmm3CoeJTzBuijUEtOEWCqrw/nQ8/AeMmON4LGp3k0ZiMjC1OdqzWFUAfDQBvYkOch9BWtQTBcZ1E/p0\n" +
		"alice@example.org:{PLAIN}second file loses\n"
	if err := os.WriteFile(extra, []byte(content), 0600); err != nil {
		t.Fatal(err)
	}
	if res, _ := e.attempt(req("dave@example.org", "hello", "192.0.2.1")); !res.OK || res.User != "dave@example.org" {
		t.Fatalf("dave: %+v", res)
	}
	if res, _ := e.attempt(req("alice@example.org", "second file loses", "192.0.2.1")); res.OK {
		t.Fatal("the second file's alice won over the users file's")
	}
	// A change is seen at the next lookup.
	if err := os.WriteFile(extra, []byte("erin@example.org:{PLAIN}erin pw\n"), 0600); err != nil {
		t.Fatal(err)
	}
	if res, _ := e.attempt(req("erin@example.org", "erin pw", "192.0.2.1")); !res.OK {
		t.Fatalf("erin after the change: %+v", res)
	}
	// A version that does not parse leaves the last good one in use,
	// with one warning.
	if err := os.WriteFile(extra, []byte("erin@example.org:{PLAIN}erin pw\nbad:x:notanumber\n"), 0600); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if res, _ := e.attempt(req("erin@example.org", "erin pw", "192.0.2.1")); !res.OK {
			t.Fatalf("erin with a broken file: %+v", res)
		}
	}
	if n := strings.Count(e.log.String(), "using the version read before"); n != 1 {
		t.Fatalf("%d warnings about the broken file, want 1:\n%s", n, e.log)
	}
}

func TestBackendFailureIsTemporary(t *testing.T) {
	e := newEnv(t, nil)
	// A users file that cannot be read and never was: 454, not 535.
	if err := os.Remove(e.cfg.Virtual.UsersFile); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(e.cfg.Virtual.UsersFile, 0700); err != nil {
		t.Fatal(err)
	}
	res, d := e.attempt(req("alice@example.org", "alice pw", "192.0.2.1"))
	if res.OK || !res.Temp || d != 0 {
		t.Fatalf("unreadable users file: %+v after %v", res, d)
	}
	if !strings.Contains(e.log.String(), "warning: passwd-file(alice@example.org,192.0.2.1): ") {
		t.Fatalf("log: %s", e.log)
	}
	// Temporary failures do not count.
	if n := e.srv.lim.clients["192.0.2.1"]; n != nil && len(n.times) > 0 {
		t.Fatal("a backend failure counted against the client")
	}
	// PAM that cannot decide is temporary too.
	e.srv.system = func(u, p, r, tty string) (pamResult, error) {
		return pamResult{Temp: true, Stage: "pam_authenticate()", Message: "Module is unknown"}, nil
	}
	if res, _ := e.attempt(req("carol", "carol pw", "192.0.2.1")); !res.Temp {
		t.Fatalf("PAM system error: %+v", res)
	}
}

// The penalty doubles from failure_delay with each recent failure, up to
// max_failure_delay, and forgets failures older than the window.
func TestFailureDelaysGrow(t *testing.T) {
	e := newEnv(t, nil)
	var got []time.Duration
	for i := 0; i < 6; i++ {
		res, d := e.attempt(req("alice@example.org", fmt.Sprint("guess", i), "192.0.2.9"))
		if res.OK || res.Temp {
			t.Fatalf("attempt %d: %+v", i, res)
		}
		got = append(got, d)
	}
	want := []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second, 15 * time.Second, 15 * time.Second, 15 * time.Second}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("delays %v, want %v", got, want)
	}
	// A success is never delayed, even now.
	if res, d := e.attempt(req("alice@example.org", "alice pw", "192.0.2.9")); !res.OK || d != 0 {
		t.Fatalf("success after failures: %+v after %v", res, d)
	}
	// Past the window the count starts over.
	e.clock.Advance(e.cfg.Auth.FailureWindow.D())
	if _, d := e.attempt(req("alice@example.org", "again", "192.0.2.9")); d != 2*time.Second {
		t.Fatalf("delay after the window: %v", d)
	}
}

// HOSTILE 33: one client hammering is stopped; the user, from another
// client, still gets in; a client in the attacker's IPv6 /48 shares its
// fate, one in another /48 does not.
func TestAttackerHammersLegitimateUserGetsIn(t *testing.T) {
	e := newEnv(t, nil)
	const attacker = "2001:db8:1:2::66"
	limit := e.cfg.Auth.ClientFailureLimit
	for i := 0; i < limit; i++ {
		res, d := e.attempt(req(fmt.Sprintf("user%d@example.org", i), "guess", attacker))
		if res.OK || res.Temp || d == 0 {
			t.Fatalf("attempt %d: %+v after %v", i, res, d)
		}
	}
	// Over the limit: refused at once, temporarily, without a check, and
	// even with the right password.
	calls := e.sys.callCount()
	for _, ip := range []string{attacker, "2001:db8:1:ffff::1"} {
		res, d := e.attempt(req("carol", "carol pw", ip))
		if res.OK || !res.Temp || res.Reason != string(refusedClient) || d != 0 {
			t.Fatalf("%s over the limit: %+v after %v", ip, res, d)
		}
	}
	if e.sys.callCount() != calls {
		t.Fatal("a refused attempt was checked")
	}
	// The user from elsewhere.
	for _, ip := range []string{"2001:db8:2::1", "198.51.100.7"} {
		if res, d := e.attempt(req("carol", "carol pw", ip)); !res.OK || d != 0 {
			t.Fatalf("legitimate user from %s: %+v after %v", ip, res, d)
		}
	}
	// One line says the attacker is refused, not one per attempt.
	if n := strings.Count(e.log.String(), "too many authentication failures from this client 2001:db8:1::/48"); n != 1 {
		t.Fatalf("%d refusal lines:\n%s", n, e.log)
	}
	// Once the failures age out, the client is checked again.
	e.clock.Advance(e.cfg.Auth.FailureWindow.D())
	if res, _ := e.attempt(req("carol", "carol pw", attacker)); !res.OK {
		t.Fatalf("after the window: %+v", res)
	}
}

// Many clients guessing one user: past user_failure_limit each client that
// failed is refused for that user, a client that did not fail is still
// checked, and the user gets in from one.
func TestDistributedAttackOnOneUser(t *testing.T) {
	e := newEnv(t, nil)
	limit := e.cfg.Auth.UserFailureLimit
	for i := 0; i < limit; i++ {
		res, _ := e.attempt(req("carol", "guess", fmt.Sprintf("203.0.113.%d", i)))
		if res.OK || res.Temp {
			t.Fatalf("attempt %d: %+v", i, res)
		}
	}
	// The user's penalty applies to a new client's failure too.
	res, d := e.attempt(req("carol", "guess", "203.0.113.200"))
	if res.OK || res.Temp || d != e.cfg.Auth.MaxFailureDelay.D() {
		t.Fatalf("new client's failure: %+v after %v", res, d)
	}
	// That client has failed now: refused for carol, however the name is
	// written.
	for _, name := range []string{"carol", "CAROL", "carol@localhost", "Carol@MX.example.org"} {
		res, d = e.attempt(req(name, "carol pw", "203.0.113.200"))
		if res.OK || !res.Temp || res.Reason != string(refusedUser) || d != 0 {
			t.Fatalf("%s from a failed client, user over its limit: %+v after %v", name, res, d)
		}
	}
	// But it may still try another user.
	if res, _ := e.attempt(req("alice@example.org", "alice pw", "203.0.113.200")); !res.OK {
		t.Fatalf("other user from the failed client: %+v", res)
	}
	// The user from a client without failures gets in.
	if res, d := e.attempt(req("carol", "carol pw", "198.51.100.7")); !res.OK || d != 0 {
		t.Fatalf("legitimate user: %+v after %v", res, d)
	}
}

// At most MaxClientInFlight checks of one client run at once; the next
// waits for a slot and then succeeds (a burst of logins behind one address
// is no attack), other clients are not affected.
func TestClientInFlightLimit(t *testing.T) {
	e := newEnv(t, nil)
	gate := make(chan struct{})
	e.sys.gate = gate
	var wg sync.WaitGroup
	results := make(chan Result, MaxClientInFlight+1)
	verify := func() {
		defer wg.Done()
		res, err := e.srv.Verify(context.Background(), req("carol", "carol pw", "192.0.2.50"))
		if err != nil {
			t.Error(err)
		}
		results <- res
	}
	for i := 0; i < MaxClientInFlight; i++ {
		wg.Add(1)
		go verify()
	}
	// Wait until all are admitted (they hold their slots in the gate).
	deadline := time.Now().Add(10 * time.Second)
	for e.srv.lim.inFlight("192.0.2.50") < MaxClientInFlight {
		if time.Now().After(deadline) {
			t.Fatal("checks did not start")
		}
		time.Sleep(time.Millisecond)
	}
	// One more waits: it has no slot, it has not failed.
	wg.Add(1)
	go verify()
	select {
	case r := <-results:
		t.Fatalf("a check over the in-flight limit was answered at once: %+v", r)
	case <-time.After(100 * time.Millisecond):
	}
	close(gate)
	wg.Wait()
	close(results)
	n := 0
	for r := range results {
		n++
		if !r.OK {
			t.Fatalf("check: %+v", r)
		}
	}
	if n != MaxClientInFlight+1 {
		t.Fatalf("%d answers, want %d", n, MaxClientInFlight+1)
	}
	if n := e.srv.lim.inFlight("192.0.2.50"); n != 0 {
		t.Fatalf("%d slots still held", n)
	}
}

// HOSTILE 34: names that are not valid fail before any lookup: nothing is
// read, no PAM call, no hash; the attempt counts and waits like any other.
func TestHostileUsernames(t *testing.T) {
	e := newEnv(t, nil)
	e.srv.system = func(u, p, r, tty string) (pamResult, error) {
		t.Errorf("PAM asked about %q", u)
		return pamResult{}, nil
	}
	os.Remove(e.cfg.Virtual.UsersFile) // a lookup would not fail, but find nobody
	for i, name := range []string{
		"%u", "%{user}", "a%n@example.org", "${jndi:x}", "' OR '1'='1", "*)(uid=*)", "admin)(|(a=*",
		"al\xffice", "ali\x00ce", "alice\r\nx", "alice\t", "-rf", ".hidden", "a..b@example.org",
		"alice@example.org@evil", "a,192.0.2.99", "x(192.0.2.99)", "<script>", "a b",
		strings.Repeat("a", MaxUsernameLength+1), "",
	} {
		ip := fmt.Sprintf("192.0.2.%d", 100+i)
		res, d := e.attempt(req(name, "pw", ip))
		if res.OK || res.Temp || res.Reason != ErrBadUsername.Error() || d != 2*time.Second {
			t.Errorf("%q: %+v after %v", name, res, d)
		}
	}
	for _, l := range e.log.lines() {
		if !strings.HasSuffix(l, "): invalid credentials") || strings.Count(l, ",") != 1 {
			t.Errorf("log line %q", l)
		}
	}
}

func TestInvalidPasswords(t *testing.T) {
	e := newEnv(t, nil)
	for _, pw := range []string{"", "alice pw\x00", strings.Repeat("p", userdb.MaxPasswordLength+1)} {
		res, d := e.attempt(req("alice@example.org", pw, "192.0.2.1"))
		if res.OK || res.Reason != "invalid password" || d == 0 {
			t.Errorf("password of %d bytes: %+v after %v", len(pw), res, d)
		}
	}
}

func TestBadRequests(t *testing.T) {
	e := newEnv(t, nil)
	for _, r := range []Request{
		{Service: "ftp", User: "alice@example.org", Password: "alice pw", RemoteIP: "192.0.2.1", Secured: true},
		{Service: ServiceSMTP, User: "alice@example.org", Password: "alice pw", RemoteIP: "", Secured: true},
		{Service: ServiceSMTP, User: "alice@example.org", Password: "alice pw", RemoteIP: "[192.0.2.1]", Secured: true},
		{Service: ServiceSMTP, User: "alice@example.org", Password: "alice pw", RemoteIP: "192.0.2.1:25", Secured: true},
	} {
		if _, err := e.srv.Verify(context.Background(), r); !errors.Is(err, ErrBadRequest) {
			t.Errorf("%+v: %v", r, err)
		}
	}
	// Not secured: refused without a check and without counting.
	r := req("alice@example.org", "alice pw", "192.0.2.1")
	r.Secured = false
	res, d := e.attempt(r)
	if res.OK || res.Temp || d != 0 || e.srv.lim.clients["192.0.2.1"] != nil && len(e.srv.lim.clients["192.0.2.1"].times) > 0 {
		t.Fatalf("insecure: %+v after %v", res, d)
	}
}

// Enumeration: an unknown user and a wrong password get the same reply
// after the same delay, and cost the same work: the unknown user's
// password is verified against a hash of the same file.
func TestUnknownUserCostsTheSame(t *testing.T) {
	e := newEnv(t, nil)
	wrong, dw := e.attempt(req("alice@example.org", "guess", "192.0.2.1"))
	unknown, du := e.attempt(req("nobody@example.org", "guess", "192.0.2.2"))
	if wrong.OK != unknown.OK || wrong.Temp != unknown.Temp || dw != du {
		t.Fatalf("wrong password %+v after %v, unknown user %+v after %v", wrong, dw, unknown, du)
	}
	// The dummy is a real hash of the file, so it has its scheme and cost.
	_, files := e.srv.current()
	_, dummy, _, err := files[0].get()
	if err != nil || dummy == nil || !strings.HasPrefix(dummy.Hash, "{BLF-CRYPT}$2a$04$") {
		t.Fatalf("dummy %+v %v", dummy, err)
	}
	// With no usable hash in any file, a built-in bcrypt hash at the
	// cost of new hashes.
	if err := os.WriteFile(e.cfg.Virtual.UsersFile, []byte("x@example.org:{UNKNOWN}y\n"), 0600); err != nil {
		t.Fatal(err)
	}
	if _, d, _, _ := files[0].get(); d != nil {
		t.Fatalf("dummy from a file without known schemes: %+v", d)
	}
	if c, err := bcrypt.Cost([]byte(strings.TrimPrefix(builtinDummy().Hash, "{BLF-CRYPT}"))); err != nil || c != userdb.Cost {
		t.Fatalf("built-in dummy cost %d %v", c, err)
	}
}

// The same in real time: the check of an unknown user takes at least half
// as long as that of a known user with a wrong password. Each side is the
// fastest of several runs, and load only ever adds time, so a busy machine
// cannot make this fail; without the dummy hash the unknown user would be
// answered a thousand times faster.
func TestUnknownUserTiming(t *testing.T) {
	if testing.Short() {
		t.Skip("measures bcrypt")
	}
	e := newEnv(t, nil)
	users := "alice@example.org:" + bcryptHash(t, "alice pw", 8) + "\n"
	if err := os.WriteFile(e.cfg.Virtual.UsersFile, []byte(users), 0600); err != nil {
		t.Fatal(err)
	}
	_, files := e.srv.current()
	measure := func(name string) time.Duration {
		best := time.Hour
		for i := 0; i < 5; i++ {
			start := time.Now()
			e.srv.virtual(context.Background(), files, name, "guess")
			best = min(best, time.Since(start))
		}
		return best
	}
	measure("alice@example.org") // load the file
	wrong, unknown := measure("alice@example.org"), measure("nobody@example.org")
	if unknown < wrong/2 {
		t.Fatalf("unknown user %v, wrong password %v", unknown, wrong)
	}
}

// pam_unix answers for a user that does not exist at once; such a check
// is held as long as the average check of one that does.
func TestUnknownSystemUserHeld(t *testing.T) {
	e := newEnv(t, nil)
	e.sys.delay = 20 * time.Millisecond
	for i := 0; i < 16; i++ {
		e.srv.systemUser(context.Background(), e.cfg, "carol", "guess", "192.0.2.1", "imap")
	}
	cost := time.Duration(e.srv.pamCost.Load())
	if cost < 10*time.Millisecond {
		t.Fatalf("average PAM cost %v after 16 checks of 20 ms", cost)
	}
	start := time.Now()
	o := e.srv.systemUser(context.Background(), e.cfg, "nosuchuser", "guess", "192.0.2.1", "imap")
	if took := time.Since(start); took < cost*9/10 {
		t.Fatalf("unknown system user answered in %v, average check %v", took, cost)
	}
	if o.res.OK || o.res.Temp {
		t.Fatalf("unknown system user: %+v", o.res)
	}
}

func TestReload(t *testing.T) {
	e := newEnv(t, nil)
	e.attempt(req("alice@example.org", "guess", "192.0.2.1"))
	cfg := *e.cfg
	cfg.Auth.FailureDelay = config.Duration(time.Second)
	cfg.Auth.ClientFailureLimit = 2
	cfg.Virtual.Domains = []string{"example.net"}
	e.srv.SetConfig(&cfg)
	// The failure before the reload still counts.
	if _, d := e.attempt(req("alice@example.org", "guess", "192.0.2.1")); d != 2*time.Second {
		t.Fatalf("second failure after reload: delay %v", d)
	}
	if res, _ := e.attempt(req("carol", "carol pw", "192.0.2.1")); !res.Temp {
		t.Fatalf("new client limit not applied: %+v", res)
	}
}
