package main

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sesrelay/sesrelay/config"
	"github.com/sesrelay/sesrelay/queue"
	"github.com/sesrelay/sesrelay/relay"
)

// The store-and-forward queue in the daemon (docs/queue.md). With
// queue.dir set the daemon opens the queue at start (taking its lock: a
// second relay on the same directory refuses to start), hands it to the
// relay for the fallback and queue delivery modes and runs its delivery
// workers, which wait on the same rate limiter as direct sends and send
// through the sender below it. On shutdown the workers stop taking
// entries at once and get server.shutdown_timeout to finish the SES calls
// in flight; what is left stays on disk.
//
// Reload: the limits (queue.max_bytes, queue.max_messages,
// tenants[].queue), the timings (queue.min_backoff, queue.max_backoff,
// queue.max_age), queue.bounce_from and the delivery modes take effect at
// once; queue.dir, queue.workers and queue.sync need a restart (config.RestartKeys).

// daemonQueue is the daemon's queue and its workers (nil without
// queue.dir).
type daemonQueue struct {
	q      *queue.Queue
	runner *queue.Runner
	log    *zap.Logger
}

// queueLimits are the limits of cfg: global and per tenant.
func queueLimits(cfg *config.Config) (queue.Limits, map[string]queue.Limits) {
	tenants := map[string]queue.Limits{}
	for i := range cfg.Tenants {
		t := &cfg.Tenants[i]
		if t.Queue.MaxBytes > 0 || t.Queue.MaxMessages > 0 {
			tenants[t.Name] = queue.Limits{MaxBytes: t.Queue.MaxBytes, MaxMessages: t.Queue.MaxMessages}
		}
	}
	return queue.Limits{MaxBytes: cfg.Queue.MaxBytes, MaxMessages: cfg.Queue.MaxMessages}, tenants
}

// openQueue opens queue.dir (nil, nil when it is empty).
func openQueue(cfg *config.Config, reg prometheus.Registerer, log *zap.Logger) (*queue.Queue, error) {
	if cfg.Queue.Dir == "" {
		return nil, nil
	}
	global, tenants := queueLimits(cfg)
	q, err := queue.Open(cfg.Queue.Dir, queue.Options{
		Limits: global, TenantLimits: tenants, Registerer: reg, Sync: queue.SyncMode(cfg.Queue.Sync),
		Logger: log.With(zap.String("component", "queue")),
	})
	if err != nil {
		return nil, err
	}
	msgs, bytes := q.Usage("")
	log.Info("queue opened", zap.String("dir", cfg.Queue.Dir), zap.Int("messages", msgs), zap.Int64("bytes", bytes))
	return q, nil
}

// newQueueRunner builds the workers of q: they send through the sender
// below the rate limiter after waiting on the limiter themselves.
func newQueueRunner(cfg *config.Config, q *queue.Queue, srv *relay.Server, limiter *relay.RateLimiter) *queue.Runner {
	return q.NewRunner(queue.RunnerOptions{
		Deliverer:  srv.QueueDeliverer(limiter.Next()),
		Classify:   relay.QueueClassify,
		Limiter:    limiter,
		Workers:    cfg.Queue.Workers,
		MinBackoff: cfg.Queue.MinBackoff,
		MaxBackoff: cfg.Queue.MaxBackoff,
		MaxAge:     cfg.Queue.MaxAge,
		OnDead:     srv.QueueDSN(q),
	})
}

// reload applies the reloadable queue keys.
func (dq *daemonQueue) reload(cfg *config.Config) {
	if dq == nil {
		return
	}
	global, tenants := queueLimits(cfg)
	dq.q.SetLimits(global, tenants)
	dq.runner.SetTiming(cfg.Queue.MinBackoff, cfg.Queue.MaxBackoff, cfg.Queue.MaxAge)
}

// stop stops the workers within timeout and closes the queue.
func (dq *daemonQueue) stop(timeout time.Duration) {
	if dq == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := dq.runner.Stop(ctx); err != nil {
		dq.log.Warn("queue deliveries cancelled at the shutdown deadline; they stay queued", zap.Error(err))
	}
}

// close releases the queue directory (after the SMTP side drained: a
// fallback session may still queue during the drain).
func (dq *daemonQueue) close() {
	if dq == nil {
		return
	}
	msgs, _ := dq.q.Usage("")
	if err := dq.q.Close(); err != nil {
		dq.log.Warn("queue close", zap.Error(err))
	}
	dq.log.Info("queue closed", zap.Int("messages_left", msgs))
}

func newDaemonQueue(cfg *config.Config, q *queue.Queue, srv *relay.Server, limiter *relay.RateLimiter, log *zap.Logger) *daemonQueue {
	if q == nil {
		return nil
	}
	return &daemonQueue{q: q, runner: newQueueRunner(cfg, q, srv, limiter), log: log.With(zap.String("component", "queue"))}
}

func closeQueue(q *queue.Queue) {
	if q != nil {
		q.Close()
	}
}

// subscribeQueue makes reloads apply the reloadable queue keys.
func (d *daemon) subscribeQueue() {
	if d.queue == nil {
		return
	}
	d.rs.subs = append(d.rs.subs, subscriber{"queue", func(_ context.Context, cfg *config.Config) error {
		d.queue.reload(cfg)
		return nil
	}})
}

// serve runs the workers while serve (the SMTP side) runs: when ctx ends
// the workers stop taking entries and get the shutdown timeout for the
// calls in flight, in parallel with the SMTP drain; the queue is closed
// once both are done.
func (dq *daemonQueue) serve(ctx context.Context, serve func() error, timeout func() time.Duration) error {
	if dq == nil {
		return serve()
	}
	dq.runner.Start()
	sctx, cancel := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-sctx.Done()
		dq.stop(timeout())
	}()
	err := serve()
	cancel()
	<-stopped
	dq.close()
	return err
}
