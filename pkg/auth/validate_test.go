package auth

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/posthorn/posthorn/pkg/userdb"
)

func TestValidUsername(t *testing.T) {
	for _, name := range []string{
		"alice", "alice@example.org", "Alice.Smith@Example.ORG", "o'brien@example.org",
		"a+tag@example.org", "j_doe", "user-1", "x!#$&'*+=?^_`{|}~-y@example.org",
		"jörg@example.de", "用户@example.cn", "amélie", // any script (RFC 6531)
		"a\u0301lice", // a combining mark
		strings.Repeat("a", 64) + "@" + strings.Repeat("b", 255),
		"host$", // Samba-style machine accounts exist
	} {
		if err := ValidUsername(name); err != nil {
			t.Errorf("ValidUsername(%q) = %v", name, err)
		}
	}
	for _, name := range []string{
		"", "%u", "%{user}", "%n@example.org", "a%b", "%", // Dovecot variables (CVE-2017-2669)
		"' OR '1'='1", "alice' --", "*)(uid=*)", "admin)(|(uid=*", // SQL, LDAP (HOSTILE 34)
		"al\xffice", "\xc3", "a\xed\xa0\x80b", // invalid UTF-8 (CVE-2019-10691), a surrogate
		"ali\x00ce", "alice\r", "alice\n", "alice\t", "a\x7fb", "a\u0085b", // control characters
		"a\u202eb", "a\u200bb", "a\ufeffb", // bidi override, zero width: not letters
		"a b", "a,b", "a(b)", "a<b>", "a[b]", "a:b", "a;b", `a"b`, `a\b`, "a/b", "../etc/passwd",
		"-rf", ".alice", "alice.", "a..b", "a@b@c", "alice@", "@example.org",
		"alice@-example.org", "alice@example..org", "alice@.example.org", "alice@example.org.",
		"alice@exa_mple.org", "alice@exämple.org", "alice@ex ample.org",
		strings.Repeat("a", MaxUsernameLength+1),
		strings.Repeat("a", 64) + "@" + strings.Repeat("b", 256),
	} {
		if err := ValidUsername(name); err == nil {
			t.Errorf("ValidUsername(%q) = nil", name)
		}
	}
}

// Every name posthorn user add accepts can log in.
func TestValidUsernameAcceptsUserdbNames(t *testing.T) {
	for _, name := range []string{"alice@example.org", "x!#$&'*+=?^_`{|}~-y@example.org", "a.b-c@d-e.f"} {
		if userdb.ValidateName(name) != nil {
			t.Fatalf("userdb refuses %q: fix the test", name)
		}
		if err := ValidUsername(name); err != nil {
			t.Errorf("%q: %v", name, err)
		}
	}
}

func TestLogName(t *testing.T) {
	for in, want := range map[string]string{
		"alice@example.org":         "alice@example.org",
		"jörg":                      "jörg",
		"a,192.0.2.9":               "a?192.0.2.9",
		"x) user=<y>, rip=10.0.0.1": "x??user??y???rip?10.0.0.1",
		"al\xffice":                 "al?ice",
		"":                          "",
		strings.Repeat("%", 100):    strings.Repeat("?", maxLoggedName) + "...",
	} {
		if got := logName(in); got != want {
			t.Errorf("logName(%q) = %q, want %q", in, got, want)
		}
	}
}

// separators are the characters that end a field in the log lines the
// fail2ban filters parse.
const separators = " \t,()<>[]:;\"\\%\r\n\x00"

// FuzzValidUsername: an accepted name holds no separator and no control
// character, and logName never lets one through, whatever the input.
func FuzzValidUsername(f *testing.F) {
	for _, s := range []string{"alice@example.org", "%u", "a,1.2.3.4", "jörg", "al\xffice", "a\u0085b", "-x", "a..b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if ValidUsername(name) == nil {
			if !utf8.ValidString(name) || len(name) > MaxUsernameLength || strings.ContainsAny(name, separators) {
				t.Fatalf("accepted %q", name)
			}
			for _, r := range name {
				if r < 0x20 || r >= 0x7f && r < 0xa0 {
					t.Fatalf("accepted %q with a control character", name)
				}
			}
		}
		l := logName(name)
		if strings.ContainsAny(l, separators) || !utf8.ValidString(l) {
			t.Fatalf("logName(%q) = %q", name, l)
		}
	})
}
