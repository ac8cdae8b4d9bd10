package relay_test

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/sesrelay/sesrelay/headers"
	"github.com/sesrelay/sesrelay/relay/sestest"
)

// TestTenantCannotActAsAnother: tenant billing tries every way to use
// marketing's identity; each is refused or stripped, and SES receives
// only billing's settings.
func TestTenantCannotActAsAnother(t *testing.T) {
	h := start(t, baseYAML)
	c := h.dial("billing-app", testPassword)

	expectCode(t, c.Mail("news@marketing.example.com", nil), 550, "5.7.1")
	c.Reset()

	spoofFrom := strings.Replace(simpleMsg, "invoices@billing.example.com", "news@marketing.example.com", 1)
	_, err := send(c, "bounces@billing.example.com", []string{"a@example.org"}, spoofFrom)
	expectCode(t, err, 550, "5.7.1")
	c.Reset()

	for _, hdr := range []string{"Sender: news@marketing.example.com\r\n", "Resent-From: news@marketing.example.com\r\n"} {
		_, err := send(c, "bounces@billing.example.com", []string{"a@example.org"}, hdr+simpleMsg)
		expectCode(t, err, 550, "5.7.1")
		c.Reset()
	}

	_, err = send(c, "bounces@billing.example.com", []string{"a@example.org"}, "X-SES-CONFIGURATION-SET: marketing-bulk\r\n"+simpleMsg)
	expectCode(t, err, 550, "5.7.1")
	c.Reset()

	injected := "X-SES-SOURCE-ARN: arn:aws:ses:us-east-1:999999999999:identity/marketing.example.com\r\n" +
		"X-SES-FROM-ARN: arn:aws:ses:us-east-1:999999999999:identity/marketing.example.com\r\n" +
		"X-SES-MESSAGE-TAGS: tenant=marketing, campaign=stolen\r\n" +
		"X-Ses-Return-Path-Arn: arn:aws:ses:us-east-1:999999999999:identity/marketing.example.com\r\n" +
		"Return-Path: <bounce@marketing.example.com>\r\n" +
		"Bcc: hidden@example.net\r\n" + simpleMsg
	if _, err := send(c, "bounces@billing.example.com", []string{"a@example.org"}, injected); err != nil {
		t.Fatal(err)
	}
	if n := h.ses.Calls(); n != 1 {
		t.Fatalf("SES called %d times; refused messages must not reach it", n)
	}
	r := h.ses.Requests()[0]
	if r.ConfigurationSetName != "billing-tx" || r.Tags["tenant"] != "billing" || r.Tags["campaign"] != "" {
		t.Fatalf("SES got another tenant's settings: set=%q tags=%v", r.ConfigurationSetName, r.Tags)
	}
	if r.IdentityARN != "arn:aws:ses:us-east-1:123456789012:identity/billing.example.com" {
		t.Fatalf("identity ARN %q", r.IdentityARN)
	}
	low := strings.ToLower(string(r.Raw))
	for _, bad := range []string{"x-ses-", "return-path:", "bcc:", "999999999999"} {
		if strings.Contains(low, bad) {
			t.Fatalf("raw message still contains %q:\n%s", bad, r.Raw)
		}
	}
}

const policyYAML = `
server:
  hostname: relay.test
  listeners: [{address: "127.0.0.1:0", tls: starttls}]
  tls: {self_signed: true}
ses: {region: us-east-1, max_attempts: 1, timeout: 5s}
tenants:
  - name: billing
    users: [{username: billing-app, password_hash: "HASH"}]
    domains: ["billing.example.com"]
    configuration_set: billing-tx
    allowed_configuration_sets: [billing-bulk]
    header_tags: {X-Campaign: campaign}
    strip_headers: [X-Originating-IP]
    from_policy: rewrite
    rewrite_from: noreply@billing.example.com
`

func TestRewriteAndTagsThroughSMTP(t *testing.T) {
	h := start(t, policyYAML)
	c := h.dial("billing-app", testPassword)
	msg := "From: Alice Example <alice@gmail.com>\r\n" +
		"To: customer@example.org\r\n" +
		"Subject: hi\r\n" +
		"X-Campaign: Spring Sale/2026\r\n" +
		"X-Originating-IP: 10.1.2.3\r\n" +
		"X-SES-CONFIGURATION-SET: billing-bulk\r\n" +
		"\r\nbody\r\n"
	if _, err := send(c, "", []string{"customer@example.org"}, msg); err != nil {
		t.Fatal(err)
	}
	r := h.ses.Requests()[0]
	want := prepared +
		"From: \"Alice Example via billing\" <noreply@billing.example.com>\r\n" +
		"Reply-To: <alice@gmail.com>\r\n" +
		"To: customer@example.org\r\n" +
		"Subject: hi\r\n" +
		"\r\nbody\r\n"
	if string(r.Raw) != want {
		t.Fatalf("raw:\n%s\nwant:\n%s", r.Raw, want)
	}
	if r.ConfigurationSetName != "billing-bulk" {
		t.Fatalf("configuration set %q", r.ConfigurationSetName)
	}
	if r.Tags["campaign"] != "Spring_Sale_2026" || r.Tags["from_domain"] == "" || r.Tags["tenant"] != "billing" {
		t.Fatalf("tags %v", r.Tags)
	}
}

