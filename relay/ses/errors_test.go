package ses

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/sesv2/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/sesrelay/sesrelay/relay"
)

func httpErr(status int) error {
	return &awshttp.ResponseError{ResponseError: &smithyhttp.ResponseError{
		Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}},
		Err:      errors.New("x"),
	}}
}

func api(code string) error { return &smithy.GenericAPIError{Code: code, Message: "m"} }

// Every SES error the relay knows, its Kind and the reply the client gets
// (REFERENCE.md §8).
func TestClassify(t *testing.T) {
	cases := []struct {
		name string
		err  error
		kind relay.Kind
		code int
		enh  [3]int
	}{
		{"too many requests", &types.TooManyRequestsException{}, relay.KindThrottled, 451, [3]int{4, 3, 2}},
		{"limit exceeded", &types.LimitExceededException{}, relay.KindThrottled, 451, [3]int{4, 3, 2}},
		{"paused", &types.SendingPausedException{}, relay.KindPaused, 451, [3]int{4, 3, 2}},
		{"mail from not verified", &types.MailFromDomainNotVerifiedException{}, relay.KindMisconfigured, 451, [3]int{4, 3, 5}},
		{"not found", &types.NotFoundException{}, relay.KindMisconfigured, 451, [3]int{4, 3, 5}},
		{"address not verified", &types.MessageRejected{Message: aws.String("Email address is not verified.")}, relay.KindNotVerified, 550, [3]int{5, 7, 1}},
		{"too large", &types.MessageRejected{Message: aws.String("Message too large")}, relay.KindTooLarge, 552, [3]int{5, 3, 4}},
		{"max rate", &types.MessageRejected{Message: aws.String("Maximum sending rate exceeded.")}, relay.KindThrottled, 451, [3]int{4, 3, 2}},
		{"daily quota", &types.MessageRejected{Message: aws.String("Daily message quota exceeded.")}, relay.KindThrottled, 451, [3]int{4, 3, 2}},
		{"rejected", &types.MessageRejected{Message: aws.String("Duplicate header 'Subject'.")}, relay.KindRejected, 554, [3]int{5, 6, 0}},
		{"bad request", &types.BadRequestException{}, relay.KindBadRequest, 554, [3]int{5, 6, 0}},
		{"suspended", &types.AccountSuspendedException{}, relay.KindSuspended, 554, [3]int{5, 3, 2}},
		{"internal", &types.InternalServiceErrorException{}, relay.KindTransient, 451, [3]int{4, 3, 0}},
		{"access denied", api("AccessDeniedException"), relay.KindDelegationDenied, 550, [3]int{5, 7, 1}},
		{"throttling code", api("ThrottlingException"), relay.KindThrottled, 451, [3]int{4, 3, 2}},
		{"bad signature", api("SignatureDoesNotMatch"), relay.KindMisconfigured, 451, [3]int{4, 3, 5}},
		{"expired token", api("ExpiredTokenException"), relay.KindMisconfigured, 451, [3]int{4, 3, 5}},
		{"entity too large", api("RequestEntityTooLarge"), relay.KindTooLarge, 552, [3]int{5, 3, 4}},
		{"http 429", httpErr(429), relay.KindThrottled, 451, [3]int{4, 3, 2}},
		{"http 413", httpErr(413), relay.KindTooLarge, 552, [3]int{5, 3, 4}},
		{"http 403", httpErr(403), relay.KindDelegationDenied, 550, [3]int{5, 7, 1}},
		{"http 401", httpErr(401), relay.KindMisconfigured, 451, [3]int{4, 3, 5}},
		{"http 503", httpErr(503), relay.KindTransient, 451, [3]int{4, 3, 0}},
		{"http 400", httpErr(400), relay.KindBadRequest, 554, [3]int{5, 6, 0}},
		{"retry quota", &retry.MaxAttemptsError{Attempt: 3, Err: errors.New("x")}, relay.KindTransient, 451, [3]int{4, 3, 0}},
		{"deadline", fmt.Errorf("send: %w", context.DeadlineExceeded), relay.KindTransient, 451, [3]int{4, 3, 0}},
		{"network", &net.OpError{Op: "dial", Err: errors.New("refused")}, relay.KindTransient, 451, [3]int{4, 3, 0}},
		{"no region", &aws.MissingRegionError{}, relay.KindMisconfigured, 451, [3]int{4, 3, 5}},
		{"no credentials", errors.New("failed to retrieve credentials: none"), relay.KindMisconfigured, 451, [3]int{4, 3, 5}},
		{"unknown", errors.New("what"), relay.KindUnknown, 451, [3]int{4, 3, 0}},
		{"stated", &relay.SendError{Kind: relay.KindRateLimited, Err: errors.New("x")}, relay.KindRateLimited, 451, [3]int{4, 7, 0}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k := classify(fmt.Errorf("operation SendEmail: %w", tc.err))
			if k != tc.kind {
				t.Fatalf("kind %v, want %v", k, tc.kind)
			}
			r := relay.ReplyForSendError(&relay.SendError{Kind: k, Err: tc.err}, "ref")
			if r.Code != tc.code || [3]int(r.EnhancedCode) != tc.enh {
				t.Fatalf("reply %d %v, want %d %v", r.Code, r.EnhancedCode, tc.code, tc.enh)
			}
		})
	}
}
