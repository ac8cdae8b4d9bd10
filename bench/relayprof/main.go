// Command relayprof runs the relay exactly as "sesrelay serve" builds it
// (config.Load → logger → SES sender → relay.NewServer → Listen → Serve)
// under the Go CPU profiler, because the relay binary has no profiling
// endpoint yet. It writes the profile when it receives SIGTERM or SIGINT.
//
//	go build -o /tmp/relayprof ./bench/relayprof
//	/tmp/relayprof --config relay.yaml --cpuprofile cpu.pprof
//
// Keep it in step with cmd/sesrelay/serve.go and daemon.go: it measures
// what they build, nothing else (no reload loop, no metrics).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/sesrelay/sesrelay/config"
	"github.com/sesrelay/sesrelay/relay"
	"github.com/sesrelay/sesrelay/relay/ses"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "relayprof:", err)
		os.Exit(1)
	}
}

func run() error {
	path := flag.String("config", "", "relay configuration file")
	cpuOut := flag.String("cpuprofile", "", "write a CPU profile here")
	memOut := flag.String("memprofile", "", "write a heap profile (allocations since start) here at exit")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	// As cmd/sesrelay newLogger does for format json.
	lvl, err := zapcore.ParseLevel(cfg.Log.Level)
	if err != nil {
		return err
	}
	ec := zap.NewProductionEncoderConfig()
	ec.TimeKey = "ts"
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(ec), zapcore.AddSync(os.Stderr), lvl))
	defer func() { _ = log.Sync() }()

	if cfg.Delivery.Sender != config.SenderSES {
		return errors.New("relayprof profiles the SES sender only")
	}
	sender, err := ses.New(ctx, ses.OptionsFromConfig(&cfg.SES))
	if err != nil {
		return err
	}
	srv, err := relay.NewServer(cfg, relay.Options{Sender: sender, Logger: log})
	if err != nil {
		return err
	}
	if err := srv.Listen(); err != nil {
		return err
	}
	if *cpuOut != "" {
		f, err := os.Create(*cpuOut)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}
	err = srv.Serve(ctx)
	if *memOut != "" {
		f, ferr := os.Create(*memOut)
		if ferr != nil {
			return ferr
		}
		runtime.GC()
		werr := pprof.Lookup("allocs").WriteTo(f, 0)
		f.Close()
		if werr != nil {
			return werr
		}
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
