package relay_test

// The PROXY protocol on the SMTP listeners: real v1 and v2 headers (written
// by go-proxyproto's Header.WriteTo) on real TCP connections from loopback,
// then real SMTP. 127.0.0.1 plays the load balancer (trusted), 127.0.0.2 an
// untrusted peer.

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sesrelay/sesrelay/config"
	"github.com/sesrelay/sesrelay/relay"
	"github.com/sesrelay/sesrelay/relay/smtptest"
)

// proxyYAML: listener 0 requires a header, listener 1 takes one optionally,
// listener 2 is implicit TLS with a required header. One connection per
// client address.
const proxyYAML = `
server:
  hostname: relay.test
  listeners:
    - {address: "127.0.0.1:0", tls: none, allow_insecure_auth: true, proxy_protocol: required, proxy_protocol_trusted: ["127.0.0.1"], proxy_protocol_timeout: TIMEOUT}
    - {address: "127.0.0.1:0", tls: none, allow_insecure_auth: true, proxy_protocol: optional, proxy_protocol_trusted: ["127.0.0.1/32"], proxy_protocol_timeout: TIMEOUT}
    - {address: "127.0.0.1:0", tls: implicit, proxy_protocol: required, proxy_protocol_trusted: ["127.0.0.1"], proxy_protocol_timeout: TIMEOUT}
  tls: {self_signed: true}
  max_connections_per_ip: 1
  shutdown_timeout: 5s
auth: {max_failures_per_connection: 5, max_failures: 2, lockout: 1m}
tenants:
  - name: billing
    users: [{username: billing-app, password_hash: "HASH"}]
    domains: ["billing.example.com"]
`

type proxyRelay struct {
	t                            *testing.T
	required, optional, implicit string
	logs                         *observer.ObservedLogs
	metrics                      *relay.Metrics
	cancel                       context.CancelFunc
	done                         chan struct{}

	mu   sync.Mutex
	sent []*relay.Request
}

func startProxy(t *testing.T, timeout string) *proxyRelay {
	t.Helper()
	yaml := strings.ReplaceAll(strings.ReplaceAll(proxyYAML, "HASH", smtptest.PasswordHash), "TIMEOUT", timeout)
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	h := &proxyRelay{t: t, metrics: relay.NewMetrics(prometheus.NewRegistry()), done: make(chan struct{})}
	core, logs := observer.New(zapcore.DebugLevel)
	h.logs = logs
	log := zap.New(zapcore.NewTee(core, zaptest.NewLogger(t).Core()))
	sender := relay.SenderFunc(func(_ context.Context, req *relay.Request) (*relay.Result, error) {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.sent = append(h.sent, req)
		return &relay.Result{MessageID: "m1"}, nil
	})
	srv, err := relay.NewServer(cfg, relay.Options{Sender: sender, Logger: log, Metrics: h.metrics})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { defer close(h.done); _ = srv.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-h.done })
	a := srv.Addrs()
	h.required, h.optional, h.implicit = a[0].String(), a[1].String(), a[2].String()
	return h
}

func (h *proxyRelay) rejected(reason string) float64 {
	var m dto.Metric
	if err := h.metrics.ConnsRejected.WithLabelValues(reason).Write(&m); err != nil {
		h.t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// dialProxy connects to addr from src and writes hdr (nil: no header).
func dialProxy(t *testing.T, addr, src string, hdr *proxyproto.Header) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if hdr != nil {
		if _, err := hdr.WriteTo(c); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// v2 is a PROXY v2 header for a TCP client at src ("ip:port").
func v2(t *testing.T, src string, tlvs ...proxyproto.TLV) *proxyproto.Header {
	t.Helper()
	h := proxyproto.HeaderProxyFromAddrs(2, net.TCPAddrFromAddrPort(mustAddrPort(t, src)), &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 587})
	if len(tlvs) > 0 {
		if err := h.SetTLVs(tlvs); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

func v1(t *testing.T, src string) *proxyproto.Header {
	t.Helper()
	dst := &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 587}
	if strings.HasPrefix(src, "[") {
		dst = &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 587}
	}
	return proxyproto.HeaderProxyFromAddrs(1, net.TCPAddrFromAddrPort(mustAddrPort(t, src)), dst)
}

func mustAddrPort(t *testing.T, s string) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

// reader wraps c for SMTP replies.
type smtpReader struct {
	t  *testing.T
	c  net.Conn
	tp *textproto.Reader
}

func newSMTPReader(t *testing.T, c net.Conn) *smtpReader {
	return &smtpReader{t: t, c: c, tp: textproto.NewReader(bufio.NewReader(c))}
}

// reply reads one reply: its code, or -1 when the connection ends first.
func (r *smtpReader) reply() (int, string) {
	code, msg, err := r.tp.ReadResponse(0)
	if err != nil && code == 0 {
		return -1, err.Error()
	}
	return code, msg
}

func (r *smtpReader) cmd(line string) (int, string) {
	r.t.Helper()
	if _, err := io.WriteString(r.c, line+"\r\n"); err != nil {
		return -1, err.Error()
	}
	return r.reply()
}

func authPlain(pass string) string {
	return "AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00billing-app\x00"+pass))
}

