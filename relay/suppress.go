package relay

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
	"go.uber.org/zap"

	"github.com/sesrelay/sesrelay/config"
	"github.com/sesrelay/sesrelay/policy"
)

// Suppression per tenant and list: a recipient who unsubscribed from list
// L of a tenant (one-click, or an operator's entry) gets no more mail of
// (tenant, L). Mail without a list (transactional) is never suppressed.

// Suppressions answers which recipients left a tenant's list.
// suppression.Store implements it.
type Suppressions interface {
	// Suppressed returns the recipients of rcpts suppressed for
	// (tenant, list), keyed as given. An error means the answer is
	// unknown: the relay sends nothing (fail closed).
	Suppressed(ctx context.Context, tenant, list string, rcpts []string) (map[string]bool, error)
}

// SuppressionsFunc adapts a function to Suppressions.
type SuppressionsFunc func(ctx context.Context, tenant, list string, rcpts []string) (map[string]bool, error)

// Suppressed calls f.
func (f SuppressionsFunc) Suppressed(ctx context.Context, tenant, list string, rcpts []string) (map[string]bool, error) {
	return f(ctx, tenant, list, rcpts)
}

var _ Suppressions = SuppressionsFunc(nil)

// Replies of the suppression step (errors.go holds the others).
func errSuppressedAll(list string) *smtp.SMTPError {
	return reply(550, smtp.EnhancedCode{5, 7, 1}, sanitizeReply(fmt.Sprintf(
		"Message rejected: every recipient unsubscribed from list %q of this account", list)))
}

func okSuppressedAll(list string) *smtp.SMTPError {
	return reply(250, smtp.EnhancedCode{2, 0, 0}, sanitizeReply(fmt.Sprintf(
		"Ok: no recipient was sent: every recipient unsubscribed from list %q", list)))
}

func errSuppressionLookup(ref string) *smtp.SMTPError {
	return reply(451, smtp.EnhancedCode{4, 3, 0}, "Temporary failure checking the unsubscribe list, try again later (ref "+ref+")")
}

// suppress removes from p the recipients suppressed for (tenant, p.List).
// It returns the final reply when nothing is left to send (250 for drop,
// 550 5.7.1 for reject), 451 4.3.0 when the store cannot answer (nothing
// is sent: a possibly suppressed recipient must not get the mail), and nil
// when p still holds requests to send. It runs after prepare and before
// the send loop; with no store, or for mail without a list, it changes
// nothing.
func (s *Server) suppress(ctx context.Context, p *Prepared, tenant, mode string, ref string, log *zap.Logger) *smtp.SMTPError {
	store := s.opts.Suppressions
	if store == nil || p.List == "" || len(p.Requests) == 0 {
		return nil
	}
	// The unsubscribe token carries the recipient lowercased whole
	// (headers.UnsubscribeToken): ask for that spelling too, so that
	// "Ann@example.org" is suppressed by the unsubscribe of its link.
	var rcpts []string
	for _, req := range p.Requests {
		for _, r := range req.Recipients {
			rcpts = append(rcpts, r)
			if l := strings.ToLower(r); l != r {
				rcpts = append(rcpts, l)
			}
		}
	}
	hit, err := store.Suppressed(ctx, tenant, p.List, rcpts)
	if err != nil {
		log.Error("suppression lookup failed", zap.Error(err),
			zap.String("list", p.List))
		s.metrics.suppressed(tenant, "lookup_failed", 0)
		return errSuppressionLookup(ref)
	}
	if len(hit) == 0 {
		return nil
	}
	var dropped []string
	keep := p.Requests[:0:0]
	for _, req := range p.Requests {
		left := make([]string, 0, len(req.Recipients))
		for _, r := range req.Recipients {
			if hit[r] || hit[strings.ToLower(r)] {
				dropped = append(dropped, r)
			} else {
				left = append(left, r)
			}
		}
		if len(left) == 0 {
			continue
		}
		if len(left) < len(req.Recipients) {
			// A copy: the request's recipients may share the envelope's array.
			r := *req
			r.Recipients = left
			req = &r
		}
		keep = append(keep, req)
	}
	if len(dropped) == 0 {
		return nil
	}
	p.Requests = keep
	p.Suppressed = dropped
	action := "dropped"
	if len(keep) == 0 && mode == config.SuppressReject {
		action = "rejected"
	}
	s.metrics.suppressed(tenant, action, len(dropped))
	log.Info("suppressed recipients", zap.String("list", p.List), zap.Strings("suppressed_rcpt", dropped),
		zap.Int("remaining", countRecipients(keep)), zap.String("action", action))
	if len(keep) > 0 {
		return nil
	}
	if mode == config.SuppressReject {
		return errSuppressedAll(p.List)
	}
	return okSuppressedAll(p.List)
}

func countRecipients(reqs []*Request) int {
	n := 0
	for _, r := range reqs {
		n += len(r.Recipients)
	}
	return n
}

// applySuppression is deliver's suppression step: suppress, and when that
// answers the message, count the outcome (sesrelay_messages_total:
// failed/suppression_unavailable, rejected/suppressed or
// dropped/suppressed) and return the reply.
func (s *Server) applySuppression(ctx context.Context, p *Prepared, t *policy.Tenant, ref string, log *zap.Logger, start time.Time) *smtp.SMTPError {
	r := s.suppress(ctx, p, t.Name, t.Config.SuppressedRecipients, ref, log)
	if r == nil {
		return nil
	}
	outcome, reason := "dropped", "suppressed"
	switch r.Code / 100 {
	case 4:
		outcome, reason = "failed", "suppression_unavailable"
	case 5:
		outcome = "rejected"
	}
	lvl := log.Info
	if r.Code/100 == 4 {
		lvl = log.Error
	}
	lvl("message suppressed", zap.String("reason", reason), zap.Int("code", r.Code), zap.String("reply", r.Message),
		zap.Duration("duration", time.Since(start)))
	s.metrics.message(t.Name, outcome, reason, time.Since(start))
	return r
}
