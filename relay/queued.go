package relay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
	"go.uber.org/zap"

	"github.com/sesrelay/sesrelay/config"
	"github.com/sesrelay/sesrelay/headers"
	"github.com/sesrelay/sesrelay/policy"
	"github.com/sesrelay/sesrelay/queue"
)

// Store-and-forward (docs/queue.md). A tenant's delivery mode
// (tenants[].delivery_mode, default delivery.mode) decides what 250 means:
//
//   - direct: SES accepted the message (pipeline.go, unchanged);
//   - fallback: SES accepted it, or SES failed transiently and the
//     prepared message is durably queued;
//   - queue: the prepared message is durably queued; the Runner's workers
//     send it through QueueDeliverer.
//
// Policy, hygiene, unsubscribe headers and DKIM signing run before the
// message is queued (prepare), so a refusal is an immediate 5xx in every
// mode. DKIM: the message is signed at accept time (a key or message that
// cannot sign is refused there, and the stored message is complete), and
// signed again at send time with the tenant's key for the same domain in
// force then (QueueDeliverer), which replaces the first signature: an x=
// expiry or a key rotation while the message waited cannot make it fail
// verification.

// Replies of the queueing modes.
var (
	// errQueueFull: queue mode could not store the message (a limit, or
	// the disk refused the write); nothing was stored.
	errQueueFull = reply(452, smtp.EnhancedCode{4, 3, 1}, "Insufficient system storage, try again later")
)

func okStored(id string) string { return "Ok: queued as " + id }

func okFallback(id string) string { return "Ok: queued as " + id + " (SES unavailable, will retry)" }

// deliveryMode is the mode for t: direct when the relay has no queue (the
// daemon opens one whenever queue.dir is set, and configuration
// validation requires queue.dir for the other modes).
func (s *Server) deliveryMode(st *state, t *policy.Tenant) string {
	if s.opts.Queue == nil {
		return config.ModeDirect
	}
	return st.cfg.DeliveryModeOf(t.Config)
}

// queueMessage is the queue.Message of the prepared requests reqs: each
// request's header block, and the body stored once.
func queueMessage(t *policy.Tenant, env Envelope, p *Prepared, reqs []*Request) *queue.Message {
	r0 := reqs[0]
	m := &queue.Message{
		Tenant: t.Name,
		Sender: env.From,
		SES: queue.SES{
			ConfigurationSet: r0.ConfigurationSet,
			IdentityARN:      r0.IdentityARN,
			Region:           r0.Region,
			EndpointID:       r0.EndpointID,
			SESTenant:        r0.SESTenant,
			DisableTracking:  r0.DisableTracking,
		},
	}
	for _, tg := range r0.Tags {
		m.SES.Tags = append(m.SES.Tags, queue.Tag{Name: tg.Name, Value: tg.Value})
	}
	if p.Decision.DKIM != nil {
		m.DKIMDomain = p.Decision.DKIM.Domain
	}
	// Every request shares the prepared body; a request whose raw bytes do
	// not end with it (never, today) is stored whole as its header block
	// over an empty body.
	var body []byte
	if p.Message != nil {
		body = p.Message.Body
	}
	for _, r := range reqs {
		if !bytes.HasSuffix(r.Raw, body) {
			body = nil
			break
		}
	}
	m.Body = body
	for _, r := range reqs {
		m.Requests = append(m.Requests, queue.Request{
			Recipients: r.Recipients,
			Header:     r.Raw[:len(r.Raw)-len(body)],
		})
	}
	return m
}

// enqueue stores reqs durably. The reply is 250 with the queue id, or, in
// queue mode, 452 4.3.1 when nothing could be stored.
func (s *Server) enqueue(t *policy.Tenant, env Envelope, p *Prepared, reqs []*Request) (*queue.Entry, error) {
	return s.opts.Queue.Enqueue(queueMessage(t, env, p, reqs))
}

// deliverQueued is queue mode: store the prepared message and answer 250.
func (s *Server) deliverQueued(t *policy.Tenant, env Envelope, p *Prepared, ref string, size int, start time.Time, log *zap.Logger) *smtp.SMTPError {
	e, err := s.enqueue(t, env, p, p.Requests)
	if err != nil {
		log.Error("message not queued", zap.Error(err), zap.Int("size", size), zap.Int("code", 452))
		s.metrics.message(t.Name, "failed", queueFailReason(err), time.Since(start))
		return reply(errQueueFull.Code, errQueueFull.EnhancedCode, errQueueFull.Message+" (ref "+ref+")")
	}
	log.Info("message queued", zap.String("queue_id", e.ID), zap.Int("size", size),
		zap.String("from_domain", p.Decision.FromDomain), zap.Bool("signed", p.Decision.DKIM != nil),
		zap.Int("ses_calls", len(p.Requests)), zap.Int("code", 250), zap.Duration("duration", time.Since(start)))
	s.metrics.message(t.Name, "queued", "", time.Since(start))
	return reply(250, smtp.EnhancedCode{2, 0, 0}, okStored(e.ID))
}

