package smtpd

import (
	"runtime"
	"testing"
)

func TestSpareProcessors(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	runtime.GOMAXPROCS(3)

	// The administrator's setting wins.
	t.Setenv("GOMAXPROCS", "3")
	spareProcessors()
	if n := runtime.GOMAXPROCS(0); n != 3 {
		t.Errorf("GOMAXPROCS set in the environment: got %d processors, want 3", n)
	}

	t.Setenv("GOMAXPROCS", "")
	spareProcessors()
	if n := runtime.GOMAXPROCS(0); n != 6 {
		t.Errorf("GOMAXPROCS unset: got %d processors, want 6", n)
	}
}
