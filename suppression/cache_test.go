package suppression

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"
)

// memStore is a recording in-memory Store with an error knob, shared by
// two cached values to play two replicas.
type memStore struct {
	mu      sync.Mutex
	entries map[cacheKey]Entry
	lookups int // recipients asked
	err     error
}

func newMemStore() *memStore { return &memStore{entries: map[cacheKey]Entry{}} }

func (m *memStore) Suppressed(ctx context.Context, tenant, list string, rcpts []string) (map[string]bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return nil, m.err
	}
	out := map[string]bool{}
	for _, r := range rcpts {
		m.lookups++
		if _, ok := m.entries[cacheKey{tenant, list, Normalize(r)}]; ok {
			out[r] = true
		}
	}
	return out, nil
}

func (m *memStore) Add(ctx context.Context, e Entry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return m.err
	}
	k := cacheKey{e.Tenant, e.List, Normalize(e.Recipient)}
	if _, ok := m.entries[k]; !ok {
		m.entries[k] = e
	}
	return nil
}

func (m *memStore) Remove(ctx context.Context, tenant, list, r string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return m.err
	}
	delete(m.entries, cacheKey{tenant, list, Normalize(r)})
	return nil
}

func (m *memStore) List(ctx context.Context, tenant, list string, fn func(Entry) error) error {
	return errors.New("not used")
}

func (m *memStore) Close() error { return nil }

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTestCached(t *testing.T, inner Store, ttl time.Duration, clock *fakeClock, reg prometheus.Registerer) *cached {
	m, err := newMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	return newCached(inner, ttl, 1000, time.Second, clock.now, m, zaptest.NewLogger(t))
}

// TestCacheTwoReplicas: an Add through one replica holds there at once and
// on the other replica once the other's cached answer expires, not before.
func TestCacheTwoReplicas(t *testing.T) {
	ctx := context.Background()
	shared := newMemStore()
	clock := &fakeClock{t: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)}
	ttl := 10 * time.Second
	a := newTestCached(t, shared, ttl, clock, nil)
	b := newTestCached(t, shared, ttl, clock, nil)
	rc := []string{"bob@example.com"}

	if got, err := b.Suppressed(ctx, "acme", "news", rc); err != nil || len(got) != 0 {
		t.Fatalf("b before: %v %v", got, err)
	}
	if err := a.Add(ctx, Entry{Tenant: "acme", List: "news", Recipient: "bob@EXAMPLE.com", Source: SourceUnsubscribe}); err != nil {
		t.Fatal(err)
	}
	if got, _ := a.Suppressed(ctx, "acme", "news", rc); !got["bob@example.com"] {
		t.Errorf("a does not see its own Add at once")
	}
	clock.advance(ttl - time.Second)
	if got, _ := b.Suppressed(ctx, "acme", "news", rc); len(got) != 0 {
		t.Errorf("b asked the store before its cached answer expired: %v", got)
	}
	clock.advance(time.Second)
	if got, _ := b.Suppressed(ctx, "acme", "news", rc); !got["bob@example.com"] {
		t.Errorf("b does not see a's Add after the ttl")
	}

	// Remove through b: b at once, a after the ttl.
	if got, _ := a.Suppressed(ctx, "acme", "news", rc); !got["bob@example.com"] {
		t.Fatal("a lost the entry")
	}
	if err := b.Remove(ctx, "acme", "news", "bob@example.com"); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.Suppressed(ctx, "acme", "news", rc); len(got) != 0 {
		t.Errorf("b still suppresses after its own Remove")
	}
	if got, _ := a.Suppressed(ctx, "acme", "news", rc); !got["bob@example.com"] {
		t.Errorf("a lost its cached answer before the ttl")
	}
	clock.advance(ttl)
	if got, _ := a.Suppressed(ctx, "acme", "news", rc); len(got) != 0 {
		t.Errorf("a does not see b's Remove after the ttl")
	}
}

func TestCacheHitsAndMetrics(t *testing.T) {
	ctx := context.Background()
	inner := newMemStore()
	clock := &fakeClock{t: time.Unix(0, 0)}
	reg := prometheus.NewRegistry()
	c := newTestCached(t, inner, time.Minute, clock, reg)
	if err := c.Add(ctx, Entry{Tenant: "acme", List: "news", Recipient: "a@example.com", Source: SourceImport}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		got, err := c.Suppressed(ctx, "acme", "news", []string{"a@example.com", "b@example.com", "b@EXAMPLE.com"})
		if err != nil {
			t.Fatal(err)
		}
		if !got["a@example.com"] || len(got) != 1 {
			t.Fatalf("Suppressed = %v", got)
		}
	}
	if inner.lookups != 1 {
		t.Errorf("store asked for %d recipients, want 1 (b once; a known from the Add; b@EXAMPLE.com is b)", inner.lookups)
	}
	if v := testutil.ToFloat64(c.m.lookups.WithLabelValues("acme")); v != 9 {
		t.Errorf("lookups = %v, want 9", v)
	}
	if v := testutil.ToFloat64(c.m.hits.WithLabelValues("acme")); v != 3 {
		t.Errorf("hits = %v, want 3", v)
	}
	if v := testutil.ToFloat64(c.m.added.WithLabelValues("acme", SourceImport)); v != 1 {
		t.Errorf("added = %v, want 1", v)
	}
	if v := testutil.ToFloat64(c.m.cacheHits); v != 5 {
		t.Errorf("cache hits = %v, want 5", v)
	}
	// ttl 0: every lookup asks the store.
	inner.lookups = 0
	c0 := newTestCached(t, inner, 0, clock, nil)
	for i := 0; i < 2; i++ {
		c0.Suppressed(ctx, "acme", "news", []string{"a@example.com"})
	}
	if inner.lookups != 2 {
		t.Errorf("with ttl 0 the store was asked %d times, want 2", inner.lookups)
	}
}

