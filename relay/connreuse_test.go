package relay_test

import (
	"fmt"
	"sync"
	"testing"
)

// TestSESConnectionReuse: under concurrent SMTP load the relay reuses its
// HTTP connections to SES instead of opening one per call (a new TLS
// handshake per message would dominate the latency against real SES).
func TestSESConnectionReuse(t *testing.T) {
	h := start(t, baseYAML)
	const clients, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := 0; i < clients; i++ {
		c := h.dial("billing-app", testPassword)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < each; j++ {
				if _, err := send(c, "bounces@billing.example.com", []string{"a@example.org"}, simpleMsg); err != nil {
					errs <- fmt.Errorf("send %d: %w", j, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	calls, conns := h.ses.Calls(), h.ses.Conns()
	t.Logf("%d SES calls over %d connections", calls, conns)
	if calls != clients*each {
		t.Fatalf("%d calls", calls)
	}
	if conns > clients { // at most one per call in flight
		t.Fatalf("%d SES calls opened %d connections: the pool is not reused", calls, conns)
	}
}
