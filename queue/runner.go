package queue

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Deliverer sends request req of e (e.Message(req), to
// e.Requests[req].Recipients, with e.SES) and returns the SES message id.
// It must return when ctx is done. An error is classified by the
// Runner's Classifier; the Deliverer must not change e.
type Deliverer interface {
	Deliver(ctx context.Context, e *Entry, req int) (sesMessageID string, err error)
}

// DelivererFunc adapts a function to a Deliverer.
type DelivererFunc func(ctx context.Context, e *Entry, req int) (string, error)

// Deliver calls f.
func (f DelivererFunc) Deliver(ctx context.Context, e *Entry, req int) (string, error) {
	return f(ctx, e, req)
}

var _ Deliverer = DelivererFunc(nil)

// Limiter holds a send until the rates allow recipients more recipients
// for tenant: the same limiter as direct sends, so a burst over the SES
// quota drains from the queue. Wait returns ctx's error when ctx is done;
// any other error counts as a transient delivery failure.
type Limiter interface {
	Wait(ctx context.Context, tenant string, recipients int) error
}

// LimiterFunc adapts a function to a Limiter.
type LimiterFunc func(ctx context.Context, tenant string, recipients int) error

// Wait calls f.
func (f LimiterFunc) Wait(ctx context.Context, tenant string, recipients int) error {
	return f(ctx, tenant, recipients)
}

var _ Limiter = LimiterFunc(nil)

// Classifier tells a permanent failure (the request will never succeed:
// the entry goes to dead/ and a DSN is due) from a transient one (retry
// later), and gives the RFC 3463 status code for the DSN.
type Classifier func(err error) (permanent bool, status string)

// PermanentError marks a failure as permanent for DefaultClassify.
type PermanentError struct {
	Status string // RFC 3463, e.g. "5.6.0"
	Err    error
}

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err as a permanent failure with an RFC 3463 status.
func Permanent(status string, err error) error { return &PermanentError{Status: status, Err: err} }

// DefaultClassify treats a *PermanentError as permanent and everything
// else as transient ("4.0.0").
func DefaultClassify(err error) (bool, string) {
	if p, ok := errors.AsType[*PermanentError](err); ok {
		if p.Status == "" {
			return true, "5.0.0"
		}
		return true, p.Status
	}
	return false, "4.0.0"
}

// Defaults of RunnerOptions, those of Postfix (minimal_backoff_time,
// maximal_backoff_time, maximal_queue_lifetime).
const (
	DefaultMinBackoff = 300 * time.Second
	DefaultMaxBackoff = 4000 * time.Second
	DefaultMaxAge     = 5 * 24 * time.Hour
	DefaultWorkers    = 4
)

// StatusExpired is the DSN status of recipients whose message reached
// max_age (RFC 3463 X.4.7, delivery time expired).
const StatusExpired = "4.4.7"

// RunnerOptions configure a Runner. Deliverer is required.
type RunnerOptions struct {
	Deliverer Deliverer
	Classify  Classifier // default DefaultClassify
	Limiter   Limiter    // nil: no limit
	Workers   int        // deliveries in parallel, default 4

	MinBackoff time.Duration // first retry delay, default 300 s
	MaxBackoff time.Duration // cap of the doubling delay, default 4000 s
	MaxAge     time.Duration // after a transient failure past this age, dead; default 5 days

	// OnDead is called once an entry was durably moved to dead/, with its
	// data, from a delivery worker: the place to send a DSN (BuildDSN).
	OnDead func(ctx context.Context, e *Entry)

	// Jitter returns a number in [0, 1); default math/rand/v2.
	Jitter func() float64
}

// Runner delivers due entries with a pool of workers. Start it once; Stop
// it before closing the Queue.
type Runner struct {
	q    *Queue
	o    RunnerOptions
	work chan string

	ctx      context.Context // cancelled when Stop's deadline passes
	cancel   context.CancelFunc
	stopping chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup

	tmu sync.Mutex // guards the timing fields of o (SetTiming)
}

// SetTiming replaces min_backoff, max_backoff and max_age (a configuration
// reload); zero values keep the current ones. Attempts already scheduled
// keep their time; the next failure uses the new values.
func (r *Runner) SetTiming(minBackoff, maxBackoff, maxAge time.Duration) {
	r.tmu.Lock()
	defer r.tmu.Unlock()
	if minBackoff > 0 {
		r.o.MinBackoff = minBackoff
	}
	if maxBackoff >= r.o.MinBackoff {
		r.o.MaxBackoff = maxBackoff
	} else if r.o.MaxBackoff < r.o.MinBackoff {
		r.o.MaxBackoff = r.o.MinBackoff
	}
	if maxAge > 0 {
		r.o.MaxAge = maxAge
	}
}

func (r *Runner) timing() (minBackoff, maxBackoff, maxAge time.Duration) {
	r.tmu.Lock()
	defer r.tmu.Unlock()
	return r.o.MinBackoff, r.o.MaxBackoff, r.o.MaxAge
}

// NewRunner returns a Runner of q's entries.
func (q *Queue) NewRunner(o RunnerOptions) *Runner {
	if o.Classify == nil {
		o.Classify = DefaultClassify
	}
	if o.Workers <= 0 {
		o.Workers = DefaultWorkers
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = DefaultMinBackoff
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(DefaultMaxBackoff, o.MinBackoff)
	}
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.Jitter == nil {
		o.Jitter = rand.Float64
	}
	r := &Runner{q: q, o: o, work: make(chan string), stopping: make(chan struct{})}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	return r
}

// Start starts the dispatcher and the workers.
func (r *Runner) Start() {
	r.wg.Add(1 + r.o.Workers)
	go r.dispatch()
	for range r.o.Workers {
		go r.worker()
	}
}

// Stop stops taking entries, lets in-flight deliveries finish until ctx is
// done, then cancels them and waits for the workers. Whatever was not
// sent stays on disk for the next Open. It returns ctx's error when it had
// to cancel.
func (r *Runner) Stop(ctx context.Context) error {
	r.stopOnce.Do(func() { close(r.stopping) })
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
		r.cancel()
		return nil
	case <-ctx.Done():
		r.cancel()
		<-done
		return ctx.Err()
	}
}

