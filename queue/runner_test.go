package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeSES records Deliver calls; Err decides each call's outcome.
type fakeSES struct {
	mu    sync.Mutex
	Calls []string // "id/req"
	Err   func(e *Entry, req int) error
	n     int
}

func (f *fakeSES) Deliver(ctx context.Context, e *Entry, req int) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls = append(f.Calls, fmt.Sprintf("%s/%d", e.ID, req))
	if e.Message(req) == nil {
		return "", errors.New("no data")
	}
	if f.Err != nil {
		if err := f.Err(e, req); err != nil {
			return "", err
		}
	}
	f.n++
	return fmt.Sprintf("ses-%d", f.n), nil
}

func (f *fakeSES) calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.Calls...)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func startRunner(t *testing.T, q *Queue, o RunnerOptions) *Runner {
	t.Helper()
	r := q.NewRunner(o)
	r.Start()
	t.Cleanup(func() { r.Stop(context.Background()) })
	return r
}

func TestRunnerDeliversEveryRequestOnce(t *testing.T) {
	dir := t.TempDir()
	q := openTest(t, dir, Options{})
	ses := &fakeSES{}
	var limited []string
	var mu sync.Mutex
	a, _ := q.Enqueue(testMessage("acme", "a@x.example", "b@x.example"))
	b, _ := q.Enqueue(testMessage("other", "c@x.example"))
	startRunner(t, q, RunnerOptions{Deliverer: ses, Workers: 2, Limiter: LimiterFunc(func(ctx context.Context, tenant string, n int) error {
		mu.Lock()
		limited = append(limited, fmt.Sprint(tenant, n))
		mu.Unlock()
		return nil
	})})
	waitFor(t, "an empty queue", func() bool { n, _ := q.Usage(""); return n == 0 })
	got := strings.Join(ses.calls(), " ")
	for _, want := range []string{a.ID + "/0", a.ID + "/1", b.ID + "/0"} {
		if strings.Count(got, want) != 1 {
			t.Errorf("calls %s: want %s once", got, want)
		}
	}
	if len(ses.calls()) != 3 || len(limited) != 3 {
		t.Errorf("calls %v, limiter %v", ses.calls(), limited)
	}
	if got := testutil.ToFloat64(q.m.deliveries.WithLabelValues("acme", "accepted")); got != 2 {
		t.Errorf("deliveries{acme,accepted} = %v", got)
	}
	if len(q.List("")) != 0 {
		t.Error("delivered entries still listed")
	}
	// a had a meta file (request 0 accepted before request 1): gone too.
	if names := dirNames(t, dir+"/"+activeDir); len(names) != 0 {
		t.Errorf("active/ after delivery: %v", names)
	}
}

// TestAcceptedRequestNotResentAfterRestart: request 0 is accepted, request
// 1 fails transiently; after a restart only request 1 is sent.
func TestAcceptedRequestNotResentAfterRestart(t *testing.T) {
	dir := t.TempDir()
	q := openTest(t, dir, Options{})
	e, _ := q.Enqueue(testMessage("acme", "a@x.example", "b@x.example"))
	ses := &fakeSES{Err: func(e *Entry, req int) error {
		if req == 1 {
			return errors.New("throttled")
		}
		return nil
	}}
	r := startRunner(t, q, RunnerOptions{Deliverer: ses, MinBackoff: time.Hour})
	waitFor(t, "an attempt", func() bool { return len(ses.calls()) == 2 })
	waitFor(t, "the retry state", func() bool {
		l := q.List("")
		return len(l) == 1 && l[0].Attempts == 1
	})
	r.Stop(context.Background())
	s, _ := q.Show(e.ID)
	if s.Requests[0].State != Accepted || s.Requests[0].SESMessageID != "ses-1" || s.Requests[1].State != Pending ||
		s.LastError != "throttled" || s.NextAttempt.Sub(s.LastAttempt) < time.Hour {
		t.Fatalf("after a transient failure: %+v", s)
	}
	q.Close()

	q2 := openTest(t, dir, Options{})
	q2.Retry(e.ID)
	ses2 := &fakeSES{}
	startRunner(t, q2, RunnerOptions{Deliverer: ses2})
	waitFor(t, "an empty queue", func() bool { n, _ := q2.Usage(""); return n == 0 })
	if got := ses2.calls(); len(got) != 1 || got[0] != e.ID+"/1" {
		t.Errorf("after restart: calls %v, want only request 1", got)
	}
}

