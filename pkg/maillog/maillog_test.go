package maillog

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestLineShape(t *testing.T) {
	l := New("posthorn", "smtpd", "stderr")
	var b bytes.Buffer
	l.SetOutput(&b)
	l.Info("%s: client=%s", "0123456789ABC", "evil\r\nposthorn/smtpd[1]: forged")
	l.Warning("disk %s", "full")
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 lines, got %q", b.String())
	}
	if !strings.HasPrefix(lines[0], "posthorn/smtpd[") || !strings.Contains(lines[0], "]: 0123456789ABC: client=evil??posthorn") {
		t.Fatalf("line %q", lines[0])
	}
	if !strings.Contains(lines[1], "]: warning: disk full") {
		t.Fatalf("line %q", lines[1])
	}
}

func TestDelay(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0", 5 * time.Millisecond: "0", 120 * time.Millisecond: "0.12", 1500 * time.Millisecond: "1.5",
		9 * time.Second: "9", 42 * time.Second: "42", 3 * time.Hour: "10800",
	} {
		if got := Delay(d); got != want {
			t.Errorf("Delay(%v) = %q, want %q", d, got, want)
		}
	}
}
