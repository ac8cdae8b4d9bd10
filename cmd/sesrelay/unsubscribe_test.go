package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/sesrelay/sesrelay/relay/smtptest"
	"github.com/sesrelay/sesrelay/suppression"
)

const unsubYAML = `
server:
  hostname: relay.test
  listeners: [{address: "127.0.0.1:0", tls: none, allow_insecure_auth: true}]
  shutdown_timeout: 5s
log: {level: debug}
delivery: {sender: file, file_dir: OUTBOX}
suppression: {dir: SUPPDIR, cache_ttl: 0s}
unsubscribe_server: {address: "127.0.0.1:0", rate_burst: 100}
tenants:
  - name: billing
    users: [{username: billing-app, password_hash: "BILLING_HASH"}]
    domains: ["billing.example.com"]
    list_unsubscribe:
      mode: add
      url: "https://unsub.example.com/u/{token}"
      secret_file: SECRET
      list_id_header: X-List
`

// sentTo lists the recipients of every request the file sender wrote, one
// entry per request, sorted.
func sentTo(t *testing.T, outbox string) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(outbox, "*.json"))
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var rec struct{ Recipients []string }
		if err := json.Unmarshal(b, &rec); err != nil {
			t.Fatal(err)
		}
		out = append(out, strings.Join(rec.Recipients, ","))
	}
	slices.Sort(out)
	return out
}

// unsubscribeURL is the one-click URL in the message the file sender
// wrote for rcpt.
func unsubscribeURL(t *testing.T, outbox, rcpt string) string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(outbox, "*.json"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		var rec struct{ Recipients []string }
		_ = json.Unmarshal(b, &rec)
		if len(rec.Recipients) != 1 || rec.Recipients[0] != rcpt {
			continue
		}
		raw, err := os.ReadFile(strings.TrimSuffix(f, ".json") + ".eml")
		if err != nil {
			t.Fatal(err)
		}
		if m := regexp.MustCompile(`<https://unsub\.example\.com(/u/[A-Za-z0-9_-]+)>`).FindSubmatch(raw); m != nil {
			return string(m[1])
		}
	}
	t.Fatalf("no message with a List-Unsubscribe URL to %s in %s", rcpt, outbox)
	return ""
}

func oneClick(t *testing.T, base, path string) int {
	t.Helper()
	resp, err := http.Post(base+path, "application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=One-Click"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// TestServeUnsubscribeLoop runs the daemon with the embedded store and the
// unsubscribe endpoint: a one-click POST on the URL of a sent message
// suppresses that recipient for the list's next message; after a secret
// rotation (reload) links made with the old secret still work; at stop the
// store is released.
func TestServeUnsubscribeLoop(t *testing.T) {
	dir := t.TempDir()
	outbox := filepath.Join(dir, "outbox")
	suppDir := filepath.Join(dir, "supp")
	oldKey := filepath.Join(dir, "old.key")
	newKey := filepath.Join(dir, "new.key")
	writeAtomic(t, oldKey, "old-secret-old-secret-old-secret-0123456")
	writeAtomic(t, newKey, "new-secret-new-secret-new-secret-6543210")
	yaml := strings.NewReplacer("OUTBOX", outbox, "SUPPDIR", suppDir, "BILLING_HASH", reloadHash).Replace(unsubYAML)
	path := filepath.Join(dir, "sesrelay.yaml")
	writeAtomic(t, path, strings.Replace(yaml, "SECRET", oldKey, 1))
	h := startReloadDaemon(t, path)
	if h.d.sup.unsub == nil || h.d.sup.store == nil {
		t.Fatal("no unsubscribe endpoint or store")
	}
	base := "http://" + h.d.sup.unsub.Addr().String()

	sendList := func(rcpts ...string) {
		t.Helper()
		c, err := smtp.Dial(h.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Auth(sasl.NewPlainClient("", "billing-app", reloadPassword)); err != nil {
			t.Fatal(err)
		}
		msg := "From: news@billing.example.com\r\nTo: readers@example.org\r\nSubject: news\r\nX-List: monthly\r\n\r\nHello.\r\n"
		if _, err := smtptest.Send(c, "news@billing.example.com", rcpts, msg); err != nil {
			t.Fatal(err)
		}
	}
	sendList("ann@example.org", "bob@example.org", "carl@example.org")
	annURL := unsubscribeURL(t, outbox, "ann@example.org")
	carlURL := unsubscribeURL(t, outbox, "carl@example.org")
	if code := oneClick(t, base, annURL); code != 200 {
		t.Fatalf("one-click POST: %d", code)
	}

	// Rotate: a new current secret, the old one kept as previous.
	writeAtomic(t, path, strings.Replace(yaml, "secret_file: SECRET", "secret_file: "+newKey+"\n      previous_secret_files: ["+oldKey+"]", 1))
	if ev := h.wait(); !ev.ok {
		t.Fatal("reload failed")
	}
	if code := oneClick(t, base, carlURL); code != 200 {
		t.Fatalf("one-click POST with a link of the previous secret: %d", code)
	}

	if err := os.RemoveAll(outbox); err != nil {
		t.Fatal(err)
	}
	sendList("ann@example.org", "bob@example.org", "carl@example.org")
	if got := sentTo(t, outbox); !slices.Equal(got, []string{"bob@example.org"}) {
		t.Fatalf("after unsubscribes: sent to %v, want bob only", got)
	}

	if err := h.stop(); err != nil {
		t.Fatalf("run: %v", err)
	}
	// The endpoint is closed and the store file released.
	if _, err := http.Get(base + annURL); err == nil {
		t.Fatal("the unsubscribe endpoint still answers after stop")
	}
	s, err := suppression.OpenEmbedded(suppDir, time.Second, time.Now)
	if err != nil {
		t.Fatalf("the store is still held after stop: %v", err)
	}
	defer s.Close()
	var entries []string
	_ = s.List(t.Context(), "billing", "", func(e suppression.Entry) error {
		entries = append(entries, e.List+"/"+e.Recipient)
		return nil
	})
	if !slices.Equal(entries, []string{"monthly/ann@example.org", "monthly/carl@example.org"}) {
		t.Fatalf("store holds %v", entries)
	}
}

func TestCheckShowsUnsubscribeEndpoint(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "k")
	writeAtomic(t, key, "a-secret-a-secret-a-secret-0123456789")
	path := filepath.Join(dir, "sesrelay.yaml")
	yaml := strings.NewReplacer("OUTBOX", dir, "SUPPDIR", filepath.Join(dir, "supp"), "BILLING_HASH", reloadHash, "SECRET", key).Replace(unsubYAML)
	writeAtomic(t, path, strings.Replace(yaml, `address: "127.0.0.1:0", rate_burst`, `address: "127.0.0.1:8443", rate_burst`, 1))
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"check", "--config", path}, nil, &stdout, &stderr, nil); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if want := "127.0.0.1:8443  unsubscribe endpoint (http, behind a TLS-terminating proxy)"; !strings.Contains(stdout.String(), want) {
		t.Fatalf("summary lacks %q:\n%s", want, stdout.String())
	}
}
