package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/sesrelay/sesrelay/config"
)

// reloadableKeys is every key a reload applies, with a new value and, for
// keys whose effect is more than the snapshot new sessions read, a check
// of that effect. TestEveryKeyReloadsOrRefuses fails when a key is neither
// here nor in config.RestartKeys. The tenants[] keys are the tenant
// snapshot each new session reads (policy.Compile): the "tenants" entry
// checks that a new tenant can log in.
var reloadableKeys = map[string]struct {
	set   func(c *config.Config)
	check func(t *testing.T, h *reloadHarness)
}{
	"server.hostname": {func(c *config.Config) { c.Server.Hostname = "other.test" }, func(t *testing.T, h *reloadHarness) {
		if g := greeting(t, h); !strings.HasPrefix(g, "220 other.test ") {
			t.Errorf("greeting %q", g)
		}
	}},
	"server.tls.cert_file":   {func(c *config.Config) { c.Server.TLS.CertFile = "/nonexistent/cert.pem" }, nil},
	"server.tls.key_file":    {func(c *config.Config) { c.Server.TLS.KeyFile = "/nonexistent/key.pem" }, nil},
	"server.tls.self_signed": {func(c *config.Config) { c.Server.TLS.SelfSigned = true }, nil},
	"server.tls.min_version": {func(c *config.Config) { c.Server.TLS.MinVersion = "1.3" }, nil},
	"server.max_message_bytes": {func(c *config.Config) { c.Server.MaxMessageBytes = 1 << 20 }, func(t *testing.T, h *reloadHarness) {
		c := h.ehlo(t)
		if ok, v := c.Extension("SIZE"); !ok || v != "1048576" {
			t.Errorf("EHLO SIZE %v %q", ok, v)
		}
		if err := c.Mail("app@billing.example.com", &smtp.MailOptions{Size: 1<<20 + 1}); smtpCode(err) != 552 {
			t.Errorf("MAIL SIZE over the new limit: %v", err)
		}
	}},
	"server.max_recipients": {func(c *config.Config) { c.Server.MaxRecipients = 2 }, func(t *testing.T, h *reloadHarness) {
		c := h.ehlo(t)
		if ok, v := c.Extension("LIMITS"); !ok || v != "RCPTMAX=2" {
			t.Errorf("EHLO LIMITS %v %q", ok, v)
		}
		if err := c.Auth(sasl.NewPlainClient("", "billing-app", reloadPassword)); err != nil {
			t.Fatal(err)
		}
		if err := c.Mail("app@billing.example.com", nil); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 3; i++ {
			err := c.Rcpt(fmt.Sprintf("r%d@example.org", i), nil)
			if i < 2 && err != nil || i == 2 && smtpCode(err) != 452 {
				t.Errorf("RCPT %d: %v", i+1, err)
			}
		}
	}},
	"server.max_connections":        {func(c *config.Config) { c.Server.MaxConnections = 7 }, nil},
	"server.max_connections_per_ip": {func(c *config.Config) { c.Server.MaxConnectionsPerIP = 7 }, nil},
	"server.read_timeout":           {func(c *config.Config) { c.Server.ReadTimeout = 7 * time.Second }, nil},
	"server.write_timeout":          {func(c *config.Config) { c.Server.WriteTimeout = 7 * time.Second }, nil},
	"server.data_timeout":           {func(c *config.Config) { c.Server.DataTimeout = 7 * time.Second }, nil},
	"server.shutdown_timeout":       {func(c *config.Config) { c.Server.ShutdownTimeout = 7 * time.Second }, nil},
	"server.bare_newlines":          {func(c *config.Config) { c.Server.BareNewlines = "reject" }, nil},
	"ses.region":                    {func(c *config.Config) { c.SES.Region = "eu-west-1" }, nil},
	"ses.endpoint":                  {func(c *config.Config) { c.SES.Endpoint = "http://127.0.0.1:1" }, nil},
	"ses.timeout":                   {func(c *config.Config) { c.SES.Timeout = 7 * time.Second }, nil},
	"ses.max_attempts":              {func(c *config.Config) { c.SES.MaxAttempts = 7 }, nil},
	"ses.retry_ambiguous":           {func(c *config.Config) { c.SES.RetryAmbiguous = !c.SES.RetryAmbiguous }, nil},
	"ses.max_send_rate": {func(c *config.Config) { c.SES.MaxSendRate = "7" }, func(t *testing.T, h *reloadHarness) {
		if g := h.d.parts.limiter.Limits().Global; g != 7 {
			t.Errorf("global rate %v", g)
		}
	}},
	"ses.rate_limit_wait": {func(c *config.Config) { c.SES.RateLimitWait = 7 * time.Second }, func(t *testing.T, h *reloadHarness) {
		if w := h.d.parts.limiter.Limits().Wait; w != 7*time.Second {
			t.Errorf("rate limit wait %v", w)
		}
	}},
	"ses.replicas":                     {func(c *config.Config) { c.SES.Replicas = 7 }, nil},
	"ses.endpoint_id":                  {func(c *config.Config) { c.SES.EndpointID = "abc.def" }, nil},
	"ses.regions":                      {func(c *config.Config) { c.SES.Regions = []string{c.SES.Region, "eu-west-1"} }, nil},
	"ses.region_endpoints":             {func(c *config.Config) { c.SES.RegionEndpoints = map[string]string{"eu-west-1": "http://127.0.0.1:1"} }, nil},
	"ses.failover.after":               {func(c *config.Config) { c.SES.Failover.After = 7 }, nil},
	"ses.failover.probe_every":         {func(c *config.Config) { c.SES.Failover.ProbeEvery = 7 * time.Second }, nil},
	"auth.max_failures_per_connection": {func(c *config.Config) { c.Auth.MaxFailuresPerConnection = 7 }, nil},
	"auth.max_failures":                {func(c *config.Config) { c.Auth.MaxFailures = 7 }, nil},
	"auth.lockout":                     {func(c *config.Config) { c.Auth.Lockout = 7 * time.Second }, nil},

	// Read by each new transaction (relay/budget.go) and connection (relay/revoke.go).
	"server.max_inflight_bytes":   {func(c *config.Config) { c.Server.MaxInflightBytes = 1 << 30 }, nil},
	"server.max_session_duration": {func(c *config.Config) { c.Server.MaxSessionDuration = 7 * time.Minute }, nil},

	// The queue (queue.go): modes and limits apply to the next message,
	// timings to the next failure, bounce_from to the next dead message.
	"delivery.mode": {func(c *config.Config) { c.Delivery.Mode = config.ModeQueue }, func(t *testing.T, h *reloadHarness) {
		c, err := h.login("billing-app", reloadPassword)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := sendOne(c, "billing.example.com"); err != nil {
			t.Fatal(err)
		}
		if h.logs.FilterMessage("message queued").Len() == 0 {
			t.Error("delivery.mode queue: the message was not queued")
		}
	}},
	"queue.min_backoff":  {func(c *config.Config) { c.Queue.MinBackoff = 7 * time.Second }, nil},
	"queue.max_backoff":  {func(c *config.Config) { c.Queue.MaxBackoff = 7000 * time.Second }, nil},
	"queue.max_age":      {func(c *config.Config) { c.Queue.MaxAge = 7 * time.Hour }, nil},
	"queue.max_bytes":    {func(c *config.Config) { c.Queue.MaxBytes = 7 << 20 }, nil},
	"queue.max_messages": {func(c *config.Config) { c.Queue.MaxMessages = 7 }, nil},
	"queue.bounce_from":  {func(c *config.Config) { c.Queue.BounceFrom = "postmaster@billing.example.com" }, nil},
	"tenants": {func(c *config.Config) {
		c.Tenants = append(c.Tenants, config.Tenant{Name: "support", Domains: []string{"support.example.com"},
			Users: []config.User{{Username: "support-app", PasswordHash: reloadHash, Hash: c.Tenants[0].Users[0].Hash}}})
	}, func(t *testing.T, h *reloadHarness) {
		if _, err := h.login("support-app", reloadPassword); err != nil {
			t.Errorf("new tenant: %v", err)
		}
	}},
}

