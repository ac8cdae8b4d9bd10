package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/sesrelay/sesrelay/config"
	"github.com/sesrelay/sesrelay/relay"
	"github.com/sesrelay/sesrelay/relay/ses"
)

func newLogger(c config.Log, w io.Writer) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(c.Level)
	if err != nil {
		return nil, err
	}
	ec := zap.NewProductionEncoderConfig()
	ec.TimeKey = "ts"
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	if c.Format == "console" {
		ec.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(ec)
	} else {
		enc = zapcore.NewJSONEncoder(ec)
	}
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(w), lvl)), nil
}

// deliveryParts is the sending side, built once at start: the SES sender
// (nil unless delivery.sender is ses) and the rate limiter in front of the
// base sender, which is what the relay sends through. Reload and the admin
// listener use the parts as they are, never by unwrapping the sender.
type deliveryParts struct {
	ses     *ses.Sender
	limiter *relay.RateLimiter
}

// newDeliveryParts puts the rate limiter in front of base; s is the SES
// sender when base is (or sends through) one, else nil. The daemon sets
// the limits at start and on every reload (applyLimits).
func newDeliveryParts(base relay.Sender, s *ses.Sender) *deliveryParts {
	return &deliveryParts{ses: s, limiter: relay.RateLimited(base, relay.RateLimits{})}
}

// sesDelivery is the parts around the SES sender s.
func sesDelivery(s *ses.Sender) *deliveryParts { return newDeliveryParts(s, s) }

// sender is what the relay sends through.
func (p *deliveryParts) sender() relay.Sender { return p.limiter }

// sendQuota is what ses.max_send_rate: auto reads; nil without SES.
func (p *deliveryParts) sendQuota() relay.SendQuota {
	if p.ses == nil {
		return nil
	}
	return p.ses
}

// buildDelivery builds the delivery.sender the configuration names. log
// receives SES region health changes.
func buildDelivery(ctx context.Context, cfg *config.Config, log *zap.Logger) (*deliveryParts, error) {
	switch cfg.Delivery.Sender {
	case config.SenderFile:
		return newDeliveryParts(&relay.FileSender{Dir: cfg.Delivery.FileDir}, nil), nil
	case config.SenderSES:
		opts := ses.OptionsFromConfig(&cfg.SES)
		opts.Logger = log.With(zap.String("component", "ses"))
		s, err := ses.New(ctx, opts)
		if err != nil {
			return nil, err
		}
		return sesDelivery(s), nil
	}
	return nil, fmt.Errorf("delivery.sender: unknown sender %q", cfg.Delivery.Sender)
}

func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer, hup <-chan os.Signal) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file (default: the embedded development configuration)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintf(stderr, "sesrelay: %v\n", err)
		return 1
	}
	log, err := newLogger(cfg.Log, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "sesrelay: log.level: %v\n", err)
		return 1
	}
	defer func() { _ = log.Sync() }()
	if *path == "" {
		log.Warn("no --config given: running the embedded development configuration (file sender, self-signed TLS, demo tenant)")
	}
	log.Info("starting", zap.String("version", version), zap.String("config", *path), zap.Any("effective_config", cfg.Redacted()))
	for _, w := range cfg.Warnings() { // what `sesrelay check` warns about
		log.Warn("configuration warning", zap.String("warning", w))
	}
	setMemoryLimit(log)
	d, err := newDaemon(ctx, cfg, *path, log)
	if err != nil {
		log.Error("startup failed", zap.Error(err))
		return 1
	}
	if err := d.run(ctx, hup); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("stopped with error", zap.Error(err))
		return 1
	}
	log.Info("stopped")
	return 0
}

// setMemoryLimit sets the Go runtime's soft memory limit to 90% of the
// container's cgroup memory limit, so that the garbage collector works
// harder before the kernel's OOM killer would. GOMEMLIMIT, when set, wins;
// AUTOMEMLIMIT=off turns it off, AUTOMEMLIMIT=0.8 changes the ratio. The
// relay's in-flight budget (server.max_inflight_bytes) is derived after
// it, from the same limit.
func setMemoryLimit(log *zap.Logger) {
	limit, err := memlimit.Set(memlimit.WithProvider(memlimit.FromCgroup))
	switch {
	case err != nil:
		log.Warn("memory limit not set", zap.Error(err))
	case limit > 0 && limit < math.MaxInt64:
		log.Info("memory limit", zap.Int64("gomemlimit", limit))
	}
}
