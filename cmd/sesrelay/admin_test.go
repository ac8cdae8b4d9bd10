package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/zap/zaptest"

	"github.com/sesrelay/sesrelay/config"
	"github.com/sesrelay/sesrelay/internal/metricnames"
	"github.com/sesrelay/sesrelay/relay/ses"
	"github.com/sesrelay/sesrelay/relay/sestest"
	"github.com/sesrelay/sesrelay/relay/smtptest"
)

// adminYAML is a relay with one plaintext loopback listener (AUTH allowed
// without TLS, so the test client stays simple) and the admin listener on
// 127.0.0.1:0. EXTRA is replaced by more admin keys.
const adminYAML = `
server:
  hostname: relay.test
  listeners:
    - {address: "127.0.0.1:0", tls: none, allow_insecure_auth: true}
  tls: {self_signed: true}
  max_message_bytes: 65536
  shutdown_timeout: 10s
admin:
  address: "127.0.0.1:0"
  EXTRA
log: {level: debug}
ses: {region: us-east-1, max_attempts: 1, timeout: 5s, endpoint: "ENDPOINT"}
tenants:
  - name: billing
    users: [{username: billing-app, password_hash: "HASH"}]
    domains: ["billing.example.com"]
`

const adminTestMsg = "From: Billing <invoices@billing.example.com>\r\n" +
	"To: customer@example.org\r\n" +
	"Subject: SUBJECT\r\n" +
	"\r\n" +
	"Hello.\r\n"

type relayUnderTest struct {
	t      *testing.T
	d      *daemon
	stub   *sestest.Server
	admin  string // http://host:port
	smtp   string
	cancel context.CancelFunc
	done   chan error
	path   string
	ended  bool // run returned
}

// writeConfig writes adminYAML with endpoint and extra admin keys to a
// file in dir and returns its path.
func writeAdminConfig(t *testing.T, dir, endpoint, extra string) string {
	t.Helper()
	y := strings.NewReplacer("HASH", smtptest.PasswordHash, "ENDPOINT", endpoint, "EXTRA", extra).Replace(adminYAML)
	p := filepath.Join(dir, "sesrelay.yaml")
	if err := os.WriteFile(p, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// startRelay builds the daemon as serve does, with the real SES client
// pointed at sesEndpoint ("" = a new stand-in), but does not run it yet:
// the admin listener is up, the SMTP listeners are bound, nothing serves.
func startRelay(t *testing.T, sesEndpoint, extra string) *relayUnderTest {
	t.Helper()
	var stub *sestest.Server
	if sesEndpoint == "" {
		stub = sestest.New()
		t.Cleanup(stub.Close)
		sesEndpoint = stub.URL
	}
	path := writeAdminConfig(t, t.TempDir(), sesEndpoint, extra)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	opts := ses.OptionsFromConfig(&cfg.SES)
	opts.AWSConfig = &aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "secret-access-key", ""),
	}
	sender, err := ses.New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	d, err := startDaemon(context.Background(), cfg, path, zaptest.NewLogger(t), sesDelivery(sender))
	if err != nil {
		t.Fatal(err)
	}
	if d.AdminAddr() == nil {
		t.Fatal("no admin listener")
	}
	r := &relayUnderTest{t: t, d: d, stub: stub, admin: "http://" + d.AdminAddr().String(),
		smtp: d.srv.Addrs()[0].String(), path: path}
	t.Cleanup(r.stop)
	return r
}

// run serves until stop; it returns once /readyz says ready.
func (r *relayUnderTest) run() {
	r.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan error, 1)
	go func() { r.done <- r.d.run(ctx, make(chan os.Signal)) }()
	r.waitStatus("/readyz", http.StatusOK)
}

func (r *relayUnderTest) stop() {
	if r.ended {
		return
	}
	r.ended = true
	if r.cancel == nil {
		// Never served: a run that stops at once closes the listeners.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_ = r.d.run(ctx, nil)
		return
	}
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil && !errors.Is(err, context.Canceled) {
			r.t.Errorf("run: %v", err)
		}
	case <-time.After(15 * time.Second):
		r.t.Error("run did not return")
	}
}

