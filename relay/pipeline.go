package relay

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
	"go.uber.org/zap"

	"github.com/sesrelay/sesrelay/config"
	"github.com/sesrelay/sesrelay/headers"
	"github.com/sesrelay/sesrelay/policy"
)

// Envelope is the SMTP envelope of one transaction.
type Envelope struct {
	From string
	To   []string
}

// Prepared is the outcome of the pipeline for one message: the policy
// decision and the SES requests to make, in order, or the refusal.
type Prepared struct {
	Decision policy.Decision
	Requests []*Request
	// Message is the message as sent (for per-recipient requests: as sent
	// to the first recipient).
	Message *headers.Message
	// Refusal is non-nil when the message must not be sent; Reason is a
	// stable label for logs and metrics.
	Refusal *smtp.SMTPError
	Reason  string
	// Detail is the full cause of a refusal, for the log only.
	Detail string
	// PerRecipient is true when each recipient gets its own request (a
	// per-recipient unsubscribe token).
	PerRecipient bool
	// List is the list the message belongs to ("" for none), and
	// Suppressed the recipients left out because they unsubscribed from
	// it (suppress.go).
	List       string
	Suppressed []string
}

func refusal(reply *smtp.SMTPError, reason, detail string) *Prepared {
	return &Prepared{Refusal: reply, Reason: reason, Detail: detail}
}

// Prepare runs the pipeline without sending: read → policy → apply the
// decision's edits (hygiene, Date and Message-ID, From, unsubscribe
// headers) → sign. The live session calls it before Sender.Send, `sesrelay
// explain` prints what it returns. The decision is the whole plan: Prepare
// makes no policy choice and reads no tenant configuration of its own.
// The data flows one way: no step calls back into an earlier one.
func (pl *Pipeline) Prepare(t *policy.Tenant, env Envelope, raw []byte, ref string) *Prepared {
	if t.EncodeLongLines {
		raw = headers.EncodeLongLines(raw, pl.BareNewlines) // tenants[].long_lines
	}
	msg, err := headers.Read(raw, pl.BareNewlines)
	if err != nil {
		var fe *headers.FormatError
		if !errors.As(err, &fe) {
			fe = &headers.FormatError{Reason: "unreadable message"}
		}
		return refusal(errFormat(fe), "malformed", fe.Error())
	}
	h := &msg.Header

	// Policy reads the header as the client wrote it (X-SES-CONFIGURATION-SET
	// and header_tags included); the edits remove those fields afterwards.
	d := t.Evaluate(policy.Envelope{From: env.From, To: env.To}, h)
	if d.Reject != nil {
		content := policy.ClassOf(d.Reject.Reason) == policy.ClassContent
		p := refusal(errPolicy(content, d.Reject.Detail), string(d.Reject.Reason), d.Reject.Detail)
		p.Decision = d
		return p
	}

	headers.StripSES(h)
	headers.Strip(h, d.Strip)
	if err := headers.Prepare(h, pl.Now(), func() string { return ref + "@" + pl.Hostname }); err != nil {
		return refusal(errFormat(&headers.FormatError{Reason: err.Error()}), "malformed", err.Error())
	}
	if rw := d.Rewrite; rw != nil {
		if err := headers.FromRewrite(h, headers.FromEdit{Name: rw.DisplayName, Address: rw.NewFrom, ReplyTo: rw.ReplyTo}); err != nil {
			var fe *headers.FormatError
			if errors.As(err, &fe) {
				return refusal(errFormat(fe), "malformed", err.Error())
			}
			return refusal(errSigning(ref), "rewrite_failed", err.Error())
		}
	}
	if err := headers.CheckUnique(h); err != nil {
		return refusal(errFormat(asFormat(err)), "duplicate_header", err.Error())
	}
	if err := headers.CheckASCII(h); err != nil {
		return refusal(errFormat(asFormat(err)), "non_ascii_header", err.Error())
	}

	base := Request{
		Tenant:           t.Name,
		Region:           d.SES.Region,
		EnvelopeFrom:     env.From,
		ConfigurationSet: d.ConfigurationSet,
		Tags:             requestTags(d.Tags),
		IdentityARN:      d.SES.IdentityARN,
		SESTenant:        d.SES.Tenant,
		EndpointID:       d.SES.EndpointID,
		// SES click/open tracking rewrites the body and would break the
		// relay's body hash.
		DisableTracking: d.DKIM != nil,
	}
	p := &Prepared{Decision: d, List: d.List}

	switch u := d.Unsubscribe; u.Action {
	case policy.UnsubscribeRequire, policy.UnsubscribeCheck:
		if err := headers.ValidateListUnsubscribe(h); err != nil {
			if u.Action == policy.UnsubscribeCheck {
				return refusal(errFormat(asFormat(err)), "unsubscribe_invalid", err.Error())
			}
			if !headers.HasListUnsubscribe(h) {
				return refusal(errPolicy(false, "tenant "+t.Name+" requires one-click unsubscribe: add List-Unsubscribe with an https URI and List-Unsubscribe-Post: List-Unsubscribe=One-Click (RFC 8058)"),
					"unsubscribe_missing", err.Error())
			}
			return refusal(errPolicy(false, "one-click unsubscribe headers are invalid: "+err.Error()), "unsubscribe_invalid", err.Error())
		}
	case policy.UnsubscribeAdd:
		// A per-recipient token needs a per-recipient header: one request
		// per recipient.
		p.PerRecipient = true
		for _, rcpt := range env.To {
			m := &headers.Message{Header: h.Copy(), Body: msg.Body}
			claims := headers.UnsubscribeClaims{Tenant: t.Name, List: d.List, Recipient: rcpt}
			token := headers.UnsubscribeToken(u.Secret, t.Name, d.List, rcpt)
			link := headers.ExpandUnsubscribeURL(u.URL, claims, token)
			if err := headers.AddListUnsubscribe(&m.Header, link, u.Mailto); err != nil {
				return refusal(errSigning(ref), "unsubscribe_config", err.Error())
			}
			if r := pl.sign(m, d.DKIM, ref); r != nil {
				return r
			}
			req := base
			req.Recipients = []string{rcpt}
			req.Raw = m.Bytes()
			p.Requests = append(p.Requests, &req)
			if p.Message == nil {
				p.Message = m
			}
		}
		return p
	}

	if r := pl.sign(msg, d.DKIM, ref); r != nil {
		return r
	}
	req := base
	req.Recipients = env.To
	req.Raw = msg.Assemble() // in raw's storage: raw is not used after this
	p.Requests = []*Request{&req}
	p.Message = msg
	return p
}

