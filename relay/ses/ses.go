// Package ses adapts the Amazon SES v2 API (SendEmail with raw content) to
// relay.Sender. One client per region is built once and reused, with an HTTP
// connection pool sized for the relay's concurrency.
//
// Retries are the relay's, not the SDK's (see Send): the SDK retryer is
// replaced by one that never retries and has no client-side retry quota
// (ratelimit.None), so that every retry decision is taken here, knowing
// whether the failed request may have reached SES.
package ses

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	"github.com/aws/aws-sdk-go-v2/service/sesv2/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sesrelay/sesrelay/config"
	"github.com/sesrelay/sesrelay/relay"
)

// Default backoff between attempts: full jitter, the cap doubling from
// BackoffBase up to BackoffMax.
const (
	DefaultBackoffBase = 100 * time.Millisecond
	DefaultBackoffMax  = 5 * time.Second
)

// Options configures a Sender.
type Options struct {
	Region   string
	Endpoint string // BaseEndpoint override ("" = the AWS endpoint)
	// MaxAttempts is the number of SendEmail calls per message, retries
	// included (ses.max_attempts; 1 = no retry).
	MaxAttempts int
	// Timeout is the budget of one message, every attempt and backoff
	// included (ses.timeout).
	Timeout      time.Duration
	MaxIdleConns int
	// RegionEndpoints overrides the endpoint per region.
	RegionEndpoints map[string]string
	// EndpointID is the SES multi-region endpoint for requests that name
	// none (ses.endpoint_id; regions.go says which requests).
	EndpointID string
	// Regions is the relay-side failover order (ses.regions); FailoverAfter
	// and ProbeEvery are ses.failover.after and .probe_every.
	Regions       []string
	FailoverAfter int
	ProbeEvery    time.Duration
	// RetryAmbiguous allows one more attempt after a failure that may
	// have sent the message (ses.retry_ambiguous): the connection dropped
	// after the whole request was written. A second ambiguous failure is
	// never retried.
	RetryAmbiguous bool
	// BackoffBase and BackoffMax shape the backoff (0: the defaults).
	BackoffBase, BackoffMax time.Duration
	// AWSConfig, when set, is used instead of the default credential
	// chain (tests).
	AWSConfig *aws.Config
	// HTTPClient, when set, replaces the pooled client (tests).
	HTTPClient aws.HTTPClient
	// Logger receives region health changes (nil: none). Set at New only.
	Logger *zap.Logger
}

// OptionsFromConfig takes the ses.* keys.
func OptionsFromConfig(c *config.SES) Options {
	return Options{
		Region:          c.Region,
		Endpoint:        c.Endpoint,
		MaxAttempts:     c.MaxAttempts,
		Timeout:         c.Timeout,
		MaxIdleConns:    c.MaxIdleConns,
		RegionEndpoints: c.RegionEndpoints,
		RetryAmbiguous:  c.RetryAmbiguous,
		EndpointID:      c.EndpointID,
		Regions:         c.Regions,
		FailoverAfter:   c.Failover.After,
		ProbeEvery:      c.Failover.ProbeEvery,
	}
}

// Sender sends through SES v2. It is safe for concurrent use.
type Sender struct {
	base aws.Config
	opts atomic.Pointer[Options]

	mu      sync.Mutex
	clients map[string]*sesv2.Client

	health *regionHealth // of Options.Regions (regions.go)

	metrics *metrics
}

var _ relay.Sender = (*Sender)(nil)

