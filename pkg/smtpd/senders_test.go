package smtpd

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/pkg/address"
	"github.com/posthorn/posthorn/pkg/config"
)

func TestParseSenderMap(t *testing.T) {
	m, err := parseSenderMap(strings.NewReader(`# who may send as whom
Sales@Example.ORG   alice@example.org, Bob@example.org

	carol
@example.net	dave
info@example.net dave,erin ,  frank
`))
	if err != nil {
		t.Fatal(err)
	}
	want := senderMap{
		"sales@example.org": {"alice@example.org", "bob@example.org", "carol"},
		"@example.net":      {"dave"},
		"info@example.net":  {"dave", "erin", "frank"},
	}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("got %v\nwant %v", m, want)
	}
	for _, tc := range []struct{ in, err string }{
		{"a@b\n", "line 1: a@b has no owner"},
		{"nodomain alice\n", "line 1: \"nodomain\" is neither an address nor @domain"},
		{"a@ alice\n", "neither an address nor @domain"},
		{"a@b x\nA@B y\n", "line 2: A@B is listed twice"},
		{" alice\n", "line 1: continuation line without an entry"},
		{"a@b x\x00y\n", "line 1: control character"},
		{"a@b x\r\ny@z\n", "line 2: y@z has no owner"},
		{"a@b " + strings.Repeat("x", maxSenderMapLine) + "\n", "line 1: longer than"},
		{"a@b " + strings.Repeat("x,", maxSenderMapOwners+1) + "\n", "more than 1000 owners"},
	} {
		if _, err := parseSenderMap(strings.NewReader(tc.in)); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%.40q: error %v, want %q", tc.in, err, tc.err)
		}
	}
	var b strings.Builder
	for i := 0; i <= maxSenderMapEntries; i++ {
		fmt.Fprintf(&b, "u%d@example.org x\n", i)
	}
	if _, err := parseSenderMap(strings.NewReader(b.String())); err == nil || !strings.Contains(err.Error(), "more than 100000 entries") {
		t.Errorf("entry limit: %v", err)
	}
	// CRLF files and a last line without its end are fine.
	if m, err := parseSenderMap(strings.NewReader("a@b x\r\nc@d y")); err != nil || len(m) != 2 {
		t.Errorf("%v %v", m, err)
	}
}

func TestCheckSenderOwner(t *testing.T) {
	cfg := config.Defaults()
	cfg.LocalDomains = []string{"mail.example.test", "localhost"}
	cfg.Virtual.Domains = []string{"example.test"}
	m := senderMap{
		"sales@example.test": {"alice@example.test"},
		"@shared.example":    {"bob"},
	}
	for _, tc := range []struct {
		login, from string
		ok          bool
	}{
		{"alice@example.test", "alice@example.test", true},
		{"Alice@Example.test", "ALICE@example.TEST", true},
		{"alice@example.test", "alice+lists@example.test", true},
		{"alice@example.test", "bob@example.test", false},
		{"alice@example.test", "alice@elsewhere.example", false},
		{"alice@example.test", "sales@example.test", true},
		{"bob@example.test", "sales@example.test", false},
		// A listed sender belongs to the listed logins only, even the
		// virtual user of that name.
		{"sales@example.test", "sales@example.test", false},
		{"bob", "anyone@shared.example", true},
		{"alice@example.test", "anyone@shared.example", false},
		// System users: user@ each local domain.
		{"bob", "bob@mail.example.test", true},
		{"bob", "bob@localhost", true},
		{"bob", "bob+x@localhost", true},
		{"bob", "bob@example.test", false},
		{"bob", "root@localhost", false},
		// The null sender is always allowed.
		{"bob", "", true},
		// Tricks that must not pass as alice's address.
		{"alice@example.test", `"alice@example.test"@evil.example`, false},
		{"alice@example.test", "alice@example.test.evil.example", false},
	} {
		from := address.Mailbox{}
		if tc.from != "" {
			var err error
			if from, err = address.ParseMailbox(tc.from); err != nil {
				t.Fatalf("%s: %v", tc.from, err)
			}
		}
		if err := checkSenderOwner(cfg, m, tc.login, from); (err == nil) != tc.ok {
			t.Errorf("login %s, sender <%s>: %v, want ok=%v", tc.login, tc.from, err, tc.ok)
		}
	}
}

func TestSenderMapFileReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "senders")
	var warnings []string
	warn := func(format string, args ...any) { warnings = append(warnings, fmt.Sprintf(format, args...)) }
	f := &senderMapFile{path: path}
	if _, err := f.get(warn); err == nil || len(warnings) != 1 {
		t.Fatalf("missing file: %v %q", err, warnings)
	}
	if _, err := f.get(warn); err == nil || len(warnings) != 1 {
		t.Fatalf("the same failure warned twice: %q", warnings)
	}
	if err := os.WriteFile(path, []byte("a@b x\n"), 0644); err != nil {
		t.Fatal(err)
	}
	m, err := f.get(warn)
	if err != nil || len(m["a@b"]) != 1 {
		t.Fatalf("%v %v", m, err)
	}
	// A broken edit keeps the good version.
	if err := os.WriteFile(path, []byte("a@b\n"), 0644); err != nil {
		t.Fatal(err)
	}
	f.checked = time.Time{}
	m, err = f.get(warn)
	if err != nil || len(m["a@b"]) != 1 || len(warnings) != 2 || !strings.Contains(warnings[1], "keeping the version read before") {
		t.Fatalf("%v %v %q", m, err, warnings)
	}
	// A good edit is picked up.
	if err := os.WriteFile(path, []byte("c@d y, z\n"), 0644); err != nil {
		t.Fatal(err)
	}
	f.checked = time.Time{}
	if m, err = f.get(warn); err != nil || len(m["c@d"]) != 2 || m["a@b"] != nil {
		t.Fatalf("%v %v", m, err)
	}
}

func FuzzSenderLoginMap(f *testing.F) {
	for _, s := range []string{
		"sales@example.org alice@example.org, bob\n\tcarol\n# c\n@example.net dave\n",
		"a@b x\r\nc@d y", " x\n", "a@b\n", "a@b x\na@b y\n", "@ x\n", "a@b x\x00\n", "a@b ,,, ,\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := parseSenderMap(strings.NewReader(string(in)))
		if err != nil {
			return
		}
		for k, owners := range m {
			if k != strings.ToLower(k) || !strings.Contains(k, "@") || strings.HasSuffix(k, "@") || len(owners) == 0 {
				t.Fatalf("%q: entry %q %q", in, k, owners)
			}
			if strings.ContainsAny(k, " \t,\r\n") {
				t.Fatalf("%q: key %q", in, k)
			}
			for _, o := range owners {
				if o == "" || strings.ContainsAny(o, " \t,\r\n") || o != strings.ToLower(o) {
					t.Fatalf("%q: owner %q", in, o)
				}
			}
		}
	})
}
