package relay_test

// Message limits: recipients per message, message size, the DATA timeout,
// line length.

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

func TestTooManyRecipients(t *testing.T) {
	h := start(t, baseYAML)
	c := h.dial("billing-app", testPassword)
	if err := c.Mail("invoices@billing.example.com", nil); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		if err := c.Rcpt(fmt.Sprintf("r%d@example.org", i), nil); err != nil {
			t.Fatalf("rcpt %d: %v", i, err)
		}
	}
	expectCode(t, c.Rcpt("r50@example.org", nil), 452, "4.5.3")
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte(simpleMsg))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if r := h.ses.Requests(); len(r) != 1 || len(r[0].To) != 50 {
		t.Fatalf("want one SES call with 50 recipients")
	}
}

func TestMessageTooLarge(t *testing.T) {
	h := start(t, baseYAML)
	c := h.dial("billing-app", testPassword)
	big := simpleMsg + strings.Repeat(strings.Repeat("x", 76)+"\r\n", 1000)
	_, err := send(c, "invoices@billing.example.com", []string{"a@example.org"}, big)
	expectCode(t, err, 552, "5.3.4")
	if h.ses.Calls() != 0 {
		t.Fatal("oversize message reached SES")
	}
	// The session is still usable.
	if _, err := send(c, "invoices@billing.example.com", []string{"a@example.org"}, simpleMsg); err != nil {
		t.Fatal(err)
	}
	// MAIL FROM with a SIZE over the limit is refused up front.
	c2 := h.dial("billing-app", testPassword)
	expectCode(t, c2.Mail("invoices@billing.example.com", &smtp.MailOptions{Size: 1 << 20}), 552, "5.3.4")
}

// TestDataTimeout: a client trickling its message past server.data_timeout
// is cut off, nothing is sent, and the connection closes.
func TestDataTimeout(t *testing.T) {
	h := start(t, strings.Replace(baseYAML, "  max_recipients: 50\n", "  max_recipients: 50\n  data_timeout: 400ms\n  read_timeout: 5s\n", 1))
	c := h.dialPlain("billing-app", testPassword)
	if err := c.Mail("invoices@billing.example.com", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("a@example.org", nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var werr error
	for i := 0; i < 40 && werr == nil; i++ {
		_, werr = w.Write([]byte("X-Slow: " + strings.Repeat("x", 10) + "\r\n"))
		time.Sleep(50 * time.Millisecond)
	}
	if werr == nil {
		werr = w.Close()
	}
	if werr == nil {
		t.Fatal("a 2 s upload finished although data_timeout is 400ms")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("cut off only after %v", d)
	}
	if h.ses.Calls() != 0 {
		t.Fatal("a cut-off message reached SES")
	}
}

// TestLineTooLongInData: a line longer than go-smtp reads (2000 octets)
// is a permanent content error, not a transient abort.
func TestLineTooLongInData(t *testing.T) {
	h := start(t, baseYAML)
	c := h.dial("billing-app", testPassword)
	_, err := send(c, "invoices@billing.example.com", []string{"a@example.org"}, simpleMsg+strings.Repeat("z", 3000)+"\r\n")
	expectCode(t, err, 554, "5.6.0")
	if h.ses.Calls() != 0 {
		t.Fatal("SES called")
	}
}