func greeting(t *testing.T, h *reloadHarness) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", h.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(line)
}

// ehlo opens a new session and says EHLO.
func (h *reloadHarness) ehlo(t *testing.T) *smtp.Client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", h.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := smtp.NewClient(conn)
	t.Cleanup(func() { c.Close() })
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	return c
}

// changeLeaf gives a restart key another value (validity does not matter:
// the reload must refuse it before anything else looks at it).
func changeLeaf(t *testing.T, c *config.Config, key string) {
	t.Helper()
	if key == "server.listeners" {
		c.Server.Listeners = append(c.Server.Listeners, config.Listener{Address: "127.0.0.1:0", TLS: config.TLSNone})
		return
	}
	v, ok := c.Value(key)
	if !ok {
		t.Fatalf("%s: no such key", key)
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(v.String() + "x")
	case reflect.Bool:
		v.SetBool(!v.Bool())
	case reflect.Int, reflect.Int64:
		v.SetInt(v.Int() + 1)
	case reflect.Float64:
		v.SetFloat(v.Float() + 1)
	case reflect.Slice:
		if v.Type().Elem().Kind() != reflect.String {
			t.Fatalf("%s: cannot change a list of %s", key, v.Type().Elem().Kind())
		}
		v.Set(reflect.Append(v, reflect.ValueOf("x")))
	default:
		t.Fatalf("%s: cannot change a %s", key, v.Kind())
	}
}