func TestDuplicateUniqueHeaderRefused(t *testing.T) {
	h := start(t, baseYAML)
	c := h.dial("billing-app", testPassword)
	_, err := send(c, "bounces@billing.example.com", []string{"a@example.org"}, "Subject: again\r\n"+simpleMsg)
	expectCode(t, err, 554, "5.6.0")
	if !strings.Contains(err.Error(), "Subject") {
		t.Fatalf("reply must name the header: %v", err)
	}
	if h.ses.Calls() != 0 {
		t.Fatal("SES called")
	}
}

func writeSecret(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "unsub.key")
	if err := os.WriteFile(p, []byte("0123456789abcdef0123456789abcdef-secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func unsubYAML(mode, secret string) string {
	return fmt.Sprintf(`
server:
  hostname: relay.test
  listeners: [{address: "127.0.0.1:0", tls: starttls}]
  tls: {self_signed: true}
ses: {region: us-east-1, max_attempts: 1, timeout: 5s}
tenants:
  - name: billing
    users: [{username: billing-app, password_hash: "HASH"}]
    domains: ["billing.example.com"]
    list_unsubscribe:
      mode: %s
      url: "https://u.billing.example.com/u/{token}?l={list}"
      mailto: "unsubscribe@billing.example.com"
      secret_file: %q
      list_id_header: X-List
`, mode, secret)
}

var tokenRE = regexp.MustCompile(`https://u\.billing\.example\.com/u/([A-Za-z0-9_-]+)\?l=`)

func TestUnsubscribeAddPerRecipient(t *testing.T) {
	secret := writeSecret(t)
	h := start(t, unsubYAML("add", secret))
	c := h.dial("billing-app", testPassword)
	rcpts := []string{"a@example.org", "b@example.org", "c@example.net"}
	if _, err := send(c, "bounces@billing.example.com", rcpts, "X-List: monthly\r\n"+simpleMsg); err != nil {
		t.Fatal(err)
	}
	reqs := h.ses.Requests()
	if len(reqs) != 3 {
		t.Fatalf("want 3 SES calls, got %d", len(reqs))
	}
	key, _ := os.ReadFile(secret)
	seen := map[string]bool{}
	for i, r := range reqs {
		if len(r.To) != 1 || r.To[0] != rcpts[i] {
			t.Fatalf("call %d destination %v", i, r.To)
		}
		m, err := headers.Read(r.Raw, headers.RejectBareNewlines)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.Header.Get("List-Unsubscribe-Post"); got != "List-Unsubscribe=One-Click" {
			t.Fatalf("List-Unsubscribe-Post %q", got)
		}
		lu := m.Header.Get("List-Unsubscribe")
		if !strings.HasSuffix(lu, "<mailto:unsubscribe@billing.example.com>") {
			t.Fatalf("List-Unsubscribe %q", lu)
		}
		if m.Header.Has("X-List") {
			t.Fatal("X-List request header reached SES")
		}
		mt := tokenRE.FindStringSubmatch(lu)
		if mt == nil {
			t.Fatalf("no token in %q", lu)
		}
		if seen[mt[1]] {
			t.Fatal("two recipients share a token")
		}
		seen[mt[1]] = true
		claims, err := headers.VerifyUnsubscribeToken(bytes.TrimSpace(key), mt[1])
		if err != nil || claims.Recipient != rcpts[i] || claims.Tenant != "billing" || claims.List != "monthly" {
			t.Fatalf("token claims %+v, %v", claims, err)
		}
		if err := headers.ValidateListUnsubscribe(&m.Header); err != nil {
			t.Fatal(err)
		}
	}
}

// TestUnsubscribePartialFailureRetry: the second of three per-recipient
// calls fails transiently; the client gets 4xx and retries the same
// message; in total each recipient gets exactly one accepted SES call.
func TestUnsubscribePartialFailureRetry(t *testing.T) {
	h := start(t, unsubYAML("add", writeSecret(t)))
	h.ses.Respond = func(n int, r *sestest.Request) sestest.Reply {
		if n == 2 {
			return sestest.Reply{Status: 503, Message: "unavailable"}
		}
		return sestest.Reply{}
	}
	rcpts := []string{"a@example.org", "b@example.org", "c@example.net"}
	c := h.dial("billing-app", testPassword)
	_, err := send(c, "bounces@billing.example.com", rcpts, simpleMsg)
	expectCode(t, err, 451, "4.3.0")
	c.Reset()
	if _, err := send(c, "bounces@billing.example.com", rcpts, simpleMsg); err != nil {
		t.Fatalf("retry: %v", err)
	}
	count := map[string]int{}
	for _, r := range h.ses.Requests() {
		count[r.To[0]]++
	}
	for _, rc := range rcpts {
		if count[rc] != 1 {
			t.Fatalf("recipient %s accepted %d times (%v)", rc, count[rc], count)
		}
	}
	// A later identical message is a new send, not a retry.
	if _, err := send(c, "bounces@billing.example.com", rcpts, simpleMsg); err != nil {
		t.Fatal(err)
	}
	if n := len(h.ses.Requests()); n != 6 {
		t.Fatalf("want 6 accepted calls after a second send, got %d", n)
	}
}

func TestUnsubscribePreserveAndRequire(t *testing.T) {
	good := "List-Unsubscribe: <https://u.billing.example.com/x>, <mailto:u@billing.example.com>\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
	broken := map[string]string{
		"no https":      "List-Unsubscribe: <http://u.billing.example.com/x>\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
		"two https":     "List-Unsubscribe: <https://a.example/x>, <https://b.example/y>\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
		"bad post":      "List-Unsubscribe: <https://u.billing.example.com/x>\r\nList-Unsubscribe-Post: One-Click\r\n",
		"no post":       "List-Unsubscribe: <https://u.billing.example.com/x>\r\n",
		"no brackets":   "List-Unsubscribe: https://u.billing.example.com/x\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
		"duplicate lu":  good + "List-Unsubscribe: <https://u.billing.example.com/y>\r\n",
		"dup post only": "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
	}
	for _, mode := range []string{"preserve", "require"} {
		t.Run(mode, func(t *testing.T) {
			h := start(t, unsubYAML(mode, writeSecret(t)))
			c := h.dial("billing-app", testPassword)
			for name, hdr := range broken {
				_, err := send(c, "bounces@billing.example.com", []string{"a@example.org"}, hdr+simpleMsg)
				// A duplicate of a must-be-unique field is a content error
				// whatever the mode.
				if mode == "preserve" || strings.HasPrefix(name, "dup") {
					expectCode(t, err, 554, "5.6.0")
				} else {
					expectCode(t, err, 550, "5.7.1")
				}
				if !strings.Contains(err.Error(), "List-Unsubscribe") {
					t.Fatalf("%s: reply does not name the header: %v", name, err)
				}
				c.Reset()
			}
			_, err := send(c, "bounces@billing.example.com", []string{"a@example.org"}, simpleMsg)
			if mode == "require" {
				expectCode(t, err, 550, "5.7.1")
			} else if err != nil {
				t.Fatalf("preserve without headers: %v", err)
			}
			c.Reset()
			if _, err := send(c, "bounces@billing.example.com", []string{"a@example.org"}, good+simpleMsg); err != nil {
				t.Fatalf("valid headers refused: %v", err)
			}
			last := h.ses.Requests()[len(h.ses.Requests())-1]
			if !bytes.Contains(last.Raw, []byte("<https://u.billing.example.com/x>")) {
				t.Fatal("preserved header changed")
			}
		})
	}
}

func writeKey(t *testing.T, k crypto.Signer) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "dkim.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func verifyDKIM(raw []byte, txt string) ([]*dkim.Verification, error) {
	return dkim.VerifyWithOptions(bytes.NewReader(raw), &dkim.VerifyOptions{
		LookupTXT: func(domain string) ([]string, error) {
			if domain != "s2026._domainkey.billing.example.com" {
				return nil, fmt.Errorf("no record for %s", domain)
			}
			return []string{txt}, nil
		},
	})
}

