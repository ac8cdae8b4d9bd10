package relay_test

import (
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"
)

// otherHash is a hash of another password for billing-app.
func otherHash(t *testing.T) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte("rotated-password"), 10)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// TestRevokedCredentialEndsSession: an authenticated session re-checks its
// credential at the next MAIL after a reload. A changed password or a
// removed user ends it with 421 4.7.0; shrunk domains apply to it at
// once; an unrelated change lets it go on.
func TestRevokedCredentialEndsSession(t *testing.T) {
	billingUser := `users: [{username: billing-app, password_hash: "HASH"}]`
	cases := map[string]func(t *testing.T) string{
		"password changed": func(t *testing.T) string {
			return strings.Replace(strings.ReplaceAll(baseYAML, "HASH", testHash), `users: [{username: billing-app, password_hash: "`+testHash+`"}]`,
				`users: [{username: billing-app, password_hash: "`+otherHash(t)+`"}]`, 1)
		},
		"user removed": func(t *testing.T) string {
			return strings.Replace(baseYAML, billingUser, `users: [{username: billing-other, password_hash: "HASH"}]`, 1)
		},
		"user moved to another tenant": func(t *testing.T) string {
			y := strings.Replace(baseYAML, billingUser, `users: [{username: billing-other, password_hash: "HASH"}]`, 1)
			return strings.Replace(y, `users: [{username: marketing-app, password_hash: "HASH"}]`,
				`users: [{username: marketing-app, password_hash: "HASH"}, {username: billing-app, password_hash: "HASH"}]`, 1)
		},
	}
	for name, newYAML := range cases {
		t.Run(name, func(t *testing.T) {
			h := start(t, baseYAML)
			c := h.dial("billing-app", testPassword)
			if _, err := send(c, "bounces@billing.example.com", []string{"a@example.org"}, simpleMsg); err != nil {
				t.Fatal(err)
			}
			if err := h.srv.Reload(testConfig(t, newYAML(t))); err != nil {
				t.Fatal(err)
			}
			expectCode(t, c.Mail("bounces@billing.example.com", nil), 421, "4.7.0")
			if err := c.Noop(); err == nil {
				t.Fatal("connection still open after 421")
			}
			if n := len(h.ses.Requests()); n != 1 {
				t.Fatalf("%d messages sent, want 1 (before the reload)", n)
			}
		})
	}

	t.Run("domains shrunk", func(t *testing.T) {
		h := start(t, baseYAML)
		c := h.dial("billing-app", testPassword)
		if err := c.Mail("app@eu.billing.example.com", nil); err != nil {
			t.Fatal(err)
		}
		if err := c.Reset(); err != nil {
			t.Fatal(err)
		}
		if err := h.srv.Reload(testConfig(t, strings.Replace(baseYAML, `domains: ["billing.example.com", "*.billing.example.com"]`,
			`domains: ["billing.example.com"]`, 1))); err != nil {
			t.Fatal(err)
		}
		expectCode(t, c.Mail("app@eu.billing.example.com", nil), 550, "5.7.1")
		// The credential itself holds: the rest of the tenant's domains work.
		if _, err := send(c, "bounces@billing.example.com", []string{"a@example.org"}, simpleMsg); err != nil {
			t.Fatalf("remaining domain: %v", err)
		}
	})

	t.Run("unrelated change", func(t *testing.T) {
		h := start(t, baseYAML)
		c := h.dial("billing-app", testPassword)
		if err := h.srv.Reload(testConfig(t, strings.Replace(baseYAML, "configuration_set: marketing-bulk", "configuration_set: marketing-other", 1))); err != nil {
			t.Fatal(err)
		}
		if _, err := send(c, "bounces@billing.example.com", []string{"a@example.org"}, simpleMsg); err != nil {
			t.Fatalf("session after an unrelated reload: %v", err)
		}
	})
}

// TestMaxSessionDuration: NOOP does not keep a session alive past
// server.max_session_duration; a transaction in progress at the limit
// finishes with 250, and the session ends at its next command.
func TestMaxSessionDuration(t *testing.T) {
	// The limit leaves room for AUTH, whose password hash takes seconds
	// under the race detector on a loaded machine.
	const limit = 4 * time.Second
	yaml := strings.Replace(baseYAML, "  max_recipients: 50\n", "  max_recipients: 50\n  max_session_duration: 4s\n", 1)
	h := start(t, yaml)

	// busy's session starts first, so it is past its limit once idle's is.
	busy := h.dial("billing-app", testPassword)
	if err := busy.Mail("bounces@billing.example.com", nil); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	idle := h.dial("billing-app", testPassword)
	var noopErr error
	for time.Since(begin) < 3*limit {
		if noopErr = idle.Noop(); noopErr != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	took := time.Since(begin)
	if noopErr == nil {
		t.Fatalf("NOOP kept the session alive for %v", took)
	}
	if took < limit*4/5 {
		t.Fatalf("session cut after %v, before the limit", took)
	}
	if se, ok := noopErr.(*smtp.SMTPError); ok && se.Code != 421 {
		t.Fatalf("cut with %v", se)
	}
	// The transaction that began before the limit completes...
	if err := busy.Rcpt("a@example.org", nil); err != nil {
		t.Fatal(err)
	}
	w, err := busy.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte(simpleMsg)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("transaction in progress at the limit: %v", err)
	}
	// ...and then the session ends.
	if err := busy.Mail("bounces@billing.example.com", nil); err == nil {
		t.Fatal("MAIL accepted past the session limit")
	} else if se, ok := err.(*smtp.SMTPError); ok && se.Code != 421 {
		t.Fatalf("MAIL past the limit: %v", se)
	}
}