func TestPermanentFailureGoesDeadWithDSN(t *testing.T) {
	dir := t.TempDir()
	q := openTest(t, dir, Options{})
	e, _ := q.Enqueue(testMessage("acme", "a@x.example", "b@x.example"))
	ses := &fakeSES{Err: func(e *Entry, req int) error {
		if req == 0 {
			return Permanent("5.6.0", errors.New("MessageRejected: bad content"))
		}
		return nil
	}}
	var dead []*Entry
	var mu sync.Mutex
	startRunner(t, q, RunnerOptions{Deliverer: ses, OnDead: func(ctx context.Context, d *Entry) {
		mu.Lock()
		dead = append(dead, d)
		mu.Unlock()
	}})
	waitFor(t, "OnDead", func() bool { mu.Lock(); defer mu.Unlock(); return len(dead) == 1 })
	d := dead[0]
	if !d.Dead || d.DeadReason != DeadRefused || d.Requests[0].State != Failed || d.Requests[0].Status != "5.6.0" ||
		d.Requests[1].State != Accepted || d.Body() == nil {
		t.Fatalf("dead entry: %+v", d)
	}
	if len(ses.calls()) != 2 {
		t.Errorf("calls %v: the other request must still be tried", ses.calls())
	}
	dsn, err := BuildDSN(d, DSNOptions{ReportingMTA: "relay.example", From: "postmaster@example.com"})
	if err != nil || !strings.Contains(string(dsn), "Final-Recipient: rfc822; a@x.example") || strings.Contains(string(dsn), "rfc822; b@x.example") {
		t.Errorf("DSN %v:\n%s", err, dsn)
	}
	l := q.List("")
	if len(l) != 1 || !l[0].Dead || l[0].ID != e.ID {
		t.Errorf("List = %+v", l)
	}
	if got := testutil.ToFloat64(q.m.dead.WithLabelValues("acme", DeadRefused)); got != 1 {
		t.Errorf("dead{refused} = %v", got)
	}
	if got := dirNames(t, dir+"/"+activeDir); len(got) != 0 {
		t.Errorf("active/ = %v", got)
	}
}

func TestExpiryAfterMaxAge(t *testing.T) {
	clock := &fakeClock{time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	var mu sync.Mutex
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock.t }
	q := openTest(t, t.TempDir(), Options{Now: now})
	q.Enqueue(testMessage("acme", "a@x.example"))
	mu.Lock()
	clock.Advance(DefaultMaxAge)
	mu.Unlock()
	dead := make(chan *Entry, 1)
	startRunner(t, q, RunnerOptions{
		Deliverer: &fakeSES{Err: func(*Entry, int) error { return errors.New("InternalServiceError") }},
		OnDead:    func(ctx context.Context, e *Entry) { dead <- e },
	})
	d := <-dead
	if d.DeadReason != DeadExpired || d.Requests[0].Status != StatusExpired || !strings.Contains(d.Requests[0].Error, "InternalServiceError") {
		t.Errorf("expired entry: %+v", d)
	}
	if got := testutil.ToFloat64(q.m.expired.WithLabelValues("acme")); got != 1 {
		t.Errorf("expired metric %v", got)
	}
}

func TestBackoff(t *testing.T) {
	for _, c := range []struct {
		attempts int
		jitter   float64
		want     time.Duration
	}{
		{1, 0, 300 * time.Second},
		{2, 0, 600 * time.Second},
		{3, 0, 1200 * time.Second},
		{4, 0, 2400 * time.Second},
		{5, 0, 4000 * time.Second},
		{50, 0, 4000 * time.Second},
		{1, 0.5, 375 * time.Second},
		{3, 0.999, 1799400 * time.Millisecond},
		{4, 0.999, 3598800 * time.Millisecond},
		{5, 0.5, 4000 * time.Second},
	} {
		r := (&Queue{}).NewRunner(RunnerOptions{Jitter: func() float64 { return c.jitter }})
		if got := r.backoff(c.attempts); got != c.want {
			t.Errorf("backoff(%d, jitter %v) = %v, want %v", c.attempts, c.jitter, got, c.want)
		}
	}
}

// TestStopCancelsAfterTimeout: a delivery stuck past Stop's deadline is
// cancelled and its entry stays queued, unchanged, for the next start.
func TestStopCancelsAfterTimeout(t *testing.T) {
	dir := t.TempDir()
	q := openTest(t, dir, Options{})
	e, _ := q.Enqueue(testMessage("acme", "a@x.example"))
	started := make(chan struct{})
	r := q.NewRunner(RunnerOptions{Deliverer: DelivererFunc(func(ctx context.Context, e *Entry, req int) (string, error) {
		close(started)
		<-ctx.Done()
		return "", ctx.Err()
	})})
	r.Start()
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := r.Stop(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Stop: %v", err)
	}
	q.Close()
	q2 := openTest(t, dir, Options{})
	s, err := q2.Show(e.ID)
	if err != nil || s.Requests[0].State != Pending || s.Attempts != 0 {
		t.Errorf("after a cancelled delivery: %+v, %v", s, err)
	}
}