// TestCacheFailsClosed: a store error is an error, never "not suppressed",
// and is not cached.
func TestCacheFailsClosed(t *testing.T) {
	ctx := context.Background()
	inner := newMemStore()
	clock := &fakeClock{t: time.Unix(0, 0)}
	c := newTestCached(t, inner, time.Minute, clock, nil)
	inner.err = errors.New("table unreachable")
	got, err := c.Suppressed(ctx, "acme", "news", []string{"a@example.com"})
	if err == nil || got != nil {
		t.Fatalf("Suppressed with a failing store = %v, %v; want an error", got, err)
	}
	if v := testutil.ToFloat64(c.m.errors.WithLabelValues("lookup")); v != 1 {
		t.Errorf("errors{op=lookup} = %v, want 1", v)
	}
	inner.err = nil
	inner.entries[cacheKey{"acme", "news", "a@example.com"}] = Entry{}
	if got, err := c.Suppressed(ctx, "acme", "news", []string{"a@example.com"}); err != nil || !got["a@example.com"] {
		t.Errorf("after the store recovered: %v, %v", got, err)
	}
}

// TestCacheTimeout: a store that hangs is cut off at the timeout.
func TestCacheTimeout(t *testing.T) {
	m, _ := newMetrics(nil)
	c := newCached(hangStore{newMemStore()}, time.Minute, 100, 50*time.Millisecond, time.Now, m, zaptest.NewLogger(t))
	start := time.Now()
	_, err := c.Suppressed(context.Background(), "acme", "news", []string{"a@example.com"})
	if err == nil || !strings.Contains(err.Error(), "deadline") {
		t.Errorf("err = %v, want a deadline error", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %s", d)
	}
}

type hangStore struct{ *memStore }

func (hangStore) Suppressed(ctx context.Context, tenant, list string, rcpts []string) (map[string]bool, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestCacheBounded(t *testing.T) {
	m, _ := newMetrics(nil)
	c := newCached(newMemStore(), time.Minute, 100, time.Second, time.Now, m, zaptest.NewLogger(t))
	for i := 0; i < 1000; i++ {
		c.Suppressed(context.Background(), "acme", "news", []string{strings.Repeat("x", i%50+1) + "@example.com", "u" + string(rune('a'+i%26)) + time.Duration(i).String() + "@example.com"})
	}
	if n := len(c.cur) + len(c.prev); n > 100 {
		t.Errorf("cache holds %d keys, bound 100", n)
	}
}

// gateStore answers "not suppressed" from a snapshot taken before it
// blocks on gate: a lookup in flight while an Add happens elsewhere.
type gateStore struct {
	*memStore
	entered chan struct{}
	gate    chan struct{}
}

func (g gateStore) Suppressed(ctx context.Context, tenant, list string, rcpts []string) (map[string]bool, error) {
	res, err := g.memStore.Suppressed(ctx, tenant, list, rcpts)
	g.entered <- struct{}{}
	<-g.gate
	return res, err
}

// TestCacheLookupRacingAdd: a lookup that read the store before an Add
// through the same replica finished must not cache its older answer.
func TestCacheLookupRacingAdd(t *testing.T) {
	ctx := context.Background()
	inner := newMemStore()
	g := gateStore{inner, make(chan struct{}), make(chan struct{})}
	m, _ := newMetrics(nil)
	c := newCached(g, time.Minute, 100, 5*time.Second, time.Now, m, zaptest.NewLogger(t))
	done := make(chan map[string]bool)
	go func() {
		got, _ := c.Suppressed(ctx, "acme", "news", []string{"a@example.com"})
		done <- got
	}()
	<-g.entered
	if err := c.Add(ctx, Entry{Tenant: "acme", List: "news", Recipient: "a@example.com"}); err != nil {
		t.Fatal(err)
	}
	close(g.gate)
	if got := <-done; len(got) != 0 {
		t.Fatalf("the racing lookup saw %v; the test wants it to have read before the Add", got)
	}
	go func() {
		for range g.entered {
		}
	}()
	defer close(g.entered)
	if got, _ := c.Suppressed(ctx, "acme", "news", []string{"a@example.com"}); !got["a@example.com"] {
		t.Error("the lookup that raced with Add cached its older answer over the Add")
	}
}

func TestCacheConcurrent(t *testing.T) {
	ctx := context.Background()
	inner := newMemStore()
	m, _ := newMetrics(nil)
	c := newCached(inner, time.Minute, 64, time.Second, time.Now, m, zaptest.NewLogger(t))
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				r := []string{"u" + string(rune('a'+i%26)) + "@example.com"}
				if i%7 == w {
					c.Add(ctx, Entry{Tenant: "acme", List: "news", Recipient: r[0]})
				}
				if _, err := c.Suppressed(ctx, "acme", "news", r); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	for i := 0; i < 26; i++ {
		r := "u" + string(rune('a'+i)) + "@example.com"
		got, _ := c.Suppressed(ctx, "acme", "news", []string{r})
		_, stored := inner.entries[cacheKey{"acme", "news", r}]
		if got[r] != stored {
			t.Errorf("%s: cache says %v, store %v", r, got[r], stored)
		}
	}
}
