package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPublicSuffixWildcard(t *testing.T) {
	for entry, refused := range map[string]bool{
		"*.co.uk":        true,
		"*.com":          true,
		"*.github.io":    true, // a private suffix: github.io's subdomains are its users'
		"*.shop.co.uk":   false,
		"*.example.com":  false,
		"co.uk":          false, // not a wildcard: covers only @co.uk itself
		"example.com":    false,
		"*.relay.test":   false,
		"*.corp.example": false, // unknown TLD: the list's default rule is not a listed suffix
	} {
		err := checkPublicSuffixWildcard(entry)
		if (err != nil) != refused {
			t.Errorf("%s: err %v, want refused=%v", entry, err, refused)
		}
	}
}

func TestArgonFloor(t *testing.T) {
	for _, tc := range []struct {
		m, t uint32
		ok   bool
	}{{19456, 2, true}, {65536, 3, true}, {19455, 2, false}, {19456, 1, false}, {8, 1, false}, {47104, 1, false}} {
		if err := checkArgonFloor(tc.m, tc.t); (err == nil) != tc.ok {
			t.Errorf("m=%d t=%d: %v", tc.m, tc.t, err)
		}
	}
}

// writeCert writes a certificate for localhost and its key; signer nil
// makes it self-signed.
func writeCert(t *testing.T, dir, name string, signer *x509.Certificate, signerKey *ecdsa.PrivateKey) (certFile, keyFile string, cert *x509.Certificate, key *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IsCA:         signer == nil, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
	}
	parent, parentKey := tmpl, key
	if signer != nil {
		parent, parentKey = signer, signerKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ = x509.ParseCertificate(der)
	kder, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, cert, key
}

func TestWarnings(t *testing.T) {
	dir := t.TempDir()
	selfCert, selfKey, ca, caKey := writeCert(t, dir, "ca.example", nil, nil)
	leafCert, leafKey, _, _ := writeCert(t, dir, "relay.example", ca, caKey)
	const tenants = `
delivery: {sender: file, file_dir: /tmp/outbox}
tenants:
  - name: a
    users: [{username: a, password_hash: "$2a$10$fLk/pjHAlbeiM/xrxs7rM.c4LTB14MuTZ6tjapQ/.k4ypkOY1Q3IC"}]
    domains: [a.example.com]
`
	for _, tc := range []struct {
		name, yaml string
		want       []string // one per warning, in order
	}{
		{"loopback only", `
server: {hostname: h, listeners: [{address: "127.0.0.1:2587", tls: starttls}], tls: {self_signed: true}}
admin: {address: "127.0.0.1:9090", pprof: true}`, nil},
		{"pprof on all interfaces", `
server: {hostname: h, listeners: [{address: "127.0.0.1:2587", tls: starttls}], tls: {self_signed: true}}
admin: {address: ":9090", pprof: true}`, []string{`admin.pprof: on while admin.address ":9090" is not a loopback address`}},
		{"pprof off on all interfaces", `
server: {hostname: h, listeners: [{address: "127.0.0.1:2587", tls: starttls}], tls: {self_signed: true}}
admin: {address: "0.0.0.0:9090"}`, nil},
		{"self_signed on a public listener", `
server: {hostname: h, listeners: [{address: "127.0.0.1:2587", tls: starttls}, {address: "0.0.0.0:2465", tls: implicit}], tls: {self_signed: true}}`,
			[]string{"server.tls.self_signed: a self-signed certificate on server.listeners[1] (0.0.0.0:2465), not a loopback address"}},
		{"self-signed cert_file on a public listener", `
server: {hostname: h, listeners: [{address: "10.0.0.5:2587", tls: starttls}], tls: {cert_file: "` + selfCert + `", key_file: "` + selfKey + `"}}`,
			[]string{"server.tls.cert_file: a self-signed certificate on server.listeners[0] (10.0.0.5:2587)"}},
		{"CA-signed cert_file on a public listener", `
server: {hostname: h, listeners: [{address: "10.0.0.5:2587", tls: starttls}], tls: {cert_file: "` + leafCert + `", key_file: "` + leafKey + `"}}`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tc.yaml + tenants))
			if err != nil {
				t.Fatal(err)
			}
			got := cfg.Warnings()
			if len(got) != len(tc.want) {
				t.Fatalf("warnings %q, want %d", got, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(got[i], w) {
					t.Errorf("warning %q, want prefix %q", got[i], w)
				}
			}
		})
	}
}
