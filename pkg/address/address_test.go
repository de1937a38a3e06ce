package address

import (
	"errors"
	"strings"
	"testing"
)

func TestParsePathValid(t *testing.T) {
	for _, tc := range []struct {
		in           string
		utf8         bool
		local, dom   string
		canonical    string
		wantNullPath bool
	}{
		{in: "<>", wantNullPath: true},
		{in: "<user@example.org>", local: "user", dom: "example.org", canonical: "user@example.org"},
		{in: "<User.Name+tag@Example.ORG>", local: "User.Name+tag", dom: "example.org", canonical: "User.Name+tag@example.org"},
		{in: "<postmaster>", local: "postmaster", canonical: "postmaster"},
		{in: "<PostMaster>", local: "postmaster", canonical: "postmaster"},
		// Source routes are accepted and ignored (RFC 5321 §4.1.1.3, App. C).
		{in: "<@a.example,@b.example:user@c.example>", local: "user", dom: "c.example", canonical: "user@c.example"},
		{in: "<@our.host:victim@other.example>", local: "victim", dom: "other.example", canonical: "victim@other.example"},
		// HOSTILE 22, 24: routing syntax is an ordinary local part.
		{in: "<victim%other.example@our.domain>", local: "victim%other.example", dom: "our.domain", canonical: "victim%other.example@our.domain"},
		{in: "<other.example!victim@our.domain>", local: "other.example!victim", dom: "our.domain", canonical: "other.example!victim@our.domain"},
		// HOSTILE 25: quoted local parts are unquoted once.
		{in: `<"victim@other.example"@our.domain>`, local: "victim@other.example", dom: "our.domain", canonical: `"victim@other.example"@our.domain`},
		{in: `<"a..b"@x>`, local: "a..b", dom: "x", canonical: `"a..b"@x`},
		{in: `<""@x>`, local: "", dom: "x", canonical: `""@x`},
		// HOSTILE 27: '$', '{', '}' and '/' are atext; parsing is harmless
		// because no address ever reaches a shell or an expansion language.
		{in: "<${run{/bin/sh}}@local>", local: "${run{/bin/sh}}", dom: "local", canonical: "${run{/bin/sh}}@local"},
		{in: `<"a\"b\\c d"@x>`, local: `a"b\c d`, dom: "x", canonical: `"a\"b\\c d"@x`},
		{in: `<"plain"@x>`, local: "plain", dom: "x", canonical: "plain@x"},
		{in: `<"\p\l"@x>`, local: "pl", dom: "x", canonical: "pl@x"},
		{in: `<"a>b"@x>`, local: "a>b", dom: "x", canonical: `"a>b"@x`},
		// HOSTILE 27: shell metacharacters survive only quoted.
		{in: `<";sleep 66;"@x>`, local: ";sleep 66;", dom: "x", canonical: `";sleep 66;"@x`},
		{in: "<-oQ/tmp@x>", local: "-oQ/tmp", dom: "x", canonical: "-oQ/tmp@x"},
		// HOSTILE 26: address literals.
		{in: "<postmaster@[192.0.2.1]>", local: "postmaster", dom: "[192.0.2.1]", canonical: "postmaster@[192.0.2.1]"},
		{in: "<a@[IPv6:::1]>", local: "a", dom: "[IPv6:::1]", canonical: "a@[IPv6:::1]"},
		{in: "<a@[ipv6:2001:DB8::1]>", local: "a", dom: "[IPv6:2001:db8::1]", canonical: "a@[IPv6:2001:db8::1]"},
		{in: "<a@[IPv6:::ffff:192.0.2.1]>", local: "a", dom: "[IPv6:::ffff:192.0.2.1]", canonical: "a@[IPv6:::ffff:192.0.2.1]"},
		{in: "<a@b>", local: "a", dom: "b", canonical: "a@b"},
		{in: "<a@xn--bcher-kva.example>", local: "a", dom: "xn--bcher-kva.example", canonical: "a@xn--bcher-kva.example"},
		{in: "<a-b@1-2.3>", local: "a-b", dom: "1-2.3", canonical: "a-b@1-2.3"},
		// RFC 6531: UTF-8 with SMTPUTF8.
		{in: "<jörg@bücher.example>", utf8: true, local: "jörg", dom: "bücher.example", canonical: "jörg@bücher.example"},
		{in: "<用户@例子.广告>", utf8: true, local: "用户", dom: "例子.广告", canonical: "用户@例子.广告"},
		{in: `<"jö rg"@X.example>`, utf8: true, local: "jö rg", dom: "x.example", canonical: `"jö rg"@x.example`},
	} {
		m, err := ParsePath(tc.in, tc.utf8)
		if err != nil {
			t.Errorf("ParsePath(%q): %v", tc.in, err)
			continue
		}
		if tc.wantNullPath {
			if !m.IsNull() || m.String() != "" {
				t.Errorf("ParsePath(%q) = %#v, want null path", tc.in, m)
			}
			continue
		}
		if m.IsNull() {
			t.Errorf("ParsePath(%q) is null", tc.in)
		}
		if m.Local != tc.local || m.Domain != tc.dom {
			t.Errorf("ParsePath(%q) = %#v, want local %q domain %q", tc.in, m, tc.local, tc.dom)
		}
		if got := m.String(); got != tc.canonical {
			t.Errorf("ParsePath(%q).String() = %q, want %q", tc.in, got, tc.canonical)
		}
		back, err := ParseMailbox(m.String())
		if err != nil || back != m {
			t.Errorf("ParseMailbox(%q) = %#v, %v; want %#v", m.String(), back, err, m)
		}
	}
}

