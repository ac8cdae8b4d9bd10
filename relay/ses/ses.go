// Package ses adapts the Amazon SES v2 API (SendEmail with raw content) to
// relay.Sender. One client per region is built once and reused, with an HTTP
// connection pool sized for the relay's concurrency.
package ses

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	"github.com/aws/aws-sdk-go-v2/service/sesv2/types"

	"github.com/sesrelay/sesrelay/config"
	"github.com/sesrelay/sesrelay/relay"
)

// Options configures a Sender.
type Options struct {
	Region       string
	Endpoint     string // BaseEndpoint override ("" = the AWS endpoint)
	MaxAttempts  int    // SDK attempts per call, retries included
	Timeout      time.Duration
	MaxIdleConns int
	// RegionEndpoints overrides the endpoint per region.
	RegionEndpoints map[string]string
	// AWSConfig, when set, is used instead of the default credential
	// chain (tests).
	AWSConfig *aws.Config
	// HTTPClient, when set, replaces the pooled client (tests).
	HTTPClient aws.HTTPClient
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
	}
}

// Sender sends through SES v2. It is safe for concurrent use.
type Sender struct {
	opts Options
	base aws.Config

	mu      sync.Mutex
	clients map[string]*sesv2.Client
}

var _ relay.Sender = (*Sender)(nil)

// New loads the default AWS credential chain (environment, shared config,
// web identity / IRSA, instance role) unless opts.AWSConfig is set.
func New(ctx context.Context, opts Options) (*Sender, error) {
	var base aws.Config
	if opts.AWSConfig != nil {
		base = opts.AWSConfig.Copy()
	} else {
		var err error
		base, err = awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(opts.Region))
		if err != nil {
			return nil, fmt.Errorf("ses: loading AWS configuration: %w", err)
		}
	}
	if opts.HTTPClient != nil {
		base.HTTPClient = opts.HTTPClient
	} else {
		n := opts.MaxIdleConns
		if n <= 0 {
			n = 64
		}
		base.HTTPClient = awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
			t.MaxIdleConns = n * 2
			t.MaxIdleConnsPerHost = n
			t.IdleConnTimeout = 90 * time.Second
		})
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 3
	}
	return &Sender{opts: opts, base: base, clients: map[string]*sesv2.Client{}}, nil
}

// Client returns the (cached) client for region ("" = the default region).
func (s *Sender) Client(region string) *sesv2.Client {
	if region == "" {
		region = s.opts.Region
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.clients[region]; ok {
		return c
	}
	endpoint := s.opts.Endpoint
	if e, ok := s.opts.RegionEndpoints[region]; ok {
		endpoint = e
	}
	c := sesv2.NewFromConfig(s.base, func(o *sesv2.Options) {
		o.Region = region
		o.RetryMaxAttempts = s.opts.MaxAttempts
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
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

// Send calls SendEmail within the ses.timeout budget.
func (s *Sender) Send(ctx context.Context, req *relay.Request) (*relay.Result, error) {
	if s.opts.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.opts.Timeout)
		defer cancel()
	}
	out, err := s.Client(req.Region).SendEmail(ctx, Input(req))
	if err != nil {
		return nil, err
	}
	return &relay.Result{MessageID: aws.ToString(out.MessageId)}, nil
}
