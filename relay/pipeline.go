package relay

import (
	"context"
	"errors"
	"sort"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
	"go.uber.org/zap"

	"github.com/sesrelay/sesrelay/config"
	"github.com/sesrelay/sesrelay/headers"
)

// Envelope is the SMTP envelope of one transaction.
type Envelope struct {
	From string
	To   []string
}

// Prepared is the outcome of the pipeline for one message: the SES
// requests to make, in order, or the refusal.
type Prepared struct {
	Requests []*Request
	Message  *headers.Message
	// Refusal is non-nil when the message must not be sent; Reason is a
	// stable label for logs and metrics.
	Refusal *smtp.SMTPError
	Reason  string
}

// Prepare runs the pipeline without sending: read → prepare headers →
// policy → rewrite → sign. It is what Data does before Sender.Send, and
// what `sesrelay explain` shows. ref identifies the message in logs.
func (s *Server) Prepare(st *state, t *config.Tenant, env Envelope, raw []byte, ref string) *Prepared {
	mode := headers.NormalizeBareNewlines
	if st.cfg.Server.BareNewlines == "reject" {
		mode = headers.RejectBareNewlines
	}
	msg, err := headers.Read(raw, mode)
	if err != nil {
		var fe *headers.FormatError
		if errors.As(err, &fe) {
			return &Prepared{Refusal: errFormat(fe), Reason: "malformed"}
		}
		return &Prepared{Refusal: errFormat(&headers.FormatError{Reason: "unreadable message"}), Reason: "malformed"}
	}
	req := &Request{
		Tenant:           t.Name,
		Region:           t.Region,
		EnvelopeFrom:     env.From,
		Recipients:       env.To,
		Raw:              msg.Bytes(),
		ConfigurationSet: t.ConfigurationSet,
		Tags:             tenantTags(t, ""),
		IdentityARN:      t.IdentityARN,
		SESTenant:        t.SESTenant,
		EndpointID:       t.SESEndpointID,
	}
	return &Prepared{Requests: []*Request{req}, Message: msg}
}

func tenantTags(t *config.Tenant, fromDomain string) []Tag {
	tags := make([]Tag, 0, len(t.Tags)+2)
	for k, v := range t.Tags {
		tags = append(tags, Tag{k, v})
	}
	tags = append(tags, Tag{"tenant", t.Name})
	sort.Slice(tags, func(i, j int) bool { return tags[i].Name < tags[j].Name })
	return tags
}

// deliver prepares and sends one message and returns the reply (250 on
// success).
func (s *Server) deliver(ctx context.Context, st *state, t *config.Tenant, env Envelope, raw []byte, ref string, log *zap.Logger) *smtp.SMTPError {
	start := time.Now()
	p := s.Prepare(st, t, env, raw, ref)
	if p.Refusal != nil {
		log.Info("message rejected", zap.String("reason", p.Reason), zap.Int("size", len(raw)),
			zap.Int("code", p.Refusal.Code), zap.String("reply", p.Refusal.Message))
		s.metrics.message(t.Name, "rejected", p.Reason, time.Since(start))
		return p.Refusal
	}
	var ids []string
	for _, req := range p.Requests {
		sendStart := time.Now()
		res, err := s.sender.Send(ctx, req)
		d := time.Since(sendStart)
		if err != nil {
			kind := Classify(err)
			s.metrics.sesCall(regionOr(req.Region, st.cfg.SES.Region), kind.String(), d)
			r := ReplyForSendError(err, ref)
			lvl := log.Warn
			if kind.Alert() {
				lvl = log.Error
			}
			lvl("message not sent", zap.String("reason", kind.String()), zap.Error(err), zap.Int("size", len(req.Raw)),
				zap.Int("code", r.Code), zap.Duration("ses_duration", d), zap.Duration("duration", time.Since(start)))
			outcome := "failed"
			if !kind.Transient() {
				outcome = "rejected"
			}
			s.metrics.message(t.Name, outcome, kind.String(), time.Since(start))
			return r
		}
		s.metrics.sesCall(regionOr(req.Region, st.cfg.SES.Region), "ok", d)
		s.metrics.sent(t.Name, len(req.Recipients), len(req.Raw))
		ids = append(ids, res.MessageID)
	}
	log.Info("message sent", zap.Strings("ses_message_id", ids), zap.Int("size", len(raw)),
		zap.String("configuration_set", p.Requests[0].ConfigurationSet), zap.Int("code", 250),
		zap.Duration("duration", time.Since(start)))
	s.metrics.message(t.Name, "accepted", "", time.Since(start))
	return reply(250, smtp.EnhancedCode{2, 0, 0}, okQueued(strings.Join(ids, ",")))
}

func regionOr(r, def string) string {
	if r != "" {
		return r
	}
	return def
}

var errNonASCII = errors.New("non-ASCII local part")

// addressDomain returns the normalized domain of an address.
func addressDomain(addr string) (string, error) {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 {
		return "", errors.New("no domain")
	}
	return config.NormalizeDomain(addr[at+1:])
}

// normalizeRecipient checks an envelope recipient and converts its domain
// to ASCII (SES has no SMTPUTF8: the local part must be ASCII).
func normalizeRecipient(addr string) (string, error) {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 {
		return "", errors.New("no domain")
	}
	local := addr[:at]
	for i := 0; i < len(local); i++ {
		if local[i] >= 0x80 {
			return "", errNonASCII
		}
		if local[i] < 0x21 && !strings.HasPrefix(local, `"`) {
			return "", errors.New("bad local part")
		}
	}
	d, err := config.NormalizeDomain(addr[at+1:])
	if err != nil || strings.HasPrefix(d, "*.") {
		return "", errors.New("bad domain")
	}
	return local + "@" + d, nil
}

func tenantOwns(t *config.Tenant, domain string) bool {
	for _, e := range t.Domains {
		if config.CoversDomain(e, domain) {
			return true
		}
	}
	return false
}
