package relay

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the relay's Prometheus collectors. A nil *Metrics records
// nothing, so tests and tools can run without a registry.
//
// Every label value comes from a bounded set: tenant is a configured
// tenant name (empty before AUTH succeeds), listener a bound listener
// address, hash one configuration digest at a time, and reason, outcome,
// result and scope are fixed words defined in this package, in policy
// (reject reasons) or by Kind.String. The SES call metrics are relay/ses's
// own. No label
// carries a client-supplied string, so a client cannot grow the number of
// series. docs/operations.md lists every metric.
type Metrics struct {
	ConnsCurrent   prometheus.Gauge
	ConnsTotal     *prometheus.CounterVec
	ConnsRejected  *prometheus.CounterVec
	Auth           *prometheus.CounterVec
	Messages       *prometheus.CounterVec
	Recipients     *prometheus.CounterVec
	Bytes          *prometheus.CounterVec
	PipelineTime   *prometheus.HistogramVec
	RateLimitWaits *prometheus.CounterVec
	Suppressed     *prometheus.CounterVec

	ReloadSuccessful prometheus.Gauge
	ReloadTimestamp  prometheus.Gauge
	Reloads          *prometheus.CounterVec
	ConfigInfo       *prometheus.GaugeVec
	BuildInfo        *prometheus.GaugeVec

	// Memory budget (budget.go).
	InflightBytes  prometheus.Gauge
	BudgetRefusals *prometheus.CounterVec
	// Revocation and server.max_session_duration (revoke.go).
	SessionsEnded *prometheus.CounterVec
}

// Values of the result label of sesrelay_config_reloads_total.
const (
	ReloadSuccess = "success"
	ReloadFailure = "failure"
)

// NewMetrics creates the collectors and registers them on reg (nil: not
// registered). Build information is set with SetBuildInfo, the loaded
// configuration with ConfigLoaded.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		ConnsCurrent: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sesrelay_connections_current", Help: "SMTP connections open now.",
		}),
		ConnsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sesrelay_connections_total", Help: "SMTP connections accepted, by listener.",
		}, []string{"listener"}),
		ConnsRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sesrelay_connections_rejected_total", Help: "SMTP connections refused, by reason (network, max_connections, max_connections_per_ip, proxy_untrusted, proxy_missing, proxy_invalid).",
		}, []string{"reason"}),
		Auth: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sesrelay_auth_total", Help: "SMTP AUTH attempts, by result (success, failure, throttled, locked_out, too_many_connections) and tenant (empty unless the credentials were right).",
		}, []string{"tenant", "result"}),
		Messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sesrelay_messages_total", Help: "Messages by tenant, outcome (accepted, queued, rejected, failed) and reason (policy reason, SES error kind or queue failure).",
		}, []string{"tenant", "outcome", "reason"}),
		Recipients: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sesrelay_recipients_sent_total", Help: "Recipients accepted by SES, by tenant.",
		}, []string{"tenant"}),
		Bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sesrelay_message_bytes_total", Help: "Bytes of messages accepted by SES, by tenant.",
		}, []string{"tenant"}),
		PipelineTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sesrelay_pipeline_duration_seconds", Help: "Time from end of DATA to the reply, by outcome.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"outcome"}),
		Suppressed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sesrelay_suppressed_recipients_total", Help: "Recipients left out of list mail because they unsubscribed from the list, by tenant and action (dropped, rejected); lookup_failed counts failed store lookups (451, nothing sent).",
		}, []string{"tenant", "action"}),
		RateLimitWaits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sesrelay_rate_limit_total", Help: "Rate limiter decisions, by scope (global, tenant), tenant and result (waited, refused).",
		}, []string{"scope", "tenant", "result"}),

		ReloadSuccessful: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sesrelay_config_last_reload_successful", Help: "1 if the last configuration load or reload succeeded, 0 if it failed (the previous configuration stays in use).",
		}),
		ReloadTimestamp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sesrelay_config_last_reload_success_timestamp_seconds", Help: "Unix time of the last successful configuration load or reload.",
		}),
		Reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sesrelay_config_reloads_total", Help: "Configuration reloads, by result (success, failure).",
		}, []string{"result"}),
		ConfigInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sesrelay_config_info", Help: "Always 1; hash is the SHA-256 of the configuration file in use.",
		}, []string{"hash"}),
		BuildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sesrelay_build_info", Help: "Always 1; the relay's version and the Go version it was built with.",
		}, []string{"version", "goversion"}),
	}
	// Both results exist from the start, so rate() and increase() see the
	// first failure.
	m.Reloads.WithLabelValues(ReloadSuccess)
	m.Reloads.WithLabelValues(ReloadFailure)
	m.InflightBytes, m.BudgetRefusals = newBudgetMetrics()
	m.SessionsEnded = newSessionMetrics()
	if reg != nil {
		reg.MustRegister(m.ConnsCurrent, m.ConnsTotal, m.ConnsRejected, m.Auth, m.Messages,
			m.Recipients, m.Bytes, m.PipelineTime, m.RateLimitWaits, m.Suppressed,
			m.ReloadSuccessful, m.ReloadTimestamp, m.Reloads, m.ConfigInfo, m.BuildInfo)
		reg.MustRegister(m.InflightBytes, m.BudgetRefusals, m.SessionsEnded)
	}
	return m
}

