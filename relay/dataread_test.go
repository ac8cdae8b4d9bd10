package relay_test

import (
	"bytes"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
)

// sized returns a CRLF message of exactly n bytes, with lines that start
// with a dot (so the wire form, dot-stuffed, is longer than n).
func sized(t *testing.T, n int) string {
	t.Helper()
	var b strings.Builder
	b.WriteString(simpleMsg)
	line := "." + strings.Repeat("x", 75) + "\r\n"
	for b.Len()+len(line) <= n-10 {
		b.WriteString(line)
	}
	rest := n - b.Len() - 2
	if rest < 1 {
		t.Fatalf("cannot size a message to %d", n)
	}
	b.WriteString(strings.Repeat("y", rest) + "\r\n")
	if b.Len() != n {
		t.Fatalf("sized %d, want %d", b.Len(), n)
	}
	return b.String()
}

// TestSizeLimitExact: the SIZE EHLO advertises is the largest message
// accepted, with and without SIZE= at MAIL; one byte more is 552.
func TestSizeLimitExact(t *testing.T) {
	h := start(t, baseYAML) // max_message_bytes: 65536
	c := h.dial("billing-app", testPassword)
	if ok, v := c.Extension("SIZE"); !ok || v != "65536" {
		t.Fatalf("EHLO advertises SIZE %q", v)
	}
	for _, withSize := range []bool{true, false} {
		t.Run(fmt.Sprintf("SIZE=%v", withSize), func(t *testing.T) {
			before := len(h.ses.Requests())
			msg := sized(t, 65536)
			var opts *smtp.MailOptions
			if withSize {
				opts = &smtp.MailOptions{Size: int64(len(msg))}
			}
			if err := c.Mail("invoices@billing.example.com", opts); err != nil {
				t.Fatalf("MAIL with SIZE=%d: %v", len(msg), err)
			}
			if err := c.Rcpt("a@example.org", nil); err != nil {
				t.Fatal(err)
			}
			w, err := c.Data()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write([]byte(msg)); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatalf("a message of exactly the advertised SIZE: %v", err)
			}
			reqs := h.ses.Requests()[before:]
			if len(reqs) != 1 || !bytes.HasSuffix(reqs[0].Raw, []byte(msg[len(simpleMsg)-len("Hello.\r\n"):])) {
				t.Fatal("SES did not get the message whole")
			}
		})
	}
	t.Run("one byte over", func(t *testing.T) {
		calls := h.ses.Calls()
		_, err := send(c, "invoices@billing.example.com", []string{"a@example.org"}, sized(t, 65537))
		expectCode(t, err, 552, "5.3.4")
		if h.ses.Calls() != calls {
			t.Fatal("an oversize message reached SES")
		}
		expectCode(t, c.Mail("invoices@billing.example.com", &smtp.MailOptions{Size: 65537}), 552, "5.3.4")
	})
}

// pythonStyle is a message in LF line endings, dot-stuffed after every LF
// the way Python's smtplib.sendmail() sends a bytes message.
const lfMessage = "From: <invoices@billing.example.com>\nTo: a@example.org\nSubject: dots\n\n" +
	".NET line\n...\n.\nend\n"

// wantCRLF is lfMessage as it must reach SES (headers added before it).
const wantCRLF = "Subject: dots\r\n\r\n.NET line\r\n...\r\n.\r\nend\r\n"

// TestUnstuffAfterBareLF: with bare_newlines: normalize a bare LF is a
// line end for dot-unstuffing too.
func TestUnstuffAfterBareLF(t *testing.T) {
	h := startHard(t, hardYAML, hOpts{}) // bare_newlines: normalize (default)
	r := h.raw("")
	r.Login("billing-app", testPassword)
	r.Cmd("MAIL FROM:<invoices@billing.example.com>")
	r.Cmd("RCPT TO:<a@example.org>")
	if code, _ := r.Cmd("DATA"); code != 354 {
		t.Fatal("DATA refused")
	}
	stuffed := strings.ReplaceAll(lfMessage, "\n.", "\n..")
	r.Write(stuffed + "\r\n.\r\n")
	if code, msg := r.Read(); code != 250 {
		t.Fatalf("end of DATA: %d %s", code, msg)
	}
	reqs := h.ses.Requests()
	if len(reqs) != 1 || !bytes.Contains(reqs[0].Raw, []byte(wantCRLF)) {
		t.Fatalf("SES got %q, want it to contain %q", reqs[0].Raw, wantCRLF)
	}
	// A dot after CRLF was unstuffed by go-smtp already: not twice.
	r.Cmd("MAIL FROM:<invoices@billing.example.com>")
	r.Cmd("RCPT TO:<a@example.org>")
	r.Cmd("DATA")
	r.Write("From: <invoices@billing.example.com>\r\nTo: a@example.org\r\nSubject: crlf\r\n\r\n..NET\r\n.\r\n")
	if code, msg := r.Read(); code != 250 {
		t.Fatalf("end of DATA: %d %s", code, msg)
	}
	if reqs := h.ses.Requests(); len(reqs) != 2 || !bytes.HasSuffix(reqs[1].Raw, []byte("\r\n\r\n.NET\r\n")) {
		t.Fatalf("SES got %q", reqs[len(reqs)-1].Raw)
	}
}

// TestUnstuffPythonSmtplib sends a bytes message with LF line endings
// through Python's smtplib.sendmail(), the legacy pattern that found the
// defect. Skipped when python3 is not installed.
func TestUnstuffPythonSmtplib(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed")
	}
	h := startHard(t, hardYAML, hOpts{})
	host, port, _ := strings.Cut(h.plain, ":")
	script := fmt.Sprintf(`
import smtplib, sys
msg = %q.encode()
with smtplib.SMTP(%q, %s, timeout=20) as s:
    s.login("billing-app", %q)
    s.sendmail("invoices@billing.example.com", ["a@example.org"], msg)
`, lfMessage, host, port, testPassword)
	out, err := exec.Command(py, "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("smtplib: %v\n%s", err, out)
	}
	reqs := h.ses.Requests()
	if len(reqs) != 1 || !bytes.Contains(reqs[0].Raw, []byte(wantCRLF)) {
		t.Fatalf("SES got %q, want it to contain %q", reqs[0].Raw, wantCRLF)
	}
}
