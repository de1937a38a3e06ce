// Package dns is the resolver of the outbound SMTP client: MX and address
// lookups (RFC 5321 §5.1) against configured name servers, with the
// defensive rules of Postfix's dns_lookup: every name in an answer is
// validated, answers are bounded, CNAME chains are followed a few steps
// with loop detection, and anything malformed is a temporary failure, so a
// broken or hostile name server delays mail but never bounces it by
// accident.
package dns

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	mdns "github.com/miekg/dns"
)

// Defaults of a Resolver, close to the system resolver's (resolv.conf(5):
// timeout 5 s, 2 attempts).
const (
	DefaultTimeout   = 5 * time.Second
	DefaultAttempts  = 2
	DefaultCacheSize = 4096
)

// Limits on what an answer may make us do.
const (
	// MaxCNAME is how many aliases a lookup follows (RFC 1034 §3.6.2
	// chains; RFC 2181 §10.3 says MX targets must not be aliases, but real
	// domains do it, so a short chain is tolerated).
	MaxCNAME = 8
	// MaxRecords caps the records of one type taken from an answer, as
	// Postfix's dns_rr_list_limit (100) does; the rest are ignored.
	MaxRecords = 100
	// ednsSize is the UDP payload size we advertise (RFC 6891): the DNS
	// flag day 2020 value, small enough to avoid fragmentation. Larger
	// answers come truncated and are fetched again over TCP.
	ednsSize = 1232
	// TTL bounds for the cache: a positive answer is kept at most an
	// hour, a negative one (RFC 2308) at most five minutes, so a fixed
	// DNS error stops affecting mail soon.
	maxPositiveTTL = time.Hour
	maxNegativeTTL = 5 * time.Minute
)

// Config selects the name servers and timing of a Resolver.
type Config struct {
	// Servers are "address:port" or bare addresses (port 53). Empty: the
	// nameserver lines of /etc/resolv.conf.
	Servers []string
	// Timeout bounds one query to one server.
	Timeout time.Duration
	// Attempts is how many rounds over the servers a query makes.
	Attempts int
	// CacheSize caps the cached answers; 0 means DefaultCacheSize,
	// negative disables the cache.
	CacheSize int
}

// Resolver looks up mail exchangers and addresses.
type Resolver struct {
	servers  []string
	timeout  time.Duration
	attempts int
	cache    *cache
	// exchange sends one query; tests and fuzzing replace it.
	exchange func(ctx context.Context, name string, qtype uint16) (*mdns.Msg, error)
}

// New returns a resolver for cfg.
func New(cfg Config) (*Resolver, error) {
	servers := cfg.Servers
	if len(servers) == 0 {
		var err error
		if servers, err = ServersFromResolvConf("/etc/resolv.conf"); err != nil {
			return nil, err
		}
	}
	r := &Resolver{timeout: cfg.Timeout, attempts: cfg.Attempts}
	r.exchange = r.exchangeNet
	for _, s := range servers {
		ap, err := ParseServer(s)
		if err != nil {
			return nil, err
		}
		r.servers = append(r.servers, ap.String())
	}
	if r.timeout <= 0 {
		r.timeout = DefaultTimeout
	}
	if r.attempts <= 0 {
		r.attempts = DefaultAttempts
	}
	switch {
	case cfg.CacheSize == 0:
		r.cache = newCache(DefaultCacheSize)
	case cfg.CacheSize > 0:
		r.cache = newCache(cfg.CacheSize)
	}
	return r, nil
}

// ParseServer parses a name server as "192.0.2.53", "192.0.2.53:5353",
// "2001:db8::53" or "[2001:db8::53]:53". Only addresses: a resolver cannot
// be found by name.
func ParseServer(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"))
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("name server %q: want an IP address with an optional :port", s)
	}
	return netip.AddrPortFrom(a, 53), nil
}

