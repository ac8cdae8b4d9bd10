package config

import (
	"strings"
	"testing"
	"time"
)

const queueYAML = `
server:
  hostname: relay.test
  listeners: [{address: "127.0.0.1:2587"}]
  tls: {self_signed: true}
queue:
  dir: /var/spool/sesrelay
  bounce_from: postmaster@a.example.com
tenants:
  - name: a
    users: [{username: a, password_hash: "$2a$10$fLk/pjHAlbeiM/xrxs7rM.c4LTB14MuTZ6tjapQ/.k4ypkOY1Q3IC"}]
    domains: [a.example.com]
    delivery_mode: queue
    queue: {max_messages: 1000}
  - name: b
    users: [{username: b, password_hash: "$2a$10$fLk/pjHAlbeiM/xrxs7rM.c4LTB14MuTZ6tjapQ/.k4ypkOY1Q3IC"}]
    domains: [b.example.com]
`

func TestQueueConfig(t *testing.T) {
	cfg, err := Parse([]byte(queueYAML))
	if err != nil {
		t.Fatal(err)
	}
	q := cfg.Queue
	if q.Dir != "/var/spool/sesrelay" || q.MinBackoff != 300*time.Second || q.MaxBackoff != 4000*time.Second ||
		q.MaxAge != 120*time.Hour || q.Workers != 4 || q.MaxBytes != 0 || q.BounceFrom != "postmaster@a.example.com" {
		t.Errorf("queue = %+v", q)
	}
	if cfg.Delivery.Mode != ModeDirect || cfg.DeliveryModeOf(&cfg.Tenants[0]) != ModeQueue || cfg.DeliveryModeOf(&cfg.Tenants[1]) != ModeDirect {
		t.Errorf("modes: global %q, a %q, b %q", cfg.Delivery.Mode, cfg.DeliveryModeOf(&cfg.Tenants[0]), cfg.DeliveryModeOf(&cfg.Tenants[1]))
	}
	if cfg.Tenants[0].Queue.MaxMessages != 1000 || !cfg.QueueUsed() {
		t.Errorf("tenant queue %+v, used %v", cfg.Tenants[0].Queue, cfg.QueueUsed())
	}
}

// TestQueueDirOnlyWhenUsed: without fallback or queue anywhere, no
// queue.dir is needed; a global fallback needs one.
func TestQueueDirOnlyWhenUsed(t *testing.T) {
	direct := strings.Replace(strings.Replace(queueYAML, "delivery_mode: queue", "delivery_mode: direct", 1), "dir: /var/spool/sesrelay", "", 1)
	cfg, err := Parse([]byte(direct))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.QueueUsed() {
		t.Error("queue used with every tenant direct")
	}
	fallback := strings.Replace(direct, "queue:\n", "delivery: {mode: fallback}\nqueue:\n", 1)
	if _, err := Parse([]byte(fallback)); err == nil || !strings.Contains(err.Error(), "queue.dir: required") {
		t.Errorf("global fallback without queue.dir: %v", err)
	}
}
