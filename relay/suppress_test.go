package relay_test

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sesrelay/sesrelay/config"
	"github.com/sesrelay/sesrelay/headers"
	"github.com/sesrelay/sesrelay/relay"
	"github.com/sesrelay/sesrelay/suppression"
)

const unsubSecret = "suppress-test-secret-0123456789abcdef"

// suppressYAML: billing drops suppressed recipients and names its list in
// X-List; marketing rejects and relies on List-Id; news adds one-click
// headers (one SES call per recipient) and names its list in X-List.
const suppressYAML = `
server:
  hostname: relay.test
  listeners:
    - {address: "127.0.0.1:0", tls: starttls}
  tls: {self_signed: true}
  max_recipients: 50
ses: {region: us-east-1, max_attempts: 1, timeout: 5s}
suppression: {dir: SUPPDIR, cache_ttl: 0s}
tenants:
  - name: billing
    users: [{username: billing-app, password_hash: "HASH"}]
    domains: ["billing.example.com"]
    list_unsubscribe: {list_id_header: X-List}
  - name: marketing
    users: [{username: marketing-app, password_hash: "HASH"}]
    domains: ["marketing.example.com"]
    suppressed_recipients: reject
  - name: news
    users: [{username: news-app, password_hash: "HASH"}]
    domains: ["news.example.com"]
    list_unsubscribe:
      mode: add
      url: "https://unsub.example.com/u/{token}"
      secret_file: SECRETFILE
      list_id_header: X-List
`

type suppressHarness struct {
	*harness
	store   suppression.Store
	metrics *relay.Metrics
}

