package remote

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strings"
)

// tlsTrust says, as Postfix does in its log, whether the server's
// certificate chain leads to a trusted authority ("Trusted") or not
// ("Untrusted"). Nothing depends on it: at the levels "may" and "encrypt"
// certificates are not verified.
func tlsTrust(st *tls.ConnectionState) string {
	if len(st.PeerCertificates) == 0 {
		return "Anonymous"
	}
	inter := x509.NewCertPool()
	for _, c := range st.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if _, err := st.PeerCertificates[0].Verify(x509.VerifyOptions{Intermediates: inter}); err != nil {
		return "Untrusted"
	}
	return "Trusted"
}

// tlsSummary is "TLSv1.3 with cipher TLS_AES_128_GCM_SHA256 (128/128 bits)".
func tlsSummary(st *tls.ConnectionState) string {
	version := map[uint16]string{tls.VersionTLS10: "TLSv1", tls.VersionTLS11: "TLSv1.1",
		tls.VersionTLS12: "TLSv1.2", tls.VersionTLS13: "TLSv1.3"}[st.Version]
	if version == "" {
		version = tls.VersionName(st.Version)
	}
	cipher := tls.CipherSuiteName(st.CipherSuite)
	bits := 0
	switch {
	case strings.Contains(cipher, "AES_128"):
		bits = 128
	case strings.Contains(cipher, "AES_256"), strings.Contains(cipher, "CHACHA20"):
		bits = 256
	case strings.Contains(cipher, "3DES"):
		bits = 168
	}
	return fmt.Sprintf("%s with cipher %s (%d/%d bits)", version, cipher, bits, bits)
}
