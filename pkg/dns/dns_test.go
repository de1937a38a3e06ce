package dns

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/posthorn/posthorn/pkg/dns/dnstest"
)

func newResolver(t *testing.T, srv *dnstest.Server) *Resolver {
	t.Helper()
	r, err := New(Config{Servers: []string{srv.Addr}, Timeout: 2 * time.Second, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

func dnsErr(t *testing.T, err error, kind Kind) *Error {
	t.Helper()
	var de *Error
	if !errors.As(err, &de) {
		t.Fatalf("error %v (%T), want *dns.Error", err, err)
	}
	if de.Kind != kind {
		t.Fatalf("error %q has kind %d, want %d", de, de.Kind, kind)
	}
	return de
}

func hosts(mxs []MX) []string {
	var out []string
	for _, m := range mxs {
		out = append(out, fmt.Sprintf("%d %s", m.Pref, m.Host))
	}
	return out
}

func TestMXSortedByPreferenceShuffledWithin(t *testing.T) {
	srv := dnstest.New(t)
	srv.Add(t,
		"a.test. 300 IN MX 20 backup.a.test.",
		"a.test. 300 IN MX 10 mx1.a.test.",
		"a.test. 300 IN MX 10 mx2.a.test.",
		"a.test. 300 IN MX 30 last.a.test.",
	)
	r := newResolver(t, srv)
	firsts := map[string]int{}
	for i := 0; i < 60; i++ {
		mxs, err := r.LookupMX(ctx(t), "a.test")
		if err != nil {
			t.Fatal(err)
		}
		h := hosts(mxs)
		if len(h) != 4 || h[2] != "20 backup.a.test" || h[3] != "30 last.a.test" ||
			!strings.HasPrefix(h[0], "10 ") || !strings.HasPrefix(h[1], "10 ") {
			t.Fatalf("order %v", h)
		}
		firsts[h[0]]++
	}
	// RFC 5321 §5.1: equal preferences in random order. Both orders in 60
	// tries fail to appear with probability 2^-59.
	if len(firsts) != 2 {
		t.Fatalf("equal-preference hosts always in the same order: %v", firsts)
	}
	// The answer came from the cache after the first query.
	if n := srv.Queries("a.test.", "MX", ""); n != 1 {
		t.Fatalf("%d MX queries, want 1 (cached)", n)
	}
}

func TestImplicitMX(t *testing.T) {
	srv := dnstest.New(t)
	srv.Add(t, "b.test. 300 IN A 192.0.2.7")
	r := newResolver(t, srv)
	mxs, err := r.LookupMX(ctx(t), "B.Test.")
	if err != nil {
		t.Fatal(err)
	}
	if len(mxs) != 1 || mxs[0] != (MX{Host: "b.test", Pref: 0, Implicit: true}) {
		t.Fatalf("got %+v", mxs)
	}
}

func TestNullMX(t *testing.T) {
	srv := dnstest.New(t)
	srv.Add(t, "null.test. 300 IN MX 0 .", "null.test. 300 IN A 192.0.2.1")
	r := newResolver(t, srv)
	_, err := r.LookupMX(ctx(t), "null.test")
	de := dnsErr(t, err, NullMX)
	if de.Temporary() || de.DSN() != "5.1.10" || !strings.Contains(de.Error(), "does not accept mail") {
		t.Fatalf("null MX: %q dsn %s temporary %v", de, de.DSN(), de.Temporary())
	}
	// RFC 7505 §3: no fallback to the address records.
	if n := srv.Queries("null.test.", "A", ""); n != 0 {
		t.Fatalf("%d A queries after a null MX", n)
	}
}

func TestNullMXAmongOthersIsIgnored(t *testing.T) {
	srv := dnstest.New(t)
	srv.Add(t, "mixed.test. 300 IN MX 0 .", "mixed.test. 300 IN MX 10 mx.mixed.test.")
	mxs, err := newResolver(t, srv).LookupMX(ctx(t), "mixed.test")
	if err != nil || !slices.Equal(hosts(mxs), []string{"10 mx.mixed.test"}) {
		t.Fatalf("got %v, %v", hosts(mxs), err)
	}
}

func TestNXDOMAINIsPermanent(t *testing.T) {
	srv := dnstest.New(t)
	r := newResolver(t, srv)
	_, err := r.LookupMX(ctx(t), "nowhere.test")
	de := dnsErr(t, err, NotFound)
	if de.Temporary() || de.DSN() != "5.4.4" {
		t.Fatalf("%q: dsn %s", de, de.DSN())
	}
	want := "Host or domain name not found. Name service error for name=nowhere.test type=MX: Host not found"
	if de.Error() != want {
		t.Fatalf("text %q, want %q", de.Error(), want)
	}
	_, err = r.LookupIP(ctx(t), "nowhere.test")
	dnsErr(t, err, NotFound)
	// The negative answer is cached for the SOA's negative TTL.
	r.LookupMX(ctx(t), "nowhere.test")
	if n := srv.Queries("nowhere.test.", "MX", ""); n != 1 {
		t.Fatalf("%d queries: negative answer not cached", n)
	}
}

func TestServfailAndTimeoutAreTemporary(t *testing.T) {
	srv := dnstest.New(t)
	srv.Handle("fail.test.", func(w mdns.ResponseWriter, req *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetRcode(req, mdns.RcodeServerFailure)
		w.WriteMsg(m)
	})
	srv.Handle("silent.test.", func(w mdns.ResponseWriter, req *mdns.Msg) {})
	r, err := New(Config{Servers: []string{srv.Addr}, Timeout: 200 * time.Millisecond, Attempts: 2})
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.LookupMX(ctx(t), "fail.test")
	de := dnsErr(t, err, Temporary)
	if de.DSN() != "4.4.3" || !strings.Contains(de.Error(), "SERVFAIL") {
		t.Fatalf("%q dsn %s", de, de.DSN())
	}
	start := time.Now()
	_, err = r.LookupMX(ctx(t), "silent.test")
	de = dnsErr(t, err, Temporary)
	if !strings.Contains(de.Error(), "timed out") {
		t.Fatalf("%q", de)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("two attempts of 200ms took %v", d)
	}
	// Temporary failures are not cached.
	r.LookupMX(ctx(t), "fail.test")
	if n := srv.Queries("fail.test.", "MX", ""); n != 4 {
		t.Fatalf("%d SERVFAIL queries, want 4 (2 attempts, twice)", n)
	}
}

func TestSecondServerAnswersWhenFirstFails(t *testing.T) {
	bad := dnstest.New(t)
	bad.Handle("a.test.", func(w mdns.ResponseWriter, req *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetRcode(req, mdns.RcodeRefused)
		w.WriteMsg(m)
	})
	good := dnstest.New(t)
	good.Add(t, "a.test. 300 IN MX 10 mx.a.test.")
	r, err := New(Config{Servers: []string{bad.Addr, good.Addr}, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	mxs, err := r.LookupMX(ctx(t), "a.test")
	if err != nil || len(mxs) != 1 {
		t.Fatalf("%v %v", mxs, err)
	}
}

func TestMXPointingAtCNAME(t *testing.T) {
	srv := dnstest.New(t)
	srv.Add(t,
		"c.test. 300 IN MX 10 alias.c.test.",
		"alias.c.test. 300 IN CNAME real.c.test.",
		"real.c.test. 300 IN A 192.0.2.10",
		"real.c.test. 300 IN AAAA 2001:db8::10",
	)
	r := newResolver(t, srv)
	mxs, err := r.LookupMX(ctx(t), "c.test")
	if err != nil || mxs[0].Host != "alias.c.test" {
		t.Fatalf("%v %v", mxs, err)
	}
	ips, err := r.LookupIP(ctx(t), mxs[0].Host)
	want := []netip.Addr{netip.MustParseAddr("2001:db8::10"), netip.MustParseAddr("192.0.2.10")}
	if err != nil || !slices.Equal(ips, want) {
		t.Fatalf("got %v %v, want %v", ips, err, want)
	}
}

func TestDomainIsCNAME(t *testing.T) {
	srv := dnstest.New(t)
	srv.NoChase = true // the client must ask for the target itself
	srv.Add(t,
		"d.test. 300 IN CNAME e.test.",
		"e.test. 300 IN MX 5 mx.e.test.",
	)
	mxs, err := newResolver(t, srv).LookupMX(ctx(t), "d.test")
	if err != nil || !slices.Equal(hosts(mxs), []string{"5 mx.e.test"}) {
		t.Fatalf("%v %v", hosts(mxs), err)
	}
	if srv.Queries("e.test.", "MX", "") != 1 {
		t.Fatal("the alias target was not asked for")
	}
}

func TestCNAMELoop(t *testing.T) {
	for _, chase := range []bool{true, false} {
		srv := dnstest.New(t)
		srv.NoChase = !chase
		srv.Add(t,
			"loop.test. 300 IN MX 10 a.loop.test.",
			"a.loop.test. 300 IN CNAME b.loop.test.",
			"b.loop.test. 300 IN CNAME c.loop.test.",
			"c.loop.test. 300 IN CNAME a.loop.test.",
		)
		r := newResolver(t, srv)
		_, err := r.LookupIP(ctx(t), "a.loop.test")
		de := dnsErr(t, err, Temporary)
		if !strings.Contains(de.Detail, "CNAME loop") {
			t.Fatalf("chase=%v: %q", chase, de)
		}
	}
}

func chain(t *testing.T, srv *dnstest.Server, n int) {
	for i := 0; i < n; i++ {
		srv.Add(t, fmt.Sprintf("h%d.chain.test. 300 IN CNAME h%d.chain.test.", i, i+1))
	}
	srv.Add(t, fmt.Sprintf("h%d.chain.test. 300 IN A 192.0.2.99", n))
}

func TestCNAMEChainBound(t *testing.T) {
	for _, chase := range []bool{true, false} {
		// Exactly MaxCNAME aliases resolve.
		srv := dnstest.New(t)
		srv.NoChase = !chase
		chain(t, srv, MaxCNAME)
		ips, err := newResolver(t, srv).LookupIP(ctx(t), "h0.chain.test")
		if err != nil || len(ips) != 1 {
			t.Fatalf("chase=%v: %d aliases: %v %v", chase, MaxCNAME, ips, err)
		}
		// A 20-deep chain is refused, temporarily.
		srv = dnstest.New(t)
		srv.NoChase = !chase
		chain(t, srv, 20)
		r := newResolver(t, srv)
		_, err = r.LookupIP(ctx(t), "h0.chain.test")
		de := dnsErr(t, err, Temporary)
		if !strings.Contains(de.Detail, "CNAME chain longer than 8") {
			t.Fatalf("%q", de)
		}
		// Without chasing, no more than MaxCNAME+1 queries per type were made.
		if !chase {
			for i := MaxCNAME + 1; i <= 20; i++ {
				if n := srv.Queries(fmt.Sprintf("h%d.chain.test.", i), "A", ""); n != 0 {
					t.Fatalf("followed the chain to h%d", i)
				}
			}
		}
	}
}

func TestHundredsOfMXRecordsTruncatedAndRetriedOverTCP(t *testing.T) {
	srv := dnstest.New(t)
	for i := 0; i < 300; i++ {
		srv.Add(t, fmt.Sprintf("many.test. 300 IN MX %d mx%03d.many.test.", i, i))
	}
	r := newResolver(t, srv)
	mxs, err := r.LookupMX(ctx(t), "many.test")
	if err != nil {
		t.Fatal(err)
	}
	if srv.Queries("many.test.", "MX", "udp") != 1 || srv.Queries("many.test.", "MX", "tcp") != 1 {
		t.Fatalf("udp %d tcp %d queries: TC=1 did not lead to TCP",
			srv.Queries("many.test.", "MX", "udp"), srv.Queries("many.test.", "MX", "tcp"))
	}
	if len(mxs) != MaxRecords || mxs[0].Host != "mx000.many.test" || mxs[MaxRecords-1].Pref != MaxRecords-1 {
		t.Fatalf("%d records, first %v last %v; want the %d best", len(mxs), mxs[0], mxs[len(mxs)-1], MaxRecords)
	}
}

func TestHundredsOfAddresses(t *testing.T) {
	srv := dnstest.New(t)
	for i := 0; i < 250; i++ {
		srv.Add(t, fmt.Sprintf("wide.test. 300 IN A 10.0.%d.%d", i/200, i%200+1))
	}
	ips, err := newResolver(t, srv).LookupIP(ctx(t), "wide.test")
	if err != nil || len(ips) != MaxRecords {
		t.Fatalf("%d addresses, %v; want %d", len(ips), err, MaxRecords)
	}
}

func TestTruncatedUDPGarbageThenTCP(t *testing.T) {
	srv := dnstest.New(t)
	srv.Handle("tc.test.", func(w mdns.ResponseWriter, req *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(req)
		if w.RemoteAddr().Network() == "udp" {
			m.Truncated = true
			b, _ := m.Pack()
			// The cut-off answer: a header claiming a record that is not there.
			b[7] = 1
			w.Write(b)
			return
		}
		rr, _ := mdns.NewRR("tc.test. 300 IN MX 10 mx.tc.test.")
		m.Answer = append(m.Answer, rr)
		w.WriteMsg(m)
	})
	mxs, err := newResolver(t, srv).LookupMX(ctx(t), "tc.test")
	if err != nil || !slices.Equal(hosts(mxs), []string{"10 mx.tc.test"}) {
		t.Fatalf("%v %v", hosts(mxs), err)
	}
}

func TestMalformedAnswersAreTemporary(t *testing.T) {
	cases := map[string]func(w mdns.ResponseWriter, req *mdns.Msg){
		// An MX record whose RDATA stops after the preference.
		"truncated MX rdata": func(w mdns.ResponseWriter, req *mdns.Msg) {
			m := new(mdns.Msg)
			m.SetReply(req)
			b, _ := m.Pack()
			b[7] = 1 // ANCOUNT 1
			b = append(b, 0xc0, 12, 0, 15, 0, 1, 0, 0, 1, 44, 0, 2, 0, 10)
			w.Write(b)
		},
		"answer to another question": func(w mdns.ResponseWriter, req *mdns.Msg) {
			m := new(mdns.Msg)
			m.SetQuestion("other.test.", mdns.TypeMX)
			m.Id = req.Id
			m.Response = true
			w.WriteMsg(m)
		},
		"only bad MX names": func(w mdns.ResponseWriter, req *mdns.Msg) {
			m := new(mdns.Msg)
			m.SetReply(req)
			for _, target := range []string{"-bad.test.", "bad.test\\032x.", "1.2.3.4.", "a\\.b.test.", "\\000.test."} {
				m.Answer = append(m.Answer, &mdns.MX{Hdr: mdns.RR_Header{Name: req.Question[0].Name,
					Rrtype: mdns.TypeMX, Class: mdns.ClassINET, Ttl: 300}, Preference: 10, Mx: target})
			}
			w.WriteMsg(m)
		},
		"bad CNAME target": func(w mdns.ResponseWriter, req *mdns.Msg) {
			m := new(mdns.Msg)
			m.SetReply(req)
			m.Answer = append(m.Answer, &mdns.CNAME{Hdr: mdns.RR_Header{Name: req.Question[0].Name,
				Rrtype: mdns.TypeCNAME, Class: mdns.ClassINET, Ttl: 300}, Target: "x\\010y.test."})
			w.WriteMsg(m)
		},
		"not a response": func(w mdns.ResponseWriter, req *mdns.Msg) {
			m := req.Copy()
			m.Response = false
			w.WriteMsg(m)
		},
		"garbage": func(w mdns.ResponseWriter, req *mdns.Msg) {
			w.Write([]byte{byte(req.Id >> 8), byte(req.Id), 0x81, 0x80, 0xff, 0xff})
		},
	}
	for name, h := range cases {
		t.Run(name, func(t *testing.T) {
			srv := dnstest.New(t)
			srv.Handle("m.test.", h)
			r, _ := New(Config{Servers: []string{srv.Addr}, Timeout: 300 * time.Millisecond, Attempts: 1})
			_, err := r.LookupMX(ctx(t), "m.test")
			de := dnsErr(t, err, Temporary)
			if !strings.Contains(de.Detail, "malformed") {
				t.Fatalf("%q", de)
			}
		})
	}
}

func TestInvalidMXNamesSkipped(t *testing.T) {
	srv := dnstest.New(t)
	srv.Add(t,
		"s.test. 300 IN MX 1 -bad.s.test.",
		"s.test. 300 IN MX 2 192.0.2.1.",
		"s.test. 300 IN MX 3 good.s.test.",
		"s.test. 300 IN MX 4 good.s.test.",
	)
	mxs, err := newResolver(t, srv).LookupMX(ctx(t), "s.test")
	if err != nil || !slices.Equal(hosts(mxs), []string{"3 good.s.test"}) {
		t.Fatalf("%v %v", hosts(mxs), err)
	}
}

func TestLookupIPFamilies(t *testing.T) {
	srv := dnstest.New(t)
	srv.Add(t,
		"both.test. 300 IN A 192.0.2.1",
		"both.test. 300 IN AAAA 2001:db8::1",
		"both.test. 300 IN A 192.0.2.1",
		"v4.test. 300 IN A 192.0.2.4",
		"v6.test. 300 IN AAAA 2001:db8::6",
		"noaddr.test. 300 IN MX 10 mx.test.",
		"mcast.test. 300 IN A 224.0.0.1",
		"mcast.test. 300 IN AAAA ff02::1",
		"zero.test. 300 IN A 0.0.0.0",
	)
	srv.Handle("half.test.", func(w mdns.ResponseWriter, req *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(req)
		if req.Question[0].Qtype == mdns.TypeA {
			m.Rcode = mdns.RcodeServerFailure
		} else {
			rr, _ := mdns.NewRR("half.test. 300 IN AAAA 2001:db8::99")
			m.Answer = append(m.Answer, rr)
		}
		w.WriteMsg(m)
	})
	r := newResolver(t, srv)
	for host, want := range map[string]string{
		"both.test": "2001:db8::1 192.0.2.1",
		"v4.test":   "192.0.2.4",
		"v6.test":   "2001:db8::6",
		"half.test": "2001:db8::99",
		"zero.test": "0.0.0.0",
		"192.0.2.8": "192.0.2.8",
	} {
		ips, err := r.LookupIP(ctx(t), host)
		var got []string
		for _, ip := range ips {
			got = append(got, ip.String())
		}
		if err != nil || strings.Join(got, " ") != want {
			t.Errorf("%s: %v %v, want %s", host, got, err, want)
		}
	}
	_, err := r.LookupIP(ctx(t), "noaddr.test")
	if de := dnsErr(t, err, NoAddress); de.Temporary() || de.DSN() != "5.4.4" {
		t.Fatalf("%q", de)
	}
	_, err = r.LookupIP(ctx(t), "mcast.test")
	dnsErr(t, err, Temporary)
}

func TestBadNames(t *testing.T) {
	r := newResolver(t, dnstest.New(t))
	for _, name := range []string{"a..b", "", "-x.test", "x y.test", strings.Repeat("a.", 130) + "test", "1.2.3"} {
		_, err := r.LookupMX(ctx(t), name)
		if de := dnsErr(t, err, BadName); de.Temporary() {
			t.Fatalf("%q temporary", name)
		}
	}
}

func TestInternationalDomainLookedUpAsALabel(t *testing.T) {
	srv := dnstest.New(t)
	srv.Add(t, "xn--bcher-kva.test. 300 IN MX 10 mx.xn--bcher-kva.test.")
	mxs, err := newResolver(t, srv).LookupMX(ctx(t), "Bücher.test")
	if err != nil || !slices.Equal(hosts(mxs), []string{"10 mx.xn--bcher-kva.test"}) {
		t.Fatalf("%v %v", hosts(mxs), err)
	}
}

func TestCacheHonoursTTL(t *testing.T) {
	srv := dnstest.New(t)
	srv.Add(t, "ttl.test. 60 IN MX 10 mx.ttl.test.", "zero.test. 0 IN MX 10 mx.zero.test.")
	r := newResolver(t, srv)
	now := time.Now()
	r.cache.now = func() time.Time { return now }
	lookup := func(name string) {
		if _, err := r.LookupMX(ctx(t), name); err != nil {
			t.Fatal(err)
		}
	}
	lookup("ttl.test")
	now = now.Add(59 * time.Second)
	lookup("ttl.test")
	if n := srv.Queries("ttl.test.", "MX", ""); n != 1 {
		t.Fatalf("%d queries within the TTL", n)
	}
	now = now.Add(time.Second)
	lookup("ttl.test")
	if n := srv.Queries("ttl.test.", "MX", ""); n != 2 {
		t.Fatalf("%d queries after the TTL", n)
	}
	lookup("zero.test")
	lookup("zero.test")
	if n := srv.Queries("zero.test.", "MX", ""); n != 2 {
		t.Fatalf("TTL 0 answer cached: %d queries", n)
	}
}

func TestCacheSizeBound(t *testing.T) {
	srv := dnstest.New(t)
	for i := 0; i < 10; i++ {
		srv.Add(t, fmt.Sprintf("n%d.test. 300 IN MX 10 mx.test.", i))
	}
	r, _ := New(Config{Servers: []string{srv.Addr}, CacheSize: 3})
	for i := 0; i < 10; i++ {
		if _, err := r.LookupMX(ctx(t), fmt.Sprintf("n%d.test", i)); err != nil {
			t.Fatal(err)
		}
		if n := r.cache.len(); n > 3 {
			t.Fatalf("cache holds %d entries, limit 3", n)
		}
	}
}

func TestValidHostname(t *testing.T) {
	for name, want := range map[string]bool{
		"mx.example.com": true, "mx.example.com.": true, "a": true, "_x.example": true,
		"xn--bcher-kva.example": true, "1a.example": true, "a-b.c": true,
		"": false, ".": false, "a..b": false, "-a.b": false, "a-.b": false, "a b": false,
		"a\x00b": false, "ä.example": false, "192.0.2.1": false, "a.123": false,
		strings.Repeat("a", 64) + ".b":                                 false,
		strings.Repeat("a", 63) + ".b":                                 true,
		strings.Repeat(strings.Repeat("a", 63)+".", 4)[:253]:           true,
		strings.Repeat(strings.Repeat("a", 63)+".", 4)[:250] + "a.bcd": false,
	} {
		if got := ValidHostname(name); got != want {
			t.Errorf("ValidHostname(%q) = %v", name, got)
		}
	}
}

func TestResolvConf(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "resolv.conf")
	os.WriteFile(p, []byte("# comment\nsearch example\nnameserver 192.0.2.53\nnameserver 2001:db8::53\nnameserver fe80::1%eth0\nnameserver bogus\noptions edns0\n"), 0644)
	got, err := ServersFromResolvConf(p)
	if err != nil || !slices.Equal(got, []string{"192.0.2.53:53", "[2001:db8::53]:53", "[fe80::1%eth0]:53"}) {
		t.Fatalf("%v %v", got, err)
	}
	got, _ = ServersFromResolvConf(filepath.Join(dir, "missing"))
	if !slices.Equal(got, []string{"127.0.0.1:53"}) {
		t.Fatalf("missing file: %v", got)
	}
	os.WriteFile(p, []byte("search example\n"), 0644)
	got, _ = ServersFromResolvConf(p)
	if !slices.Equal(got, []string{"127.0.0.1:53"}) {
		t.Fatalf("no servers: %v", got)
	}
	for in, want := range map[string]string{"192.0.2.1": "192.0.2.1:53", "192.0.2.1:5353": "192.0.2.1:5353",
		"::1": "[::1]:53", "[::1]:54": "[::1]:54", "[::1]": "[::1]:53"} {
		ap, err := ParseServer(in)
		if err != nil || ap.String() != want {
			t.Errorf("ParseServer(%q) = %v %v", in, ap, err)
		}
	}
	for _, bad := range []string{"ns.example", "192.0.2.1:x", ""} {
		if _, err := ParseServer(bad); err == nil {
			t.Errorf("ParseServer(%q) accepted", bad)
		}
	}
}

func TestCacheTTLCaps(t *testing.T) {
	srv := dnstest.New(t)
	srv.Add(t, "day.test. 86400 IN MX 10 mx.day.test.")
	r := newResolver(t, srv)
	now := time.Now()
	r.cache.now = func() time.Time { return now }
	lookup := func(name string) {
		r.LookupMX(ctx(t), name)
	}
	// A day's TTL is kept an hour at most.
	lookup("day.test")
	now = now.Add(maxPositiveTTL - time.Second)
	lookup("day.test")
	if n := srv.Queries("day.test.", "MX", ""); n != 1 {
		t.Fatalf("%d queries within the hour", n)
	}
	now = now.Add(time.Second)
	lookup("day.test")
	if n := srv.Queries("day.test.", "MX", ""); n != 2 {
		t.Fatalf("%d queries after the hour", n)
	}
	// A negative answer is kept for the SOA's negative TTL (30 s in
	// dnstest's SOA), and never beyond five minutes.
	lookup("none.test")
	now = now.Add(29 * time.Second)
	lookup("none.test")
	now = now.Add(time.Second)
	lookup("none.test")
	if n := srv.Queries("none.test.", "MX", ""); n != 2 {
		t.Fatalf("%d queries for the negative answer", n)
	}
	if d := answerTTL(&mdns.Msg{Ns: []mdns.RR{&mdns.SOA{Hdr: mdns.RR_Header{Ttl: 86400}, Minttl: 86400}}}); d != maxNegativeTTL {
		t.Fatalf("negative TTL %v", d)
	}
}

// HOSTILE-INPUTS 57: TC=1, then an answer near the 64 KB limit of TCP.
func TestLargeTCPAnswer(t *testing.T) {
	srv := dnstest.New(t)
	// 3900 compressed A records: 62 KB.
	for i := 0; i < 3900; i++ {
		srv.Add(t, fmt.Sprintf("huge.test. 300 IN A 10.%d.%d.1", i/250, i%250))
	}
	ips, err := newResolver(t, srv).LookupIP(ctx(t), "huge.test")
	if err != nil || len(ips) != MaxRecords {
		t.Fatalf("%d addresses, %v", len(ips), err)
	}
	if srv.Queries("huge.test.", "A", "tcp") != 1 {
		t.Fatal("no TCP query")
	}
}
