package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/emersion/go-smtp"
)

// forwarding is the forwarding limit: the least work any relay in front of
// SES does per message. It is the baseline server (STARTTLS, AUTH PLAIN
// against a fixed credential, the same limits), but its Data reads the
// message and makes one SigV4-signed SES v2 SendEmail call with raw content
// (JSON with the message in base64, keep-alive net/http, the SDK's
// standalone aws/signer/v4, no middleware stack, no retries) and answers
// 250 only after a 200 with a MessageId. Nothing else: no policy, no header
// work, no logging, no metrics. A relay is measured against it.
type forwarding struct {
	srv *smtp.Server
	ln  net.Listener
}

// forwarder makes the SendEmail calls of a forwarding server.
type forwarder struct {
	url    string // endpoint + path
	host   string
	client *http.Client
	signer *v4.Signer
	creds  aws.Credentials
	region string
}

// newForwarder returns a forwarder to the SES endpoint (http or https;
// caPEM, when set, is the only CA trusted) with a connection pool of
// conns idle connections.
func newForwarder(endpoint, region string, caPEM []byte, conns int) (*forwarder, error) {
	tr := &http.Transport{
		MaxIdleConns:        2 * conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   false,
	}
	if caPEM != nil {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			return nil, errors.New("forwarding: no certificate in the CA file")
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	req, err := http.NewRequest(http.MethodPost, endpoint+sendEmailPath, nil)
	if err != nil {
		return nil, err
	}
	return &forwarder{
		url:    endpoint + sendEmailPath,
		host:   req.URL.Host,
		client: &http.Client{Transport: tr, Timeout: 30 * time.Second},
		signer: v4.NewSigner(),
		creds:  aws.Credentials{AccessKeyID: "bench", SecretAccessKey: "bench"},
		region: region,
	}, nil
}

// forwardBufs holds the message and the JSON body between calls.
var forwardBufs = sync.Pool{New: func() any { return new(forwardBuf) }}

type forwardBuf struct{ msg, body bytes.Buffer }

// send makes one SendEmail call for raw to rcpts and returns the MessageId.
func (f *forwarder) send(ctx context.Context, body *bytes.Buffer, raw []byte, rcpts []string) (string, error) {
	body.Reset()
	body.Grow(len(raw)*4/3 + 256)
	body.WriteString(`{"Content":{"Raw":{"Data":"`)
	enc := base64.StdEncoding.EncodedLen(len(raw))
	b := body.AvailableBuffer()[:enc]
	base64.StdEncoding.Encode(b, raw)
	body.Write(b)
	body.WriteString(`"}},"Destination":{"ToAddresses":[`)
	for i, r := range rcpts {
		if i > 0 {
			body.WriteByte(',')
		}
		rb, _ := json.Marshal(r)
		body.Write(rb)
	}
	body.WriteString(`]}}`)
	sum := sha256.Sum256(body.Bytes())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.url, bytes.NewReader(body.Bytes()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Content-Length", strconv.Itoa(body.Len()))
	if err := f.signer.SignHTTP(ctx, f.creds, req, hex.EncodeToString(sum[:]), "ses", f.region, time.Now()); err != nil {
		return "", err
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("SendEmail: %s", resp.Status)
	}
	var res struct{ MessageId string }
	if err := json.Unmarshal(out, &res); err != nil || res.MessageId == "" {
		return "", fmt.Errorf("SendEmail: no MessageId in %q", out)
	}
	return res.MessageId, nil
}

// startForwarding listens on addr and serves until Close.
func startForwarding(addr, user, pass string, fw *forwarder) (*forwarding, error) {
	s, ln, err := serveBench(addr, "forwarding.bench", smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &forwardingSession{baselineSession: baselineSession{user: user, pass: pass}, fw: fw}, nil
	}))
	if err != nil {
		return nil, err
	}
	return &forwarding{srv: s, ln: ln}, nil
}

// Addr is the address the server listens on.
func (f *forwarding) Addr() string { return f.ln.Addr().String() }

// Close stops listening and closes every connection.
func (f *forwarding) Close() error { return f.srv.Close() }

type forwardingSession struct {
	baselineSession
	fw    *forwarder
	rcpts []string
}

var (
	_ smtp.AuthSession = (*forwardingSession)(nil)

	errForwardFailed = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "SES call failed"}
)

func (s *forwardingSession) Rcpt(to string, o *smtp.RcptOptions) error {
	if err := s.baselineSession.Rcpt(to, o); err != nil {
		return err
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}

func (s *forwardingSession) Data(r io.Reader) error {
	if !s.authed {
		return errBaselineAuthRequired
	}
	b := forwardBufs.Get().(*forwardBuf)
	defer forwardBufs.Put(b)
	b.msg.Reset()
	if _, err := b.msg.ReadFrom(r); err != nil {
		return err
	}
	id, err := s.fw.send(context.Background(), &b.body, b.msg.Bytes(), s.rcpts)
	if err != nil {
		return errForwardFailed
	}
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Ok " + id}
}

func (s *forwardingSession) Reset() { s.rcpts = s.rcpts[:0] }

// forwardingMain runs the forwarding server as its own process. The first
// line on stdout is "listening on ADDR".
func forwardingMain(args []string) error {
	fs := flag.NewFlagSet("forwarding", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	user := fs.String("user", benchUser, "AUTH PLAIN username accepted")
	pass := fs.String("pass", benchPass, "AUTH PLAIN password accepted")
	endpoint := fs.String("ses", "", "the SES endpoint (http://HOST:PORT of bench sesstub)")
	ca := fs.String("ca", "", "PEM file of the only CA trusted for an https endpoint")
	conns := fs.Int("conns", 64, "idle connections kept to the endpoint")
	fs.Parse(args) //nolint:errcheck // ExitOnError
	if *endpoint == "" {
		return errors.New("forwarding: --ses is required")
	}
	var caPEM []byte
	if *ca != "" {
		var err error
		if caPEM, err = os.ReadFile(*ca); err != nil {
			return err
		}
	}
	fw, err := newForwarder(*endpoint, "us-east-1", caPEM, *conns)
	if err != nil {
		return err
	}
	f, err := startForwarding(*listen, *user, *pass, fw)
	if err != nil {
		return err
	}
	fmt.Printf("listening on %s\n", f.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return f.Close()
}