func (r *Runner) stopped() bool {
	select {
	case <-r.stopping:
		return true
	default:
		return false
	}
}

// dispatchBatch bounds how many due ids one scan of the index yields.
const dispatchBatch = 256

// dispatch scans the index for due entries, oldest due first, and hands
// them to the workers, claiming each as it goes; it sleeps until the next
// entry is due or the queue is poked.
func (r *Runner) dispatch() {
	defer r.wg.Done()
	defer close(r.work)
	for {
		ids, wait := r.q.due(r.q.now(), dispatchBatch)
		for _, id := range ids {
			if !r.q.claimDue(id, r.q.now()) {
				continue
			}
			select {
			case r.work <- id:
			case <-r.stopping:
				r.q.release(id)
				return
			}
		}
		if len(ids) > 0 {
			continue
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-r.q.wake:
		case <-r.stopping:
			t.Stop()
			return
		}
		t.Stop()
	}
}

// due returns up to n ids of active, idle entries due at now, earliest
// first, and how long until the next one is due otherwise.
func (q *Queue) due(now time.Time, n int) ([]string, time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	type cand struct {
		id string
		at time.Time
	}
	var cands []cand
	wait := time.Minute
	for id, it := range q.items {
		if it.busy || it.e.Dead {
			continue
		}
		if !it.e.NextAttempt.After(now) {
			cands = append(cands, cand{id, it.e.NextAttempt})
		} else if d := it.e.NextAttempt.Sub(now); d < wait {
			wait = d
		}
	}
	slices.SortFunc(cands, func(a, b cand) int { return a.at.Compare(b.at) })
	ids := make([]string, 0, min(n, len(cands)))
	for _, c := range cands[:min(n, len(cands))] {
		ids = append(ids, c.id)
	}
	return ids, wait
}

// claimDue marks id busy if it is still active, idle and due.
func (q *Queue) claimDue(id string, now time.Time) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	it := q.items[id]
	if q.closed || it == nil || it.busy || it.e.Dead || it.e.NextAttempt.After(now) {
		return false
	}
	it.busy = true
	return true
}

func (r *Runner) worker() {
	defer r.wg.Done()
	for id := range r.work {
		r.deliver(id)
	}
}

