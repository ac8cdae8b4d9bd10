package relay_test

import (
	"crypto/tls"
	"encoding/base64"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sesrelay/sesrelay/relay/smtptest"
)

// TestShutdownReplyText: idle connections cut by a shutdown are told so
// (421 4.3.2), not that they idled out; over STARTTLS the reply is on the
// TLS stream. Then the connection closes.
func TestShutdownReplyText(t *testing.T) {
	h := startHard(t, hardYAML, hOpts{})

	authed := h.raw("")
	authed.Login("billing-app", testPassword)
	fresh := h.raw("") // greeted, no EHLO yet

	// STARTTLS, then EHLO and AUTH over TLS.
	conn := dialFrom(t, h.starttls, "")
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	pre := smtptest.NewConn(t, conn)
	pre.Read()
	pre.Cmd("EHLO client.test")
	if code, msg := pre.Cmd("STARTTLS"); code != 220 {
		t.Fatalf("STARTTLS: %d %s", code, msg)
	}
	tc := tls.Client(conn, clientTLS)
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	secure := smtptest.NewConn(t, tc)
	secure.Cmd("EHLO client.test")
	ir := base64.StdEncoding.EncodeToString([]byte("\x00billing-app\x00" + testPassword))
	if code, msg := secure.Cmd("AUTH PLAIN " + ir); code != 235 {
		t.Fatalf("AUTH over TLS: %d %s", code, msg)
	}

	go h.stop() // SIGTERM
	for name, c := range map[string]*rawConn{"authenticated": authed, "before EHLO": fresh, "TLS": secure} {
		code, msg := c.Read()
		if code != 421 || !strings.HasPrefix(msg, "4.3.2 ") || !strings.Contains(strings.ToLower(msg), "shutting down") {
			t.Errorf("%s: %d %q, want 421 4.3.2 ... shutting down", name, code, msg)
		}
		if code, msg := c.Read(); code != -1 {
			t.Errorf("%s: not closed after the 421: %d %s", name, code, msg)
		}
	}
}

// TestDataTimeoutReply: a DATA upload cut off by server.data_timeout gets
// one reply, 421 4.4.2 as documented, and the connection closes (before,
// 451 4.3.0 and then a second 421).
func TestDataTimeoutReply(t *testing.T) {
	h := startHard(t, strings.Replace(hardYAML, "shutdown_timeout: 5s", "shutdown_timeout: 5s\n  data_timeout: 300ms\n  read_timeout: 5s", 1), hOpts{})
	r := h.raw("")
	r.Login("billing-app", testPassword)
	r.Cmd("MAIL FROM:<invoices@billing.example.com>")
	r.Cmd("RCPT TO:<a@example.org>")
	if code, _ := r.Cmd("DATA"); code != 354 {
		t.Fatal("DATA refused")
	}
	r.Write("From: <invoices@billing.example.com>\r\n")
	// Nothing more: the upload outlives data_timeout.
	code, msg := r.Read()
	if code != 421 || !strings.HasPrefix(msg, "4.4.2 ") {
		t.Fatalf("reply to a timed-out DATA: %d %q, want 421 4.4.2", code, msg)
	}
	if code, msg := r.Read(); code != -1 {
		t.Fatalf("second reply %d %q: the connection must close after the 421", code, msg)
	}
	if h.ses.Calls() != 0 {
		t.Fatal("SES called")
	}
}

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
