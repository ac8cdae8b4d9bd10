package relay

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/emersion/go-smtp"

	"github.com/sesrelay/sesrelay/headers"
)

// This file is the only place that builds *smtp.SMTPError values. go-smtp
// matches them with a type assertion (not errors.As), so every error that
// reaches go-smtp from a Session method must be one of these, unwrapped:
// anything else becomes a permanent 554 carrying internal text.

func reply(code int, enh smtp.EnhancedCode, msg string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: msg}
}

// Fixed replies.
var (
	errAuthRequired  = reply(530, smtp.EnhancedCode{5, 7, 0}, "Authentication required")
	errAuthFailed    = reply(535, smtp.EnhancedCode{5, 7, 8}, "Authentication credentials invalid")
	errAuthTooMany   = reply(421, smtp.EnhancedCode{4, 7, 0}, "Too many failed authentication attempts, closing connection")
	errAuthThrottled = reply(454, smtp.EnhancedCode{4, 7, 0}, "Temporary authentication failure, try again later")
	errAuthMechanism = reply(504, smtp.EnhancedCode{5, 5, 4}, "Unsupported authentication mechanism")
	errAuthSyntax    = reply(501, smtp.EnhancedCode{5, 5, 2}, "Malformed authentication response")
	errBadAddress    = reply(501, smtp.EnhancedCode{5, 1, 3}, "Bad address syntax")
	errNonASCIIAddr  = reply(553, smtp.EnhancedCode{5, 6, 7}, "Non-ASCII local part is not supported (no SMTPUTF8)")
	errTooLarge      = reply(552, smtp.EnhancedCode{5, 3, 4}, "Message too big")
	errShuttingDown  = reply(421, smtp.EnhancedCode{4, 3, 2}, "Service shutting down, try again later")
	errDataAborted   = reply(451, smtp.EnhancedCode{4, 3, 0}, "Message transfer aborted")
	errDataTimeout   = reply(421, smtp.EnhancedCode{4, 4, 2}, "Timeout reading the message, closing connection")
	errLineTooLong   = reply(554, smtp.EnhancedCode{5, 6, 0}, "Message rejected: a line is longer than 998 characters (SES and RFC 5322 limit)")
	errTenantConns   = reply(421, smtp.EnhancedCode{4, 7, 0}, "Too many connections for this account, try again later")

	// Memory budget and per-tenant transactions in progress (budget.go).
	errBudget     = reply(452, smtp.EnhancedCode{4, 3, 1}, "Insufficient system storage, try again later")
	errTenantBusy = reply(452, smtp.EnhancedCode{4, 3, 1}, "Too many messages in progress for this account, try again later")

	// Revocation and server.max_session_duration (revoke.go).
	errRevoked        = reply(421, smtp.EnhancedCode{4, 7, 0}, "Credentials changed or revoked, authenticate again")
	errSessionTooLong = reply(421, smtp.EnhancedCode{4, 7, 0}, "Session time limit reached, reconnect")
)

// errTooManyRcpts is 452 4.5.3 (RFC 5321 4.5.3.1.10: the client sends the
// rest in another transaction), in go-smtp's words: go-smtp answers a
// recipient over server.max_recipients itself, before the session sees it,
// and explain must say the same.
func errTooManyRcpts(max int) *smtp.SMTPError {
	return reply(452, smtp.EnhancedCode{4, 5, 3}, fmt.Sprintf("Maximum limit of %v recipients reached", max))
}

func errMailFromNotOwned(addr string) *smtp.SMTPError {
	return reply(550, smtp.EnhancedCode{5, 7, 1}, fmt.Sprintf("Sender address <%s> is not in this account's domains", addr))
}

func errFormat(fe *headers.FormatError) *smtp.SMTPError {
	return reply(554, smtp.EnhancedCode{5, 6, 0}, "Message rejected: "+sanitizeReply(fe.Error()))
}

// errPolicy is a policy refusal the application's developer must read: the
// detail names the header and address but nothing internal.
func errPolicy(permanentContent bool, detail string) *smtp.SMTPError {
	if permanentContent {
		return reply(554, smtp.EnhancedCode{5, 6, 0}, "Message rejected: "+sanitizeReply(detail))
	}
	return reply(550, smtp.EnhancedCode{5, 7, 1}, "Message rejected: "+sanitizeReply(detail))
}

func errSigning(id string) *smtp.SMTPError {
	return reply(451, smtp.EnhancedCode{4, 3, 0}, "Temporary failure signing the message, try again later (ref "+id+")")
}

func okQueued(messageID string) string { return "Ok: queued as " + messageID }

// sanitizeReply keeps a reply text on one printable ASCII line.
func sanitizeReply(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			b[i] = ' '
		}
	}
	if len(b) > 400 {
		b = append(b[:397], "..."...)
	}
	return string(b)
}

// SendError lets a Sender state the reply class itself.
type SendError struct {
	Kind Kind
	Err  error
}

func (e *SendError) Error() string { return e.Kind.String() + ": " + e.Err.Error() }
func (e *SendError) Unwrap() error { return e.Err }