// deliver makes one attempt at a claimed entry: every pending request in
// order, each accepted one persisted at once so it is never resent.
func (r *Runner) deliver(id string) {
	q := r.q
	q.mu.Lock()
	it := q.items[id]
	var e *Entry
	if it != nil {
		e = it.e.clone()
	}
	q.mu.Unlock()
	if e == nil {
		return
	}
	log := q.log.With(zap.String("id", id), zap.String("tenant", e.Tenant))
	if err := q.readData(e); err != nil {
		log.Error("queue entry unreadable", zap.Error(err))
		r.failPending(e, "5.3.0", err.Error())
		r.toDead(e, DeadUnreadable, log)
		return
	}
	e.Attempts++
	e.LastAttempt = q.now()
	for i := range e.Requests {
		req := &e.Requests[i]
		if req.State != Pending {
			continue
		}
		if r.stopped() {
			q.release(id)
			return
		}
		if r.o.Limiter != nil {
			if err := r.o.Limiter.Wait(r.ctx, e.Tenant, len(req.Recipients)); err != nil {
				if r.ctx.Err() != nil {
					q.release(id)
					return
				}
				r.retryLater(e, err, log)
				return
			}
		}
		msgID, err := r.o.Deliverer.Deliver(r.ctx, e, i)
		if err == nil {
			req.State, req.SESMessageID = Accepted, msgID
			q.m.deliveries.WithLabelValues(e.Tenant, "accepted").Inc()
			if e.done() {
				// The last request: removing the entry below is the
				// durable record, one meta write and two fsyncs fewer.
				continue
			}
			if err := q.update(e); err != nil {
				log.Error("queue: SES accepted a request but its state could not be written; a restart may send it again",
					zap.Int("request", i), zap.String("ses_message_id", msgID), zap.Error(err))
			}
			continue
		}
		if r.ctx.Err() != nil {
			// Stop's deadline: SES may or may not have it; the request
			// stays pending and is sent again after a restart.
			log.Warn("queue delivery cancelled by shutdown", zap.Int("request", i), zap.Error(err))
			q.release(id)
			return
		}
		if perm, status := r.o.Classify(err); perm {
			req.State, req.Status, req.Error = Failed, status, err.Error()
			q.m.deliveries.WithLabelValues(e.Tenant, "permanent").Inc()
			log.Warn("queue request refused", zap.Int("request", i), zap.Strings("recipients", req.Recipients), zap.Error(err))
			continue
		}
		q.m.deliveries.WithLabelValues(e.Tenant, "transient").Inc()
		r.retryLater(e, err, log)
		return
	}
	for _, req := range e.Requests {
		if req.State == Failed {
			r.toDead(e, DeadRefused, log)
			return
		}
	}
	if err := q.removeDelivered(e); err != nil {
		// Every request was accepted: a restart would find the entry and
		// skip its accepted requests, so nothing is sent twice.
		q.m.writeErrors.Inc()
		log.Error("queue: delivered entry not removed", zap.Error(err))
	}
	q.forget(e)
	log.Info("queue message delivered", zap.Int("attempts", e.Attempts))
}

// retryLater schedules the next attempt after a transient failure, or
// moves the entry to dead/ once it is older than max_age.
func (r *Runner) retryLater(e *Entry, cause error, log *zap.Logger) {
	q := r.q
	now := q.now()
	e.LastError = cause.Error()
	if _, _, maxAge := r.timing(); now.Sub(e.Queued) >= maxAge {
		q.m.expired.WithLabelValues(e.Tenant).Inc()
		r.failPending(e, StatusExpired, fmt.Sprintf("delivery time expired after %d attempts; last error: %s", e.Attempts, e.LastError))
		r.toDead(e, DeadExpired, log)
		return
	}
	e.NextAttempt = now.Add(r.backoff(e.Attempts))
	q.m.retries.WithLabelValues(e.Tenant).Inc()
	if err := q.update(e); err != nil {
		log.Error("queue: retry state not written", zap.Error(err))
	}
	log.Info("queue delivery deferred", zap.Int("attempts", e.Attempts), zap.Time("next_attempt", e.NextAttempt), zap.Error(cause))
	q.release(e.ID)
	q.poke() // the dispatcher may sleep past the new next attempt
}

func (r *Runner) failPending(e *Entry, status, msg string) {
	for i := range e.Requests {
		if e.Requests[i].State == Pending {
			e.Requests[i].State, e.Requests[i].Status, e.Requests[i].Error = Failed, status, msg
		}
	}
}

// toDead moves e to dead/ and calls OnDead. If the move fails the entry
// stays active and is tried again after max_backoff.
func (r *Runner) toDead(e *Entry, reason string, log *zap.Logger) {
	q := r.q
	d := e.clone()
	d.Dead, d.DeadReason, d.DeadAt = true, reason, q.now()
	if err := q.move(d); err != nil {
		log.Error("queue: entry not moved to dead", zap.String("reason", reason), zap.Error(err))
		_, maxBackoff, _ := r.timing()
		e.NextAttempt = q.now().Add(maxBackoff)
		q.update(e)
		q.release(e.ID)
		return
	}
	q.release(e.ID)
	q.m.dead.WithLabelValues(e.Tenant, reason).Inc()
	log.Warn("queue message dead", zap.String("reason", reason), zap.String("sender", e.Sender),
		zap.Int("attempts", e.Attempts), zap.String("last_error", e.LastError))
	if r.o.OnDead != nil {
		r.o.OnDead(r.ctx, d)
	}
}

// backoff is min_backoff doubled per earlier attempt, plus up to half of
// itself at random (so a backlog does not retry in lockstep), within
// [min_backoff, max_backoff].
func (r *Runner) backoff(attempts int) time.Duration {
	minB, maxB, _ := r.timing()
	d := minB
	for i := 1; i < attempts && d < maxB; i++ {
		d *= 2
	}
	d += time.Duration(r.o.Jitter() * float64(d) / 2)
	return min(max(d, minB), maxB)
}

// done reports whether every request of e was accepted by SES.
func (e *Entry) done() bool {
	for _, r := range e.Requests {
		if r.State != Accepted {
			return false
		}
	}
	return true
}
