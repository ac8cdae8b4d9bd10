package ses

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/sesrelay/sesrelay/relay"
	"github.com/sesrelay/sesrelay/relay/sestest"
)

var testAWS = aws.Config{
	Region:      "us-east-1",
	Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""),
}

func newSender(t *testing.T, endpoint string, mod func(*Options)) *Sender {
	t.Helper()
	o := Options{
		Region: "us-east-1", Endpoint: endpoint, MaxAttempts: 4, Timeout: 3 * time.Second,
		RetryAmbiguous: true, BackoffBase: 5 * time.Millisecond, BackoffMax: 20 * time.Millisecond,
		AWSConfig: &testAWS,
	}
	if mod != nil {
		mod(&o)
	}
	s, err := New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var req = &relay.Request{Tenant: "t", Recipients: []string{"a@example.org"}, Raw: []byte("Subject: x\r\n\r\nhi\r\n")}

func kindOf(t *testing.T, err error) relay.Kind {
	t.Helper()
	var se *relay.SendError
	if !errors.As(err, &se) {
		t.Fatalf("want a *relay.SendError, got %T %v", err, err)
	}
	return se.Kind
}

func TestRetryThrottlingThenSuccess(t *testing.T) {
	stub := sestest.New()
	defer stub.Close()
	stub.Respond = func(n int, _ *sestest.Request) sestest.Reply {
		if n <= 2 {
			return sestest.Reply{Status: 429, ErrorType: "TooManyRequestsException", Message: "Too many requests"}
		}
		return sestest.Reply{}
	}
	s := newSender(t, stub.URL, nil)
	res, err := s.Send(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if res.MessageID == "" || stub.Calls() != 3 || len(stub.Requests()) != 1 {
		t.Fatalf("id %q, %d calls, %d accepted", res.MessageID, stub.Calls(), len(stub.Requests()))
	}
}

func TestRetriedKinds(t *testing.T) {
	cases := []struct {
		name  string
		reply sestest.Reply
		calls int
		kind  relay.Kind
	}{
		{"429", sestest.Reply{Status: 429, ErrorType: "TooManyRequestsException"}, 4, relay.KindThrottled},
		{"limit", sestest.Reply{Status: 400, ErrorType: "LimitExceededException", Message: "Maximum sending rate exceeded"}, 4, relay.KindThrottled},
		{"max rate", sestest.Reply{Status: 400, ErrorType: "MessageRejected", Message: "Maximum sending rate exceeded."}, 4, relay.KindThrottled},
		{"daily quota", sestest.Reply{Status: 400, ErrorType: "MessageRejected", Message: "Daily message quota exceeded."}, 1, relay.KindThrottled},
		{"500", sestest.Reply{Status: 500, ErrorType: "InternalServiceErrorException"}, 4, relay.KindTransient},
		{"503", sestest.Reply{Status: 503}, 4, relay.KindTransient},
		{"rejected", sestest.Reply{Status: 400, ErrorType: "MessageRejected", Message: "Email address is not verified."}, 1, relay.KindNotVerified},
		{"bad request", sestest.Reply{Status: 400, ErrorType: "BadRequestException"}, 1, relay.KindBadRequest},
		{"denied", sestest.Reply{Status: 403, ErrorType: "AccessDeniedException"}, 1, relay.KindDelegationDenied},
		{"paused", sestest.Reply{Status: 400, ErrorType: "SendingPausedException"}, 1, relay.KindPaused},
		{"dropped", sestest.Reply{Drop: true}, 2, relay.KindAmbiguous},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			stub := sestest.New()
			defer stub.Close()
			stub.Respond = func(int, *sestest.Request) sestest.Reply { return tc.reply }
			s := newSender(t, stub.URL, nil)
			_, err := s.Send(context.Background(), req)
			if err == nil {
				t.Fatal("no error")
			}
			if k := kindOf(t, err); k != tc.kind {
				t.Fatalf("kind %v, want %v (%v)", k, tc.kind, err)
			}
			if stub.Calls() != tc.calls {
				t.Fatalf("%d calls, want %d", stub.Calls(), tc.calls)
			}
			if relay.Ambiguous(err) != (tc.kind == relay.KindAmbiguous) {
				t.Fatalf("Ambiguous(%v) wrong", err)
			}
			if len(stub.Requests()) != 0 {
				t.Fatal("accepted")
			}
		})
	}
}

