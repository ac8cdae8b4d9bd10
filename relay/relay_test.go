package relay_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/sesrelay/sesrelay/relay/sestest"
)

// TestSESErrorMapping injects every SES error at the HTTP level and checks
// the reply: 250 never, 4xx when a retry can succeed, 5xx when not.
func TestSESErrorMapping(t *testing.T) {
	cases := []struct {
		status   int
		typ, msg string
		code     int
		enh      string
	}{
		{429, "TooManyRequestsException", "Too many requests", 451, "4.3.2"},
		{400, "LimitExceededException", "Maximum sending rate exceeded", 451, "4.3.2"},
		{400, "MessageRejected", "Maximum sending rate exceeded.", 451, "4.3.2"},
		{500, "InternalServiceErrorException", "internal", 451, "4.3.0"},
		{503, "", "service unavailable", 451, "4.3.0"},
		{502, "", "bad gateway", 451, "4.3.0"},
		{400, "SendingPausedException", "sending paused", 451, "4.3.2"},
		{400, "MailFromDomainNotVerifiedException", "mail from not verified", 451, "4.3.5"},
		{404, "NotFoundException", "configuration set does not exist", 451, "4.3.5"},
		{403, "UnrecognizedClientException", "The security token included in the request is invalid.", 451, "4.3.5"},
		{403, "AccessDeniedException", "not authorized to send from identity", 550, "5.7.1"},
		{400, "MessageRejected", "Email address is not verified. The following identities failed the check", 550, "5.7.1"},
		{400, "MessageRejected", "Duplicate header 'Subject'.", 554, "5.6.0"},
		{400, "BadRequestException", "invalid raw message", 554, "5.6.0"},
		{400, "AccountSuspendedException", "Your account has been suspended.", 554, "5.3.2"},
		{413, "", "request entity too large", 552, "5.3.4"},
	}
	h := start(t, baseYAML)
	c := h.dial("billing-app", testPassword)
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%d_%s", tc.status, tc.typ), func(t *testing.T) {
			h.ses.Respond = func(int, *sestest.Request) sestest.Reply {
				return sestest.Reply{Status: tc.status, ErrorType: tc.typ, Message: tc.msg}
			}
			_, err := send(c, "invoices@billing.example.com", []string{"a@example.org"}, simpleMsg)
			expectCode(t, err, tc.code, tc.enh)
			var se *smtp.SMTPError
			errors.As(err, &se)
			if strings.Contains(se.Message, tc.msg) || !strings.Contains(se.Message, "ref ") {
				t.Fatalf("reply must be generic with a ref, got %q", se.Message)
			}
			if err := c.Reset(); err != nil {
				t.Fatal(err)
			}
		})
	}
	h.ses.Respond = func(int, *sestest.Request) sestest.Reply { return sestest.Reply{Drop: true} }
	_, err := send(c, "invoices@billing.example.com", []string{"a@example.org"}, simpleMsg)
	expectCode(t, err, 451, "4.3.0")
	if n := len(h.ses.Requests()); n != 0 {
		t.Fatalf("%d messages recorded as accepted", n)
	}
}
