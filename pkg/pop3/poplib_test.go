package pop3

import (
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/posthorn/posthorn/pkg/mailbox"
)

// poplibScript is a POP3 session by Python's poplib, a real client with
// its own parser (byte-stuffing, multi-line responses, STLS). It prints
// what it saw as JSON.
const poplibScript = `
import json, poplib, ssl, sys
host, port, mode, cafile = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
out = {}
p = poplib.POP3(host, port, timeout=20)
out["welcome"] = p.getwelcome().decode()
if mode == "stls":
    out["capa_before"] = sorted(p.capa().keys())
    try:
        p.user("alice")
        out["user_before_tls"] = "accepted"
    except poplib.error_proto as e:
        out["user_before_tls"] = e.args[0].decode()
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = False
    p.stls(ctx)
    out["capa_after"] = sorted(p.capa().keys())
p.user("alice")
p.pass_("secret")
out["stat"] = list(p.stat())
out["list"] = [l.decode() for l in p.list()[1]]
out["uidl"] = [l.decode() for l in p.uidl()[1]]
out["top"] = [l.decode() for l in p.top(1, 1)[1]]
resp, lines, octets = p.retr(1)
out["retr_resp"] = resp.decode()
out["retr"] = [l.decode() for l in lines]
out["dele"] = p.dele(2).decode()
out["quit"] = p.quit().decode()
print(json.dumps(out))
`

type poplibResult struct {
	Welcome       string   `json:"welcome"`
	CapaBefore    []string `json:"capa_before"`
	UserBeforeTLS string   `json:"user_before_tls"`
	CapaAfter     []string `json:"capa_after"`
	Stat          []int    `json:"stat"`
	List          []string `json:"list"`
	UIDL          []string `json:"uidl"`
	Top           []string `json:"top"`
	RetrResp      string   `json:"retr_resp"`
	Retr          []string `json:"retr"`
	Dele          string   `json:"dele"`
	Quit          string   `json:"quit"`
}

func runPoplib(t *testing.T, lcfg LoginConfig, mode, cafile string) (poplibResult, string, []uint32, uint32, *server) {
	t.Helper()
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed")
	}
	store, dir := newStore(t)
	uids := fill(t, store, msgDots, msgLF, msgNoEOL)
	mb, _ := store.Open("INBOX")
	srv := startServer(t, lcfg, SessionConfig{}, newFakeAuth(), func(string) *mailbox.Store { return store })
	host, port, _ := net.SplitHostPort(srv.addr)
	out, err := exec.Command(python, "-c", poplibScript, host, port, mode, cafile).CombinedOutput()
	if err != nil {
		t.Fatalf("poplib: %v\n%s\nserver log:\n%s", err, out, strings.Join(srv.log.lines(), "\n"))
	}
	var r poplibResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("poplib output %q: %v", out, err)
	}
	if err := wait(t, srv.ended); err != nil {
		t.Fatalf("session: %v", err)
	}
	return r, dir, uids, mb.UIDValidity(), srv
}

func checkPoplibSession(t *testing.T, r poplibResult, dir string, uids []uint32, uv uint32) {
	t.Helper()
	sizes := []int{len(crlf(msgDots)), len(crlf(msgLF)), len(crlf(msgNoEOL))}
	if r.Welcome != "+OK posthorn ready." {
		t.Errorf("welcome %q", r.Welcome)
	}
	if !slices.Equal(r.Stat, []int{3, sizes[0] + sizes[1] + sizes[2]}) {
		t.Errorf("stat %v", r.Stat)
	}
	var list, uidl []string
	for i, s := range sizes {
		list = append(list, fmt.Sprintf("%d %d", i+1, s))
		uidl = append(uidl, fmt.Sprintf("%d %08x%08x", i+1, uids[i], uv))
	}
	if !slices.Equal(r.List, list) {
		t.Errorf("list %q, want %q", r.List, list)
	}
	if !slices.Equal(r.UIDL, uidl) {
		t.Errorf("uidl %q, want %q", r.UIDL, uidl)
	}
	if want := []string{"From: a@example.org", "Subject: one", "", "line 1"}; !slices.Equal(r.Top, want) {
		t.Errorf("top %q", r.Top)
	}
	if r.RetrResp != fmt.Sprintf("+OK %d octets", sizes[0]) {
		t.Errorf("retr response %q", r.RetrResp)
	}
	// poplib removes the byte-stuffing: the lines are the message's.
	if got := strings.Join(r.Retr, "\r\n") + "\r\n"; got != msgDots {
		t.Errorf("retr %q", r.Retr)
	}
	if r.Dele != "+OK Marked to be deleted." || r.Quit != "+OK Logging out, messages deleted." {
		t.Errorf("dele %q quit %q", r.Dele, r.Quit)
	}
	if got := inbox(t, dir); !slices.Equal(got, []uint32{uids[0], uids[2]}) {
		t.Errorf("after quit: %v", got)
	}
	if f := flagsOf(t, dir, uids[0]); !slices.Contains(f, `\Seen`) {
		t.Errorf("retrieved message flags %q", f)
	}
}

func TestPoplib(t *testing.T) {
	r, dir, uids, uv, srv := runPoplib(t, LoginConfig{}, "plain", "")
	checkPoplibSession(t, r, dir, uids, uv)
	if !srv.log.has("pop3-login: Login: user=<alice>, method=PLAIN, rip=127.0.0.1, lip=127.0.0.1, secured") ||
		!srv.log.has("Disconnected: Logged out top=1/") {
		t.Errorf("log %q", srv.log.lines())
	}
}

func TestPoplibSTLS(t *testing.T) {
	tlsCfg, certFile, _ := tlsFiles(t)
	// Plaintext refused even on loopback: the client must use STLS.
	lcfg := LoginConfig{TLS: tlsCfg, AllowPlaintext: func(net.Conn) bool { return false }}
	r, dir, uids, uv, srv := runPoplib(t, lcfg, "stls", certFile)
	if slices.Contains(r.CapaBefore, "USER") || slices.Contains(r.CapaBefore, "SASL") || !slices.Contains(r.CapaBefore, "STLS") {
		t.Errorf("CAPA before STLS: %q", r.CapaBefore)
	}
	if r.UserBeforeTLS != msgPlaintextDisallowed {
		t.Errorf("USER before STLS: %q", r.UserBeforeTLS)
	}
	if !slices.Contains(r.CapaAfter, "USER") || !slices.Contains(r.CapaAfter, "SASL") || slices.Contains(r.CapaAfter, "STLS") {
		t.Errorf("CAPA after STLS: %q", r.CapaAfter)
	}
	checkPoplibSession(t, r, dir, uids, uv)
	if !srv.log.has("Login: user=<alice>, method=PLAIN, rip=127.0.0.1, lip=127.0.0.1, TLS") {
		t.Errorf("log %q", srv.log.lines())
	}
}
