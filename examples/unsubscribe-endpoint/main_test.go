package main

import (
	"bytes"
	"context"
	"errors"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sesrelay/sesrelay/headers"
)

var (
	secret    = []byte("0123456789abcdef0123456789abcdef-current")
	oldSecret = []byte("0123456789abcdef0123456789abcdef-previous")
	other     = []byte("0123456789abcdef0123456789abcdef-other-tenant")
)

type recorder struct {
	mu   sync.Mutex
	got  []headers.UnsubscribeClaims
	fail error
}

func (r *recorder) unsubscribe(_ context.Context, c headers.UnsubscribeClaims) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	r.got = append(r.got, c)
	return nil
}

func newEndpoint(t *testing.T) (*httptest.Server, *recorder) {
	t.Helper()
	rec := &recorder{}
	h := &Handler{Secrets: [][]byte{secret, oldSecret}, Tenant: "billing", Prefix: "/u/", Unsubscribe: rec.unsubscribe}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, rec
}

// linkFor is the URL the relay puts into List-Unsubscribe for the
// template "<srv>/u/{token}".
func linkFor(srv *httptest.Server, key []byte, tenant, list, rcpt string) string {
	tok := headers.UnsubscribeToken(key, tenant, list, rcpt)
	return headers.ExpandUnsubscribeURL(srv.URL+"/u/{token}", headers.UnsubscribeClaims{Tenant: tenant, List: list, Recipient: rcpt}, tok)
}