// Kind classifies a send failure; each kind has one SMTP reply.
type Kind int

// Kinds of send failures (REFERENCE.md §8). relay/ses maps SES answers to
// them; the relay knows nothing of SES error types.
const (
	KindUnknown          Kind = iota // transient: 451 4.3.0
	KindThrottled                    // 451 4.3.2
	KindTransient                    // 451 4.3.0: 5xx, timeouts, network
	KindPaused                       // 451 4.3.2, operator alert
	KindMisconfigured                // 451 4.3.5, operator alert
	KindDelegationDenied             // 550 5.7.1
	KindNotVerified                  // 550 5.7.1
	KindRejected                     // 554 5.6.0
	KindTooLarge                     // 552 5.3.4
	KindBadRequest                   // 554 5.6.0
	KindSuspended                    // 554 5.3.2
	// KindAmbiguous: the request reached SES (or may have) but no answer
	// came back (connection dropped after the request was written, or the
	// ses.timeout budget ran out waiting for the response). SES may have
	// accepted the message: a retry, by the relay or by the client after
	// the 451, risks a duplicate. Never retry it in another region.
	KindAmbiguous // 451 4.3.0
	// KindRateLimited: the relay's own rate limit (ses.max_send_rate,
	// tenants[].max_send_rate) had no tokens within ses.rate_limit_wait;
	// nothing was sent.
	KindRateLimited // 451 4.7.0
)

var kindNames = [...]string{"unknown", "throttled", "transient", "sending_paused", "misconfigured",
	"delegation_denied", "not_verified", "rejected", "too_large", "bad_request", "account_suspended",
	"ambiguous", "rate_limited"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// Transient reports whether a retry of the same message can succeed.
func (k Kind) Transient() bool {
	switch k {
	case KindUnknown, KindThrottled, KindTransient, KindPaused, KindMisconfigured, KindAmbiguous, KindRateLimited:
		return true
	}
	return false
}

// Ambiguous reports whether a Sender error may hide a message SES
// accepted (KindAmbiguous): such a failure must not be retried elsewhere
// (another region) without accepting the risk of a duplicate. Every other
// transient kind certainly did not send.
func Ambiguous(err error) bool { return err != nil && Classify(err) == KindAmbiguous }

// Alert reports whether an operator must act (the relay or the SES
// account is misconfigured or paused).
func (k Kind) Alert() bool {
	return k == KindPaused || k == KindMisconfigured || k == KindSuspended
}

// Classify returns the Kind of a Sender error. A Sender states the kind
// with a *SendError (relay/ses maps every SES answer to one); otherwise a
// deadline, a cancellation or a network error is transient and anything
// else unknown (both 451 4.3.0).
func Classify(err error) Kind {
	var se *SendError
	if errors.As(err, &se) {
		return se.Kind
	}
	var netErr net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || errors.As(err, &netErr) {
		return KindTransient
	}
	return KindUnknown
}

// kindReplies is the reply of each Kind (REFERENCE.md §8): 4xx when a
// retry of the same message can succeed, 5xx when it cannot. Kinds not
// listed (unknown, transient, ambiguous) get 451 4.3.0.
var kindReplies = map[Kind]struct {
	code int
	enh  smtp.EnhancedCode
	text string
}{
	KindThrottled:        {451, smtp.EnhancedCode{4, 3, 2}, "Sending rate exceeded upstream, try again later"},
	KindPaused:           {451, smtp.EnhancedCode{4, 3, 2}, "Sending is paused, try again later"},
	KindMisconfigured:    {451, smtp.EnhancedCode{4, 3, 5}, "Relay configuration problem, try again later"},
	KindRateLimited:      {451, smtp.EnhancedCode{4, 7, 0}, "Sending rate limit reached, try again later"},
	KindDelegationDenied: {550, smtp.EnhancedCode{5, 7, 1}, "Not authorized to send as this identity"},
	KindNotVerified:      {550, smtp.EnhancedCode{5, 7, 1}, "Sender or recipient address not verified"},
	KindRejected:         {554, smtp.EnhancedCode{5, 6, 0}, "Message rejected by the upstream service"},
	KindTooLarge:         {552, smtp.EnhancedCode{5, 3, 4}, "Message too big for the upstream service"},
	KindBadRequest:       {554, smtp.EnhancedCode{5, 6, 0}, "Message refused as malformed by the upstream service"},
	KindSuspended:        {554, smtp.EnhancedCode{5, 3, 2}, "Sending account suspended"},
}

// ReplyForSendError maps a Sender error to the SMTP reply the client gets:
// a short generic text plus ref, an id to find the details in the log.
func ReplyForSendError(err error, ref string) *smtp.SMTPError {
	r, ok := kindReplies[Classify(err)]
	if !ok {
		r.code, r.enh, r.text = 451, smtp.EnhancedCode{4, 3, 0}, "Temporary upstream failure, try again later"
	}
	return reply(r.code, r.enh, r.text+" (ref "+ref+")")
}
