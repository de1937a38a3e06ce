package mailbox

import (
	"bytes"
	"io"
	"testing"
	"testing/iotest"
	"time"
)

// crlfSimple is the definition CRLFReader implements: every LF not after a
// CR gets one.
func crlfSimple(b []byte) []byte {
	var out []byte
	var last byte
	for _, c := range b {
		if c == '\n' && last != '\r' {
			out = append(out, '\r')
		}
		out = append(out, c)
		last = c
	}
	return out
}

func checkCRLF(t *testing.T, in []byte) {
	t.Helper()
	want := crlfSimple(in)
	for _, size := range []int{1, 2, 3, 7, 4096, 1 << 16} {
		var got bytes.Buffer
		r := CRLFReader(iotest.HalfReader(bytes.NewReader(in)))
		if _, err := io.CopyBuffer(struct{ io.Writer }{&got}, r, make([]byte, size)); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want) {
			t.Fatalf("read with %d-byte buffers: %q, want %q", size, got.Bytes(), want)
		}
	}
}

func TestCRLFReader(t *testing.T) {
	for _, in := range []string{"", "\n", "\r", "\r\n", "a\nb\r\nc\rd\n", "\n\n\r\r\n\n", "no newline",
		string(bytes.Repeat([]byte("line of text\n"), 5000)), "x\r" + string(bytes.Repeat([]byte{'\n'}, 40000))} {
		checkCRLF(t, []byte(in))
	}
}

func FuzzCRLFReader(f *testing.F) {
	f.Add([]byte("a\nb\r\nc\r"))
	f.Add([]byte("\r\r\n\n"))
	f.Fuzz(func(t *testing.T, in []byte) { checkCRLF(t, in) })
}

// A reader that keeps returning nothing ends in io.ErrNoProgress, not in
// a Read that never returns.
func TestCRLFReaderNoProgress(t *testing.T) {
	done := make(chan error, 1)
	go func() {
		_, err := io.ReadAll(CRLFReader(emptyReader{}))
		done <- err
	}()
	select {
	case err := <-done:
		if err != io.ErrNoProgress {
			t.Fatalf("error %v, want io.ErrNoProgress", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("CRLFReader spins on a reader that returns nothing")
	}
}

type emptyReader struct{}

func (emptyReader) Read([]byte) (int, error) { return 0, nil }