func (r *relayUnderTest) get(path string) (int, string) {
	r.t.Helper()
	resp, err := http.Get(r.admin + path)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		r.t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func (r *relayUnderTest) waitStatus(path string, want int) string {
	r.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, body := r.get(path)
		if code == want {
			return body
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("GET %s: %d %q, want %d", path, code, body, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *relayUnderTest) dial() *smtp.Client {
	r.t.Helper()
	c, err := smtp.Dial(r.smtp)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { c.Close() })
	return c
}

// scrape is one /metrics exposition, parsed.
type scrape struct {
	t    *testing.T
	raw  string
	fams map[string]*dto.MetricFamily
}

func (r *relayUnderTest) scrape() *scrape {
	r.t.Helper()
	code, body := r.get("/metrics")
	if code != http.StatusOK {
		r.t.Fatalf("/metrics: %d", code)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		r.t.Fatalf("parsing /metrics: %v", err)
	}
	return &scrape{t: r.t, raw: body, fams: fams}
}

// value returns the value of the sample of name whose labels are exactly
// labels ("k=v" pairs); for a histogram, its count. ok is false when there
// is no such sample.
func (s *scrape) value(name string, labels ...string) (float64, bool) {
	f := s.fams[name]
	if f == nil {
		return 0, false
	}
	want := map[string]string{}
	for _, l := range labels {
		k, v, _ := strings.Cut(l, "=")
		want[k] = v
	}
	for _, m := range f.Metric {
		got := map[string]string{}
		for _, lp := range m.Label {
			got[lp.GetName()] = lp.GetValue()
		}
		if !reflect.DeepEqual(got, want) {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		case m.Untyped != nil:
			return m.Untyped.GetValue(), true
		}
	}
	return 0, false
}

func (s *scrape) expect(want float64, name string, labels ...string) {
	s.t.Helper()
	got, ok := s.value(name, labels...)
	if !ok {
		s.t.Errorf("%s%v: no such sample", name, labels)
	} else if got != want {
		s.t.Errorf("%s%v = %v, want %v", name, labels, got, want)
	}
}

func (s *scrape) series(name string) int {
	if f := s.fams[name]; f != nil {
		return len(f.Metric)
	}
	return 0
}

// promtool returns the path of promtool. Without it the test is skipped,
// except in CI (CI=true), where scripts/deps.sh installs it.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool is not on PATH (apt package prometheus; scripts/deps.sh installs it)")
		}
		t.Skip("promtool is not on PATH (apt package prometheus; scripts/deps.sh installs it)")
	}
	return p
}