// TestStopWaitsForInFlight: Stop lets a running delivery finish.
func TestStopWaitsForInFlight(t *testing.T) {
	q := openTest(t, t.TempDir(), Options{})
	q.Enqueue(testMessage("acme", "a@x.example"))
	started := make(chan struct{})
	r := q.NewRunner(RunnerOptions{Deliverer: DelivererFunc(func(ctx context.Context, e *Entry, req int) (string, error) {
		close(started)
		time.Sleep(50 * time.Millisecond)
		return "ses-1", nil
	})})
	r.Start()
	<-started
	if err := r.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n, _ := q.Usage(""); n != 0 {
		t.Error("the in-flight delivery did not complete")
	}
}

func TestRetryWakesRunner(t *testing.T) {
	q := openTest(t, t.TempDir(), Options{})
	e, _ := q.Enqueue(testMessage("acme", "a@x.example"))
	fail := true
	var mu sync.Mutex
	ses := &fakeSES{Err: func(*Entry, int) error {
		mu.Lock()
		defer mu.Unlock()
		if fail {
			return errors.New("throttled")
		}
		return nil
	}}
	startRunner(t, q, RunnerOptions{Deliverer: ses, MinBackoff: time.Hour})
	waitFor(t, "a failed attempt", func() bool { l := q.List(""); return len(l) == 1 && l[0].Attempts == 1 })
	mu.Lock()
	fail = false
	mu.Unlock()
	if err := q.Retry(e.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "delivery after Retry", func() bool { n, _ := q.Usage(""); return n == 0 })
	if got := testutil.ToFloat64(q.m.retries.WithLabelValues("acme")); got != 1 {
		t.Errorf("retries metric %v", got)
	}
}

func TestDefaultClassify(t *testing.T) {
	if p, s := DefaultClassify(fmt.Errorf("wrapped: %w", Permanent("5.7.1", errors.New("denied")))); !p || s != "5.7.1" {
		t.Errorf("permanent: %v %q", p, s)
	}
	if p, s := DefaultClassify(errors.New("timeout")); p || s != "4.0.0" {
		t.Errorf("transient: %v %q", p, s)
	}
}

// TestRetryAfterShortBackoff: the dispatcher, asleep while the only entry
// was being delivered, wakes for the retry at min_backoff, not a minute
// later.
func TestRetryAfterShortBackoff(t *testing.T) {
	q := openTest(t, t.TempDir(), Options{})
	q.Enqueue(testMessage("acme", "a@x.example"))
	n := 0
	var mu sync.Mutex
	ses := &fakeSES{Err: func(*Entry, int) error {
		mu.Lock()
		defer mu.Unlock()
		if n++; n == 1 {
			return errors.New("throttled")
		}
		return nil
	}}
	startRunner(t, q, RunnerOptions{Deliverer: ses, MinBackoff: 20 * time.Millisecond})
	waitFor(t, "delivery on the second attempt", func() bool { c, _ := q.Usage(""); return c == 0 })
	if len(ses.calls()) != 2 {
		t.Errorf("calls %v", ses.calls())
	}
}

// TestRequeueWakesTheRunner: a requeued dead entry is delivered at once,
// round after round. (Requeue used to wake the dispatcher while it still
// held the entry; a dispatcher that looked in that short window skipped it
// and slept up to a minute. The window is too short for this test to hit
// it reliably: it failed that way only under -race in the cmd/sesrelay
// queue command test. This test guards the delivery promptness itself.)
func TestRequeueWakesTheRunner(t *testing.T) {
	q := openTest(t, t.TempDir(), Options{})
	var refuse atomic.Bool
	refuse.Store(true)
	ses := &fakeSES{Err: func(e *Entry, req int) error {
		if refuse.Load() {
			return Permanent("5.7.1", errors.New("refused"))
		}
		return nil
	}}
	startRunner(t, q, RunnerOptions{Deliverer: ses, Workers: 1})
	for i := range 30 {
		refuse.Store(true)
		e, err := q.Enqueue(testMessage("acme", "a@x.example"))
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the entry to die", func() bool {
			got, err := q.Show(e.ID)
			return err == nil && got.Dead
		})
		refuse.Store(false)
		if err := q.Requeue(e.ID); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(2 * time.Second)
		for {
			if _, err := q.Show(e.ID); errors.Is(err, ErrNotFound) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: the requeued entry was not delivered within 2s", i)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
}
