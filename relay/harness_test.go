package relay_test

// The relay test harness: a relay started from a configuration snippet on
// 127.0.0.1:0, its SES sender the real aws-sdk-go-v2 client against the
// local stand-in (relay/sestest), and client helpers (relay/smtptest).

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"go.uber.org/zap/zaptest"

	"github.com/sesrelay/sesrelay/config"
	"github.com/sesrelay/sesrelay/headers"
	"github.com/sesrelay/sesrelay/relay"
	"github.com/sesrelay/sesrelay/relay/ses"
	"github.com/sesrelay/sesrelay/relay/sestest"
	"github.com/sesrelay/sesrelay/relay/smtptest"
)

// Shorthands for the shared SMTP test helpers.
const (
	testPassword = smtptest.Password
	testHash     = smtptest.PasswordHash
	// simpleMsg is the shared test message (billing tenant).
	simpleMsg = smtptest.Message
)

var (
	expectCode = smtptest.ExpectCode
	send       = smtptest.Send
	codeOf     = smtptest.CodeOf
	dialFrom   = smtptest.DialFrom
	greeting   = smtptest.Greeting
	clientTLS  = smtptest.ClientTLS
)

// rawConn speaks SMTP byte by byte.
type rawConn = smtptest.Conn

func sendMsg(c *smtp.Client, from string, to []string, msg string) error {
	_, err := send(c, from, to, msg)
	return err
}

// baseYAML has one listener per TLS mode and one SES attempt.
const baseYAML = `
server:
  hostname: relay.test
  listeners:
    - {address: "127.0.0.1:0", tls: starttls}
    - {address: "127.0.0.1:0", tls: implicit}
    - {address: "127.0.0.1:0", tls: none, allow_insecure_auth: true}
  tls: {self_signed: true}
  max_message_bytes: 65536
  max_recipients: 50
log: {level: debug}
ses: {region: us-east-1, max_attempts: 1, timeout: 5s}
tenants:
  - name: billing
    users: [{username: billing-app, password_hash: "HASH"}]
    domains: ["billing.example.com", "*.billing.example.com"]
    configuration_set: billing-tx
    tags: {stream: transactional}
    identity_arn: "arn:aws:ses:us-east-1:123456789012:identity/billing.example.com"
  - name: marketing
    users: [{username: marketing-app, password_hash: "HASH"}]
    domains: ["marketing.example.com"]
    configuration_set: marketing-bulk
`

// hardYAML has a plain listener (insecure AUTH allowed: raw protocol tests
// and source addresses are simple) and a STARTTLS one, SES retries and
// AUTH protection.
const hardYAML = `
server:
  hostname: relay.test
  listeners:
    - {address: "127.0.0.1:0", tls: none, allow_insecure_auth: true}
    - {address: "127.0.0.1:0", tls: starttls}
  tls: {self_signed: true}
  max_message_bytes: 65536
  max_recipients: 50
  shutdown_timeout: 5s
ses: {region: us-east-1, max_attempts: 4, timeout: 1500ms}
auth: {max_failures_per_connection: 3, max_failures: 3, lockout: 1m}
tenants:
  - name: billing
    users: [{username: billing-app, password_hash: "HASH"}]
    domains: ["billing.example.com"]
  - name: marketing
    users: [{username: marketing-app, password_hash: "HASH"}]
    domains: ["marketing.example.com"]
`

var testNow = time.Date(2026, 11, 23, 9, 30, 0, 0, time.UTC)

// prepared is what the relay adds to a message without Date and Message-ID
// when started by start (fixed clock and ID).
const prepared = "Date: Mon, 23 Nov 2026 09:30:00 +0000\r\nMessage-ID: <0123456789abcdef@relay.test>\r\n"

// harness is one running relay and its SES stand-in.
type harness struct {
	t      *testing.T
	srv    *relay.Server
	ses    *sestest.Server
	sender relay.Sender
	// The first listener of each TLS mode.
	starttls string
	implicit string
	plain    string

	cancel context.CancelFunc
	done   chan struct{}
	err    error // what Serve returned, after stop
}

type hOpts struct {
	sesMod   func(*ses.Options)
	endpoint string // "" = the stand-in
	limits   func(cfg *config.Config) relay.RateLimits
	// fixed pins the clock to testNow and message IDs (see prepared).
	fixed bool
	// fastBackoff shortens the SES retry backoff to milliseconds.
	fastBackoff bool
	// options, if set, completes the relay options (stores, metrics)
	// before the server is built. Cleanups it registers run after the
	// relay stopped.
	options func(cfg *config.Config, ro *relay.Options)
	// built, if set, runs after the server is built and before it
	// listens, with the sender it was given (the rate limiter when limits
	// is set). Cleanups it registers run after the relay stopped.
	built func(cfg *config.Config, srv *relay.Server, sender relay.Sender)
}

