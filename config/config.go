// Package config defines the sesrelay configuration file: its types, the
// defaults, strict loading through viper (unknown keys are errors naming the
// key path), validation, and the loading of the secrets it points at
// (password hashes, DKIM keys, unsubscribe secrets) so that a bad file fails
// at start and not on the first message.
package config

import (
	"crypto"
	"crypto/tls"
	"time"
)

// Defaults returns the configuration every file is decoded on top of.
func Defaults() Config {
	return Config{
		Server: Server{
			Hostname:            "localhost",
			MaxMessageBytes:     40 << 20,
			MaxRecipients:       50,
			MaxConnections:      1000,
			MaxConnectionsPerIP: 100,
			ReadTimeout:         5 * time.Minute,
			WriteTimeout:        time.Minute,
			DataTimeout:         10 * time.Minute,
			ShutdownTimeout:     30 * time.Second,
			BareNewlines:        "normalize",
			MaxSessionDuration:  time.Hour,
			TLS:                 TLS{MinVersion: "1.2"},
		},
		Log:      Log{Level: "info", Format: "json"},
		Delivery: Delivery{Sender: SenderSES, FileDir: "./outbox", RetryMemoryTTL: 24 * time.Hour, RetryMemoryMax: 100000, Mode: ModeDirect},
		SES: SES{
			Region:         "us-east-1",
			Timeout:        60 * time.Second,
			MaxAttempts:    3,
			RetryAmbiguous: true,
			MaxSendRate:    "0",
			RateLimitWait:  2 * time.Second,
			MaxIdleConns:   64,
			Failover:       Failover{After: 3, ProbeEvery: 30 * time.Second},
		},
		Queue:             DefaultQueue(),
		UnsubscribeServer: DefaultUnsubscribeServer(),
		Suppression:       DefaultSuppression(),
		Auth: Auth{
			MaxFailuresPerConnection: 3,
			MaxFailures:              10,
			Lockout:                  5 * time.Minute,
			CacheTTL:                 5 * time.Minute,
			MaxConcurrentHashes:      4,
		},
	}
}

// defaultElements sets the defaults of keys inside lists, which the
// Defaults literal cannot hold: server.listeners[].tls,
// tenants[].from_policy, tenants[].display_name, tenants[].long_lines,
// tenants[].list_unsubscribe.mode and tenants[].suppressed_recipients.
func (c *Config) defaultElements() {
	for i := range c.Server.Listeners {
		if c.Server.Listeners[i].TLS == "" {
			c.Server.Listeners[i].TLS = TLSStartTLS
		}
	}
	for i := range c.Tenants {
		t := &c.Tenants[i]
		if t.FromPolicy == "" {
			t.FromPolicy = FromReject
		}
		if t.DisplayName == "" {
			t.DisplayName = DisplayKeep
		}
		if t.LongLines == "" {
			t.LongLines = LongLinesReject
		}
		if t.ListUnsubscribe != nil && t.ListUnsubscribe.Mode == "" {
			t.ListUnsubscribe.Mode = UnsubOff
		}
		if t.SuppressedRecipients == "" {
			t.SuppressedRecipients = SuppressDrop
		}
	}
}

// Config is the whole configuration file. Field tags are the key names
// operators write; they are an interface and must not be renamed.
type Config struct {
	Server   Server   `mapstructure:"server"`
	Admin    Admin    `mapstructure:"admin"`
	Log      Log      `mapstructure:"log"`
	Delivery Delivery `mapstructure:"delivery"`
	SES      SES      `mapstructure:"ses"`
	Auth     Auth     `mapstructure:"auth"`
	Tenants  []Tenant `mapstructure:"tenants"`
	Queue    Queue    `mapstructure:"queue"`
	// UnsubscribeServer is the built-in one-click unsubscribe endpoint
	// (config/unsubscribe.go).
	UnsubscribeServer UnsubscribeServer `mapstructure:"unsubscribe_server"`

	Suppression Suppression `mapstructure:"suppression"`

	// Path is the file the configuration was read from ("" for the
	// embedded default). It is not a key.
	Path string `mapstructure:"-"`
}

// Server configures the SMTP side.
type Server struct {
	Hostname            string        `mapstructure:"hostname"`
	Listeners           []Listener    `mapstructure:"listeners"`
	TLS                 TLS           `mapstructure:"tls"`
	MaxMessageBytes     int64         `mapstructure:"max_message_bytes"`
	MaxRecipients       int           `mapstructure:"max_recipients"`
	MaxConnections      int           `mapstructure:"max_connections"`
	MaxConnectionsPerIP int           `mapstructure:"max_connections_per_ip"`
	ReadTimeout         time.Duration `mapstructure:"read_timeout"`
	WriteTimeout        time.Duration `mapstructure:"write_timeout"`
	DataTimeout         time.Duration `mapstructure:"data_timeout"`
	ShutdownTimeout     time.Duration `mapstructure:"shutdown_timeout"`
	BareNewlines        string        `mapstructure:"bare_newlines"`
	// MaxInflightBytes bounds the message bytes all sessions hold at once
	// (0: derived from the process's memory limit, relay/budget.go), and
	// MaxSessionDuration the life of any session (config/budget.go).
	MaxInflightBytes   int64         `mapstructure:"max_inflight_bytes"`
	MaxSessionDuration time.Duration `mapstructure:"max_session_duration"`
}

