package ses

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/sesv2/types"
	"github.com/aws/smithy-go"

	"github.com/sesrelay/sesrelay/relay"
)

// classify maps an SES (or SDK) error to the relay's Kind, and so to its
// SMTP reply (REFERENCE.md §8). It is the one place that knows SES error
// types and codes.
func classify(err error) relay.Kind {
	var se *relay.SendError
	if errors.As(err, &se) {
		return se.Kind
	}
	var (
		tooMany   *types.TooManyRequestsException
		limit     *types.LimitExceededException
		paused    *types.SendingPausedException
		mailFrom  *types.MailFromDomainNotVerifiedException
		notFound  *types.NotFoundException
		rejected  *types.MessageRejected
		badReq    *types.BadRequestException
		suspended *types.AccountSuspendedException
		internal  *types.InternalServiceErrorException
	)
	switch {
	case errors.As(err, &tooMany), errors.As(err, &limit):
		return relay.KindThrottled
	case errors.As(err, &paused):
		return relay.KindPaused
	case errors.As(err, &mailFrom), errors.As(err, &notFound):
		return relay.KindMisconfigured
	case errors.As(err, &rejected):
		msg := strings.ToLower(rejected.ErrorMessage())
		switch {
		case strings.Contains(msg, "not verified"):
			return relay.KindNotVerified
		case strings.Contains(msg, "too large"), strings.Contains(msg, "size"):
			return relay.KindTooLarge
		case strings.Contains(msg, "maximum sending rate"), strings.Contains(msg, "daily message quota"), strings.Contains(msg, "throttl"):
			return relay.KindThrottled
		}
		return relay.KindRejected
	case errors.As(err, &badReq):
		return relay.KindBadRequest
	case errors.As(err, &suspended):
		return relay.KindSuspended
	case errors.As(err, &internal):
		return relay.KindTransient
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		code := api.ErrorCode()
		switch {
		case code == "AccessDeniedException" || code == "AccessDenied":
			return relay.KindDelegationDenied
		case strings.Contains(code, "Throttl"), code == "TooManyRequestsException", code == "RequestLimitExceeded":
			return relay.KindThrottled
		case code == "UnrecognizedClientException", code == "InvalidClientTokenId", code == "SignatureDoesNotMatch",
			code == "ExpiredTokenException", code == "ExpiredToken", code == "MissingAuthenticationTokenException",
			code == "IncompleteSignature", code == "InvalidSignatureException":
			return relay.KindMisconfigured
		case code == "RequestEntityTooLarge", code == "RequestEntityTooLargeException":
			return relay.KindTooLarge
		}
	}
	var resp *awshttp.ResponseError
	if errors.As(err, &resp) {
		switch s := resp.HTTPStatusCode(); {
		case s == http.StatusTooManyRequests:
			return relay.KindThrottled
		case s == http.StatusRequestEntityTooLarge:
			return relay.KindTooLarge
		case s == http.StatusForbidden:
			return relay.KindDelegationDenied
		case s == http.StatusUnauthorized:
			return relay.KindMisconfigured
		case s >= 500:
			return relay.KindTransient
		case s >= 400:
			return relay.KindBadRequest
		}
	}
	var maxAttempts *retry.MaxAttemptsError
	if errors.As(err, &maxAttempts) {
		return relay.KindTransient
	}
	var netErr net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || errors.As(err, &netErr) {
		return relay.KindTransient
	}
	var credErr *aws.MissingRegionError
	if errors.As(err, &credErr) || strings.Contains(err.Error(), "failed to retrieve credentials") ||
		strings.Contains(err.Error(), "no EC2 IMDS role found") {
		return relay.KindMisconfigured
	}
	return relay.KindUnknown
}
