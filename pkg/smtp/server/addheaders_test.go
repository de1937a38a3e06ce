package server

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestHeaderAdder(t *testing.T) {
	now := time.Date(2026, 11, 26, 15, 39, 58, 0, time.FixedZone("CET", 3600))
	date := "Date: Thu, 26 Nov 2026 15:39:58 +0100 (CET)\n"
	id := "Message-ID: <20261126143958.0123456789ABC@mx.example.test>\n"
	for _, tc := range []struct {
		name, in, want string
	}{
		{"both missing", "Subject: x\nFrom: a@b\n\nbody\n", "Subject: x\nFrom: a@b\n" + date + id + "\nbody\n"},
		{"both present", "DATE: Mon, 1 Jan 2024 00:00:00 +0000\nmessage-id: <x@y>\n\nbody\n", "DATE: Mon, 1 Jan 2024 00:00:00 +0000\nmessage-id: <x@y>\n\nbody\n"},
		{"date present", "Date : Mon, 1 Jan 2024 00:00:00 +0000\n\nbody\n", "Date : Mon, 1 Jan 2024 00:00:00 +0000\n" + id + "\nbody\n"},
		{"folded", "Subject: a\n b\nMessage-Id:\n <x@y>\n\n", "Subject: a\n b\nMessage-Id:\n <x@y>\n" + date + "\n"},
		{"names in the body do not count", "Subject: x\n\nDate: no\nMessage-ID: no\n", "Subject: x\n" + date + id + "\nDate: no\nMessage-ID: no\n"},
		{"no empty line", "Subject: x\nthis is body\n", "Subject: x\n" + date + id + "this is body\n"},
		{"header only", "Subject: x\n", "Subject: x\n" + date + id},
		{"header only, no final LF", "Subject: x\nFrom: a", "Subject: x\n" + date + id + "From: a"},
		{"empty message", "", date + id},
		{"body only", "\nbody\n", date + id + "\nbody\n"},
	} {
		// Every split of the input into two writes gives the same result.
		for cut := 0; cut <= len(tc.in); cut++ {
			a := newHeaderAdder(1024, "mx.example.test", "0123456789ABC", now)
			var out []byte
			out = append(out, a.write([]byte(tc.in[:cut]))...)
			out = append(out, a.write([]byte(tc.in[cut:]))...)
			out = append(out, a.finish()...)
			if string(out) != tc.want {
				t.Errorf("%s, cut at %d:\n%q\nwant\n%q", tc.name, cut, out, tc.want)
				break
			}
		}
	}

	// The limit counts the header section and the line that ends it; the
	// outcome does not depend on how the content is split.
	msg := "X: aaaa\n\nbody\n"
	for _, limit := range []int{9, 8} {
		for cut := 0; cut <= len(msg); cut++ {
			a := newHeaderAdder(limit, "mx.example.test", "0123456789ABC", now)
			out := string(a.write([]byte(msg[:cut]))) + string(a.write([]byte(msg[cut:]))) + string(a.finish())
			if added := out != msg; added != (limit == 9) {
				t.Errorf("limit %d, cut %d: %q", limit, cut, out)
			}
		}
	}

	// A header section over the limit passes unchanged.
	big := "X-Big: " + strings.Repeat("b", 2000) + "\n\nbody\n"
	a := newHeaderAdder(1024, "mx.example.test", "0123456789ABC", now)
	var out []byte
	for i := 0; i < len(big); i += 100 {
		out = append(out, a.write([]byte(big[i:min(i+100, len(big))]))...)
	}
	out = append(out, a.finish()...)
	if string(out) != big {
		t.Errorf("over the limit: %q", out)
	}
}

// Authenticated mail gets Date: and Message-ID: when it lacks them, by
// DATA and by BDAT; other mail is left alone.
func TestSubmissionAddsHeaders(t *testing.T) {
	_, c, _, be := authServer(t, func(cfg *Config) { cfg.MaxSubmissionHeader = 4096 })
	c.cmd("AUTH PLAIN "+plain("", "bob", "pw-bob"), "235")
	c.transaction("bob@example.test", "x@example.test", "Subject: one\r\n\r\nbody\r\n")
	c.cmd("MAIL FROM:<bob@example.test>", "250")
	c.cmd("RCPT TO:<x@example.test>", "250")
	c.send("BDAT 9\r\nSubject: ")
	c.expect("250 2.0.0 Ok: 9 bytes")
	c.send("BDAT 13 LAST\r\ntwo\r\n\r\nbody\r\n")
	c.expect("250 2.0.0 Ok: queued as")
	c.transaction("bob@example.test", "x@example.test", "Subject: three\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <mine@example.test>\r\n\r\nbody\r\n")
	c.transaction("bob@example.test", "x@example.test", "X-Big: "+strings.Repeat("b", 5000)+"\r\n\r\nbody\r\n")
	msgs := be.committed()
	if len(msgs) != 4 {
		t.Fatalf("%d messages", len(msgs))
	}
	added := regexp.MustCompile(`^Subject: (one|two)\nDate: [A-Z][a-z]{2}, \d{1,2} [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4} \(.+\)\nMessage-ID: <\d{14}\.` + msgs[0].id + `@mx\.example\.test>\n\nbody\n$`)
	if !added.MatchString(msgs[0].content()) {
		t.Errorf("DATA message:\n%s", msgs[0].content())
	}
	added = regexp.MustCompile(`^Subject: two\nDate: .+\nMessage-ID: <\d{14}\.` + msgs[1].id + `@mx\.example\.test>\n\nbody\n$`)
	if !added.MatchString(msgs[1].content()) {
		t.Errorf("BDAT message:\n%s", msgs[1].content())
	}
	if got := msgs[2].content(); got != "Subject: three\nDate: Mon, 1 Jan 2024 00:00:00 +0000\nMessage-ID: <mine@example.test>\n\nbody\n" {
		t.Errorf("complete message changed:\n%s", got)
	}
	if got := msgs[3].content(); strings.Contains(got, "Message-ID") {
		t.Errorf("header over MaxSubmissionHeader changed")
	}
}
