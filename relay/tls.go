package relay

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"time"

	"github.com/sesrelay/sesrelay/config"
)

// SelfSignedCertificate makes an in-memory ECDSA certificate for hostname
// (development only: clients must skip verification).
func SelfSignedCertificate(hostname string) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: hostname, Organization: []string{"sesrelay development"}},
		DNSNames:     []string{hostname, "localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

func certificateFor(cfg *config.Config) (*tls.Certificate, error) {
	if cfg.Server.TLS.Certificate != nil {
		return cfg.Server.TLS.Certificate, nil
	}
	if cfg.Server.TLS.SelfSigned {
		return SelfSignedCertificate(cfg.Server.Hostname)
	}
	return nil, nil
}

// tlsConfig builds a TLS configuration whose certificate follows the
// current snapshot, so a reload rotates it without restarting listeners.
func (s *Server) tlsConfig(minVersion string) *tls.Config {
	v := uint16(tls.VersionTLS12)
	if minVersion == "1.3" {
		v = tls.VersionTLS13
	}
	return &tls.Config{
		MinVersion: v,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.snapshot().cert, nil
		},
	}
}
