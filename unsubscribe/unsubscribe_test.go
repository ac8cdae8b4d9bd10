package unsubscribe_test

import (
	"bytes"
	"context"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/sesrelay/sesrelay/config"
	"github.com/sesrelay/sesrelay/headers"
	"github.com/sesrelay/sesrelay/suppression"
	"github.com/sesrelay/sesrelay/unsubscribe"
)

var (
	secretNew   = []byte("new-secret-new-secret-new-secret-0123")
	secretOld   = []byte("old-secret-old-secret-old-secret-4567")
	secretOther = []byte("other-secret-other-secret-other-89ab")
)

// testConfig has tenant billing (current and previous secret), tenant
// nosecret (no list_unsubscribe) and the unsubscribe server section.
func testConfig(t *testing.T, extra string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, append(b, '\n'), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	y := `
server:
  hostname: relay.test
  listeners: [{address: "127.0.0.1:0"}]
  tls: {self_signed: true}
suppression: {dir: ` + filepath.Join(dir, "supp") + `}
unsubscribe_server:
  address: "127.0.0.1:0"
` + extra + `
tenants:
  - name: billing
    users: [{username: b, password_hash: "$2a$10$fLk/pjHAlbeiM/xrxs7rM.c4LTB14MuTZ6tjapQ/.k4ypkOY1Q3IC"}]
    domains: [billing.example.com]
    list_unsubscribe:
      mode: add
      url: "https://unsub.example.com/u/{token}"
      secret_file: ` + write("new.key", secretNew) + `
      previous_secret_files: [` + write("old.key", secretOld) + `]
  - name: nosecret
    users: [{username: n, password_hash: "$2a$10$fLk/pjHAlbeiM/xrxs7rM.c4LTB14MuTZ6tjapQ/.k4ypkOY1Q3IC"}]
    domains: [nosecret.example.com]
`
	cfg, err := config.Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

type env struct {
	url   string
	store suppression.Store
	h     *unsubscribe.Handler
}

func newEnv(t *testing.T, extra string) *env {
	t.Helper()
	cfg := testConfig(t, extra)
	store, err := suppression.Open(context.Background(), cfg.Suppression, suppression.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	h, err := unsubscribe.NewHandler(cfg.UnsubscribeServer, unsubscribe.Options{
		Config: func() *config.Config { return cfg }, Store: store, Logger: zaptest.NewLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return &env{url: ts.URL, store: store, h: h}
}

// entries lists what the store holds for tenant.
func (e *env) entries(t *testing.T, tenant string) []string {
	t.Helper()
	var out []string
	err := e.store.List(context.Background(), tenant, "", func(en suppression.Entry) error {
		out = append(out, en.List+"/"+en.Recipient+"/"+en.Source)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func token(secret []byte, tenant, list, rcpt string) string {
	return headers.UnsubscribeToken(secret, tenant, list, rcpt)
}

func formBody() (string, io.Reader) {
	return "application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=One-Click")
}

func multipartBody(t *testing.T, field, value string) (string, io.Reader) {
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	if err := w.WriteField(field, value); err != nil {
		t.Fatal(err)
	}
	w.Close()
	return w.FormDataContentType(), &b
}

// do makes one request the way a mailbox provider does: no cookies, no
// redirects followed.
func do(t *testing.T, method, u, ctype string, body io.Reader, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestHandler(t *testing.T) {
	e := newEnv(t, "  rate_burst: 1000\n  max_body_bytes: 1024\n")
	good := token(secretNew, "billing", "monthly", "Ann@Example.org")
	altered := []byte(token(secretNew, "billing", "monthly", "bob@example.org"))
	// One character inside the recipient, replaced by another of the
	// alphabet: well-formed, but the MAC no longer matches.
	if altered[30] == 'A' {
		altered[30] = 'B'
	} else {
		altered[30] = 'A'
	}
	big := strings.Repeat("x", 2000)
	type tc struct {
		name   string
		method string
		path   string
		body   func() (string, io.Reader)
		status int
		want   string   // in the body
		stored []string // billing's entries afterwards (the table runs in order)
	}
	none := []string(nil)
	cases := []tc{
		{"GET shows the page and records nothing", "GET", "/u/" + good, nil, 200,
			`<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">`, none},
		{"HEAD records nothing", "HEAD", "/u/" + good, nil, 200, "", none},
		{"POST without body", "POST", "/u/" + good, nil, 400, "not a one-click unsubscribe request", none},
		{"POST with the field in the query only", "POST", "/u/" + good + "?List-Unsubscribe=One-Click",
			func() (string, io.Reader) { return "application/x-www-form-urlencoded", strings.NewReader("") }, 400, "not a one-click", none},
		{"POST with another value", "POST", "/u/" + good,
			func() (string, io.Reader) {
				return "application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=Yes")
			}, 400, "not a one-click", none},
		{"POST as JSON", "POST", "/u/" + good,
			func() (string, io.Reader) {
				return "application/json", strings.NewReader(`{"List-Unsubscribe":"One-Click"}`)
			}, 400, "not a one-click", none},
		{"POST over the body bound", "POST", "/u/" + good,
			func() (string, io.Reader) {
				return "application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=One-Click&pad=" + big)
			}, 413, "not a one-click", none},
		{"altered token", "POST", "/u/" + string(altered), formBody, 400, "invalid unsubscribe link", none},
		{"token of another secret", "POST", "/u/" + token(secretOther, "billing", "monthly", "eve@example.org"), formBody, 400, "invalid unsubscribe link", none},
		{"malformed token", "POST", "/u/not!a!token", formBody, 400, "invalid unsubscribe link", none},
		{"unknown tenant", "POST", "/u/" + token(secretNew, "nobody", "monthly", "eve@example.org"), formBody, 404, "invalid unsubscribe link", none},
		{"tenant without a secret", "POST", "/u/" + token(secretNew, "nosecret", "monthly", "eve@example.org"), formBody, 404, "invalid unsubscribe link", none},
		{"other path", "POST", "/x/" + good, formBody, 404, "not found", none},
		{"health check", "GET", "/healthz", nil, 200, "ok", none},
		{"health check is not a POST target", "POST", "/healthz", formBody, 404, "not found", none},
		{"token with a slash after it", "POST", "/u/" + good + "/more", formBody, 404, "not found", none},
		{"PUT", "PUT", "/u/" + good, formBody, 405, "use POST", none},
		{"POST form records", "POST", "/u/" + good, formBody, 200, "You are unsubscribed: a***@example.org",
			[]string{"monthly/ann@example.org/unsubscribe"}},
		{"POST again is idempotent", "POST", "/u/" + good, formBody, 200, "You are unsubscribed",
			[]string{"monthly/ann@example.org/unsubscribe"}},
		{"POST multipart records", "POST", "/u/" + token(secretNew, "billing", "weekly", "bob@example.org"),
			func() (string, io.Reader) { return multipartBody(t, "List-Unsubscribe", "One-Click") }, 200, "unsubscribed",
			[]string{"monthly/ann@example.org/unsubscribe", "weekly/bob@example.org/unsubscribe"}},
		{"POST multipart with another field", "POST", "/u/" + token(secretNew, "billing", "weekly", "carl@example.org"),
			func() (string, io.Reader) { return multipartBody(t, "Unsubscribe", "One-Click") }, 400, "not a one-click",
			[]string{"monthly/ann@example.org/unsubscribe", "weekly/bob@example.org/unsubscribe"}},
		{"previous secret still verifies", "POST", "/u/" + token(secretOld, "billing", "daily", "dan@example.org"), formBody, 200, "unsubscribed",
			[]string{"daily/dan@example.org/unsubscribe", "monthly/ann@example.org/unsubscribe", "weekly/bob@example.org/unsubscribe"}},
		{"token without a list records nothing", "POST", "/u/" + token(secretNew, "billing", "", "erin@example.org"), formBody, 200,
			"not sent to a mailing list",
			[]string{"daily/dan@example.org/unsubscribe", "monthly/ann@example.org/unsubscribe", "weekly/bob@example.org/unsubscribe"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var ct string
			var body io.Reader
			if c.body != nil {
				ct, body = c.body()
			}
			resp, got := do(t, c.method, e.url+c.path, ct, body, nil)
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d; body %q", resp.StatusCode, c.status, got)
			}
			if !strings.Contains(got, c.want) {
				t.Errorf("body %q does not contain %q", got, c.want)
			}
			if resp.Header.Get("Location") != "" || resp.Header.Get("Set-Cookie") != "" {
				t.Errorf("redirect or cookie: %v", resp.Header)
			}
			if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control %q", cc)
			}
			if st := e.entries(t, "billing"); strings.Join(st, ",") != strings.Join(c.stored, ",") {
				t.Errorf("store holds %v, want %v", st, c.stored)
			}
		})
	}
	if st := e.entries(t, "nobody"); len(st) != 0 {
		t.Errorf("unknown tenant recorded %v", st)
	}
}

func TestPageShowsTenantListAndMaskedAddress(t *testing.T) {
	e := newEnv(t, "")
	resp, body := do(t, "GET", e.url+"/u/"+token(secretNew, "billing", "monthly <news>", "ann@example.org"), "", nil, nil)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{"<strong>billing</strong>", "<strong>monthly &lt;news&gt;</strong>", "<strong>a***@example.org</strong>", `method="post"`} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "ann@example.org") {
		t.Error("the page shows the whole address")
	}
	if resp.Header.Get("Referrer-Policy") != "no-referrer" || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Errorf("security headers %v", resp.Header)
	}
	// The page's button posts what a mailbox provider posts, to the same URL.
	form := url.Values{"List-Unsubscribe": {"One-Click"}}.Encode()
	resp, body = do(t, "POST", e.url+"/u/"+token(secretNew, "billing", "monthly <news>", "ann@example.org"),
		"application/x-www-form-urlencoded", strings.NewReader(form), map[string]string{"Accept": "text/html"})
	if resp.StatusCode != 200 || !strings.Contains(body, "<p>You are unsubscribed") {
		t.Fatalf("status %d body %q", resp.StatusCode, body)
	}
}

func TestRateLimitPerClient(t *testing.T) {
	e := newEnv(t, "  rate_limit: 0.001\n  rate_burst: 3\n  trusted_proxies: [127.0.0.1]\n")
	u := e.url + "/u/" + token(secretNew, "billing", "monthly", "ann@example.org")
	get := func(xff string) *http.Response {
		h := map[string]string{}
		if xff != "" {
			h["X-Forwarded-For"] = xff
		}
		resp, _ := do(t, "GET", u, "", nil, h)
		return resp
	}
	for i := 0; i < 3; i++ {
		if r := get("192.0.2.1"); r.StatusCode != 200 {
			t.Fatalf("request %d: %d", i+1, r.StatusCode)
		}
	}
	r := get("192.0.2.1")
	if r.StatusCode != 429 || r.Header.Get("Retry-After") == "" {
		t.Fatalf("4th request: %d, Retry-After %q", r.StatusCode, r.Header.Get("Retry-After"))
	}
	// The right-most untrusted hop is the client: a forged left part does
	// not buy a new bucket.
	if r := get("203.0.113.9, 192.0.2.1"); r.StatusCode != 429 {
		t.Fatalf("forged X-Forwarded-For prefix: %d", r.StatusCode)
	}
	// Another client behind the same proxy has its own bucket.
	if r := get("192.0.2.2"); r.StatusCode != 200 {
		t.Fatalf("another client: %d", r.StatusCode)
	}
	// A POST is limited too, and records nothing.
	resp, _ := do(t, "POST", u, "application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=One-Click"),
		map[string]string{"X-Forwarded-For": "192.0.2.1"})
	if resp.StatusCode != 429 {
		t.Fatalf("POST over the limit: %d", resp.StatusCode)
	}
	if st := e.entries(t, "billing"); len(st) != 0 {
		t.Fatalf("recorded %v", st)
	}
}

