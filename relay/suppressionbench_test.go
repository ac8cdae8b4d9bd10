package relay_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"go.uber.org/zap"

	"github.com/sesrelay/sesrelay/config"
	"github.com/sesrelay/sesrelay/relay"
	"github.com/sesrelay/sesrelay/relay/ses"
	"github.com/sesrelay/sesrelay/relay/sestest"
	"github.com/sesrelay/sesrelay/suppression"
	"github.com/sesrelay/sesrelay/suppression/dynalitetest"
)

const suppBenchYAML = `
server:
  hostname: relay.test
  listeners:
    - {address: "127.0.0.1:0", tls: none, allow_insecure_auth: true}
  tls: {self_signed: true}
log: {level: info}
ses: {region: us-east-1, max_attempts: 1, timeout: 5s}
tenants:
  - name: billing
    users: [{username: billing-app, password_hash: "HASH"}]
    domains: ["billing.example.com"]
`

// suppBenchList is the list of the benchmark's messages (their List-Id).
const suppBenchList = "monthly.billing.example.com"

// suppBenchStored is how many other recipients of the list the store
// holds as unsubscribed, so that every lookup searches a populated list.
const suppBenchStored = 10000

type suppBenchArm struct {
	name string
	open func(t *testing.T) relay.Suppressions // nil: suppression off
}

type suppBenchResult struct {
	rate, p99, cpu   float64 // msg/s at c=16, reply p99 ms at c=16, CPU ms per message
	halfP50, halfP99 float64
	sesConns         int // TCP connections the SES client opened during the measured sends
}

