package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sesrelay/sesrelay/config"
	"github.com/sesrelay/sesrelay/relay"
	"github.com/sesrelay/sesrelay/suppression"
	"github.com/sesrelay/sesrelay/unsubscribe"
)

// suppressionParts are the suppression store (nil unless
// cfg.SuppressionOn) and the built-in unsubscribe endpoint (nil unless
// unsubscribe_server.address is set), both built once at start: their keys
// need a restart (config.RestartKeys).
type suppressionParts struct {
	store   suppression.Store
	unsub   *unsubscribe.Server
	handler *unsubscribe.Handler
	log     *zap.Logger

	cancel context.CancelFunc
	done   chan error
}

// openSuppression opens the store the configuration names, if any.
func openSuppression(ctx context.Context, cfg *config.Config, log *zap.Logger, reg prometheus.Registerer) (*suppressionParts, error) {
	p := &suppressionParts{log: log.With(zap.String("component", "unsubscribe"))}
	if !cfg.SuppressionOn() {
		return p, nil
	}
	s, err := suppression.Open(ctx, cfg.Suppression, suppression.Options{
		Logger: log.With(zap.String("component", "suppression")), Registerer: reg, DefaultRegion: cfg.SES.Region,
	})
	if err != nil {
		return nil, fmt.Errorf("suppression: %w", err)
	}
	p.store = s
	log.Info("suppression store open", zap.String("store", cfg.Suppression.Store))
	return p, nil
}

// relayStore is what the relay consults on the send path (nil: no
// suppression).
func (p *suppressionParts) relayStore() relay.Suppressions {
	if p.store == nil {
		return nil
	}
	return p.store
}

// listen binds the unsubscribe endpoint when unsubscribe_server.address is
// set. current returns the configuration in force, so a reload (tenants,
// secrets) applies to the endpoint at once.
func (p *suppressionParts) listen(cfg *config.Config, current func() *config.Config, reg prometheus.Registerer) error {
	sc := cfg.UnsubscribeServer
	if sc.Address == "" {
		return nil
	}
	if p.store == nil {
		return errors.New("unsubscribe_server.address: no suppression store to record unsubscribes in")
	}
	h, err := unsubscribe.NewHandler(sc, unsubscribe.Options{Config: current, Store: p.store, Logger: p.log, Registerer: reg})
	if err != nil {
		return err
	}
	s, err := unsubscribe.Listen(sc, h, p.log)
	if err != nil {
		h.Close()
		return fmt.Errorf("unsubscribe_server.address: %w", err)
	}
	p.unsub, p.handler = s, h
	return nil
}

// start serves the unsubscribe endpoint until stop.
func (p *suppressionParts) start(ctx context.Context) {
	if p.unsub == nil {
		return
	}
	ctx, p.cancel = context.WithCancel(ctx)
	p.done = make(chan error, 1)
	go func() { p.done <- p.unsub.Serve(ctx) }()
}

// stop drains the unsubscribe endpoint, then closes the store. Call it
// after the SMTP side drained: sessions in progress consult the store.
func (p *suppressionParts) stop() {
	if p.cancel != nil {
		p.cancel()
		if err := <-p.done; err != nil {
			p.log.Error("unsubscribe endpoint stopped with error", zap.Error(err))
		}
		p.cancel = nil
	} else if p.unsub != nil {
		_ = p.unsub.Close()
	}
	p.unsub = nil
	if p.handler != nil {
		p.handler.Close()
		p.handler = nil
	}
	if p.store != nil {
		if err := p.store.Close(); err != nil {
			p.log.Error("closing the suppression store", zap.Error(err))
		}
		p.store = nil
	}
}
