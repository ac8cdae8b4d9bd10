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
	return &daemon{path: path, log: log, srv: srv}, nil
}

func (d *daemon) reload() {
	cfg, err := config.Load(d.path)
	if err == nil {
		err = d.srv.Reload(cfg)
	}
	if err != nil {
		d.log.Error("reload failed, keeping the previous configuration", zap.Error(err))
		return
	}
	d.log.Info("configuration reloaded", zap.String("config", d.path))
}

func (d *daemon) run(ctx context.Context, hup <-chan os.Signal) error {
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				d.reload()
			}
		}
	}()
	return d.srv.Serve(ctx)
}
