package config

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/sesrelay/sesrelay/address"
)

var (
	sesName     = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	sesTag      = regexp.MustCompile(`^[A-Za-z0-9_-]{1,256}$`)
	tenantName  = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	headerName  = regexp.MustCompile(`^[!-9;-~]+$`)
	selectorRE  = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$`)
	regionRE    = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-\d$`)
	identityARN = regexp.MustCompile(`^arn:aws[a-z-]*:ses:([a-z0-9-]+):(\d{12}):identity/(.+)$`)
	userRE      = regexp.MustCompile(`^[\x21-\x7e]{1,256}$`)
)

// endpointIDRE: the SDK puts an SES multi-region endpoint id in the host
// name ({id}.endpoints.email.{dns suffix}), so it must be host labels.
var endpointIDRE = selectorRE

// MaxSESMessageBytes is the SES v2 raw message limit.
const MaxSESMessageBytes = 40 << 20

type problems struct{ list []string }

func (p *problems) add(path, format string, args ...any) {
	p.list = append(p.list, path+": "+fmt.Sprintf(format, args...))
}

// Validate checks every value and returns *Errors listing every problem,
// each naming its key path. It changes nothing and reads no file: defaults
// come from Defaults (and defaultElements), normalization from normalize,
// and the files keys point at are read by LoadFiles.
func (c *Config) Validate() error {
	p := &problems{}
	c.validate(p)
	if len(p.list) > 0 {
		return &Errors{List: p.list}
	}
	return nil
}

