package pickup

import (
	"bufio"
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestDropRoundTrip(t *testing.T) {
	var b bytes.Buffer
	req := &Request{Sender: "", Recipients: []string{"a b@x", "%@y"}, Notify: "NEVER", EnvID: "e\n1"}
	EncodeDrop(&b, req)
	b.WriteString("Subject: x\n\nbody\n")
	br := bufio.NewReader(&b)
	got, err := DecodeDrop(br)
	if err != nil {
		t.Fatal(err)
	}
	if got.Sender != "" || len(got.Recipients) != 2 || got.Recipients[0] != "a b@x" || got.Recipients[1] != "%@y" ||
		got.Notify != "NEVER" || got.EnvID != "e\n1" {
		t.Fatalf("decoded %+v", got)
	}
	rest, _ := br.ReadString(0)
	if rest != "Subject: x\n\nbody\n" {
		t.Fatalf("message %q", rest)
	}
}

func TestDropRejects(t *testing.T) {
	for name, in := range map[string]string{
		"magic":     "hello\n\n",
		"norcpt":    "posthorn-maildrop 1\nsender a@b\n\n",
		"nosender":  "posthorn-maildrop 1\nrcpt a@b\n\n",
		"unknown":   "posthorn-maildrop 1\nsender a\nrcpt b\nexec /bin/sh\n\n",
		"escape":    "posthorn-maildrop 1\nsender %4\nrcpt b\n\n",
		"long":      "posthorn-maildrop 1\nsender " + strings.Repeat("a", 10000) + "\nrcpt b\n\n",
		"truncated": "posthorn-maildrop 1\nsender a\nrcpt b",
		"many":      "posthorn-maildrop 1\nsender a\n" + strings.Repeat("rcpt b\n", maxDropRcpts+1) + "\n",
	} {
		if _, err := DecodeDrop(bufio.NewReader(strings.NewReader(in))); !errors.Is(err, ErrBadDrop) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func FuzzDecodeDrop(f *testing.F) {
	f.Add([]byte("posthorn-maildrop 1\nsender a@b\nrcpt c@d\nnotify NEVER\n\nmsg\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := DecodeDrop(bufio.NewReader(bytes.NewReader(data)))
		if err != nil {
			return
		}
		var b bytes.Buffer
		EncodeDrop(&b, r)
		again, err := DecodeDrop(bufio.NewReader(&b))
		if err != nil || again.Sender != r.Sender || len(again.Recipients) != len(r.Recipients) {
			t.Fatalf("round trip: %v", err)
		}
	})
}
