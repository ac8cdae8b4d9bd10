package relay

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pires/go-proxyproto"
	"go.uber.org/zap"

	"github.com/sesrelay/sesrelay/config"
)

// proxyState is the PROXY protocol side of one listener (haproxy's
// proxy-protocol.txt, v1 and v2, read by github.com/pires/go-proxyproto).
type proxyState struct {
	l        *limitListener
	required bool
	trusted  []netip.Prefix
	timeout  time.Duration

	start sync.Once
	ready chan net.Conn // admitted connections, to Accept
	done  chan struct{} // closed when the socket listener is closed
	err   error         // the socket listener's error, set before done

	mu      sync.Mutex
	closed  bool
	pending map[net.Conn]struct{} // sockets still reading their header
}

// Reasons a connection is refused for its PROXY header (the reason label
// of sesrelay_connections_rejected_total).
const (
	reasonProxyUntrusted = "proxy_untrusted" // a header, or any connection where required, from outside proxy_protocol_trusted
	reasonProxyMissing   = "proxy_missing"   // required, and no header within proxy_protocol_timeout
	reasonProxyInvalid   = "proxy_invalid"   // a malformed header, or one that is not TCP
)

// enableProxy turns on the PROXY protocol per lc (a no-op when lc has it
// off). lc has passed config.Validate; an unparsable trusted entry is
// skipped (trusting less).
func (l *limitListener) enableProxy(lc config.Listener) {
	if lc.ProxyProtocol != config.ProxyOptional && lc.ProxyProtocol != config.ProxyRequired {
		return
	}
	p := &proxyState{
		l:        l,
		required: lc.ProxyProtocol == config.ProxyRequired,
		timeout:  lc.ProxyProtocolTimeout,
		ready:    make(chan net.Conn),
		done:     make(chan struct{}),
		pending:  map[net.Conn]struct{}{},
	}
	if p.timeout <= 0 {
		p.timeout = config.DefaultProxyProtocolTimeout
	}
	for _, s := range lc.ProxyProtocolTrusted {
		if pf, err := config.ParsePrefix(s); err == nil {
			p.trusted = append(p.trusted, pf.Masked())
		}
	}
	l.proxy = p
}

func (l *limitListener) acceptProxied() (net.Conn, error) {
	p := l.proxy
	p.start.Do(func() { go p.acceptLoop() })
	select {
	case c := <-p.ready:
		return c, nil
	case <-p.done:
		return nil, p.err
	}
}

// acceptLoop accepts sockets and starts one header reader per socket. It
// runs under the go-smtp Serve call of its listener, which holds srv.wg
// until Accept returns the closed error, so the readers' srv.wg.Add
// happens before Shutdown's Wait can return.
func (p *proxyState) acceptLoop() {
	var delay time.Duration
	for {
		c, err := p.l.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				p.err = err
				close(p.done)
				return
			}
			// Out of file descriptors and the like: back off as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			p.l.srv.log.Warn("accept failed", zap.Error(err), zap.Duration("retry_in", delay))
			time.Sleep(delay)
			continue
		}
		delay = 0
		if !p.addPending(c) {
			continue
		}
		p.l.srv.wg.Add(1)
		go p.handshake(c)
	}
}

// addPending registers a socket that reads its header. Sockets waiting
// for a header count against server.max_connections with the admitted
// ones, so a flood of silent connections cannot exhaust descriptors.
func (p *proxyState) addPending(c net.Conn) bool {
	max := p.l.srv.snapshot().cfg.Server.MaxConnections
	p.mu.Lock()
	closed, full := p.closed, max > 0 && len(p.pending)+p.l.srv.limits.count() >= max
	if !closed && !full {
		p.pending[c] = struct{}{}
	}
	p.mu.Unlock()
	switch {
	case closed:
		c.Close()
		return false
	case full:
		p.l.srv.metrics.connRejected("max_connections")
		p.l.srv.log.Info("connection refused", fieldRemote(c.RemoteAddr()), fieldReason("max_connections"))
		c.Close()
		return false
	}
	return true
}

// removePending reports whether the listener is still open.
func (p *proxyState) removePending(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.pending, c)
	return !p.closed
}

// closePending interrupts the header reads when the listener closes.
func (p *proxyState) closePending() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for c := range p.pending {
		c.Close()
	}
	clear(p.pending)
}

