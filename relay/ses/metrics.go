package ses

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the Sender's own collectors: they count SES calls only
// (the file sender makes none). Label values come from bounded sets: a
// configured region, and "ok" or a relay.Kind name.
type metrics struct {
	opened   *prometheus.CounterVec   // new HTTP connections for SendEmail, by region
	duration *prometheus.HistogramVec // one Send, retries included, by region and result
}

func newMetrics() *metrics {
	return &metrics{
		opened: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sesrelay_ses_connections_opened_total",
			Help: "New HTTP connections (TCP and TLS handshakes) opened for SendEmail calls. Calls should reuse pooled connections: a rate near the call rate means the pool is not working.",
		}, []string{"region"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sesrelay_ses_request_duration_seconds",
			Help:    "SES SendEmail latency of one message (retries and backoff included), by the region of the last attempt and result (ok or the failure kind).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"region", "result"}),
	}
}

// call records one Send.
func (m *metrics) call(region string, err error, d time.Duration) {
	result := "ok"
	if err != nil {
		result = classify(err).String()
	}
	m.duration.WithLabelValues(region, result).Observe(d.Seconds())
}

var regionUpDesc = prometheus.NewDesc("sesrelay_ses_region_up",
	"1 while a region of ses.regions takes mail, 0 while it is marked down after ses.failover.after consecutive failures.",
	[]string{"region"}, nil)

// Collector exports the Sender's metrics:
// sesrelay_ses_request_duration_seconds{region,result},
// sesrelay_ses_connections_opened_total{region} and
// sesrelay_ses_region_up{region} for the regions of ses.regions (no series
// without the list). Region health is read at each scrape, so a reload
// that changes the list changes the series.
func (s *Sender) Collector() prometheus.Collector { return collector{s} }

type collector struct{ s *Sender }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- regionUpDesc
	c.s.metrics.opened.Describe(ch)
	c.s.metrics.duration.Describe(ch)
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	c.s.metrics.opened.Collect(ch)
	c.s.metrics.duration.Collect(ch)
	for _, r := range c.s.Regions() {
		v := 0.0
		if r.Up {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(regionUpDesc, prometheus.GaugeValue, v, r.Region)
	}
}