// New loads the default AWS credential chain (environment, shared config,
// web identity / IRSA, instance role) unless opts.AWSConfig is set.
func New(ctx context.Context, opts Options) (*Sender, error) {
	opts = withDefaults(opts)
	httpClient := opts.HTTPClient
	if httpClient == nil {
		n := opts.MaxIdleConns
		httpClient = awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
			t.MaxIdleConns = n * 2
			t.MaxIdleConnsPerHost = n
			t.IdleConnTimeout = 90 * time.Second
			// A small SendEmail request (headers and a body produced whole,
			// stream.go) goes out in one write(2).
			t.WriteBufferSize = 64 << 10
		})
	}
	var base aws.Config
	if opts.AWSConfig != nil {
		base = opts.AWSConfig.Copy()
		base.HTTPClient = httpClient
	} else {
		// The pooled client goes in through LoadDefaultConfig, which then
		// applies shared-config settings to it (AWS_CA_BUNDLE, ...).
		var err error
		base, err = awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(opts.Region), awsconfig.WithHTTPClient(httpClient))
		if err != nil {
			return nil, fmt.Errorf("ses: loading AWS configuration: %w", err)
		}
	}
	base.HTTPClient = keepAliveBodies{base.HTTPClient}
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	s := &Sender{base: base, clients: map[string]*sesv2.Client{}, health: newRegionHealth(log), metrics: newMetrics()}
	s.setOptions(opts)
	return s, nil
}

// withDefaults fills the zero fields of o that are configuration keys
// with config.Defaults (the one place the defaults of ses.* live), for
// callers that build Options by hand, and the backoff with its defaults.
func withDefaults(o Options) Options {
	d := OptionsFromConfig(&defaultSES)
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = d.MaxAttempts
	}
	if o.MaxIdleConns <= 0 {
		o.MaxIdleConns = d.MaxIdleConns
	}
	if o.FailoverAfter <= 0 {
		o.FailoverAfter = d.FailoverAfter
	}
	if o.ProbeEvery <= 0 {
		o.ProbeEvery = d.ProbeEvery
	}
	if o.BackoffBase <= 0 {
		o.BackoffBase = DefaultBackoffBase
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = DefaultBackoffMax
	}
	return o
}

var defaultSES = config.Defaults().SES

func (s *Sender) setOptions(o Options) {
	o = withDefaults(o)
	o.AWSConfig, o.HTTPClient, o.Logger = nil, nil, nil
	s.opts.Store(&o)
}

// Reconfigure applies reloaded ses.* keys: the retry settings and the
// timeout take effect for the next message; a changed region or endpoint
// drops the cached clients. The credential chain and the connection pool
// stay (they need a restart).
func (s *Sender) Reconfigure(o Options) {
	old := s.opts.Load()
	o.MaxIdleConns = old.MaxIdleConns
	if o.BackoffBase <= 0 {
		o.BackoffBase = old.BackoffBase
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = old.BackoffMax
	}
	s.setOptions(o)
	if o.Region != old.Region || o.Endpoint != old.Endpoint || !sameMap(o.RegionEndpoints, old.RegionEndpoints) {
		s.mu.Lock()
		clear(s.clients)
		s.mu.Unlock()
	}
}

func sameMap(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// noRetries is the SDK retryer: one attempt, no retry quota. The SDK's
// standard retryer would retry on its own (3 attempts, up to 20 s of
// backoff, outside the relay's budget) and a client-side token bucket
// would turn an SES throttling episode into local "retry quota exceeded"
// failures; Send does both jobs itself.
func noRetries() aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = 1
		o.RateLimiter = ratelimit.None
		o.Retryables = []retry.IsErrorRetryable{retry.IsErrorRetryableFunc(func(error) aws.Ternary { return aws.FalseTernary })}
	})
}

