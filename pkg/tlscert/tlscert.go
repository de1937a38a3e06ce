// Package tlscert holds the certificate and key of the TLS services
// (tls.cert_file, tls.key_file) for every daemon that speaks TLS: each
// handshake takes the pair from here, so a reload that replaces it applies
// to the next handshake without touching sessions in progress.
package tlscert

import (
	"crypto/tls"
	"fmt"
	"sync"

	"github.com/posthorn/posthorn/pkg/config"
	"github.com/posthorn/posthorn/pkg/maillog"
)

// Store is a reloadable certificate.
type Store struct {
	mu   sync.Mutex
	cert *tls.Certificate
}

// Load reads the pair; on failure the pair read before stays.
func (c *Store) Load(cfg *config.Config) error {
	pair, err := tls.LoadX509KeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	c.mu.Lock()
	c.cert = &pair
	c.mu.Unlock()
	return nil
}

// Reload loads the pair and logs what a failure means for the service.
func (c *Store) Reload(cfg *config.Config, log *maillog.Logger, what string) {
	if err := c.Load(cfg); err != nil {
		if c.OK() {
			log.Warning("%v; keeping the certificate read before", err)
		} else {
			log.Warning("%v; %s", err, what)
		}
	}
}

// OK reports whether a certificate is loaded.
func (c *Store) OK() bool {
	if c == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cert != nil
}

// Get is a tls.Config GetCertificate function.
func (c *Store) Get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cert, nil
}

// ServerConfig returns posthorn's TLS server policy around the store:
// TLS 1.2 and later, forward-secret AEAD suites only. Session tickets are
// off: Go's tickets break STARTTLS with some Microsoft clients and servers
// (golang/go#70232), and a mail session gains little from resumption.
func (c *Store) ServerConfig() *tls.Config {
	return &tls.Config{
		GetCertificate:         c.Get,
		MinVersion:             tls.VersionTLS12,
		SessionTicketsDisabled: true,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
	}
}
