package config

import (
	"fmt"
	"net/mail"
	"time"
)

// Delivery modes (delivery.mode, tenants[].delivery_mode).
const (
	// ModeDirect answers 250 only after SES accepted the message.
	ModeDirect = "direct"
	// ModeFallback sends at once and queues on a transient SES failure.
	ModeFallback = "fallback"
	// ModeQueue answers 250 once the message is durably queued.
	ModeQueue = "queue"
)

// Queue configures the store-and-forward queue (docs/queue.md).
type Queue struct {
	Dir         string        `mapstructure:"dir"`
	MinBackoff  time.Duration `mapstructure:"min_backoff"`
	MaxBackoff  time.Duration `mapstructure:"max_backoff"`
	MaxAge      time.Duration `mapstructure:"max_age"`
	MaxBytes    int64         `mapstructure:"max_bytes"`
	MaxMessages int           `mapstructure:"max_messages"`
	Workers     int           `mapstructure:"workers"`
	// Sync is how a new queue file is made durable: "filesystem" (one
	// syncfs shared by concurrent writers) or "file" (an fsync each).
	Sync string `mapstructure:"sync"`
	// BounceFrom is the From of delivery status notifications; empty
	// means none are sent (dead messages are still logged and counted).
	BounceFrom string `mapstructure:"bounce_from"`
}

// TenantQueue bounds one tenant's share of the queue (0 = no own limit).
type TenantQueue struct {
	MaxBytes    int64 `mapstructure:"max_bytes"`
	MaxMessages int   `mapstructure:"max_messages"`
}

// DefaultQueue is the queue section of Defaults: Postfix's backoff and
// lifetime (minimal_backoff_time, maximal_backoff_time,
// maximal_queue_lifetime).
func DefaultQueue() Queue {
	return Queue{
		MinBackoff: 300 * time.Second,
		MaxBackoff: 4000 * time.Second,
		MaxAge:     5 * 24 * time.Hour,
		Workers:    4,
		Sync:       "filesystem",
	}
}

// DeliveryModeOf is the mode in force for t: its own, else delivery.mode.
func (c *Config) DeliveryModeOf(t *Tenant) string {
	if t != nil && t.DeliveryMode != "" {
		return t.DeliveryMode
	}
	return c.Delivery.Mode
}

// QueueUsed reports whether any tenant delivers through the queue.
func (c *Config) QueueUsed() bool {
	if c.Delivery.Mode != "" && c.Delivery.Mode != ModeDirect {
		return true
	}
	for i := range c.Tenants {
		if m := c.DeliveryModeOf(&c.Tenants[i]); m != ModeDirect && m != "" {
			return true
		}
	}
	return false
}

func validMode(m string) bool { return m == ModeDirect || m == ModeFallback || m == ModeQueue }

func (c *Config) validateQueue(p *problems) {
	if !validMode(c.Delivery.Mode) {
		p.add("delivery.mode", "must be direct, fallback or queue, got %q", c.Delivery.Mode)
	}
	for i := range c.Tenants {
		t := &c.Tenants[i]
		path := fmt.Sprintf("tenants[%d]", i)
		if t.DeliveryMode != "" && !validMode(t.DeliveryMode) {
			p.add(path+".delivery_mode", "must be direct, fallback or queue, got %q", t.DeliveryMode)
		}
		if t.Queue.MaxBytes < 0 {
			p.add(path+".queue.max_bytes", "must not be negative")
		}
		if t.Queue.MaxMessages < 0 {
			p.add(path+".queue.max_messages", "must not be negative")
		}
	}
	q := &c.Queue
	if q.Dir == "" && c.QueueUsed() {
		p.add("queue.dir", "required when delivery.mode or a tenant's delivery_mode is fallback or queue")
	}
	if q.MinBackoff <= 0 {
		p.add("queue.min_backoff", "must be a positive duration")
	}
	if q.MaxBackoff < q.MinBackoff {
		p.add("queue.max_backoff", "must be at least queue.min_backoff (%s)", q.MinBackoff)
	}
	if q.MaxAge <= 0 {
		p.add("queue.max_age", "must be a positive duration")
	}
	if q.MaxBytes < 0 {
		p.add("queue.max_bytes", "must not be negative")
	} else if q.MaxBytes > 0 && q.MaxBytes < c.Server.MaxMessageBytes {
		p.add("queue.max_bytes", "%d is below server.max_message_bytes (%d): a message of the maximum size could never be queued", q.MaxBytes, c.Server.MaxMessageBytes)
	}
	if q.MaxMessages < 0 {
		p.add("queue.max_messages", "must not be negative")
	}
	if q.Workers < 1 || q.Workers > 1000 {
		p.add("queue.workers", "must be between 1 and 1000, got %d", q.Workers)
	}
	if q.Sync != "filesystem" && q.Sync != "file" {
		p.add("queue.sync", `must be "filesystem" or "file", got %q`, q.Sync)
	}
	if q.BounceFrom != "" {
		a, err := mail.ParseAddress(q.BounceFrom)
		if err != nil || a.Name != "" || a.Address != q.BounceFrom {
			p.add("queue.bounce_from", "must be a bare address like postmaster@example.com, got %q", q.BounceFrom)
		}
	}
}