// deliverFallback is fallback mode after a transient SES failure: store
// the requests not sent yet and answer 250; when the queue cannot take
// them, the original 451 (sendReply) passes through.
func (s *Server) deliverFallback(t *policy.Tenant, env Envelope, p *Prepared, rest []*Request, kind Kind, sendReply *smtp.SMTPError, ref string, size int, start time.Time, log *zap.Logger) *smtp.SMTPError {
	e, err := s.enqueue(t, env, p, rest)
	if err != nil {
		log.Error("SES failed and the message could not be queued", zap.String("reason", kind.String()), zap.Error(err),
			zap.Int("code", sendReply.Code))
		s.metrics.message(t.Name, "failed", kind.String(), time.Since(start))
		return sendReply
	}
	log.Warn("SES unavailable, message queued", zap.String("reason", kind.String()), zap.String("queue_id", e.ID),
		zap.Int("size", size), zap.Int("queued_ses_calls", len(rest)), zap.Int("sent_ses_calls", len(p.Requests)-len(rest)),
		zap.Int("code", 250), zap.Duration("duration", time.Since(start)))
	s.metrics.message(t.Name, "queued", kind.String(), time.Since(start))
	return reply(250, smtp.EnhancedCode{2, 0, 0}, okFallback(e.ID))
}

// notSent drops the per-recipient requests SES already accepted on an
// earlier try of the same message (done: recipient to SES message id).
func notSent(reqs []*Request, done map[string]string) []*Request {
	if len(done) == 0 {
		return reqs
	}
	out := make([]*Request, 0, len(reqs))
	for _, r := range reqs {
		if _, ok := done[r.Recipients[0]]; !ok {
			out = append(out, r)
		}
	}
	return out
}

func queueFailReason(err error) string {
	if errors.Is(err, queue.ErrFull) {
		return "queue_full"
	}
	return "queue_write_failed"
}

// fallbackOn reports whether a send error in fallback mode queues the
// message: every transient kind (throttling, SES 5xx, network, timeout,
// the relay's own rate limit, the ambiguous case: SES may have the
// message, and the queue's at-least-once accepts that duplicate).
func fallbackOn(kind Kind) bool { return kind.Transient() }

// QueueDeliverer sends queued requests through base: the Sender below the
// rate limiter (the Runner waits on the limiter itself, see
// RateLimiter.Wait). A request of a message the relay signed is signed
// again with the tenant's key for the same domain in the configuration in
// force; without such a key any more it goes as signed at accept time.
func (s *Server) QueueDeliverer(base Sender) queue.Deliverer {
	return queue.DelivererFunc(func(ctx context.Context, e *queue.Entry, i int) (string, error) {
		raw := e.Message(i)
		if raw == nil {
			return "", fmt.Errorf("queue entry %s: no data for request %d", e.ID, i)
		}
		if e.DKIMDomain != "" {
			raw = s.resign(e, raw)
		}
		r := e.Requests[i]
		req := &Request{
			Tenant:           e.Tenant,
			Region:           e.SES.Region,
			EnvelopeFrom:     e.Sender,
			Recipients:       r.Recipients,
			Raw:              raw,
			ConfigurationSet: e.SES.ConfigurationSet,
			IdentityARN:      e.SES.IdentityARN,
			SESTenant:        e.SES.SESTenant,
			EndpointID:       e.SES.EndpointID,
			DisableTracking:  e.SES.DisableTracking,
		}
		for _, tg := range e.SES.Tags {
			req.Tags = append(req.Tags, Tag{tg.Name, tg.Value})
		}
		res, err := base.Send(ctx, req)
		if err != nil {
			return "", err
		}
		s.metrics.sent(e.Tenant, len(r.Recipients), len(raw))
		return res.MessageID, nil
	})
}

// resign signs raw again with the key of e's tenant for e.DKIMDomain in
// the configuration in force; it returns raw unchanged when there is no
// such key or signing fails (the accept-time signature stays).
func (s *Server) resign(e *queue.Entry, raw []byte) []byte {
	key := s.currentDKIMKey(e.Tenant, e.DKIMDomain)
	log := s.log.With(zap.String("queue_id", e.ID), zap.String("tenant", e.Tenant), zap.String("dkim_domain", e.DKIMDomain))
	if key == nil {
		log.Warn("queued message: the tenant has no DKIM key for its domain any more, sending the accept-time signature")
		return raw
	}
	m, err := headers.Read(raw, headers.NormalizeBareNewlines)
	if err == nil {
		err = headers.Sign(m, headers.SignOptions{Domain: key.Domain, Selector: key.Selector, Signer: key.Signer,
			Expiration: key.Expiration, Now: s.now})
	}
	if err != nil {
		log.Warn("queued message: signing at send time failed, sending the accept-time signature", zap.Error(err))
		return raw
	}
	return m.Bytes()
}

