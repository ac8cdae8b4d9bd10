package relay

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/sesrelay/sesrelay/config"
)

// RateLimits are the sending rates a RateLimiter enforces, in recipients
// per second (SES counts every recipient of a message against the
// account's maximum send rate).
type RateLimits struct {
	// Global is the rate of the whole relay (ses.max_send_rate, resolved:
	// "auto" already turned into a number). 0 = no limit.
	Global float64
	// Tenants maps a tenant name to its rate (tenants[].max_send_rate).
	// Absent or 0 = no limit of its own.
	Tenants map[string]float64
	// Wait is how long a message may wait for tokens, both limits
	// together (ses.rate_limit_wait); then it gets 451 4.7.0.
	Wait time.Duration
	// MaxRecipients is the largest request (server.max_recipients). Every
	// bucket holds at least that many tokens, so that a message to every
	// recipient allowed can pass a full bucket at any rate.
	MaxRecipients int
}

// RateLimitsFromConfig takes the limits from cfg, with global as the
// resolved ses.max_send_rate (see ResolveSendRate).
func RateLimitsFromConfig(cfg *config.Config, global float64) RateLimits {
	l := RateLimits{Global: global, Tenants: map[string]float64{}, Wait: cfg.SES.RateLimitWait, MaxRecipients: cfg.Server.MaxRecipients}
	for i := range cfg.Tenants {
		if r := cfg.Tenants[i].MaxSendRate; r > 0 {
			l.Tenants[cfg.Tenants[i].Name] = r
		}
	}
	return l
}

// SendQuota is what reads the account's sending rate (*ses.Sender).
type SendQuota interface {
	MaxSendRate(ctx context.Context) (float64, error)
}

// ResolveSendRate turns ses.max_send_rate into recipients per second:
// a number is taken as is; "auto" asks q for the account's MaxSendRate
// (GetAccount) and divides it by ses.replicas when that is set, so that
// the replicas together stay under the account's rate.
func ResolveSendRate(ctx context.Context, c *config.SES, q SendQuota) (float64, error) {
	if c.MaxSendRate != "auto" {
		r, err := strconv.ParseFloat(c.MaxSendRate, 64)
		if err != nil || r < 0 {
			return 0, fmt.Errorf("ses.max_send_rate: not a rate: %q", c.MaxSendRate)
		}
		return r, nil
	}
	if q == nil {
		return 0, errors.New("ses.max_send_rate: auto needs the SES sender (delivery.sender: ses)")
	}
	r, err := q.MaxSendRate(ctx)
	if err != nil {
		return 0, err
	}
	if r <= 0 {
		return 0, fmt.Errorf("ses.max_send_rate: auto: the account reports a sending rate of %v", r)
	}
	if c.Replicas > 0 {
		r /= float64(c.Replicas)
	}
	return r, nil
}

// defaultMaxRecipients is server.max_recipients' default, for limits
// built by hand.
var defaultMaxRecipients = config.Defaults().Server.MaxRecipients

// ErrRateLimited is the cause of a KindRateLimited SendError.
var ErrRateLimited = errors.New("sending rate limit: no tokens within ses.rate_limit_wait")

// RateLimiter is a Sender that holds each request until both its
// tenant's rate and the relay's global rate allow its recipients, for at
// most RateLimits.Wait, then passes it to the next Sender. A request that
// would wait longer is refused with a KindRateLimited *SendError
// (451 4.7.0) and nothing is sent.
//
// Fairness. The tenant limit is taken first, so a tenant never holds
// global tokens it could not use under its own limit. The global bucket is
// then shared by start-time fair queuing, not first come first served:
// when requests wait for global tokens, each tenant has its own queue and
// a virtual time that grows by the recipients it is granted; the head of
// the queue with the smallest virtual time is served next, and a tenant
// that starts waiting joins at the current virtual time (no credit for
// having been idle). While several tenants wait, each gets an equal share
// of the global rate whatever its number of connections: a noisy tenant
// with a hundred connections queues behind its own earlier requests, and
// another tenant's message waits at most about one request per waiting
// tenant, not behind the noisy tenant's whole backlog. When nobody waits,
// a request that finds tokens passes at once.
type RateLimiter struct {
	next Sender

	mu      sync.RWMutex
	limits  RateLimits
	tenants map[string]*rate.Limiter
	metrics *Metrics

	global fairQueue
}

