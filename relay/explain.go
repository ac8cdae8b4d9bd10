package relay

import (
	"errors"
	"fmt"

	"github.com/emersion/go-smtp"
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
	Reply    *smtp.SMTPError
	Reason   string
	Detail   string
	Prepared *Prepared
}

// Accepted reports whether the message would be sent.
func (e *Explanation) Accepted() bool { return e.Reply != nil && e.Reply.Code == 250 }

// Explain runs the same checks and pipeline as a session of username
// (AUTH is assumed to succeed), with no network access: nothing is sent.
// ref stands in for the message reference in Message-ID.
func (s *Server) Explain(username string, env Envelope, raw []byte, ref string) (*Explanation, error) {
	st := s.snapshot()
	t, _ := st.rules.TenantForUser(username)
	if t == nil {
		return nil, fmt.Errorf("no user %q in the configuration", username)
	}
	ex := &Explanation{Tenant: t.Name}
	if d := t.CheckMailFrom(env.From); d != nil {
		ex.Stage, ex.Reason, ex.Detail = "MAIL FROM", string(d.Reject.Reason), d.Reject.Detail
		ex.Reply = errMailFromNotOwned(env.From)
		return ex, nil
	}
	if len(env.To) == 0 {
		return nil, errors.New("at least one recipient is needed")
	}
	rcpts := make([]string, 0, len(env.To))
	for i, r := range env.To {
		n, err := normalizeRecipient(r)
		if err != nil {
			ex.Stage, ex.Reason, ex.Detail = "RCPT TO", "address_invalid", err.Error()
			ex.Reply = errBadAddress
			return ex, nil
		}
		if i >= st.cfg.Server.MaxRecipients {
			ex.Stage, ex.Reason = "RCPT TO", "too_many_recipients"
			ex.Reply = errTooManyRcpts
			return ex, nil
		}
		rcpts = append(rcpts, n)
	}
	if int64(len(raw)) > st.cfg.Server.MaxMessageBytes {
		ex.Stage, ex.Reason = "DATA", "too_large"
		ex.Reply = errTooLarge
		return ex, nil
	}
	p := s.prepare(st, t, Envelope{From: env.From, To: rcpts}, raw, ref)
	ex.Prepared = p
	if p.Refusal != nil {
		ex.Stage, ex.Reason, ex.Detail, ex.Reply = "DATA", p.Reason, p.Detail, p.Refusal
		return ex, nil
	}
	ex.Reply = reply(250, smtp.EnhancedCode{2, 0, 0}, okQueued("<SES MessageId>"))
	return ex, nil
}
