// Package unsubscribe is the relay's built-in one-click unsubscribe
// endpoint (RFC 8058, on the RFC 2369 List-Unsubscribe URI): it serves
// /u/{token} for tokens the relay made (headers.UnsubscribeToken) and
// records each unsubscribe in the suppression store, so that the relay
// leaves the recipient out of the tenant's list mail from then on.
//
//   - POST with the body List-Unsubscribe=One-Click (form-urlencoded or
//     multipart/form-data) records (tenant, list, recipient) and answers 200.
//     No cookies, no redirects, no confirmation: the mailbox provider's POST
//     is the recipient's decision.
//   - GET (and HEAD) shows a small page with a button that makes that POST.
//     A GET never unsubscribes: link scanners fetch URLs nobody clicked.
//   - A malformed, altered or forged token gets 400, a token of a tenant the
//     relay does not know (or that has no unsubscribe secret) 404; neither
//     records anything.
//
// Requests are rate limited per client address (the address a trusted load
// balancer names in X-Forwarded-For, else the peer) and bodies are bounded.
// The handler reads the tenants and their secrets from the configuration in
// force at each request, so a reload (secret rotation included) applies at
// once.
package unsubscribe

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"io"
	"mime"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sesrelay/sesrelay/config"
	"github.com/sesrelay/sesrelay/headers"
	"github.com/sesrelay/sesrelay/suppression"
)

// PathPrefix is the path before the token: a tenant's list_unsubscribe.url
// pointing here is https://HOST/u/{token}.
const PathPrefix = "/u/"

// HealthPath answers 200 "ok" to GET and HEAD, for a load balancer's
// health check.
const HealthPath = "/healthz"

// Recorder records an unsubscribe. suppression.Store implements it. Add
// must be idempotent: providers may POST more than once.
type Recorder interface {
	Add(ctx context.Context, e suppression.Entry) error
}

// RecorderFunc adapts a function to Recorder.
type RecorderFunc func(ctx context.Context, e suppression.Entry) error

// Add calls f.
func (f RecorderFunc) Add(ctx context.Context, e suppression.Entry) error { return f(ctx, e) }

var _ Recorder = RecorderFunc(nil)

// Options are the parts of a Handler that are not in unsubscribe_server.
type Options struct {
	// Config returns the configuration in force: the tenants and their
	// list_unsubscribe secrets (current and previous).
	Config func() *config.Config
	// Store records the unsubscribes.
	Store Recorder
	// Logger gets one line per request outcome; nil logs nothing.
	Logger *zap.Logger
	// Registerer receives the endpoint's metrics; nil registers nowhere.
	Registerer prometheus.Registerer
	// Now is the clock of the rate limiter and of Entry.Created; nil is
	// time.Now.
	Now func() time.Time
	// WebhookBackoff is the wait before webhook attempt n+1 after attempt
	// n failed; nil doubles from 1 s up to 2 min.
	WebhookBackoff func(attempt int) time.Duration
}

// Handler serves PathPrefix + token. Mount it directly, not on an
// http.ServeMux: ServeMux answers unclean paths with a redirect, which
// RFC 8058 forbids.
type Handler struct {
	opts    Options
	log     *zap.Logger
	now     func() time.Time
	maxBody int64
	trusted []netip.Prefix
	limit   *limiter
	metrics *metrics
	webhook *webhook
}

// Results of a request (the result label of
// sesrelay_unsubscribe_requests_total).
const (
	resultUnsubscribed  = "unsubscribed"
	resultPage          = "page"
	resultNoList        = "no_list"
	resultBadToken      = "bad_token"
	resultUnknownTenant = "unknown_tenant"
	resultBadRequest    = "bad_request"
	resultTooLarge      = "too_large"
	resultRateLimited   = "rate_limited"
	resultMethod        = "method_not_allowed"
	resultNotFound      = "not_found"
	resultStoreError    = "store_error"
)

var results = []string{resultUnsubscribed, resultPage, resultNoList, resultBadToken, resultUnknownTenant,
	resultBadRequest, resultTooLarge, resultRateLimited, resultMethod, resultNotFound, resultStoreError}

