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

// tlsConfig returns the TLS configuration of the listeners: each
// handshake takes the one of the current snapshot (certificate and
// server.tls.min_version), so a reload changes both without restarting
// listeners.
func (s *Server) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return s.snapshot().tls, nil
		},
	}
}

// snapshotTLS is the TLS configuration of one snapshot.
func snapshotTLS(cfg *config.Config, cert *tls.Certificate) *tls.Config {
	v := uint16(tls.VersionTLS12)
	if cfg.Server.TLS.MinVersion == "1.3" {
		v = tls.VersionTLS13
	}
	c := &tls.Config{MinVersion: v}
	if cert != nil {
		c.Certificates = []tls.Certificate{*cert}
	}
	return c
}
