package suppression

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sesrelay/sesrelay/config"
	"github.com/sesrelay/sesrelay/suppression/dynalitetest"
)

var tableSeq atomic.Int64

// dynamoConfig returns a suppression config for a new table in the
// emulator at endpoint, and creates the table.
func dynamoConfig(t *testing.T, endpoint string) config.Suppression {
	t.Helper()
	c := config.DefaultSuppression()
	c.Store = config.SuppressionDynamoDB
	c.DynamoDB = config.DynamoDBTable{
		Table:    fmt.Sprintf("suppression-%d", tableSeq.Add(1)),
		Region:   "us-east-1",
		Endpoint: endpoint,
	}
	s, err := NewDynamoDB(context.Background(), c.DynamoDB, Options{AWSConfig: dynalitetest.AWSConfig()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateTable(context.Background()); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestDynamoDBConformance(t *testing.T) {
	endpoint := dynalitetest.Start(t)
	t.Run("store", func(t *testing.T) {
		testConformance(t, func(t *testing.T) Store {
			c := dynamoConfig(t, endpoint)
			s, err := OpenDynamoDB(context.Background(), c.DynamoDB, Options{AWSConfig: dynalitetest.AWSConfig()})
			if err != nil {
				t.Fatal(err)
			}
			return s
		})
	})
	t.Run("open", func(t *testing.T) {
		testConformance(t, func(t *testing.T) Store {
			s, err := Open(context.Background(), dynamoConfig(t, endpoint), Options{AWSConfig: dynalitetest.AWSConfig()})
			if err != nil {
				t.Fatal(err)
			}
			return s
		})
	})
}

func TestDynamoDBMissingTable(t *testing.T) {
	endpoint := dynalitetest.Start(t)
	c := config.DefaultSuppression()
	c.Store = config.SuppressionDynamoDB
	c.DynamoDB = config.DynamoDBTable{Table: "nope", Endpoint: endpoint}
	_, err := Open(context.Background(), c, Options{AWSConfig: dynalitetest.AWSConfig(), DefaultRegion: "us-east-1"})
	if err == nil || !strings.Contains(err.Error(), `suppression.dynamodb.table: table "nope" does not exist`) {
		t.Errorf("Open with a missing table = %v", err)
	}
}

// TestDynamoDBTwoReplicas plays two relays sharing one table: an Add
// through replica A holds on replica B at the latest after cache_ttl
// (real time, real client, real emulator), and a Remove likewise.
func TestDynamoDBTwoReplicas(t *testing.T) {
	ctx := context.Background()
	endpoint := dynalitetest.Start(t)
	c := dynamoConfig(t, endpoint)
	c.CacheTTL = 500 * time.Millisecond
	open := func() Store {
		s, err := Open(ctx, c, Options{AWSConfig: dynalitetest.AWSConfig()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a, b := open(), open()
	rc := []string{"bob@Example.COM", "carol@example.com"}
	if got, err := b.Suppressed(ctx, "acme", "news", rc); err != nil || len(got) != 0 {
		t.Fatalf("b before: %v %v", got, err)
	}
	added := time.Now()
	if err := a.Add(ctx, Entry{Tenant: "acme", List: "news", Recipient: "bob@example.com", Source: SourceUnsubscribe}); err != nil {
		t.Fatal(err)
	}
	seen := waitFor(t, func() bool {
		got, err := b.Suppressed(ctx, "acme", "news", rc)
		if err != nil {
			t.Fatal(err)
		}
		return got["bob@Example.COM"] && !got["carol@example.com"]
	}, 2*c.CacheTTL)
	t.Logf("add through a seen by b after %s (cache_ttl %s)", seen.Sub(added), c.CacheTTL)
	if d := seen.Sub(added); d > c.CacheTTL+200*time.Millisecond {
		t.Errorf("b saw a's Add after %s, more than cache_ttl %s", d, c.CacheTTL)
	}

	removed := time.Now()
	if err := b.Remove(ctx, "acme", "news", "bob@example.com"); err != nil {
		t.Fatal(err)
	}
	seen = waitFor(t, func() bool {
		got, err := a.Suppressed(ctx, "acme", "news", rc)
		if err != nil {
			t.Fatal(err)
		}
		return len(got) == 0
	}, 2*c.CacheTTL)
	if d := seen.Sub(removed); d > c.CacheTTL+200*time.Millisecond {
		t.Errorf("a saw b's Remove after %s, more than cache_ttl %s", d, c.CacheTTL)
	}
}

// waitFor polls cond every 20ms until it holds and returns when; it fails
// t after limit.
func waitFor(t *testing.T, cond func() bool, limit time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		if cond() {
			return time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