func TestAmbiguousNotRetriedWhenDisabled(t *testing.T) {
	stub := sestest.New()
	defer stub.Close()
	stub.Respond = func(n int, _ *sestest.Request) sestest.Reply {
		if n == 1 {
			return sestest.Reply{Drop: true}
		}
		return sestest.Reply{}
	}
	s := newSender(t, stub.URL, func(o *Options) { o.RetryAmbiguous = false })
	_, err := s.Send(context.Background(), req)
	if kindOf(t, err) != relay.KindAmbiguous || stub.Calls() != 1 {
		t.Fatalf("%v after %d calls", err, stub.Calls())
	}
	// Enabled: one retry, which succeeds (SES may now hold a duplicate).
	stub2 := sestest.New()
	defer stub2.Close()
	stub2.Respond = stub.Respond
	s2 := newSender(t, stub2.URL, nil)
	if _, err := s2.Send(context.Background(), req); err != nil || stub2.Calls() != 2 {
		t.Fatalf("%v after %d calls", err, stub2.Calls())
	}
}

func TestBudget(t *testing.T) {
	stub := sestest.New()
	defer stub.Close()
	release := make(chan struct{})
	defer close(release)
	stub.Respond = func(int, *sestest.Request) sestest.Reply {
		select {
		case <-release:
		case <-time.After(2 * time.Second):
		}
		return sestest.Reply{}
	}
	s := newSender(t, stub.URL, func(o *Options) { o.Timeout = 300 * time.Millisecond })
	start := time.Now()
	_, err := s.Send(context.Background(), req)
	if d := time.Since(start); d > time.Second {
		t.Fatalf("took %v, budget 300ms", d)
	}
	// The request was written and no answer came: ambiguous, no time to retry.
	if kindOf(t, err) != relay.KindAmbiguous || stub.Calls() != 1 {
		t.Fatalf("%v after %d calls", err, stub.Calls())
	}

	// Throttled forever: the budget bounds the attempts too.
	stub2 := sestest.New()
	defer stub2.Close()
	stub2.Respond = func(int, *sestest.Request) sestest.Reply {
		return sestest.Reply{Status: 429, ErrorType: "TooManyRequestsException"}
	}
	s2 := newSender(t, stub2.URL, func(o *Options) {
		o.Timeout, o.MaxAttempts, o.BackoffBase, o.BackoffMax = 400*time.Millisecond, 10, 100*time.Millisecond, time.Second
	})
	start = time.Now()
	_, err = s2.Send(context.Background(), req)
	if d := time.Since(start); d > 800*time.Millisecond {
		t.Fatalf("took %v, budget 400ms", d)
	}
	if kindOf(t, err) != relay.KindThrottled {
		t.Fatal(err)
	}
}

// countingDialer fails the first fail dials with connection refused, then
// dials addr.
type countingDialer struct {
	fail  int32
	dials atomic.Int32
	addr  string
}

func (c *countingDialer) dial(ctx context.Context, network, _ string) (net.Conn, error) {
	if c.dials.Add(1) <= c.fail {
		return nil, &net.OpError{Op: "dial", Net: network, Err: errors.New("connect: connection refused")}
	}
	var d net.Dialer
	return d.DialContext(ctx, network, c.addr)
}

