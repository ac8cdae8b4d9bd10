package suppression

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the store's Prometheus series (docs/operations.md lists them).
type metrics struct {
	lookups   *prometheus.CounterVec
	cacheHits prometheus.Counter
	hits      *prometheus.CounterVec
	errors    *prometheus.CounterVec
	added     *prometheus.CounterVec
	removed   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sesrelay_suppression_lookups_total",
			Help: "Recipients looked up in the suppression store (from the cache or the store).",
		}, []string{"tenant"}),
		cacheHits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sesrelay_suppression_cache_hits_total",
			Help: "Recipient lookups answered from the cache without asking the store.",
		}),
		hits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sesrelay_suppression_hits_total",
			Help: "Recipients looked up and found suppressed for the message's list.",
		}, []string{"tenant"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sesrelay_suppression_errors_total",
			Help: "Failed suppression store requests, by operation (lookup, add, remove, list).",
		}, []string{"op"}),
		added: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sesrelay_suppression_entries_added_total",
			Help: "Suppression entries added, by source (unsubscribe, import, admin, ...).",
		}, []string{"tenant", "source"}),
		removed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sesrelay_suppression_entries_removed_total",
			Help: "Suppression entries removed.",
		}, []string{"tenant"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.lookups, m.cacheHits, m.hits, m.errors, m.added, m.removed} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("suppression metrics: %w", err)
		}
	}
	return m, nil
}
