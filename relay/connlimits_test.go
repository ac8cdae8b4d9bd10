package relay_test

// Connection limits: server.max_connections and max_connections_per_ip,
// listener allowed_networks, tenant max_connections.

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

func TestConnectionLimits(t *testing.T) {
	yaml := strings.Replace(hardYAML, "shutdown_timeout: 5s", "shutdown_timeout: 5s\n  max_connections: 4\n  max_connections_per_ip: 2", 1)
	h := startHard(t, yaml, hOpts{})
	var open []net.Conn
	for _, src := range []string{"127.0.0.2", "127.0.0.2"} {
		code, c := greeting(t, h.plain, src)
		if code != 220 {
			t.Fatalf("from %s: %d", src, code)
		}
		open = append(open, c)
	}
	// Per IP: a third from 127.0.0.2 is refused with 421 4.7.0...
	conn := dialFrom(t, h.plain, "127.0.0.2")
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, _ := io.ReadAll(conn)
	if !strings.HasPrefix(string(b), "421 4.7.0 ") {
		t.Fatalf("over the per-IP limit: %q", b)
	}
	// ...while other addresses get in, up to the global limit (4).
	for _, src := range []string{"127.0.0.3", "127.0.0.4"} {
		code, c := greeting(t, h.plain, src)
		if code != 220 {
			t.Fatalf("from %s: %d", src, code)
		}
		open = append(open, c)
	}
	if code, _ := greeting(t, h.plain, "127.0.0.5"); code != 421 {
		t.Fatalf("over the global limit: %d", code)
	}
	// A closed connection frees its place.
	open[0].Close()
	deadline := time.Now().Add(3 * time.Second)
	for {
		code, c := greeting(t, h.plain, "127.0.0.5")
		if code == 220 {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("no place freed: %d", code)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestAllowedNetworks(t *testing.T) {
	yaml := strings.Replace(hardYAML, `{address: "127.0.0.1:0", tls: none, allow_insecure_auth: true}`,
		`{address: "127.0.0.1:0", tls: none, allow_insecure_auth: true, allowed_networks: ["127.0.0.2/32", "127.0.1.0/24"]}`, 1)
	h := startHard(t, yaml, hOpts{})
	for src, want := range map[string]int{"127.0.0.2": 220, "127.0.1.9": 220, "127.0.0.3": -1, "127.0.0.1": -1} {
		if code, _ := greeting(t, h.plain, src); code != want {
			t.Fatalf("from %s: %d, want %d", src, code, want)
		}
	}
}

func TestTenantMaxConnections(t *testing.T) {
	yaml := strings.Replace(hardYAML, `domains: ["billing.example.com"]`, `domains: ["billing.example.com"]`+"\n    max_connections: 1", 1)
	h := startHard(t, yaml, hOpts{})
	first := h.client("", "billing-app", testPassword)
	c := h.client("", "", "")
	expectCode(t, c.Auth(sasl.NewPlainClient("", "billing-app", testPassword)), 421, "4.7.0")
	if err := c.Noop(); err == nil {
		t.Fatal("connection still open after 421")
	}
	// Another tenant is not counted against billing.
	h.client("", "marketing-app", testPassword)
	// The first session still works; once it ends, a new one may log in.
	if err := sendMsg(first, "invoices@billing.example.com", []string{"a@example.org"}, simpleMsg); err != nil {
		t.Fatal(err)
	}
	if err := first.Quit(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		c := smtp.NewClient(dialFrom(t, h.plain, ""))
		err := c.Auth(sasl.NewPlainClient("", "billing-app", testPassword))
		c.Close()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new session after the first ended: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
