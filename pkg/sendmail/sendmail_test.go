package sendmail

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseFlags(t *testing.T) {
	o, err := Parse("sendmail", []string{"-t", "-oi", "-f", "<a@b>", "-FCron Daemon", "-C/etc/x.toml", "-N", "success,failure",
		"-R", "hdrs", "-V", "env1", "-oem", "-B8BITMIME", "-h", "5", "-q1h", "--", "plain@x"})
	if err != nil {
		t.Fatal(err)
	}
	if !o.ExtractRcpt || !o.IgnoreDots || o.Sender != "a@b" || !o.SenderSet || o.FullName != "Cron Daemon" ||
		o.Config != "/etc/x.toml" || o.Notify != "success,failure" || o.Ret != "hdrs" || o.EnvID != "env1" ||
		o.Mode != ModeFlush || len(o.Recipients) != 1 || o.Recipients[0] != "plain@x" {
		t.Fatalf("parsed %+v", o)
	}
	for prog, mode := range map[string]Mode{"mailq": ModeQueueList, "newaliases": ModeNewaliases, "sendmail": ModeDeliver} {
		if o, _ := Parse(prog, nil); o.Mode != mode {
			t.Errorf("%s: mode %v", prog, o.Mode)
		}
	}
	for _, bad := range [][]string{{"-Z"}, {"-f"}, {"-bz"}, {"-F", "a\nb"}, {"a\r\n@b"}, {"-fx\x00"},
		// Postfix: recipients must not start with '-', to protect commands.
		{"--", "-oQ@x"}} {
		if _, err := Parse("sendmail", bad); !errors.Is(err, ErrUsage) {
			t.Errorf("%q: %v", bad, err)
		}
	}
	if o, err := Parse("sendmail", []string{"-f", "<>", "x@y"}); err != nil || o.Sender != "" || !o.SenderSet {
		t.Errorf("null sender: %+v %v", o, err)
	}
}

func TestPrepare(t *testing.T) {
	o := &Options{ExtractRcpt: true, FullName: "A \"B\" C"}
	now := time.Date(2026, 11, 26, 15, 0, 0, 0, time.UTC)
	p, err := Prepare(o, strings.NewReader("To: x@a, \"Y\" <y@b>\r\nCc: z@c\r\nBcc: secret@d\r\n\r\nbody\r\n.\r\nmore"), "me@h", "h", 1<<20, now)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(p.Recipients, " ") != "x@a y@b z@c secret@d" {
		t.Fatalf("recipients %v", p.Recipients)
	}
	c := string(p.Content)
	for _, want := range []string{"From: \"A \\\"B\\\" C\" <me@h>\n", "Date: Thu, 26 Nov 2026 15:00:00 +0000\n", "Message-Id: <", "To: x@a", "\nbody\n"} {
		if !strings.Contains(c, want) {
			t.Errorf("content lacks %q:\n%s", want, c)
		}
	}
	if strings.Contains(c, "Bcc") || strings.Contains(c, "more") || strings.Contains(c, "\r") {
		t.Errorf("content:\n%s", c)
	}
	if _, err := Prepare(&Options{ExtractRcpt: true}, strings.NewReader("Subject: x\n\nbody\n"), "", "h", 1<<20, now); !errors.Is(err, ErrNoRecipients) {
		t.Errorf("no recipients: %v", err)
	}
	if _, err := Prepare(&Options{Recipients: []string{"a@b"}}, strings.NewReader(strings.Repeat("x", 2000)), "", "h", 1000, now); !errors.Is(err, ErrTooBig) {
		t.Errorf("size limit: %v", err)
	}
}

// mail(1) and cron scripts address local mail by login name ("To: root"),
// which RFC 5322 parsers refuse; sendmail -t must take them as Postfix does.
func TestHeaderBareNames(t *testing.T) {
	for value, want := range map[string]string{
		"root":                             "root",
		"root, ops":                        "root ops",
		"Root User <root>":                 "root",
		"root (the admin), \"B, C\" <b@c>": "root b@c",
		"root,\n ops@example.org":          "root ops@example.org",
		"undisclosed-recipients:;":         "",
		"a b c, <>":                        "",
	} {
		if got := strings.Join(headerAddresses(value), " "); got != want {
			t.Errorf("headerAddresses(%q) = %q, want %q", value, got, want)
		}
	}
	p, err := Prepare(&Options{ExtractRcpt: true}, strings.NewReader("To: root\nSubject: cron\n\nbody\n"), "me", "h", 1<<20, time.Unix(0, 0))
	if err != nil || strings.Join(p.Recipients, " ") != "root" {
		t.Fatalf("sendmail -t with To: root: %v %v", p, err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add("-t\x00-oi\x00-f\x00a@b\x00rcpt@x")
	f.Add("-bs")
	f.Add("-F\x00\x00-C")
	f.Fuzz(func(t *testing.T, joined string) {
		o, err := Parse("sendmail", strings.Split(joined, "\x00"))
		if err != nil {
			if !errors.Is(err, ErrUsage) {
				t.Fatalf("error %v does not wrap ErrUsage", err)
			}
			return
		}
		for _, s := range append([]string{o.Sender, o.FullName}, o.Recipients...) {
			if strings.ContainsAny(s, "\r\n\x00") {
				t.Fatalf("value with a line break or NUL accepted: %q", s)
			}
		}
	})
}

func FuzzPrepare(f *testing.F) {
	f.Add("To: a@b\n\nx\n", true)
	f.Add("Subject: x\r\n\r\n.\r\n", false)
	f.Fuzz(func(t *testing.T, in string, extract bool) {
		o := &Options{ExtractRcpt: extract, Recipients: []string{"r@x"}}
		p, err := Prepare(o, strings.NewReader(in), "s@x", "h", 1<<16, time.Unix(0, 0))
		if err != nil {
			return
		}
		if len(p.Recipients) == 0 {
			t.Fatal("prepared a message without recipients")
		}
		if strings.Contains(string(p.Content), "\r\n") {
			t.Fatal("CRLF left in the content")
		}
	})
}
