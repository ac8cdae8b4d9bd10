package config

import (
	"net/url"
	"path/filepath"
	"time"
)

// Suppression stores (suppression.store).
const (
	// SuppressionEmbedded keeps the suppression list in one bbolt file
	// under suppression.dir; for a single replica.
	SuppressionEmbedded = "embedded"
	// SuppressionDynamoDB keeps it in one DynamoDB table shared by every
	// replica.
	SuppressionDynamoDB = "dynamodb"
)

// MaxSuppressionCacheTTL bounds suppression.cache_ttl: an unsubscribe taken
// by one replica must hold on every replica within a minute.
const MaxSuppressionCacheTTL = 60 * time.Second

// Suppression configures where unsubscribes and other suppressions of
// (tenant, list, recipient) are kept (docs/unsubscribe.md).
type Suppression struct {
	Store string `mapstructure:"store"`
	// Dir holds the embedded store's file (suppression.db).
	Dir      string        `mapstructure:"dir"`
	DynamoDB DynamoDBTable `mapstructure:"dynamodb"`
	// CacheTTL is how long a lookup result is reused on the send path.
	// Another replica's unsubscribe is seen at the latest after CacheTTL;
	// 0 turns the cache off.
	CacheTTL time.Duration `mapstructure:"cache_ttl"`
	// CacheEntries bounds the lookup cache (recipients per replica).
	CacheEntries int `mapstructure:"cache_entries"`
	// Timeout bounds one store request on the send path.
	Timeout time.Duration `mapstructure:"timeout"`
}

// DynamoDBTable configures the shared suppression store.
type DynamoDBTable struct {
	Table string `mapstructure:"table"`
	// Region defaults to ses.region.
	Region string `mapstructure:"region"`
	// Endpoint overrides the DynamoDB endpoint (a local emulator, a VPC
	// endpoint); empty uses the region's.
	Endpoint string `mapstructure:"endpoint"`
}

// DefaultSuppression is the suppression section of Defaults.
func DefaultSuppression() Suppression {
	return Suppression{
		Store:        SuppressionEmbedded,
		CacheTTL:     10 * time.Second,
		CacheEntries: 100000,
		Timeout:      2 * time.Second,
	}
}

// SuppressionFile is the embedded store's file under dir.
func SuppressionFile(dir string) string { return filepath.Join(dir, "suppression.db") }

func (c *Config) validateSuppression(p *problems) {
	s := &c.Suppression
	switch s.Store {
	case SuppressionEmbedded:
		if s.DynamoDB.Table != "" {
			p.add("suppression.dynamodb.table", "is set but suppression.store is embedded; set suppression.store: dynamodb to use it")
		}
	case SuppressionDynamoDB:
		if s.DynamoDB.Table == "" {
			p.add("suppression.dynamodb.table", "required when suppression.store is dynamodb")
		}
		if s.Dir != "" {
			p.add("suppression.dir", "is set but suppression.store is dynamodb, which keeps nothing on disk")
		}
	default:
		p.add("suppression.store", "must be embedded or dynamodb, got %q", s.Store)
	}
	if e := s.DynamoDB.Endpoint; e != "" {
		if u, err := url.Parse(e); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.add("suppression.dynamodb.endpoint", "not an http(s) URL: %q", e)
		}
	}
	if r := s.DynamoDB.Region; r != "" && !regionRE.MatchString(r) {
		p.add("suppression.dynamodb.region", "not an AWS region: %q", r)
	}
	if s.CacheTTL < 0 || s.CacheTTL > MaxSuppressionCacheTTL {
		p.add("suppression.cache_ttl", "must be between 0s and %s, got %s (an unsubscribe must hold on every replica within a minute)", MaxSuppressionCacheTTL, s.CacheTTL)
	}
	if s.CacheEntries < 0 {
		p.add("suppression.cache_entries", "must not be negative")
	}
	if s.Timeout <= 0 {
		p.add("suppression.timeout", "must be a positive duration")
	}
}
