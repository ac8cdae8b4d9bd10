package relay_test

// Bare newlines and SMTP smuggling: no end-of-data look-alike splits one
// DATA into two transactions.

import (
	"bytes"
	"strings"
	"testing"
)

// smugglings end DATA with an end-of-data sequence a lenient server might
// take for <CRLF>.<CRLF>, followed by a second transaction.
var smugglings = map[string]string{
	`\n.\n`:     "\n.\n",
	`\r.\r`:     "\r.\r",
	`\r\n.\n`:   "\r\n.\n",
	`\n.\r\n`:   "\n.\r\n",
	`\r\n.\r`:   "\r\n.\r",
	`\r.\r\n`:   "\r.\r\n",
	`\r\n\n.\n`: "\r\n\n.\n",
}

func TestSmugglingNeverSplitsData(t *testing.T) {
	for _, mode := range []string{"normalize", "reject"} {
		t.Run(mode, func(t *testing.T) {
			yaml := strings.Replace(hardYAML, "shutdown_timeout: 5s", "shutdown_timeout: 5s\n  bare_newlines: "+mode, 1)
			h := startHard(t, yaml, hOpts{})
			for name, sep := range smugglings {
				before := len(h.ses.Requests())
				r := h.raw("")
				r.Login("billing-app", testPassword)
				r.Cmd("MAIL FROM:<invoices@billing.example.com>")
				r.Cmd("RCPT TO:<a@example.org>")
				if code, _ := r.Cmd("DATA"); code != 354 {
					t.Fatalf("%s: DATA %d", name, code)
				}
				r.Write("From: <invoices@billing.example.com>\r\nTo: a@example.org\r\nSubject: first\r\n\r\nfirst body" + sep +
					"MAIL FROM:<invoices@billing.example.com>\r\n" +
					"RCPT TO:<victim@example.net>\r\n" +
					"DATA\r\n" +
					"From: <invoices@billing.example.com>\r\nTo: victim@example.net\r\nSubject: smuggled\r\n\r\nsmuggled body\r\n" +
					".\r\n")
				code, msg := r.Read()
				want := 250
				if mode == "reject" {
					want = 554
					// go-smtp's dot-unstuffing consumes "." and the CR
					// after it at the start of a line ("\r\n.\rX" reads
					// as "\r\nX"): no bare CR is left to reject, and the
					// message is still one.
					if name == `\r\n.\r` {
						want = 250
					}
				}
				if code != want {
					t.Fatalf("%s: end of DATA %d %s, want %d", name, code, msg, want)
				}
				// The next reply must be QUIT's: no smuggled command ran.
				if code, msg := r.Cmd("QUIT"); code != 221 {
					t.Fatalf("%s: reply to QUIT %d %s: the smuggled transaction was processed", name, code, msg)
				}
				reqs := h.ses.Requests()[before:]
				switch mode {
				case "normalize":
					if len(reqs) != 1 {
						t.Fatalf("%s: SES got %d messages, want exactly 1", name, len(reqs))
					}
					if strings.Join(reqs[0].To, ",") != "a@example.org" {
						t.Fatalf("%s: recipients %v", name, reqs[0].To)
					}
					if !bytes.Contains(reqs[0].Raw, []byte("smuggled body")) {
						t.Fatalf("%s: the smuggled text is not in the one message", name)
					}
					if bare(reqs[0].Raw) {
						t.Fatalf("%s: a bare CR or LF reached SES: %q", name, reqs[0].Raw)
					}
				case "reject":
					if want == 250 {
						if len(reqs) != 1 || bare(reqs[0].Raw) || strings.Join(reqs[0].To, ",") != "a@example.org" {
							t.Fatalf("%s: %d messages", name, len(reqs))
						}
						continue
					}
					if len(reqs) != 0 {
						t.Fatalf("%s: SES got %d messages, want none", name, len(reqs))
					}
				}
			}
		})
	}
}

// bare reports a CR not followed by LF or an LF not preceded by CR.
func bare(b []byte) bool {
	for i, c := range b {
		if c == '\r' && (i+1 == len(b) || b[i+1] != '\n') {
			return true
		}
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			return true
		}
	}
	return false
}
