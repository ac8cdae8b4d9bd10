package relay_test

// SES faults over real SMTP and the real SES client against the stand-in:
// the reply for each SES error, bounded retries inside ses.timeout, an
// unreachable endpoint, and never 250 without SES.

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

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

func TestSESFaultRetries(t *testing.T) {
	cases := []struct {
		name     string
		respond  func(n int, r *sestest.Request) sestest.Reply
		code     int
		enh      string
		calls    int // -1: don't check
		accepted int
	}{
		{"429 twice then success", func(n int, _ *sestest.Request) sestest.Reply {
			if n <= 2 {
				return sestest.Reply{Status: 429, ErrorType: "TooManyRequestsException", Message: "Too many requests"}
			}
			return sestest.Reply{}
		}, 250, "", 3, 1},
		{"max sending rate then success", func(n int, _ *sestest.Request) sestest.Reply {
			if n == 1 {
				return sestest.Reply{Status: 400, ErrorType: "MessageRejected", Message: "Maximum sending rate exceeded."}
			}
			return sestest.Reply{}
		}, 250, "", 2, 1},
		{"500 then success", func(n int, _ *sestest.Request) sestest.Reply {
			if n == 1 {
				return sestest.Reply{Status: 500, ErrorType: "InternalServiceErrorException"}
			}
			return sestest.Reply{}
		}, 250, "", 2, 1},
		{"429 forever", func(int, *sestest.Request) sestest.Reply {
			return sestest.Reply{Status: 429, ErrorType: "TooManyRequestsException"}
		}, 451, "4.3.2", 4, 0},
		{"500 forever", func(int, *sestest.Request) sestest.Reply {
			return sestest.Reply{Status: 500, ErrorType: "InternalServiceErrorException"}
		}, 451, "4.3.0", 4, 0},
		{"503 forever", func(int, *sestest.Request) sestest.Reply { return sestest.Reply{Status: 503} }, 451, "4.3.0", 4, 0},
		{"rejected is not retried", func(int, *sestest.Request) sestest.Reply {
			return sestest.Reply{Status: 400, ErrorType: "MessageRejected", Message: "Email address is not verified."}
		}, 550, "5.7.1", 1, 0},
		{"connection reset after the request, twice", func(int, *sestest.Request) sestest.Reply {
			return sestest.Reply{Drop: true}
		}, 451, "4.3.0", 2, 0},
		{"slow past the budget", func(int, *sestest.Request) sestest.Reply {
			time.Sleep(2 * time.Second)
			return sestest.Reply{}
		}, 451, "4.3.0", 1, -1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := startHard(t, hardYAML, hOpts{})
			h.ses.Respond = tc.respond
			c := h.client("", "billing-app", testPassword)
			start := time.Now()
			err := sendMsg(c, "invoices@billing.example.com", []string{"a@example.org"}, simpleMsg)
			took := time.Since(start)
			if tc.code == 250 {
				if err != nil {
					t.Fatal(err)
				}
			} else {
				expectCode(t, err, tc.code, tc.enh)
			}
			// ses.timeout is 1.5 s: the reply comes within it (plus slack
			// for the race detector).
			if took > 2500*time.Millisecond {
				t.Fatalf("reply after %v, budget 1.5s", took)
			}
			if tc.calls >= 0 && h.ses.Calls() != tc.calls {
				t.Fatalf("%d SES calls, want %d", h.ses.Calls(), tc.calls)
			}
			if tc.accepted >= 0 && len(h.ses.Requests()) != tc.accepted {
				t.Fatalf("%d SES requests accepted, want %d", len(h.ses.Requests()), tc.accepted)
			}
			if tc.code != 250 && len(h.ses.Requests()) != 0 && tc.accepted == 0 {
				t.Fatal("a failure reply for a message SES accepted")
			}
		})
	}
}

func TestSESUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	l.Close()
	h := startHard(t, hardYAML, hOpts{endpoint: closed})
	c := h.client("", "billing-app", testPassword)
	err = sendMsg(c, "invoices@billing.example.com", []string{"a@example.org"}, simpleMsg)
	expectCode(t, err, 451, "4.3.0")
}

// TestNeverAcceptedWithoutSES sends many messages against a stand-in that
// fails at random in every way: every 250 matches one accepted SES
// request, and no message is accepted twice unless a connection was
// dropped after the request (the ambiguous case).
func TestNeverAcceptedWithoutSES(t *testing.T) {
	h := startHard(t, hardYAML, hOpts{})
	var drops atomic.Int32
	h.ses.Respond = func(n int, _ *sestest.Request) sestest.Reply {
		switch n % 7 {
		case 1:
			return sestest.Reply{Status: 429, ErrorType: "TooManyRequestsException"}
		case 2:
			return sestest.Reply{Status: 500}
		case 3:
			drops.Add(1)
			return sestest.Reply{Drop: true}
		case 4:
			return sestest.Reply{Status: 400, ErrorType: "MessageRejected", Message: "Maximum sending rate exceeded."}
		}
		return sestest.Reply{}
	}
	c := h.client("", "billing-app", testPassword)
	ok := 0
	for i := 0; i < 40; i++ {
		msg := strings.Replace(simpleMsg, "Hello.", fmt.Sprintf("Message %d.", i), 1)
		err := sendMsg(c, "invoices@billing.example.com", []string{"a@example.org"}, msg)
		if err == nil {
			ok++
		} else if codeOf(err)/100 != 4 {
			t.Fatalf("message %d: %v", i, err)
		} else if err := c.Reset(); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]int{}
	for _, r := range h.ses.Requests() {
		i := bytes.Index(r.Raw, []byte("Message "))
		seen[string(r.Raw[i:i+12])]++
	}
	dups := 0
	for _, n := range seen {
		dups += n - 1
	}
	if len(seen) != ok {
		t.Fatalf("%d messages got 250, SES accepted %d distinct ones", ok, len(seen))
	}
	if dups > int(drops.Load()) {
		t.Fatalf("%d duplicates with only %d dropped connections", dups, drops.Load())
	}
	t.Logf("%d/40 accepted, %d drops, %d possible duplicates", ok, drops.Load(), dups)
}
