package relay_test

import (
	"testing"

	"github.com/sesrelay/sesrelay/relay/sestest"
)

// TestRetryMemoryForgottenOnPermanentFailure: in per-recipient mode the
// first call is accepted and the second is refused for good (554). The
// client will not retry that transaction, so nothing may remember the
// first recipient: an identical message sent again is a new send to
// every recipient, not a retry that silently skips the first.
func TestRetryMemoryForgottenOnPermanentFailure(t *testing.T) {
	h := start(t, unsubYAML("add", writeSecret(t)))
	h.ses.Respond = func(n int, r *sestest.Request) sestest.Reply {
		if n == 2 {
			return sestest.Reply{Status: 400, ErrorType: "MessageRejected", Message: "Illegal header"}
		}
		return sestest.Reply{}
	}
	rcpts := []string{"a@example.org", "b@example.org", "c@example.net"}
	c := h.dial("billing-app", testPassword)
	_, err := send(c, "bounces@billing.example.com", rcpts, simpleMsg)
	expectCode(t, err, 554, "5.6.0")
	c.Reset()
	if _, err := send(c, "bounces@billing.example.com", rcpts, simpleMsg); err != nil {
		t.Fatalf("second send: %v", err)
	}
	count := map[string]int{}
	for _, r := range h.ses.Requests() {
		count[r.To[0]]++
	}
	// a: once in the failed send, once in the new one; b and c once each.
	if count["a@example.org"] != 2 || count["b@example.org"] != 1 || count["c@example.net"] != 1 {
		t.Fatalf("accepted calls per recipient %v: the first recipient was skipped as if already sent", count)
	}
}
