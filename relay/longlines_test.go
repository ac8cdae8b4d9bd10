package relay_test

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-message"

	"github.com/sesrelay/sesrelay/headers"
)

// longLinesMsg is what an application emitting unwrapped HTML sends: a
// short text part and an HTML part whose one line is far over 998
// characters (and over go-smtp's 2000-octet line cap).
var longLinesMsg = "From: Billing <invoices@billing.example.com>\r\n" +
	"To: a@example.org\r\n" +
	"Subject: Your invoice\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/alternative; boundary=\"b1\"\r\n" +
	"\r\n" +
	"--b1\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"\r\n" +
	"Your invoice is ready.\r\n" +
	"--b1\r\n" +
	"Content-Type: text/html; charset=utf-8\r\n" +
	"Content-Transfer-Encoding: 8bit\r\n" +
	"\r\n" +
	"<html><body>" + strings.Repeat(`<p>Price = 10 €. <a href="https://billing.example.com/invoice?id=42&amp;t=x">Invoice</a></p> `, 60) + "</body></html>\r\n" +
	".hidden dot line\r\n" +
	"--b1--\r\n"

// decodedLeaves returns the decoded content of every leaf part, read by
// go-message (not the relay's own MIME code).
func decodedLeaves(t *testing.T, raw []byte) []string {
	t.Helper()
	e, err := message.Read(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	err = e.Walk(func(_ []int, ent *message.Entity, err error) error {
		if err != nil {
			return err
		}
		if ent.MultipartReader() != nil {
			return nil
		}
		b, err := io.ReadAll(ent.Body)
		out = append(out, string(b))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestLongLinesEncode: for a long_lines: encode tenant a message with a
// 6000-character HTML line is accepted, only its HTML part is re-encoded
// (quoted-printable), the decoded content is byte-identical to what the
// client sent, and the relay's DKIM signature verifies. A long_lines:
// reject tenant (the default) gets 554 5.6.0.
func TestLongLinesEncode(t *testing.T) {
	dir := t.TempDir()
	key, pub := writeEd25519(t, dir, "k.pem")
	yaml := strings.Replace(hardYAML, `domains: ["billing.example.com"]`,
		fmt.Sprintf(`domains: ["billing.example.com"]`+"\n    long_lines: encode\n    dkim: [{domain: billing.example.com, selector: s1, key_file: %q}]", key), 1)
	h := startHard(t, yaml, hOpts{})

	c := h.client("", "billing-app", testPassword)
	if err := sendMsg(c, "invoices@billing.example.com", []string{"a@example.org"}, longLinesMsg); err != nil {
		t.Fatalf("long_lines: encode: %v", err)
	}
	reqs := h.ses.Requests()
	if len(reqs) != 1 {
		t.Fatalf("SES got %d messages", len(reqs))
	}
	raw := reqs[0].Raw
	if _, err := headers.Read(raw, headers.RejectBareNewlines); err != nil {
		t.Fatalf("SES got a message the relay itself refuses: %v", err)
	}
	if !bytes.Contains(raw, []byte("Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n")) &&
		!bytes.Contains(raw, []byte("Content-Transfer-Encoding: quoted-printable\r\nContent-Type: text/html; charset=utf-8\r\n")) {
		t.Fatalf("the HTML part is not quoted-printable:\n%s", raw)
	}
	if !bytes.Contains(raw, []byte("--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nYour invoice is ready.\r\n--b1\r\n")) {
		t.Fatal("the text part, without long lines, changed")
	}
	// The decoded content is what the client sent (dot-unstuffed).
	got, want := decodedLeaves(t, raw), decodedLeaves(t, []byte(longLinesMsg))
	if len(got) != len(want) {
		t.Fatalf("%d parts, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("part %d decodes to\n%q\nwant\n%q", i, got[i], want[i])
		}
	}
	// Signed after the encoding: the signature verifies.
	if s := dkimSelector(t, raw, pub); s != "s1" {
		t.Fatalf("selector %q", s)
	}
	verifyWithMailauth(t, raw, key)

	// The default, reject (a line under go-smtp's 2000-octet cap, which
	// the pipeline refuses).
	m := h.client("", "marketing-app", testPassword)
	msg := strings.ReplaceAll(longLinesMsg, "billing.example.com", "marketing.example.com")
	short := strings.Replace(msg, strings.Repeat(`<p>Price = 10 €. <a href="https://marketing.example.com/invoice?id=42&amp;t=x">Invoice</a></p> `, 60),
		strings.Repeat("x", 1200), 1)
	err := sendMsg(m, "news@marketing.example.com", []string{"a@example.org"}, short)
	expectCode(t, err, 554, "5.6.0")
	if !strings.Contains(err.Error(), "longer than 998") {
		t.Fatalf("reply %v does not name the limit", err)
	}
	if n := len(h.ses.Requests()); n != 1 {
		t.Fatalf("SES got %d messages", n)
	}
}

// verifyWithMailauth checks the signature with the end-to-end suite's
// independent verifier (npm mailauth) when its packages are installed
// (scripts/deps.sh installs them).
func verifyWithMailauth(t *testing.T, raw []byte, keyFile string) {
	t.Helper()
	script, _ := filepath.Abs("../e2e/lib/dkim-verify.js")
	if _, err := os.Stat("../e2e/node_modules/mailauth"); err != nil {
		t.Log("mailauth not installed: skipping the independent DKIM check")
		return
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Log("node not installed: skipping the independent DKIM check")
		return
	}
	f := filepath.Join(t.TempDir(), "msg.eml")
	if err := os.WriteFile(f, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(node, script, "--raw", f, "--key", "billing.example.com:s1:"+keyFile,
		"--expect-domain", "billing.example.com", "--expect-algo", "ed25519-sha256")
	cmd.Dir = "../e2e"
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("mailauth: %v\n%s", err, out)
	}
	t.Logf("mailauth:\n%s", out)
}