// Client returns the (cached) client for region ("" = the default region).
func (s *Sender) Client(region string) *sesv2.Client {
	o := s.opts.Load()
	if region == "" {
		region = o.Region
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.clients[region]; ok {
		return c
	}
	endpoint := o.Endpoint
	if e, ok := o.RegionEndpoints[region]; ok {
		endpoint = e
	}
	c := sesv2.NewFromConfig(s.base, func(so *sesv2.Options) {
		so.Region = region
		so.Retryer = noRetries()
		so.RetryMaxAttempts = 1
		// A fresh slice: the base config's options are shared by every client.
		so.APIOptions = append(slices.Clip(so.APIOptions), addStreamRawContent)
		if endpoint != "" {
			so.BaseEndpoint = aws.String(endpoint)
		}
	})
	s.clients[region] = c
	return c
}

// Input builds the SendEmail input for req. Exported so `explain` can show
// exactly what would be sent.
func Input(req *relay.Request) *sesv2.SendEmailInput {
	in := &sesv2.SendEmailInput{
		Content:     &types.EmailContent{Raw: &types.RawMessage{Data: req.Raw}},
		Destination: &types.Destination{ToAddresses: req.Recipients},
	}
	if req.ConfigurationSet != "" {
		in.ConfigurationSetName = aws.String(req.ConfigurationSet)
	}
	for _, t := range req.Tags {
		in.EmailTags = append(in.EmailTags, types.MessageTag{Name: aws.String(t.Name), Value: aws.String(t.Value)})
	}
	if req.IdentityARN != "" {
		in.FromEmailAddressIdentityArn = aws.String(req.IdentityARN)
	}
	if req.SESTenant != "" {
		in.TenantName = aws.String(req.SESTenant)
	}
	if req.EndpointID != "" {
		in.EndpointId = aws.String(req.EndpointID)
	}
	if req.DisableTracking {
		in.ConfigurationOverrides = &types.ConfigurationOverrides{Tracking: &types.TrackingConfigurationOverrides{
			ClickTrackingEnabled: types.FeatureStatusDisabled,
			OpenTrackingEnabled:  types.FeatureStatusDisabled,
		}}
	}
	return in
}

// Send calls SendEmail within the ses.timeout budget, in rounds of at
// most ses.max_attempts:
//
//   - An answer from SES that says the message was not taken and that a
//     later call can succeed is retried: throttling (429,
//     TooManyRequestsException, LimitExceededException, MessageRejected
//     "Maximum sending rate exceeded") and 5xx.
//   - A failure before the whole request was written (connection refused,
//     DNS, TLS handshake, connection reset while writing) certainly did not
//     send and is retried.
//   - A connection lost after the whole request was written, before an
//     answer, is ambiguous: SES may have accepted the message. It is
//     retried at most once (ses.retry_ambiguous), in the same region only,
//     accepting the risk of a duplicate; the client would retry after a
//     451 anyway, with the same risk and a longer delay. A second
//     ambiguous failure, or the budget running out while waiting for an
//     answer, returns a KindAmbiguous *relay.SendError (451 4.3.0).
//   - Every other answer (4xx rejections, credentials, configuration) is
//     final at once.
//
// With relay-side failover (ses.regions, see regions.go) a round tries
// each candidate region once, in order: a failure that certainly did not
// send (tryElsewhere) moves the message to the next region at once; the
// backoff comes between rounds. With one region a round is one call.
//
// Backoff is exponential with full jitter. A round is not started when
// its backoff would end past the budget: the last error is returned then.
// Errors are *relay.SendError carrying the kind of the last failure.
func (s *Sender) Send(ctx context.Context, req *relay.Request) (res *relay.Result, err error) {
	start := time.Now()
	o := s.opts.Load()
	if o.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Timeout)
		defer cancel()
	}
	rt := s.route(o, req)
	in := Input(req)
	// The message goes to the SDK by the context and is streamed into the
	// request body (stream.go); the input carries an empty placeholder.
	in.Content.Raw = &types.RawMessage{Data: emptyData}
	ctx = withRaw(ctx, req.Raw)
	if rt.endpointID != "" {
		in.EndpointId = aws.String(rt.endpointID)
	}
	region, next := rt.regions[0], 1
	defer func() { s.metrics.call(cmp.Or(region, o.Region), err, time.Since(start)) }()
	pinned := false // after an ambiguous failure the message stays where it may be
	ambiguousRetried := false
	for attempt, round := 1, 1; ; attempt++ {
		tr := &attemptTrace{opened: s.metrics.opened.WithLabelValues(cmp.Or(region, o.Region))}
		out, err := s.Client(region).SendEmail(httptrace.WithClientTrace(ctx, tr.clientTrace()), in)
		if err == nil {
			err = acceptance(out)
		}
		if err == nil {
			s.observe(o, rt, region, false)
			return &relay.Result{MessageID: aws.ToString(out.MessageId), Region: region}, nil
		}
		kind, retryable := classifyAttempt(ctx, err, tr)
		elsewhere := tryElsewhere(kind, retryable)
		s.observe(o, rt, region, elsewhere || kind == relay.KindAmbiguous)
		final := func() error {
			if attempt > 1 {
				err = fmt.Errorf("after %d attempts: %w", attempt, err)
			}
			if len(rt.regions) > 1 {
				err = fmt.Errorf("region %s: %w", region, err)
			}
			return &relay.SendError{Kind: kind, Err: err}
		}
		if elsewhere && !pinned && next < len(rt.regions) && ctx.Err() == nil {
			region, next = rt.regions[next], next+1
			continue
		}
		if !retryable || round >= o.MaxAttempts {
			return nil, final()
		}
		if kind == relay.KindAmbiguous {
			if !o.RetryAmbiguous || ambiguousRetried {
				return nil, final()
			}
			ambiguousRetried, pinned = true, true
		}
		delay := backoff(o.BackoffBase, o.BackoffMax, round)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= delay {
			return nil, final()
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, final()
		case <-t.C:
		}
		round++
		if !pinned {
			region, next = rt.regions[0], 1
		}
	}
}