func testConfig(t *testing.T, yaml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(strings.ReplaceAll(yaml, "HASH", testHash)))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// start runs a relay from yaml with a fixed clock and message ID.
func start(t *testing.T, yaml string) *harness {
	t.Helper()
	return startWith(t, yaml, hOpts{fixed: true})
}

// startHard runs a relay from yaml on the real clock, with fast SES
// retries, optionally behind the rate limiter.
func startHard(t *testing.T, yaml string, o hOpts) *harness {
	t.Helper()
	o.fastBackoff = true
	return startWith(t, yaml, o)
}

// startWith runs a relay on 127.0.0.1:0 whose SES sender is the real SDK
// client pointed at a local stand-in. The relay stops when the test ends.
func startWith(t *testing.T, yaml string, o hOpts) *harness {
	t.Helper()
	cfg := testConfig(t, yaml)
	stub := sestest.New()
	t.Cleanup(stub.Close)
	opts := ses.OptionsFromConfig(&cfg.SES)
	opts.Endpoint = stub.URL
	if o.endpoint != "" {
		opts.Endpoint = o.endpoint
	}
	opts.AWSConfig = &aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", "")}
	if o.fastBackoff {
		opts.BackoffBase, opts.BackoffMax = 5*time.Millisecond, 50*time.Millisecond
	}
	if o.sesMod != nil {
		o.sesMod(&opts)
	}
	sesSender, err := ses.New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	var sender relay.Sender = sesSender
	if o.limits != nil {
		sender = relay.RateLimited(sesSender, o.limits(cfg))
	}
	ro := relay.Options{Sender: sender, Logger: zaptest.NewLogger(t)}
	if o.fixed {
		ro.Now = func() time.Time { return testNow }
		ro.NewID = func() string { return "0123456789abcdef" }
	}
	if o.options != nil {
		o.options(cfg, &ro)
	}
	srv, err := relay.NewServer(cfg, ro)
	if err != nil {
		t.Fatal(err)
	}
	if o.built != nil {
		o.built(cfg, srv, sender)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{t: t, srv: srv, ses: stub, sender: sender, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(h.done); h.err = srv.Serve(ctx) }()
	t.Cleanup(func() { h.stop() })
	for i, a := range srv.Addrs() {
		var p *string
		switch cfg.Server.Listeners[i].TLS {
		case config.TLSStartTLS:
			p = &h.starttls
		case config.TLSImplicit:
			p = &h.implicit
		case config.TLSNone:
			p = &h.plain
		}
		if p != nil && *p == "" {
			*p = a.String()
		}
	}
	return h
}

// stop is SIGTERM: it cancels Serve and waits for it to return.
func (h *harness) stop() time.Duration {
	start := time.Now()
	h.cancel()
	<-h.done
	return time.Since(start)
}

// dial connects to the STARTTLS listener, upgrades and, when user is set,
// authenticates.
func (h *harness) dial(user, pass string) *smtp.Client {
	h.t.Helper()
	return smtptest.StartTLS(h.t, h.starttls, user, pass)
}

// dialPlain is dial on the listener that allows AUTH without TLS.
func (h *harness) dialPlain(user, pass string) *smtp.Client {
	h.t.Helper()
	c, err := smtp.Dial(h.plain)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	if err := c.Auth(sasl.NewPlainClient("", user, pass)); err != nil {
		h.t.Fatalf("auth: %v", err)
	}
	return c
}

// client dials the plain listener from src ("" = any) and authenticates
// when user is set.
func (h *harness) client(src, user, pass string) *smtp.Client {
	h.t.Helper()
	return smtptest.Client(h.t, h.plain, src, user, pass)
}

// raw dials the plain listener from src for byte-level SMTP.
func (h *harness) raw(src string) *rawConn {
	h.t.Helper()
	return smtptest.Raw(h.t, h.plain, src)
}

func writeEd25519(t *testing.T, dir, name string) (string, ed25519.PublicKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p, pub
}

// dkimSelector verifies the message's signature with pub and returns the
// selector it names.
func dkimSelector(t *testing.T, raw []byte, pub crypto.PublicKey) string {
	t.Helper()
	txt, err := headers.DNSRecord(pub)
	if err != nil {
		t.Fatal(err)
	}
	var queried string
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(raw), &dkim.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) { queried = name; return []string{txt}, nil },
	})
	if err != nil || len(vs) != 1 || vs[0].Err != nil {
		t.Fatalf("DKIM: %v %+v", err, vs)
	}
	sel, _, _ := strings.Cut(queried, "._domainkey.")
	return sel
}