// TestSuppressionBenchmark measures what the suppression step adds to the
// send path (BENCHMARKS.md, "Suppression on the send path"): the relay
// with suppression off, with the embedded store (bbolt) and with the
// DynamoDB store (dynalite over loopback, the real aws-sdk-go-v2 client),
// each with the default lookup cache (suppression.cache_ttl 10s) and with
// the cache off. Every message is a list message (List-Id) to one
// recipient not seen before, so every lookup misses the cache and reads
// the store, which holds 10,000 other unsubscribed recipients of that
// list; no recipient is suppressed, so every arm sends every message to
// SES. 16 clients on authenticated connections send as fast as the
// replies come (throughput, reply p99, CPU per message: this process's
// user+system CPU, relay, clients and the SES stand-in together; dynalite
// runs in its own process and is not counted), then half as many
// messages paced at half of that run's "off" throughput (reply p50/p99 at
// half load). Arms alternate within a run, each run starting at another
// arm; each ratio compares arms of the same run. Run with
//
//	SESRELAY_SUPPRESSION_BENCH=3000 SESRELAY_SUPPRESSION_BENCH_RUNS=3 go test -run TestSuppressionBenchmark -count=1 -v ./relay/
func TestSuppressionBenchmark(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("SESRELAY_SUPPRESSION_BENCH"))
	if n <= 0 {
		t.Skip("set SESRELAY_SUPPRESSION_BENCH=messages to run")
	}
	runs, _ := strconv.Atoi(os.Getenv("SESRELAY_SUPPRESSION_BENCH_RUNS"))
	runs = max(runs, 3)
	ddb := dynalitetest.Start(t)
	var tables atomic.Int64
	open := func(c config.Suppression) func(t *testing.T) relay.Suppressions {
		return func(t *testing.T) relay.Suppressions {
			ctx := context.Background()
			o := suppression.Options{AWSConfig: dynalitetest.AWSConfig(), DefaultRegion: "us-east-1"}
			if c.Store == config.SuppressionDynamoDB {
				c.DynamoDB = config.DynamoDBTable{Table: fmt.Sprintf("bench-%d", tables.Add(1)), Endpoint: ddb}
				raw, err := suppression.NewDynamoDB(ctx, c.DynamoDB, o)
				if err != nil {
					t.Fatal(err)
				}
				if err := raw.CreateTable(ctx); err != nil {
					t.Fatal(err)
				}
			} else {
				c.Dir = t.TempDir()
			}
			s, err := suppression.Open(ctx, c, o)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			es := make([]suppression.Entry, suppBenchStored)
			for i := range es {
				es[i] = suppression.Entry{Tenant: "billing", List: suppBenchList, Recipient: fmt.Sprintf("gone%d@example.net", i), Source: "import"}
			}
			if err := s.(suppression.Batcher).AddMany(ctx, es); err != nil {
				t.Fatal(err)
			}
			return s
		}
	}
	store := func(kind string, ttl time.Duration) config.Suppression {
		c := config.DefaultSuppression()
		c.Store, c.CacheTTL = kind, ttl
		return c
	}
	arms := []suppBenchArm{
		{name: "off"},
		{name: "embedded", open: open(store(config.SuppressionEmbedded, 10*time.Second))},
		{name: "embedded, cache_ttl 0s", open: open(store(config.SuppressionEmbedded, 0))},
		{name: "dynamodb", open: open(store(config.SuppressionDynamoDB, 10*time.Second))},
		{name: "dynamodb, cache_ttl 0s", open: open(store(config.SuppressionDynamoDB, 0))},
	}
	results := make([][]suppBenchResult, len(arms)) // [arm][run]
	stores := make([]relay.Suppressions, len(arms)) // one store per arm, for every run
	for i, arm := range arms {
		if arm.open != nil {
			stores[i] = arm.open(t)
		}
	}
	var seq atomic.Int64 // recipients are never reused
	for run := range runs {
		// Each run starts at another arm, so that no arm always runs on
		// the warmest (or the most fragmented) process.
		order := make([]int, len(arms))
		for k := range order {
			order[k] = (run + k) % len(arms)
		}
		for _, i := range order {
			results[i] = append(results[i], suppBench(t, arms[i].name, stores[i], n, &seq, 0))
		}
		half := results[0][run].rate / 2
		for _, i := range order {
			arm := arms[i]
			h := suppBench(t, arm.name, stores[i], n, &seq, half)
			r := &results[i][run]
			r.halfP50, r.halfP99 = h.halfP50, h.halfP99
			t.Logf("run %d %-24s %6.0f msg/s  p99 %6.2f ms  CPU %.3f ms/msg  SES conns %d  at %.0f msg/s p50/p99 %.2f/%.2f ms",
				run+1, arm.name, r.rate, r.p99, r.cpu, r.sesConns, half, r.halfP50, r.halfP99)
		}
	}

	med := func(f func(r suppBenchResult) float64, arm int) float64 {
		var v []float64
		for _, r := range results[arm] {
			v = append(v, f(r))
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	// ratio: the median over runs of arm against "off" of the same run.
	ratio := func(f func(r suppBenchResult) float64, arm int, diff bool) float64 {
		var v []float64
		for k, r := range results[arm] {
			if diff {
				v = append(v, f(r)-f(results[0][k]))
			} else {
				v = append(v, f(r)/f(results[0][k]))
			}
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	rate := func(r suppBenchResult) float64 { return r.rate }
	p99 := func(r suppBenchResult) float64 { return r.p99 }
	cpu := func(r suppBenchResult) float64 { return r.cpu }
	hp50 := func(r suppBenchResult) float64 { return r.halfP50 }
	hp99 := func(r suppBenchResult) float64 { return r.halfP99 }
	fmt.Printf("\nmedians of %d runs, %d messages per arm and run (c=16), half load %d messages\n\n", runs, n, n/2)
	fmt.Println("| suppression | msg/s (c=16) | throughput vs off | reply p99 (c=16) | CPU/msg | CPU/msg added | half load p50 / p99 | p99 added at half load |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	for i, arm := range arms {
		fmt.Printf("| %s | %.0f | %+.1f%% | %.2f ms | %.3f ms | %+.3f ms | %.2f / %.2f ms | %+.2f ms |\n", arm.name,
			med(rate, i), 100*(ratio(rate, i, false)-1), med(p99, i), med(cpu, i), ratio(cpu, i, true),
			med(hp50, i), med(hp99, i), ratio(hp99, i, true))
	}
}

// suppBench runs one arm on a fresh relay: n messages as fast as 16
// clients can send them, or, when half > 0, n/2 messages paced at half
// msg/s (then only the latencies are filled in).
func suppBench(t *testing.T, name string, store relay.Suppressions, n int, seq *atomic.Int64, half float64) suppBenchResult {
	const conc = 16
	cfg := testConfig(t, suppBenchYAML)
	stub := sestest.New()
	defer stub.Close()
	opts := ses.OptionsFromConfig(&cfg.SES)
	opts.Endpoint = stub.URL
	opts.AWSConfig = &aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", "")}
	sender, err := ses.New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	o := relay.Options{Sender: sender, Logger: zap.NewNop()}
	if store != nil {
		o.Suppressions = store
	}
	srv, err := relay.NewServer(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	addr := srv.Addrs()[0].String()

	msg := func() (string, string) {
		rcpt := fmt.Sprintf("reader%d@example.org", seq.Add(1))
		return rcpt, "From: News <news@billing.example.com>\r\nTo: " + rcpt + "\r\nSubject: This month\r\n" +
			"List-Id: Monthly news <" + suppBenchList + ">\r\n\r\nThe news of the month.\r\n"
	}
	clients := make([]*smtp.Client, conc)
	for i := range clients {
		c, err := smtp.Dial(addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Auth(sasl.NewPlainClient("", "billing-app", testPassword)); err != nil {
			t.Fatal(err)
		}
		rcpt, m := msg()
		if _, err := send(c, "news@billing.example.com", []string{rcpt}, m); err != nil {
			t.Fatal(err)
		}
		clients[i] = c
	}
	total := n
	var interval time.Duration
	if half > 0 {
		total = n / 2
		interval = time.Duration(float64(time.Second) / half)
	}
	calls0, conns0 := len(stub.Requests()), stub.Conns()
	rate, lat, cpu := paced(t, clients, total, interval, 0, func(c *smtp.Client, _ int64) error {
		rcpt, m := msg()
		_, err := send(c, "news@billing.example.com", []string{rcpt}, m)
		return err
	})
	if got := len(stub.Requests()) - calls0; got != total {
		t.Fatalf("%s: SES got %d of %d messages", name, got, total)
	}
	if half > 0 {
		return suppBenchResult{halfP50: pct(lat, 50), halfP99: pct(lat, 99)}
	}
	return suppBenchResult{rate: rate, p99: pct(lat, 99),
		cpu: float64(cpu.Microseconds()) / 1000 / float64(total), sesConns: stub.Conns() - conns0}
}