// NewHandler builds the endpoint for sc (validated by config).
func NewHandler(sc config.UnsubscribeServer, o Options) (*Handler, error) {
	if o.Config == nil || o.Store == nil {
		return nil, errors.New("unsubscribe: Config and Store are required")
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	h := &Handler{opts: o, log: o.Logger, now: o.Now, maxBody: sc.MaxBodyBytes}
	if h.maxBody <= 0 {
		h.maxBody = config.DefaultUnsubscribeServer().MaxBodyBytes
	}
	for i, s := range sc.TrustedProxies {
		p, err := config.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("unsubscribe_server.trusted_proxies[%d]: %w", i, err)
		}
		h.trusted = append(h.trusted, p)
	}
	rl, burst := sc.RateLimit, sc.RateBurst
	if rl <= 0 {
		rl = config.DefaultUnsubscribeServer().RateLimit
	}
	if burst < 1 {
		burst = 1
	}
	h.limit = newLimiter(rl, burst)
	h.metrics = newMetrics(o.Registerer)
	h.webhook = newWebhook(o.Config, h.log, o.Now, o.WebhookBackoff, h.metrics.webhook)
	return h, nil
}

// Close stops the tenants' webhook deliveries; events not yet delivered
// are dropped (counted). Call it once the server stopped.
func (h *Handler) Close() { h.webhook.close() }

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	// The token is in the URL: never hand it to another site.
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	client := h.clientAddr(r)
	log := h.log.With(zap.String("client", client.String()), zap.String("method", r.Method))

	if r.URL.Path == HealthPath && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		// For the load balancer's health check: not counted, not logged.
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
		return
	}
	token, ok := strings.CutPrefix(r.URL.Path, PathPrefix)
	if !ok || token == "" || strings.Contains(token, "/") {
		h.answer(w, log, http.StatusNotFound, resultNotFound, "not found", nil)
		return
	}
	if !h.limit.allow(client, h.now()) {
		hd.Set("Retry-After", strconv.Itoa(h.limit.retryAfter()))
		h.answer(w, log, http.StatusTooManyRequests, resultRateLimited, "too many requests, try again later", nil)
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodPost:
	default:
		hd.Set("Allow", "GET, HEAD, POST")
		h.answer(w, log, http.StatusMethodNotAllowed, resultMethod, "use POST (RFC 8058 one-click unsubscribe) or GET", nil)
		return
	}
	claims, tenant, status, err := h.verify(token)
	if err != nil {
		result := resultBadToken
		if status == http.StatusNotFound {
			result = resultUnknownTenant
		}
		// One answer per status whatever the cause; the cause goes to the log.
		h.answer(w, log, status, result, "invalid unsubscribe link", err)
		return
	}
	log = log.With(zap.String("tenant", tenant), zap.String("list", claims.List))
	if r.Method != http.MethodPost {
		h.page(w, r, log, claims)
		return
	}
	if status, err := h.oneClickBody(w, r); err != nil {
		result := resultBadRequest
		if status == http.StatusRequestEntityTooLarge {
			result = resultTooLarge
		}
		h.answer(w, log, status, result, "not a one-click unsubscribe request", err)
		return
	}
	if claims.List == "" {
		// Mail without a list is transactional: it is never suppressed,
		// so there is nothing to record.
		h.respond(w, r, http.StatusOK, "This message was not sent to a mailing list: there is nothing to unsubscribe from.")
		h.done(log, http.StatusOK, resultNoList, nil)
		return
	}
	e := suppression.Entry{Tenant: tenant, List: claims.List, Recipient: claims.Recipient,
		Created: h.now().UTC(), Source: suppression.SourceUnsubscribe}
	if err := h.opts.Store.Add(r.Context(), e); err != nil {
		// 503: the provider may try again; nothing was recorded.
		hd.Set("Retry-After", "60")
		h.answer(w, log, http.StatusServiceUnavailable, resultStoreError, "temporary failure, try again later", err)
		return
	}
	h.metrics.unsubscribes.WithLabelValues(tenant).Inc()
	h.webhook.notify(Event{Tenant: tenant, List: claims.List, Recipient: e.Recipient, Time: e.Created, Source: e.Source})
	h.respond(w, r, http.StatusOK, "You are unsubscribed: "+mask(claims.Recipient)+" will get no more mail of this list.")
	log.Info("unsubscribed", zap.String("recipient", claims.Recipient), zap.Int("status", http.StatusOK))
	h.metrics.requests.WithLabelValues(resultUnsubscribed).Inc()
}

