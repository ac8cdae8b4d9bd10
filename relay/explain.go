package relay

import (
	"errors"
	"fmt"

	"github.com/emersion/go-smtp"

	"github.com/sesrelay/sesrelay/address"
)

// Explanation is what the relay would do with one message, without
// sending it: `sesrelay explain` prints it.
type Explanation struct {
	Tenant string
	// Stage is where the message stops: "MAIL FROM", "RCPT TO", "DATA",
	// or "" when it would be sent.
	Stage string
	// Reply is the SMTP reply the client would get; for an accepted message
	// the SES message id is a placeholder.
	Reply  *smtp.SMTPError
	Reason string
	Detail string
	// Recipients are the envelope recipients as the relay passes them on
	// (normalized, duplicates removed).
	Recipients []string
	Prepared   *Prepared
}

// Accepted reports whether the message would be sent.
func (e *Explanation) Accepted() bool { return e.Reply != nil && e.Reply.Code == 250 }

// Explain runs the checks and the pipeline of a session of username (AUTH
// is assumed to succeed) with no network access: nothing is sent. It calls
// the same CheckMail, CheckRcpt and Prepare as a live session, in the same
// order. ref stands in for the message reference in Message-ID.
func (pl *Pipeline) Explain(username string, env Envelope, raw []byte, ref string) (*Explanation, error) {
	t, _ := pl.Rules.TenantForUser(username)
	if t == nil {
		return nil, fmt.Errorf("no user %q in the configuration", username)
	}
	if len(env.To) == 0 {
		return nil, errors.New("at least one recipient is needed")
	}
	ex := &Explanation{Tenant: t.Name}
	stop := func(stage string, r *Refusal) (*Explanation, error) {
		ex.Stage, ex.Reply, ex.Reason, ex.Detail = stage, r.Reply, r.Reason, r.Detail
		return ex, nil
	}
	// A live session sees what go-smtp makes of the command: quoting
	// removed from the local part.
	from, r := pl.CheckMail(t, address.ParsePath(env.From))
	if r != nil {
		return stop("MAIL FROM", r)
	}
	for _, to := range env.To {
		rcpt, dup, r := pl.CheckRcpt(ex.Recipients, address.ParsePath(to))
		if r != nil {
			return stop("RCPT TO", r)
		}
		if !dup {
			ex.Recipients = append(ex.Recipients, rcpt)
		}
	}
	// A live session's reader stops at the same limit (go-smtp's
	// MaxMessageBytes, set from the same configuration key).
	if int64(len(raw)) > pl.MaxMessageBytes {
		return stop("DATA", &Refusal{Reply: errTooLarge, Reason: "too_large"})
	}
	p := pl.Prepare(t, Envelope{From: from, To: ex.Recipients}, raw, ref)
	ex.Prepared = p
	if p.Refusal != nil {
		return stop("DATA", &Refusal{Reply: p.Refusal, Reason: p.Reason, Detail: p.Detail})
	}
	ex.Reply = reply(250, smtp.EnhancedCode{2, 0, 0}, okQueued("<SES MessageId>"))
	return ex, nil
}