var _ Sender = (*RateLimiter)(nil)

// RateLimited wraps next with limits.
func RateLimited(next Sender, limits RateLimits) *RateLimiter {
	l := &RateLimiter{next: next, tenants: map[string]*rate.Limiter{}}
	l.global.queues = map[string]*fairTenant{}
	l.Update(limits)
	return l
}

// Limits returns the limits in force.
func (l *RateLimiter) Limits() RateLimits {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.limits
}

// SetMetrics makes l count its decisions in m
// (sesrelay_rate_limit_total).
func (l *RateLimiter) SetMetrics(m *Metrics) {
	l.mu.Lock()
	l.metrics = m
	l.mu.Unlock()
}

// burst is the bucket size for rate r: one second of tokens, and never
// less than the largest request.
func burst(r float64, maxRcpt int) int {
	b := int(math.Ceil(r))
	if b < maxRcpt {
		b = maxRcpt
	}
	if b < 1 {
		b = 1
	}
	return b
}

// Update applies new limits (on reload). Tenant buckets that stay keep
// their tokens; new ones start full.
func (l *RateLimiter) Update(limits RateLimits) {
	if limits.MaxRecipients < 1 {
		limits.MaxRecipients = defaultMaxRecipients
	}
	l.mu.Lock()
	l.limits = limits
	for name := range l.tenants {
		if limits.Tenants[name] <= 0 {
			delete(l.tenants, name)
		}
	}
	for name, r := range limits.Tenants {
		if r <= 0 {
			continue
		}
		b := burst(r, limits.MaxRecipients)
		if lim, ok := l.tenants[name]; ok {
			now := time.Now()
			lim.SetLimitAt(now, rate.Limit(r))
			lim.SetBurstAt(now, b)
		} else {
			l.tenants[name] = rate.NewLimiter(rate.Limit(r), b)
		}
	}
	l.mu.Unlock()
	l.global.setLimit(limits.Global, burst(limits.Global, limits.MaxRecipients))
}

// Send waits for tokens, then sends.
func (l *RateLimiter) Send(ctx context.Context, req *Request) (*Result, error) {
	n := len(req.Recipients)
	if n < 1 {
		n = 1
	}
	l.mu.RLock()
	wait := l.limits.Wait
	tl := l.tenants[req.Tenant]
	m := l.metrics
	l.mu.RUnlock()
	deadline := time.Now().Add(wait)
	var tenantRes *rate.Reservation
	if tl != nil {
		r, waited, err := waitTenant(ctx, tl, n, deadline)
		if err != nil {
			m.rateLimit("tenant", req.Tenant, "refused")
			return nil, &SendError{Kind: KindRateLimited, Err: fmt.Errorf("tenant %s: %w", req.Tenant, err)}
		}
		if waited {
			m.rateLimit("tenant", req.Tenant, "waited")
		}
		tenantRes = r
	}
	waited, err := l.global.acquire(ctx, req.Tenant, n, deadline)
	if err != nil {
		// Nothing is sent: give the tenant its tokens back.
		if tenantRes != nil {
			tenantRes.Cancel()
		}
		m.rateLimit("global", req.Tenant, "refused")
		return nil, &SendError{Kind: KindRateLimited, Err: fmt.Errorf("global: %w", err)}
	}
	if waited {
		m.rateLimit("global", req.Tenant, "waited")
	}
	return l.next.Send(ctx, req)
}

func (m *Metrics) rateLimit(scope, tenant, result string) {
	if m != nil {
		m.RateLimitWaits.WithLabelValues(scope, tenant, result).Inc()
	}
}

// waitTenant takes n tokens from lim, waiting until deadline at most.
func waitTenant(ctx context.Context, lim *rate.Limiter, n int, deadline time.Time) (r *rate.Reservation, waited bool, err error) {
	if b := lim.Burst(); n > b {
		n = b
	}
	now := time.Now()
	r = lim.ReserveN(now, n)
	if !r.OK() {
		return nil, false, ErrRateLimited
	}
	d := r.DelayFrom(now)
	if d == 0 {
		return r, false, nil
	}
	if now.Add(d).After(deadline) {
		r.CancelAt(now)
		return nil, false, ErrRateLimited
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return r, true, nil
	case <-ctx.Done():
		r.Cancel()
		return nil, false, ctx.Err()
	}
}

