package unsubscribe

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/sesrelay/sesrelay/config"
)

// Server is the unsubscribe listener: HTTPS with unsubscribe_server.tls,
// else plain HTTP for a TLS-terminating load balancer.
type Server struct {
	srv     *http.Server
	ln      net.Listener
	tls     bool
	timeout time.Duration
	log     *zap.Logger
}

// Listen binds sc.Address for h. Call Serve afterwards.
func Listen(sc config.UnsubscribeServer, h http.Handler, log *zap.Logger) (*Server, error) {
	if log == nil {
		log = zap.NewNop()
	}
	ln, err := net.Listen("tcp", sc.Address)
	if err != nil {
		return nil, err
	}
	s := &Server{ln: ln, timeout: sc.ShutdownTimeout, log: log}
	s.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          zap.NewStdLog(log.WithOptions(zap.IncreaseLevel(zap.WarnLevel))),
	}
	if c := sc.TLS.Certificate; c != nil {
		s.tls = true
		s.srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*c}}
	}
	if s.timeout <= 0 {
		s.timeout = config.DefaultUnsubscribeServer().ShutdownTimeout
	}
	return s, nil
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve serves until ctx ends, then stops taking connections and lets the
// requests in progress finish within unsubscribe_server.shutdown_timeout.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() {
		var err error
		if s.tls {
			err = s.srv.ServeTLS(s.ln, "", "")
		} else {
			err = s.srv.Serve(s.ln)
		}
		errc <- err
	}()
	s.log.Info("unsubscribe endpoint listening", zap.String("address", s.ln.Addr().String()), zap.Bool("tls", s.tls))
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	err := s.srv.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

// Close releases the listener of a Server that never served.
func (s *Server) Close() error { return s.ln.Close() }
