package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/sesrelay/sesrelay/config"
	"github.com/sesrelay/sesrelay/relay/smtptest"
	"github.com/sesrelay/sesrelay/suppression"
	"github.com/sesrelay/sesrelay/suppression/dynalitetest"
)

const replicaYAML = `
server:
  hostname: relay.test
  listeners: [{address: "127.0.0.1:0", tls: none, allow_insecure_auth: true}]
  shutdown_timeout: 5s
log: {level: debug}
delivery: {sender: file, file_dir: OUTBOX}
suppression:
  store: dynamodb
  dynamodb: {table: sesrelay-suppression, endpoint: "ENDPOINT"}
  cache_ttl: 2s
unsubscribe_server: {address: "127.0.0.1:0", rate_burst: 100}
tenants:
  - name: billing
    users: [{username: billing-app, password_hash: "BILLING_HASH"}]
    domains: ["billing.example.com"]
    list_unsubscribe:
      mode: add
      url: "https://unsub.example.com/u/{token}"
      secret_file: SECRET
      list_id_header: X-List
`

// TestTwoReplicasShareDynamoDB runs two relays on one DynamoDB table (the
// dynalite emulator, through the real aws-sdk-go-v2 client): an
// unsubscribe taken by replica A's endpoint holds at once on A and on
// replica B within suppression.cache_ttl, although B had cached the
// recipient as not suppressed.
func TestTwoReplicasShareDynamoDB(t *testing.T) {
	endpoint := dynalitetest.Start(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_CONFIG_FILE", os.DevNull)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	ctx := context.Background()
	admin, err := suppression.NewDynamoDB(ctx, config.DynamoDBTable{Table: "sesrelay-suppression", Endpoint: endpoint},
		suppression.Options{AWSConfig: dynalitetest.AWSConfig(), DefaultRegion: "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.CreateTable(ctx); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	key := filepath.Join(dir, "unsub.key")
	writeAtomic(t, key, "shared-secret-shared-secret-0123456789")
	start := func(name string) (*reloadHarness, string) {
		outbox := filepath.Join(dir, name, "outbox")
		path := filepath.Join(dir, name, "sesrelay.yaml")
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		writeAtomic(t, path, strings.NewReplacer("OUTBOX", outbox, "ENDPOINT", endpoint, "BILLING_HASH", reloadHash, "SECRET", key).Replace(replicaYAML))
		return startReloadDaemon(t, path), outbox
	}
	a, outA := start("a")
	b, outB := start("b")

	// send sends one list message through h and returns who got it.
	send := func(h *reloadHarness, outbox string, rcpts ...string) []string {
		t.Helper()
		if err := os.RemoveAll(outbox); err != nil {
			t.Fatal(err)
		}
		c, err := smtp.Dial(h.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Auth(sasl.NewPlainClient("", "billing-app", reloadPassword)); err != nil {
			t.Fatal(err)
		}
		msg := "From: news@billing.example.com\r\nTo: readers@example.org\r\nSubject: news\r\nX-List: monthly\r\n\r\nHello.\r\n"
		if _, err := smtptest.Send(c, "news@billing.example.com", rcpts, msg); err != nil {
			t.Fatal(err)
		}
		return sentTo(t, outbox)
	}

	// B sends first: it caches ann as not suppressed.
	if got := send(b, outB, "ann@example.org", "bob@example.org"); !slices.Equal(got, []string{"ann@example.org", "bob@example.org"}) {
		t.Fatalf("first message via B went to %v", got)
	}
	annURL := unsubscribeURL(t, outB, "ann@example.org")
	if code := oneClick(t, "http://"+a.d.sup.unsub.Addr().String(), annURL); code != 200 {
		t.Fatalf("one-click POST to replica A: %d", code)
	}
	posted := time.Now()
	if got := send(a, outA, "ann@example.org", "bob@example.org"); !slices.Equal(got, []string{"bob@example.org"}) {
		t.Fatalf("via A right after the unsubscribe: sent to %v, want bob only", got)
	}
	time.Sleep(2*time.Second - time.Since(posted) + 100*time.Millisecond)
	if got := send(b, outB, "ann@example.org", "bob@example.org"); !slices.Equal(got, []string{"bob@example.org"}) {
		t.Fatalf("via B %s after the unsubscribe (cache_ttl 2s): sent to %v, want bob only", time.Since(posted).Round(time.Millisecond), got)
	}
}
