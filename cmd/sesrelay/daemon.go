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

	// onReload, when set, is told the outcome of every reload and the
	// content hash of the configuration it tried (reload.go).
	onReload func(ok bool, hash string)
	rs       reloadState
}

func newDaemon(ctx context.Context, cfg *config.Config, path string, log *zap.Logger) (*daemon, error) {
	sender, err := buildSender(ctx, cfg)
	if err != nil {
		return nil, err
	}
	srv, err := relay.NewServer(cfg, relay.Options{Sender: sender, Logger: log})
	if err != nil {
		return nil, err
	}
	if err := srv.Listen(); err != nil {
		return nil, err
	}
	d := &daemon{path: path, log: log, srv: srv}
	d.initReload(ctx, cfg, sender)
	return d, nil
}

func (d *daemon) run(ctx context.Context, hup <-chan os.Signal) error {
	d.startReloader(ctx, hup)
	return d.srv.Serve(ctx)
}