func TestDKIMThroughSMTP(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	for name, key := range map[string]crypto.Signer{"rsa2048": rsaKey, "ed25519": edKey} {
		t.Run(name, func(t *testing.T) {
			yaml := strings.Replace(baseYAML, "    identity_arn:", fmt.Sprintf("    dkim: [{domain: billing.example.com, selector: s2026, key_file: %q}]\n", writeKey(t, key))+
				"    list_unsubscribe: {mode: add, url: \"https://u.billing.example.com/{token}\", secret_file: \""+writeSecret(t)+"\"}\n    identity_arn:", 1)
			h := start(t, yaml)
			c := h.dial("billing-app", testPassword)
			msg := "DKIM-Signature: v=1; a=rsa-sha256; d=attacker.example; s=x; b=AAAA; bh=AAAA; h=from\r\n" + simpleMsg
			if _, err := send(c, "bounces@billing.example.com", []string{"customer@example.org"}, msg); err != nil {
				t.Fatal(err)
			}
			r := h.ses.Requests()[0]
			if n := bytes.Count(bytes.ToLower(r.Raw), []byte("dkim-signature:")); n != 1 {
				t.Fatalf("%d DKIM-Signature fields (SES accepts one)", n)
			}
			if r.ClickTracking != "DISABLED" || r.OpenTracking != "DISABLED" {
				t.Fatalf("tracking not disabled for relay-signed mail: %q %q", r.ClickTracking, r.OpenTracking)
			}
			txt, err := headers.DNSRecord(key.Public())
			if err != nil {
				t.Fatal(err)
			}
			vs, err := verifyDKIM(r.Raw, txt)
			if err != nil || len(vs) != 1 || vs[0].Err != nil || vs[0].Domain != "billing.example.com" {
				t.Fatalf("verification: %v %+v", err, vs)
			}
			hk := strings.Join(vs[0].HeaderKeys, ":")
			for _, want := range []string{"from", "subject", "list-unsubscribe", "list-unsubscribe-post"} {
				if !strings.Contains(strings.ToLower(hk), want) {
					t.Fatalf("h= %s does not cover %s", hk, want)
				}
			}
			if strings.Contains(strings.ToLower(hk), "message-id") || strings.Contains(strings.ToLower(hk), "date") {
				t.Fatalf("h= %s signs a field SES rewrites", hk)
			}
			fails := func(label string, raw []byte) {
				t.Helper()
				vs, err := verifyDKIM(raw, txt)
				if err == nil && len(vs) == 1 && vs[0].Err == nil {
					t.Fatalf("%s: still verifies", label)
				}
			}
			fails("body changed", bytes.Replace(r.Raw, []byte("Hello."), []byte("Hellp."), 1))
			fails("subject changed", bytes.Replace(r.Raw, []byte("Subject: Your invoice"), []byte("Subject: Your invoicf"), 1))
			fails("second subject", bytes.Replace(r.Raw, []byte("\r\n\r\n"), []byte("\r\nSubject: pay now\r\n\r\n"), 1))
			// SES replaces Message-ID: the signature must survive.
			ses := bytes.Replace(r.Raw, []byte("Message-ID: <0123456789abcdef@relay.test>"), []byte("Message-ID: <0100018c@email.amazonses.com>"), 1)
			if vs, err := verifyDKIM(ses, txt); err != nil || vs[0].Err != nil {
				t.Fatalf("a new Message-ID broke the signature: %v %+v", err, vs)
			}
			noID := bytes.Replace(r.Raw, []byte("Message-ID: <0123456789abcdef@relay.test>\r\n"), nil, 1)
			added := append([]byte("Message-ID: <added@email.amazonses.com>\r\n"), noID...)
			if vs, err := verifyDKIM(added, txt); err != nil || vs[0].Err != nil {
				t.Fatalf("adding a Message-ID broke the signature: %v %+v", err, vs)
			}
		})
	}
}

func TestDKIMRequiredWithoutKey(t *testing.T) {
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	yaml := strings.Replace(baseYAML, `domains: ["billing.example.com", "*.billing.example.com"]`,
		`domains: ["billing.example.com", "other-billing.example.org"]`, 1)
	yaml = strings.Replace(yaml, "    identity_arn:",
		fmt.Sprintf("    dkim: [{domain: billing.example.com, selector: s2026, key_file: %q}]\n    dkim_required: true\n    identity_arn:", writeKey(t, key)), 1)
	h := start(t, yaml)
	c := h.dial("billing-app", testPassword)
	msg := strings.Replace(simpleMsg, "invoices@billing.example.com", "invoices@other-billing.example.org", 1)
	_, err := send(c, "bounces@billing.example.com", []string{"a@example.org"}, msg)
	expectCode(t, err, 550, "5.7.1")
	if !strings.Contains(err.Error(), "other-billing.example.org") {
		t.Fatalf("reply must name the From domain without a key: %v", err)
	}
	_ = url.QueryEscape
}
