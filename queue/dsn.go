package queue

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrNullSender: no DSN is ever sent to the null reverse-path <> (RFC 5321
// §4.5.5): it is what bounces and other notifications carry, and
// answering them would loop.
var ErrNullSender = errors.New("no delivery status notification for the null sender <>")

// DSNOptions are the parts of a DSN that do not come from the entry.
type DSNOptions struct {
	// ReportingMTA is the relay's host name (server.hostname).
	ReportingMTA string
	// From is queue.bounce_from: an address on an identity SES verified.
	From string
	// Now is the Date of the report; zero means time.Now.
	Now time.Time
	// Boundary and MessageID default to random values; tests fix them.
	Boundary  string
	MessageID string
}

// BuildDSN returns the RFC 3464 delivery status notification for e's
// failed requests, addressed to e's envelope sender: a
// multipart/report; report-type=delivery-status with a human-readable
// text/plain part, a message/delivery-status part (one per-recipient block
// for every failed recipient, Action: failed, with its RFC 3463 status
// and the SES diagnostic) and the original header as text/rfc822-headers.
// e must carry its data (an entry given to OnDead does). For the null
// sender it returns ErrNullSender and nothing else.
func BuildDSN(e *Entry, o DSNOptions) ([]byte, error) {
	if e.Sender == "" || e.Sender == "<>" {
		return nil, ErrNullSender
	}
	if o.From == "" {
		return nil, errors.New("dsn: no From address (queue.bounce_from)")
	}
	if o.ReportingMTA == "" {
		return nil, errors.New("dsn: no reporting MTA host name")
	}
	var failed []Request
	for _, r := range e.Requests {
		if r.State == Failed {
			failed = append(failed, r)
		}
	}
	if len(failed) == 0 {
		return nil, fmt.Errorf("dsn: entry %s has no failed recipient", e.ID)
	}
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	if o.Boundary == "" {
		o.Boundary = "dsn-" + randomHex(12)
	}
	if o.MessageID == "" {
		o.MessageID = randomHex(16) + "@" + o.ReportingMTA
	}
	header := e.OriginalHeader()
	if header == nil {
		return nil, fmt.Errorf("dsn: entry %s was loaded without its data", e.ID)
	}

	var b bytes.Buffer
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\r\n", args...) }
	w("From: Mail Delivery System <%s>", o.From)
	w("To: <%s>", e.Sender)
	w("Subject: Undelivered Mail Returned to Sender")
	w("Date: %s", now.Format(time.RFC1123Z))
	w("Message-ID: <%s>", o.MessageID)
	// RFC 3834: a DSN is an automatic response; no vacation reply to it.
	w("Auto-Submitted: auto-replied")
	w("MIME-Version: 1.0")
	w("Content-Type: multipart/report; report-type=delivery-status;")
	w("\tboundary=\"%s\"", o.Boundary)
	w("")
	w("This is a MIME-encapsulated message.")
	w("")

	w("--%s", o.Boundary)
	w("Content-Type: text/plain; charset=us-ascii")
	w("Content-Description: Notification")
	w("")
	w("This is the mail relay at %s.", ascii(o.ReportingMTA, 255))
	w("")
	w("Your message, accepted on %s, could not be delivered", e.Created.UTC().Format(time.RFC1123Z))
	w("to the following recipients. The relay will not try again.")
	w("")
	for _, r := range failed {
		for _, rcpt := range r.Recipients {
			w("<%s>: %s", ascii(rcpt, 320), ascii(r.Error, 400))
		}
	}
	w("")
	w("The headers of your message are attached. Queue id: %s.", e.ID)
	w("")

	w("--%s", o.Boundary)
	w("Content-Type: message/delivery-status")
	w("Content-Description: Delivery report")
	w("")
	w("Reporting-MTA: dns; %s", ascii(o.ReportingMTA, 255))
	w("X-Queue-ID: %s", e.ID)
	w("Arrival-Date: %s", e.Created.Format(time.RFC1123Z))
	for _, r := range failed {
		status := r.Status
		if !isStatus(status) {
			status = "5.0.0"
		}
		for _, rcpt := range r.Recipients {
			w("")
			w("Final-Recipient: rfc822; %s", ascii(rcpt, 320))
			w("Action: failed")
			w("Status: %s", status)
			w("Diagnostic-Code: X-SES; %s", ascii(r.Error, 800))
			if !e.LastAttempt.IsZero() {
				w("Last-Attempt-Date: %s", e.LastAttempt.Format(time.RFC1123Z))
			}
		}
	}
	w("")

	w("--%s", o.Boundary)
	w("Content-Type: text/rfc822-headers")
	w("Content-Description: Undelivered message headers")
	w("")
	b.Write(bytes.TrimRight(crlf(header), "\r\n"))
	w("")
	w("")
	w("--%s--", o.Boundary)
	return b.Bytes(), nil
}

// isStatus checks the RFC 3463 form class.subject.detail.
func isStatus(s string) bool {
	p := strings.Split(s, ".")
	if len(p) != 3 || (p[0] != "2" && p[0] != "4" && p[0] != "5") {
		return false
	}
	for _, n := range p[1:] {
		if n == "" || len(n) > 3 || strings.Trim(n, "0123456789") != "" {
			return false
		}
	}
	return true
}

// ascii makes s one printable US-ASCII line of at most n bytes, so that an
// error text or an address cannot break the report's structure.
func ascii(s string, n int) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\r' || r == '\n' || r == '\t':
			b.WriteByte(' ')
		case r < 0x20 || r > 0x7e:
			b.WriteByte('?')
		default:
			b.WriteRune(r)
		}
		if b.Len() >= n {
			break
		}
	}
	out := b.String()
	if len(out) > n {
		out = out[:n]
	}
	return out
}

// crlf normalizes bare LF to CRLF.
func crlf(b []byte) []byte {
	if !bytes.Contains(b, []byte("\n")) || bytes.Count(b, []byte("\r\n")) == bytes.Count(b, []byte("\n")) {
		return b
	}
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	return bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