func TestConnectionErrorsBeforeSending(t *testing.T) {
	stub := sestest.New()
	defer stub.Close()
	cd := &countingDialer{fail: 2, addr: strings.TrimPrefix(stub.URL, "http://")}
	client := &http.Client{Transport: &http.Transport{DialContext: cd.dial}}
	s := newSender(t, stub.URL, func(o *Options) { o.HTTPClient = client })
	if _, err := s.Send(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if cd.dials.Load() != 3 || stub.Calls() != 1 || len(stub.Requests()) != 1 {
		t.Fatalf("%d dials, %d calls", cd.dials.Load(), stub.Calls())
	}

	// Refused forever: transient, not ambiguous, max_attempts dials.
	cd2 := &countingDialer{fail: 100}
	s2 := newSender(t, "http://sesrelay.invalid", func(o *Options) {
		o.HTTPClient = &http.Client{Transport: &http.Transport{DialContext: cd2.dial}}
	})
	_, err := s2.Send(context.Background(), req)
	if kindOf(t, err) != relay.KindTransient || cd2.dials.Load() != 4 {
		t.Fatalf("%v after %d dials", err, cd2.dials.Load())
	}

	// A TLS handshake that fails (a plain HTTP server on an https URL)
	// sent nothing either.
	s3 := newSender(t, strings.Replace(stub.URL, "http://", "https://", 1), nil)
	before := stub.Calls()
	_, err = s3.Send(context.Background(), req)
	if kindOf(t, err) != relay.KindTransient || stub.Calls() != before {
		t.Fatalf("%v (%d calls)", err, stub.Calls()-before)
	}
}

func TestBackoffFullJitter(t *testing.T) {
	for attempt := 1; attempt <= 12; attempt++ {
		ceil := DefaultBackoffBase << (attempt - 1)
		if ceil > DefaultBackoffMax || attempt > 8 {
			ceil = DefaultBackoffMax
		}
		for i := 0; i < 50; i++ {
			if d := backoff(DefaultBackoffBase, DefaultBackoffMax, attempt); d < 0 || d > ceil {
				t.Fatalf("attempt %d: %v outside [0, %v]", attempt, d, ceil)
			}
		}
	}
}

func TestMaxSendRate(t *testing.T) {
	stub := sestest.New()
	defer stub.Close()
	s := newSender(t, stub.URL, nil)
	r, err := s.MaxSendRate(context.Background())
	if err != nil || r != 14 {
		t.Fatalf("%v %v", r, err)
	}
}

func TestReconfigure(t *testing.T) {
	stub := sestest.New()
	defer stub.Close()
	stub.Respond = func(int, *sestest.Request) sestest.Reply {
		return sestest.Reply{Status: 503}
	}
	s := newSender(t, "http://127.0.0.1:1", nil)
	o := *s.opts.Load()
	o.Endpoint, o.MaxAttempts = stub.URL, 2
	s.Reconfigure(o)
	_, err := s.Send(context.Background(), req)
	if kindOf(t, err) != relay.KindTransient || stub.Calls() != 2 {
		t.Fatalf("%v after %d calls", err, stub.Calls())
	}
}

// TestSequentialCallsShareOneConnection: every call reuses the one pooled
// connection. smithy-go closes the request body when the answer arrives,
// and net/http used to see that as a failed write and drop the connection
// (keepAliveBodies); a few hundred calls always hit it.
func TestSequentialCallsShareOneConnection(t *testing.T) {
	stub := sestest.New()
	defer stub.Close()
	s := newSender(t, stub.URL, nil)
	const calls = 300
	for i := 0; i < calls; i++ {
		if _, err := s.Send(context.Background(), req); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if stub.Calls() != calls || stub.Conns() != 1 {
		t.Fatalf("%d calls over %d connections, want %d over 1", stub.Calls(), stub.Conns(), calls)
	}
	if got := senderMetric(t, s, "sesrelay_ses_connections_opened_total"); len(got) != 1 || got["us-east-1"] != 1 {
		t.Fatalf("sesrelay_ses_connections_opened_total = %v, want us-east-1: 1", got)
	}
}