// backoff is the full-jitter delay before attempt+1: uniform in
// [0, min(max, base·2^(attempt-1))].
func backoff(base, max time.Duration, attempt int) time.Duration {
	ceil := base
	for i := 1; i < attempt && ceil < max; i++ {
		ceil *= 2
	}
	if ceil > max {
		ceil = max
	}
	return rand.N(ceil + 1)
}

// attemptTrace records how far one HTTP attempt got.
type attemptTrace struct {
	wrote  atomic.Bool        // the whole request was handed to the connection
	opened prometheus.Counter // counts new connections
}

func (t *attemptTrace) clientTrace() *httptrace.ClientTrace {
	return &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) {
			if !info.Reused {
				t.opened.Inc()
			}
		},
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			// The transport may retry internally on a new connection when
			// nothing was written; the last report wins.
			t.wrote.Store(info.Err == nil)
		},
	}
}

// errNoAcceptance is a 2xx answer that is not an acceptance.
type errNoAcceptance struct{ reason string }

func (e *errNoAcceptance) Error() string {
	return "SendEmail answered " + e.reason + ": SES may or may not have queued the message"
}

// acceptance checks that a SendEmail answer the SDK decoded as a success
// is one: a non-empty message id, and no x-amzn-ErrorType header. Any
// HTTP server that answers 200 at the endpoint (a wrong ses.endpoint, an
// intercepting proxy) decodes as an empty success; a 250 then would make
// the client discard mail SES never queued.
func acceptance(out *sesv2.SendEmailOutput) error {
	if raw, ok := awsmiddleware.GetRawResponse(out.ResultMetadata).(*smithyhttp.Response); ok {
		if t := raw.Header.Get("X-Amzn-Errortype"); t != "" {
			return &errNoAcceptance{fmt.Sprintf("HTTP %d with x-amzn-ErrorType %q", raw.StatusCode, t)}
		}
	}
	if aws.ToString(out.MessageId) == "" {
		return &errNoAcceptance{"with no MessageId"}
	}
	return nil
}

