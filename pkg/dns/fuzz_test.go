package dns

import (
	"context"
	"errors"
	"net/netip"
	"sync/atomic"
	"testing"

	mdns "github.com/miekg/dns"
)

// FuzzLookup feeds arbitrary bytes to the resolver as the name server's
// reply to every query (after the header's question is made to match, so
// the answer processing is reached): MX and address lookups must end in a
// result made only of valid names and bounded lists, or in a *Error,
// never in a panic or a loop. Seeds are in testdata/fuzz/FuzzLookup.
func FuzzLookup(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		r := &Resolver{timeout: 1, attempts: 1}
		var queries atomic.Int32
		r.exchange = func(ctx context.Context, name string, qtype uint16) (*mdns.Msg, error) {
			queries.Add(1)
			m := new(mdns.Msg)
			if err := m.Unpack(data); err != nil {
				return nil, errMalformed
			}
			m.Question = []mdns.Question{{Name: name, Qtype: qtype, Qclass: mdns.ClassINET}}
			return m, nil
		}
		mxs, err := r.LookupMX(context.Background(), "example.test")
		checkErr(t, err)
		if len(mxs) > MaxRecords {
			t.Fatalf("%d MX records", len(mxs))
		}
		for i, mx := range mxs {
			if !ValidHostname(mx.Host) {
				t.Fatalf("invalid MX host %q", mx.Host)
			}
			if i > 0 && mx.Pref < mxs[i-1].Pref {
				t.Fatalf("unsorted: %v", mxs)
			}
		}
		ips, err := r.LookupIP(context.Background(), "example.test")
		checkErr(t, err)
		if len(ips) > 2*MaxRecords {
			t.Fatalf("%d addresses", len(ips))
		}
		for _, ip := range ips {
			if !ip.IsValid() || ip.IsMulticast() || ip.Is4In6() || ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
				t.Fatalf("address %v", ip)
			}
		}
		// One query per CNAME hop at most, per lookup type.
		if n := queries.Load(); n > 3*(MaxCNAME+1) {
			t.Fatalf("%d queries", n)
		}
	})
}

func checkErr(t *testing.T, err error) {
	if err == nil {
		return
	}
	var de *Error
	if !errors.As(err, &de) {
		t.Fatalf("error %v of type %T", err, err)
	}
	if de.Error() == "" || de.DSN() == "" {
		t.Fatal("empty error text or DSN")
	}
}