// TestAdminMetricsAfterTraffic runs the relay as serve does, speaks SMTP
// to it (a wrong password, an accepted message, a refused MAIL FROM, a
// message SES throttles), and reads the counters back from /metrics.
func TestAdminMetricsAfterTraffic(t *testing.T) {
	r := startRelay(t, "", "")
	r.stub.Respond = func(_ int, req *sestest.Request) sestest.Reply {
		if bytes.Contains(req.Raw, []byte("Subject: throttle")) {
			return sestest.Reply{Status: 429, ErrorType: "TooManyRequestsException", Message: "Maximum sending rate exceeded."}
		}
		return sestest.Reply{}
	}

	// Liveness from the start; readiness only once the listeners serve.
	if code, body := r.get("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz before run: %d %q", code, body)
	}
	if code, body := r.get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "smtp") {
		t.Fatalf("/readyz before the listeners serve: %d %q, want 503 naming smtp", code, body)
	}
	r.run()

	c := r.dial()
	smtptest.ExpectCode(t, c.Auth(sasl.NewPlainClient("", "billing-app", "wrong-password")), 535, "5.7.8")
	if err := c.Auth(sasl.NewPlainClient("", "billing-app", smtptest.Password)); err != nil {
		t.Fatal(err)
	}
	msg := strings.Replace(adminTestMsg, "SUBJECT", "invoice", 1)
	if err := sendAdmin(c, "bounces@billing.example.com", []string{"customer@example.org", "other@example.net"}, msg); err != nil {
		t.Fatal(err)
	}
	smtptest.ExpectCode(t, c.Mail("someone@elsewhere.example", nil), 550, "5.7.1")
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}
	throttled := strings.Replace(adminTestMsg, "SUBJECT", "throttle", 1)
	smtptest.ExpectCode(t, sendAdmin(c, "bounces@billing.example.com", []string{"customer@example.org"}, throttled), 451, "4.3.2")

	s := r.scrape()
	const tenant = "tenant=billing"
	s.expect(1, "sesrelay_auth_total", "tenant=", "result=failure")
	s.expect(1, "sesrelay_auth_total", tenant, "result=success")
	s.expect(1, "sesrelay_messages_total", tenant, "outcome=accepted", "reason=")
	s.expect(1, "sesrelay_messages_total", tenant, "outcome=rejected", "reason=mail_from_not_owned")
	s.expect(1, "sesrelay_messages_total", tenant, "outcome=failed", "reason=throttled")
	s.expect(2, "sesrelay_recipients_sent_total", tenant)
	if b, _ := s.value("sesrelay_message_bytes_total", tenant); b < float64(len(msg)) {
		t.Errorf("sesrelay_message_bytes_total = %v, want at least the message size %d", b, len(msg))
	}
	s.expect(1, "sesrelay_ses_request_duration_seconds", "region=us-east-1", "result=ok")
	s.expect(1, "sesrelay_ses_request_duration_seconds", "region=us-east-1", "result=throttled")
	s.expect(1, "sesrelay_pipeline_duration_seconds", "outcome=accepted")
	s.expect(1, "sesrelay_pipeline_duration_seconds", "outcome=failed")
	// A MAIL FROM refusal has no pipeline run: no latency observed.
	if n, ok := s.value("sesrelay_pipeline_duration_seconds", "outcome=rejected"); ok {
		t.Errorf("pipeline latency observed %v times for a MAIL FROM refusal", n)
	}
	s.expect(1, "sesrelay_connections_current")
	s.expect(1, "sesrelay_connections_total", "listener="+r.smtp)
	s.expect(1, "sesrelay_config_last_reload_successful")
	s.expect(0, "sesrelay_config_reloads_total", "result=success")
	s.expect(0, "sesrelay_config_reloads_total", "result=failure")
	s.expect(1, "sesrelay_config_info", "hash="+r.d.ConfigHash())
	s.expect(1, "sesrelay_build_info", "version="+version, "goversion="+runtime.Version())
	if ts, _ := s.value("sesrelay_config_last_reload_success_timestamp_seconds"); time.Since(time.Unix(int64(ts), 0)) > time.Minute {
		t.Errorf("last reload success timestamp %v is not recent", ts)
	}
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total", "process_resident_memory_bytes"} {
		if s.series(name) == 0 {
			t.Errorf("%s missing: the Go and process collectors must be registered", name)
		}
	}
	// Neither credentials nor configuration values are exposed.
	for _, secret := range []string{smtptest.Password, "wrong-password", "$2a$", "AKIDTEST", "secret-access-key", "billing-app", "elsewhere.example"} {
		if strings.Contains(s.raw, secret) {
			t.Errorf("/metrics exposes %q", secret)
		}
	}

	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	checkMetricsWithPromtool(t, s.raw)
}

func checkMetricsWithPromtool(t *testing.T, exposition string) {
	t.Run("promtool check metrics", func(t *testing.T) {
		cmd := exec.Command(promtool(t), "check", "metrics")
		cmd.Stdin = strings.NewReader(exposition)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("promtool check metrics: %v\n%s", err, out)
		}
	})
}

