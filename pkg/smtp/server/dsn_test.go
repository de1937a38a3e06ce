package server

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestDecodeXtext(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"abc", "abc", true},
		{"a+2Bb+3Dc", "a+b=c", true},
		{"a+2bb", "a+b", true}, // lower-case hex is tolerated
		{"+41+42", "AB", true},
		{"", "", true},
		{"a b", "", false},
		{"a=b", "", false},
		{"a+", "", false},
		{"a+4", "", false},
		{"a+4G", "", false},
		{"a+G4", "", false},
		{"a\x7fb", "", false},
		{"é", "", false},
		// HOSTILE 28: controls hidden in the encoding.
		{"a+0D+0AInjected:+20x", "", false},
		{"+00", "", false},
		{"+09", "", false},
		{"+7F", "", false},
		{"+C3+A9", "\xc3\xa9", true},
	} {
		got, err := DecodeXtext(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("DecodeXtext(%q) = %q, %v; want %q ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
	if got := EncodeXtext("a+b=c d\x01é"); got != "a+2Bb+3Dc+20d+01+C3+A9" {
		t.Errorf("EncodeXtext = %q", got)
	}
}

func TestParseDSNValues(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"NEVER", "NEVER", true},
		{"never", "NEVER", true},
		{"SUCCESS", "SUCCESS", true},
		{"delay,Failure,SUCCESS", "SUCCESS,FAILURE,DELAY", true},
		{"FAILURE,DELAY", "FAILURE,DELAY", true},
		{"NEVER,SUCCESS", "", false},
		{"SUCCESS,SUCCESS", "", false},
		{"SUCCESS,", "", false},
		{",", "", false},
		{"", "", false},
		{"ALWAYS", "", false},
		{"ſUCCESS", "", false}, // long s is not S
	} {
		got, ok := ParseNotify(tc.in)
		if ok != tc.ok || got != tc.want {
			t.Errorf("ParseNotify(%q) = %q, %v", tc.in, got, ok)
		}
	}
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"rfc822;alice@example.org", "rfc822;alice@example.org", true},
		{"RFC822;bob+2Blists@example.org", "rfc822;bob+lists@example.org", true},
		{"rfc822;+22a+20b+22@example.org", `rfc822;"a b"@example.org`, true},
		{"utf-8;j+C3+B6rg@example.org", "utf-8;jörg@example.org", true},
		{"rfc822;j+C3+B6rg@example.org", "", false},
		{"utf-8;+FF@example.org", "", false},
		{"rfc822;a+0D+0AX-Injected:+201@example.org", "", false},
		{"rfc822;", "", false},
		{";a@b", "", false},
		{"rfc822", "", false},
		{"rf(c;a@b", "", false},
		{"rfc822;" + strings.Repeat("a", MaxORCPTLen), "rfc822;" + strings.Repeat("a", MaxORCPTLen), true},
		{"rfc822;" + strings.Repeat("a", MaxORCPTLen+1), "", false},
	} {
		got, ok := ParseORCPT(tc.in)
		if ok != tc.ok || got != tc.want {
			t.Errorf("ParseORCPT(%q) = %q, %v", tc.in, got, ok)
		}
	}
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"QQ314159", "QQ314159", true},
		{"id+20with+20blanks", "id with blanks", true},
		{strings.Repeat("x", MaxEnvIDLen), strings.Repeat("x", MaxEnvIDLen), true},
		{strings.Repeat("x", MaxEnvIDLen+1), "", false},
		{"a+0Ab", "", false},
		{"+C3+A9", "", false},
		{"", "", false},
	} {
		got, ok := ParseEnvID(tc.in)
		if ok != tc.ok || got != tc.want {
			t.Errorf("ParseEnvID(%q) = %q, %v", tc.in, got, ok)
		}
	}
	for in, want := range map[string]string{"full": "FULL", "HDRS": "HDRS", "hdrs": "HDRS", "": "", "PARTIAL": ""} {
		if got, ok := ParseRet(in); got != want || ok != (want != "") {
			t.Errorf("ParseRet(%q) = %q, %v", in, got, ok)
		}
	}
}

