package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/sesrelay/sesrelay/config"
	"github.com/sesrelay/sesrelay/relay"
	"github.com/sesrelay/sesrelay/relay/ses"
)

// The admin listener (admin.address) serves operators and probes, never
// SMTP clients: /metrics, /healthz, /readyz and, with admin.pprof,
// /debug/pprof/. It shows no configuration and no error text: a failing
// readiness check names the check, the log has the cause. docs/operations.md
// describes every endpoint and metric.

const (
	// sesCheckEvery bounds GetAccount calls made for /readyz: probes come
	// every few seconds from every replica and GetAccount is rate limited
	// per account. A result, success or failure, is kept this long.
	sesCheckEvery = 30 * time.Second
	// sesCheckTimeout stays below the chart's readiness probe timeout
	// (3 s), so a slow SES answers "not ready" rather than a probe timeout.
	sesCheckTimeout = 2 * time.Second
	// adminShutdownTimeout bounds the wait for scrapes in progress once the
	// SMTP side has drained.
	adminShutdownTimeout = 5 * time.Second
)

// newRegistry returns a registry holding the relay's collectors, the Go
// runtime and process collectors and sesrelay_build_info, and the relay
// metrics to pass in relay.Options.Metrics. Each daemon has its own
// registry (not prometheus.DefaultRegisterer), so tests can run several.
func newRegistry() (*prometheus.Registry, *relay.Metrics) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := relay.NewMetrics(reg)
	m.SetBuildInfo(version, runtime.Version())
	return reg, m
}

// readiness answers /readyz: the configuration is loaded, every SMTP
// listener is serving and the relay is not draining, and, when ses is
// set, a recent SES GetAccount call succeeded.
type readiness struct {
	srv *relay.Server
	ses *sesCheck // nil: SES reachability is not part of readiness
	// regions is the health of ses.regions (nil: not the SES sender).
	// Readiness needs one region up; every /readyz answer lists them.
	regions func() []ses.RegionStatus
	// queue, once attached, must be writable (queueadmin.go).
	queue atomic.Pointer[daemonQueue]
}

// failing returns the names of the checks that fail (none: ready). The
// names are fixed words: the causes go to the log, not to the prober.
func (r *readiness) failing(ctx context.Context) []string {
	if r.srv == nil || r.srv.Config() == nil {
		return []string{"config: not loaded"}
	}
	if !r.srv.Ready() {
		return []string{"smtp: listeners not serving (starting or draining)"}
	}
	if r.ses != nil && r.ses.result(ctx) != nil {
		return []string{"ses: GetAccount failed"}
	}
	if r.regions != nil {
		if rs := r.regions(); len(rs) > 0 && !slices.ContainsFunc(rs, func(s ses.RegionStatus) bool { return s.Up }) {
			return []string{"ses: every region of ses.regions is down"}
		}
	}
	if f := r.queueFailing(); f != "" {
		return []string{f}
	}
	return nil
}

// detail lists the health of each region of ses.regions, one line each.
func (r *readiness) detail() []string {
	lines := r.queueDetail()
	if r.regions == nil {
		return lines
	}
	for _, s := range r.regions() {
		state := "up"
		if !s.Up {
			state = "down"
		}
		lines = append(lines, "ses region "+s.Region+": "+state)
	}
	return lines
}

// sesCheck caches the outcome of probe for every: at most one call per
// period whatever the probe rate, and concurrent probes wait for the call
// in progress instead of making their own.
type sesCheck struct {
	probe   func(context.Context) error
	now     func() time.Time
	every   time.Duration
	timeout time.Duration
	log     *zap.Logger

	mu      sync.Mutex
	checked time.Time // zero: never
	err     error
}

func newSESCheck(probe func(context.Context) error, log *zap.Logger) *sesCheck {
	return &sesCheck{probe: probe, now: time.Now, every: sesCheckEvery, timeout: sesCheckTimeout, log: log}
}

