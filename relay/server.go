package relay

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
	"go.uber.org/zap"

	"github.com/sesrelay/sesrelay/config"
	"github.com/sesrelay/sesrelay/policy"
	"github.com/sesrelay/sesrelay/queue"
)

// Options are the parts of a Server that are not in the configuration.
type Options struct {
	Sender  Sender
	Logger  *zap.Logger
	Metrics *Metrics // nil: no metrics
	// Suppressions, when set, leaves recipients who unsubscribed from a
	// message's list out of its delivery (suppress.go).
	Suppressions Suppressions
	// Now and NewID are injected so tests can compare output byte for
	// byte. Defaults: time.Now and a random hex id.
	Now   func() time.Time
	NewID func() string
	// Queue, when set, takes the messages of tenants in fallback and
	// queue delivery modes (queued.go); nil: every tenant is direct.
	Queue *queue.Queue
}

// state is one immutable configuration snapshot. Sessions keep the
// snapshot they authenticated with until they end; Reload swaps in a new
// one atomically.
type state struct {
	gen   uint64
	cfg   *config.Config
	rules *policy.Rules
	pipe  *Pipeline // the MAIL and RCPT checks and Prepare (check.go)
	cert  *tls.Certificate
	tls   *tls.Config // handshakes of new connections (tls.go)
	dummy *config.PasswordHash
}

// Server is the SMTP relay: one go-smtp server per listener sharing one
// configuration snapshot, connection limits and sender.
type Server struct {
	opts    Options
	log     *zap.Logger
	metrics *Metrics
	sender  Sender
	auth    *authenticator
	memory  *deliveryMemory
	limits  connLimits
	now     func() time.Time
	newID   func() string

	// AUTH failure lockouts and per-tenant session counts (authlimit.go).
	authLimit   *authLimiter
	tenantConns tenantConns

	budget *inflightBudget // server.max_inflight_bytes (budget.go)

	cur      atomic.Pointer[state]
	gen      atomic.Uint64
	draining atomic.Bool
	serving  atomic.Bool // Serve is running: see Ready

	mu        sync.Mutex
	conns     map[*trackedConn]struct{}
	listeners []*smtpListener
	servers   []*smtp.Server // every go-smtp server started (generation.go)
	wg        sync.WaitGroup
}

// NewServer validates what the configuration needs beyond config.Validate
// (compiled policy, TLS certificate) and builds a Server. It does not
// listen yet.
func NewServer(cfg *config.Config, opts Options) (*Server, error) {
	if opts.Sender == nil {
		return nil, errors.New("relay: no sender")
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.NewID == nil {
		opts.NewID = randomID
	}
	s := &Server{
		opts:    opts,
		log:     opts.Logger,
		metrics: opts.Metrics,
		sender:  opts.Sender,
		now:     opts.Now,
		newID:   opts.NewID,
		conns:   map[*trackedConn]struct{}{},
	}
	st, err := s.build(cfg)
	if err != nil {
		return nil, err
	}
	s.auth = newAuthenticator(cfg.Auth.MaxConcurrentHashes, cfg.Auth.CacheTTL, s.now)
	// Building the snapshot ran the password KDF once (the dummy hash):
	// give its memory (19 MiB for Argon2id) back to the OS now rather
	// than keep it resident in an idle relay.
	debug.FreeOSMemory()
	s.memory = newDeliveryMemory(cfg.Delivery.RetryMemoryTTL, cfg.Delivery.RetryMemoryMax, s.now)
	// Lockouts run on the wall clock, not on the injected Now.
	s.authLimit = newAuthLimiter(time.Now)
	s.budget = newInflightBudget(opts.Metrics)
	s.log.Info("memory budget", zap.Int64("max_inflight_bytes", s.budget.limit(cfg)), zap.String("memory_limit_from", s.budget.source))
	s.cur.Store(st)
	return s, nil
}

func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (s *Server) build(cfg *config.Config) (*state, error) {
	cert, err := certificateFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("server.tls: %w", err)
	}
	pipe, err := NewPipeline(cfg, s.now)
	if err != nil {
		return nil, err
	}
	st := &state{gen: s.gen.Add(1), cfg: cfg, rules: pipe.Rules, pipe: pipe, cert: cert, tls: snapshotTLS(cfg, cert)}
	for _, t := range cfg.Tenants {
		if len(t.Users) > 0 {
			st.dummy = config.DummyLike(t.Users[0].Hash)
			break
		}
	}
	return st, nil
}

func (s *Server) snapshot() *state { return s.cur.Load() }

// Reload builds a snapshot from cfg and swaps it in. On error the current
// snapshot stays. New connections get the new snapshot, what EHLO
// advertises included (generation.go). The listeners (server.listeners)
// are not changed by a reload: the daemon refuses such a reload
// (config.RestartKeys).
func (s *Server) Reload(cfg *config.Config) error {
	st, err := s.build(cfg)
	if err != nil {
		return err
	}
	old := s.cur.Swap(st)
	s.auth.clear()
	if len(old.cfg.Server.Listeners) != len(cfg.Server.Listeners) {
		s.log.Warn("listener changes take effect after a restart")
	}
	return nil
}

