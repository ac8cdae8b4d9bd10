package config

import (
	"crypto/tls"
	"fmt"
	"os"
	"strings"
)

// LoadFiles reads and parses what keys point at or encode: the TLS
// certificate (server.tls.cert_file/key_file), password hashes
// (tenants[].users[].password_hash or password_hash_file), unsubscribe
// secrets (tenants[].list_unsubscribe.secret_file) and DKIM keys
// (tenants[].dkim[].key_file), so a bad file fails at load and not on the
// first message. It returns *Errors naming the key of each problem. Keys
// Validate refuses are skipped where their file cannot be named.
func (c *Config) LoadFiles() error {
	p := &problems{}
	c.loadFiles(p)
	if len(p.list) > 0 {
		return &Errors{List: p.list}
	}
	return nil
}

func (c *Config) loadFiles(p *problems) {
	if t := &c.Server.TLS; t.CertFile != "" && t.KeyFile != "" && !t.SelfSigned {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			p.add("server.tls.cert_file", "%v", err)
		} else {
			t.Certificate = &cert
		}
	}
	for i := range c.Tenants {
		t := &c.Tenants[i]
		path := fmt.Sprintf("tenants[%d]", i)
		for j := range t.Users {
			u := &t.Users[j]
			up := fmt.Sprintf("%s.users[%d]", path, j)
			hashKey := up + ".password_hash"
			if u.PasswordHashFile != "" {
				if u.PasswordHash != "" {
					continue // both set: Validate says so
				}
				hashKey = up + ".password_hash_file"
				b, err := os.ReadFile(u.PasswordHashFile)
				if err != nil {
					p.add(hashKey, "%v", err)
					continue
				}
				u.PasswordHash = strings.TrimSpace(string(b))
			}
			h, err := ParsePasswordHash(u.PasswordHash)
			if err != nil {
				p.add(hashKey, "%v", err)
			}
			u.Hash = h
		}
		// Loaded in every mode: the built-in unsubscribe endpoint
		// verifies links of mail sent while the mode was add.
		if u := t.ListUnsubscribe; u != nil && u.SecretFile != "" {
			loadSecret(p, path+".list_unsubscribe.secret_file", u)
		}
		for j := range t.DKIM {
			k := &t.DKIM[j]
			if k.KeyFile == "" {
				continue
			}
			signer, err := LoadPrivateKey(k.KeyFile)
			if err != nil {
				p.add(fmt.Sprintf("%s.dkim[%d].key_file", path, j), "%v", err)
				continue
			}
			k.Signer = signer
		}
	}
	c.loadUnsubscribeFiles(p)
}

func loadSecret(p *problems, key string, u *ListUnsubscribe) {
	secret, err := readSecret(u.SecretFile)
	if err != nil {
		p.add(key, "%v", err)
		return
	}
	u.Secret = secret
}

// readSecret reads an unsubscribe secret: the file's content without
// leading and trailing whitespace, at least 32 bytes.
func readSecret(file string) ([]byte, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	secret := []byte(strings.TrimSpace(string(b)))
	if len(secret) < 32 {
		return nil, fmt.Errorf("%s holds %d bytes, at least 32 are required", file, len(secret))
	}
	return secret, nil
}
