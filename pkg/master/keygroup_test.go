package master

import (
	"os"
	"path/filepath"
	"testing"
)

func TestKeyGroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the key file another owner (CI runs as root)")
	}
	key := filepath.Join(t.TempDir(), "key.pem")
	os.WriteFile(key, []byte("secret"), 0640)
	// root:4242 0640, like Debian's root:ssl-cert snakeoil key.
	if err := os.Chown(key, 0, 4242); err != nil {
		t.Fatal(err)
	}
	if g := keyGroup(key, 1000, 1000); g != 4242 {
		t.Errorf("daemon 1000:1000 gets group %d, want 4242", g)
	}
	if g := keyGroup(key, 1000, 4242); g != -1 {
		t.Errorf("daemon already in the key's group gets group %d", g)
	}
	os.Chmod(key, 0600)
	if g := keyGroup(key, 1000, 1000); g != -1 {
		t.Errorf("a key no group may read gives group %d", g)
	}
	os.Chown(key, 1000, 4242)
	if g := keyGroup(key, 1000, 1000); g != -1 {
		t.Errorf("the key's owner gets group %d", g)
	}
	if g := keyGroup(filepath.Join(t.TempDir(), "missing"), 1000, 1000); g != -1 {
		t.Errorf("a missing key gives group %d", g)
	}
}
