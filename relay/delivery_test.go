package relay_test

// Delivery end to end: SMTP in on each listener kind, the SES request out
// (raw message, destinations, tenant settings, signing); the file sender.

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/sesrelay/sesrelay/relay"
)

func TestDeliveryStartTLSPlain(t *testing.T) {
	h := start(t, baseYAML)
	c := h.dial("billing-app", testPassword)
	text, err := send(c, "bounces@billing.example.com", []string{"customer@example.org", "hidden@example.net"}, simpleMsg)
	if err != nil {
		t.Fatal(err)
	}
	reqs := h.ses.Requests()
	if len(reqs) != 1 {
		t.Fatalf("SES got %d requests", len(reqs))
	}
	r := reqs[0]
	if !strings.Contains(text, "Ok: queued as 0100018c-test-000001") {
		t.Fatalf("reply text %q does not carry the SES message id", text)
	}
	if !bytes.Equal(r.Raw, []byte(prepared+simpleMsg)) {
		t.Fatalf("raw differs:\n%q\n%q", r.Raw, prepared+simpleMsg)
	}
	if strings.Join(r.To, ",") != "customer@example.org,hidden@example.net" {
		t.Fatalf("destination %v (the envelope-only Bcc recipient must be there)", r.To)
	}
	if r.ConfigurationSetName != "billing-tx" {
		t.Fatalf("configuration set %q", r.ConfigurationSetName)
	}
	if r.Tags["stream"] != "transactional" || r.Tags["tenant"] != "billing" {
		t.Fatalf("tags %v", r.Tags)
	}
	if r.IdentityARN != "arn:aws:ses:us-east-1:123456789012:identity/billing.example.com" {
		t.Fatalf("identity ARN %q", r.IdentityARN)
	}
	if !strings.HasPrefix(r.Authorization, "AWS4-HMAC-SHA256 Credential=AKIDTEST/") || !strings.Contains(r.Authorization, "/us-east-1/ses/") {
		t.Fatalf("request not SigV4-signed for ses in us-east-1: %q", r.Authorization)
	}
}

func TestDeliveryImplicitTLSLogin(t *testing.T) {
	h := start(t, baseYAML)
	c, err := smtp.DialTLS(h.implicit, clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(sasl.NewLoginClient("marketing-app", testPassword)); err != nil {
		t.Fatal(err)
	}
	msg := strings.ReplaceAll(simpleMsg, "billing", "marketing")
	if _, err := send(c, "news@marketing.example.com", []string{"a@example.org"}, msg); err != nil {
		t.Fatal(err)
	}
	r := h.ses.Requests()[0]
	if r.ConfigurationSetName != "marketing-bulk" || r.Tags["tenant"] != "marketing" || r.IdentityARN != "" {
		t.Fatalf("wrong tenant settings: %+v", r)
	}
}

func TestInsecureAuthOnLoopbackListener(t *testing.T) {
	h := start(t, baseYAML)
	c := h.dialPlain("billing-app", testPassword)
	if _, err := send(c, "invoices@billing.example.com", []string{"a@example.org"}, simpleMsg); err != nil {
		t.Fatal(err)
	}
}

func TestFileSender(t *testing.T) {
	dir := t.TempDir()
	fs := &relay.FileSender{Dir: dir, NewID: func() string { return "abc" }, Now: func() time.Time { return time.Unix(0, 0) }}
	res, err := fs.Send(context.Background(), &relay.Request{Tenant: "t", Recipients: []string{"a@b.c"}, Raw: []byte(simpleMsg)})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, res.MessageID+".eml"))
	if err != nil || string(b) != simpleMsg {
		t.Fatalf("eml: %v %q", err, b)
	}
	if _, err := os.Stat(filepath.Join(dir, res.MessageID+".json")); err != nil {
		t.Fatal(err)
	}
}
