package relay

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sesrelay/sesrelay/config"
)

// go-smtp reads Domain, MaxMessageBytes, MaxRecipients and WriteTimeout
// from its Server struct on every connection (EHLO advertises SIZE and
// LIMITS RCPTMAX from them), and they cannot be changed while it serves.
// So each listener hands every accepted connection to a go-smtp server
// built for the configuration in force: when a reload changes one of
// those keys, the next connection gets a new go-smtp server, and the old
// one finishes its sessions with the values they started with.

// smtpParams are the keys a go-smtp server is built with.
type smtpParams struct {
	domain       string
	maxBytes     int64
	maxRcpts     int
	writeTimeout time.Duration
}

func paramsOf(cfg *config.Config) smtpParams {
	return smtpParams{cfg.Server.Hostname, cfg.Server.MaxMessageBytes, cfg.Server.MaxRecipients, cfg.Server.WriteTimeout}
}

// smtpListener is one bound listener and its go-smtp servers.
type smtpListener struct {
	cfg config.Listener
	ln  *limitListener
	tls *tls.Config // for STARTTLS
	// cur serves new connections; only the accept loop changes it.
	cur *generation
}

// generation is one go-smtp server fed by the accept loop.
type generation struct {
	params smtpParams
	srv    *smtp.Server
	in     *handoff
}

// newGeneration builds a go-smtp server for params and starts it. It
// returns nil once shutdown has begun.
func (s *Server) newGeneration(l *smtpListener, p smtpParams) *generation {
	srv := smtp.NewServer(&backend{srv: s, listener: l.cfg})
	srv.Domain = p.domain
	srv.MaxMessageBytes = p.maxBytes
	srv.MaxRecipients = p.maxRcpts
	srv.MaxLineLength = 2000
	srv.WriteTimeout = p.writeTimeout
	// Read deadlines are applied per read by trackedConn.
	srv.ReadTimeout = 0
	srv.AllowInsecureAuth = l.cfg.AllowInsecureAuth
	srv.ErrorLog = zapErrorLog{s.log}
	if l.cfg.TLS == config.TLSStartTLS {
		srv.TLSConfig = l.tls
	}
	g := &generation{params: p, srv: srv, in: &handoff{addr: l.ln.Addr(), conns: make(chan net.Conn), closed: make(chan struct{})}}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Shutdown sets draining before it reads s.servers: a server made
	// after that would never be shut down.
	if s.draining.Load() {
		return nil
	}
	s.servers = append(s.servers, srv)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		// Returns when the handoff closes (a newer generation took over,
		// or shutdown); its sessions go on until they end.
		_ = srv.Serve(g.in)
	}()
	return g
}

// acceptLoop accepts connections on l and gives each to the go-smtp
// server of the configuration in force.
func (s *Server) acceptLoop(l *smtpListener) error {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if l.cur != nil {
				l.cur.in.Close()
			}
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("serve %s: %w", l.ln.Addr(), err)
		}
		if p := paramsOf(s.snapshot().cfg); l.cur == nil || l.cur.params != p {
			if l.cur != nil {
				l.cur.in.Close()
			}
			l.cur = s.newGeneration(l, p)
		}
		if l.cur == nil || !l.cur.in.give(c) {
			c.Close()
		}
	}
}

// handoff is the net.Listener of one go-smtp server: connections come
// from the accept loop.
type handoff struct {
	addr   net.Addr
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func (h *handoff) Accept() (net.Conn, error) {
	select {
	case c := <-h.conns:
		return c, nil
	case <-h.closed:
		return nil, net.ErrClosed
	}
}

func (h *handoff) give(c net.Conn) bool {
	select {
	case h.conns <- c:
		return true
	case <-h.closed:
		return false
	}
}

func (h *handoff) Close() error {
	h.once.Do(func() { close(h.closed) })
	return nil
}

func (h *handoff) Addr() net.Addr { return h.addr }