// classifyAttempt says what a failed attempt was and whether another
// attempt may follow.
func classifyAttempt(ctx context.Context, err error, tr *attemptTrace) (relay.Kind, bool) {
	var na *errNoAcceptance
	if errors.As(err, &na) {
		// Something answered 2xx: SES may have taken the message. Never
		// retried, here or in another region.
		return relay.KindAmbiguous, false
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.HTTPStatusCode() > 0 {
		// SES answered.
		status := re.HTTPStatusCode()
		if status < 300 {
			// Accepted, but the answer could not be read: very likely
			// sent. Not retried.
			return relay.KindAmbiguous, false
		}
		kind := classify(err)
		switch {
		case kind == relay.KindThrottled:
			// A daily quota does not come back within the budget.
			return kind, !strings.Contains(strings.ToLower(err.Error()), "daily")
		case kind == relay.KindTransient && status >= 500:
			return kind, true
		}
		return kind, false
	}
	if ctx.Err() != nil {
		// The budget ran out during the attempt.
		if tr.wrote.Load() {
			return relay.KindAmbiguous, false
		}
		return relay.KindTransient, false
	}
	var send *smithyhttp.RequestSendError
	if errors.As(err, &send) {
		if tr.wrote.Load() {
			return relay.KindAmbiguous, true
		}
		return relay.KindTransient, true
	}
	// Nothing was sent (signing, credentials, serialization): final.
	return classify(err), false
}

// MaxSendRate returns the account's SES sending rate (recipients per
// second) in the default region, from GetAccount: what
// ses.max_send_rate: auto uses. GetAccount is read-only, so any failure
// is tried again, up to 3 attempts within ctx.
func (s *Sender) MaxSendRate(ctx context.Context) (float64, error) {
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		var out *sesv2.GetAccountOutput
		out, err = s.Client("").GetAccount(ctx, &sesv2.GetAccountInput{})
		if err == nil {
			if out.SendQuota == nil {
				return 0, errors.New("ses: GetAccount returned no SendQuota")
			}
			return out.SendQuota.MaxSendRate, nil
		}
		if ctx.Err() != nil {
			break
		}
		t := time.NewTimer(backoff(200*time.Millisecond, 2*time.Second, attempt))
		select {
		case <-ctx.Done():
			t.Stop()
			return 0, fmt.Errorf("ses: GetAccount: %w", err)
		case <-t.C:
		}
	}
	return 0, fmt.Errorf("ses: GetAccount: %w", err)
}

// keepAliveBodies keeps HTTP connections to SES alive across calls.
//
// smithy-go wraps each request body in a reader whose WriteTo returns
// io.EOF once the body is closed, and it closes the body as soon as the
// response headers arrive. net/http writes a body of known length through a
// LimitReader straight to the socket, then drains the rest with
// io.Copy(io.Discard, body), which uses WriteTo. SES can answer between the
// two steps (it has the whole request); the drain then fails with io.EOF,
// net/http takes that for a write error and closes the connection after a
// successful call. One sequential call in 30 to 50 paid a new TCP (and
// TLS) handshake that way (TestSequentialCallsShareOneConnection). Hiding WriteTo makes the drain use Read, whose io.EOF
// on a closed body is an ordinary end of stream.
type keepAliveBodies struct{ aws.HTTPClient }

// readOnlyBody hides every method of the body but Read and Close.
type readOnlyBody struct{ io.ReadCloser }

func (c keepAliveBodies) Do(r *http.Request) (*http.Response, error) {
	if b, ok := r.Context().Value(bodyKey{}).([]byte); ok && r.Body != nil && r.ContentLength == int64(len(b)) {
		// A body produced whole (stream.go): net/http sends an
		// io.NopCloser(*bytes.Reader) with its headers in one write, and
		// drains it without io.EOF.
		r.Body.Close()
		r.Body = io.NopCloser(bytes.NewReader(b))
		return c.HTTPClient.Do(r)
	}
	if r.Body != nil && r.Body != http.NoBody {
		if _, ok := r.Body.(io.WriterTo); ok {
			r.Body = readOnlyBody{r.Body}
		}
	}
	return c.HTTPClient.Do(r)
}