// Config returns the configuration in use.
func (s *Server) Config() *config.Config { return s.snapshot().cfg }

// Ready reports whether the server takes SMTP connections: Serve is
// running on every bound listener and shutdown has not begun. It is what
// the admin listener's /readyz reports, so a load balancer stops sending
// connections as soon as the relay starts draining.
func (s *Server) Ready() bool { return s.serving.Load() && !s.draining.Load() }

// Listen binds every configured listener. Call Serve afterwards.
func (s *Server) Listen() error {
	cfg := s.snapshot().cfg
	for _, lc := range cfg.Server.Listeners {
		l, err := net.Listen("tcp", lc.Address)
		if err != nil {
			s.closeListeners()
			return fmt.Errorf("listen %s: %w", lc.Address, err)
		}
		allowed, err := parsePrefixes(lc.AllowedNetworks)
		if err != nil {
			l.Close()
			s.closeListeners()
			return err
		}
		sl := &smtpListener{cfg: lc, ln: &limitListener{Listener: l, srv: s, allowed: allowed}}
		sl.ln.enableProxy(lc)
		tlsCfg := s.tlsConfig()
		switch lc.TLS {
		case config.TLSStartTLS:
			sl.tls = tlsCfg
		case config.TLSImplicit:
			sl.ln.implicit = tlsCfg
		}
		s.mu.Lock()
		s.listeners = append(s.listeners, sl)
		s.mu.Unlock()
	}
	return nil
}

func (s *Server) closeListeners() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.listeners {
		l.ln.Close()
	}
	s.listeners = nil
}

// Addrs returns the bound listener addresses, in configuration order.
func (s *Server) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]net.Addr, len(s.listeners))
	for i, l := range s.listeners {
		out[i] = l.ln.Addr()
	}
	return out
}

// Serve serves every listener until ctx is done, then shuts down
// gracefully within server.shutdown_timeout (see Shutdown).
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	listeners := s.listeners
	s.mu.Unlock()
	errc := make(chan error, len(listeners))
	for _, l := range listeners {
		s.log.Info("listening", zap.String("address", l.ln.Addr().String()), zap.String("tls", l.cfg.TLS),
			zap.Bool("allow_insecure_auth", l.cfg.AllowInsecureAuth))
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := s.acceptLoop(l); err != nil {
				errc <- err
			}
		}()
	}
	s.serving.Store(true)
	defer s.serving.Store(false)
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.snapshot().cfg.Server.ShutdownTimeout)
	defer cancel()
	if serr := s.Shutdown(sctx); serr != nil && err == nil {
		err = serr
	}
	return err
}

// Shutdown stops accepting connections, answers 421 to sessions that are
// not in a transaction, lets transactions in progress finish (their final
// reply is written, then the connection closes) and, when ctx ends, closes
// whatever is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	s.mu.Lock()
	servers := s.servers
	// The accept loops end when their listener closes; go-smtp's
	// Shutdown closes only its own handoffs.
	for _, l := range s.listeners {
		l.ln.Close()
	}
	s.mu.Unlock()
	// go-smtp's Shutdown returns once its connection goroutines are done
	// (or ctx is): waiting for it means nothing logs after Shutdown.
	var smtpDone sync.WaitGroup
	for _, srv := range servers {
		smtpDone.Go(func() { _ = srv.Shutdown(ctx) })
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		s.mu.Lock()
		n := len(s.conns)
		for c := range s.conns {
			if sess := c.session.Load(); sess == nil || !sess.busy() {
				c.interruptForShutdown() // shutdown.go
			}
		}
		s.mu.Unlock()
		if n == 0 {
			break
		}
		select {
		case <-ctx.Done():
			// trackedConn.Close untracks itself under s.mu: close outside it.
			s.mu.Lock()
			left := make([]*trackedConn, 0, len(s.conns))
			for c := range s.conns {
				left = append(left, c)
			}
			s.mu.Unlock()
			// Every accepted connection is tracked, so this closes them
			// all (go-smtp's Close would do nothing after its Shutdown).
			for _, c := range left {
				c.Close()
			}
			s.wg.Wait()
			smtpDone.Wait()
			return fmt.Errorf("shutdown: %d connections closed at the deadline", n)
		case <-tick.C:
		}
	}
	s.wg.Wait()
	smtpDone.Wait()
	return nil
}

func (s *Server) trackConn(c *trackedConn) {
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.mu.Unlock()
}

func (s *Server) untrackConn(c *trackedConn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// backend is the go-smtp Backend of one listener.
type backend struct {
	srv      *Server
	listener config.Listener
}

func (b *backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return b.srv.newSession(c, b.listener), nil
}

// zapErrorLog routes go-smtp's internal error log to zap at debug level:
// its messages are connection-level noise (client hung up, TLS errors).
type zapErrorLog struct{ l *zap.Logger }

func (z zapErrorLog) Printf(format string, v ...any) {
	z.l.Debug("smtp", zap.String("detail", strings.TrimSpace(fmt.Sprintf(format, v...))))
}
func (z zapErrorLog) Println(v ...any) {
	z.l.Debug("smtp", zap.String("detail", strings.TrimSpace(fmt.Sprintln(v...))))
}
