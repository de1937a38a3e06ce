package utf7

import (
	"testing"
	"unicode/utf8"
)

func TestRoundTrip(t *testing.T) {
	cases := map[string]string{
		"INBOX":              "INBOX",
		"&":                  "&-",
		"a&b":                "a&-b",
		"Entwürfe":           "Entw&APw-rfe",
		"台北":                 "&U,BTFw-",
		"日本語":                "&ZeVnLIqe-",
		"~peter/mail/台北/日本語": "~peter/mail/&U,BTFw-/&ZeVnLIqe-",
		"😀":                  "&2D3eAA-",
		"a\tb":               "a&AAk-b",
	}
	for utf, m := range cases {
		got, err := Encode(utf)
		if err != nil || got != m {
			t.Errorf("Encode(%q) = %q, %v; want %q", utf, got, err, m)
		}
		back, err := Decode(m)
		if err != nil || back != utf {
			t.Errorf("Decode(%q) = %q, %v; want %q", m, back, err, utf)
		}
	}
}

// HOSTILE 43: malformed modified UTF-7 is refused, never passed on.
func TestDecodeRejects(t *testing.T) {
	for _, s := range []string{
		"&",                  // unterminated
		"&Jjo",               // unterminated run
		"&Jjo!",              // bad base64 character, unterminated
		"&U,BTFw-&ZeVnLIqe-", // needless shift: adjacent runs
		"&AGE-",              // "a" encoded
		"&ACY-",              // "&" encoded
		"p\xe4\xe4",          // raw 8-bit
		"a\x00b",             // NUL
		"a\rb",               // CR
		"&2D0-",              // lone high surrogate
		"&3gA-",              // lone low surrogate
		"&2D3YPQ-",           // high surrogate followed by high surrogate
		"&U,BTFx-",           // non-zero padding bits
		"&U,BTF-",            // truncated UTF-16 unit
	} {
		if got, err := Decode(s); err == nil {
			t.Errorf("Decode(%q) = %q, want error", s, got)
		}
	}
}

func TestEncodeInvalidUTF8(t *testing.T) {
	if _, err := Encode("a\xffb"); err == nil {
		t.Fatal("Encode accepted invalid UTF-8")
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{"INBOX", "&-", "&U,BTFw-", "&ZeVnLIqe-", "&", "&Jjo!", "&U,BTFw-&ZeVnLIqe-", "p\xe4\xe4", "&2D3eAA-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := Decode(s)
		if err != nil {
			return
		}
		if !utf8.ValidString(u) {
			t.Fatalf("Decode(%q) gave invalid UTF-8 %q", s, u)
		}
		// Canonical: re-encoding gives the input back.
		m, err := Encode(u)
		if err != nil || m != s {
			t.Fatalf("Encode(Decode(%q)) = %q, %v", s, m, err)
		}
	})
}

func FuzzEncode(f *testing.F) {
	for _, s := range []string{"INBOX", "&", "Entwürfe", "台北", "😀", "a\tb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := Encode(s)
		if err != nil {
			if utf8.ValidString(s) {
				t.Fatalf("Encode(%q): %v", s, err)
			}
			return
		}
		u, err := Decode(m)
		if err != nil || u != s {
			t.Fatalf("Decode(Encode(%q)=%q) = %q, %v", s, m, u, err)
		}
	})
}
