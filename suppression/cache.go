package suppression

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"
)

// cached wraps a Store with the send path's lookup cache, the request time
// limit and the metrics. A lookup result, suppressed or not, is reused for
// ttl; Add and Remove through this value update the cache at once, so only
// changes made through another replica (or another process) wait for the
// ttl. The cache holds at most about max keys in two generations: when the
// current one is full it becomes the previous one and the oldest
// generation is dropped.
type cached struct {
	inner   Store
	ttl     time.Duration
	max     int
	timeout time.Duration
	now     func() time.Time
	m       *metrics
	log     *zap.Logger

	mu        sync.Mutex
	cur, prev map[cacheKey]cacheValue
	// gen counts Add and Remove calls: a lookup that raced with one does
	// not store its (possibly older) answer.
	gen uint64
}

type cacheKey struct{ tenant, list, rcpt string }

type cacheValue struct {
	suppressed bool
	expires    time.Time
}

var (
	_ Store   = (*cached)(nil)
	_ Batcher = (*cached)(nil)
)

func newCached(inner Store, ttl time.Duration, max int, timeout time.Duration, now func() time.Time, m *metrics, log *zap.Logger) *cached {
	if max < 2 {
		max = 2
	}
	return &cached{inner: inner, ttl: ttl, max: max, timeout: timeout, now: now, m: m, log: log,
		cur: make(map[cacheKey]cacheValue), prev: make(map[cacheKey]cacheValue)}
}

func (c *cached) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if c.timeout <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, c.timeout)
}

// get returns a fresh cached answer. c.mu must be held.
func (c *cached) get(k cacheKey, now time.Time) (bool, bool) {
	v, ok := c.cur[k]
	if !ok {
		v, ok = c.prev[k]
	}
	if !ok || !now.Before(v.expires) {
		return false, false
	}
	return v.suppressed, true
}

// put stores an answer. c.mu must be held.
func (c *cached) put(k cacheKey, suppressed bool, now time.Time) {
	if c.ttl <= 0 {
		return
	}
	if len(c.cur) >= c.max/2 {
		c.prev, c.cur = c.cur, make(map[cacheKey]cacheValue, len(c.cur))
	}
	c.cur[k] = cacheValue{suppressed: suppressed, expires: now.Add(c.ttl)}
}

// forget drops k from both generations. c.mu must be held.
func (c *cached) forget(k cacheKey) {
	delete(c.cur, k)
	delete(c.prev, k)
}

// Suppressed implements Store. Recipients are looked up once per normalised
// address; the answer is keyed by the addresses as given.
func (c *cached) Suppressed(ctx context.Context, tenant, list string, rcpts []string) (map[string]bool, error) {
	out := make(map[string]bool)
	if tenant == "" || list == "" || len(rcpts) == 0 {
		return out, nil
	}
	c.m.lookups.WithLabelValues(tenant).Add(float64(len(rcpts)))
	now := c.now()
	norm := make([]string, len(rcpts))
	var miss []string
	seen := make(map[string]bool, len(rcpts))
	cachedHits := 0
	c.mu.Lock()
	gen := c.gen
	for i, r := range rcpts {
		n := Normalize(r)
		norm[i] = n
		if seen[n] {
			continue
		}
		seen[n] = true
		if s, ok := c.get(cacheKey{tenant, list, n}, now); ok {
			cachedHits++
			if s {
				out[n] = true
			}
			continue
		}
		miss = append(miss, n)
	}
	c.mu.Unlock()
	c.m.cacheHits.Add(float64(cachedHits))
	if len(miss) > 0 {
		rctx, cancel := c.withTimeout(ctx)
		got, err := c.inner.Suppressed(rctx, tenant, list, miss)
		cancel()
		if err != nil {
			c.m.errors.WithLabelValues("lookup").Inc()
			c.log.Warn("suppression lookup failed", zap.String("tenant", tenant), zap.String("list", list), zap.Int("recipients", len(miss)), zap.Error(err))
			return nil, err
		}
		c.mu.Lock()
		store := c.gen == gen
		for _, n := range miss {
			if got[n] {
				out[n] = true
			}
			if store {
				c.put(cacheKey{tenant, list, n}, got[n], now)
			}
		}
		c.mu.Unlock()
	}
	res := make(map[string]bool, len(out))
	for i, r := range rcpts {
		if out[norm[i]] {
			res[r] = true
		}
	}
	c.m.hits.WithLabelValues(tenant).Add(float64(len(res)))
	return res, nil
}

// Add implements Store.
func (c *cached) Add(ctx context.Context, e Entry) error {
	if err := check(&e); err != nil {
		return err
	}
	if e.Created.IsZero() {
		e.Created = c.now()
	}
	rctx, cancel := c.withTimeout(ctx)
	defer cancel()
	err := c.inner.Add(rctx, e)
	c.mu.Lock()
	c.gen++
	k := cacheKey{e.Tenant, e.List, e.Recipient}
	if err == nil {
		c.put(k, true, c.now())
	} else {
		c.forget(k)
	}
	c.mu.Unlock()
	if err != nil {
		c.m.errors.WithLabelValues("add").Inc()
		return err
	}
	c.m.added.WithLabelValues(e.Tenant, e.Source).Inc()
	return nil
}

// AddMany implements Batcher, through the store's own AddMany when it has
// one. It has no time limit but ctx's.
func (c *cached) AddMany(ctx context.Context, es []Entry) error {
	checked := make([]Entry, len(es))
	for i, e := range es {
		if err := check(&e); err != nil {
			return fmt.Errorf("entry %d: %w", i+1, err)
		}
		if e.Created.IsZero() {
			e.Created = c.now()
		}
		checked[i] = e
	}
	var err error
	if b, ok := c.inner.(Batcher); ok {
		err = b.AddMany(ctx, checked)
	} else {
		for _, e := range checked {
			if err = c.inner.Add(ctx, e); err != nil {
				break
			}
		}
	}
	c.mu.Lock()
	c.gen++
	now := c.now()
	for _, e := range checked {
		k := cacheKey{e.Tenant, e.List, e.Recipient}
		if err == nil {
			c.put(k, true, now)
		} else {
			c.forget(k)
		}
	}
	c.mu.Unlock()
	if err != nil {
		c.m.errors.WithLabelValues("add").Inc()
		return err
	}
	for _, e := range checked {
		c.m.added.WithLabelValues(e.Tenant, e.Source).Inc()
	}
	return nil
}

// Remove implements Store.
func (c *cached) Remove(ctx context.Context, tenant, list, recipient string) error {
	rctx, cancel := c.withTimeout(ctx)
	defer cancel()
	n := Normalize(recipient)
	err := c.inner.Remove(rctx, tenant, list, n)
	c.mu.Lock()
	c.gen++
	c.forget(cacheKey{tenant, list, n})
	c.mu.Unlock()
	if err != nil {
		c.m.errors.WithLabelValues("remove").Inc()
		return err
	}
	c.m.removed.WithLabelValues(tenant).Inc()
	return nil
}

// List implements Store. It reads the store, not the cache, and has no
// time limit but ctx's.
func (c *cached) List(ctx context.Context, tenant, list string, fn func(Entry) error) error {
	var fnErr error
	err := c.inner.List(ctx, tenant, list, func(e Entry) error {
		if err := fn(e); err != nil {
			fnErr = err
			return err
		}
		return nil
	})
	if err != nil && err != fnErr {
		c.m.errors.WithLabelValues("list").Inc()
	}
	return err
}

// Close implements Store.
func (c *cached) Close() error { return c.inner.Close() }
