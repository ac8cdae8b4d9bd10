package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/mail"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// sendEmailPath is the SES v2 SendEmail operation (POST).
const sendEmailPath = "/v2/email/outbound-emails"

// statsPath reports what the stand-in received, so that a run can check
// that every accepted message really reached "SES".
const statsPath = "/_bench/stats"

// sesStub is a stand-in for the SES v2 API that answers SendEmail as fast
// as it can: it reads the whole request body (the relay must send all of
// it), optionally waits, and answers 200 with a fresh MessageId. It checks
// neither the signature nor the content: it measures the relay, not SES.
type sesStub struct {
	srv   *http.Server
	ln    net.Listener
	delay time.Duration
	// CertPEM is the self-signed certificate when serving HTTPS.
	CertPEM []byte

	requests atomic.Int64
	bytes    atomic.Int64
	conns    atomic.Int64
	// first is the body of the first SendEmail call, kept so a run can
	// check what the relay really sends (signed or not) at no cost to
	// the calls that follow.
	first atomic.Pointer[[]byte]
}

type stubStats struct {
	Requests int64 `json:"requests"`
	Bytes    int64 `json:"bytes"`
	// Conns is the number of connections the relay opened: with a
	// well-sized pool it stays near the relay's concurrency.
	Conns int64 `json:"connections"`
	// FirstDKIM is the a= tag of the DKIM-Signature of the first
	// message ("" when it was not signed).
	FirstDKIM string `json:"first_dkim"`
}

// startSESStub listens on addr (HTTPS with a self-signed certificate when
// useTLS, HTTP/2 only when h2) and serves in the background until Close.
func startSESStub(addr string, useTLS, h2 bool, delay time.Duration) (*sesStub, error) {
	s := &sesStub{delay: delay}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+sendEmailPath, s.sendEmail)
	mux.HandleFunc("GET "+statsPath, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(s.Stats()) //nolint:errcheck // best effort
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) //nolint:errcheck // drained for keep-alive only
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Amzn-ErrorType", "NotFoundException")
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"message":"not implemented by the bench stand-in"}`) //nolint:errcheck
	})
	s.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          log.New(io.Discard, "", 0),
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				s.conns.Add(1)
			}
		},
	}
	// The real endpoint is reached over HTTP/1.1 by default clients; an
	// HTTP/2 stand-in would hide the cost of opening pooled connections.
	var protos http.Protocols
	protos.SetHTTP1(true)
	if h2 {
		protos.SetHTTP2(true)
	}
	s.srv.Protocols = &protos
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	if useTLS {
		cert, pemBytes, err := selfSigned("ses.bench")
		if err != nil {
			ln.Close()
			return nil, err
		}
		s.CertPEM = pemBytes
		s.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		if h2 {
			s.srv.TLSConfig.NextProtos = []string{"h2", "http/1.1"}
		}
		ln = tls.NewListener(ln, s.srv.TLSConfig)
	}
	s.ln = ln
	go s.srv.Serve(ln) //nolint:errcheck // returns when Close is called
	return s, nil
}

func (s *sesStub) sendEmail(w http.ResponseWriter, r *http.Request) {
	var n int64
	var err error
	if s.first.Load() == nil {
		var b []byte
		b, err = io.ReadAll(r.Body)
		n = int64(len(b))
		s.first.CompareAndSwap(nil, &b)
	} else {
		n, err = io.Copy(io.Discard, r.Body)
	}
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if s.delay > 0 {
		time.Sleep(s.delay)
	}
	s.requests.Add(1)
	s.bytes.Add(n)
	var id [16]byte
	for i := 0; i < len(id); i += 8 {
		v := rand.Uint64()
		for j := range 8 {
			id[i+j] = byte(v >> (8 * j))
		}
	}
	var body [len(`{"MessageId":""}`) + 2*len(id)]byte
	b := append(body[:0], `{"MessageId":"`...)
	b = hex.AppendEncode(b, id[:])
	b = append(b, `"}`...)
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["X-Amzn-Requestid"] = []string{"bench"}
	w.Write(b) //nolint:errcheck // the client went away
}

// Stats returns the number of SendEmail calls answered, their body bytes
// and how the first message was signed.
func (s *sesStub) Stats() stubStats {
	st := stubStats{Requests: s.requests.Load(), Bytes: s.bytes.Load(), Conns: s.conns.Load()}
	if b := s.first.Load(); b != nil {
		st.FirstDKIM = dkimAlgorithm(*b)
	}
	return st
}

// dkimAlgorithm returns the a= tag of the DKIM-Signature field of the raw
// message inside a SendEmail request body, "" if there is none.
func dkimAlgorithm(body []byte) string {
	var req struct {
		Content struct {
			Raw struct {
				Data []byte // base64 in JSON
			}
		}
	}
	if json.Unmarshal(body, &req) != nil {
		return ""
	}
	m, err := mail.ReadMessage(bytes.NewReader(req.Content.Raw.Data))
	if err != nil {
		return ""
	}
	for tag := range strings.SplitSeq(m.Header.Get("DKIM-Signature"), ";") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(tag), "a="); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// URL is the endpoint to configure as ses.endpoint.
func (s *sesStub) URL() string {
	if s.CertPEM != nil {
		return "https://" + s.ln.Addr().String()
	}
	return "http://" + s.ln.Addr().String()
}

// Close stops the server.
func (s *sesStub) Close() error { return s.srv.Close() }

// sesStubMain runs the stand-in as its own process. The first line on
// stdout is "listening on URL".
func sesStubMain(args []string) error {
	fs := flag.NewFlagSet("sesstub", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	useTLS := fs.Bool("tls", false, "serve HTTPS with a self-signed certificate")
	h2 := fs.Bool("h2", false, "also offer HTTP/2 (off: HTTP/1.1 like the default SDK client against SES)")
	certOut := fs.String("cert-out", "", "with --tls: write the certificate PEM here (for AWS_CA_BUNDLE)")
	delay := fs.Duration("delay", 0, "wait this long before answering each SendEmail")
	fs.Parse(args) //nolint:errcheck // ExitOnError

	s, err := startSESStub(*listen, *useTLS, *h2, *delay)
	if err != nil {
		return err
	}
	if *certOut != "" {
		if !*useTLS {
			return fmt.Errorf("--cert-out needs --tls")
		}
		if err := os.WriteFile(*certOut, s.CertPEM, 0o644); err != nil {
			return err
		}
	}
	fmt.Printf("listening on %s\n", s.URL())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	st := s.Stats()
	fmt.Fprintf(os.Stderr, "sesstub: %d SendEmail calls, %d bytes, %d connections\n", st.Requests, st.Bytes, st.Conns)
	return s.Close()
}
