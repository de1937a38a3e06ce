package dns

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"

	mdns "github.com/miekg/dns"
)

// MX is one mail exchanger of a domain.
type MX struct {
	Host string // lower case, ASCII, without the final dot
	Pref uint16
	// Implicit marks the domain itself, used when it has no MX records
	// (RFC 5321 §5.1 "implicit MX").
	Implicit bool
}

// LookupMX returns the mail exchangers of domain in the order RFC 5321
// §5.1 says to try them: by preference, in random order within one
// preference. A domain without MX records gets an implicit MX naming the
// domain itself; a null MX (RFC 7505) is an error of kind NullMX, and there
// is no fallback to the domain's addresses then.
func (r *Resolver) LookupMX(ctx context.Context, domain string) ([]MX, error) {
	name, err := ToASCII(domain)
	if err != nil {
		return nil, &Error{Name: domain, Type: "MX", Kind: BadName, Detail: "malformed domain name"}
	}
	rrs, err := r.follow(ctx, name, mdns.TypeMX)
	if err != nil {
		return nil, err
	}
	if len(rrs) == 0 {
		return []MX{{Host: name, Implicit: true}}, nil
	}
	var mxs []MX
	null := false
	seen := map[string]bool{}
	for _, rr := range rrs {
		mx, ok := rr.(*mdns.MX)
		if !ok {
			continue
		}
		host := strings.ToLower(strings.TrimSuffix(mx.Mx, "."))
		switch {
		case host == "" && mx.Preference == 0:
			null = true // RFC 7505 §3
		case host == "" || !ValidHostname(host) || seen[host]:
			// Not a host we can use (or listed twice); the others may be.
		default:
			seen[host] = true
			mxs = append(mxs, MX{Host: host, Pref: mx.Preference})
		}
	}
	if len(mxs) == 0 {
		if null {
			return nil, &Error{Name: name, Type: "MX", Kind: NullMX, Detail: "null MX"}
		}
		return nil, tempErr(name, "MX", "%v (no valid MX host name)", errMalformed)
	}
	// A null MX must be the only MX record (RFC 7505 §3); when there are
	// others it is ignored and they are used.
	rand.Shuffle(len(mxs), func(i, j int) { mxs[i], mxs[j] = mxs[j], mxs[i] })
	slices.SortStableFunc(mxs, func(a, b MX) int { return int(a.Pref) - int(b.Pref) })
	if len(mxs) > MaxRecords {
		mxs = mxs[:MaxRecords]
	}
	return mxs, nil
}

// LookupIP returns the addresses of host: IPv6 first, then IPv4, each in
// the order the name server gave them, without duplicates. As long as one
// family has addresses, trouble with the other is ignored (as Postfix
// does). A host given as an address literal is returned as is.
func (r *Resolver) LookupIP(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a.Unmap()}, nil
	}
	name, err := ToASCII(host)
	if err != nil {
		return nil, &Error{Name: host, Type: "A/AAAA", Kind: BadName, Detail: "malformed host name"}
	}
	var wg sync.WaitGroup
	var v6, v4 []mdns.RR
	var err6, err4 error
	wg.Add(2)
	go func() { defer wg.Done(); v6, err6 = r.follow(ctx, name, mdns.TypeAAAA) }()
	go func() { defer wg.Done(); v4, err4 = r.follow(ctx, name, mdns.TypeA) }()
	wg.Wait()

	var out []netip.Addr
	seen := map[netip.Addr]bool{}
	add := func(a netip.Addr, ok bool) {
		if !ok || seen[a] || len(out) >= 2*MaxRecords || !usable(a) {
			return
		}
		seen[a] = true
		out = append(out, a)
	}
	for _, rr := range v6 {
		if x, ok := rr.(*mdns.AAAA); ok {
			a, ok := netip.AddrFromSlice(x.AAAA)
			add(a, ok && a.Is6() && !a.Is4In6())
		}
	}
	for _, rr := range v4 {
		if x, ok := rr.(*mdns.A); ok {
			a, ok := netip.AddrFromSlice(x.A.To4())
			add(a, ok)
		}
	}
	if len(out) > 0 {
		return out, nil
	}
	for _, e := range []error{err6, err4} {
		if de, ok := e.(*Error); ok && de.Kind == Temporary {
			return nil, &Error{Name: name, Type: de.Type, Kind: Temporary, Detail: de.Detail}
		}
	}
	if len(v6)+len(v4) > 0 {
		// Records there were, but none with an address we could use.
		return nil, tempErr(name, "A/AAAA", "%v (unusable address)", errMalformed)
	}
	if e4, ok := err4.(*Error); ok && e4.Kind == NotFound {
		return nil, e4
	}
	if e6, ok := err6.(*Error); ok && e6.Kind == NotFound {
		return nil, e6
	}
	return nil, &Error{Name: name, Type: "A", Kind: NoAddress, Detail: "No address associated with hostname"}
}

// usable rejects addresses no mail server can have: multicast and the
// IPv4 limited broadcast. The unspecified address stays: connecting to it
// reaches this host, which the caller must recognise as a mail loop.
func usable(a netip.Addr) bool {
	if a.IsMulticast() {
		return false
	}
	if a.Is4() && a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return false
	}
	return true
}

// follow looks up records of qtype for name, following CNAMEs: first
// within an answer (a recursive server normally sends the chain and the
// records together), then by asking for the alias's target when the answer
// stops at an alias. It returns nil records for a name that exists without
// records of the type (NODATA). A name that does not exist is NotFound;
// everything unexpected is Temporary.
func (r *Resolver) follow(ctx context.Context, name string, qtype uint16) ([]mdns.RR, error) {
	typ := mdns.TypeToString[qtype]
	cur := mdns.Fqdn(name)
	seen := map[string]bool{cur: true}
	hops := 0
	for {
		a, err := r.query(ctx, cur, qtype)
		if err != nil {
			return nil, tempErr(name, typ, "Host not found, try again (%v)", err)
		}
		target := cur
		var recs []mdns.RR
		for {
			recs = recs[:0]
			cname := ""
			for _, rr := range a.answer {
				h := rr.Header()
				if h.Class != mdns.ClassINET || !strings.EqualFold(h.Name, target) {
					continue // not on our chain: a hostile server's extra, ignored
				}
				if h.Rrtype == qtype {
					if len(recs) < MaxRecords {
						recs = append(recs, rr)
					}
				} else if c, ok := rr.(*mdns.CNAME); ok && cname == "" {
					cname = strings.ToLower(c.Target)
				}
			}
			if len(recs) > 0 {
				return recs, nil
			}
			if cname == "" {
				break
			}
			if hops++; hops > MaxCNAME {
				return nil, tempErr(name, typ, "CNAME chain longer than %d", MaxCNAME)
			}
			if !ValidHostname(cname) {
				return nil, tempErr(name, typ, "%v (bad CNAME target)", errMalformed)
			}
			if seen[cname] {
				return nil, tempErr(name, typ, "CNAME loop at %s", strings.TrimSuffix(cname, "."))
			}
			seen[cname] = true
			target = cname
		}
		if a.rcode == mdns.RcodeNameError {
			return nil, &Error{Name: name, Type: typ, Kind: NotFound, Detail: "Host not found"}
		}
		if target == cur {
			return nil, nil
		}
		cur = target
	}
}