func TestUntrustedForwardedForIgnored(t *testing.T) {
	e := newEnv(t, "  rate_limit: 0.001\n  rate_burst: 2\n")
	u := e.url + "/u/" + token(secretNew, "billing", "monthly", "ann@example.org")
	for i, want := range []int{200, 200, 429} {
		// A new X-Forwarded-For each time: without trusted_proxies it
		// must not matter.
		resp, _ := do(t, "GET", u, "", nil, map[string]string{"X-Forwarded-For": "198.51.100." + string(rune('1'+i))})
		if resp.StatusCode != want {
			t.Fatalf("request %d: %d, want %d", i+1, resp.StatusCode, want)
		}
	}
}

func TestStoreFailureRecordsNothingAndAsksToRetry(t *testing.T) {
	e := newEnv(t, "")
	e.store.Close() // the real store, closed: every Add fails
	resp, body := do(t, "POST", e.url+"/u/"+token(secretNew, "billing", "monthly", "ann@example.org"),
		"application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=One-Click"), nil)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "try again later") {
		t.Fatalf("status %d, Retry-After %q, body %q", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
}

func TestServerServesAndStops(t *testing.T) {
	cfg := testConfig(t, "")
	store, err := suppression.Open(context.Background(), cfg.Suppression, suppression.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	h, err := unsubscribe.NewHandler(cfg.UnsubscribeServer, unsubscribe.Options{Config: func() *config.Config { return cfg }, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	s, err := unsubscribe.Listen(cfg.UnsubscribeServer, h, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	resp, _ := do(t, "POST", "http://"+s.Addr().String()+"/u/"+token(secretNew, "billing", "monthly", "ann@example.org"),
		"application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=One-Click"), nil)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
	if _, err := http.Get("http://" + s.Addr().String() + "/u/x"); err == nil {
		t.Fatal("still listening after stop")
	}
}