// client is what a mailbox provider uses: no cookie jar, redirects not
// followed (a redirect would show up as a 3xx here).
var client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func post(t *testing.T, u, contentType string, body []byte) *http.Response {
	t.Helper()
	resp, err := client.Post(u, contentType, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 == 3 || resp.Header.Get("Location") != "" {
		t.Errorf("redirect: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if c := resp.Header.Values("Set-Cookie"); len(c) != 0 {
		t.Errorf("Set-Cookie: %q", c)
	}
	return resp
}

const form = "application/x-www-form-urlencoded"

func multipartBody(t *testing.T, name, value string) (string, []byte) {
	t.Helper()
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	if err := w.WriteField(name, value); err != nil {
		t.Fatal(err)
	}
	w.Close()
	return w.FormDataContentType(), b.Bytes()
}

// TestOneClick: the POST RFC 8058 describes, in both encodings, with the
// link the relay made, unsubscribes the recipient named in the token and
// answers 200; so does a link made with the previous secret.
func TestOneClick(t *testing.T) {
	srv, rec := newEndpoint(t)
	ct, mp := multipartBody(t, "List-Unsubscribe", "One-Click")
	for _, tc := range []struct {
		name, link, ct string
		body           []byte
		want           headers.UnsubscribeClaims
	}{
		{"form-urlencoded", linkFor(srv, secret, "billing", "monthly", "Ann@Example.org"), form, []byte("List-Unsubscribe=One-Click"),
			headers.UnsubscribeClaims{Tenant: "billing", List: "monthly", Recipient: "ann@example.org"}},
		{"multipart", linkFor(srv, secret, "billing", "", "bob@example.net"), ct, mp,
			headers.UnsubscribeClaims{Tenant: "billing", Recipient: "bob@example.net"}},
		{"previous secret", linkFor(srv, oldSecret, "billing", "news", "cy@example.com"), form + "; charset=utf-8", []byte("List-Unsubscribe=One-Click"),
			headers.UnsubscribeClaims{Tenant: "billing", List: "news", Recipient: "cy@example.com"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec.got = nil
			resp := post(t, tc.link, tc.ct, tc.body)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if len(rec.got) != 1 || rec.got[0] != tc.want {
				t.Fatalf("recorded %+v, want %+v", rec.got, tc.want)
			}
			// A second POST (receivers may retry) is fine too.
			if resp := post(t, tc.link, tc.ct, tc.body); resp.StatusCode != http.StatusOK {
				t.Fatalf("second POST: %d", resp.StatusCode)
			}
		})
	}
}

// TestRefused: nothing is unsubscribed by a GET, a body without the
// one-click field, the field only in the query string, or a token that
// is altered, made with another secret, or names another tenant.
func TestRefused(t *testing.T) {
	srv, rec := newEndpoint(t)
	good := linkFor(srv, secret, "billing", "monthly", "ann@example.org")
	tok := strings.TrimPrefix(good, srv.URL+"/u/")
	flip := func(s string, i int) string {
		c := byte('A')
		if s[i] == 'A' {
			c = 'B'
		}
		return s[:i] + string(c) + s[i+1:]
	}
	oneClick := []byte("List-Unsubscribe=One-Click")
	ctMP, mpWrong := multipartBody(t, "List-Unsubscribe", "Yes")

	for _, tc := range []struct {
		name, method, link, ct string
		body                   []byte
		status                 int
	}{
		{"GET", http.MethodGet, good, "", nil, http.StatusMethodNotAllowed},
		{"HEAD", http.MethodHead, good, "", nil, http.StatusMethodNotAllowed},
		{"empty body", http.MethodPost, good, form, nil, http.StatusBadRequest},
		{"wrong value", http.MethodPost, good, form, []byte("List-Unsubscribe=Yes"), http.StatusBadRequest},
		{"field twice", http.MethodPost, good, form, []byte("List-Unsubscribe=One-Click&List-Unsubscribe=One-Click"), http.StatusBadRequest},
		{"multipart wrong value", http.MethodPost, good, ctMP, mpWrong, http.StatusBadRequest},
		{"query only", http.MethodPost, good + "?List-Unsubscribe=One-Click", form, nil, http.StatusBadRequest},
		{"json", http.MethodPost, good, "application/json", []byte(`{"List-Unsubscribe":"One-Click"}`), http.StatusBadRequest},
		{"no content type", http.MethodPost, good, "", oneClick, http.StatusBadRequest},
		{"token altered at start", http.MethodPost, srv.URL + "/u/" + flip(tok, 3), form, oneClick, http.StatusBadRequest},
		{"token altered at end", http.MethodPost, srv.URL + "/u/" + flip(tok, len(tok)-2), form, oneClick, http.StatusBadRequest},
		{"token truncated", http.MethodPost, srv.URL + "/u/" + tok[:len(tok)-1], form, oneClick, http.StatusBadRequest},
		{"another tenant's secret", http.MethodPost, linkFor(srv, other, "billing", "monthly", "ann@example.org"), form, oneClick, http.StatusBadRequest},
		{"another tenant's token", http.MethodPost, linkFor(srv, secret, "marketing", "monthly", "ann@example.org"), form, oneClick, http.StatusBadRequest},
		{"not base64url", http.MethodPost, srv.URL + "/u/" + url.PathEscape(tok+"+"), form, oneClick, http.StatusBadRequest},
		{"no token", http.MethodPost, srv.URL + "/u/", form, oneClick, http.StatusNotFound},
		{"other path", http.MethodPost, srv.URL + "/x/" + tok, form, oneClick, http.StatusNotFound},
		{"trailing slash", http.MethodPost, good + "/", form, oneClick, http.StatusNotFound},
		{"unclean path", http.MethodPost, srv.URL + "/u//" + tok, form, oneClick, http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, tc.link, bytes.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if tc.ct != "" {
				req.Header.Set("Content-Type", tc.ct)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if len(resp.Header.Values("Set-Cookie")) != 0 || resp.Header.Get("Location") != "" {
				t.Fatal("cookie or redirect")
			}
		})
	}
	if len(rec.got) != 0 {
		t.Fatalf("unsubscribed by a refused request: %+v", rec.got)
	}

	// The store failing is not the receiver's fault: 500, so it may retry.
	rec.fail = errors.New("database down")
	if resp := post(t, good, form, oneClick); resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("store failure: status %d", resp.StatusCode)
	}
}

// TestReadSecret: the file is read as the relay reads secret_file, so a
// trailing newline does not change the key.
func TestReadSecret(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "unsubscribe.key")
	os.WriteFile(f, append(append([]byte{}, secret...), '\n'), 0o600)
	got, err := readSecret(f)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("readSecret = %q, %v", got, err)
	}
	short := filepath.Join(dir, "short.key")
	os.WriteFile(short, []byte("too short\n"), 0o600)
	if _, err := readSecret(short); err == nil || !strings.Contains(err.Error(), "at least 32") {
		t.Fatalf("short secret: %v", err)
	}
}
