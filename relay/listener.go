package relay

import (
	"crypto/tls"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

func fieldRemote(a net.Addr) zap.Field { return zap.String("remote", a.String()) }
func fieldReason(r string) zap.Field   { return zap.String("reason", r) }
func fieldProxy(a net.Addr) zap.Field  { return zap.String("proxy", a.String()) }

// connLimits is shared by every listener of a Server: the global and
// per-IP connection caps. go-smtp has none of its own.
type connLimits struct {
	mu    sync.Mutex
	total int
	perIP map[netip.Addr]int
}

// limitListener wraps a net.Listener: it refuses connections from outside
// allowed networks, over the global cap or over the per-IP cap with a
// 421 reply and closes them, and wraps accepted ones in trackedConn.
//
// With the PROXY protocol on (proxy != nil, proxyproto.go), a goroutine
// accepts the sockets and each connection reads its header in its own
// goroutine before admit, so the checks see the proxied client and a
// slow header holds up no one else; Accept hands over admitted
// connections.
type limitListener struct {
	net.Listener
	srv      *Server
	allowed  []netip.Prefix
	implicit *tls.Config // non-nil: wrap accepted conns in TLS

	proxy *proxyState
}

func (l *limitListener) Accept() (net.Conn, error) {
	if l.proxy != nil {
		return l.acceptProxied()
	}
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if ac := l.admit(c, nil); ac != nil {
			return ac, nil
		}
	}
}

func (l *limitListener) Close() error {
	err := l.Listener.Close()
	if l.proxy != nil {
		l.proxy.closePending()
	}
	return err
}

// admit applies allowed_networks and the connection limits to c, whose
// RemoteAddr is the client (the PROXY header's source when via, the load
// balancer's address, is not nil), and returns the connection to serve, or
// nil when it was refused (and closed).
func (l *limitListener) admit(c net.Conn, via net.Addr) net.Conn {
	ip := remoteIP(c.RemoteAddr())
	refused := func(reason string) {
		fields := []zap.Field{fieldRemote(c.RemoteAddr()), fieldReason(reason)}
		if via != nil {
			fields = append(fields, fieldProxy(via))
		}
		l.srv.metrics.connRejected(reason)
		l.srv.log.Info("connection refused", fields...)
	}
	if len(l.allowed) > 0 && !inPrefixes(l.allowed, ip) {
		refused("network")
		c.Close()
		return nil
	}
	st := l.srv.snapshot()
	if reason := l.srv.limits.acquire(ip, st.cfg.Server.MaxConnections, st.cfg.Server.MaxConnectionsPerIP); reason != "" {
		refused(reason)
		go refuse(c, l.implicit)
		return nil
	}
	tc := &trackedConn{Conn: c, srv: l.srv, ip: ip, id: l.srv.newID(), listener: l.Addr().String(), start: time.Now()}
	// Lazy: the fields are encoded on the first entry actually
	// written, so an idle connection at level info holds no encoder.
	fields := []zap.Field{zap.String("conn", tc.id), fieldRemote(c.RemoteAddr())}
	if via != nil {
		fields = append(fields, fieldProxy(via))
	}
	tc.log = l.srv.log.WithLazy(fields...)
	tc.readTimeout.Store(int64(st.cfg.Server.ReadTimeout))
	tc.sessionLimit(st.cfg)
	l.srv.trackConn(tc)
	l.srv.metrics.connOpened(tc.listener)
	if l.implicit != nil {
		tc.implicitTLS = true
		return tls.Server(tc, l.implicit)
	}
	return tc
}

// refuse answers 421 and closes; over TLS it tries the handshake first, so
// the client can read the reply, within a short deadline.
func refuse(c net.Conn, implicit *tls.Config) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	var w net.Conn = c
	if implicit != nil {
		tc := tls.Server(c, implicit)
		if err := tc.Handshake(); err != nil {
			return
		}
		w = tc
	}
	_, _ = w.Write([]byte("421 4.7.0 Too many connections, try again later\r\n"))
}

func (l *connLimits) acquire(ip netip.Addr, max, maxPerIP int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if max > 0 && l.total >= max {
		return "max_connections"
	}
	if maxPerIP > 0 && l.perIP[ip] >= maxPerIP {
		return "max_connections_per_ip"
	}
	l.total++
	if l.perIP == nil {
		l.perIP = map[netip.Addr]int{}
	}
	l.perIP[ip]++
	return ""
}

