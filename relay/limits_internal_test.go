package relay

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sesrelay/sesrelay/config"
)

func TestAuthLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	a := newAuthLimiter(func() time.Time { return now })
	bot := netip.MustParseAddr("192.0.2.1")
	app := netip.MustParseAddr("192.0.2.2")
	other := netip.MustParseAddr("192.0.2.3")
	const max, window = 3, time.Minute

	for i := 1; i <= 3; i++ {
		if locked, _, _ := a.check(bot, "app", max, window); locked {
			t.Fatalf("locked before %d failures", i)
		}
		if d := a.fail(bot, "app", window); d != authDelay(i) {
			t.Fatalf("failure %d: delay %v", i, d)
		}
	}
	locked, why, d := a.check(bot, "app", max, window)
	if !locked || why != "ip" || d != authDelay(4) {
		t.Fatalf("bot address: %v %q %v", locked, why, d)
	}
	// The same address with any other username: locked too.
	if locked, _, _ := a.check(bot, "someone-else", max, window); !locked {
		t.Fatal("a locked address may try another username")
	}
	// The username is under attack, but an address without failures is
	// verified.
	if locked, _, _ := a.check(app, "app", max, window); locked {
		t.Fatal("clean address refused")
	}
	// An address that failed once may not try the attacked username.
	a.fail(other, "x", window)
	if locked, why, _ := a.check(other, "app", max, window); !locked || why != "user" {
		t.Fatalf("dirty address on attacked username: %v %q", locked, why)
	}
	if locked, _, _ := a.check(other, "x", max, window); locked {
		t.Fatal("one failure locks nothing for a username not under attack")
	}
	// Refusals renew the lockout; a quiet period ends it.
	now = now.Add(50 * time.Second)
	if locked, _, _ := a.check(bot, "app", max, window); !locked {
		t.Fatal("lockout ended early")
	}
	now = now.Add(59 * time.Second)
	if locked, _, _ := a.check(bot, "app", max, window); !locked {
		t.Fatal("a refusal did not renew the lockout")
	}
	now = now.Add(61 * time.Second)
	if locked, _, _ := a.check(bot, "app", max, window); locked {
		t.Fatal("lockout did not end")
	}
	// IPv6: one /64 is one address.
	v6a, v6b := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::ffff:2")
	for i := 0; i < 3; i++ {
		a.fail(v6a, "u", window)
	}
	if locked, _, _ := a.check(v6b, "u2", max, window); !locked {
		t.Fatal("another address of the same /64 is not locked")
	}
	// The delay grows and is capped.
	if authDelay(1) != authDelayBase || authDelay(2) != 2*authDelayBase || authDelay(100) != authDelayMax {
		t.Fatal("delay shape")
	}
}

func TestAuthLimiterBounded(t *testing.T) {
	a := newAuthLimiter(time.Now)
	ip := netip.MustParseAddr("192.0.2.1")
	for i := 0; i < authTrackMax+10; i++ {
		a.fail(ip, "user-"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+time.Duration(i).String(), time.Minute)
	}
	if len(a.users) > authTrackMax {
		t.Fatalf("%d usernames tracked", len(a.users))
	}
}

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
