package doctor

import (
	"context"
	"errors"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	"github.com/aws/smithy-go"
)

// SESAPI is the part of the SES v2 client doctor calls: reads only.
type SESAPI interface {
	GetEmailIdentity(ctx context.Context, in *sesv2.GetEmailIdentityInput, optFns ...func(*sesv2.Options)) (*sesv2.GetEmailIdentityOutput, error)
	GetConfigurationSet(ctx context.Context, in *sesv2.GetConfigurationSetInput, optFns ...func(*sesv2.Options)) (*sesv2.GetConfigurationSetOutput, error)
	GetConfigurationSetEventDestinations(ctx context.Context, in *sesv2.GetConfigurationSetEventDestinationsInput, optFns ...func(*sesv2.Options)) (*sesv2.GetConfigurationSetEventDestinationsOutput, error)
}

var _ SESAPI = (*sesv2.Client)(nil)

// sesCache makes each SES call once per run: tenants and domains share
// identities and configuration sets.
type sesCache struct {
	o  Options
	mu sync.Mutex
	m  map[string]any
}

func newSESCache(o Options) *sesCache { return &sesCache{o: o, m: map[string]any{}} }

type cached[T any] struct {
	v   T
	err error
}

func call[T any](r *run, ctx context.Context, region, key string, f func(context.Context, SESAPI) (T, error)) (T, error) {
	c := r.ses
	k := region + " " + key
	c.mu.Lock()
	if v, ok := c.m[k]; ok {
		c.mu.Unlock()
		e := v.(cached[T])
		return e.v, e.err
	}
	c.mu.Unlock()
	var zero T
	e := cached[T]{}
	client, err := c.o.SES(region)
	if err != nil {
		e.v, e.err = zero, err
	} else {
		cctx, cancel := r.withTimeout(ctx)
		e.v, e.err = f(cctx, client)
		cancel()
	}
	c.mu.Lock()
	c.m[k] = e
	c.mu.Unlock()
	return e.v, e.err
}

func (r *run) getIdentity(ctx context.Context, region, name string) (*sesv2.GetEmailIdentityOutput, error) {
	return call(r, ctx, region, "identity "+name, func(ctx context.Context, c SESAPI) (*sesv2.GetEmailIdentityOutput, error) {
		return c.GetEmailIdentity(ctx, &sesv2.GetEmailIdentityInput{EmailIdentity: &name})
	})
}

func (r *run) getConfigurationSet(ctx context.Context, region, name string) (*sesv2.GetConfigurationSetOutput, error) {
	return call(r, ctx, region, "configuration-set "+name, func(ctx context.Context, c SESAPI) (*sesv2.GetConfigurationSetOutput, error) {
		return c.GetConfigurationSet(ctx, &sesv2.GetConfigurationSetInput{ConfigurationSetName: &name})
	})
}

func (r *run) getEventDestinations(ctx context.Context, region, name string) (*sesv2.GetConfigurationSetEventDestinationsOutput, error) {
	return call(r, ctx, region, "event-destinations "+name, func(ctx context.Context, c SESAPI) (*sesv2.GetConfigurationSetEventDestinationsOutput, error) {
		return c.GetConfigurationSetEventDestinations(ctx, &sesv2.GetConfigurationSetEventDestinationsInput{ConfigurationSetName: &name})
	})
}

// isNotFound reports an SES NotFoundException.
func isNotFound(err error) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorCode() == "NotFoundException"
}

// describeSESError turns an SES call error into one line: the SES error
// code and message when SES answered, with a hint for the usual causes;
// the SDK's text otherwise (no credentials, network).
func describeSESError(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		msg := ae.ErrorCode()
		if m := ae.ErrorMessage(); m != "" {
			msg += ": " + m
		}
		switch ae.ErrorCode() {
		case "AccessDeniedException", "AccessDenied":
			msg += " (doctor needs ses:GetEmailIdentity and ses:GetConfigurationSet*)"
		case "UnrecognizedClientException", "InvalidClientTokenId", "SignatureDoesNotMatch", "ExpiredTokenException":
			msg += " (check the AWS credentials)"
		}
		return msg
	}
	s := err.Error()
	// The SDK prefixes "operation error SESv2: Op, " to every error; the
	// check already says which call it was.
	if i := strings.Index(s, ", "); strings.HasPrefix(s, "operation error ") && i > 0 {
		s = s[i+2:]
	}
	return s
}