func TestParsePathInvalid(t *testing.T) {
	long64 := strings.Repeat("a", 64)
	long65 := strings.Repeat("a", 65)
	label63 := strings.Repeat("b", 63)
	for _, in := range []string{
		"",
		"<",
		">",
		"user@example.org",
		"<user@example.org",
		"< user@example.org>",
		"<user@example.org >",
		"<user>",
		"<postmaster@>",
		`<"postmaster">`,
		"<@>",
		"<@a.example>",
		"<@a.example:>",
		"<@a.example,b.example:u@x>",
		"<poſtmaster>", // U+017F folds to 's' in Unicode, not in SMTP
		"<@a.example:postmaster>",
		"<@-a.example:u@x>",
		"<user@>",
		"<@example.org>",
		"<.user@x>",
		"<user.@x>",
		"<us..er@x>",
		"<us er@x>",
		"<user@-x.example>",
		"<user@x-.example>",
		"<user@x..example>",
		"<user@x.example.>",
		"<user@.x.example>",
		"<user@x_y.example>",
		// HOSTILE 24: a second '@' is never routing.
		"<victim@other.example@our.domain>",
		// HOSTILE 27: metacharacters outside quotes are not atext.
		"<;sleep 66;@x>",
		// HOSTILE 25: the escaped quote leaves "@x" inside the quoted
		// string, so there is no domain.
		`<"\"@x">`,
		"<a(comment)@x>",
		"<a@x(comment)>",
		// Quoted strings.
		`<"unterminated@x>`,
		`<"a\`,
		`<"a"b@x>`,
		`<a"b"@x>`,
		`<"a"@"b">`,
		// HOSTILE 25: limits.
		"<" + long65 + "@x>",
		`<"` + long64 + `"@x>`, // the quotes count: 66 octets on the wire
		"<a@" + label63 + "b.example>",
		"<a@" + strings.Repeat(label63+".", 4) + "x>",
		"<" + long64 + "@" + strings.Repeat(label63+".", 3) + "ccccccccccccccccccccccccccc>",
		// HOSTILE 26: malformed address literals.
		"<a@[999.1.1.1]>",
		"<a@[1.1.1]>",
		"<a@[1.1.1.1.1]>",
		"<a@[1.1.1.0001]>",
		"<a@[1.1.1.-1]>",
		"<a@[]>",
		"<a@[tag:x]>",
		"<a@[IPv6:1.2.3.4]>",
		"<a@[IPv6:::1%eth0]>",
		"<a@[IPv6:::g]>",
		"<a@[IPv6:1:2:3:4:5:6:7:8:9]>",
		"<a@[192.0.2.1>",
		"<a@[192.0.2.1]x>",
		"<a@[192.0.2.1].example>",
		// Controls: never in an address.
		"<a\x00b@x>",
		"<a@x\r\nRCPT TO:<b@y>>",
		"<a\n@x>",
		"<a\t@x>",
		"<\"a\x00\"@x>",
		"<\"a\x7f\"@x>",
		"<\"a\\\x01\"@x>",
	} {
		if m, err := ParsePath(in, true); err == nil {
			t.Errorf("ParsePath(%q) = %#v, want error", in, m)
		} else if !errors.Is(err, ErrSyntax) {
			t.Errorf("ParsePath(%q) error %v does not wrap ErrSyntax", in, err)
		}
	}
}

func TestLimitsBoundary(t *testing.T) {
	long64 := strings.Repeat("a", 64)
	if _, err := ParsePath("<"+long64+"@x>", false); err != nil {
		t.Errorf("64-octet local part: %v", err)
	}
	// A path of exactly 256 octets passes, 257 fails.
	label := strings.Repeat("d", 60)
	dom := label + "." + label + "." + label + "." // 183
	base := "<" + long64 + "@" + dom + ">"         // 250 without the last label
	last := strings.Repeat("e", 256-len(base))
	at256 := "<" + long64 + "@" + dom + last + ">"
	if len(at256) != 256 {
		t.Fatalf("test setup: path is %d octets", len(at256))
	}
	if _, err := ParsePath(at256, false); err != nil {
		t.Errorf("256-octet path: %v", err)
	}
	at257 := "<" + long64 + "@" + dom + last + "e>"
	if _, err := ParsePath(at257, false); !errors.Is(err, ErrSyntax) {
		t.Errorf("257-octet path: err %v", err)
	}
	// Domain limit: 255 octets in a bare address.
	d255 := strings.Repeat(strings.Repeat("c", 63)+".", 3) + strings.Repeat("c", 63)
	if len(d255) != 255 {
		t.Fatalf("test setup: domain is %d", len(d255))
	}
	if _, err := ParseMailbox("a@" + d255[:250]); err != nil {
		t.Errorf("250-octet domain: %v", err)
	}
	if _, err := ParseMailbox("a@" + d255 + "x"); err == nil {
		t.Errorf("256-octet domain accepted")
	}
}

func TestNeedSMTPUTF8(t *testing.T) {
	for _, in := range []string{"<jörg@example.org>", "<user@bücher.example>", `<"jö"@x>`, "<a@b\xff>"} {
		if _, err := ParsePath(in, false); !errors.Is(err, ErrNeedSMTPUTF8) {
			t.Errorf("ParsePath(%q, false) error %v, want ErrNeedSMTPUTF8", in, err)
		}
	}
	// With SMTPUTF8 the text must still be valid UTF-8 and free of controls.
	for _, in := range []string{"<a@b\xff>", "<\xc3@x>", "<a\u0085b@x>", "<a\u00a0b@x>", "<a@b\u2028c>", "<\"a\u0085\"@x>"} {
		if _, err := ParsePath(in, true); !errors.Is(err, ErrSyntax) {
			t.Errorf("ParsePath(%q, true) error %v, want ErrSyntax", in, err)
		}
	}
}

func TestParseMailbox(t *testing.T) {
	for in, want := range map[string]Mailbox{
		"root":                   {Local: "root"},
		"Postmaster":             {Local: "Postmaster"},
		"user@Example.ORG":       {Local: "user", Domain: "example.org"},
		`"a b"@x`:                {Local: "a b", Domain: "x"},
		`"a b"`:                  {Local: "a b"},
		"jörg@bücher.example":    {Local: "jörg", Domain: "bücher.example"},
		"victim%other@our.dom":   {Local: "victim%other", Domain: "our.dom"},
		"postmaster@[192.0.2.1]": {Local: "postmaster", Domain: "[192.0.2.1]"},
		`"\"@x"`:                 {Local: `"@x`},
	} {
		got, err := ParseMailbox(in)
		if err != nil || got != want {
			t.Errorf("ParseMailbox(%q) = %#v, %v; want %#v", in, got, err, want)
		}
	}
	for _, in := range []string{"", `""`, "<user@x>", "@x", "a@", "a@b@c", "a b", "@a:b@c", "a@b\n", "a\x00"} {
		if m, err := ParseMailbox(in); err == nil {
			t.Errorf("ParseMailbox(%q) = %#v, want error", in, m)
		}
	}
}

func TestStringQuoting(t *testing.T) {
	for m, want := range map[Mailbox]string{
		{}:                               "",
		{Local: "a", Domain: "x"}:        "a@x",
		{Local: "", Domain: "x"}:         `""@x`,
		{Local: "a b", Domain: "x"}:      `"a b"@x`,
		{Local: `a"b`, Domain: "x"}:      `"a\"b"@x`,
		{Local: `a\b`, Domain: "x"}:      `"a\\b"@x`,
		{Local: ".a", Domain: "x"}:       `".a"@x`,
		{Local: "a.", Domain: "x"}:       `"a."@x`,
		{Local: "a@b", Domain: "x"}:      `"a@b"@x`,
		{Local: ";sleep 1;", Domain: ""}: `";sleep 1;"`,
		{Local: "postmaster"}:            "postmaster",
	} {
		if got := m.String(); got != want {
			t.Errorf("%#v.String() = %q, want %q", m, got, want)
		}
	}
	if d := (Mailbox{Local: "a", Domain: "EXAMPLE.org"}).DomainLower(); d != "example.org" {
		t.Errorf("DomainLower = %q", d)
	}
}
