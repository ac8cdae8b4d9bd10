package relay_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sesrelay/sesrelay/headers"
	"github.com/sesrelay/sesrelay/relay"
)

const agreementYAML = `
server:
  hostname: relay.test
  listeners:
    - {address: "127.0.0.1:0", tls: starttls}
  tls: {self_signed: true}
  max_message_bytes: 65536
  max_recipients: 3
ses: {region: us-east-1, max_attempts: 1, timeout: 5s}
tenants:
  - name: billing
    users: [{username: billing-app, password_hash: "HASH"}]
    domains: ["billing.example.com", "*.billing.example.com"]
    display_name: strip_addresses
  - name: rw
    users: [{username: rw-app, password_hash: "HASH"}]
    domains: ["rw.example.net"]
    from_policy: rewrite
    rewrite_from: noreply@rw.example.net
    display_name: strip_addresses
`

// outcome is what a client sees of one transaction: the first refusal
// (stage, code, enhanced code, text) or 250, and the SES requests made.
type outcome struct {
	stage string
	code  int
	enh   smtp.EnhancedCode
	text  string
	reqs  []string // "recipients|raw" of each SES request
}

func (o outcome) String() string {
	return fmt.Sprintf("%s %d %d.%d.%d %q\n%s", o.stage, o.code, o.enh[0], o.enh[1], o.enh[2], o.text, strings.Join(o.reqs, "\n"))
}

// TestExplainAgreesWithLive runs a table of envelopes and messages through
// a live session (real SMTP, the real SES client against the stand-in) and
// through Pipeline.Explain built from the same configuration, and compares
// the replies and the SES requests.
func TestExplainAgreesWithLive(t *testing.T) {
	const ok = "From: App <app@billing.example.com>\r\nTo: c@example.org\r\nSubject: s\r\n\r\nHello.\r\n"
	for _, c := range []struct {
		name, user, from string
		to               []string
		msg              string
		want             string // "stage code" the outcome must have
	}{
		{"accepted", "billing-app", "bounces@billing.example.com", []string{"c@example.org"}, ok, " 250"},
		{"null sender", "billing-app", "", []string{"c@example.org"}, ok, " 250"},
		{"foreign From", "billing-app", "", []string{"c@example.org"}, strings.Replace(ok, "billing.example.com", "victim.example", 1), "DATA 550"},
		{"group From", "billing-app", "", []string{"c@example.org"}, strings.Replace(ok, "App <app@billing.example.com>", "g: app@billing.example.com;", 1), "DATA 554"},
		{"MAIL FROM not owned", "billing-app", "a@victim.example", []string{"c@example.org"}, ok, "MAIL FROM 550"},
		// 14.8: explain said 550 5.7.1 for an unreadable sender.
		{"MAIL FROM unreadable", "billing-app", "a\x01b@billing.example.com", []string{"c@example.org"}, ok, "MAIL FROM 501"},
		// 14.8: explain said 501 for a non-ASCII local part.
		{"RCPT non-ASCII", "billing-app", "", []string{"c@example.org", "jürgen@example.org"}, ok, "RCPT TO 553"},
		{"RCPT bad domain", "billing-app", "", []string{"c@exa_mple"}, ok, "RCPT TO 501"},
		// 14.8: explain kept duplicates.
		{"RCPT duplicates", "billing-app", "", []string{"c@example.org", "c@EXAMPLE.org.", "d@example.org"}, ok, " 250"},
		{"RCPT too many", "billing-app", "", []string{"a@example.org", "b@example.org", "c@example.org", "d@example.org"}, ok, "RCPT TO 452"},
		// 14.3: quoted local parts keep their quoting.
		{"MAIL FROM quoted", "billing-app", `"a b"@billing.example.com`, []string{"c@example.org"}, ok, " 250"},
		{"RCPT quoted", "billing-app", "", []string{`"x@evil.com"@example.org`, `"r,s"@example.org`, `"x\"y"@example.org`}, ok, " 250"},
		// 14.9: an unknown charset in the display name is one answer.
		{"unknown charset rewrite", "rw-app", "", []string{"c@example.org"}, "From: =?x-unknown?q?Shop?= <shop@gmail.example>\r\nSubject: s\r\n\r\nHi.\r\n", " 250"},
		// 14.16: foreign addresses leave the display name.
		{"display name owned From", "billing-app", "", []string{"c@example.org"}, "From: \"ceo@victim.example\" <app@billing.example.com>\r\nSubject: s\r\n\r\nHi.\r\n", " 250"},
		{"display name rewrite", "rw-app", "", []string{"c@example.org"}, "From: =?utf-8?q?CEO_=3Cceo=40victim=2Eexample=3E?= <ceo@victim.example>\r\nSubject: s\r\n\r\nHi.\r\n", " 250"},
		{"bare LF", "billing-app", "", []string{"c@example.org"}, "From: app@billing.example.com\nSubject: s\n\nHi.\n", " 250"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := start(t, agreementYAML)
			live := liveOutcome(t, h, c.user, c.from, c.to, c.msg)
			cfg := testConfig(t, agreementYAML)
			pipe, err := relay.NewPipeline(cfg, func() time.Time { return testNow })
			if err != nil {
				t.Fatal(err)
			}
			ex, err := pipe.Explain(c.user, relay.Envelope{From: c.from, To: c.to}, []byte(c.msg), "0123456789abcdef")
			if err != nil {
				t.Fatal(err)
			}
			explained := outcome{stage: ex.Stage, code: ex.Reply.Code, enh: ex.Reply.EnhancedCode, text: ex.Reply.Message}
			if ex.Accepted() {
				explained.text = ""
				for _, r := range ex.Prepared.Requests {
					explained.reqs = append(explained.reqs, strings.Join(r.Recipients, ",")+"|"+string(r.Raw))
				}
			}
			if live.String() != explained.String() {
				t.Errorf("live and explain differ\nlive:    %s\nexplain: %s", live, explained)
			}
			if got := fmt.Sprintf("%s %d", live.stage, live.code); got != c.want {
				t.Errorf("outcome %q, want %q\n%s", got, c.want, live)
			}
			if w, ok := wantSent[c.name]; ok && !strings.Contains(live.String(), w) {
				t.Errorf("SES did not get %q:\n%s", w, live)
			}
			t.Logf("%s", live)
		})
	}
}