func (l *connLimits) release(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if n := l.perIP[ip] - 1; n > 0 {
		l.perIP[ip] = n
	} else {
		delete(l.perIP, ip)
	}
}

func (l *connLimits) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// trackedConn is every accepted connection. It replaces go-smtp's read
// deadlines, which are set once per command and so would cap a whole DATA
// upload, by an idle timeout refreshed on every read; and it can close
// itself right after the next write (to send a final 421).
type trackedConn struct {
	net.Conn
	srv         *Server
	ip          netip.Addr
	readTimeout atomic.Int64
	// dataDeadline is the end of the current DATA upload (Unix ns), 0 when
	// not in DATA.
	dataDeadline atomic.Int64
	closeAfter   atomic.Bool
	closeOnce    sync.Once
	session      atomic.Pointer[Session]

	// Shutdown of an idle connection (shutdown.go).
	shutdown    atomic.Bool
	saidBye     atomic.Bool
	implicitTLS bool

	// server.max_session_duration (revoke.go).
	sessionEnd atomic.Int64 // unix ns; 0: none
	sessionCut atomic.Bool

	id       string
	listener string
	start    time.Time
	log      *zap.Logger
	messages atomic.Int64
	identMu  sync.Mutex
	user     string
	tenant   string
}

func (c *trackedConn) setIdentity(user, tenant string) {
	c.identMu.Lock()
	c.user, c.tenant = user, tenant
	c.identMu.Unlock()
}

func (c *trackedConn) Read(b []byte) (int, error) {
	if d := time.Duration(c.readTimeout.Load()); d > 0 {
		dl := time.Now().Add(d)
		// During DATA the whole upload is also capped (server.data_timeout).
		if end := c.dataDeadline.Load(); end != 0 && time.Unix(0, end).Before(dl) {
			dl = time.Unix(0, end)
		}
		_ = c.Conn.SetReadDeadline(c.capSession(dl))
	}
	n, err := c.Conn.Read(b)
	if err != nil {
		c.noteSessionCut(err) // revoke.go
		if c.shutdown.Load() {
			err = c.sayShutdown(err) // shutdown.go
		}
	}
	return n, err
}

// startData caps the time for reading one message body; endData lifts
// the cap.
func (c *trackedConn) startData(d time.Duration) { c.dataDeadline.Store(time.Now().Add(d).UnixNano()) }
func (c *trackedConn) endData()                  { c.dataDeadline.Store(0) }

// SetReadDeadline ignores go-smtp's per-command deadline: Read applies
// the idle timeout itself. A deadline in the past (used to interrupt a
// blocked read) is honoured.
func (c *trackedConn) SetReadDeadline(t time.Time) error {
	if !t.IsZero() && t.Before(time.Now()) {
		c.readTimeout.Store(int64(time.Nanosecond))
		return c.Conn.SetReadDeadline(t)
	}
	return nil
}

func (c *trackedConn) SetDeadline(t time.Time) error {
	_ = c.SetReadDeadline(t)
	return c.Conn.SetWriteDeadline(t)
}

func (c *trackedConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if c.closeAfter.Load() {
		c.Close()
	}
	return n, err
}

func (c *trackedConn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		err = c.Conn.Close()
		c.srv.limits.release(c.ip)
		c.srv.metrics.connClosed()
		c.identMu.Lock()
		user, tenant := c.user, c.tenant
		c.identMu.Unlock()
		c.log.Info("connection closed", zap.String("listener", c.listener), zap.String("user", user),
			zap.String("tenant", tenant), zap.Int64("messages", c.messages.Load()),
			zap.Duration("duration", time.Since(c.start)))
		// Last: Shutdown returns once no connection is tracked, and the
		// connection's work, its log line included, is done by then.
		c.srv.untrackConn(c)
	})
	return err
}

// tracked finds the trackedConn under a go-smtp connection (which may be
// wrapped in TLS).
func tracked(c net.Conn) *trackedConn {
	if t, ok := c.(*tls.Conn); ok {
		c = t.NetConn()
	}
	tc, _ := c.(*trackedConn)
	return tc
}

func remoteIP(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(ta.IP); ok {
			return ip.Unmap()
		}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

func inPrefixes(ps []netip.Prefix, ip netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func parsePrefixes(ss []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range ss {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, err
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
