// Package relay is the SMTP side of sesrelay: the go-smtp Backend and
// Session (RFC 5321 submission with RFC 4954 AUTH over RFC 3207 STARTTLS or
// implicit TLS), the pipeline that turns an accepted DATA into SES requests,
// and the mapping of every failure to an honest SMTP reply (errors.go).
package relay

import (
	"context"
)

// Tag is one SES message tag.
type Tag struct{ Name, Value string }

// Request is one SES SendEmail call with raw content. Raw is the complete
// message as it must be sent (canonical CRLF, signed if signing applies).
// The Sender must not modify Raw or Recipients. Raw may share storage with
// the DATA buffer, which is reused once Send returned: a Sender that keeps
// the message past its Send must copy it.
type Request struct {
	Tenant           string
	Region           string // "" means the sender's default region
	EnvelopeFrom     string // informational: SES takes the sender from the From header or FromIdentityARN
	Recipients       []string
	Raw              []byte
	ConfigurationSet string
	Tags             []Tag
	IdentityARN      string // FromEmailAddressIdentityArn (delegated sending)
	SESTenant        string // TenantName
	EndpointID       string // SES multi-region endpoint
	DisableTracking  bool   // ConfigurationOverrides.Tracking: click and open tracking off (relay-signed mail)
}

// Result is what SES answered.
type Result struct {
	MessageID string
	// Region is where the message was sent, when the sender knows (after
	// a regional failover it differs from Request.Region).
	Region string
}

// Sender delivers one request. It returns only after the message was
// accepted (Result) or refused (error). Errors are mapped to SMTP replies
// by ReplyForSendError; a Sender that knows better may return a
// *SendError.
type Sender interface {
	Send(ctx context.Context, req *Request) (*Result, error)
}

// SenderFunc adapts a function to a Sender.
type SenderFunc func(ctx context.Context, req *Request) (*Result, error)

// Send calls f.
func (f SenderFunc) Send(ctx context.Context, req *Request) (*Result, error) { return f(ctx, req) }

var _ Sender = SenderFunc(nil)