// handshake reads raw's header, then admits the connection under the
// client's address and hands it to Accept.
func (p *proxyState) handshake(raw net.Conn) {
	defer p.l.srv.wg.Done()
	c, via, reason, err := p.readHeader(raw)
	if open := p.removePending(raw); !open {
		raw.Close()
		return
	}
	if reason != "" {
		fields := []zap.Field{fieldRemote(raw.RemoteAddr()), fieldReason(reason)}
		if err != nil {
			fields = append(fields, zap.Error(err))
		}
		p.l.srv.metrics.connRejected(reason)
		p.l.srv.log.Info("connection refused", fields...)
		// Not an SMTP client (or not known to be one): no reply.
		raw.Close()
		return
	}
	ac := p.l.admit(c, via)
	if ac == nil {
		return
	}
	select {
	case p.ready <- ac:
	case <-p.done:
		ac.Close()
	}
}

// readHeader returns the connection to serve and, when a header named
// the client, the load balancer's address; or a refusal reason.
func (p *proxyState) readHeader(raw net.Conn) (c net.Conn, via net.Addr, reason string, err error) {
	if !inPrefixes(p.trusted, remoteIP(raw.RemoteAddr())) {
		if p.required {
			return nil, nil, reasonProxyUntrusted, nil
		}
		// Served at once as a direct client: waiting for a header that
		// would be refused anyway would only delay its greeting.
		return &untrustedConn{Conn: raw, p: p}, nil, "", nil
	}
	policy := proxyproto.USE
	if p.required {
		policy = proxyproto.REQUIRE
	}
	pc := proxyproto.NewConn(raw, proxyproto.WithPolicy(policy),
		proxyproto.SetReadHeaderTimeout(p.timeout), proxyproto.ValidateHeader(validateProxyHeader))
	// A zero-length read runs the header read (bounded by the timeout)
	// and consumes nothing else.
	if _, err := pc.Read(nil); err != nil {
		if errors.Is(err, proxyproto.ErrNoProxyProtocol) {
			return nil, nil, reasonProxyMissing, err
		}
		return nil, nil, reasonProxyInvalid, err
	}
	if h := pc.ProxyHeader(); h != nil && h.Command.IsProxy() && h.SourceAddr != nil {
		via = raw.RemoteAddr()
	}
	return pc, via, "", nil
}

// validateProxyHeader accepts LOCAL (the proxy's own connection, health
// checks), UNKNOWN/UNSPEC (the socket's address stays) and TCP over IPv4
// or IPv6: a client address from a UDP or Unix socket means nothing here.
func validateProxyHeader(h *proxyproto.Header) error {
	if !h.Command.IsProxy() || h.TransportProtocol.IsUnspec() {
		return nil
	}
	if !h.TransportProtocol.IsStream() || !(h.TransportProtocol.IsIPv4() || h.TransportProtocol.IsIPv6()) {
		return fmt.Errorf("transport %#x is not TCP over IPv4 or IPv6", byte(h.TransportProtocol))
	}
	if _, ok := h.SourceAddr.(*net.TCPAddr); !ok {
		return errors.New("no TCP source address")
	}
	return nil
}

// proxySignatures open a v1 and a v2 header.
var proxySignatures = [][]byte{[]byte("PROXY "), []byte("\r\n\r\n\x00\r\nQUIT\n")}

var errProxyUntrusted = errors.New("PROXY header from an untrusted address")

// untrustedConn is a connection from outside proxy_protocol_trusted on an
// optional listener, served as a direct client. If its first bytes are a
// PROXY header it is refused: the header is never used, and the refusal
// shows a load balancer missing from proxy_protocol_trusted.
type untrustedConn struct {
	net.Conn
	p       *proxyState
	checked bool // Read runs on the connection's one goroutine
}

func (c *untrustedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if !c.checked && n > 0 {
		c.checked = true
		for _, sig := range proxySignatures {
			if bytes.HasPrefix(b[:n], sig) {
				c.p.l.srv.metrics.connRejected(reasonProxyUntrusted)
				c.p.l.srv.log.Info("connection refused", fieldRemote(c.RemoteAddr()), fieldReason(reasonProxyUntrusted))
				return 0, errProxyUntrusted
			}
		}
	}
	return n, err
}
