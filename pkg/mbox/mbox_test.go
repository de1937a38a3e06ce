package mbox

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

var when = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func TestFromLine(t *testing.T) {
	for _, c := range []struct{ sender, want string }{
		{"alice@example.org", "From alice@example.org Fri Jan  2 03:04:05 2026\n"},
		{"", "From MAILER-DAEMON Fri Jan  2 03:04:05 2026\n"},
		{"\"a b\"@x\r\nFrom evil", "From \"a_b\"@x__From_evil Fri Jan  2 03:04:05 2026\n"},
	} {
		if got := FromLine(c.sender, when); got != c.want {
			t.Errorf("FromLine(%q) = %q, want %q", c.sender, got, c.want)
		}
	}
	if got := FromLine("a@b", time.Date(2026, 11, 26, 15, 4, 5, 0, time.UTC)); got != "From a@b Thu Nov 26 15:04:05 2026\n" {
		t.Errorf("two-digit day: %q", got)
	}
}

func TestWriteMessageQuotesAndTerminates(t *testing.T) {
	msg := "Subject: x\n\nFrom the start\n>From quoted once\n>>From twice\nnot From here\n>From\n>Fro\nFrom"
	var b bytes.Buffer
	n, err := WriteMessage(&b, "s@x", when, []byte("Return-Path: <s@x>\n"), strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	want := "From s@x Fri Jan  2 03:04:05 2026\nReturn-Path: <s@x>\nSubject: x\n\n>From the start\n>>From quoted once\n>>>From twice\nnot From here\n>From\n>Fro\nFrom\n\n"
	if b.String() != want {
		t.Fatalf("got\n%q\nwant\n%q", b.String(), want)
	}
	if n != int64(b.Len()) {
		t.Errorf("returned %d, wrote %d", n, b.Len())
	}
	// Byte by byte gives the same result: the quoting keeps line state
	// across writes.
	var b2 bytes.Buffer
	if _, err := WriteMessage(&b2, "s@x", when, []byte("Return-Path: <s@x>\n"), iotest.OneByteReader(strings.NewReader(msg))); err != nil {
		t.Fatal(err)
	}
	if b2.String() != want {
		t.Fatalf("one byte at a time:\n%q", b2.String())
	}
}

func TestWritePipeMessage(t *testing.T) {
	var b bytes.Buffer
	if _, err := WritePipeMessage(&b, "", when, []byte("Delivered-To: a@b\n"), strings.NewReader("From x\nbody\n")); err != nil {
		t.Fatal(err)
	}
	// local(8): a From_ line, no quoting and no blank line for commands.
	if want := "From MAILER-DAEMON Fri Jan  2 03:04:05 2026\nDelivered-To: a@b\nFrom x\nbody\n"; b.String() != want {
		t.Fatalf("%q", b.String())
	}
}

func TestReaderRoundTrip(t *testing.T) {
	msgs := []string{
		"Subject: one\n\nFrom me\n>From you\n",
		"Subject: two\n\n\n\n",
		"",
		"no newline at the end",
		"\n",
	}
	var b bytes.Buffer
	for i, m := range msgs {
		if _, err := WriteMessage(&b, fmt.Sprintf("s%d@x", i), when, nil, strings.NewReader(m)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := ReadAll(bytes.NewReader(b.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(msgs) {
		t.Fatalf("%d messages, want %d", len(got), len(msgs))
	}
	for i, m := range got {
		want := msgs[i]
		if want != "" && !strings.HasSuffix(want, "\n") {
			want += "\n"
		}
		if string(m.Content) != want {
			t.Errorf("message %d: %q, want %q", i, m.Content, want)
		}
		if m.Sender != fmt.Sprintf("s%d@x", i) || !strings.HasPrefix(m.FromLine, "From s") {
			t.Errorf("message %d: sender %q, line %q", i, m.Sender, m.FromLine)
		}
		if !bytes.HasPrefix(b.Bytes()[m.Offset:], []byte(m.FromLine+"\n")) {
			t.Errorf("message %d: offset %d does not point at its From_ line", i, m.Offset)
		}
	}
}

func TestReaderForeignFiles(t *testing.T) {
	if _, err := ReadAll(strings.NewReader("Subject: no separator\n")); !errors.Is(err, ErrNotMbox) {
		t.Errorf("no From_ line: %v", err)
	}
	if ms, err := ReadAll(strings.NewReader("")); err != nil || len(ms) != 0 {
		t.Errorf("empty file: %v %v", ms, err)
	}
	// mboxo written without blank lines between messages, CRLF endings.
	ms, err := ReadAll(strings.NewReader("From a Thu Jan  1 00:00:00 2026\r\nA: 1\r\nFrom b Thu Jan  1 00:00:00 2026\r\nB: 2"))
	if err != nil || len(ms) != 2 || string(ms[0].Content) != "A: 1\r\n" || string(ms[1].Content) != "B: 2" || ms[1].Sender != "b" {
		t.Fatalf("%v %v", err, ms)
	}
}

func TestReaderMaxSize(t *testing.T) {
	var b bytes.Buffer
	WriteMessage(&b, "a", when, nil, strings.NewReader("12345678\n"))
	WriteMessage(&b, "b", when, nil, strings.NewReader("123456789\n"))
	r := NewReader(bytes.NewReader(b.Bytes()))
	r.MaxSize = 9 // the first message exactly, the second one byte more
	if m, err := r.Next(); err != nil || string(m.Content) != "12345678\n" {
		t.Fatalf("%v %v", m, err)
	}
	if _, err := r.Next(); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("over the limit: %v", err)
	}
	if _, err := r.Next(); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("the error sticks: %v", err)
	}
}

func TestWriteErrorsPropagate(t *testing.T) {
	boom := errors.New("boom")
	_, err := WriteMessage(io.Discard, "a", when, nil, iotest.ErrReader(boom))
	if !errors.Is(err, boom) {
		t.Fatalf("%v", err)
	}
	_, err = WriteMessage(&failWriter{after: 10}, "a", when, nil, strings.NewReader(strings.Repeat("x", 100<<10)))
	if err == nil {
		t.Fatal("write error lost")
	}
}

type failWriter struct{ after int }

func (w *failWriter) Write(p []byte) (int, error) {
	if len(p) > w.after {
		return w.after, errors.New("disk full")
	}
	w.after -= len(p)
	return len(p), nil
}

// FuzzRoundTrip writes messages and reads them back: every message comes
// back as it was (with a final newline added when it had none), however
// many ">From " lines it holds, and the reader finds exactly as many
// messages as were written.
func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte("Subject: x\n\nFrom here\n"), []byte(">>From x\n\n"), "a@b")
	f.Add([]byte(""), []byte("From "), "")
	f.Add([]byte("\n\n\n"), []byte(">"), "x y")
	f.Add([]byte(">From\n>>>>>From \nFrom"), []byte("From \r\n"), "MAILER-DAEMON")
	f.Fuzz(func(t *testing.T, a, b []byte, sender string) {
		var buf bytes.Buffer
		for _, m := range [][]byte{a, b} {
			if _, err := WriteMessage(&buf, sender, when, nil, bytes.NewReader(m)); err != nil {
				t.Fatal(err)
			}
		}
		got, err := ReadAll(bytes.NewReader(buf.Bytes()))
		if err != nil {
			t.Fatalf("read back: %v\n%q", err, buf.Bytes())
		}
		if len(got) != 2 {
			t.Fatalf("%d messages read back from\n%q", len(got), buf.Bytes())
		}
		for i, m := range [][]byte{a, b} {
			want := m
			if len(want) > 0 && want[len(want)-1] != '\n' {
				want = append(append([]byte(nil), want...), '\n')
			}
			if !bytes.Equal(got[i].Content, want) {
				t.Fatalf("message %d: %q, want %q", i, got[i].Content, want)
			}
			if strings.ContainsAny(got[i].Sender, " \t\r\n") || got[i].Sender == "" {
				t.Fatalf("sender %q", got[i].Sender)
			}
		}
	})
}
