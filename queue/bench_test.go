package queue

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// BenchmarkEnqueueDeliver is the queue's own share of queue mode: 16
// writers Enqueue small messages while a Runner with 4 workers delivers
// them to a Deliverer that accepts at once; one op is one message
// enqueued and delivered (its files taken out of active/). Run with
//
//	go test -run '^$' -bench EnqueueDeliver -benchtime 3000x -count 5 ./queue/
func BenchmarkEnqueueDeliver(b *testing.B) {
	q, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	var delivered atomic.Int64
	r := q.NewRunner(RunnerOptions{
		Deliverer: DelivererFunc(func(context.Context, *Entry, int) (string, error) {
			delivered.Add(1)
			return "ses-id", nil
		}),
		Workers: 4,
	})
	r.Start()
	defer r.Stop(context.Background())
	body := make([]byte, 2000)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	const writers = 16
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	cpu0 := processCPU()
	for range writers {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				_, err := q.Enqueue(&Message{Tenant: "t", Sender: "s@example.com",
					Requests: []Request{{Recipients: []string{"a@example.org"}, Header: fmt.Appendf(nil, "Subject: %d\r\n\r\n", next.Load())}},
					Body:     body})
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	for delivered.Load() < int64(b.N) {
		time.Sleep(time.Millisecond)
	}
	for {
		if n, _ := q.Usage(""); n == 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
