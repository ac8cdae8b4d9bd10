package relay_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
)

// TestHeaderControlCharacters: a C0 control character other than tab (or
// DEL) in a header is refused with 554 5.6.0 naming the header; nothing
// reaches SES. A tab is fine.
func TestHeaderControlCharacters(t *testing.T) {
	h := start(t, baseYAML)
	c := h.dial("billing-app", testPassword)
	for _, tc := range []struct{ name, header, field string }{
		{"NUL in Subject", "Subject: hi\x00From: ceo@victim.com", "Subject"},
		{"NUL in To", "To: customer@exa\x00mple.org", "To"},
		{"ESC in X-Note", "X-Note: \x1b[2J", "X-Note"},
		{"DEL", "X-Note: a\x7fb", "X-Note"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := h.ses.Calls()
			msg := "From: Billing <invoices@billing.example.com>\r\n" + tc.header + "\r\n\r\nHello.\r\n"
			_, err := send(c, "invoices@billing.example.com", []string{"a@example.org"}, msg)
			expectCode(t, err, 554, "5.6.0")
			var se *smtp.SMTPError
			if errors.As(err, &se) && !strings.Contains(se.Message, "header "+tc.field) {
				t.Fatalf("reply %q does not name the header %s", se.Message, tc.field)
			}
			if h.ses.Calls() != calls {
				t.Fatal("SES called")
			}
		})
	}
	if _, err := send(c, "invoices@billing.example.com", []string{"a@example.org"},
		"From: Billing <invoices@billing.example.com>\r\nSubject: a\tb\r\n\r\nHello.\r\n"); err != nil {
		t.Fatalf("a tab in Subject: %v", err)
	}
}
