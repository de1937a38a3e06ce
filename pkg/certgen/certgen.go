// Package certgen creates the self-signed certificate a fresh installation
// uses until the admin installs a real one, so STARTTLS, IMAPS and POP3S
// work from the first start.
package certgen

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Validity matches Debian's snakeoil certificate: long enough never to
// expire under a running test system, and clients do not trust it anyway.
const Validity = 10 * 365 * 24 * time.Hour

// Ensure makes sure certFile and keyFile hold a certificate for hostname and
// its private key. Existing files are kept. A key without its certificate
// (an interrupted earlier run) gets a new certificate for that key; a
// certificate without its key is an error, since it cannot be repaired
// without replacing the admin's file. When uid >= 0 the key is handed to
// uid:gid (the mail owner) with mode 0600 so the unprivileged daemons can
// read it; missing folders are created.
func Ensure(certFile, keyFile, hostname string, uid, gid int) error {
	certOK, err := exists(certFile)
	if err != nil {
		return err
	}
	keyOK, err := exists(keyFile)
	if err != nil {
		return err
	}
	switch {
	case certOK && keyOK:
		return nil
	case certOK:
		return fmt.Errorf("certgen: certificate %s exists but its key %s is missing", certFile, keyFile)
	}

	var key *ecdsa.PrivateKey
	if keyOK {
		if key, err = readKey(keyFile); err != nil {
			return err
		}
	} else {
		if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			return fmt.Errorf("certgen: generate key: %w", err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return fmt.Errorf("certgen: encode key: %w", err)
		}
		pemKey := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
		// The key goes first: a crash before the certificate is written
		// leaves a state the next call repairs.
		if err := writeFile(keyFile, pemKey, 0600, uid, gid); err != nil {
			return err
		}
	}

	der, err := selfSign(key, hostname)
	if err != nil {
		return err
	}
	return writeFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0644, -1, -1)
}

func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return false, fmt.Errorf("certgen: %w", err)
}

func readKey(path string) (*ecdsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("certgen: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("certgen: %s: no PEM data", path)
	}
	var k any
	switch blk.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(blk.Bytes)
	default:
		err = fmt.Errorf("unsupported PEM block %q", blk.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("certgen: %s: %w", path, err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("certgen: %s: not an ECDSA key; install a certificate for it or remove it", path)
	}
	return ek, nil
}

func selfSign(key *ecdsa.PrivateKey, hostname string) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("certgen: serial number: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: hostname},
		NotBefore:             now.Add(-time.Hour), // tolerate clients with a slow clock
		NotAfter:              now.Add(Validity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	if ip := net.ParseIP(hostname); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{hostname}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("certgen: create certificate for %s: %w", hostname, err)
	}
	return der, nil
}

// writeFile replaces path atomically, so a reader never sees half a key.
func writeFile(path string, data []byte, mode os.FileMode, uid, gid int) error {
	dir := filepath.Dir(path)
	// 0755: the key itself is 0600, and its owner must be able to reach it.
	if err := os.MkdirAll(dir, 0755); err != nil {
		return fmt.Errorf("certgen: %w", err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("certgen: %w", err)
	}
	tmp := f.Name()
	err = func() error {
		if err := f.Chmod(mode); err != nil {
			return err
		}
		if uid >= 0 {
			if err := f.Chown(uid, gid); err != nil {
				return err
			}
		}
		if _, err := f.Write(data); err != nil {
			return err
		}
		return f.Sync()
	}()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("certgen: write %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("certgen: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("certgen: sync %s: %w", dir, err)
	}
	return nil
}
