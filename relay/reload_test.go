package relay_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-sasl"
	"golang.org/x/crypto/bcrypt"

	"github.com/sesrelay/sesrelay/config"
)

// TestReloadKeepsConnections: a new tenant, a rotated password and a
// rotated DKIM key take effect for new sessions at once; a session opened
// before keeps its snapshot and is not dropped.
func TestReloadKeepsConnections(t *testing.T) {
	dir := t.TempDir()
	key1, pub1 := writeEd25519(t, dir, "k1.pem")
	key2, pub2 := writeEd25519(t, dir, "k2.pem")
	v1 := strings.Replace(hardYAML, `domains: ["billing.example.com"]`,
		fmt.Sprintf(`domains: ["billing.example.com"]`+"\n    dkim: [{domain: billing.example.com, selector: s1, key_file: %q}]", key1), 1)
	h := startHard(t, v1, hOpts{})
	old := h.client("", "billing-app", testPassword)
	if err := sendMsg(old, "invoices@billing.example.com", []string{"a@example.org"}, simpleMsg); err != nil {
		t.Fatal(err)
	}
	if s := dkimSelector(t, h.ses.Requests()[0].Raw, pub1); s != "s1" {
		t.Fatalf("selector %q", s)
	}

	newHash, _ := bcrypt.GenerateFromPassword([]byte("rotated-password"), 10)
	v2 := strings.Replace(v1, "s1, key_file: "+fmt.Sprintf("%q", key1), "s2, key_file: "+fmt.Sprintf("%q", key2), 1)
	v2 = strings.Replace(v2, `users: [{username: billing-app, password_hash: "HASH"}]`,
		fmt.Sprintf(`users: [{username: billing-app, password_hash: %q}]`, newHash), 1)
	v2 += `  - name: support
    users: [{username: support-app, password_hash: "HASH"}]
    domains: ["support.example.com"]
`
	cfg2, err := config.Parse([]byte(strings.ReplaceAll(v2, "HASH", testHash)))
	if err != nil {
		t.Fatal(err)
	}
	if err := h.srv.Reload(cfg2); err != nil {
		t.Fatal(err)
	}

	// The session opened before the reload authenticated with a password
	// the reload changed: its next MAIL ends it (revoke.go).
	expectCode(t, old.Mail("invoices@billing.example.com", nil), 421, "4.7.0")
	// New sessions: the old password is refused, the rotated one works
	// and signs with the rotated key.
	c := h.client("", "", "")
	expectCode(t, c.Auth(sasl.NewPlainClient("", "billing-app", testPassword)), 535, "5.7.8")
	c = h.client("", "billing-app", "rotated-password")
	if err := sendMsg(c, "invoices@billing.example.com", []string{"a@example.org"}, simpleMsg); err != nil {
		t.Fatal(err)
	}
	if s := dkimSelector(t, h.ses.Requests()[1].Raw, pub2); s != "s2" {
		t.Fatalf("selector %q after rotation", s)
	}
	// The new tenant.
	s := h.client("", "support-app", testPassword)
	if err := sendMsg(s, "help@support.example.com", []string{"a@example.org"}, strings.ReplaceAll(simpleMsg, "billing", "support")); err != nil {
		t.Fatal(err)
	}
	// A configuration that does not validate never becomes a snapshot.
	if _, err := config.Parse([]byte(strings.Replace(v2, "max_recipients: 50", "max_recipients: 500", 1))); err == nil {
		t.Fatal("invalid configuration parsed")
	}
}