// result returns the cached outcome, calling probe first when the cache
// is older than every. The call runs within timeout even if the prober
// hangs up, so its outcome is cached either way.
func (c *sesCheck) result(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.checked.IsZero() && c.now().Sub(c.checked) < c.every {
		return c.err
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
	defer cancel()
	err := c.probe(pctx)
	if err != nil && c.err == nil {
		c.log.Warn("readiness: SES GetAccount failed, not ready", zap.Error(err))
	} else if err == nil && c.err != nil {
		c.log.Info("readiness: SES GetAccount works again")
	}
	c.checked, c.err = c.now(), err
	return err
}

// sesProbe returns a GetAccount call through s. GetAccount needs
// ses:GetAccount, which docs/deploy.md's IAM policy grants.
func sesProbe(s *ses.Sender) func(context.Context) error {
	return func(ctx context.Context) error {
		_, err := s.Client("").GetAccount(ctx, &sesv2.GetAccountInput{})
		return err
	}
}

// adminHandler routes the admin endpoints. pprof adds /debug/pprof/.
func adminHandler(reg *prometheus.Registry, ready *readiness, pprofOn bool, log *zap.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		Registry:            reg, // promhttp_metric_handler_errors_total
		ErrorLog:            zap.NewStdLog(log),
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		lines := []string{"ready"}
		if failing := ready.failing(r.Context()); len(failing) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			lines = failing
		}
		fmt.Fprintln(w, strings.Join(append(lines, ready.detail()...), "\n"))
	})
	if pprofOn {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// adminServer is the running admin listener. A nil *adminServer (admin
// disabled) is valid: Addr returns nil and shutdown does nothing.
type adminServer struct {
	http *http.Server
	ln   net.Listener
	done chan struct{}
	log  *zap.Logger
	// ready and mux let the queue attach its check and endpoints.
	ready *readiness
	mux   *http.ServeMux
}

// startAdmin binds admin.address and serves the admin endpoints in the
// background; it returns nil, nil when admin.address is empty. srv is the
// relay /readyz reports on, sesSender the SES sender (nil with another
// delivery.sender) whose GetAccount admin.ready_checks_ses calls.
func startAdmin(cfg *config.Config, reg *prometheus.Registry, srv *relay.Server, sesSender *ses.Sender, log *zap.Logger) (*adminServer, error) {
	ac := cfg.Admin
	if ac.Address == "" {
		return nil, nil
	}
	log = log.With(zap.String("component", "admin"))
	ready := &readiness{srv: srv}
	if sesSender != nil {
		ready.regions = sesSender.Regions
	}
	if ac.ReadyChecksSES {
		if sesSender != nil {
			ready.ses = newSESCheck(sesProbe(sesSender), log)
		} else {
			log.Warn("admin.ready_checks_ses is ignored: delivery.sender is not ses", zap.String("sender", cfg.Delivery.Sender))
		}
	}
	ln, err := net.Listen("tcp", ac.Address)
	if err != nil {
		return nil, fmt.Errorf("admin.address: %w", err)
	}
	h := adminHandler(reg, ready, ac.PProf, log)
	mux, _ := h.(*http.ServeMux)
	a := &adminServer{
		ready: ready,
		mux:   mux,
		http: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			// Above pprof's default 30 s CPU profile, which refuses to run
			// past the server's WriteTimeout.
			WriteTimeout:   65 * time.Second,
			IdleTimeout:    2 * time.Minute,
			MaxHeaderBytes: 16 << 10,
			ErrorLog:       zap.NewStdLog(log),
		},
		ln:   ln,
		done: make(chan struct{}),
		log:  log,
	}
	go func() {
		defer close(a.done)
		if err := a.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin listener stopped", zap.Error(err))
		}
	}()
	log.Info("admin listening", zap.String("address", ln.Addr().String()), zap.Bool("pprof", ac.PProf),
		zap.Bool("ready_checks_ses", ready.ses != nil))
	return a, nil
}

// Addr is the bound admin address (nil: admin disabled).
func (a *adminServer) Addr() net.Addr {
	if a == nil {
		return nil
	}
	return a.ln.Addr()
}

// shutdown stops the admin listener: requests in progress get up to
// adminShutdownTimeout, then their connections are closed.
func (a *adminServer) shutdown() {
	if a == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), adminShutdownTimeout)
	defer cancel()
	if err := a.http.Shutdown(ctx); err != nil {
		a.log.Warn("admin listener: closing requests still in progress", zap.Error(err))
		_ = a.http.Close()
	}
	<-a.done
}

// AdminAddr is the bound admin listener address (nil: admin.address is
// empty). With admin.address 127.0.0.1:0 it is how a test finds the port.
func (d *daemon) AdminAddr() net.Addr { return d.admin.Addr() }

// recordReloads records the configuration the daemon started with and
// makes every later reload, whoever triggers it (SIGHUP or the file
// watcher, both through reloadAs), update the reload metrics. Call it once
// from newDaemon, before run.
func (d *daemon) recordReloads() {
	d.metrics.ConfigLoaded(d.ConfigHash(), time.Now())
	next := d.onReload
	d.onReload = func(ok bool, hash string) {
		d.metrics.Reloaded(hash, ok, time.Now())
		if next != nil {
			next(ok, hash)
		}
	}
}
