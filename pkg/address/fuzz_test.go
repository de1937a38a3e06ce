package address

import (
	"strings"
	"testing"
)

// checkRoundTrip asserts the properties every parsed address must have:
// canonical text free of line breaks and NUL, within the path limit, and
// parsing back to the same value.
func checkRoundTrip(t *testing.T, in string, m Mailbox) {
	t.Helper()
	if m.IsNull() {
		if m.String() != "" {
			t.Fatalf("null path %q prints as %q", in, m.String())
		}
		return
	}
	s := m.String()
	if strings.ContainsAny(s, "\x00\r\n") {
		t.Fatalf("%q: canonical form %q has NUL, CR or LF", in, s)
	}
	if len(s) > MaxPathLen-2 {
		t.Fatalf("%q: canonical form %q longer than the input allows", in, s)
	}
	back, err := ParseMailbox(s)
	if err != nil {
		t.Fatalf("%q -> %#v -> %q: reparse failed: %v", in, m, s, err)
	}
	if back != m {
		t.Fatalf("%q -> %#v -> %q -> %#v", in, m, s, back)
	}
}

func FuzzParsePath(f *testing.F) {
	for _, s := range []string{
		"<>", "<postmaster>", "<user@example.org>", "<@a,@b:user@dom>",
		`<"victim@other.example"@our.domain>`, `<""@x>`, `<"\"@x">`,
		"<a@[IPv6:::1]>", "<a@[999.1.1.1]>", "<a@[tag:x]>", "<;sleep 66;@x>",
		"<jörg@bücher.example>", "<victim@other.example@our.domain>",
	} {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, in string, smtputf8 bool) {
		m, err := ParsePath(in, smtputf8)
		if err != nil {
			return
		}
		if !smtputf8 {
			for i := 0; i < len(m.Local); i++ {
				if m.Local[i] >= 0x80 {
					t.Fatalf("%q: non-ASCII local part without SMTPUTF8", in)
				}
			}
		}
		checkRoundTrip(t, in, m)
	})
}

func FuzzParseMailbox(f *testing.F) {
	for _, s := range []string{
		"root", "user@example.org", `"a b"@x`, `""@x`, "a@[192.0.2.1]",
		"a@[IPv6:2001:db8::1]", "jörg@bücher.example", `"\\\""@x`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		m, err := ParseMailbox(in)
		if err != nil {
			return
		}
		if m.IsNull() {
			t.Fatalf("ParseMailbox(%q) gave the null path", in)
		}
		checkRoundTrip(t, in, m)
	})
}