// SetBuildInfo sets sesrelay_build_info{version, goversion} to 1.
func (m *Metrics) SetBuildInfo(version, goVersion string) {
	if m != nil {
		m.BuildInfo.Reset()
		m.BuildInfo.WithLabelValues(version, goVersion).Set(1)
	}
}

// ConfigLoaded records the configuration the process started with: the
// reload gauge at 1, its timestamp, and sesrelay_config_info{hash}. It
// does not count a reload.
func (m *Metrics) ConfigLoaded(hash string, at time.Time) {
	if m != nil {
		m.configInUse(hash, at)
	}
}

// Reloaded records one reload attempt: ok means the configuration hashing
// to hash is now in use; otherwise the previous one stays (and so do its
// hash and timestamp) and the success gauge drops to 0 until a reload
// succeeds.
func (m *Metrics) Reloaded(hash string, ok bool, at time.Time) {
	if m == nil {
		return
	}
	if !ok {
		m.Reloads.WithLabelValues(ReloadFailure).Inc()
		m.ReloadSuccessful.Set(0)
		return
	}
	m.Reloads.WithLabelValues(ReloadSuccess).Inc()
	m.configInUse(hash, at)
}

func (m *Metrics) configInUse(hash string, at time.Time) {
	m.ReloadSuccessful.Set(1)
	m.ReloadTimestamp.Set(float64(at.UnixNano()) / 1e9)
	// One series at a time: the hash of the configuration in use.
	m.ConfigInfo.Reset()
	m.ConfigInfo.WithLabelValues(hash).Set(1)
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

// message counts one message outcome. d is the time from the end of DATA
// to the reply; d == 0 means the message was refused before DATA (at
// MAIL FROM) and observes no pipeline latency, so those refusals do not
// drag the latency quantiles towards zero.
func (m *Metrics) message(tenant, outcome, reason string, d time.Duration) {
	if m != nil {
		m.Messages.WithLabelValues(tenant, outcome, reason).Inc()
		if d > 0 {
			m.PipelineTime.WithLabelValues(outcome).Observe(d.Seconds())
		}
	}
}

func (m *Metrics) sent(tenant string, rcpts, bytes int) {
	if m != nil {
		m.Recipients.WithLabelValues(tenant).Add(float64(rcpts))
		m.Bytes.WithLabelValues(tenant).Add(float64(bytes))
	}
}

// suppressed counts n recipients suppressed for tenant with action
// (dropped, rejected), or one failed lookup (lookup_failed, n == 0).
func (m *Metrics) suppressed(tenant, action string, n int) {
	if m == nil {
		return
	}
	if n == 0 {
		n = 1
	}
	m.Suppressed.WithLabelValues(tenant, action).Add(float64(n))
}