func (s *Server) currentDKIMKey(tenant, domain string) *config.DKIMKey {
	ct := s.snapshot().cfg.TenantByName(tenant)
	if ct == nil {
		return nil
	}
	for i := range ct.DKIM {
		if k := &ct.DKIM[i]; strings.EqualFold(k.Domain, domain) && k.Signer != nil {
			return k
		}
	}
	return nil
}

// QueueClassify is the queue.Classifier of SES errors: the kinds a retry
// cannot fix are permanent (dead, DSN) with the enhanced code the direct
// reply would carry; everything else is retried with backoff.
func QueueClassify(err error) (bool, string) {
	kind := Classify(err)
	if kind.Transient() {
		return false, "4.0.0"
	}
	if r, ok := kindReplies[kind]; ok {
		return true, fmt.Sprintf("%d.%d.%d", r.enh[0], r.enh[1], r.enh[2])
	}
	return true, "5.0.0"
}

// QueueDSN is the Runner's OnDead: it logs, and with queue.bounce_from
// set queues an RFC 3464 report to the envelope sender of the dead entry,
// as a message of the null sender (so that a report that cannot be
// delivered dies without one, as in Postfix), never for <>.
func (s *Server) QueueDSN(q *queue.Queue) func(ctx context.Context, e *queue.Entry) {
	return func(_ context.Context, e *queue.Entry) {
		cfg := s.snapshot().cfg
		log := s.log.With(zap.String("queue_id", e.ID), zap.String("tenant", e.Tenant))
		if e.Sender == "" || e.Sender == "<>" {
			log.Info("no delivery status notification for the null sender")
			return
		}
		if cfg.Queue.BounceFrom == "" {
			log.Warn("no delivery status notification: queue.bounce_from is not set", zap.String("sender", e.Sender))
			return
		}
		dsn, err := queue.BuildDSN(e, queue.DSNOptions{ReportingMTA: cfg.Server.Hostname, From: cfg.Queue.BounceFrom, Now: s.now()})
		if err != nil {
			log.Error("delivery status notification not built", zap.Error(err))
			return
		}
		i := bytes.Index(dsn, []byte("\r\n\r\n"))
		if i < 0 {
			log.Error("delivery status notification malformed")
			return
		}
		n, err := q.Enqueue(&queue.Message{
			Tenant:   e.Tenant,
			Sender:   "",
			SES:      queue.SES{Region: e.SES.Region, EndpointID: e.SES.EndpointID},
			Requests: []queue.Request{{Recipients: []string{e.Sender}, Header: dsn[:i+4]}},
			Body:     dsn[i+4:],
		})
		if err != nil {
			log.Error("delivery status notification not queued", zap.String("sender", e.Sender), zap.Error(err))
			return
		}
		log.Info("delivery status notification queued", zap.String("sender", e.Sender), zap.String("dsn_queue_id", n.ID))
	}
}

// Wait takes n recipients' tokens for tenant from the same buckets as
// Send (tenant first, then the global fair queue), waiting as long as ctx
// allows rather than ses.rate_limit_wait: the queue's workers drain a
// burst over the SES quota instead of refusing it. It is the queue
// Runner's Limiter.
func (l *RateLimiter) Wait(ctx context.Context, tenant string, n int) error {
	if n < 1 {
		n = 1
	}
	l.mu.RLock()
	tl := l.tenants[tenant]
	m := l.metrics
	l.mu.RUnlock()
	deadline := time.Now().Add(queueLimitWait)
	var tenantRes interface{ Cancel() }
	if tl != nil {
		r, waited, err := waitTenant(ctx, tl, n, deadline)
		if err != nil {
			return err
		}
		if waited {
			m.rateLimit("tenant", tenant, "waited")
		}
		tenantRes = r
	}
	waited, err := l.global.acquire(ctx, tenant, n, deadline)
	if err != nil {
		if tenantRes != nil {
			tenantRes.Cancel()
		}
		return err
	}
	if waited {
		m.rateLimit("global", tenant, "waited")
	}
	return nil
}

// queueLimitWait bounds one wait of a queue worker for tokens; beyond it
// the attempt counts as a transient failure and backs off.
const queueLimitWait = time.Hour

// Next is the Sender l sends through once tokens are granted.
func (l *RateLimiter) Next() Sender { return l.next }
