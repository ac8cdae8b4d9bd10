package config

import (
	"testing"
	"time"
)

func TestSuppressionConfig(t *testing.T) {
	base := `
server:
  hostname: relay.test
  listeners: [{address: "127.0.0.1:2587"}]
  tls: {self_signed: true}
tenants:
  - name: a
    users: [{username: a, password_hash: "$2a$10$fLk/pjHAlbeiM/xrxs7rM.c4LTB14MuTZ6tjapQ/.k4ypkOY1Q3IC"}]
    domains: [a.example.com]
`
	cfg, err := Parse([]byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if s := cfg.Suppression; s.Store != SuppressionEmbedded || s.CacheTTL != 10*time.Second || s.CacheEntries != 100000 || s.Timeout != 2*time.Second {
		t.Errorf("defaults: %+v", s)
	}
	cfg, err = Parse([]byte(base + `
suppression:
  store: dynamodb
  cache_ttl: 0s
  dynamodb: {table: sesrelay-suppression, region: eu-west-1, endpoint: "http://127.0.0.1:4567"}
`))
	if err != nil {
		t.Fatal(err)
	}
	want := Suppression{Store: SuppressionDynamoDB, CacheTTL: 0, CacheEntries: 100000, Timeout: 2 * time.Second,
		DynamoDB: DynamoDBTable{Table: "sesrelay-suppression", Region: "eu-west-1", Endpoint: "http://127.0.0.1:4567"}}
	if cfg.Suppression != want {
		t.Errorf("suppression = %+v, want %+v", cfg.Suppression, want)
	}
}
