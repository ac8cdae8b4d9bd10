package relay_test

// Production hardening over real SMTP and the real SES client against the
// local stand-in: SES faults and retries, rate limits, AUTH brute force,
// connection limits, reload, graceful shutdown and SMTP smuggling.

import (
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestShutdownCompletesDataAndClosesIdle(t *testing.T) {
	h := startHard(t, hardYAML, hOpts{})
	idle := h.raw("")
	idle.Login("marketing-app", testPassword)

	busy := h.raw("")
	busy.Login("billing-app", testPassword)
	for _, line := range []string{"MAIL FROM:<invoices@billing.example.com>", "RCPT TO:<a@example.org>"} {
		if code, msg := busy.Cmd(line); code != 250 {
			t.Fatalf("%s: %d %s", line, code, msg)
		}
	}
	if code, msg := busy.Cmd("DATA"); code != 354 {
		t.Fatalf("DATA: %d %s", code, msg)
	}
	busy.Write("From: Billing <invoices@billing.example.com>\r\nTo: a@example.org\r\n")

	stopped := make(chan time.Duration, 1)
	go func() { stopped <- h.stop() }() // SIGTERM while the message is in DATA

	// The idle session is told 421 and closed.
	if code, msg := idle.Read(); code != 421 {
		t.Fatalf("idle session: %d %s", code, msg)
	}
	if code, _ := idle.Read(); code != -1 {
		t.Fatal("idle session not closed")
	}
	// New connections are refused.
	if c, err := net.DialTimeout("tcp", h.plain, time.Second); err == nil {
		c.SetReadDeadline(time.Now().Add(time.Second))
		b, _ := io.ReadAll(c)
		c.Close()
		if len(b) > 0 {
			t.Fatalf("a new connection was served during shutdown: %q", b)
		}
	}
	select {
	case <-stopped:
		t.Fatal("shutdown did not wait for the message in DATA")
	case <-time.After(300 * time.Millisecond):
	}
	// The message in DATA completes and is acknowledged, then the
	// connection closes.
	busy.Write("Subject: in flight\r\n\r\nHello.\r\n.\r\n")
	if code, msg := busy.Read(); code != 250 {
		t.Fatalf("message in DATA during shutdown: %d %s", code, msg)
	}
	if code, _ := busy.Read(); code != -1 {
		t.Fatal("busy session not closed after its reply")
	}
	select {
	case d := <-stopped:
		t.Logf("stopped %v after SIGTERM", d)
	case <-time.After(5 * time.Second):
		t.Fatal("shutdown did not end")
	}
	if h.err != nil {
		t.Fatalf("Serve: %v", h.err)
	}
	if n := len(h.ses.Requests()); n != 1 {
		t.Fatalf("SES got %d messages", n)
	}
}

func TestShutdownTimeout(t *testing.T) {
	h := startHard(t, strings.Replace(hardYAML, "shutdown_timeout: 5s", "shutdown_timeout: 700ms", 1), hOpts{})
	stuck := h.raw("")
	stuck.Login("billing-app", testPassword)
	stuck.Cmd("MAIL FROM:<invoices@billing.example.com>")
	stuck.Cmd("RCPT TO:<a@example.org>")
	stuck.Cmd("DATA")
	stuck.Write("Subject: never ends\r\n")
	d := h.stop()
	if d > 2*time.Second {
		t.Fatalf("shutdown took %v, shutdown_timeout 700ms", d)
	}
	if h.err == nil {
		t.Fatal("Serve reported no connection closed at the deadline")
	}
	if code, _ := stuck.Read(); code == 250 {
		t.Fatal("250 for an unfinished message")
	}
	if h.ses.Calls() != 0 {
		t.Fatal("SES called for an unfinished message")
	}
}

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