// Listener is one SMTP listening socket.
type Listener struct {
	Address           string   `mapstructure:"address"`
	TLS               string   `mapstructure:"tls"`
	AllowInsecureAuth bool     `mapstructure:"allow_insecure_auth"`
	AllowedNetworks   []string `mapstructure:"allowed_networks"`
	// ProxyProtocol is off, optional or required: whether connections
	// from ProxyProtocolTrusted open with a PROXY protocol (v1 or v2)
	// header carrying the client's address (config/proxyproto.go).
	ProxyProtocol        string        `mapstructure:"proxy_protocol"`
	ProxyProtocolTrusted []string      `mapstructure:"proxy_protocol_trusted"`
	ProxyProtocolTimeout time.Duration `mapstructure:"proxy_protocol_timeout"`
}

// Listener TLS modes.
const (
	TLSStartTLS = "starttls"
	TLSImplicit = "implicit"
	TLSNone     = "none"
)

// TLS names the server certificate.
type TLS struct {
	CertFile   string `mapstructure:"cert_file"`
	KeyFile    string `mapstructure:"key_file"`
	SelfSigned bool   `mapstructure:"self_signed"`
	MinVersion string `mapstructure:"min_version"`

	// Certificate is loaded from CertFile/KeyFile by Validate.
	Certificate *tls.Certificate `mapstructure:"-"`
}

// Admin configures the HTTP listener for metrics and health. Changes
// take effect after a restart.
type Admin struct {
	Address string `mapstructure:"address"`
	// ReadyChecksSES makes /readyz also require a successful SES
	// GetAccount call (cached for 30 s) when delivery.sender is ses.
	ReadyChecksSES bool `mapstructure:"ready_checks_ses"`
	// PProf serves Go's /debug/pprof/ handlers on the admin listener.
	// Profiles reveal internals: keep the admin port private.
	PProf bool `mapstructure:"pprof"`
}

// Log configures the zap logger.
type Log struct {
	Level  string `mapstructure:"level"`
	Format string `mapstructure:"format"`
}

// Delivery chooses where accepted mail goes.
type Delivery struct {
	Sender  string `mapstructure:"sender"`
	FileDir string `mapstructure:"file_dir"`
	// RetryMemoryTTL and RetryMemoryMax bound the in-process memory of
	// recipients already sent when a message needs one SES call per
	// recipient (per-recipient unsubscribe tokens).
	RetryMemoryTTL time.Duration `mapstructure:"retry_memory_ttl"`
	RetryMemoryMax int           `mapstructure:"retry_memory_max"`
	// Mode is the delivery mode of tenants that set none (docs/queue.md).
	Mode string `mapstructure:"mode"`
}

// Delivery senders.
const (
	SenderSES  = "ses"
	SenderFile = "file"
)

// SES configures the Amazon SES v2 client.
type SES struct {
	Region          string            `mapstructure:"region"`
	Endpoint        string            `mapstructure:"endpoint"`
	Timeout         time.Duration     `mapstructure:"timeout"`
	MaxAttempts     int               `mapstructure:"max_attempts"`
	RetryAmbiguous  bool              `mapstructure:"retry_ambiguous"`
	MaxSendRate     string            `mapstructure:"max_send_rate"`
	RateLimitWait   time.Duration     `mapstructure:"rate_limit_wait"`
	Replicas        int               `mapstructure:"replicas"`
	MaxIdleConns    int               `mapstructure:"max_idle_conns"`
	EndpointID      string            `mapstructure:"endpoint_id"`
	Regions         []string          `mapstructure:"regions"`
	RegionEndpoints map[string]string `mapstructure:"region_endpoints"`
	Failover        Failover          `mapstructure:"failover"`
}

// Failover configures relay-side regional failover.
type Failover struct {
	After      int           `mapstructure:"after"`
	ProbeEvery time.Duration `mapstructure:"probe_every"`
}

// Auth configures SMTP AUTH protection.
type Auth struct {
	MaxFailuresPerConnection int           `mapstructure:"max_failures_per_connection"`
	MaxFailures              int           `mapstructure:"max_failures"`
	Lockout                  time.Duration `mapstructure:"lockout"`
	CacheTTL                 time.Duration `mapstructure:"cache_ttl"`
	MaxConcurrentHashes      int           `mapstructure:"max_concurrent_hashes"`
}

