package relay

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the relay's Prometheus collectors. A nil *Metrics records
// nothing, so tests and tools can run without a registry.
type Metrics struct {
	ConnsCurrent   prometheus.Gauge
	ConnsTotal     *prometheus.CounterVec
	ConnsRejected  *prometheus.CounterVec
	Auth           *prometheus.CounterVec
	Messages       *prometheus.CounterVec
	Recipients     *prometheus.CounterVec
	Bytes          *prometheus.CounterVec
	SESDuration    *prometheus.HistogramVec
	PipelineTime   *prometheus.HistogramVec
	RateLimitWaits *prometheus.CounterVec
}

// NewMetrics creates the collectors and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		ConnsCurrent: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sesrelay_connections_current", Help: "SMTP connections open now.",
		}),
		ConnsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sesrelay_connections_total", Help: "SMTP connections accepted, by listener.",
		}, []string{"listener"}),
		ConnsRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sesrelay_connections_rejected_total", Help: "SMTP connections refused, by reason.",
		}, []string{"reason"}),
		Auth: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sesrelay_auth_total", Help: "SMTP AUTH attempts, by result (success, failure, throttled, locked_out) and tenant (empty when unknown).",
		}, []string{"tenant", "result"}),
		Messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sesrelay_messages_total", Help: "Messages by tenant, outcome (accepted, rejected, failed) and reason (policy reason or SES error kind).",
		}, []string{"tenant", "outcome", "reason"}),
		Recipients: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sesrelay_recipients_sent_total", Help: "Recipients accepted by SES, by tenant.",
		}, []string{"tenant"}),
		Bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sesrelay_message_bytes_total", Help: "Bytes of messages accepted by SES, by tenant.",
		}, []string{"tenant"}),
		SESDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sesrelay_ses_request_duration_seconds", Help: "SES SendEmail call latency (retries included), by region and result kind.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"region", "result"}),
		PipelineTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sesrelay_pipeline_duration_seconds", Help: "Time from end of DATA to the reply, by outcome.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"outcome"}),
		RateLimitWaits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sesrelay_rate_limit_total", Help: "Rate limiter decisions, by scope (global, tenant), tenant and result (waited, refused).",
		}, []string{"scope", "tenant", "result"}),
	}
	if reg != nil {
		reg.MustRegister(m.ConnsCurrent, m.ConnsTotal, m.ConnsRejected, m.Auth, m.Messages,
			m.Recipients, m.Bytes, m.SESDuration, m.PipelineTime, m.RateLimitWaits)
	}
	return m
}

func (m *Metrics) connRejected(reason string) {
	if m != nil {
		m.ConnsRejected.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) connOpened(listener string) {
	if m != nil {
		m.ConnsCurrent.Inc()
		m.ConnsTotal.WithLabelValues(listener).Inc()
	}
}

func (m *Metrics) connClosed() {
	if m != nil {
		m.ConnsCurrent.Dec()
	}
}

func (m *Metrics) auth(tenant, result string) {
	if m != nil {
		m.Auth.WithLabelValues(tenant, result).Inc()
	}
}

func (m *Metrics) message(tenant, outcome, reason string, d time.Duration) {
	if m != nil {
		m.Messages.WithLabelValues(tenant, outcome, reason).Inc()
		m.PipelineTime.WithLabelValues(outcome).Observe(d.Seconds())
	}
}

func (m *Metrics) sent(tenant string, rcpts, bytes int) {
	if m != nil {
		m.Recipients.WithLabelValues(tenant).Add(float64(rcpts))
		m.Bytes.WithLabelValues(tenant).Add(float64(bytes))
	}
}

func (m *Metrics) sesCall(region, result string, d time.Duration) {
	if m != nil {
		m.SESDuration.WithLabelValues(region, result).Observe(d.Seconds())
	}
}
