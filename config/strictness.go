package config

// What `sesrelay check` is strict about beyond well-formedness: password
// hash floors, public-suffix wildcards (errors), and risky but valid
// settings (Warnings).

import (
	"crypto/x509"
	"fmt"
	"net"
	"strings"

	"golang.org/x/net/publicsuffix"
)

// Argon2id floor: OWASP's password storage recommendation (m=19 MiB, t=2,
// p=1), what `sesrelay hash-password` writes.
const (
	argonMinMemoryKiB  = 19 * 1024
	argonMinIterations = 2
)

// checkArgonFloor refuses Argon2id parameters below the floor, as bcrypt
// below cost 10 is refused.
func checkArgonFloor(memoryKiB, iterations uint32) error {
	if memoryKiB < argonMinMemoryKiB || iterations < argonMinIterations {
		return fmt.Errorf("argon2id parameters m=%d,t=%d are below the minimum m=%d (19 MiB), t=%d: hash the password again with sesrelay hash-password",
			memoryKiB, iterations, argonMinMemoryKiB, argonMinIterations)
	}
	return nil
}

// checkPublicSuffixWildcard refuses a domain entry "*.S" where S is a public
// suffix (co.uk, com.au, github.io): the subdomains of a public suffix
// belong to everyone, so no tenant may claim them all.
func checkPublicSuffixWildcard(entry string) error {
	base, ok := strings.CutPrefix(entry, "*.")
	if !ok {
		return nil
	}
	ps, icann := publicsuffix.PublicSuffix(base)
	// For a name the list does not know, PublicSuffix falls back to its
	// last label (icann false, no dot): that is not a listed suffix.
	if ps != base || (!icann && !strings.Contains(ps, ".")) {
		return nil
	}
	return fmt.Errorf("%q covers every domain under the public suffix %s, which no tenant owns: list the tenant's own domains (such as example.%s or *.example.%s)", entry, base, base, base)
}

// Warnings lists settings that are valid but risky in production, each
// starting with its key path. `sesrelay check` prints them; they do not
// stop the relay.
func (c *Config) Warnings() []string {
	var w []string
	if c.Admin.PProf && c.Admin.Address != "" {
		if host, _, err := net.SplitHostPort(c.Admin.Address); err == nil && !isLoopbackHost(host) {
			w = append(w, fmt.Sprintf("admin.pprof: on while admin.address %q is not a loopback address: profiles reveal the relay's internals to anyone who reaches the port; keep it private (network policy, firewall) or turn pprof off", c.Admin.Address))
		}
	}
	selfSigned := ""
	switch {
	case c.Server.TLS.SelfSigned:
		selfSigned = "server.tls.self_signed"
	case c.Server.TLS.Certificate != nil && isSelfSigned(c.Server.TLS.Certificate.Certificate):
		selfSigned = "server.tls.cert_file"
	}
	if selfSigned != "" {
		for i, l := range c.Server.Listeners {
			host, _, err := net.SplitHostPort(l.Address)
			if err != nil || l.TLS == TLSNone || isLoopbackHost(host) {
				continue
			}
			w = append(w, fmt.Sprintf("%s: a self-signed certificate on server.listeners[%d] (%s), not a loopback address: clients cannot verify it and must skip verification, which lets anyone in the path read the passwords; use a certificate from a CA clients trust", selfSigned, i, l.Address))
		}
	}
	return w
}

// isSelfSigned reports whether the leaf of a certificate chain (DER) is
// signed by its own key.
func isSelfSigned(chain [][]byte) bool {
	if len(chain) != 1 {
		return false
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return false
	}
	return leaf.CheckSignatureFrom(leaf) == nil
}
