package queue

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the queue's Prometheus series (docs/queue.md lists them).
type metrics struct {
	reg        prometheus.Registerer
	collectors []prometheus.Collector

	messages    *prometheus.GaugeVec
	bytes       *prometheus.GaugeVec
	deadEntries *prometheus.GaugeVec
	enqueued    *prometheus.CounterVec
	full        *prometheus.CounterVec
	deliveries  *prometheus.CounterVec
	retries     *prometheus.CounterVec
	expired     *prometheus.CounterVec
	dead        *prometheus.CounterVec
	writeErrors prometheus.Counter
}

func newMetrics(q *Queue, reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		reg: reg,
		messages: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sesrelay_queue_messages",
			Help: "Messages in the queue waiting for delivery (active, not dead).",
		}, []string{"tenant"}),
		bytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sesrelay_queue_bytes",
			Help: "Bytes of the messages waiting for delivery.",
		}, []string{"tenant"}),
		deadEntries: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sesrelay_queue_dead_messages",
			Help: "Messages in the dead area, waiting for an operator.",
		}, []string{"tenant"}),
		enqueued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sesrelay_queue_enqueued_total",
			Help: "Messages durably written to the queue.",
		}, []string{"tenant"}),
		full: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sesrelay_queue_full_total",
			Help: "Messages refused because a queue limit was reached (scope global or tenant).",
		}, []string{"tenant", "scope"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sesrelay_queue_deliveries_total",
			Help: "SES requests attempted from the queue, by result (accepted, transient, permanent).",
		}, []string{"tenant", "result"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sesrelay_queue_retries_total",
			Help: "Messages rescheduled after a transient failure.",
		}, []string{"tenant"}),
		expired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sesrelay_queue_expired_total",
			Help: "Messages that reached queue.max_age and were moved to the dead area.",
		}, []string{"tenant"}),
		dead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sesrelay_queue_dead_total",
			Help: "Messages moved to the dead area, by reason (refused, expired, unreadable).",
		}, []string{"tenant", "reason"}),
		writeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sesrelay_queue_write_errors_total",
			Help: "Queue file-system writes that failed (ENOSPC, EIO, permissions).",
		}),
	}
	oldest := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sesrelay_queue_oldest_message_age_seconds",
		Help: "Age of the oldest message waiting for delivery, 0 when none waits.",
	}, func() float64 {
		t := q.oldest()
		if t.IsZero() {
			return 0
		}
		return q.now().Sub(t).Seconds()
	})
	m.collectors = []prometheus.Collector{m.messages, m.bytes, m.deadEntries, m.enqueued, m.full,
		m.deliveries, m.retries, m.expired, m.dead, m.writeErrors, oldest}
	if reg != nil {
		for i, c := range m.collectors {
			if err := reg.Register(c); err != nil {
				for _, r := range m.collectors[:i] {
					reg.Unregister(r)
				}
				return nil, err
			}
		}
	}
	return m, nil
}

// unregister lets a queue be opened again in the same process.
func (m *metrics) unregister() {
	if m.reg == nil {
		return
	}
	for _, c := range m.collectors {
		m.reg.Unregister(c)
	}
}