// TestAdminReloadMetrics checks that a reload, through the daemon's reload
// hook, moves the reload metrics: a broken file keeps the old hash and
// drops the gauge, a good one brings the gauge back with the new hash.
// The daemon does not run, so the file watcher does not reload on its own
// between the steps.
func TestAdminReloadMetrics(t *testing.T) {
	r := startRelay(t, "", "")
	first := r.d.ConfigHash()
	good, err := os.ReadFile(r.path)
	if err != nil {
		t.Fatal(err)
	}

	if err := os.WriteFile(r.path, []byte("tenants: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r.d.reload() {
		t.Fatal("a broken configuration reloaded")
	}
	s := r.scrape()
	s.expect(0, "sesrelay_config_last_reload_successful")
	s.expect(1, "sesrelay_config_reloads_total", "result=failure")
	s.expect(0, "sesrelay_config_reloads_total", "result=success")
	s.expect(1, "sesrelay_config_info", "hash="+first)
	before, _ := s.value("sesrelay_config_last_reload_success_timestamp_seconds")

	if err := os.WriteFile(r.path, append(good, "# edited\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // a later timestamp
	if !r.d.reload() {
		t.Fatal("the repaired configuration did not reload")
	}
	s = r.scrape()
	s.expect(1, "sesrelay_config_last_reload_successful")
	s.expect(1, "sesrelay_config_reloads_total", "result=success")
	if r.d.ConfigHash() == first {
		t.Fatal("the edited file hashes the same")
	}
	s.expect(1, "sesrelay_config_info", "hash="+r.d.ConfigHash())
	if n := s.series("sesrelay_config_info"); n != 1 {
		t.Errorf("sesrelay_config_info has %d series, want only the configuration in use", n)
	}
	if after, _ := s.value("sesrelay_config_last_reload_success_timestamp_seconds"); after <= before {
		t.Errorf("success timestamp %v did not move past %v", after, before)
	}
}

// TestAdminReadyzDraining checks that /readyz turns 503 as soon as the
// relay drains, while /healthz stays 200 and a transaction in progress is
// still being waited for; the admin listener closes after the relay.
func TestAdminReadyzDraining(t *testing.T) {
	r := startRelay(t, "", "")
	r.run()
	c := r.dial()
	if err := c.Auth(sasl.NewPlainClient("", "billing-app", smtptest.Password)); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("bounces@billing.example.com", nil); err != nil {
		t.Fatal(err)
	}
	r.cancel()
	body := r.waitStatus("/readyz", http.StatusServiceUnavailable)
	if !strings.Contains(body, "smtp") {
		t.Errorf("/readyz while draining: %q", body)
	}
	if code, _ := r.get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz while draining: %d", code)
	}
	c.Close() // the last transaction goes: the drain ends
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return after the last session ended")
	}
	r.ended = true
	if _, err := http.Get(r.admin + "/healthz"); err == nil {
		t.Error("the admin listener still answers after run returned")
	}
}

// TestAdminReadyzSES covers admin.ready_checks_ses: GetAccount through the
// real SDK, cached, and an unreachable SES making the relay not ready.
func TestAdminReadyzSES(t *testing.T) {
	t.Run("reachable", func(t *testing.T) {
		r := startRelay(t, "", "ready_checks_ses: true")
		r.run()
		for range 5 {
			if code, body := r.get("/readyz"); code != http.StatusOK {
				t.Fatalf("/readyz: %d %q", code, body)
			}
		}
		if n := r.stub.Calls(); n != 1 {
			t.Errorf("%d GetAccount calls for 6 probes, want 1 (cached)", n)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		closed := "http://" + l.Addr().String()
		l.Close()
		r := startRelay(t, closed, "ready_checks_ses: true")
		ctx, cancel := context.WithCancel(context.Background())
		r.cancel, r.done = cancel, make(chan error, 1)
		go func() { r.done <- r.d.run(ctx, make(chan os.Signal)) }()
		body := r.waitStatus("/readyz", http.StatusServiceUnavailable)
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(body, "ses") && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
			_, body = r.get("/readyz")
		}
		if !strings.Contains(body, "ses: GetAccount failed") || strings.Contains(body, "127.0.0.1") {
			t.Errorf("/readyz with SES unreachable: %q, want the check named and no detail", body)
		}
	})
}

// TestSESCheckCache checks the GetAccount cache: one call per period,
// failures cached too, and a fresh call once the period is over.
func TestSESCheckCache(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	calls := 0
	var fail error
	c := newSESCheck(func(ctx context.Context) error {
		calls++
		if _, ok := ctx.Deadline(); !ok {
			t.Error("the probe runs without a deadline")
		}
		return fail
	}, zaptest.NewLogger(t))
	c.now = func() time.Time { return now }
	ctx := context.Background()
	if err := c.result(ctx); err != nil || calls != 1 {
		t.Fatalf("first: err %v, %d calls", err, calls)
	}
	now = now.Add(29 * time.Second)
	fail = errors.New("boom")
	if err := c.result(ctx); err != nil || calls != 1 {
		t.Fatalf("within the period: err %v, %d calls (want the cached success)", err, calls)
	}
	now = now.Add(2 * time.Second)
	if err := c.result(ctx); err == nil || calls != 2 {
		t.Fatalf("after the period: err %v, %d calls", err, calls)
	}
	fail = nil
	if err := c.result(ctx); err == nil || calls != 2 {
		t.Fatalf("a failure is cached too: err %v, %d calls", err, calls)
	}
	now = now.Add(sesCheckEvery)
	if err := c.result(ctx); err != nil || calls != 3 {
		t.Fatalf("recovery: err %v, %d calls", err, calls)
	}
	// A prober that hangs up does not cancel the call.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	now = now.Add(sesCheckEvery)
	c.probe = func(ctx context.Context) error { return ctx.Err() }
	if err := c.result(cctx); err != nil {
		t.Fatalf("canceled prober: %v", err)
	}
}

// TestAdminPprof checks /debug/pprof/ exists only with admin.pprof.
func TestAdminPprof(t *testing.T) {
	reg, _ := newRegistry()
	for _, on := range []bool{false, true} {
		h := adminHandler(reg, &readiness{}, on, zaptest.NewLogger(t))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/pprof/", nil))
		if want := map[bool]int{false: 404, true: 200}[on]; rec.Code != want {
			t.Errorf("pprof %v: /debug/pprof/ answered %d, want %d", on, rec.Code, want)
		}
	}
	// Without a relay there is no configuration: not ready, but alive.
	h := adminHandler(reg, &readiness{}, false, zaptest.NewLogger(t))
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 503, "/metrics": 200, "/": 404} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != want {
			t.Errorf("%s: %d, want %d", path, rec.Code, want)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/healthz", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /healthz: %d", rec.Code)
	}
}

