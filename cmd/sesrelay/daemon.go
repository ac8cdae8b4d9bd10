package main

import (
	"context"
	"os"

	"go.uber.org/zap"

	"github.com/sesrelay/sesrelay/config"
	"github.com/sesrelay/sesrelay/relay"
)

// daemon is the running relay: the SMTP server and its reload loop.
type daemon struct {
	path string
	log  *zap.Logger
	srv  *relay.Server

	// metrics are the relay's collectors (admin.go); admin is the admin
	// listener, nil when admin.address is empty.
	metrics *relay.Metrics
	admin   *adminServer

	// onReload, when set, is told the outcome of every reload and the
	// content hash of the configuration it tried (reload.go).
	onReload func(ok bool, hash string)
	rs       reloadState
}

func newDaemon(ctx context.Context, cfg *config.Config, path string, log *zap.Logger) (*daemon, error) {
	sender, err := buildSender(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	return startDaemon(ctx, cfg, path, log, sender)
}

// startDaemon builds the relay around sender (tests pass one pointed at a
// local SES stand-in), starts the admin listener, then binds the SMTP
// listeners: /readyz answers 503 until run serves them.
func startDaemon(ctx context.Context, cfg *config.Config, path string, log *zap.Logger, sender relay.Sender) (*daemon, error) {
	reg, metrics := newRegistry()
	srv, err := relay.NewServer(cfg, relay.Options{Sender: sender, Logger: log, Metrics: metrics})
	if err != nil {
		return nil, err
	}
	adm, err := startAdmin(cfg, reg, srv, sender, log)
	if err != nil {
		return nil, err
	}
	if err := srv.Listen(); err != nil {
		adm.shutdown()
		return nil, err
	}
	d := &daemon{path: path, log: log, srv: srv, metrics: metrics, admin: adm}
	d.initReload(ctx, cfg, sender)
	d.recordReloads()
	return d, nil
}

func (d *daemon) run(ctx context.Context, hup <-chan os.Signal) error {
	d.startReloader(ctx, hup)
	// The admin listener outlives the SMTP drain: /readyz says 503 and
	// /metrics stays scrapable until the last session ends.
	defer d.admin.shutdown()
	return d.srv.Serve(ctx)
}
