package remote

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/posthorn/posthorn/pkg/agent"
	"github.com/posthorn/posthorn/pkg/config"
	"github.com/posthorn/posthorn/pkg/dns"
)

// destination is where a recipient's mail goes: the recipient's domain, an
// address literal, or the relay host.
type destination struct {
	key     string     // for the connection cache and concurrency limit
	name    string     // domain or host, ASCII, for messages
	port    int        // TCP port
	mx      bool       // look up MX records of name
	literal netip.Addr // an address literal: no lookup at all
	relay   bool       // the configured relay host: AUTH applies
}

// target is one address to try.
type target struct {
	host string // the MX host name, or the address itself for a literal
	addr netip.Addr
	port int
	pref int
}

// name is "host[addr]" and nameport "host[addr]:port", as Postfix logs them.
func (t target) name() string     { return t.host + "[" + t.addr.String() + "]" }
func (t target) nameport() string { return t.name() + ":" + strconv.Itoa(t.port) }

// destinationFor decides where mail for domain goes.
func destinationFor(cfg *config.Config, domain string) (destination, *agent.Reply) {
	if cfg.SMTP.Relayhost != "" {
		host, port, bracketed, err := cfg.SMTP.RelayhostParts()
		if err != nil {
			r := agent.Tempfail("4.3.5", "%v", err)
			return destination{}, &r
		}
		d := destination{key: "relay " + cfg.SMTP.Relayhost, name: host, port: port, mx: !bracketed, relay: true}
		if a, err := netip.ParseAddr(host); err == nil && bracketed {
			d.literal = a.Unmap()
		}
		return d, nil
	}
	if lit, ok := strings.CutPrefix(domain, "["); ok {
		// An address literal (RFC 5321 §4.1.3): "[192.0.2.1]", "[IPv6:2001:db8::1]".
		lit = strings.TrimSuffix(lit, "]")
		if len(lit) > 5 && strings.EqualFold(lit[:5], "ipv6:") {
			lit = lit[5:]
		}
		a, err := netip.ParseAddr(lit)
		if err != nil || a.Zone() != "" {
			r := agent.Permfail("5.1.2", "bad address literal %s", domain)
			return destination{}, &r
		}
		a = a.Unmap()
		return destination{key: "[" + a.String() + "]", name: domain, port: cfg.SMTP.Port, literal: a}, nil
	}
	ascii, err := dns.ToASCII(domain)
	if err != nil {
		r := agent.Permfail("5.1.2", "bad destination host name %q", domain)
		return destination{}, &r
	}
	return destination{key: ascii, name: ascii, port: cfg.SMTP.Port, mx: true}, nil
}

// route turns a destination into the addresses to try, in order, as
// Postfix's smtp_addr.c does: MX hosts by preference (RFC 5321 §5.1),
// addresses shuffled within a preference and then ordered by the address
// family preference, the list cut before this host itself, both families
// kept within the address limit.
func (a *Agent) route(ctx context.Context, cfg *config.Config, r *dns.Resolver, d destination) ([]target, *agent.Reply) {
	ctx, cancel := context.WithTimeout(ctx, a.opt.DNSTimeout)
	defer cancel()
	var targets []target
	bestPref := 0
	if d.literal.IsValid() {
		targets = []target{{host: d.literal.String(), addr: d.literal, port: d.port}}
	} else if !d.mx {
		ips, err := r.LookupIP(ctx, d.name)
		if err != nil {
			return nil, dnsReply(err)
		}
		for _, ip := range ips {
			targets = append(targets, target{host: d.name, addr: ip, port: d.port})
		}
	} else {
		mxs, err := r.LookupMX(ctx, d.name)
		if err != nil {
			return nil, dnsReply(err)
		}
		bestPref = int(mxs[0].Pref)
		var firstErr error
		looked := 0
		for _, mx := range mxs {
			if looked >= a.opt.MXHostLimit || len(targets) >= 2*a.opt.AddressLimit {
				break
			}
			looked++
			ips, err := r.LookupIP(ctx, mx.Host)
			if err != nil {
				// As long as some MX host has an address, the others'
				// trouble is ignored (Postfix does the same).
				if firstErr == nil || isTemporary(err) && !isTemporary(firstErr) {
					firstErr = err
				}
				continue
			}
			for _, ip := range ips {
				targets = append(targets, target{host: mx.Host, addr: ip, port: d.port, pref: int(mx.Pref)})
			}
		}
		if len(targets) == 0 {
			if firstErr == nil {
				firstErr = errors.New("no MX host has an address")
			}
			rep := dnsReply(firstErr)
			if !mxs[0].Implicit {
				rep.Text = fmt.Sprintf("no MX host for %s has a valid address record: %s", d.name, rep.Text)
			}
			return nil, rep
		}
	}

	// A mail exchanger that is this host ends the list there; being the
	// best one is a mail loop (Postfix's smtp_find_self and
	// smtp_truncate_self).
	for _, t := range targets {
		if !a.isSelf(cfg, t.addr, t.port) {
			continue
		}
		var kept []target
		for _, u := range targets {
			if u.pref < t.pref {
				kept = append(kept, u)
			}
		}
		if len(kept) == 0 {
			if t.pref == bestPref {
				r := agent.Permfail("5.4.6", "mail for %s loops back to myself", d.name)
				return nil, &r
			}
			r := agent.Tempfail("4.4.4", "unable to find primary relay for %s", d.name)
			return nil, &r
		}
		targets = kept
		break
	}

	rand.Shuffle(len(targets), func(i, j int) { targets[i], targets[j] = targets[j], targets[i] })
	family := func(t target) int {
		switch {
		case cfg.SMTP.AddressPreference == "ipv6" && t.addr.Is4(),
			cfg.SMTP.AddressPreference == "ipv4" && t.addr.Is6():
			return 1
		}
		return 0
	}
	slices.SortStableFunc(targets, func(x, y target) int {
		if x.pref != y.pref {
			return x.pref - y.pref
		}
		return family(x) - family(y)
	})
	return balance(targets, a.opt.AddressLimit), nil
}

