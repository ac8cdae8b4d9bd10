package suppression

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sesrelay/sesrelay/config"
	"github.com/sesrelay/sesrelay/suppression/dynalitetest"
)

// benchRcpts are n recipients of which every tenth is suppressed in s.
func benchRcpts(b *testing.B, s Store, n int) []string {
	var rcpts []string
	var es []Entry
	for i := 0; i < n; i++ {
		r := fmt.Sprintf("user%d@example.com", i)
		rcpts = append(rcpts, r)
		if i%10 == 0 {
			es = append(es, Entry{Tenant: "acme", List: "news", Recipient: r})
		}
	}
	if err := s.(Batcher).AddMany(context.Background(), es); err != nil {
		b.Fatal(err)
	}
	return rcpts
}

func benchLookups(b *testing.B, s Store, rcpts []string) {
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Suppressed(ctx, "acme", "news", rcpts); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSuppressed measures one message's lookup: its recipients
// against (tenant, list), through the store alone (cache_ttl 0: every
// lookup reads the store) and through a warm cache.
func BenchmarkSuppressed(b *testing.B) {
	for _, n := range []int{1, 10, 50} {
		for _, ttl := range []time.Duration{0, 10 * time.Second} {
			b.Run(fmt.Sprintf("embedded/rcpts=%d/cache_ttl=%s", n, ttl), func(b *testing.B) {
				c := config.DefaultSuppression()
				c.Dir, c.CacheTTL = b.TempDir(), ttl
				s, err := Open(context.Background(), c, Options{})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				benchLookups(b, s, benchRcpts(b, s, n))
			})
		}
	}
	b.Run("dynamodb", func(b *testing.B) {
		endpoint := dynalitetest.Start(b)
		for _, n := range []int{1, 10, 50} {
			for _, ttl := range []time.Duration{0, 10 * time.Second} {
				b.Run(fmt.Sprintf("rcpts=%d/cache_ttl=%s", n, ttl), func(b *testing.B) {
					c := config.DefaultSuppression()
					c.Store, c.CacheTTL = config.SuppressionDynamoDB, ttl
					c.DynamoDB = config.DynamoDBTable{Table: fmt.Sprintf("bench-%d-%d", n, ttl), Region: "us-east-1", Endpoint: endpoint}
					raw, err := NewDynamoDB(context.Background(), c.DynamoDB, Options{AWSConfig: dynalitetest.AWSConfig()})
					if err != nil {
						b.Fatal(err)
					}
					if err := raw.CreateTable(context.Background()); err != nil {
						b.Fatal(err)
					}
					s, err := Open(context.Background(), c, Options{AWSConfig: dynalitetest.AWSConfig()})
					if err != nil {
						b.Fatal(err)
					}
					defer s.Close()
					benchLookups(b, s, benchRcpts(b, s, n))
				})
			}
		}
	})
}
