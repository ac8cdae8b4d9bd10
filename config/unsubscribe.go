package config

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"time"
)

// UnsubscribeServer configures the built-in RFC 8058 one-click unsubscribe
// endpoint (docs/unsubscribe.md): an HTTP(S) listener serving /u/{token}
// for tokens the relay made. Changes take effect after a restart.
type UnsubscribeServer struct {
	// Address is host:port to listen on; empty turns the listener off.
	Address string `mapstructure:"address"`
	// TLS names the listener's certificate; without one the listener
	// speaks plain HTTP for a TLS-terminating load balancer or ingress.
	TLS UnsubscribeTLS `mapstructure:"tls"`
	// TrustedProxies are the addresses (CIDRs) of the load balancers in
	// front of the listener: a request from one of them is attributed to
	// the address it names in X-Forwarded-For. From any other address the
	// header is ignored.
	TrustedProxies []string `mapstructure:"trusted_proxies"`
	// RateLimit is the requests per second allowed per client address,
	// RateBurst how many may come at once.
	RateLimit float64 `mapstructure:"rate_limit"`
	RateBurst int     `mapstructure:"rate_burst"`
	// MaxBodyBytes bounds a request body (the one-click body is 26 bytes).
	MaxBodyBytes int64 `mapstructure:"max_body_bytes"`
	// ShutdownTimeout bounds the wait for requests in progress at stop.
	ShutdownTimeout time.Duration `mapstructure:"shutdown_timeout"`
}

// UnsubscribeTLS is the unsubscribe listener's certificate.
type UnsubscribeTLS struct {
	CertFile string `mapstructure:"cert_file"`
	KeyFile  string `mapstructure:"key_file"`

	// Certificate is loaded from CertFile/KeyFile by LoadFiles.
	Certificate *tls.Certificate `mapstructure:"-"`
}

// UnsubscribeWebhook is a tenant's application endpoint that the built-in
// unsubscribe endpoint POSTs each recorded unsubscribe to, as JSON signed
// with HMAC-SHA256 under the content of SecretFile (docs/unsubscribe.md).
type UnsubscribeWebhook struct {
	URL        string `mapstructure:"url"`
	SecretFile string `mapstructure:"secret_file"`

	// Secret is the content of SecretFile, loaded at load time.
	Secret []byte `mapstructure:"-"`
}

// What a tenant does with the recipients of a list message who
// unsubscribed from that list (tenants[].suppressed_recipients).
const (
	// SuppressDrop leaves them out of the SES request; the others get
	// the message. When none remain, nothing is sent and the reply is 250.
	SuppressDrop = "drop"
	// SuppressReject is SuppressDrop, except that a message whose every
	// recipient is suppressed is refused with 550 5.7.1.
	SuppressReject = "reject"
)

// DefaultUnsubscribeServer is the unsubscribe_server section of Defaults.
func DefaultUnsubscribeServer() UnsubscribeServer {
	return UnsubscribeServer{
		RateLimit:       1,
		RateBurst:       20,
		MaxBodyBytes:    16 << 10,
		ShutdownTimeout: 10 * time.Second,
	}
}

// maxUnsubscribeBody: a one-click body is 26 bytes, multipart a few
// hundred; more than this is never a mailbox provider.
const maxUnsubscribeBody = 1 << 20

