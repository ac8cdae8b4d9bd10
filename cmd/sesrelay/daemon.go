package main

import (
	"context"
	"os"
	"time"

	"go.uber.org/zap"

	"github.com/sesrelay/sesrelay/config"
	"github.com/sesrelay/sesrelay/relay"
)

// daemon is the running relay: the SMTP server and its reload loop.
type daemon struct {
	path string
	log  *zap.Logger
	srv  *relay.Server
	// parts are the sending side (serve.go).
	parts *deliveryParts

	// metrics are the relay's collectors (admin.go); admin is the admin
	// listener, nil when admin.address is empty.
	metrics *relay.Metrics
	admin   *adminServer
	// sup is the suppression store and the unsubscribe endpoint (unsubscribe.go).
	sup *suppressionParts
	// queue is the store-and-forward queue, nil without queue.dir (queue.go).
	queue *daemonQueue

	// onReload, when set, is told the outcome of every reload and the
	// content hash of the configuration it tried (reload.go).
	onReload func(ok bool, hash string)
	rs       reloadState
}

func newDaemon(ctx context.Context, cfg *config.Config, path string, log *zap.Logger) (*daemon, error) {
	parts, err := buildDelivery(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	return startDaemon(ctx, cfg, path, log, parts)
}

// startDaemon builds the relay around the delivery parts (tests pass an
// SES sender pointed at a local SES stand-in), starts the admin listener,
// then binds the SMTP listeners: /readyz answers 503 until run serves them.
func startDaemon(ctx context.Context, cfg *config.Config, path string, log *zap.Logger, parts *deliveryParts) (*daemon, error) {
	reg, metrics := newRegistry()
	parts.limiter.SetMetrics(metrics)
	if parts.ses != nil {
		reg.MustRegister(parts.ses.Collector())
	}
	sup, err := openSuppression(ctx, cfg, log, reg)
	if err != nil {
		return nil, err
	}
	q, err := openQueue(cfg, reg, log)
	if err != nil {
		sup.stop()
		return nil, err
	}
	srv, err := relay.NewServer(cfg, relay.Options{Sender: parts.sender(), Logger: log, Metrics: metrics, Suppressions: sup.relayStore(), Queue: q})
	if err != nil {
		closeQueue(q)
		sup.stop()
		return nil, err
	}
	if err := sup.listen(cfg, srv.Config, reg); err != nil {
		closeQueue(q)
		sup.stop()
		return nil, err
	}
	dq := newDaemonQueue(cfg, q, srv, parts.limiter, log)
	adm, err := startAdmin(cfg, reg, srv, parts.ses, log)
	if err != nil {
		closeQueue(q)
		sup.stop()
		return nil, err
	}
	adm.attachQueue(dq)
	if err := srv.Listen(); err != nil {
		adm.shutdown()
		closeQueue(q)
		sup.stop()
		return nil, err
	}
	d := &daemon{path: path, log: log, srv: srv, parts: parts, metrics: metrics, admin: adm, sup: sup, queue: dq}
	d.initReload(ctx, cfg)
	d.subscribeQueue()
	d.recordReloads()
	return d, nil
}

func (d *daemon) run(ctx context.Context, hup <-chan os.Signal) error {
	d.startReloader(ctx, hup)
	// The admin listener outlives the SMTP drain: /readyz says 503 and
	// /metrics stays scrapable until the last session ends.
	defer d.admin.shutdown()
	// stop runs once Serve returned, after the SMTP drain: sessions in
	// progress consult the store.
	d.sup.start(ctx)
	defer d.sup.stop()
	return d.queue.serve(ctx, func() error { return d.srv.Serve(ctx) }, func() time.Duration { return d.srv.Config().Server.ShutdownTimeout })
}