// startSuppress runs a relay with the embedded suppression store (a real
// bbolt file in a temporary directory) and the SES stand-in.
func startSuppress(t *testing.T) *suppressHarness {
	t.Helper()
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "unsub.key")
	if err := os.WriteFile(secretFile, []byte(unsubSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	yaml := strings.NewReplacer("SUPPDIR", filepath.Join(dir, "supp"), "SECRETFILE", secretFile).Replace(suppressYAML)
	var store suppression.Store
	m := relay.NewMetrics(nil)
	h := startWith(t, yaml, hOpts{fixed: true, options: func(cfg *config.Config, ro *relay.Options) {
		var err error
		store, err = suppression.Open(context.Background(), cfg.Suppression, suppression.Options{})
		if err != nil {
			t.Fatal(err)
		}
		// The store closes after the relay stopped (the daemon's order).
		t.Cleanup(func() { store.Close() })
		ro.Metrics, ro.Suppressions = m, store
	}})
	return &suppressHarness{harness: h, store: store, metrics: m}
}

func (h *suppressHarness) unsubscribe(tenant, list, rcpt string) {
	h.t.Helper()
	err := h.store.Add(context.Background(), suppression.Entry{Tenant: tenant, List: list, Recipient: rcpt, Source: suppression.SourceUnsubscribe})
	if err != nil {
		h.t.Fatal(err)
	}
}

func (h *suppressHarness) send(user string, from string, to []string, msg string) (string, error) {
	h.t.Helper()
	c, err := smtp.DialStartTLS(h.starttls, clientTLS)
	if err != nil {
		h.t.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", user, testPassword)); err != nil {
		h.t.Fatal(err)
	}
	return send(c, from, to, msg)
}

// destinations lists the Destination of every SES request since n
// requests, one comma-joined entry per request.
func (h *suppressHarness) destinations(since int) []string {
	var out []string
	for _, r := range h.ses.Requests()[since:] {
		out = append(out, strings.Join(r.To, ","))
	}
	return out
}

func listMsg(domain, listHeader string) string {
	return "From: News <news@" + domain + ">\r\nTo: readers@example.org\r\nSubject: This month\r\n" + listHeader + "\r\nHello.\r\n"
}

func TestSuppressionDrop(t *testing.T) {
	h := startSuppress(t)
	h.unsubscribe("billing", "monthly", "ann@example.org")
	// Another list and another tenant's list do not count.
	h.unsubscribe("billing", "weekly", "bob@example.org")
	h.unsubscribe("marketing", "monthly", "bob@example.org")

	msg := listMsg("billing.example.com", "X-List: monthly\r\n")
	text, err := h.send("billing-app", "news@billing.example.com", []string{"ann@example.org", "bob@example.org"}, msg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, "Ok: queued as") {
		t.Fatalf("reply %q", text)
	}
	if got := h.destinations(0); len(got) != 1 || got[0] != "bob@example.org" {
		t.Fatalf("SES destinations %v, want only bob", got)
	}
	if strings.Contains(string(h.ses.Requests()[0].Raw), "X-List") {
		t.Fatal("the list header reached SES")
	}

	// The recipient's case does not matter (the token lowercases it).
	n := len(h.ses.Requests())
	text, err = h.send("billing-app", "news@billing.example.com", []string{"Ann@Example.ORG"}, msg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, "no recipient was sent") || !strings.Contains(text, `"monthly"`) {
		t.Fatalf("all suppressed: reply %q", text)
	}
	if got := h.destinations(n); len(got) != 0 {
		t.Fatalf("SES got %v although every recipient unsubscribed", got)
	}

	// Transactional mail (no list) to the same recipient is sent.
	plain := "From: Billing <invoices@billing.example.com>\r\nTo: ann@example.org\r\nSubject: Invoice\r\n\r\nHello.\r\n"
	if _, err := h.send("billing-app", "invoices@billing.example.com", []string{"ann@example.org"}, plain); err != nil {
		t.Fatal(err)
	}
	if got := h.destinations(n); len(got) != 1 || got[0] != "ann@example.org" {
		t.Fatalf("transactional mail: SES destinations %v", got)
	}
	if v := testutil.ToFloat64(h.metrics.Suppressed.WithLabelValues("billing", "dropped")); v != 2 {
		t.Fatalf("sesrelay_suppressed_recipients_total{billing,dropped} = %v, want 2", v)
	}
	if v := testutil.ToFloat64(h.metrics.Messages.WithLabelValues("billing", "dropped", "suppressed")); v != 1 {
		t.Fatalf("messages dropped = %v, want 1", v)
	}
}

func TestSuppressionRejectWithListID(t *testing.T) {
	h := startSuppress(t)
	h.unsubscribe("marketing", "offers.marketing.example.com", "ann@example.org")
	h.unsubscribe("marketing", "offers.marketing.example.com", "bob@example.org")
	msg := listMsg("marketing.example.com", "List-Id: Offers <offers.marketing.example.com>\r\n")

	_, err := h.send("marketing-app", "news@marketing.example.com", []string{"ann@example.org", "bob@example.org"}, msg)
	expectCode(t, err, 550, "5.7.1")
	if !strings.Contains(err.Error(), `unsubscribed from list "offers.marketing.example.com"`) {
		t.Fatalf("reply does not name the reason: %v", err)
	}
	if len(h.ses.Requests()) != 0 {
		t.Fatal("SES got a request")
	}
	// Some left: the rest are sent, the suppressed ones dropped.
	if _, err := h.send("marketing-app", "news@marketing.example.com", []string{"ann@example.org", "carl@example.org", "bob@example.org"}, msg); err != nil {
		t.Fatal(err)
	}
	if got := h.destinations(0); len(got) != 1 || got[0] != "carl@example.org" {
		t.Fatalf("SES destinations %v, want carl only", got)
	}
	if v := testutil.ToFloat64(h.metrics.Suppressed.WithLabelValues("marketing", "rejected")); v != 2 {
		t.Fatalf("rejected recipients = %v, want 2", v)
	}
}

// In mode add each recipient gets its own request and token; the token's
// list is the list suppression uses, so an unsubscribe through the link
// holds for that list.
func TestSuppressionPerRecipientTokens(t *testing.T) {
	h := startSuppress(t)
	msg := listMsg("news.example.com", "X-List: monthly\r\n")
	if _, err := h.send("news-app", "news@news.example.com", []string{"ann@example.org", "bob@example.org"}, msg); err != nil {
		t.Fatal(err)
	}
	reqs := h.ses.Requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests", len(reqs))
	}
	tok := regexp.MustCompile(`https://unsub\.example\.com/u/([A-Za-z0-9_-]+)`).FindStringSubmatch(string(reqs[0].Raw))
	if tok == nil {
		t.Fatalf("no List-Unsubscribe URL in\n%s", reqs[0].Raw)
	}
	claims, err := headers.VerifyUnsubscribeToken([]byte(unsubSecret), tok[1])
	if err != nil {
		t.Fatal(err)
	}
	h.unsubscribe(claims.Tenant, claims.List, claims.Recipient)
	if _, err := h.send("news-app", "news@news.example.com", []string{"ann@example.org", "bob@example.org"}, msg); err != nil {
		t.Fatal(err)
	}
	if got := h.destinations(2); len(got) != 1 || got[0] != "bob@example.org" {
		t.Fatalf("after ann's unsubscribe: SES destinations %v", got)
	}
}

func TestSuppressionLookupFailureIs451(t *testing.T) {
	h := startSuppress(t)
	h.store.Close() // the real store, closed: every lookup fails
	msg := listMsg("billing.example.com", "X-List: monthly\r\n")
	_, err := h.send("billing-app", "news@billing.example.com", []string{"ann@example.org"}, msg)
	expectCode(t, err, 451, "4.3.0")
	if len(h.ses.Requests()) != 0 {
		t.Fatal("SES got a request although the store could not answer")
	}
	// Without a list the store is not asked: transactional mail still flows.
	plain := "From: Billing <invoices@billing.example.com>\r\nTo: ann@example.org\r\nSubject: Invoice\r\n\r\nHello.\r\n"
	if _, err := h.send("billing-app", "invoices@billing.example.com", []string{"ann@example.org"}, plain); err != nil {
		t.Fatal(err)
	}
	if v := testutil.ToFloat64(h.metrics.Messages.WithLabelValues("billing", "failed", "suppression_unavailable")); v != 1 {
		t.Fatalf("failed/suppression_unavailable = %v, want 1", v)
	}
}
