package policy

import "testing"

// BenchmarkEvaluate measures the hot path for a typical accepted message.
func BenchmarkEvaluate(b *testing.B) {
	ten := testRules(b).Tenant("billing")
	h := header(b, "From: Billing <invoices@eu.billing.example.com>\n"+
		"To: customer@example.org\nSubject: Your invoice\nDate: Mon, 23 Nov 2026 13:37:51 +0000\n"+
		"Message-ID: <1@eu.billing.example.com>\nMIME-Version: 1.0\nContent-Type: text/plain\nX-Campaign: invoices-2026")
	env := Envelope{From: "bounce@billing.example.com", To: []string{"customer@example.org"}}
	b.ReportAllocs()
	for b.Loop() {
		if d := ten.Evaluate(env, h); d.Reject != nil {
			b.Fatal(d.Reject)
		}
	}
}

// TestConcurrentEvaluate: Rules are shared by every session; run with
// -race to see that evaluating mutates nothing.
func TestConcurrentEvaluate(t *testing.T) {
	r := testRules(t)
	h := header(t, "From: Jane <jane@gmail.example>\nX-Campaign: a b\nSender: x@rw.example.net")
	done := make(chan Decision)
	for range 4 {
		go func() { done <- r.Tenant("rw").Evaluate(Envelope{}, h) }()
	}
	for range 4 {
		if d := <-done; d.Reject != nil || d.Rewrite == nil {
			t.Errorf("decision %+v", d)
		}
	}
}
