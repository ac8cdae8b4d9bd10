package relay_test

// Send rate limits: the global and per-tenant buckets, fairness between
// tenants, ses.max_send_rate: auto, and a tenant limit over SMTP.

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/emersion/go-smtp"

	"github.com/sesrelay/sesrelay/config"
	"github.com/sesrelay/sesrelay/relay"
	"github.com/sesrelay/sesrelay/relay/ses"
	"github.com/sesrelay/sesrelay/relay/sestest"
)

type countSender struct {
	mu  sync.Mutex
	per map[string]int
}

func (c *countSender) Send(_ context.Context, req *relay.Request) (*relay.Result, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.per == nil {
		c.per = map[string]int{}
	}
	c.per[req.Tenant] += len(req.Recipients)
	return &relay.Result{MessageID: "id"}, nil
}

func (c *countSender) count(tenant string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.per[tenant]
}

func one(tenant string) *relay.Request {
	return &relay.Request{Tenant: tenant, Recipients: []string{"a@example.org"}}
}

func TestRateLimitGlobalAndTenant(t *testing.T) {
	next := &countSender{}
	rl := relay.RateLimited(next, relay.RateLimits{Global: 10, Wait: 0, MaxRecipients: 1})
	ctx := context.Background()
	// A full bucket: 10 pass at once, the 11th finds no token and may
	// not wait.
	for i := 0; i < 10; i++ {
		if _, err := rl.Send(ctx, one("a")); err != nil {
			t.Fatalf("%d: %v", i, err)
		}
	}
	_, err := rl.Send(ctx, one("a"))
	if relay.Classify(err) != relay.KindRateLimited {
		t.Fatalf("want rate limited, got %v", err)
	}
	r := relay.ReplyForSendError(err, "ref")
	if r.Code != 451 || r.EnhancedCode != (smtp.EnhancedCode{4, 7, 0}) {
		t.Fatalf("reply %d %v", r.Code, r.EnhancedCode)
	}
	if relay.Ambiguous(err) {
		t.Fatal("a rate limit refusal is not ambiguous: nothing was sent")
	}
	// With a wait budget the next one waits for its token (100 ms).
	rl.Update(relay.RateLimits{Global: 10, Wait: 500 * time.Millisecond, MaxRecipients: 1})
	start := time.Now()
	if _, err := rl.Send(ctx, one("a")); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Fatalf("no wait (%v)", d)
	}
	// Tenant limit: 2/s for b, no global limit.
	rl.Update(relay.RateLimits{Tenants: map[string]float64{"b": 2}, Wait: 0, MaxRecipients: 1})
	for i := 0; i < 2; i++ {
		if _, err := rl.Send(ctx, one("b")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := rl.Send(ctx, one("b")); relay.Classify(err) != relay.KindRateLimited {
		t.Fatalf("tenant b over its rate: %v", err)
	}
	for i := 0; i < 20; i++ { // c has no limit of its own, and no global one
		if _, err := rl.Send(ctx, one("c")); err != nil {
			t.Fatal(err)
		}
	}
	// A message to more recipients than the rate per second still fits
	// a full bucket (burst = max recipients).
	rl.Update(relay.RateLimits{Global: 1, Tenants: map[string]float64{"d": 1}, Wait: 0, MaxRecipients: 50})
	big := &relay.Request{Tenant: "d", Recipients: make([]string, 50)}
	if _, err := rl.Send(ctx, big); err != nil {
		t.Fatal(err)
	}
	if _, err := rl.Send(ctx, one("d")); relay.Classify(err) != relay.KindRateLimited {
		t.Fatalf("after 50 recipients at 1/s: %v", err)
	}
}

// TestRateLimitFairness: a noisy tenant with 80 concurrent senders and a
// quiet one with one sender share a global rate of 40/s. The quiet tenant
// must get every message through after a short wait, not queue behind the
// noisy tenant's backlog.
func TestRateLimitFairness(t *testing.T) {
	next := &countSender{}
	rl := relay.RateLimited(next, relay.RateLimits{Global: 40, Wait: time.Second, MaxRecipients: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var noisyRefused atomic.Int32
	for i := 0; i < 80; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if _, err := rl.Send(context.Background(), one("noisy")); err != nil {
					noisyRefused.Add(1)
				}
			}
		}()
	}
	time.Sleep(200 * time.Millisecond) // the noisy backlog builds up
	quietSent, quietRefused := 0, 0
	var maxWait time.Duration
	for ctx.Err() == nil {
		start := time.Now()
		_, err := rl.Send(context.Background(), one("quiet"))
		if d := time.Since(start); d > maxWait {
			maxWait = d
		}
		if err != nil {
			quietRefused++
		} else {
			quietSent++
		}
		time.Sleep(50 * time.Millisecond) // 20/s at most: under half the rate
	}
	wg.Wait()
	t.Logf("quiet: %d sent, %d refused, max wait %v; noisy: %d sent, %d refused",
		quietSent, quietRefused, maxWait, next.count("noisy"), noisyRefused.Load())
	if quietRefused > 0 {
		t.Fatalf("the quiet tenant was refused %d times", quietRefused)
	}
	if maxWait > 250*time.Millisecond {
		t.Fatalf("the quiet tenant waited up to %v behind the noisy one", maxWait)
	}
	if quietSent < 15 {
		t.Fatalf("the quiet tenant sent only %d", quietSent)
	}
	if noisyRefused.Load() == 0 {
		t.Fatal("the noisy tenant was never limited")
	}
}

