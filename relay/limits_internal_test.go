package relay

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/sesrelay/sesrelay/config"
)

// TestAuthLimiter and TestAuthLimiterBounded: authlockout_internal_test.go.

func TestTenantConns(t *testing.T) {
	var tc tenantConns
	s1, s2, s3 := &Session{}, &Session{}, &Session{}
	if !tc.acquire(s1, "a", 2) || !tc.acquire(s2, "a", 2) || tc.acquire(s3, "a", 2) {
		t.Fatal("limit 2")
	}
	if !tc.acquire(s1, "a", 2) {
		t.Fatal("a session counted twice")
	}
	tc.release(s3) // never counted
	tc.release(s1)
	tc.release(s1)
	if tc.count("a") != 1 || !tc.acquire(s3, "a", 2) {
		t.Fatal("release")
	}
}

func TestFairQueueOrder(t *testing.T) {
	var q fairQueue
	q.queues = map[string]*fairTenant{}
	q.setLimit(1000, 1)
	// Drain the bucket, then queue 5 requests of a, then 1 of b: b is
	// served second, not sixth.
	deadline := time.Now().Add(5 * time.Second)
	if _, err := q.acquire(context.Background(), "a", 1, deadline); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	// Nearly no refill until everyone is queued.
	q.mu.Lock()
	q.lim.SetLimit(0.001)
	q.mu.Unlock()
	enqueue := func(tenant string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := q.acquire(context.Background(), tenant, 1, deadline); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			order = append(order, tenant)
			mu.Unlock()
		}()
	}
	for i := 0; i < 5; i++ {
		enqueue("a")
		waitFor(t, func() bool { q.mu.Lock(); defer q.mu.Unlock(); return q.waiting == i+1 })
	}
	enqueue("b")
	waitFor(t, func() bool { q.mu.Lock(); defer q.mu.Unlock(); return q.waiting == 6 })
	q.setLimit(10, 1) // 100 ms a token
	wg.Wait()
	if len(order) != 6 || order[0] != "a" || order[1] != "b" {
		t.Fatalf("order %v: b must come right after a's first", order)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.waiting != 0 || len(q.queues) > 2 {
		t.Fatalf("left: %d waiting, %d queues", q.waiting, len(q.queues))
	}
}

func TestFairQueueDeadlineAndUnlimited(t *testing.T) {
	var q fairQueue
	q.queues = map[string]*fairTenant{}
	q.setLimit(1, 1)
	ctx := context.Background()
	if _, err := q.acquire(ctx, "a", 1, time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := q.acquire(ctx, "a", 1, time.Now().Add(100*time.Millisecond)); err != ErrRateLimited {
		t.Fatalf("want ErrRateLimited, got %v", err)
	}
	if d := time.Since(start); d < 90*time.Millisecond || d > time.Second {
		t.Fatalf("refused after %v", d)
	}
	q.mu.Lock()
	if q.waiting != 0 {
		t.Fatal("refused waiter left in the queue")
	}
	q.mu.Unlock()
	// Raising the limit to none releases waiters at once.
	done := make(chan error, 1)
	go func() {
		_, err := q.acquire(ctx, "b", 1, time.Now().Add(5*time.Second))
		done <- err
	}()
	waitFor(t, func() bool { q.mu.Lock(); defer q.mu.Unlock(); return q.waiting == 1 })
	q.setLimit(0, 1)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Second):
		t.Fatal("waiter not released when the limit was removed")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestSuccessCacheClearedOnReload: a reload forgets every cached
// verification (a rotated or revoked password must not keep working
// through the cache).
func TestSuccessCacheClearedOnReload(t *testing.T) {
	cfg, err := config.Parse([]byte(`
server:
  listeners: [{address: "127.0.0.1:0", tls: none, allow_insecure_auth: true}]
delivery: {sender: file, file_dir: ` + t.TempDir() + `}
tenants:
  - name: a
    users: [{username: u, password_hash: "$2a$10$fLk/pjHAlbeiM/xrxs7rM.c4LTB14MuTZ6tjapQ/.k4ypkOY1Q3IC"}]
    domains: [a.example]
`))
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewServer(cfg, Options{Sender: &FileSender{Dir: t.TempDir()}})
	if err != nil {
		t.Fatal(err)
	}
	st := s.snapshot()
	_, u := st.rules.TenantForUser("u")
	ok, err := s.auth.verifyWithDummy(context.Background(), st, u, "u", "demo-password")
	if err != nil || !ok {
		t.Fatal("verify", ok, err)
	}
	s.auth.mu.Lock()
	n := len(s.auth.cache)
	s.auth.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d cached", n)
	}
	if err := s.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	s.auth.mu.Lock()
	n = len(s.auth.cache)
	s.auth.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d cached after reload", n)
	}
}
