package client

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
)

// FuzzReadReply reads replies from arbitrary server output until an
// error: each reply must be bounded, carry one valid code and a matching
// enhanced code or none, and print without line breaks. Seeds are in
// testdata/fuzz/FuzzReadReply.
func FuzzReadReply(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(data), MaxReplyLine)
		for i := 0; i < 1000; i++ {
			r, err := ReadReply(br)
			if err != nil {
				return
			}
			if r.Code < 200 || r.Code > 559 || len(r.Text) == 0 || len(r.Text) > MaxReplyLines {
				t.Fatalf("reply %d with %d lines", r.Code, len(r.Text))
			}
			if r.Enhanced != "" && (r.Enhanced[0] != byte('0'+r.Code/100) || !strings.HasPrefix(r.Text[0], r.Enhanced)) {
				t.Fatalf("enhanced code %q for %d %q", r.Enhanced, r.Code, r.Text[0])
			}
			s := r.String()
			if strings.ContainsAny(s, "\r\n\x00") {
				t.Fatalf("reply prints as %q", s)
			}
			if d := r.DSN(); len(d) < 5 || d[0] != byte('0'+r.Code/100) {
				t.Fatalf("DSN %q for %d", d, r.Code)
			}
		}
	})
}

// FuzzDataWriter sends arbitrary content in arbitrary pieces: the DATA
// stream must never hold a bare CR or LF, a line over the length limit
// or an early lone dot, and, for content without long lines, must give
// the content back (line endings made LF) when unstuffed. The limit is
// made small (8 to 71) so short inputs reach the line breaking.
func FuzzDataWriter(f *testing.F) {
	f.Fuzz(func(t *testing.T, content []byte, chunk uint8) {
		limit := 8 + int(chunk)%64
		wire := dataStreamLimit(t, string(content), int(chunk)/16+1, limit)
		checkWireLimit(t, wire, limit)
		norm := strings.ReplaceAll(strings.ReplaceAll(string(content), "\r\n", "\n"), "\r", "\n")
		for _, l := range strings.Split(norm, "\n") {
			if len(l) >= limit-1 {
				return // broken lines do not round-trip exactly
			}
		}
		body := strings.TrimSuffix(wire, ".\r\n")
		var back []string
		for _, l := range strings.Split(strings.TrimSuffix(body, "\r\n"), "\r\n") {
			back = append(back, strings.TrimPrefix(l, "."))
		}
		got := strings.Join(back, "\n")
		want := strings.TrimSuffix(norm, "\n")
		if body == "" {
			got = ""
		}
		if got != want {
			t.Fatalf("content %q came back as %q", want, got)
		}
	})
}

// FuzzDowngrade converts arbitrary messages: it must end, never fail on
// its own, copy messages that are not MIME unchanged, and leave every
// part it re-encoded 7-bit.
func FuzzDowngrade(f *testing.F) {
	f.Fuzz(func(t *testing.T, msg []byte) {
		var out bytes.Buffer
		if err := Downgrade(&out, bytes.NewReader(msg)); err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(bytes.ToLower(msg), []byte("mime-version")) && !bytes.Equal(out.Bytes(), msg) {
			t.Fatalf("non-MIME message changed")
		}
		if !bytes.Contains(bytes.ToLower(msg), []byte("8bit")) && !bytes.Contains(bytes.ToLower(msg), []byte("binary")) &&
			!bytes.Equal(out.Bytes(), msg) {
			t.Fatalf("message without 8bit parts changed")
		}
		if len(msg) < 1<<16 && out.Len() > 4*len(msg)+1<<12 {
			t.Fatalf("%d octets became %d", len(msg), out.Len())
		}
	})
}