// TestEveryKeyReloadsOrRefuses walks every configuration key: a key of
// config.RestartKeys makes the reload fail with a problem naming it, and
// the configuration in force stays; every other key takes effect for new
// sessions (the relay's snapshot has the new value, and where the key
// shapes more than the snapshot, such as what EHLO advertises, that is
// checked too).
func TestEveryKeyReloadsOrRefuses(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sesrelay.yaml")
	// With a queue directory: the queue keys are reloadable then.
	writeAtomic(t, path, strings.NewReplacer("OUTBOX", filepath.Join(dir, "outbox"), "BILLING_HASH", reloadHash).Replace(reloadYAML)+
		fmt.Sprintf("queue: {dir: %q}\n", filepath.Join(dir, "queue")))
	h := startReloadDaemon(t, path)
	ctx := context.Background()
	fresh := func() *config.Config {
		c, err := config.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for _, key := range config.KeyPaths() {
		if strings.Contains(key, "[]") {
			continue // part of its list
		}
		if strings.HasPrefix(key, "tenants") && key != "tenants" {
			t.Fatalf("%s: only the whole tenants list is expected outside []", key)
		}
		t.Run(key, func(t *testing.T) {
			defer func() {
				if err := h.d.apply(ctx, fresh()); err != nil {
					t.Fatalf("restoring the base configuration: %v", err)
				}
			}()
			cfg := fresh()
			if config.NeedsRestart(key) {
				changeLeaf(t, cfg, key)
				err := h.d.apply(ctx, cfg)
				if err == nil || !strings.Contains(err.Error(), key+": changed, takes effect only after a restart") {
					t.Fatalf("reload: %v", err)
				}
				if reflect.DeepEqual(h.d.srv.Config(), cfg) {
					t.Fatal("the refused configuration is in force")
				}
				return
			}
			rk, ok := reloadableKeys[key]
			if !ok {
				t.Fatalf("%s is neither in config.RestartKeys nor in reloadableKeys", key)
			}
			rk.set(cfg)
			want, _ := cfg.Value(key)
			if err := h.d.apply(ctx, cfg); err != nil {
				t.Fatalf("reload: %v", err)
			}
			got, _ := h.d.srv.Config().Value(key)
			if !reflect.DeepEqual(got.Interface(), want.Interface()) {
				t.Fatalf("in force: %v, want %v", got, want)
			}
			if rk.check != nil {
				rk.check(t, h)
			}
		})
	}
}