// Tenant is one customer of the relay: its users, the domains it may send
// as, and what SES settings its mail carries.
type Tenant struct {
	Name                     string            `mapstructure:"name"`
	Users                    []User            `mapstructure:"users"`
	Domains                  []string          `mapstructure:"domains"`
	ConfigurationSet         string            `mapstructure:"configuration_set"`
	AllowedConfigurationSets []string          `mapstructure:"allowed_configuration_sets"`
	Tags                     map[string]string `mapstructure:"tags"`
	HeaderTags               map[string]string `mapstructure:"header_tags"`
	IdentityARN              string            `mapstructure:"identity_arn"`
	Region                   string            `mapstructure:"region"`
	SESTenant                string            `mapstructure:"ses_tenant"`
	SESEndpointID            string            `mapstructure:"ses_endpoint_id"`
	FromPolicy               string            `mapstructure:"from_policy"`
	RewriteFrom              string            `mapstructure:"rewrite_from"`
	// DisplayName is what the relay does with address-like text in the
	// From display name (DisplayKeep, DisplayStripAddresses).
	DisplayName     string           `mapstructure:"display_name"`
	StripHeaders    []string         `mapstructure:"strip_headers"`
	ListUnsubscribe *ListUnsubscribe `mapstructure:"list_unsubscribe"`
	DKIM            []DKIMKey        `mapstructure:"dkim"`
	DKIMRequired    bool             `mapstructure:"dkim_required"`
	MaxSendRate     float64          `mapstructure:"max_send_rate"`
	MaxConnections  int              `mapstructure:"max_connections"`
	// LongLines is what a body line over 998 characters gets: reject
	// (554 5.6.0) or encode (its MIME part re-encoded, headers/longlines.go).
	LongLines string `mapstructure:"long_lines"`
	// MaxConcurrentMessages caps this tenant's transactions in progress
	// (MAIL to the end of DATA) at once; 0 = no limit.
	MaxConcurrentMessages int `mapstructure:"max_concurrent_messages"`
	// DeliveryMode overrides delivery.mode for this tenant ("" inherits).
	DeliveryMode string      `mapstructure:"delivery_mode"`
	Queue        TenantQueue `mapstructure:"queue"`
	// SuppressedRecipients is drop or reject: what happens to recipients
	// of a list message who unsubscribed from that list (config/unsubscribe.go).
	SuppressedRecipients string `mapstructure:"suppressed_recipients"`
}

// From policies.
const (
	FromReject  = "reject"
	FromRewrite = "rewrite"
)

// Display name policies (tenants[].display_name).
const (
	DisplayKeep           = "keep"
	DisplayStripAddresses = "strip_addresses"
)

// tenants[].long_lines values.
const (
	LongLinesReject = "reject"
	LongLinesEncode = "encode"
)

// User is one SMTP AUTH credential of a tenant.
type User struct {
	Username     string `mapstructure:"username"`
	PasswordHash string `mapstructure:"password_hash"`
	// PasswordHashFile names a file holding the hash instead (a mounted
	// Secret), so hashes need not sit in the policy file.
	PasswordHashFile string `mapstructure:"password_hash_file"`

	// Hash is PasswordHash parsed at load time.
	Hash *PasswordHash `mapstructure:"-"`
}

// ListUnsubscribe configures RFC 8058 one-click unsubscribe headers.
type ListUnsubscribe struct {
	Mode         string `mapstructure:"mode"`
	URL          string `mapstructure:"url"`
	Mailto       string `mapstructure:"mailto"`
	SecretFile   string `mapstructure:"secret_file"`
	ListIDHeader string `mapstructure:"list_id_header"`
	// PreviousSecretFiles are secrets the tenant used before SecretFile:
	// links made with them still verify at the built-in endpoint.
	PreviousSecretFiles []string `mapstructure:"previous_secret_files"`
	// Webhook, when its URL is set, is told of each unsubscribe the
	// built-in endpoint records (config/unsubscribe.go).
	Webhook UnsubscribeWebhook `mapstructure:"webhook"`

	// Secret is the content of SecretFile, loaded at load time.
	Secret []byte `mapstructure:"-"`
	// PreviousSecrets are the contents of PreviousSecretFiles.
	PreviousSecrets [][]byte `mapstructure:"-"`
}

// List-Unsubscribe modes.
const (
	UnsubOff      = "off"
	UnsubPreserve = "preserve"
	UnsubAdd      = "add"
	UnsubRequire  = "require"
)

// DKIMKey is one signing key of a tenant.
type DKIMKey struct {
	Domain     string        `mapstructure:"domain"`
	Selector   string        `mapstructure:"selector"`
	KeyFile    string        `mapstructure:"key_file"`
	Expiration time.Duration `mapstructure:"expiration"`

	// Signer is the private key loaded from KeyFile (*rsa.PrivateKey or
	// ed25519.PrivateKey).
	Signer crypto.Signer `mapstructure:"-"`
}

// TenantByName returns the tenant called name, or nil.
func (c *Config) TenantByName(name string) *Tenant {
	for i := range c.Tenants {
		if c.Tenants[i].Name == name {
			return &c.Tenants[i]
		}
	}
	return nil
}