// fairQueue is the global bucket with start-time fair queuing between
// tenants (see RateLimiter).
type fairQueue struct {
	mu      sync.Mutex
	lim     *rate.Limiter // nil: no global limit
	queues  map[string]*fairTenant
	waiting int
	vclock  float64 // virtual start time of the last request granted
	seq     uint64
	timer   *time.Timer
}

type fairTenant struct {
	vtime   float64 // virtual finish time of the tenant's last grant
	waiters []*fairWaiter
}

type fairWaiter struct {
	n       int
	seq     uint64
	ready   chan struct{}
	granted bool
}

func (q *fairQueue) setLimit(r float64, b int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	switch {
	case r <= 0:
		q.lim = nil
	case q.lim == nil:
		q.lim = rate.NewLimiter(rate.Limit(r), b)
	default:
		now := time.Now()
		q.lim.SetLimitAt(now, rate.Limit(r))
		q.lim.SetBurstAt(now, b)
	}
	q.dispatchLocked(time.Now())
}

// acquire takes n global tokens for tenant, waiting until deadline at
// most. waited reports whether the request had to queue.
func (q *fairQueue) acquire(ctx context.Context, tenant string, n int, deadline time.Time) (waited bool, err error) {
	q.mu.Lock()
	if q.lim == nil {
		q.mu.Unlock()
		return false, nil
	}
	if b := q.lim.Burst(); n > b {
		n = b
	}
	now := time.Now()
	if q.waiting == 0 && q.lim.AllowN(now, n) {
		q.mu.Unlock()
		return false, nil
	}
	if !now.Before(deadline) {
		q.mu.Unlock()
		return false, ErrRateLimited
	}
	q.seq++
	w := &fairWaiter{n: n, seq: q.seq, ready: make(chan struct{})}
	ft := q.queues[tenant]
	if ft == nil {
		ft = &fairTenant{vtime: q.vclock}
		q.queues[tenant] = ft
	}
	if len(ft.waiters) == 0 && ft.vtime < q.vclock {
		ft.vtime = q.vclock
	}
	ft.waiters = append(ft.waiters, w)
	q.waiting++
	q.dispatchLocked(now)
	q.mu.Unlock()

	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-w.ready:
		return true, nil
	case <-t.C:
		err = ErrRateLimited
	case <-ctx.Done():
		err = ctx.Err()
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if w.granted {
		return true, nil
	}
	q.removeLocked(tenant, w)
	q.dispatchLocked(time.Now())
	return true, err
}

func (q *fairQueue) removeLocked(tenant string, w *fairWaiter) {
	ft := q.queues[tenant]
	if ft == nil {
		return
	}
	for i, x := range ft.waiters {
		if x == w {
			ft.waiters = append(ft.waiters[:i:i], ft.waiters[i+1:]...)
			q.waiting--
			return
		}
	}
}

// dispatchLocked grants waiting requests in fair order while tokens last,
// and arms the timer for the next one.
func (q *fairQueue) dispatchLocked(now time.Time) {
	for {
		var best *fairTenant
		for name, ft := range q.queues {
			if len(ft.waiters) == 0 {
				if ft.vtime <= q.vclock {
					delete(q.queues, name) // nothing to remember
				}
				continue
			}
			if best == nil || ft.vtime < best.vtime || (ft.vtime == best.vtime && ft.waiters[0].seq < best.waiters[0].seq) {
				best = ft
			}
		}
		if best == nil {
			if q.timer != nil {
				q.timer.Stop()
			}
			return
		}
		w := best.waiters[0]
		if q.lim != nil && !q.lim.AllowN(now, w.n) {
			need := float64(w.n) - q.lim.TokensAt(now)
			d := time.Duration(need/float64(q.lim.Limit())*float64(time.Second)) + time.Millisecond
			if q.timer == nil {
				q.timer = time.AfterFunc(d, q.onTimer)
			} else {
				q.timer.Reset(d)
			}
			return
		}
		best.waiters[0] = nil
		best.waiters = best.waiters[1:]
		q.waiting--
		if best.vtime > q.vclock {
			q.vclock = best.vtime
		}
		best.vtime += float64(w.n)
		w.granted = true
		close(w.ready)
	}
}

func (q *fairQueue) onTimer() {
	q.mu.Lock()
	q.dispatchLocked(time.Now())
	q.mu.Unlock()
}
