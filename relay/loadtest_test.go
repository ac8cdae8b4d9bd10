package relay_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
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
)

const loadYAML = `
server:
  hostname: relay.test
  listeners: [{address: "127.0.0.1:0", tls: none, allow_insecure_auth: true}]
  max_connections: 1000
  max_connections_per_ip: 0
  shutdown_timeout: 10s
ses: {region: us-east-1, max_attempts: 4, timeout: 10s}
tenants:
  - name: billing
    users: [{username: billing-app, password_hash: "HASH"}]
    domains: ["billing.example.com"]
  - name: marketing
    users: [{username: marketing-app, password_hash: "HASH"}]
    domains: ["marketing.example.com"]
`

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// TestLoad is a bounded load test on loopback: SESRELAY_LOAD_SESSIONS
// (200) concurrent SMTP sessions for SESRELAY_LOAD_SECONDS (30) seconds,
// each authenticating, sending messages of 1–3 recipients and
// reconnecting every 20 messages, through the real SES client to the
// stand-in, which throttles one call in 50 (the relay retries). It
// requires zero unexpected replies, one accepted SES request per 250, and
// the goroutine count back to its baseline once everything is stopped.
//
//	SESRELAY_LOAD=1 go test -run TestLoad -count=1 -timeout 10m -v ./relay/
func TestLoad(t *testing.T) {
	if os.Getenv("SESRELAY_LOAD") != "1" {
		t.Skip("set SESRELAY_LOAD=1 to run the load test")
	}
	sessions := envInt("SESRELAY_LOAD_SESSIONS", 200)
	duration := time.Duration(envInt("SESRELAY_LOAD_SECONDS", 30)) * time.Second
	baseline := runtime.NumGoroutine()

	cfg, err := config.Parse([]byte(strings.ReplaceAll(loadYAML, "HASH", testHash)))
	if err != nil {
		t.Fatal(err)
	}
	stub := sestest.New()
	var throttled atomic.Int64
	stub.Respond = func(n int, _ *sestest.Request) sestest.Reply {
		if n%50 == 0 {
			throttled.Add(1)
			return sestest.Reply{Status: 429, ErrorType: "TooManyRequestsException"}
		}
		return sestest.Reply{}
	}
	opts := ses.OptionsFromConfig(&cfg.SES)
	opts.Endpoint = stub.URL
	opts.AWSConfig = &aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", "")}
	opts.BackoffBase, opts.BackoffMax = 5*time.Millisecond, 50*time.Millisecond
	sesSender, err := ses.New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	// Generous limits: the limiter is in the path, nothing waits.
	sender := relay.RateLimited(sesSender, relay.RateLimits{Global: 1e6,
		Tenants: map[string]float64{"billing": 1e6, "marketing": 1e6}, Wait: time.Second, MaxRecipients: 50})
	srv, err := relay.NewServer(cfg, relay.Options{Sender: sender, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	addr := srv.Addrs()[0].String()

	var (
		sent, connects atomic.Int64
		mu             sync.Mutex
		unexpected     []string
		latencies      []time.Duration
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		if len(unexpected) < 20 {
			unexpected = append(unexpected, fmt.Sprintf(format, args...))
		}
		mu.Unlock()
	}
	end := time.Now().Add(duration)
	var wg sync.WaitGroup
	for i := 0; i < sessions; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			user, domain := "billing-app", "billing.example.com"
			if i%2 == 1 {
				user, domain = "marketing-app", "marketing.example.com"
			}
			var lat []time.Duration
			defer func() { mu.Lock(); latencies = append(latencies, lat...); mu.Unlock() }()
			for n := 0; time.Now().Before(end); {
				conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
				if err != nil {
					fail("session %d: dial: %v", i, err)
					return
				}
				connects.Add(1)
				c := smtp.NewClient(conn)
				if err := c.Auth(sasl.NewPlainClient("", user, testPassword)); err != nil {
					fail("session %d: auth: %v", i, err)
					c.Close()
					return
				}
				for k := 0; k < 20 && time.Now().Before(end); k++ {
					n++
					rcpts := make([]string, 1+n%3)
					for r := range rcpts {
						rcpts[r] = fmt.Sprintf("r%d-%d-%d@example.org", i, n, r)
					}
					msg := fmt.Sprintf("From: <app@%s>\r\nTo: %s\r\nSubject: load %d/%d\r\n\r\nBody of message %d of session %d.\r\n",
						domain, rcpts[0], i, n, n, i)
					start := time.Now()
					if err := sendMsg(c, "app@"+domain, rcpts, msg); err != nil {
						fail("session %d message %d: %v", i, n, err)
						c.Close()
						return
					}
					lat = append(lat, time.Since(start))
					sent.Add(1)
				}
				if err := c.Quit(); err != nil {
					fail("session %d: QUIT: %v", i, err)
				}
				c.Close()
			}
		}(i)
	}
	wg.Wait()
	cancel()
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
	stub.Close()

	sort.Slice(latencies, func(a, b int) bool { return latencies[a] < latencies[b] })
	pct := func(p float64) time.Duration {
		if len(latencies) == 0 {
			return 0
		}
		return latencies[int(p*float64(len(latencies)-1))]
	}
	t.Logf("%d sessions for %v: %d messages (%.0f/s), %d connections, %d SES calls throttled and retried; latency p50 %v p99 %v max %v",
		sessions, duration, sent.Load(), float64(sent.Load())/duration.Seconds(), connects.Load(), throttled.Load(),
		pct(0.5), pct(0.99), pct(1))
	for _, u := range unexpected {
		t.Error("unexpected:", u)
	}
	if got := len(stub.Requests()); int64(got) != sent.Load() {
		t.Errorf("%d messages acknowledged 250, SES accepted %d", sent.Load(), got)
	}
	if sent.Load() == 0 {
		t.Fatal("nothing sent")
	}

	// Every goroutine of the relay, the sessions, the SES client and the
	// stand-in ends.
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > baseline {
		if time.Now().After(deadline) {
			var b strings.Builder
			_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
			t.Fatalf("goroutines: %d, baseline %d:\n%s", runtime.NumGoroutine(), baseline, b.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