func TestAdminDisabled(t *testing.T) {
	cfg := config.Defaults()
	a, err := startAdmin(&cfg, prometheus.NewRegistry(), nil, nil, zaptest.NewLogger(t))
	if err != nil || a != nil || a.Addr() != nil {
		t.Fatalf("empty admin.address: %v %v", a, err)
	}
	a.shutdown()
}

// TestHealthcheckCommand runs `sesrelay healthcheck` through run, as the
// container's HEALTHCHECK does, against a real admin listener whose relay
// is not serving yet (alive, not ready).
func TestHealthcheckCommand(t *testing.T) {
	r := startRelay(t, "", "")
	addr := r.d.AdminAddr().String()
	_, port, _ := net.SplitHostPort(addr)
	dir := t.TempDir()
	cfgFile := func(name, yaml string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()

	cases := []struct {
		name string
		args []string
		env  string // SESRELAY_ADMIN_ADDRESS, when set
		code int
		out  string // in stdout (code 0) or stderr
	}{
		{"healthz", []string{"--address", addr}, "", 0, "200 OK"},
		{"readyz not serving", []string{"--address", addr, "--path", "/readyz"}, "", 1, "503"},
		{"from --config", []string{"--config", r.path}, "", 1, "connect"}, // 127.0.0.1:0 there: nothing answers
		{"from a config file", []string{"--config", cfgFile("a.yaml", "admin:\n  address: \""+addr+"\"\n")}, "", 0, "/healthz"},
		{"unspecified host means loopback", []string{"--config", cfgFile("b.yaml", "admin: {address: \"0.0.0.0:"+port+"\"}\n")}, "", 0, "127.0.0.1:" + port},
		{"--address wins over --config", []string{"--config", cfgFile("c.yaml", "admin: {address: \""+closed+"\"}\n"), "--address", addr}, "", 0, "200"},
		{"environment override", []string{"--config", cfgFile("d.yaml", "admin: {address: \""+closed+"\"}\n")}, addr, 0, "200"},
		{"admin off in the config", []string{"--config", cfgFile("e.yaml", "log: {level: info}\n")}, "", 1, "admin.address is empty"},
		{"missing config", []string{"--config", filepath.Join(dir, "nope.yaml")}, "", 1, "nope.yaml"},
		{"nothing listening", []string{"--address", closed, "--timeout", "500ms"}, "", 1, "refused"},
		{"unknown path", []string{"--address", addr, "--path", "/nope"}, "", 1, "404"},
		{"bad path", []string{"--address", addr, "--path", "healthz"}, "", 2, "usage"},
		{"bad timeout", []string{"--address", addr, "--timeout", "0s"}, "", 2, "usage"},
		{"extra argument", []string{"--address", addr, "extra"}, "", 2, "usage"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env != "" {
				t.Setenv(config.EnvPrefix+"_ADMIN_ADDRESS", tc.env)
			}
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), append([]string{"healthcheck"}, tc.args...), strings.NewReader(""), &stdout, &stderr, nil)
			out := stdout.String()
			if code != 0 {
				out = stderr.String()
			}
			if code != tc.code || !strings.Contains(out, tc.out) {
				t.Errorf("exit %d, want %d; stdout %q stderr %q (want %q)", code, tc.code, stdout.String(), stderr.String(), tc.out)
			}
		})
	}
}