func (c *Config) validateUnsubscribeServer(p *problems) {
	u := &c.UnsubscribeServer
	if u.Address != "" {
		if _, _, err := net.SplitHostPort(u.Address); err != nil {
			p.add("unsubscribe_server.address", "not host:port: %q", u.Address)
		}
		if !c.SuppressionOn() {
			p.add("unsubscribe_server.address", "the endpoint records unsubscribes in the suppression store: set suppression.dir (or suppression.store: dynamodb)")
		}
	}
	if (u.TLS.CertFile == "") != (u.TLS.KeyFile == "") {
		p.add("unsubscribe_server.tls", "cert_file and key_file go together (neither: plain HTTP behind a TLS-terminating load balancer)")
	}
	for i, n := range u.TrustedProxies {
		if _, err := ParsePrefix(n); err != nil {
			p.add(fmt.Sprintf("unsubscribe_server.trusted_proxies[%d]", i), "not a CIDR or IP address: %q", n)
		}
	}
	if u.RateLimit <= 0 {
		p.add("unsubscribe_server.rate_limit", "must be a positive number of requests per second per client address")
	}
	if u.RateBurst < 1 {
		p.add("unsubscribe_server.rate_burst", "must be at least 1")
	}
	if u.MaxBodyBytes < 64 || u.MaxBodyBytes > maxUnsubscribeBody {
		p.add("unsubscribe_server.max_body_bytes", "must be between 64 and %d, got %d", maxUnsubscribeBody, u.MaxBodyBytes)
	}
	if u.ShutdownTimeout <= 0 {
		p.add("unsubscribe_server.shutdown_timeout", "must be a positive duration")
	}
	for i := range c.Tenants {
		t := &c.Tenants[i]
		path := fmt.Sprintf("tenants[%d]", i)
		switch t.SuppressedRecipients {
		case SuppressDrop, SuppressReject:
		default:
			p.add(path+".suppressed_recipients", "must be drop or reject, got %q", t.SuppressedRecipients)
		}
		lu := t.ListUnsubscribe
		if lu == nil {
			continue
		}
		if wh := &lu.Webhook; wh.URL != "" || wh.SecretFile != "" {
			wp := path + ".list_unsubscribe.webhook"
			if pu, err := url.Parse(wh.URL); err != nil || (pu.Scheme != "https" && pu.Scheme != "http") || pu.Host == "" || pu.User != nil {
				p.add(wp+".url", "must be an http:// or https:// URL without user info, got %q", wh.URL)
			}
			if wh.SecretFile == "" {
				p.add(wp+".secret_file", "required with a webhook url (an HMAC key of at least 32 bytes)")
			}
		}
		if len(lu.PreviousSecretFiles) > 0 && lu.SecretFile == "" {
			p.add(path+".list_unsubscribe.previous_secret_files", "set without secret_file: the current secret comes first")
		}
		for j, f := range lu.PreviousSecretFiles {
			if f == "" {
				p.add(fmt.Sprintf("%s.list_unsubscribe.previous_secret_files[%d]", path, j), "empty file name")
			}
		}
	}
}

// loadUnsubscribeFiles loads the unsubscribe listener's certificate and
// every tenant's previous unsubscribe secrets.
func (c *Config) loadUnsubscribeFiles(p *problems) {
	if t := &c.UnsubscribeServer.TLS; t.CertFile != "" && t.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			p.add("unsubscribe_server.tls.cert_file", "%v", err)
		} else {
			t.Certificate = &cert
		}
	}
	for i := range c.Tenants {
		lu := c.Tenants[i].ListUnsubscribe
		if lu == nil {
			continue
		}
		lu.PreviousSecrets = nil
		lu.Webhook.Secret = nil
		if f := lu.Webhook.SecretFile; f != "" && lu.Webhook.URL != "" {
			s, err := readSecret(f)
			if err != nil {
				p.add(fmt.Sprintf("tenants[%d].list_unsubscribe.webhook.secret_file", i), "%v", err)
			} else {
				lu.Webhook.Secret = s
			}
		}
		for j, f := range lu.PreviousSecretFiles {
			if f == "" {
				continue
			}
			s, err := readSecret(f)
			if err != nil {
				p.add(fmt.Sprintf("tenants[%d].list_unsubscribe.previous_secret_files[%d]", i, j), "%v", err)
				continue
			}
			lu.PreviousSecrets = append(lu.PreviousSecrets, s)
		}
	}
}

// UnsubscribeSecrets are the secrets a token of t may be made with,
// current first; none when the tenant has no list_unsubscribe secret.
func (t *Tenant) UnsubscribeSecrets() [][]byte {
	lu := t.ListUnsubscribe
	if lu == nil || len(lu.Secret) == 0 {
		return nil
	}
	return append([][]byte{lu.Secret}, lu.PreviousSecrets...)
}

// SuppressionOn reports whether the relay keeps a suppression store:
// suppression.store is dynamodb, or embedded with suppression.dir set.
// serve then opens it at start, leaves suppressed recipients out of list
// mail and records the built-in endpoint's unsubscribes in it.
func (c *Config) SuppressionOn() bool {
	s := &c.Suppression
	return s.Store == SuppressionDynamoDB || (s.Store == SuppressionEmbedded && s.Dir != "")
}
