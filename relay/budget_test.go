package relay_test

import (
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
)

// budgetYAML: 64 KiB messages, a budget of 100,000 bytes (one large
// message at a time), and a tenant allowed one transaction at a time.
var budgetYAML = strings.Replace(strings.Replace(baseYAML,
	"  max_recipients: 50\n", "  max_recipients: 50\n  max_inflight_bytes: 100000\n", 1),
	"    configuration_set: marketing-bulk\n", "    configuration_set: marketing-bulk\n    max_concurrent_messages: 1\n", 1)

// bigMsg is a message of about n bytes from billing.
func bigMsg(n int) string {
	var b strings.Builder
	b.WriteString(simpleMsg)
	line := strings.Repeat("x", 76) + "\r\n"
	for b.Len() < n {
		b.WriteString(line)
	}
	return b.String()
}

// TestInflightBudgetAtMail: SIZE= is reserved at MAIL; a transaction that
// does not fit gets 452 4.3.1 before uploading anything, and fits again
// once the other transaction ends.
func TestInflightBudgetAtMail(t *testing.T) {
	h := start(t, budgetYAML)
	a := h.dial("billing-app", testPassword)
	b := h.dial("billing-app", testPassword)
	if err := a.Mail("bounces@billing.example.com", &smtp.MailOptions{Size: 60000}); err != nil {
		t.Fatal(err)
	}
	expectCode(t, b.Mail("bounces@billing.example.com", &smtp.MailOptions{Size: 60000}), 452, "4.3.1")
	// Small ones still fit beside it.
	if err := b.Mail("bounces@billing.example.com", &smtp.MailOptions{Size: 30000}); err != nil {
		t.Fatalf("a message that fits: %v", err)
	}
	if err := b.Reset(); err != nil {
		t.Fatal(err)
	}
	if err := a.Reset(); err != nil {
		t.Fatal(err)
	}
	if err := b.Mail("bounces@billing.example.com", &smtp.MailOptions{Size: 60000}); err != nil {
		t.Fatalf("after the other transaction ended: %v", err)
	}
}

// TestInflightBudgetDuringData: without SIZE the bytes are reserved as
// they arrive; the upload that runs out gets 452 4.3.1 after the final
// dot, nothing is sent, the session goes on and the relay stays up.
func TestInflightBudgetDuringData(t *testing.T) {
	h := start(t, budgetYAML)
	a := h.dial("billing-app", testPassword)
	b := h.dial("billing-app", testPassword)
	if err := a.Mail("bounces@billing.example.com", &smtp.MailOptions{Size: 60000}); err != nil {
		t.Fatal(err)
	}
	_, err := send(b, "bounces@billing.example.com", []string{"r@example.org"}, bigMsg(60000))
	expectCode(t, err, 452, "4.3.1")
	if n := h.ses.Calls(); n != 0 {
		t.Fatalf("%d SES calls for a refused message", n)
	}
	if err := b.Noop(); err != nil {
		t.Fatalf("session after 452: %v", err)
	}
	if err := a.Reset(); err != nil {
		t.Fatal(err)
	}
	if _, err := send(b, "bounces@billing.example.com", []string{"r@example.org"}, bigMsg(60000)); err != nil {
		t.Fatalf("same message once the budget is free: %v", err)
	}
	// Everything reserved was given back: two more large messages pass one
	// after the other.
	for i := 0; i < 2; i++ {
		if _, err := send(a, "bounces@billing.example.com", []string{"r@example.org"}, bigMsg(60000)); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
}

// TestTenantMaxConcurrentMessages: a tenant at its cap of transactions in
// progress gets 452 4.3.1 at MAIL; another tenant is not affected.
func TestTenantMaxConcurrentMessages(t *testing.T) {
	h := start(t, budgetYAML)
	m1 := h.dial("marketing-app", testPassword)
	m2 := h.dial("marketing-app", testPassword)
	if err := m1.Mail("news@marketing.example.com", nil); err != nil {
		t.Fatal(err)
	}
	expectCode(t, m2.Mail("news@marketing.example.com", nil), 452, "4.3.1")
	b := h.dial("billing-app", testPassword)
	if _, err := send(b, "bounces@billing.example.com", []string{"r@example.org"}, simpleMsg); err != nil {
		t.Fatalf("other tenant: %v", err)
	}
	if err := m1.Reset(); err != nil {
		t.Fatal(err)
	}
	if err := m2.Mail("news@marketing.example.com", nil); err != nil {
		t.Fatalf("after the first transaction ended: %v", err)
	}
}
