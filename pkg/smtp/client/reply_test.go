package client

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

func readReply(s string) (*Reply, error) {
	return ReadReply(bufio.NewReaderSize(strings.NewReader(s), MaxReplyLine))
}

func TestReadReply(t *testing.T) {
	for _, c := range []struct {
		in, str, dsn, enh string
		lines             int
	}{
		{"250 2.0.0 Ok: queued as ABC\r\n", "250 2.0.0 Ok: queued as ABC", "2.0.0", "2.0.0", 1},
		{"250-mx.example\r\n250-PIPELINING\r\n250 SIZE 1000\r\n", "250-mx.example 250-PIPELINING 250 SIZE 1000", "2.0.0", "", 3},
		{"250\r\n", "250", "2.0.0", "", 1},
		{"250 \r\n", "250", "2.0.0", "", 1},
		{"220 bare LF\n", "220 bare LF", "2.0.0", "", 1},
		// HOSTILE-INPUTS 58: an enhanced code without text.
		{"550 5.7.2\r\n", "550 5.7.2", "5.7.2", "5.7.2", 1},
		{"550-5.7.1 first\r\n550 5.7.1 second\r\n", "550-5.7.1 first 550 5.7.1 second", "5.7.1", "5.7.1", 2},
		// The class must match the reply code; otherwise it is not one.
		{"450 5.1.1 mismatch\r\n", "450 5.1.1 mismatch", "4.0.0", "", 1},
		{"550 5.7 short\r\n", "550 5.7 short", "5.0.0", "", 1},
		{"550 5.1234.1 long\r\n", "550 5.1234.1 long", "5.0.0", "", 1},
		{"550 5.1.1x\r\n", "550 5.1.1x", "5.0.0", "", 1},
		{"554 5.7.1\tTab\r\n", "554 5.7.1\tTab", "5.0.0", "", 1},
		// Control characters and invalid UTF-8 are neutralised.
		{"550 5.1.1 a\x00b\x1bc\xff\r\n", "550 5.1.1 a?b?c?", "5.1.1", "5.1.1", 1},
		{"250 grüße\r\n", "250 grüße", "2.0.0", "", 1},
		{"421 4.3.2 bye\r\n", "421 4.3.2 bye", "4.3.2", "4.3.2", 1},
	} {
		r, err := readReply(c.in)
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if r.String() != c.str || r.DSN() != c.dsn || r.Enhanced != c.enh || len(r.Text) != c.lines {
			t.Errorf("%q: got %q dsn %s enhanced %q lines %d", c.in, r, r.DSN(), r.Enhanced, len(r.Text))
		}
	}
}

func TestReadReplyErrors(t *testing.T) {
	for _, in := range []string{
		"25\r\n", "abc\r\n", "250x\r\n", "600 no\r\n", "199 no\r\n", "260 no\r\n", "2500 x\r\n",
		// Mismatched codes in one reply.
		"250-a\r\n251 b\r\n", "250-a\r\n550 b\r\n",
		// A line of continuation and nothing more.
		"",
	} {
		_, err := readReply(in)
		if err == nil {
			t.Errorf("%q accepted", in)
		}
	}
	if _, err := readReply("250-a\r\n251 b\r\n"); !errors.Is(err, ErrProtocol) {
		t.Errorf("mismatched codes: %v", err)
	}
	if _, err := readReply("250-a\r\n"); !errors.Is(err, io.EOF) {
		t.Errorf("cut-off reply: %v", err)
	}
}

func TestReplyLineLimit(t *testing.T) {
	// A line of exactly MaxReplyLine octets, CRLF included, is accepted.
	ok := "250 " + strings.Repeat("x", MaxReplyLine-6) + "\r\n"
	if r, err := readReply(ok); err != nil || len(r.Text[0]) != MaxReplyLine-6 {
		t.Fatalf("line of %d octets: %v", len(ok), err)
	}
	// One more is refused, as is a 100 KB line (HOSTILE-INPUTS 58).
	for _, n := range []int{MaxReplyLine - 5, 100 << 10} {
		_, err := readReply("250 " + strings.Repeat("x", n) + "\r\n")
		if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "longer than") {
			t.Fatalf("line of %d octets: %v", n+6, err)
		}
	}
}

func TestReplyLinesLimit(t *testing.T) {
	many := func(n int) string {
		return strings.Repeat("250-x\r\n", n-1) + "250 end\r\n"
	}
	if r, err := readReply(many(MaxReplyLines)); err != nil || len(r.Text) != MaxReplyLines {
		t.Fatalf("%d lines: %v", MaxReplyLines, err)
	}
	for _, n := range []int{MaxReplyLines + 1, 100000} {
		_, err := readReply(many(n))
		if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "more than") {
			t.Fatalf("%d lines: %v", n, err)
		}
	}
}
