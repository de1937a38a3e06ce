package remote

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/posthorn/posthorn/pkg/config"
)

func targets(spec string) []target {
	var ts []target
	for i, f := range strings.Fields(spec) {
		a := netip.MustParseAddr("192.0.2.1")
		if f == "6" {
			a = netip.MustParseAddr("2001:db8::1")
		}
		ts = append(ts, target{host: fmt.Sprint(i), addr: a})
	}
	return ts
}

func families(ts []target) string {
	var b strings.Builder
	for _, t := range ts {
		if t.addr.Is4() {
			b.WriteByte('4')
		} else {
			b.WriteByte('6')
		}
	}
	return b.String()
}

// Postfix's smtp_balance_inet_proto: both families keep a share of the
// address limit, and the order of what is kept does not change.
func TestBalance(t *testing.T) {
	for in, want := range map[string]string{
		"6 6 6 6 6 6 6 6 4 4": "66644",
		"6 6 6 6 6 6 6 6 4":   "66664",
		"4 6 6 6 6 6 6 6 6":   "46666",
		"6 6 6 6 4 4 4 4":     "66644", // the odd one to the family first in line
		"4 4 4 4 6 6 6 6":     "44466",
		"6 6 6 6 6 6 6":       "66666",
		"6 4 6":               "646",
	} {
		got := families(balance(targets(in), 5))
		if got != want {
			t.Errorf("balance(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestAddressPreference(t *testing.T) {
	for _, pref := range []string{"ipv6", "ipv4", "any"} {
		h := newHarness(t, 25, func(c *config.Config, o *Options) { c.SMTP.AddressPreference = pref })
		h.zone("pref.test. 300 IN MX 10 a.pref.test.", "pref.test. 300 IN MX 10 b.pref.test.", "pref.test. 300 IN MX 20 c.pref.test.",
			"a.pref.test. 300 IN A 192.0.2.1", "a.pref.test. 300 IN AAAA 2001:db8::1",
			"b.pref.test. 300 IN A 192.0.2.2", "b.pref.test. 300 IN AAAA 2001:db8::2",
			"c.pref.test. 300 IN A 192.0.2.3")
		cfg, r := h.agent.current()
		d, _ := destinationFor(cfg, "pref.test")
		seen := map[string]bool{}
		for i := 0; i < 40; i++ {
			ts, rep := h.agent.route(context.Background(), cfg, r, d)
			if rep != nil {
				t.Fatal(rep)
			}
			f := families(ts)
			seen[f] = true
			if ts[len(ts)-1].host != "c.pref.test" || len(ts) != 5 {
				t.Fatalf("%s: %v", pref, ts)
			}
			switch pref {
			case "ipv6":
				if f[:4] != "6644" {
					t.Fatalf("ipv6: %s", f)
				}
			case "ipv4":
				if f[:4] != "4466" {
					t.Fatalf("ipv4: %s", f)
				}
			}
		}
		if pref == "any" && len(seen) < 2 {
			t.Fatalf("any: always %v", seen)
		}
	}
}