func TestDSNParameters(t *testing.T) {
	cfg := testConfig()
	cfg.HardErrorLimit = 100
	be := newBackend()
	ts := startServer(t, cfg, be)
	c := ts.session()
	for _, tc := range []struct{ cmd, want string }{
		{"MAIL FROM:<a@example.org> RET=PARTIAL", "501 5.5.4 Bad RET parameter syntax"},
		{"MAIL FROM:<a@example.org> RET", "501 5.5.4 Bad RET parameter syntax"},
		{"MAIL FROM:<a@example.org> RET=FULL RET=HDRS", "501 5.5.4 Error: duplicate RET parameter"},
		{"MAIL FROM:<a@example.org> ENVID=a+0D+0AX:+20y", "501 5.5.4 Bad ENVID parameter syntax"},
		{"MAIL FROM:<a@example.org> ENVID=" + strings.Repeat("e", MaxEnvIDLen+1), "501 5.5.4 Bad ENVID parameter syntax"},
		{"MAIL FROM:<a@example.org> ENVID=a+b", "501 5.5.4 Bad ENVID parameter syntax"},
	} {
		c.cmd(tc.cmd, tc.want)
	}
	c.cmd("MAIL FROM:<a@example.org> ret=hdrs ENVID=QQ+2B314159", "250 2.1.0")
	for _, tc := range []struct{ cmd, want string }{
		{"RCPT TO:<b@example.test> NOTIFY=NEVER,SUCCESS", "501 5.5.4 Error: Bad NOTIFY parameter syntax"},
		{"RCPT TO:<b@example.test> NOTIFY", "501 5.5.4 Error: Bad NOTIFY parameter syntax"},
		{"RCPT TO:<b@example.test> NOTIFY=NEVER NOTIFY=NEVER", "501 5.5.4 Error: duplicate NOTIFY parameter"},
		{"RCPT TO:<b@example.test> ORCPT=rfc822;a+0D+0AX-Injected:+201", "501 5.5.4 Error: Bad ORCPT parameter syntax"},
		{"RCPT TO:<b@example.test> ORCPT=rfc822;a+00b", "501 5.5.4 Error: Bad ORCPT parameter syntax"},
		{"RCPT TO:<b@example.test> ORCPT=rfc822;" + strings.Repeat("o", MaxORCPTLen+1), "501 5.5.4 Error: Bad ORCPT parameter syntax"},
		{"RCPT TO:<b@example.test> ORCPT=b@example.test", "501 5.5.4 Error: Bad ORCPT parameter syntax"},
	} {
		c.cmd(tc.cmd, tc.want)
	}
	c.cmd("RCPT TO:<b@example.test> NOTIFY=failure,success ORCPT=rfc822;B+2Bx@Example.TEST", "250 2.1.5")
	c.cmd("RCPT TO:<c@example.test> NOTIFY=never", "250 2.1.5")
	c.cmd("RCPT TO:<d@example.test>", "250 2.1.5")
	c.cmd("DATA", "354")
	c.send("x\r\n.\r\n")
	c.expect("250 2.0.0 Ok: queued as")
	m := be.committed()[0]
	if m.env.Ret != "HDRS" || m.env.EnvID != "QQ+314159" {
		t.Errorf("RET %q ENVID %q", m.env.Ret, m.env.EnvID)
	}
	want := []Recipient{
		{Notify: "SUCCESS,FAILURE", ORCPT: "rfc822;B+x@Example.TEST"},
		{Notify: "NEVER"},
		{},
	}
	for i, r := range m.rcpts {
		if r.Notify != want[i].Notify || r.ORCPT != want[i].ORCPT {
			t.Errorf("recipient %d: %+v, want %+v", i, r, want[i])
		}
	}
}

func FuzzDSNParams(f *testing.F) {
	for _, s := range []string{
		"rfc822;alice@example.org", "utf-8;j+C3+B6rg@example.org", "a+0D+0Ab", "NEVER",
		"SUCCESS,FAILURE,DELAY", "+", "+2", "+2B", "QQ314159", "FULL", "rfc822;+22a+20b+22@x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		if d, err := DecodeXtext(v); err == nil {
			if hasControl(d) {
				t.Fatalf("DecodeXtext(%q) = %q with a control character", v, d)
			}
			if back, err := DecodeXtext(EncodeXtext(d)); err != nil || back != d {
				t.Fatalf("round trip of %q: %q, %v", d, back, err)
			}
		}
		if o, ok := ParseORCPT(v); ok {
			typ, addr, found := strings.Cut(o, ";")
			if !found || typ == "" || addr == "" || len(addr) > MaxORCPTLen || hasControl(o) || !utf8.ValidString(o) {
				t.Fatalf("ParseORCPT(%q) = %q", v, o)
			}
		}
		if e, ok := ParseEnvID(v); ok && (len(e) > MaxEnvIDLen || !printableASCII(e) || e == "") {
			t.Fatalf("ParseEnvID(%q) = %q", v, e)
		}
		if n, ok := ParseNotify(v); ok {
			if n != "NEVER" {
				if again, ok := ParseNotify(n); !ok || again != n {
					t.Fatalf("ParseNotify(%q) = %q is not canonical", v, n)
				}
			}
			if strings.Contains(n, "NEVER") && n != "NEVER" {
				t.Fatalf("ParseNotify(%q) = %q", v, n)
			}
		}
		if r, ok := ParseRet(v); ok && r != "FULL" && r != "HDRS" {
			t.Fatalf("ParseRet(%q) = %q", v, r)
		}
	})
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}
