package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func write(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "posthorn.toml")
	if err := os.WriteFile(p, []byte(body), 0644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestEmptyFileGivesPostfixDefaults(t *testing.T) {
	c, err := Load(write(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	if c.MessageSizeLimit != 10240000 || c.Queue.MinimalBackoff.D() != 300*time.Second ||
		c.Queue.MaximalBackoff.D() != 4000*time.Second || c.Queue.MaximalLifetime.D() != 5*24*time.Hour ||
		c.SMTPD.RecipientLimit != 1000 || c.SMTPD.HardErrorLimit != 20 || c.RecipientDelimiter != "+" {
		t.Fatalf("defaults: %+v", c)
	}
	if !c.IsLocalDomain(c.Hostname) || !c.IsLocalDomain("LOCALHOST.") {
		t.Fatalf("local domains %v", c.LocalDomains)
	}
}

func TestRelativePathsAndExpansion(t *testing.T) {
	p := write(t, `
hostname = "MX.Example.TEST."
spool_directory = "../spool"
[virtual]
domains = ["Example.Test"]
mailbox = "mail/%d/%n"
[smtpd]
banner = "$hostname ready"
`)
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Dir(p)
	if c.SpoolDir != filepath.Join(filepath.Dir(base), "spool") || c.Virtual.Mailbox != filepath.Join(base, "mail/%d/%n") {
		t.Fatalf("paths: %s %s", c.SpoolDir, c.Virtual.Mailbox)
	}
	if c.Hostname != "mx.example.test" || c.SMTPD.Banner != "mx.example.test ready" || !c.IsVirtualDomain("EXAMPLE.test") {
		t.Fatalf("expansion: %q %q %v", c.Hostname, c.SMTPD.Banner, c.Virtual.Domains)
	}
}

func TestErrorsNameTheProblem(t *testing.T) {
	for body, want := range map[string]string{
		"hostnme = \"x\"":                                                 "unknown setting hostnme",
		"[queue]\nminimal_backoff_time = \"soon\"":                        "duration",
		"[queue]\nmaximal_backoff_time = \"1s\"":                          "maximal_backoff_time",
		"message_size_limit = -1":                                         "message_size_limit",
		"[log]\ntarget = \"file\"":                                        "log.target",
		"local_domains = [\"a.test\"]\n[virtual]\ndomains = [\"a.test\"]": "both",
		"hostname = \"a b\"":                                              "not a host name",
		"[imap]\nquota = -1":                                              "imap.quota",
	} {
		_, err := Load(write(t, body))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want it to mention %q", body, err, want)
		}
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"300": 300 * time.Second, "300s": 300 * time.Second, "5m": 5 * time.Minute,
		"5d": 5 * 24 * time.Hour, "1w": 7 * 24 * time.Hour, "1h30m": 90 * time.Minute} {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-5s", "5x", "99999999999999999999d", "1e9w"} {
		if _, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) succeeded", in)
		}
	}
}
