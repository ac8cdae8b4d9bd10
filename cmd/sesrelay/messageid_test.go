package main

import (
	"strings"
	"testing"

	"github.com/emersion/go-sasl"

	"github.com/sesrelay/sesrelay/relay/sestest"
	"github.com/sesrelay/sesrelay/relay/smtptest"
)

// An endpoint that answers 200 without a MessageId (a wrong ses.endpoint,
// an intercepting proxy) never gets the client a 250: 451 4.3.0, counted
// as failed (ambiguous), never as accepted or as an SES success.
func TestNoMessageIDIsNotAccepted(t *testing.T) {
	r := startRelay(t, "", "")
	r.stub.Respond = func(int, *sestest.Request) sestest.Reply { return sestest.Reply{NoMessageID: true} }
	r.run()
	c := r.dial()
	if err := c.Auth(sasl.NewPlainClient("", "billing-app", smtptest.Password)); err != nil {
		t.Fatal(err)
	}
	msg := strings.Replace(adminTestMsg, "SUBJECT", "invoice", 1)
	smtptest.ExpectCode(t, sendAdmin(c, "bounces@billing.example.com", []string{"customer@example.org"}, msg), 451, "4.3.0")
	s := r.scrape()
	s.expect(1, "sesrelay_messages_total", "tenant=billing", "outcome=failed", "reason=ambiguous")
	if n, ok := s.value("sesrelay_messages_total", "tenant=billing", "outcome=accepted", "reason="); ok && n != 0 {
		t.Errorf("counted as accepted %v times", n)
	}
	if n, ok := s.value("sesrelay_ses_request_duration_seconds", "region=us-east-1", "result=ok"); ok && n != 0 {
		t.Errorf("counted as an SES success %v times", n)
	}
	if r.stub.Calls() != 1 {
		t.Errorf("%d SES calls, want 1 (never retried)", r.stub.Calls())
	}
}