// ServersFromResolvConf returns the name servers listed in a resolv.conf(5)
// file, or the local server 127.0.0.1 when there are none, as the C
// library does.
func ServersFromResolvConf(path string) ([]string, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return []string{"127.0.0.1:53"}, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || fields[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(fields[1])
		if err != nil {
			continue // garbled: the C library skips it too
		}
		out = append(out, netip.AddrPortFrom(a, 53).String())
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(out) == 0 {
		out = []string{"127.0.0.1:53"}
	}
	return out, nil
}

// Kind classifies a lookup failure.
type Kind int

const (
	// Temporary: no usable answer now (timeout, SERVFAIL, malformed or
	// unexpected reply, CNAME loop); try again later.
	Temporary Kind = iota
	// NotFound: the name does not exist (NXDOMAIN).
	NotFound
	// NoAddress: the name exists but has no address records.
	NoAddress
	// NullMX: the domain publishes "MX 0 ." (RFC 7505): it accepts no mail.
	NullMX
	// BadName: the name is not a valid host name.
	BadName
)

// Error is a failed lookup.
type Error struct {
	Name   string // the name as asked for
	Type   string // "MX", "A", "AAAA" or "A/AAAA"
	Kind   Kind
	Detail string
}

func (e *Error) Error() string {
	switch e.Kind {
	case NullMX:
		return fmt.Sprintf("Domain %s does not accept mail (nullMX)", e.Name)
	case BadName:
		return fmt.Sprintf("Name service error for name=%s type=%s: %s", e.Name, e.Type, e.Detail)
	}
	// Postfix's wording, which admins grep for.
	return fmt.Sprintf("Host or domain name not found. Name service error for name=%s type=%s: %s", e.Name, e.Type, e.Detail)
}

// Temporary reports whether the failure may go away by itself.
func (e *Error) Temporary() bool { return e.Kind == Temporary }

// DSN is the enhanced status code (RFC 3463) for mail that cannot be
// routed because of this failure: 4.4.3 for temporary trouble, 5.4.4 for
// names that do not exist (Postfix's codes), and RFC 7505's 5.1.10 for a
// null MX.
func (e *Error) DSN() string {
	switch e.Kind {
	case Temporary:
		return "4.4.3"
	case NullMX:
		return "5.1.10"
	default:
		return "5.4.4"
	}
}

func tempErr(name, typ, format string, args ...any) *Error {
	return &Error{Name: name, Type: typ, Kind: Temporary, Detail: fmt.Sprintf(format, args...)}
}

// answer is what one query gave: the response code and its records.
type answer struct {
	rcode  int
	answer []mdns.RR
	ttl    time.Duration // how long it may be cached
}

// query asks for name (an FQDN in lower case) and type, from the cache when
// it holds a fresh answer.
func (r *Resolver) query(ctx context.Context, name string, qtype uint16) (*answer, error) {
	key := cacheKey{name, qtype}
	if r.cache != nil {
		if a := r.cache.get(key); a != nil {
			return a, nil
		}
	}
	resp, err := r.exchange(ctx, name, qtype)
	if err != nil {
		return nil, err
	}
	a := &answer{rcode: resp.Rcode, answer: resp.Answer, ttl: answerTTL(resp)}
	if r.cache != nil && a.ttl > 0 {
		r.cache.put(key, a)
	}
	return a, nil
}

// answerTTL is how long a response may be reused: the smallest TTL of its
// answer records, or for a negative answer the SOA's negative TTL (RFC 2308
// §5: the smaller of the SOA record's TTL and its MINIMUM field).
func answerTTL(m *mdns.Msg) time.Duration {
	var ttl uint32
	first := true
	min := func(v uint32) {
		if first || v < ttl {
			ttl, first = v, false
		}
	}
	for _, rr := range m.Answer {
		min(rr.Header().Ttl)
	}
	limit := maxPositiveTTL
	if len(m.Answer) == 0 || m.Rcode == mdns.RcodeNameError {
		limit = maxNegativeTTL
		first = true
		for _, rr := range m.Ns {
			if soa, ok := rr.(*mdns.SOA); ok {
				min(soa.Hdr.Ttl)
				min(soa.Minttl)
			}
		}
	}
	if first {
		return 0 // nothing says how long: do not cache
	}
	d := time.Duration(ttl) * time.Second
	if d > limit {
		d = limit
	}
	return d
}

// exchangeNet sends a query to the servers in turn until one gives an
// answer (NOERROR or NXDOMAIN) that matches the question.
func (r *Resolver) exchangeNet(ctx context.Context, name string, qtype uint16) (*mdns.Msg, error) {
	m := new(mdns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = true
	m.SetEdns0(ednsSize, false)
	var last error
	for round := 0; round < r.attempts; round++ {
		for _, srv := range r.servers {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			resp, err := r.exchangeOne(ctx, m, srv)
			if err != nil {
				last = err
				continue
			}
			switch resp.Rcode {
			case mdns.RcodeSuccess, mdns.RcodeNameError:
				return resp, nil
			}
			last = fmt.Errorf("name server %s answered %s", srv, rcodeName(resp.Rcode))
		}
	}
	return nil, last
}

func rcodeName(rc int) string {
	if s, ok := mdns.RcodeToString[rc]; ok {
		return s
	}
	return fmt.Sprintf("rcode %d", rc)
}

var errMalformed = errors.New("malformed or unexpected name server reply")

// exchangeOne asks one server over UDP and again over TCP when the answer
// was truncated (RFC 7766 §5: TC=1 means retry over TCP).
func (r *Resolver) exchangeOne(ctx context.Context, m *mdns.Msg, srv string) (*mdns.Msg, error) {
	c := &mdns.Client{Net: "udp", Timeout: r.timeout, UDPSize: ednsSize}
	resp, _, err := c.ExchangeContext(ctx, m, srv)
	if resp != nil && resp.Truncated {
		// A truncated answer may even fail to unpack: its records are cut.
		c = &mdns.Client{Net: "tcp", Timeout: r.timeout}
		resp, _, err = c.ExchangeContext(ctx, m, srv)
		if err == nil && resp.Truncated {
			err = errMalformed // TC over TCP: the answer cannot be had whole
		}
	}
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, fmt.Errorf("name server %s: timed out", srv)
		}
		if resp != nil || errors.Is(err, mdns.ErrId) || strings.Contains(err.Error(), "dns:") {
			return nil, fmt.Errorf("name server %s: %w", srv, errMalformed)
		}
		return nil, fmt.Errorf("name server %s: %v", srv, err)
	}
	if !resp.Response || resp.Opcode != mdns.OpcodeQuery || len(resp.Question) != 1 ||
		!strings.EqualFold(resp.Question[0].Name, m.Question[0].Name) ||
		resp.Question[0].Qtype != m.Question[0].Qtype || resp.Question[0].Qclass != mdns.ClassINET {
		return nil, fmt.Errorf("name server %s: %w", srv, errMalformed)
	}
	return resp, nil
}
