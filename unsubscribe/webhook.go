package unsubscribe

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sesrelay/sesrelay/config"
)

// The webhook tells a tenant's application of each unsubscribe the
// endpoint recorded (tenants[].list_unsubscribe.webhook): one POST per
// unsubscribe, JSON, signed with HMAC-SHA256. It never delays or fails the
// unsubscribe: events wait in a bounded in-memory queue, a failed delivery
// is retried with exponential backoff, and what cannot be delivered is
// logged and counted. The suppression store stays the record; the webhook
// is a notification (lost at a restart while pending).

// SignatureHeader carries "t=UNIX,v1=HEX": HEX is HMAC-SHA256 under the
// tenant's webhook secret of "UNIX." followed by the request body.
const SignatureHeader = "X-Sesrelay-Signature"

// Event is the webhook's JSON body.
type Event struct {
	ID        string    `json:"id"`
	Type      string    `json:"type"` // "unsubscribe"
	Tenant    string    `json:"tenant"`
	List      string    `json:"list"`
	Recipient string    `json:"recipient"`
	Time      time.Time `json:"time"`
	Source    string    `json:"source"`
}

// Sign returns the SignatureHeader value for body sent at t.
func Sign(secret, body []byte, t time.Time) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

// Webhook delivery limits.
const (
	webhookQueue    = 10000
	webhookWorkers  = 4
	webhookAttempts = 8 // 1 + 7 retries, about 4 minutes of backoff
	webhookTimeout  = 10 * time.Second
)

type delivery struct {
	ev      Event
	attempt int
}

// webhook delivers events. Its zero value is not usable; see newWebhook.
type webhook struct {
	config  func() *config.Config
	client  *http.Client
	log     *zap.Logger
	now     func() time.Time
	backoff func(attempt int) time.Duration
	results *prometheus.CounterVec

	queue chan delivery

	mu      sync.Mutex
	closed  bool
	timers  map[*time.Timer]string // pending retries and their tenant
	stop    chan struct{}
	workers sync.WaitGroup
}

func newWebhook(cfg func() *config.Config, log *zap.Logger, now func() time.Time, backoff func(int) time.Duration, results *prometheus.CounterVec) *webhook {
	w := &webhook{
		config:  cfg,
		client:  &http.Client{Timeout: webhookTimeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		log:     log,
		now:     now,
		backoff: func(a int) time.Duration { return min(time.Second<<(a-1), 2*time.Minute) },
		results: results,
		queue:   make(chan delivery, webhookQueue),
		timers:  map[*time.Timer]string{},
		stop:    make(chan struct{}),
	}
	if backoff != nil {
		w.backoff = backoff
	}
	for range webhookWorkers {
		w.workers.Go(w.work)
	}
	return w
}

// notify queues ev for the tenant's webhook, if it has one. It never
// blocks: a full queue drops the event (counted).
func (w *webhook) notify(ev Event) {
	t := w.config().TenantByName(ev.Tenant)
	if t == nil || t.ListUnsubscribe == nil || t.ListUnsubscribe.Webhook.URL == "" {
		return
	}
	var id [12]byte
	_, _ = rand.Read(id[:])
	ev.ID = hex.EncodeToString(id[:])
	ev.Type = "unsubscribe"
	w.enqueue(delivery{ev: ev, attempt: 1})
}

func (w *webhook) enqueue(d delivery) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		w.count(d.ev.Tenant, "dropped")
		return
	}
	select {
	case w.queue <- d:
	default:
		w.count(d.ev.Tenant, "dropped")
		w.log.Error("unsubscribe webhook queue full, event dropped", zap.String("tenant", d.ev.Tenant), zap.String("event", d.ev.ID))
	}
}

func (w *webhook) work() {
	for {
		select {
		case <-w.stop:
			return
		case d := <-w.queue:
			w.deliver(d)
		}
	}
}

// deliver makes one attempt and schedules the next on a failure that a
// retry can mend (network, timeout, 408, 429, 5xx).
func (w *webhook) deliver(d delivery) {
	t := w.config().TenantByName(d.ev.Tenant)
	if t == nil || t.ListUnsubscribe == nil || t.ListUnsubscribe.Webhook.URL == "" {
		w.count(d.ev.Tenant, "dropped") // the webhook was removed by a reload
		return
	}
	wh := t.ListUnsubscribe.Webhook
	status, err := w.post(wh, d.ev)
	log := w.log.With(zap.String("tenant", d.ev.Tenant), zap.String("event", d.ev.ID), zap.Int("attempt", d.attempt))
	if err == nil {
		w.count(d.ev.Tenant, "delivered")
		log.Debug("unsubscribe webhook delivered", zap.Int("status", status))
		return
	}
	retry := status == 0 || status == http.StatusRequestTimeout || status == http.StatusTooManyRequests || status >= 500
	if !retry || d.attempt >= webhookAttempts {
		w.count(d.ev.Tenant, "failed")
		log.Error("unsubscribe webhook failed, giving up", zap.Int("status", status), zap.Error(err))
		return
	}
	w.count(d.ev.Tenant, "retried")
	wait := w.backoff(d.attempt)
	log.Warn("unsubscribe webhook failed, retrying", zap.Int("status", status), zap.Error(err), zap.Duration("retry_in", wait))
	d.attempt++
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		w.count(d.ev.Tenant, "dropped")
		return
	}
	var tm *time.Timer
	tm = time.AfterFunc(wait, func() {
		w.mu.Lock()
		delete(w.timers, tm)
		w.mu.Unlock()
		w.enqueue(d)
	})
	w.timers[tm] = d.ev.Tenant
}

func (w *webhook) post(wh config.UnsubscribeWebhook, ev Event) (int, error) {
	body, err := json.Marshal(ev)
	if err != nil {
		return -1, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), webhookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, wh.URL, bytes.NewReader(body))
	if err != nil {
		return -1, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "sesrelay-unsubscribe-webhook")
	req.Header.Set(SignatureHeader, Sign(wh.Secret, body, w.now()))
	resp, err := w.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, fmt.Errorf("answered %s", resp.Status)
	}
	return resp.StatusCode, nil
}

func (w *webhook) count(tenant, result string) {
	w.results.WithLabelValues(tenant, result).Inc()
}

// close stops the workers; events still queued or waiting for a retry are
// dropped (counted).
func (w *webhook) close() {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.closed = true
	for tm, tenant := range w.timers {
		if tm.Stop() {
			w.count(tenant, "dropped")
		}
	}
	w.timers = nil
	close(w.stop)
	w.mu.Unlock()
	w.workers.Wait()
	for {
		select {
		case d := <-w.queue:
			w.count(d.ev.Tenant, "dropped")
		default:
			return
		}
	}
}