// sign DKIM-signs m with key (nil: no signing). It fails closed: a
// signing error refuses the message with 451 4.3.0, never sends unsigned.
func (pl *Pipeline) sign(m *headers.Message, key *config.DKIMKey, ref string) *Prepared {
	if key == nil {
		return nil
	}
	err := headers.Sign(m, headers.SignOptions{
		Domain: key.Domain, Selector: key.Selector, Signer: key.Signer,
		Expiration: key.Expiration, Now: pl.Now,
	})
	if err != nil {
		// A message that cannot be signed as it is (e.g. no single From)
		// will never be; anything else may pass on a retry.
		var fe *headers.FormatError
		if errors.As(err, &fe) {
			return refusal(errFormat(fe), "unsignable", err.Error())
		}
		return refusal(errSigning(ref), "signing_failed", err.Error())
	}
	return nil
}

func asFormat(err error) *headers.FormatError {
	var fe *headers.FormatError
	if errors.As(err, &fe) {
		return fe
	}
	return &headers.FormatError{Reason: err.Error()}
}

func requestTags(ts []policy.Tag) []Tag {
	out := make([]Tag, len(ts))
	for i, t := range ts {
		out[i] = Tag{t.Name, t.Value}
	}
	return out
}

// deliver prepares and sends one message and returns the reply (250 on
// success).
func (s *Server) deliver(ctx context.Context, st *state, t *policy.Tenant, env Envelope, raw []byte, ref string, log *zap.Logger) *smtp.SMTPError {
	start := time.Now()
	p := st.pipe.Prepare(t, env, raw, ref)
	if p.Refusal != nil {
		lvl := log.Info
		if p.Refusal.Code/100 == 4 {
			lvl = log.Error
		}
		lvl("message rejected", zap.String("reason", p.Reason), zap.String("detail", p.Detail), zap.Int("size", len(raw)),
			zap.Int("code", p.Refusal.Code), zap.String("reply", p.Refusal.Message))
		outcome := "rejected"
		if p.Refusal.Code/100 == 4 {
			outcome = "failed"
		}
		s.metrics.message(t.Name, outcome, p.Reason, time.Since(start))
		return p.Refusal
	}
	if r := s.applySuppression(ctx, p, t, ref, log, start); r != nil {
		return r
	}

	// Delivery modes (queued.go): queue stores the prepared message and
	// answers 250; fallback sends below and queues on a transient failure.
	mode := s.deliveryMode(st, t)
	if mode == config.ModeQueue {
		return s.deliverQueued(t, env, p, ref, len(raw), start, log)
	}

	// A per-recipient send is several SES calls: remember which recipients
	// SES accepted, so the client's retry after a 4xx sends only to the rest.
	var key [32]byte
	var done map[string]string
	if p.PerRecipient {
		key = memoryKey(t.Name, env.From, raw)
		done = s.memory.get(key)
	}
	ids := make([]string, 0, len(p.Requests))
	for i, req := range p.Requests {
		if p.PerRecipient {
			if id, ok := done[req.Recipients[0]]; ok {
				ids = append(ids, id)
				continue
			}
		}
		sendStart := time.Now()
		res, err := s.sender.Send(ctx, req)
		d := time.Since(sendStart)
		if err != nil {
			kind := Classify(err)
			r := ReplyForSendError(err, ref)
			lvl := log.Warn
			if kind.Alert() {
				lvl = log.Error
			}
			lvl("message not sent", zap.String("reason", kind.String()), zap.Error(err), zap.Int("size", len(req.Raw)),
				zap.Strings("failed_rcpt", req.Recipients), zap.Int("sent_before", len(ids)),
				zap.Int("code", r.Code), zap.Duration("ses_duration", d), zap.Duration("duration", time.Since(start)))
			if mode == config.ModeFallback && fallbackOn(kind) {
				// Fallback mode (queued.go): queue the requests not sent.
				fr := s.deliverFallback(t, env, p, notSent(p.Requests[i:], done), kind, r, ref, len(raw), start, log)
				if p.PerRecipient && fr.Code == 250 {
					s.memory.forget(key)
				}
				return fr
			}
			outcome := "failed"
			if !kind.Transient() {
				outcome = "rejected"
			}
			if p.PerRecipient && !kind.Transient() {
				s.memory.forget(key) // 5xx: no retry will come to finish it
			}
			s.metrics.message(t.Name, outcome, kind.String(), time.Since(start))
			return r
		}
		s.metrics.sent(t.Name, len(req.Recipients), len(req.Raw))
		ids = append(ids, res.MessageID)
		if p.PerRecipient {
			s.memory.add(key, req.Recipients[0], res.MessageID)
		}
	}
	if p.PerRecipient {
		s.memory.forget(key)
	}
	log.Info("message sent", zap.Strings("ses_message_id", ids), zap.Int("size", len(raw)),
		zap.String("from_domain", p.Decision.FromDomain), zap.Bool("rewritten", p.Decision.Rewrite != nil),
		zap.Bool("signed", p.Decision.DKIM != nil), zap.Int("ses_calls", len(p.Requests)),
		zap.String("configuration_set", p.Requests[0].ConfigurationSet), zap.Int("code", 250),
		zap.Duration("duration", time.Since(start)))
	s.metrics.message(t.Name, "accepted", "", time.Since(start))
	return reply(250, smtp.EnhancedCode{2, 0, 0}, okQueued(strings.Join(ids, ",")))
}

func memoryKey(tenant, from string, raw []byte) [32]byte {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00", tenant, from)
	h.Write(raw)
	var k [32]byte
	copy(k[:], h.Sum(nil))
	return k
}
