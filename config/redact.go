package config

// Redacted returns a copy safe to log: password hashes and secrets are
// replaced, file paths are kept.
func (c *Config) Redacted() Config {
	r := *c
	r.Server.TLS.Certificate = nil
	r.UnsubscribeServer.TLS.Certificate = nil
	r.Tenants = make([]Tenant, len(c.Tenants))
	for i, t := range c.Tenants {
		t.Users = make([]User, len(c.Tenants[i].Users))
		for j, u := range c.Tenants[i].Users {
			t.Users[j] = User{Username: u.Username, PasswordHash: "<redacted>", PasswordHashFile: u.PasswordHashFile}
		}
		if t.ListUnsubscribe != nil {
			lu := *t.ListUnsubscribe
			lu.Secret = nil
			lu.PreviousSecrets = nil
			lu.Webhook.Secret = nil
			t.ListUnsubscribe = &lu
		}
		t.DKIM = make([]DKIMKey, len(c.Tenants[i].DKIM))
		for j, k := range c.Tenants[i].DKIM {
			k.Signer = nil
			t.DKIM[j] = k
		}
		r.Tenants[i] = t
	}
	return r
}
