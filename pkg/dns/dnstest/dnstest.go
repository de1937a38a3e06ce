// Package dnstest runs a small DNS server for tests: it answers from zone
// records given in master-file syntax, on UDP and TCP at one 127.0.0.1
// port, like a recursive server would (aliases followed within the zone,
// truncation over UDP, SOA in negative answers). Names can be given custom
// handlers to misbehave.
package dnstest

import (
	"net"
	"strings"
	"sync"
	"testing"

	mdns "github.com/miekg/dns"
)

// Server is a running test name server.
type Server struct {
	// Addr is "127.0.0.1:port", for both UDP and TCP.
	Addr string

	mu       sync.Mutex
	records  []mdns.RR
	handlers map[string]func(w mdns.ResponseWriter, req *mdns.Msg)
	queries  map[string]int // "name TYPE net"
	// NoChase makes answers stop at an alias, as some servers do, so the
	// client must ask for the target itself.
	NoChase bool
}

// New starts a server that stops when the test ends.
func New(t testing.TB) *Server {
	t.Helper()
	s := &Server{handlers: map[string]func(mdns.ResponseWriter, *mdns.Msg){}, queries: map[string]int{}}
	var pc net.PacketConn
	var l net.Listener
	for try := 0; ; try++ {
		var err error
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		if try > 20 {
			t.Fatalf("no port free for both UDP and TCP: %v", err)
		}
	}
	s.Addr = pc.LocalAddr().String()
	udp := &mdns.Server{PacketConn: pc, Handler: mdns.HandlerFunc(s.serve("udp"))}
	tcp := &mdns.Server{Listener: l, Handler: mdns.HandlerFunc(s.serve("tcp"))}
	started := make(chan struct{}, 2)
	udp.NotifyStartedFunc = func() { started <- struct{}{} }
	tcp.NotifyStartedFunc = func() { started <- struct{}{} }
	go udp.ActivateAndServe()
	go tcp.ActivateAndServe()
	<-started
	<-started
	t.Cleanup(func() {
		udp.Shutdown()
		tcp.Shutdown()
	})
	return s
}

// Add adds records in master-file syntax ("a.test. 300 IN MX 10 mx.a.test.").
func (s *Server) Add(t testing.TB, lines ...string) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, line := range lines {
		rr, err := mdns.NewRR(line)
		if err != nil {
			t.Fatalf("record %q: %v", line, err)
		}
		s.records = append(s.records, rr)
	}
}

// Handle makes fn answer every query for name (an FQDN) instead of the zone.
func (s *Server) Handle(name string, fn func(w mdns.ResponseWriter, req *mdns.Msg)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handlers[strings.ToLower(name)] = fn
}

// Queries returns how many queries for name and type (e.g. "MX") came over
// network ("udp", "tcp", or "" for both).
func (s *Server) Queries(name, typ, network string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if network == "" {
		return s.queries[strings.ToLower(name)+" "+typ+" udp"] + s.queries[strings.ToLower(name)+" "+typ+" tcp"]
	}
	return s.queries[strings.ToLower(name)+" "+typ+" "+network]
}

var soa = func() mdns.RR {
	rr, _ := mdns.NewRR("test. 60 IN SOA ns.test. hostmaster.test. 1 3600 600 86400 30")
	return rr
}()

func (s *Server) serve(network string) func(w mdns.ResponseWriter, req *mdns.Msg) {
	return func(w mdns.ResponseWriter, req *mdns.Msg) {
		if len(req.Question) != 1 {
			m := new(mdns.Msg)
			m.SetRcode(req, mdns.RcodeFormatError)
			w.WriteMsg(m)
			return
		}
		q := req.Question[0]
		name := strings.ToLower(q.Name)
		s.mu.Lock()
		s.queries[name+" "+mdns.TypeToString[q.Qtype]+" "+network]++
		h := s.handlers[name]
		s.mu.Unlock()
		if h != nil {
			h(w, req)
			return
		}
		m := s.answer(req)
		if network == "udp" {
			size := 512
			if o := req.IsEdns0(); o != nil {
				size = int(o.UDPSize())
			}
			m.Truncate(size)
		}
		w.WriteMsg(m)
	}
}

// answer builds the zone's answer, following aliases within the zone
// unless NoChase is set.
func (s *Server) answer(req *mdns.Msg) *mdns.Msg {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := req.Question[0]
	m := new(mdns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	m.RecursionAvailable = true
	m.Compress = true
	name := strings.ToLower(q.Name)
	seen := map[string]bool{}
	for !seen[name] {
		seen[name] = true
		exists, cname := false, ""
		for _, rr := range s.records {
			h := rr.Header()
			if !strings.EqualFold(h.Name, name) {
				continue
			}
			exists = true
			switch {
			case h.Rrtype == q.Qtype:
				m.Answer = append(m.Answer, mdns.Copy(rr))
			case h.Rrtype == mdns.TypeCNAME && cname == "":
				cname = strings.ToLower(rr.(*mdns.CNAME).Target)
				m.Answer = append(m.Answer, mdns.Copy(rr))
			}
		}
		if !exists {
			m.Rcode = mdns.RcodeNameError
		}
		if cname == "" || s.NoChase || q.Qtype == mdns.TypeCNAME {
			break
		}
		name = cname
	}
	if len(m.Answer) == 0 || m.Rcode == mdns.RcodeNameError {
		m.Ns = append(m.Ns, mdns.Copy(soa))
	}
	return m
}