// wantSent: text the SES request must hold, for the cases that fix a
// defect in what is sent.
var wantSent = map[string]string{
	"RCPT duplicates":         "c@example.org,d@example.org|",
	"RCPT quoted":             `"x@evil.com"@example.org,"r,s"@example.org,"x\"y"@example.org|`,
	"unknown charset rewrite": "\r\nFrom: \"Shop via rw\" <noreply@rw.example.net>\r\nReply-To: <shop@gmail.example>\r\n",
	"display name owned From": "\r\nFrom: <app@billing.example.com>\r\n",
	"display name rewrite":    "\r\nFrom: \"CEO via rw\" <noreply@rw.example.net>\r\nReply-To: <ceo@victim.example>\r\n",
}

// liveOutcome runs one transaction over SMTP and stops at the first
// refusal, as explain does.
func liveOutcome(t *testing.T, h *harness, user, from string, to []string, msg string) outcome {
	t.Helper()
	c := h.dial(user, testPassword)
	refused := func(stage string, err error) outcome {
		var se *smtp.SMTPError
		if !errors.As(err, &se) {
			t.Fatalf("%s: %v", stage, err)
		}
		return outcome{stage: stage, code: se.Code, enh: se.EnhancedCode, text: se.Message}
	}
	if err := c.Mail(from, nil); err != nil {
		return refused("MAIL FROM", err)
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			return refused("RCPT TO", err)
		}
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		return refused("DATA", err)
	}
	o := outcome{code: 250, enh: smtp.EnhancedCode{2, 0, 0}}
	for _, r := range h.ses.Requests() {
		o.reqs = append(o.reqs, strings.Join(r.To, ",")+"|"+string(r.Raw))
	}
	return o
}

// TestQuotedRecipientInUnsubscribeToken: a quoted local part keeps its
// quoting in the SES destination and in the token's recipient, so the
// unsubscribe names the mailbox that got the message (14.3).
func TestQuotedRecipientInUnsubscribeToken(t *testing.T) {
	secret := writeSecret(t)
	h := start(t, unsubYAML("add", secret))
	c := h.dial("billing-app", testPassword)
	const rcpt = `"x@evil.com"@example.org`
	if _, err := send(c, "", []string{rcpt}, "X-List: monthly\r\n"+simpleMsg); err != nil {
		t.Fatal(err)
	}
	reqs := h.ses.Requests()
	if len(reqs) != 1 || len(reqs[0].To) != 1 || reqs[0].To[0] != rcpt {
		t.Fatalf("SES destination %v, want [%s]", reqs[0].To, rcpt)
	}
	m, err := headers.Read(reqs[0].Raw, headers.RejectBareNewlines)
	if err != nil {
		t.Fatal(err)
	}
	mt := tokenRE.FindStringSubmatch(m.Header.Get("List-Unsubscribe"))
	if mt == nil {
		t.Fatalf("no token in %q", m.Header.Get("List-Unsubscribe"))
	}
	key, _ := os.ReadFile(secret)
	claims, err := headers.VerifyUnsubscribeToken(bytes.TrimSpace(key), mt[1])
	if err != nil || claims.Recipient != rcpt {
		t.Fatalf("token claims %+v, %v; want recipient %s", claims, err, rcpt)
	}
}
