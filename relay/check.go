package relay

import (
	"errors"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sesrelay/sesrelay/address"
	"github.com/sesrelay/sesrelay/config"
	"github.com/sesrelay/sesrelay/headers"
	"github.com/sesrelay/sesrelay/policy"
)

// Pipeline is the message path of one configuration, without the
// network: the MAIL and RCPT checks and Prepare (read → policy → apply the
// decision's edits → sign → SES requests). It is written once and used by
// both the live session (each configuration snapshot has one) and
// `sesrelay explain`, so the two cannot answer differently. A Pipeline is
// immutable and safe for concurrent use.
type Pipeline struct {
	// Rules is the compiled policy.
	Rules *policy.Rules
	// Hostname is the id-right of a Message-ID the relay adds.
	Hostname string
	// BareNewlines is how headers.Read treats a bare CR or LF.
	BareNewlines headers.BareNewlines
	// MaxRecipients and MaxMessageBytes are server.max_recipients and
	// server.max_message_bytes.
	MaxRecipients   int
	MaxMessageBytes int64
	// Now is the clock of Date fields and DKIM signatures.
	Now func() time.Time
}

// NewPipeline compiles the policy of cfg (validated by config) into a
// Pipeline. now nil means time.Now.
func NewPipeline(cfg *config.Config, now func() time.Time) (*Pipeline, error) {
	rules, err := policy.Compile(cfg)
	if err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	mode := headers.NormalizeBareNewlines
	if cfg.Server.BareNewlines == "reject" {
		mode = headers.RejectBareNewlines
	}
	return &Pipeline{
		Rules:           rules,
		Hostname:        cfg.Server.Hostname,
		BareNewlines:    mode,
		MaxRecipients:   cfg.Server.MaxRecipients,
		MaxMessageBytes: cfg.Server.MaxMessageBytes,
		Now:             now,
	}, nil
}

// Refusal is a step's refusal: the reply, a stable reason for logs and
// metrics, and the full cause for the log only.
type Refusal struct {
	Reply  *smtp.SMTPError
	Reason string
	Detail string
}

// CheckMail checks the envelope sender given at MAIL FROM ("" is <>) and
// returns it as the relay passes it on: a local part that needs quoting
// quoted again (go-smtp removed the quotes; see address.Path), the rest as
// written. An unreadable address is 501 5.1.3, an address outside the
// tenant's domains 550 5.7.1.
func (p *Pipeline) CheckMail(t *policy.Tenant, from string) (string, *Refusal) {
	if d := t.CheckMailFrom(from); d != nil {
		r := &Refusal{Reason: string(d.Reject.Reason), Detail: d.Reject.Detail, Reply: errMailFromNotOwned(from)}
		if d.Reject.Reason == policy.AddressInvalid {
			r.Reply = errBadAddress
		}
		return "", r
	}
	if local, domain, ok := address.Split(from); ok && address.IsASCII(local) {
		return address.QuoteLocal(local) + "@" + domain, nil
	}
	return from, nil
}

// CheckRcpt checks one RCPT TO address against the recipients already
// accepted in the transaction. It returns the recipient as the relay
// passes it on (address.Path: domain normalized, a local part that needs
// quoting quoted again), and dup = true when that recipient is already
// among rcpts (the same recipient twice is one delivery: accept and
// ignore it). A non-ASCII local part is 553 5.6.7, other bad syntax
// 501 5.1.3, a recipient beyond server.max_recipients 452 4.5.3.
func (p *Pipeline) CheckRcpt(rcpts []string, to string) (rcpt string, dup bool, r *Refusal) {
	addr, err := address.Path(to)
	if err != nil {
		if errors.Is(err, address.ErrNonASCII) {
			return "", false, &Refusal{Reply: errNonASCIIAddr, Reason: "address_non_ascii", Detail: err.Error()}
		}
		return "", false, &Refusal{Reply: errBadAddress, Reason: "address_invalid", Detail: err.Error()}
	}
	for _, r := range rcpts {
		if r == addr {
			return addr, true, nil
		}
	}
	if len(rcpts) >= p.MaxRecipients {
		return "", false, &Refusal{Reply: errTooManyRcpts(p.MaxRecipients), Reason: "too_many_recipients"}
	}
	return addr, false, nil
}
