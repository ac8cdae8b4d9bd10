package relay_test

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/sesrelay/sesrelay/config"
	"github.com/sesrelay/sesrelay/queue"
	"github.com/sesrelay/sesrelay/relay/sestest"
)

// TestQueueBenchmark compares queue mode with direct mode (BENCHMARKS.md,
// "Queue mode"): 16 clients, each on one authenticated connection, send
// small messages as fast as the replies come; then the same at half of
// queue mode's throughput, paced, for the reply p99. Relay, clients and
// the SES stand-in (the real SDK over loopback HTTP) share this process,
// so CPU per message counts all three. It also times the durable write
// alone (queue.Enqueue: one file written and fsynced, one rename, one
// directory fsync, shared with concurrent callers). Run with
//
//	SESRELAY_QUEUE_BENCH=3000 go test -run TestQueueBenchmark -count=1 -v ./relay/
//
// SESRELAY_QUEUE_BENCH_SES_LATENCY (a duration, e.g. 30ms) makes the SES
// stand-in answer each call after that long, as SES itself does.
func TestQueueBenchmark(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("SESRELAY_QUEUE_BENCH"))
	if n <= 0 {
		t.Skip("set SESRELAY_QUEUE_BENCH=messages to run")
	}
	var respond func(int, *sestest.Request) sestest.Reply
	if v := os.Getenv("SESRELAY_QUEUE_BENCH_SES_LATENCY"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("SESRELAY_QUEUE_BENCH_SES_LATENCY: %v", err)
		}
		respond = func(int, *sestest.Request) sestest.Reply { time.Sleep(d); return sestest.Reply{} }
	}
	const conc = 16
	type result struct {
		mode                string
		rate, p50, p99, cpu float64
		cs                  float64 // context switches per message
		halfP50, halfP99    float64
		drained             time.Duration
	}
	var results []result
	for _, mode := range []string{"direct", "queue"} {
		h := startQueued(t, qOpts{mode: mode, quiet: true, workers: config.DefaultQueue().Workers, respond: respond})
		// Warm up: connections, the AUTH cache, the SDK's pool.
		clients := make([]*smtp.Client, conc)
		for i := range clients {
			c, err := smtp.Dial(h.addr)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Auth(sasl.NewPlainClient("", "billing-app", testPassword)); err != nil {
				t.Fatal(err)
			}
			clients[i] = c
			if _, err := send(c, "bounces@billing.example.com", []string{"a@example.org"}, simpleMsg); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, "warm-up delivered", func() bool { q, _ := h.q.Usage(""); return q == 0 })
		sendOne := func(c *smtp.Client, _ int64) error {
			_, err := send(c, "bounces@billing.example.com", []string{"a@example.org"}, simpleMsg)
			return err
		}
		r := result{mode: mode}
		calls0 := len(h.ses.Requests())
		cpu0, cs0 := processCPU(), contextSwitches()
		rate, lat, _ := paced(t, clients, n, 0, 0, sendOne)
		t0 := time.Now()
		// The drain is bounded by queue.workers over the SES latency.
		for deadline := time.Now().Add(5 * time.Minute); len(h.ses.Requests())-calls0 < n; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("SES has %d of %d messages after 5 minutes", len(h.ses.Requests())-calls0, n)
			}
		}
		r.drained = time.Since(t0)
		cpuAll := processCPU() - cpu0 // until SES has every message
		r.rate, r.cpu = rate, float64(cpuAll.Microseconds())/1000/float64(n)
		r.cs = float64(contextSwitches()-cs0) / float64(n)
		r.p50, r.p99 = pct(lat, 50), pct(lat, 99)
		results = append(results, r)
		for _, c := range clients {
			c.Quit()
		}
	}
	// Half load: half of the lower throughput, for both modes.
	half := min(results[0].rate, results[1].rate) / 2
	for i, mode := range []string{"direct", "queue"} {
		h := startQueued(t, qOpts{mode: mode, quiet: true, workers: config.DefaultQueue().Workers, respond: respond})
		clients := make([]*smtp.Client, conc)
		for k := range clients {
			c, err := smtp.Dial(h.addr)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Auth(sasl.NewPlainClient("", "billing-app", testPassword)); err != nil {
				t.Fatal(err)
			}
			clients[k] = c
		}
		_, lat, _ := paced(t, clients, n/2, time.Duration(float64(time.Second)/half), time.Second,
			func(c *smtp.Client, _ int64) error {
				_, err := send(c, "bounces@billing.example.com", []string{"a@example.org"}, simpleMsg)
				return err
			})
		for _, c := range clients {
			c.Quit()
		}
		results[i].halfP50, results[i].halfP99 = pct(lat, 50), pct(lat, 99)
	}

	// The durable write alone.
	q, err := queue.Open(t.TempDir(), queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	var enq []time.Duration
	for i := range 500 {
		t0 := time.Now()
		if _, err := q.Enqueue(&queue.Message{Tenant: "b", Sender: "s@example.com",
			Requests: []queue.Request{{Recipients: []string{"a@example.org"}, Header: []byte(fmt.Sprintf("Subject: %d\r\n\r\n", i))}},
			Body:     []byte(simpleMsg)}); err != nil {
			t.Fatal(err)
		}
		enq = append(enq, time.Since(t0))
	}

	fmt.Printf("\n| mode | msg/s (c=%d) | reply p50 | reply p99 | CPU/msg (until SES has all) | context switches/msg | drain after last reply | half load (%.0f msg/s) p50 / p99 |\n|---|---|---|---|---|---|---|---|\n", conc, half)
	for _, r := range results {
		fmt.Printf("| %s | %.0f | %.2f ms | %.2f ms | %.3f ms | %.1f | %s | %.2f / %.2f ms |\n", r.mode, r.rate, r.p50, r.p99, r.cpu, r.cs,
			r.drained.Round(time.Millisecond), r.halfP50, r.halfP99)
	}
	fmt.Printf("\nqueue/direct throughput: %.0f%%\n", 100*results[1].rate/results[0].rate)
	fmt.Printf("queue.Enqueue alone (500 small messages): p50 %.2f ms, p99 %.2f ms\n", pct(enq, 50), pct(enq, 99))
}

// paced sends total messages over clients, each client one at a time:
// as fast as the replies come when interval is 0, else message k no
// earlier than start+offset+k*interval. It returns the rate, the reply
// latency of each message and the CPU the process used meanwhile.
func paced(t *testing.T, clients []*smtp.Client, total int, interval, offset time.Duration, sendOne func(c *smtp.Client, k int64) error) (rate float64, lat []time.Duration, cpu time.Duration) {
	t.Helper()
	var next atomic.Int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	cpu0 := processCPU()
	start := time.Now()
	for _, c := range clients {
		wg.Go(func() {
			for {
				k := next.Add(1)
				if k > int64(total) {
					return
				}
				if interval > 0 {
					if d := time.Until(start.Add(offset + time.Duration(k)*interval)); d > 0 {
						time.Sleep(d)
					}
				}
				t0 := time.Now()
				if err := sendOne(c, k); err != nil {
					t.Error(err)
					return
				}
				d := time.Since(t0)
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return float64(total) / time.Since(start).Seconds(), lat, processCPU() - cpu0
}

func pct(d []time.Duration, p int) float64 {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	if i > 0 {
		i--
	}
	return float64(s[i].Microseconds()) / 1000
}

// contextSwitches counts the process's voluntary and involuntary
// context switches (all threads).
func contextSwitches() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Nvcsw + ru.Nivcsw
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
