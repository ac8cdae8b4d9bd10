package main

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Default credentials of the baseline server and of the relay tenant the
// orchestrator configures.
const (
	benchUser = "bench"
	benchPass = "bench-password-0123456789"
)

// baseline is the smallest honest SMTP submission server go-smtp allows:
// STARTTLS, AUTH PLAIN against a fixed credential compared in constant time
// (no KDF), the same limits and timeouts a relay sets, and a Data that reads
// every byte and throws it away. What it costs is the protocol's cost on
// this machine, the ceiling of any relay built on go-smtp.
type baseline struct {
	srv *smtp.Server
	ln  net.Listener
}

// startBaseline listens on addr and serves in the background until Close.
func startBaseline(addr, user, pass string) (*baseline, error) {
	s, ln, err := serveBench(addr, "baseline.bench", smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &baselineSession{user: user, pass: pass}, nil
	}))
	if err != nil {
		return nil, err
	}
	return &baseline{srv: s, ln: ln}, nil
}

// serveBench starts a go-smtp server for be on addr with a self-signed
// certificate for domain and the limits and timeouts a relay sets, and
// serves in the background until the server is closed.
func serveBench(addr, domain string, be smtp.Backend) (*smtp.Server, net.Listener, error) {
	cert, _, err := selfSigned(domain)
	if err != nil {
		return nil, nil, err
	}
	s := smtp.NewServer(be)
	s.Domain = domain
	s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	s.MaxMessageBytes = 40 << 20
	s.MaxRecipients = 50
	s.ReadTimeout = 5 * time.Minute
	s.WriteTimeout = time.Minute
	s.ErrorLog = log.New(io.Discard, "", 0)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	go s.Serve(ln) //nolint:errcheck // returns when Close is called
	return s, ln, nil
}

// Addr is the address the server listens on.
func (b *baseline) Addr() string { return b.ln.Addr().String() }

// Close stops listening and closes every connection.
func (b *baseline) Close() error { return b.srv.Close() }

type baselineSession struct {
	user, pass string
	authed     bool
}

var (
	_ smtp.AuthSession = (*baselineSession)(nil)

	errBaselineAuthRequired = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
)

func (s *baselineSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *baselineSession) Auth(mech string) (sasl.Server, error) {
	if mech != sasl.Plain {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(identity, username, password string) error {
		ok := subtle.ConstantTimeCompare([]byte(username), []byte(s.user)) &
			subtle.ConstantTimeCompare([]byte(password), []byte(s.pass))
		if ok != 1 || (identity != "" && identity != username) {
			return smtp.ErrAuthFailed
		}
		s.authed = true
		return nil
	}), nil
}

func (s *baselineSession) Mail(string, *smtp.MailOptions) error {
	if !s.authed {
		return errBaselineAuthRequired
	}
	return nil
}

func (s *baselineSession) Rcpt(string, *smtp.RcptOptions) error {
	if !s.authed {
		return errBaselineAuthRequired
	}
	return nil
}

func (s *baselineSession) Data(r io.Reader) error {
	if !s.authed {
		return errBaselineAuthRequired
	}
	_, err := io.Copy(io.Discard, r)
	return err
}

func (s *baselineSession) Reset()        {}
func (s *baselineSession) Logout() error { return nil }

// baselineMain runs the baseline as its own process, so that its CPU time
// and memory can be read from /proc exactly like the relay's. The first
// line on stdout is "listening on ADDR".
func baselineMain(args []string) error {
	fs := flag.NewFlagSet("baseline", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	user := fs.String("user", benchUser, "AUTH PLAIN username accepted")
	pass := fs.String("pass", benchPass, "AUTH PLAIN password accepted")
	fs.Parse(args) //nolint:errcheck // ExitOnError

	b, err := startBaseline(*listen, *user, *pass)
	if err != nil {
		return err
	}
	fmt.Printf("listening on %s\n", b.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return b.Close()
}