// verify finds the token's tenant and checks the token with each of its
// secrets, current first. It returns the claims and the tenant, or the
// status to answer (400 bad token, 404 unknown tenant) and the cause.
func (h *Handler) verify(token string) (headers.UnsubscribeClaims, string, int, error) {
	name, err := headers.UnverifiedUnsubscribeTenant(token)
	if err != nil {
		return headers.UnsubscribeClaims{}, "", http.StatusBadRequest, err
	}
	cfg := h.opts.Config()
	t := cfg.TenantByName(name)
	if t == nil {
		return headers.UnsubscribeClaims{}, "", http.StatusNotFound, fmt.Errorf("token names tenant %q, which is not configured", name)
	}
	secrets := t.UnsubscribeSecrets()
	if len(secrets) == 0 {
		return headers.UnsubscribeClaims{}, "", http.StatusNotFound, fmt.Errorf("tenant %q has no list_unsubscribe secret", name)
	}
	for _, s := range secrets {
		c, err := headers.VerifyUnsubscribeToken(s, token)
		if err == nil {
			if c.Tenant != t.Name {
				break // cannot happen: the tenant is in the signed bytes
			}
			return c, t.Name, 0, nil
		}
		if !errors.Is(err, headers.ErrTokenMAC) {
			return headers.UnsubscribeClaims{}, "", http.StatusBadRequest, err
		}
	}
	return headers.UnsubscribeClaims{}, "", http.StatusBadRequest, fmt.Errorf("%w (tenant %q, %d secrets tried)", headers.ErrTokenMAC, name, len(secrets))
}

// oneClickBody checks that the body, not the query string, says
// List-Unsubscribe=One-Click, in either encoding RFC 8058 allows. It
// returns 413 for a body over the bound and 400 for anything else wrong.
func (h *Handler) oneClickBody(w http.ResponseWriter, r *http.Request) (int, error) {
	if r.ContentLength > h.maxBody {
		return http.StatusRequestEntityTooLarge, fmt.Errorf("body of %d bytes, at most %d", r.ContentLength, h.maxBody)
	}
	r.Body = http.MaxBytesReader(w, r.Body, h.maxBody)
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return http.StatusBadRequest, fmt.Errorf("content type %q", r.Header.Get("Content-Type"))
	}
	switch ct {
	case "application/x-www-form-urlencoded":
		err = r.ParseForm()
	case "multipart/form-data":
		// The whole body is at most maxBody: it stays in memory.
		err = r.ParseMultipartForm(h.maxBody)
		if r.MultipartForm != nil {
			defer r.MultipartForm.RemoveAll()
		}
	default:
		return http.StatusBadRequest, fmt.Errorf("content type %q", ct)
	}
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return http.StatusRequestEntityTooLarge, fmt.Errorf("body over %d bytes", h.maxBody)
		}
		return http.StatusBadRequest, fmt.Errorf("body: %v", err)
	}
	// PostForm holds the body's fields only (Form would add the query's).
	if v := r.PostForm["List-Unsubscribe"]; len(v) != 1 || v[0] != "One-Click" {
		return http.StatusBadRequest, fmt.Errorf("body field List-Unsubscribe=%q, want One-Click", v)
	}
	return 0, nil
}

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex, nofollow"><title>Unsubscribe</title>
<style>body{font-family:system-ui,sans-serif;max-width:32em;margin:3em auto;padding:0 1em;line-height:1.5}button{font-size:1em;padding:.5em 1.5em}</style>
</head><body><main>
<h1>Unsubscribe</h1>
{{if .List}}<p>Stop the mail of list <strong>{{.List}}</strong> from <strong>{{.Tenant}}</strong> to <strong>{{.Recipient}}</strong>?</p>
<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click"><button type="submit">Unsubscribe</button></form>
{{else}}<p>This message from <strong>{{.Tenant}}</strong> to <strong>{{.Recipient}}</strong> was not sent to a mailing list: there is nothing to unsubscribe from.</p>{{end}}
</main></body></html>
`))

var messageTmpl = template.Must(template.New("message").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex, nofollow"><title>Unsubscribe</title>
<style>body{font-family:system-ui,sans-serif;max-width:32em;margin:3em auto;padding:0 1em;line-height:1.5}</style>
</head><body><main><h1>Unsubscribe</h1><p>{{.}}</p></main></body></html>
`))