// logged reports whether an entry with msg has every field in want.
func logged(logs *observer.ObservedLogs, msg string, want map[string]string) bool {
	for _, e := range logs.FilterMessage(msg).All() {
		m := e.ContextMap()
		ok := true
		for k, v := range want {
			if s, _ := m[k].(string); s != v {
				ok = false
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// waitLogged is logged for a line written after the reply the test has
// seen (the connection's closing line): it waits up to 5 s for it.
func waitLogged(logs *observer.ObservedLogs, msg string, want map[string]string) bool {
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if logged(logs, msg, want) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// TestProxyV2PerIPLimitCountsProxiedAddress: with
// server.max_connections_per_ip 1, two clients proxied through the same
// load balancer address are both served, a second connection of one of
// them is refused, and the log names the proxied client. Counted per load
// balancer address, the second client would be refused.
func TestProxyV2PerIPLimitCountsProxiedAddress(t *testing.T) {
	h := startProxy(t, "2s")
	a1 := dialProxy(t, h.required, "127.0.0.1", v2(t, "192.0.2.10:40000"))
	ra := newSMTPReader(t, a1)
	if code, msg := ra.reply(); code != 220 {
		t.Fatalf("client A: %d %s", code, msg)
	}
	// Client B, with TLVs as an AWS NLB sends them (a VPC endpoint id
	// in 0xEA, a unique id), then a whole SMTP transaction.
	b := dialProxy(t, h.required, "127.0.0.1", v2(t, "198.51.100.7:51000",
		proxyproto.TLV{Type: tlvparse.PP2_TYPE_AWS, Value: append([]byte{tlvparse.PP2_SUBTYPE_AWS_VPCE_ID}, "vpce-0123456789abcdef0"...)},
		proxyproto.TLV{Type: proxyproto.PP2_TYPE_UNIQUE_ID, Value: []byte("conn-42")}))
	c := smtp.NewClient(b)
	if err := c.Hello("client.test"); err != nil {
		t.Fatalf("client B: %v", err)
	}
	if err := c.Auth(sasl.NewPlainClient("", "billing-app", smtptest.Password)); err != nil {
		t.Fatalf("client B auth: %v", err)
	}
	if _, err := smtptest.Send(c, "invoices@billing.example.com", []string{"customer@example.org"},
		"From: <invoices@billing.example.com>\r\nTo: <customer@example.org>\r\nSubject: x\r\n\r\nhi\r\n"); err != nil {
		t.Fatalf("client B send: %v", err)
	}
	// A second connection of client A, through the same load balancer:
	// over its per-IP limit.
	a2 := dialProxy(t, h.required, "127.0.0.1", v2(t, "192.0.2.10:40001"))
	if code, msg := newSMTPReader(t, a2).reply(); code != 421 {
		t.Fatalf("client A again: %d %s, want 421", code, msg)
	}
	if !logged(h.logs, "connection refused", map[string]string{"remote": "192.0.2.10:40001", "reason": "max_connections_per_ip"}) {
		t.Error("no refusal logged for 192.0.2.10:40001")
	}
	// Client A's first connection ends: its place is free again.
	ra.cmd("QUIT")
	a1.Close()
	deadline := time.Now().Add(3 * time.Second)
	for {
		code, _ := newSMTPReader(t, dialProxy(t, h.required, "127.0.0.1", v2(t, "192.0.2.10:40002"))).reply()
		if code == 220 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("client A still refused after its connection closed: %d", code)
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.Quit()
	// Logs carry the proxied address, and the load balancer's as proxy.
	if !waitLogged(h.logs, "connection closed", map[string]string{"remote": "192.0.2.10:40000"}) {
		t.Error("no connection log line with remote 192.0.2.10:40000")
	}
	found := false
	for _, e := range h.logs.FilterField(zap.String("remote", "198.51.100.7:51000")).All() {
		if p, _ := e.ContextMap()["proxy"].(string); strings.HasPrefix(p, "127.0.0.1:") {
			found = true
		}
	}
	if !found {
		t.Error("no log line for client B with the load balancer as proxy")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.sent) != 1 {
		t.Fatalf("%d messages sent, want 1", len(h.sent))
	}
}

// TestProxyV1 reads text headers, IPv4 and IPv6, on the optional listener.
func TestProxyV1(t *testing.T) {
	h := startProxy(t, "2s")
	for _, src := range []string{"203.0.113.5:1234", "[2001:db8::42]:5678"} {
		r := newSMTPReader(t, dialProxy(t, h.optional, "127.0.0.1", v1(t, src)))
		start := time.Now()
		if code, msg := r.reply(); code != 220 {
			t.Fatalf("%s: greeting %d %s", src, code, msg)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("%s: greeting after %v: the header was not seen at once", src, d)
		}
		if code, msg := r.cmd("EHLO client.test"); code != 250 {
			t.Fatalf("%s: EHLO %d %s", src, code, msg)
		}
		r.cmd("QUIT")
	}
	for _, src := range []string{"203.0.113.5:1234", "[2001:db8::42]:5678"} {
		if !waitLogged(h.logs, "connection closed", map[string]string{"remote": src}) {
			t.Errorf("no log line with remote %s", src)
		}
	}
}

// TestProxyUntrustedRefused: a header from outside proxy_protocol_trusted
// is never used. Where the header is required the connection is closed
// before any reply; where it is optional, the untrusted peer is served as
// a direct client without waiting, and closed if it sends a header.
func TestProxyUntrustedRefused(t *testing.T) {
	h := startProxy(t, "2s")
	c := dialProxy(t, h.required, "127.0.0.2", v2(t, "192.0.2.99:1000"))
	b, _ := io.ReadAll(c)
	if len(b) != 0 {
		t.Fatalf("required, untrusted: got %q, want the connection closed", b)
	}
	if n := h.rejected("proxy_untrusted"); n != 1 {
		t.Fatalf("proxy_untrusted = %v after the required listener, want 1", n)
	}
	if !logged(h.logs, "connection refused", map[string]string{"reason": "proxy_untrusted"}) {
		t.Error("refusal not logged")
	}

	// Optional, untrusted, with a header: greeted (an untrusted peer is a
	// direct client), then closed when the header arrives.
	c = dialProxy(t, h.optional, "127.0.0.2", v1(t, "192.0.2.99:1001"))
	r := newSMTPReader(t, c)
	if code, msg := r.reply(); code != 220 {
		t.Fatalf("optional, untrusted: greeting %d %s", code, msg)
	}
	io.WriteString(c, "EHLO client.test\r\n")
	// go-smtp answers the read error with its 421 before closing.
	if code, msg := r.reply(); code != -1 && code != 421 {
		t.Fatalf("optional, untrusted header: %d %s, want the connection closed", code, msg)
	}
	if code, msg := r.reply(); code != -1 {
		t.Fatalf("optional, untrusted header: then %d %s, want the connection closed", code, msg)
	}
	if n := h.rejected("proxy_untrusted"); n != 2 {
		t.Fatalf("proxy_untrusted = %v, want 2", n)
	}
	if logged(h.logs, "connection closed", map[string]string{"remote": "192.0.2.99:1001"}) {
		t.Error("the untrusted header's address was used")
	}

	// The relay releases the per-IP slot (max_connections_per_ip: 1) before
	// it logs the close: wait for that, or the next dial races the release.
	prev := c.LocalAddr().String()
	if !waitLogged(h.logs, "connection closed", map[string]string{"remote": prev}) {
		t.Fatalf("the connection from %s was not closed", prev)
	}

	// Optional, untrusted, no header: served at once, not after the
	// header timeout.
	start := time.Now()
	r = newSMTPReader(t, dialProxy(t, h.optional, "127.0.0.2", nil))
	if code, msg := r.reply(); code != 220 {
		t.Fatalf("optional, untrusted, no header: %d %s", code, msg)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("greeted after %v: waited for a header", d)
	}
	if code, msg := r.cmd("EHLO client.test"); code != 250 {
		t.Fatalf("EHLO: %d %s", code, msg)
	}
}

// TestProxyRequiredWithoutHeader: a trusted connection that sends no
// header, or a broken one, is closed without a reply; on the optional
// listener it is served with the socket's address after the timeout.
func TestProxyRequiredWithoutHeader(t *testing.T) {
	h := startProxy(t, "300ms")
	start := time.Now()
	b, _ := io.ReadAll(dialProxy(t, h.required, "127.0.0.1", nil))
	if len(b) != 0 {
		t.Fatalf("required, no header: got %q, want the connection closed", b)
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 3*time.Second {
		t.Errorf("closed after %v, want about the 300ms timeout", d)
	}
	if n := h.rejected("proxy_missing"); n != 1 {
		t.Fatalf("proxy_missing = %v, want 1", n)
	}
	if !logged(h.logs, "connection refused", map[string]string{"reason": "proxy_missing"}) {
		t.Error("refusal not logged")
	}

	c := dialProxy(t, h.required, "127.0.0.1", nil)
	io.WriteString(c, "PROXY TCP4 999.0.2.1 10.0.0.1 1 587\r\n")
	if b, _ := io.ReadAll(c); len(b) != 0 {
		t.Fatalf("malformed header: got %q", b)
	}
	if n := h.rejected("proxy_invalid"); n != 1 {
		t.Fatalf("proxy_invalid = %v, want 1", n)
	}

	// A UDP client address means nothing to SMTP.
	udp := proxyproto.HeaderProxyFromAddrs(2, &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 53}, &net.UDPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 587})
	if b, _ := io.ReadAll(dialProxy(t, h.required, "127.0.0.1", udp)); len(b) != 0 {
		t.Fatalf("UDP header: got %q", b)
	}
	if n := h.rejected("proxy_invalid"); n != 2 {
		t.Fatalf("proxy_invalid = %v, want 2", n)
	}

	// Optional: served after the timeout, as the load balancer itself.
	r := newSMTPReader(t, dialProxy(t, h.optional, "127.0.0.1", nil))
	if code, msg := r.reply(); code != 220 {
		t.Fatalf("optional, no header: %d %s", code, msg)
	}
	if code, msg := r.cmd("EHLO client.test"); code != 250 {
		t.Fatalf("EHLO: %d %s", code, msg)
	}
}

// TestProxyHeaderDoesNotBlockAccept: a connection that never sends its
// header holds up no other connection.
func TestProxyHeaderDoesNotBlockAccept(t *testing.T) {
	h := startProxy(t, "5s")
	for range 3 {
		dialProxy(t, h.required, "127.0.0.1", nil) // silent
	}
	start := time.Now()
	r := newSMTPReader(t, dialProxy(t, h.required, "127.0.0.1", v2(t, "192.0.2.20:1")))
	if code, msg := r.reply(); code != 220 {
		t.Fatalf("greeting %d %s", code, msg)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("greeted after %v behind silent connections", d)
	}
	// Shutdown does not wait for the silent ones' timeout either.
	start = time.Now()
	h.cancel()
	<-h.done
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("shutdown took %v", d)
	}
}

// TestProxyAuthLockoutPerProxiedAddress: auth.max_failures counts per
// proxied client. Client B has authenticated before (its address is known
// for the username, authlockout.go); client A locks itself out; client B,
// through the same load balancer, still authenticates. Counted per load
// balancer address, A's failures would have locked B out.
func TestProxyAuthLockoutPerProxiedAddress(t *testing.T) {
	h := startProxy(t, "2s")
	rb := newSMTPReader(t, dialProxy(t, h.required, "127.0.0.1", v2(t, "192.0.2.77:1")))
	rb.reply()
	rb.cmd("EHLO client.test")
	if code, msg := rb.cmd(authPlain(smtptest.Password)); code != 235 {
		t.Fatalf("client B before: %d %s, want 235", code, msg)
	}
	rb.c.Close()
	ra := newSMTPReader(t, dialProxy(t, h.required, "127.0.0.1", v2(t, "192.0.2.66:1")))
	ra.reply()
	ra.cmd("EHLO client.test")
	for i := range 2 {
		if code, msg := ra.cmd(authPlain("wrong")); code != 535 {
			t.Fatalf("failure %d: %d %s", i+1, code, msg)
		}
	}
	if code, msg := ra.cmd(authPlain(smtptest.Password)); code != 454 {
		t.Fatalf("client A after auth.max_failures: %d %s, want 454 (locked out)", code, msg)
	}
	ra.c.Close() // one connection per address: B's own must not be refused for A's
	rb = newSMTPReader(t, dialProxy(t, h.required, "127.0.0.1", v2(t, "192.0.2.77:1")))
	rb.reply()
	rb.cmd("EHLO client.test")
	if code, msg := rb.cmd(authPlain(smtptest.Password)); code != 235 {
		t.Fatalf("client B through the same load balancer: %d %s, want 235", code, msg)
	}
	if !logged(h.logs, "auth locked out", map[string]string{"remote": "192.0.2.66:1"}) {
		t.Error("the lockout is not logged with the proxied address")
	}
}

// TestProxyImplicitTLS: the header comes before the TLS handshake.
func TestProxyImplicitTLS(t *testing.T) {
	h := startProxy(t, "2s")
	raw := dialProxy(t, h.implicit, "127.0.0.1", v2(t, "192.0.2.30:2"))
	tc := tls.Client(raw, smtptest.ClientTLS)
	c := smtp.NewClient(tc)
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Auth(sasl.NewPlainClient("", "billing-app", smtptest.Password)); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	if !waitLogged(h.logs, "connection closed", map[string]string{"remote": "192.0.2.30:2"}) {
		t.Error("no log line with the proxied address")
	}
}

// TestProxyBehindHAProxy runs a real haproxy on loopback in front of the
// relay, v1 (send-proxy) and v2 with a CRC32C TLV (send-proxy-v2), and
// checks that clients are counted and logged by their own addresses.
// Skipped when haproxy is not installed (apt: haproxy).
func TestProxyBehindHAProxy(t *testing.T) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Skip("haproxy is not installed")
	}
	h := startProxy(t, "2s")
	v1Port, v2Port := freePort(t), freePort(t)
	cfg := fmt.Sprintf(`global
  maxconn 100
defaults
  mode tcp
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend v1
  bind 127.0.0.1:%d
  default_backend v1
frontend v2
  bind 127.0.0.1:%d
  default_backend v2
backend v1
  server relay %s send-proxy
backend v2
  server relay %s send-proxy-v2 proxy-v2-options crc32c
`, v1Port, v2Port, h.required, h.required)
	file := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-db", "-f", file)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("haproxy output:\n%s", out.String())
		}
	})
	for _, port := range []int{v1Port, v2Port} {
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		deadline := time.Now().Add(10 * time.Second)
		for {
			c, err := net.Dial("tcp", addr)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("haproxy does not listen on %s: %v\n%s", addr, err, out.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for i, port := range []int{v1Port, v2Port} {
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		// 127.0.0.3 and 127.0.0.4 through haproxy (which connects from
		// 127.0.0.1): one connection each is within the per-IP limit...
		var keep []*smtpReader
		for _, src := range []string{"127.0.0.3", "127.0.0.4"} {
			r := newSMTPReader(t, dialProxy(t, addr, src, nil))
			if code, msg := r.reply(); code != 220 {
				t.Fatalf("via %d from %s: %d %s", port, src, code, msg)
			}
			if code, msg := r.cmd("EHLO client.test"); code != 250 {
				t.Fatalf("via %d from %s: EHLO %d %s", port, src, code, msg)
			}
			keep = append(keep, r)
		}
		// ...a second one from 127.0.0.3 is not.
		if code, msg := newSMTPReader(t, dialProxy(t, addr, "127.0.0.3", nil)).reply(); code != 421 {
			t.Fatalf("via %d, second connection from 127.0.0.3: %d %s, want 421", port, code, msg)
		}
		for _, r := range keep {
			r.cmd("QUIT")
			r.c.Close()
		}
		// Wait for both places to be free before the next frontend. The
		// lines are counted per client: haproxy's own connections (the
		// readiness probe above reaches the relay as 127.0.0.1) log
		// "connection closed" too, so a total count can be reached while
		// a client's line is still to come.
		deadline := time.Now().Add(3 * time.Second)
		for closedFrom(h.logs, "127.0.0.3:") < i+1 || closedFrom(h.logs, "127.0.0.4:") < i+1 {
			if time.Now().After(deadline) {
				t.Fatalf("connections not closed: %d from 127.0.0.3, %d from 127.0.0.4, want %d each",
					closedFrom(h.logs, "127.0.0.3:"), closedFrom(h.logs, "127.0.0.4:"), i+1)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	time.Sleep(100 * time.Millisecond) // a third line, if any, has time to show
	for _, src := range []string{"127.0.0.3:", "127.0.0.4:"} {
		if n := closedFrom(h.logs, src); n != 2 {
			t.Errorf("%d connection log lines with remote %s*, want 2 (v1 and v2)", n, src)
		}
	}
}

// closedFrom counts the "connection closed" lines whose remote address
// starts with prefix.
func closedFrom(logs *observer.ObservedLogs, prefix string) int {
	n := 0
	for _, e := range logs.FilterMessage("connection closed").All() {
		if r, _ := e.ContextMap()["remote"].(string); strings.HasPrefix(r, prefix) {
			n++
		}
	}
	return n
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
