package certgen

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestEnsure(t *testing.T) {
	dir := t.TempDir()
	cert := filepath.Join(dir, "tls", "cert.pem")
	key := filepath.Join(dir, "tls", "private", "key.pem")
	uid, gid := -1, -1
	if os.Geteuid() == 0 {
		uid, gid = 4321, 4322
	}
	if err := Ensure(cert, key, "mx.example.test", uid, gid); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatalf("generated pair does not load: %v", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := leaf.VerifyHostname("mx.example.test"); err != nil {
		t.Errorf("certificate does not name the host: %v", err)
	}
	if _, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Errorf("public key is %T, want ECDSA", leaf.PublicKey)
	}
	fi, err := os.Stat(key)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0600 {
		t.Errorf("key mode %v, want 0600", fi.Mode().Perm())
	}
	if uid >= 0 {
		st := fi.Sys().(*syscall.Stat_t)
		if int(st.Uid) != uid || int(st.Gid) != gid {
			t.Errorf("key owned by %d:%d, want %d:%d", st.Uid, st.Gid, uid, gid)
		}
	}

	// Existing files are left alone.
	before, _ := os.ReadFile(cert)
	if err := Ensure(cert, key, "other.example.test", uid, gid); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(cert)
	if !bytes.Equal(before, after) {
		t.Error("existing certificate was replaced")
	}

	// A key without a certificate gets one for the same key.
	if err := os.Remove(cert); err != nil {
		t.Fatal(err)
	}
	if err := Ensure(cert, key, "mx.example.test", uid, gid); err != nil {
		t.Fatal(err)
	}
	pair2, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatalf("repaired pair does not load: %v", err)
	}
	if pair2.PrivateKey.(*ecdsa.PrivateKey).D.Cmp(pair.PrivateKey.(*ecdsa.PrivateKey).D) != 0 {
		t.Error("key changed while repairing the certificate")
	}

	// A certificate without its key cannot be repaired.
	if err := os.Remove(key); err != nil {
		t.Fatal(err)
	}
	if err := Ensure(cert, key, "mx.example.test", uid, gid); err == nil {
		t.Error("certificate without key: no error")
	}
}

func TestEnsureIPHost(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	if err := Ensure(cert, key, "192.0.2.7", -1, -1); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	if err := leaf.VerifyHostname("192.0.2.7"); err != nil {
		t.Error(err)
	}
}