func TestResolveSendRateAuto(t *testing.T) {
	stub := sestest.New()
	defer stub.Close()
	s, err := ses.New(context.Background(), ses.Options{Region: "us-east-1", Endpoint: stub.URL,
		AWSConfig: &aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", "")}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		rate     string
		replicas int
		want     float64
	}{{"auto", 0, 14}, {"auto", 2, 7}, {"5", 4, 5}, {"0", 0, 0}} {
		got, err := relay.ResolveSendRate(context.Background(), &config.SES{MaxSendRate: tc.rate, Replicas: tc.replicas}, s)
		if err != nil || got != tc.want {
			t.Fatalf("%s/%d: %v %v, want %v", tc.rate, tc.replicas, got, err, tc.want)
		}
	}
	if _, err := relay.ResolveSendRate(context.Background(), &config.SES{MaxSendRate: "auto"}, nil); err == nil {
		t.Fatal("auto without SES resolved")
	}
}

func TestTenantRateLimitOverSMTP(t *testing.T) {
	yaml := strings.Replace(hardYAML, "max_recipients: 50", "max_recipients: 2", 1)
	yaml = strings.Replace(yaml, "timeout: 1500ms}", "timeout: 1500ms, rate_limit_wait: 0s}", 1)
	yaml = strings.Replace(yaml, `domains: ["billing.example.com"]`, `domains: ["billing.example.com"]`+"\n    max_send_rate: 0.5", 1)
	h := startHard(t, yaml, hOpts{limits: func(cfg *config.Config) relay.RateLimits { return relay.RateLimitsFromConfig(cfg, 0) }})
	c := h.client("", "billing-app", testPassword)
	for i := 0; i < 2; i++ { // the bucket holds max_recipients tokens
		if err := sendMsg(c, "invoices@billing.example.com", []string{"a@example.org"}, simpleMsg); err != nil {
			t.Fatal(err)
		}
	}
	err := sendMsg(c, "invoices@billing.example.com", []string{"a@example.org"}, simpleMsg)
	expectCode(t, err, 451, "4.7.0")
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}
	// The other tenant is not affected.
	m := h.client("", "marketing-app", testPassword)
	mmsg := strings.ReplaceAll(simpleMsg, "billing", "marketing")
	for i := 0; i < 3; i++ {
		if err := sendMsg(m, "news@marketing.example.com", []string{"a@example.org"}, mmsg); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(h.ses.Requests()); n != 5 {
		t.Fatalf("SES got %d requests, want 5", n)
	}
}
