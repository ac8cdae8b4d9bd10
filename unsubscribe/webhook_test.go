package unsubscribe_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/sesrelay/sesrelay/config"
	"github.com/sesrelay/sesrelay/suppression"
	"github.com/sesrelay/sesrelay/unsubscribe"
)

var webhookSecret = []byte("webhook-secret-webhook-secret-0123456789")

// tenantApp is the tenant's application: it answers each webhook call
// with the next status of answers (200 when they run out) and records the
// calls.
type tenantApp struct {
	mu      sync.Mutex
	answers []int
	calls   []*http.Request
	bodies  [][]byte
	release chan struct{} // when set, calls wait for it
}

func (a *tenantApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if a.release != nil {
		<-a.release
	}
	b, _ := io.ReadAll(r.Body)
	a.mu.Lock()
	a.calls = append(a.calls, r)
	a.bodies = append(a.bodies, b)
	status := 200
	if len(a.answers) > 0 {
		status, a.answers = a.answers[0], a.answers[1:]
	}
	a.mu.Unlock()
	w.WriteHeader(status)
}

func (a *tenantApp) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.calls)
}

type webhookEnv struct {
	url     string
	h       *unsubscribe.Handler
	results *prometheus.Registry
}

func newWebhookEnv(t *testing.T, app *tenantApp) *webhookEnv {
	t.Helper()
	appSrv := httptest.NewServer(app)
	t.Cleanup(appSrv.Close)
	cfg := testConfig(t, "")
	cfg.Tenants[0].ListUnsubscribe.Webhook = config.UnsubscribeWebhook{URL: appSrv.URL + "/hooks/unsubscribe", Secret: webhookSecret}
	store, err := suppression.Open(context.Background(), cfg.Suppression, suppression.Options{})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	h, err := unsubscribe.NewHandler(cfg.UnsubscribeServer, unsubscribe.Options{
		Config: func() *config.Config { return cfg }, Store: store, Logger: zaptest.NewLogger(t), Registerer: reg,
		WebhookBackoff: func(int) time.Duration { return 10 * time.Millisecond },
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(h)
	t.Cleanup(func() { ts.Close(); h.Close(); store.Close() })
	return &webhookEnv{url: ts.URL, h: h, results: reg}
}

func (e *webhookEnv) result(t *testing.T, result string) float64 {
	t.Helper()
	mfs, err := e.results.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "sesrelay_unsubscribe_webhook_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func oneClickPost(t *testing.T, url string) int {
	t.Helper()
	resp, _ := do(t, "POST", url, "application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=One-Click"), nil)
	return resp.StatusCode
}

func TestWebhookSignedAndRetried(t *testing.T) {
	app := &tenantApp{answers: []int{503, 500}}
	e := newWebhookEnv(t, app)
	if code := oneClickPost(t, e.url+"/u/"+token(secretNew, "billing", "monthly", "Ann@Example.org")); code != 200 {
		t.Fatalf("POST: %d", code)
	}
	waitFor(t, "three webhook calls", func() bool { return app.count() == 3 })
	waitFor(t, "the delivered count", func() bool { return e.result(t, "delivered") == 1 })
	if r := e.result(t, "retried"); r != 2 {
		t.Fatalf("retried %v, want 2", r)
	}
	app.mu.Lock()
	defer app.mu.Unlock()
	r, body := app.calls[2], app.bodies[2]
	if r.URL.Path != "/hooks/unsubscribe" || r.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("path %q, content type %q", r.URL.Path, r.Header.Get("Content-Type"))
	}
	var ev unsubscribe.Event
	if err := json.Unmarshal(body, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Type != "unsubscribe" || ev.Tenant != "billing" || ev.List != "monthly" || ev.Recipient != "ann@example.org" ||
		ev.Source != suppression.SourceUnsubscribe || ev.ID == "" || ev.Time.IsZero() {
		t.Fatalf("event %+v", ev)
	}
	// Every attempt carries the same event (the application can dedupe on id).
	if string(app.bodies[0]) != string(body) {
		t.Fatalf("retry body differs:\n%s\n%s", app.bodies[0], body)
	}
	// The signature verifies with the secret over "t." + body, and not
	// with another secret.
	sig := r.Header.Get(unsubscribe.SignatureHeader)
	ts, _, _ := strings.Cut(strings.TrimPrefix(sig, "t="), ",")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		t.Fatalf("signature %q", sig)
	}
	if want := unsubscribe.Sign(webhookSecret, body, time.Unix(sec, 0)); sig != want {
		t.Fatalf("signature %q, want %q", sig, want)
	}
	if unsubscribe.Sign([]byte("another-secret-another-secret-0123456789"), body, time.Unix(sec, 0)) == sig {
		t.Fatal("the signature does not depend on the secret")
	}
}

func TestWebhookPermanentFailureNotRetried(t *testing.T) {
	app := &tenantApp{answers: []int{400}}
	e := newWebhookEnv(t, app)
	if code := oneClickPost(t, e.url+"/u/"+token(secretNew, "billing", "monthly", "ann@example.org")); code != 200 {
		t.Fatalf("POST: %d", code)
	}
	waitFor(t, "the failed count", func() bool { return e.result(t, "failed") == 1 })
	time.Sleep(50 * time.Millisecond)
	if n := app.count(); n != 1 {
		t.Fatalf("%d calls after a 400, want 1", n)
	}
}

// A slow or dead application never delays the unsubscribe.
func TestWebhookNeverBlocksTheUnsubscribe(t *testing.T) {
	app := &tenantApp{release: make(chan struct{})}
	e := newWebhookEnv(t, app)
	start := time.Now()
	for i, r := range []string{"a@example.org", "b@example.org", "c@example.org", "d@example.org", "e@example.org", "f@example.org"} {
		if code := oneClickPost(t, e.url+"/u/"+token(secretNew, "billing", "monthly", r)); code != 200 {
			t.Fatalf("POST %d: %d", i, code)
		}
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("six unsubscribes took %s with the webhook stuck", d)
	}
	close(app.release)
	waitFor(t, "six deliveries", func() bool { return e.result(t, "delivered") == 6 })
}