// page answers a GET: what the link is for and a button that POSTs the
// one-click body to the same URL. It records nothing.
func (h *Handler) page(w http.ResponseWriter, r *http.Request, log *zap.Logger, c headers.UnsubscribeClaims) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_ = pageTmpl.Execute(w, struct{ Tenant, List, Recipient string }{c.Tenant, c.List, mask(c.Recipient)})
	}
	h.done(log, http.StatusOK, resultPage, nil)
}

// respond writes a successful answer to a POST: HTML for a browser (the
// page's button), plain text for a mailbox provider.
func (h *Handler) respond(w http.ResponseWriter, r *http.Request, status int, text string) {
	if strings.Contains(r.Header.Get("Accept"), "text/html") {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(status)
		_ = messageTmpl.Execute(w, text)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(text + "\n"))
}

// answer refuses a request with status and a short text; err, the cause,
// goes to the log only.
func (h *Handler) answer(w http.ResponseWriter, log *zap.Logger, status int, result, text string, err error) {
	http.Error(w, text, status)
	h.done(log, status, result, err)
}

func (h *Handler) done(log *zap.Logger, status int, result string, err error) {
	h.metrics.requests.WithLabelValues(result).Inc()
	fields := []zap.Field{zap.String("result", result), zap.Int("status", status)}
	if err != nil {
		fields = append(fields, zap.String("detail", err.Error()))
	}
	switch {
	case result == resultStoreError:
		log.Error("unsubscribe request", fields...)
	case status >= 400:
		log.Info("unsubscribe request refused", fields...)
	default:
		log.Info("unsubscribe request", fields...)
	}
}

// mask shows enough of an address for its owner to recognise it:
// the first character of the local part and the domain ("a***@example.org").
func mask(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 {
		return "***"
	}
	local := []rune(addr[:at])
	return string(local[0]) + "***" + addr[at:]
}

// clientAddr is the address requests are limited and logged by: the peer,
// or, when the peer is a trusted proxy, the right-most address of
// X-Forwarded-For that is not itself a trusted proxy. A header that does
// not parse stops the walk at the last trusted hop.
func (h *Handler) clientAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	addr := ap.Addr().Unmap()
	if !h.isTrusted(addr) {
		return addr
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return addr
		}
		addr = a.Unmap()
		if !h.isTrusted(addr) {
			return addr
		}
	}
	return addr
}

func (h *Handler) isTrusted(a netip.Addr) bool {
	for _, p := range h.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

type metrics struct {
	requests     *prometheus.CounterVec
	unsubscribes *prometheus.CounterVec
	webhook      *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sesrelay_unsubscribe_requests_total",
			Help: "Requests to the built-in unsubscribe endpoint, by result (unsubscribed, page, no_list, bad_token, unknown_tenant, bad_request, too_large, rate_limited, method_not_allowed, not_found, store_error).",
		}, []string{"result"}),
		unsubscribes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sesrelay_unsubscribes_total",
			Help: "One-click unsubscribes recorded by the built-in endpoint, by tenant.",
		}, []string{"tenant"}),
		webhook: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sesrelay_unsubscribe_webhook_total",
			Help: "Tenant webhook deliveries of unsubscribes, by tenant and result (delivered, retried, failed, dropped).",
		}, []string{"tenant", "result"}),
	}
	for _, r := range results {
		m.requests.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.unsubscribes, m.webhook)
	}
	return m
}