func TestDialAddress(t *testing.T) {
	for in, want := range map[string]string{
		":9090":          "127.0.0.1:9090",
		"0.0.0.0:9090":   "127.0.0.1:9090",
		"[::]:9090":      "[::1]:9090",
		"10.0.0.5:9090":  "10.0.0.5:9090",
		"localhost:9090": "localhost:9090",
	} {
		if got := dialAddress(in); got != want {
			t.Errorf("dialAddress(%q) = %q, want %q", in, got, want)
		}
	}
}

// metricNames are the names of every metric the relay exports.
func metricNames(t *testing.T) []string {
	names, err := metricnames.All()
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// TestMetricsDocumented checks that docs/operations.md documents every
// relay metric, and that the alert rules use only metrics that exist.
func TestMetricsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, n := range metricNames(t) {
		known[n] = true
		if !bytes.Contains(doc, []byte("`"+n+"`")) {
			t.Errorf("docs/operations.md does not document %s", n)
		}
	}
	rules, err := os.ReadFile("../../deploy/prometheus/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range regexp.MustCompile(`sesrelay_[a-z0-9_]+`).FindAllString(string(rules), -1) {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_count"), "_sum")
		if !known[base] {
			t.Errorf("alerts.yaml uses %s, which the relay does not export", n)
		}
	}
}

// TestAlertRules runs promtool on deploy/prometheus: the rules file must
// load, and its unit tests (alerts_test.yaml) must pass.
func TestAlertRules(t *testing.T) {
	p := promtool(t)
	dir := "../../deploy/prometheus"
	for _, args := range [][]string{{"check", "rules", "alerts.yaml"}, {"test", "rules", "alerts_test.yaml"}} {
		cmd := exec.Command(p, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// sendAdmin is smtptest.Send for callers that only need the error.
func sendAdmin(c *smtp.Client, from string, to []string, msg string) error {
	_, err := smtptest.Send(c, from, to, msg)
	return err
}