func (c *Config) validate(p *problems) {
	c.validateServer(p)
	switch c.Admin.Address {
	case "":
	default:
		if _, _, err := net.SplitHostPort(c.Admin.Address); err != nil {
			p.add("admin.address", "not host:port: %q", c.Admin.Address)
		}
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		p.add("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "json", "console":
	default:
		p.add("log.format", "must be json or console, got %q", c.Log.Format)
	}
	switch c.Delivery.Sender {
	case SenderSES:
	case SenderFile:
		if c.Delivery.FileDir == "" {
			p.add("delivery.file_dir", "required when delivery.sender is file")
		}
	default:
		p.add("delivery.sender", "must be ses or file, got %q", c.Delivery.Sender)
	}
	if c.Delivery.RetryMemoryTTL <= 0 {
		p.add("delivery.retry_memory_ttl", "must be a positive duration")
	}
	if c.Delivery.RetryMemoryMax < 1 {
		p.add("delivery.retry_memory_max", "must be at least 1")
	}
	c.validateSES(p)
	c.validateAuth(p)
	c.validateTenants(p)
	c.validateQueue(p)
	c.validateUnsubscribeServer(p)
	c.validateSuppression(p)
}

// normalize puts every domain key in its canonical form (NormalizeDomain):
// tenants[].domains and tenants[].dkim[].domain. A domain that does not
// normalize stays as written, for Validate to report.
func (c *Config) normalize() {
	for i := range c.Tenants {
		t := &c.Tenants[i]
		for j, d := range t.Domains {
			if n, err := address.Pattern(d); err == nil {
				t.Domains[j] = n
			}
		}
		for j := range t.DKIM {
			if n, err := address.Pattern(t.DKIM[j].Domain); err == nil {
				t.DKIM[j].Domain = n
			}
		}
	}
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (c *Config) validateServer(p *problems) {
	s := &c.Server
	if s.Hostname == "" {
		p.add("server.hostname", "required")
	}
	if len(s.Listeners) == 0 {
		p.add("server.listeners", "at least one listener is required")
	}
	needTLS := false
	seen := map[string]int{}
	for i := range s.Listeners {
		l := &s.Listeners[i]
		path := fmt.Sprintf("server.listeners[%d]", i)
		host, port, err := net.SplitHostPort(l.Address)
		if err != nil || port == "" {
			p.add(path+".address", "not host:port: %q", l.Address)
		} else if j, dup := seen[l.Address]; dup && port != "0" {
			p.add(path+".address", "same address as server.listeners[%d]", j)
		} else {
			seen[l.Address] = i
		}
		switch l.TLS {
		case TLSStartTLS, TLSImplicit:
			needTLS = true
		case TLSNone:
		default:
			p.add(path+".tls", "must be starttls, implicit or none, got %q", l.TLS)
		}
		if l.AllowInsecureAuth && err == nil && !isLoopbackHost(host) {
			p.add(path+".allow_insecure_auth", "only allowed on a loopback address, not %q", host)
		}
		if l.TLS == TLSNone && !l.AllowInsecureAuth {
			p.add(path+".tls", "none without allow_insecure_auth leaves no way to authenticate")
		}
		for j, n := range l.AllowedNetworks {
			if _, _, err := net.ParseCIDR(n); err != nil {
				if net.ParseIP(n) == nil {
					p.add(fmt.Sprintf("%s.allowed_networks[%d]", path, j), "not a CIDR: %q", n)
				}
			}
		}
		validateProxyProtocol(p, path, l)
	}
	t := &s.TLS
	switch {
	case t.SelfSigned && (t.CertFile != "" || t.KeyFile != ""):
		p.add("server.tls.self_signed", "cannot be combined with cert_file/key_file")
	case t.CertFile != "" && t.KeyFile == "":
		p.add("server.tls.key_file", "required with cert_file")
	case t.KeyFile != "" && t.CertFile == "":
		p.add("server.tls.cert_file", "required with key_file")
	case t.CertFile != "":
		// Loaded by LoadFiles.
	case needTLS && !t.SelfSigned:
		p.add("server.tls", "a listener uses TLS: set cert_file and key_file (or self_signed: true for development)")
	}
	switch t.MinVersion {
	case "1.2", "1.3":
	default:
		p.add("server.tls.min_version", "must be 1.2 or 1.3, got %q", t.MinVersion)
	}
	if s.MaxMessageBytes <= 0 || s.MaxMessageBytes > MaxSESMessageBytes {
		p.add("server.max_message_bytes", "must be between 1 and %d (the SES limit), got %d", MaxSESMessageBytes, s.MaxMessageBytes)
	}
	if s.MaxRecipients < 1 || s.MaxRecipients > 50 {
		p.add("server.max_recipients", "must be between 1 and 50 (SES takes at most 50 per call), got %d", s.MaxRecipients)
	}
	if s.MaxConnections < 1 {
		p.add("server.max_connections", "must be at least 1, got %d", s.MaxConnections)
	}
	if s.MaxConnectionsPerIP < 0 {
		p.add("server.max_connections_per_ip", "must not be negative (0 = no limit), got %d", s.MaxConnectionsPerIP)
	}
	for name, d := range map[string]int64{"read_timeout": int64(s.ReadTimeout), "write_timeout": int64(s.WriteTimeout), "data_timeout": int64(s.DataTimeout), "shutdown_timeout": int64(s.ShutdownTimeout)} {
		if d <= 0 {
			p.add("server."+name, "must be a positive duration")
		}
	}
	switch s.BareNewlines {
	case "normalize", "reject":
	default:
		p.add("server.bare_newlines", "must be normalize or reject, got %q", s.BareNewlines)
	}
	validateBudget(p, s) // config/budget.go
}

func (c *Config) validateSES(p *problems) {
	s := &c.SES
	if !regionRE.MatchString(s.Region) {
		p.add("ses.region", "not an AWS region: %q", s.Region)
	}
	if s.Endpoint != "" {
		if u, err := url.Parse(s.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.add("ses.endpoint", "not an http(s) URL: %q", s.Endpoint)
		}
	}
	if s.Timeout <= 0 {
		p.add("ses.timeout", "must be a positive duration")
	}
	if s.MaxAttempts < 1 || s.MaxAttempts > 10 {
		p.add("ses.max_attempts", "must be between 1 and 10, got %d", s.MaxAttempts)
	}
	if s.MaxSendRate != "auto" {
		if f, err := strconv.ParseFloat(s.MaxSendRate, 64); err != nil || f < 0 {
			p.add("ses.max_send_rate", "must be auto or a number of recipients per second (0 = no limit), got %q", s.MaxSendRate)
		}
	}
	if s.Replicas < 0 {
		p.add("ses.replicas", "must not be negative")
	}
	if s.RateLimitWait < 0 {
		p.add("ses.rate_limit_wait", "must not be negative (0 = refuse at once when over the rate)")
	}
	if s.MaxIdleConns < 1 {
		p.add("ses.max_idle_conns", "must be at least 1")
	}
	for i, r := range s.Regions {
		if !regionRE.MatchString(r) {
			p.add(fmt.Sprintf("ses.regions[%d]", i), "not an AWS region: %q", r)
		} else if slices.Index(s.Regions, r) < i {
			p.add(fmt.Sprintf("ses.regions[%d]", i), "%s is listed twice", r)
		}
	}
	// ses.region stays the region GetAccount asks (max_send_rate: auto,
	// readiness) and doctor starts from: it must be one the relay sends
	// through.
	if len(s.Regions) > 0 && !slices.Contains(s.Regions, s.Region) {
		p.add("ses.region", "%s is not in ses.regions %v: list it there or set ses.region to one of them", s.Region, s.Regions)
	}
	if s.EndpointID != "" && !endpointIDRE.MatchString(s.EndpointID) {
		p.add("ses.endpoint_id", "not an SES multi-region endpoint id (letters, digits, hyphens, dots): %q", s.EndpointID)
	}
	for r, e := range s.RegionEndpoints {
		if u, err := url.Parse(e); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.add("ses.region_endpoints."+r, "not an http(s) URL: %q", e)
		}
	}
	if s.Failover.After < 1 {
		p.add("ses.failover.after", "must be at least 1")
	}
	if s.Failover.ProbeEvery <= 0 {
		p.add("ses.failover.probe_every", "must be a positive duration")
	}
}

func (c *Config) validateAuth(p *problems) {
	a := &c.Auth
	if a.MaxFailuresPerConnection < 1 {
		p.add("auth.max_failures_per_connection", "must be at least 1")
	}
	if a.MaxFailures < 1 {
		p.add("auth.max_failures", "must be at least 1")
	}
	if a.Lockout <= 0 {
		p.add("auth.lockout", "must be a positive duration")
	}
	if a.CacheTTL < 0 {
		p.add("auth.cache_ttl", "must not be negative (0 disables the cache)")
	}
	if a.MaxConcurrentHashes < 1 {
		p.add("auth.max_concurrent_hashes", "must be at least 1")
	}
}

func (c *Config) validateTenants(p *problems) {
	if len(c.Tenants) == 0 {
		p.add("tenants", "at least one tenant is required")
	}
	p.list = append(p.list, c.uniqueProblems()...)
	for i := range c.Tenants {
		t := &c.Tenants[i]
		path := fmt.Sprintf("tenants[%d]", i)
		if !tenantName.MatchString(t.Name) {
			p.add(path+".name", "must be 1-63 characters of a-z, 0-9, _ and -, got %q", t.Name)
		}
		if len(t.Users) == 0 {
			p.add(path+".users", "at least one user is required")
		}
		for j := range t.Users {
			u := &t.Users[j]
			up := fmt.Sprintf("%s.users[%d]", path, j)
			if !userRE.MatchString(u.Username) {
				p.add(up+".username", "must be 1-256 printable ASCII characters without spaces")
			}
			if u.PasswordHashFile != "" && u.PasswordHash != "" {
				p.add(up+".password_hash_file", "set password_hash or password_hash_file, not both")
			}
			// The hash itself is parsed by LoadFiles (it may come from a file).
		}
		if len(t.Domains) == 0 {
			p.add(path+".domains", "at least one domain is required")
		}
		for j, d := range t.Domains {
			if _, err := address.Pattern(d); err != nil {
				p.add(fmt.Sprintf("%s.domains[%d]", path, j), "%v", err)
			} else if err := checkPublicSuffixWildcard(d); err != nil {
				p.add(fmt.Sprintf("%s.domains[%d]", path, j), "%v", err)
			}
		}
		if t.ConfigurationSet != "" && !sesName.MatchString(t.ConfigurationSet) {
			p.add(path+".configuration_set", "must be 1-64 characters of A-Z, a-z, 0-9, _ and -")
		}
		for j, cs := range t.AllowedConfigurationSets {
			if !sesName.MatchString(cs) {
				p.add(fmt.Sprintf("%s.allowed_configuration_sets[%d]", path, j), "must be 1-64 characters of A-Z, a-z, 0-9, _ and -")
			}
		}
		for k, v := range t.Tags {
			if !sesTag.MatchString(k) {
				p.add(path+".tags."+k, "tag name must be 1-256 characters of A-Z, a-z, 0-9, _ and -")
			}
			if !sesTag.MatchString(v) {
				p.add(path+".tags."+k, "tag value %q must be 1-256 characters of A-Z, a-z, 0-9, _ and -", v)
			}
			if k == "tenant" || k == "from_domain" {
				p.add(path+".tags."+k, "reserved: the relay sets this tag itself")
			}
		}
		for h, tag := range t.HeaderTags {
			if !headerName.MatchString(h) {
				p.add(path+".header_tags."+h, "not a header field name")
			}
			if !sesTag.MatchString(tag) {
				p.add(path+".header_tags."+h, "tag name %q must be 1-256 characters of A-Z, a-z, 0-9, _ and -", tag)
			}
			if tag == "tenant" || tag == "from_domain" {
				p.add(path+".header_tags."+h, "tag name %q is reserved: the relay sets it itself", tag)
			}
			if strings.HasPrefix(strings.ToLower(h), "x-ses-") {
				p.add(path+".header_tags."+h, "X-SES-* fields are removed, never turned into tags")
			}
		}
		if t.IdentityARN != "" {
			if m := identityARN.FindStringSubmatch(t.IdentityARN); m == nil {
				p.add(path+".identity_arn", "not an SES identity ARN (arn:aws:ses:REGION:ACCOUNT:identity/NAME): %q", t.IdentityARN)
			} else if region := t.Region; region == "" && m[1] != c.SES.Region && len(c.SES.Regions) == 0 {
				p.add(path+".identity_arn", "identity is in %s but the tenant sends through %s: set tenants[%d].region: %s", m[1], c.SES.Region, i, m[1])
			} else if region == "" && len(c.SES.Regions) > 0 && !slices.Contains(c.SES.Regions, m[1]) {
				p.add(path+".identity_arn", "identity is in %s, which is not in ses.regions %v: a delegated identity is regional, so this tenant sends through %s only, without failover; add %s to ses.regions or set tenants[%d].region: %s",
					m[1], c.SES.Regions, m[1], m[1], i, m[1])
			} else if region != "" && m[1] != region {
				p.add(path+".identity_arn", "identity is in %s but tenants[%d].region is %s", m[1], i, region)
			}
		}
		if t.Region != "" && !regionRE.MatchString(t.Region) {
			p.add(path+".region", "not an AWS region: %q", t.Region)
		}
		if t.SESEndpointID != "" && !endpointIDRE.MatchString(t.SESEndpointID) {
			p.add(path+".ses_endpoint_id", "not an SES multi-region endpoint id (letters, digits, hyphens, dots): %q", t.SESEndpointID)
		}
		if t.SESTenant != "" && !sesName.MatchString(t.SESTenant) {
			p.add(path+".ses_tenant", "must be 1-64 characters of A-Z, a-z, 0-9, _ and -")
		}
		switch t.FromPolicy {
		case FromReject:
			if t.RewriteFrom != "" {
				p.add(path+".rewrite_from", "only used with from_policy: rewrite")
			}
		case FromRewrite:
			a, err := mail.ParseAddress(t.RewriteFrom)
			if err != nil || a.Name != "" {
				p.add(path+".rewrite_from", "must be a bare address like noreply@%s, got %q", firstDomain(t), t.RewriteFrom)
			} else if !t.owns(a.Address) {
				p.add(path+".rewrite_from", "%q is not in the tenant's domains", t.RewriteFrom)
			}
		default:
			p.add(path+".from_policy", "must be reject or rewrite, got %q", t.FromPolicy)
		}
		switch t.DisplayName {
		case DisplayKeep, DisplayStripAddresses:
		default:
			p.add(path+".display_name", "must be keep or strip_addresses, got %q", t.DisplayName)
		}
		if t.LongLines != LongLinesReject && t.LongLines != LongLinesEncode {
			p.add(path+".long_lines", "must be reject or encode, got %q", t.LongLines)
		}
		for j, h := range t.StripHeaders {
			if !headerName.MatchString(h) {
				p.add(fmt.Sprintf("%s.strip_headers[%d]", path, j), "not a header field name: %q", h)
			}
		}
		if t.ListUnsubscribe != nil {
			validateUnsub(p, path+".list_unsubscribe", t)
		}
		for j := range t.DKIM {
			validateDKIM(p, fmt.Sprintf("%s.dkim[%d]", path, j), t, &t.DKIM[j])
		}
		if t.DKIMRequired && len(t.DKIM) == 0 {
			p.add(path+".dkim_required", "true but the tenant has no dkim keys")
		}
		if t.MaxSendRate < 0 {
			p.add(path+".max_send_rate", "must not be negative (0 = no limit)")
		}
		if t.MaxConnections < 0 {
			p.add(path+".max_connections", "must not be negative (0 = no limit)")
		}
		if t.MaxConcurrentMessages < 0 {
			p.add(path+".max_concurrent_messages", "must not be negative (0 = no limit)")
		}
	}
	// No tenant may own a domain another tenant owns: that would let one
	// act as the other.
	for i := range c.Tenants {
		for j := range c.Tenants {
			if i >= j {
				continue
			}
			for a, da := range c.Tenants[i].Domains {
				for b, db := range c.Tenants[j].Domains {
					if overlap(da, db) {
						p.add(fmt.Sprintf("tenants[%d].domains[%d]", j, b), "%q overlaps %q of tenant %q (tenants[%d].domains[%d])", db, da, c.Tenants[i].Name, i, a)
					}
				}
			}
		}
	}
}

func overlap(a, b string) bool {
	strip := func(s string) string { return strings.TrimPrefix(s, "*.") }
	return address.Covers(a, strip(b)) || address.Covers(b, strip(a)) || a == b ||
		(strings.HasPrefix(b, "*.") && address.Covers(a, "x."+strip(b))) ||
		(strings.HasPrefix(a, "*.") && address.Covers(b, "x."+strip(a)))
}

func firstDomain(t *Tenant) string {
	for _, d := range t.Domains {
		return strings.TrimPrefix(d, "*.")
	}
	return "example.com"
}

// owns reports whether the tenant's domains cover the domain of addr.
func (t *Tenant) owns(addr string) bool {
	_, domain, ok := address.Split(addr)
	if !ok {
		return false
	}
	d, err := address.Domain(domain)
	if err != nil {
		return false
	}
	for _, e := range t.Domains {
		if address.Covers(e, d) {
			return true
		}
	}
	return false
}

func validateUnsub(p *problems, path string, t *Tenant) {
	u := t.ListUnsubscribe
	switch u.Mode {
	case UnsubOff, UnsubPreserve, UnsubAdd, UnsubRequire:
	default:
		p.add(path+".mode", "must be off, preserve, add or require, got %q", u.Mode)
	}
	if u.Mode != UnsubAdd {
		return
	}
	if pu, err := url.Parse(u.URL); err != nil || pu.Scheme != "https" || pu.Host == "" {
		p.add(path+".url", "must be an https URL, got %q", u.URL)
	}
	if u.Mailto != "" {
		if a, err := mail.ParseAddress(u.Mailto); err != nil || a.Name != "" {
			p.add(path+".mailto", "not a bare address: %q", u.Mailto)
		}
	}
	if u.SecretFile == "" {
		p.add(path+".secret_file", "required for mode add (an HMAC key of at least 32 bytes)")
	}
}

func validateDKIM(p *problems, path string, t *Tenant, k *DKIMKey) {
	d, err := address.Pattern(k.Domain)
	if err != nil || strings.HasPrefix(d, "*.") {
		p.add(path+".domain", "not a domain: %q", k.Domain)
	} else {
		owned := false
		for _, e := range t.Domains {
			if address.Covers(e, d) {
				owned = true
			}
		}
		if !owned {
			p.add(path+".domain", "%q is not among the tenant's domains", d)
		}
	}
	if !selectorRE.MatchString(k.Selector) {
		p.add(path+".selector", "not a DKIM selector: %q", k.Selector)
	}
	if k.Expiration < 0 {
		p.add(path+".expiration", "must not be negative")
	}
	if k.KeyFile == "" {
		p.add(path+".key_file", "required")
	}
}

// LoadPrivateKey reads a PEM PKCS#1 or PKCS#8 RSA key (at least 2048 bits)
// or a PKCS#8 Ed25519 key.
func LoadPrivateKey(file string) (crypto.Signer, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	return ParsePrivateKey(b)
}

// ParsePrivateKey is LoadPrivateKey on bytes.
func ParsePrivateKey(b []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM block found")
	}
	var key any
	var err error
	switch block.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("unsupported PEM block %q (want PRIVATE KEY or RSA PRIVATE KEY)", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("bad private key: %v", err)
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("RSA key has %d bits, at least 2048 are required", k.N.BitLen())
		}
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("unsupported key type %T (want RSA or Ed25519)", key)
}

// CheckUnique reports tenant names and usernames used twice, as *Errors
// naming the key of each repeat. Validate includes it; policy.Compile
// calls it too, since its lookups by name and username rely on it.
func (c *Config) CheckUnique() error {
	if l := c.uniqueProblems(); len(l) > 0 {
		return &Errors{List: l}
	}
	return nil
}

func (c *Config) uniqueProblems() []string {
	p := &problems{}
	names := map[string]int{}
	users := map[string]string{}
	for i := range c.Tenants {
		t := &c.Tenants[i]
		path := fmt.Sprintf("tenants[%d]", i)
		if j, dup := names[t.Name]; dup && t.Name != "" {
			p.add(path+".name", "%q is already tenants[%d]", t.Name, j)
		} else {
			names[t.Name] = i
		}
		for j := range t.Users {
			u := &t.Users[j]
			up := fmt.Sprintf("%s.users[%d]", path, j)
			if other, dup := users[u.Username]; dup && u.Username != "" {
				p.add(up+".username", "%q is already used by %s", u.Username, other)
			} else {
				users[u.Username] = up
			}
		}
	}
	return p.list
}