// balance cuts the list to limit addresses while keeping both families
// when both are there, so a destination that is unreachable over one of
// them is still reached over the other (Postfix's
// smtp_balance_inet_protocols). The order of what is kept does not change.
func balance(ts []target, limit int) []target {
	v4, v6 := 0, 0
	for _, t := range ts {
		if t.addr.Is4() {
			v4++
		} else {
			v6++
		}
	}
	if len(ts) <= limit {
		return ts
	}
	want4, want6 := limit, limit
	if v4 > 0 && v6 > 0 {
		switch {
		case v6 <= limit/2:
			want6, want4 = v6, limit-v6
		case v4 <= limit/2:
			want4, want6 = v4, limit-v4
		default:
			// Half each, the odd one to the family that comes first.
			want4 = limit / 2
			if ts[0].addr.Is4() {
				want4 = (limit + 1) / 2
			}
			want6 = limit - want4
		}
	}
	var out []target
	for _, t := range ts {
		if len(out) == limit {
			break
		}
		if t.addr.Is4() && want4 > 0 {
			want4--
			out = append(out, t)
		} else if !t.addr.Is4() && want6 > 0 {
			want6--
			out = append(out, t)
		}
	}
	return out
}

func isTemporary(err error) bool {
	var de *dns.Error
	return !errors.As(err, &de) || de.Temporary()
}

// dnsReply words a lookup failure for the log and the bounce.
func dnsReply(err error) *agent.Reply {
	var de *dns.Error
	if !errors.As(err, &de) {
		r := agent.Tempfail("4.4.3", "%v", err)
		return &r
	}
	r := agent.Reply{Status: agent.Bounced, DSN: de.DSN(), Text: de.Error()}
	if de.Temporary() {
		r.Status = agent.Deferred
	}
	return &r
}

// isSelf reports whether connecting to addr:port reaches this host's own
// smtpd: the port is one smtpd listens on, and the address is the one it
// listens on, or any address of this host when it listens on a wildcard
// address. Postfix compares addresses only and checks only port 25; taking
// the port into account also covers a server on another port, and leaves
// a different server on this host alone.
func (a *Agent) isSelf(cfg *config.Config, addr netip.Addr, port int) bool {
	if addr.IsUnspecified() {
		return true // 0.0.0.0 and :: reach this host
	}
	for _, l := range cfg.SMTPD.Listen {
		ap, err := netip.ParseAddrPort(l)
		if err != nil || int(ap.Port()) != port {
			continue
		}
		la := ap.Addr().Unmap()
		if la.IsUnspecified() {
			if la.Is4() == addr.Is4() && a.local.has(addr) {
				return true
			}
		} else if la == addr {
			return true
		}
	}
	return false
}

// localAddrs caches the addresses of this host's interfaces.
type localAddrs struct {
	mu   sync.Mutex
	at   time.Time
	set  map[netip.Addr]bool
	list func() ([]net.Addr, error)
}

func (l *localAddrs) has(a netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.set == nil || time.Since(l.at) > time.Minute {
		l.set = map[netip.Addr]bool{}
		l.at = time.Now()
		if addrs, err := l.list(); err == nil {
			for _, x := range addrs {
				if p, err := netip.ParsePrefix(x.String()); err == nil {
					l.set[p.Addr().Unmap()] = true
				}
			}
		}
	}
	return l.set[a] || a.IsLoopback()
}
