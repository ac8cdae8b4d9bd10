package ses

// Multi-region sending over real SMTP and the real SDK: two local SES
// stand-ins are two regions (ses.region_endpoints).

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/sesrelay/sesrelay/config"
	"github.com/sesrelay/sesrelay/relay"
	"github.com/sesrelay/sesrelay/relay/sestest"
	"github.com/sesrelay/sesrelay/relay/smtptest"
)

const mrYAML = `
server:
  hostname: relay.test
  listeners:
    - {address: "127.0.0.1:0", tls: none, allow_insecure_auth: true}
  tls: {self_signed: true}
ses:
  region: us-east-1
  timeout: 3s
  max_attempts: 2
  regions: [us-east-1, us-west-2]
  region_endpoints: {us-east-1: "R1", us-west-2: "R2"}
  failover: {after: 3, probe_every: 200ms}
SES_EXTRA
tenants:
  - name: billing
    users: [{username: billing-app, password_hash: "HASH"}]
    domains: ["billing.example.com"]
TENANT_EXTRA
  - name: pinned
    users: [{username: pinned-app, password_hash: "HASH"}]
    domains: ["pinned.example.com"]
    region: us-west-2
  - name: delegated
    users: [{username: delegated-app, password_hash: "HASH"}]
    domains: ["delegated.example.com"]
    identity_arn: "arn:aws:ses:us-east-1:123456789012:identity/delegated.example.com"
  - name: global
    users: [{username: global-app, password_hash: "HASH"}]
    domains: ["global.example.com"]
    ses_endpoint_id: "tenant1234.mrep"
`

// region is one stand-in whose replies a test switches at any time.
type region struct {
	*sestest.Server
	reply atomic.Pointer[sestest.Reply] // nil: accept
}

func newRegion(t *testing.T) *region {
	r := &region{Server: sestest.New()}
	t.Cleanup(r.Close)
	r.Respond = func(int, *sestest.Request) sestest.Reply {
		if p := r.reply.Load(); p != nil {
			return *p
		}
		return sestest.Reply{}
	}
	return r
}

func (r *region) answer(rep *sestest.Reply) { r.reply.Store(rep) }

type multiRelay struct {
	t      *testing.T
	sender *Sender
	r1, r2 *region
	addr   string
}

// startMulti runs a relay whose SES sender is the real SDK client with
// us-east-1 on r1 and us-west-2 on r2.
func startMulti(t *testing.T, sesExtra, tenantExtra string) *multiRelay {
	t.Helper()
	m := &multiRelay{t: t, r1: newRegion(t), r2: newRegion(t)}
	y := strings.NewReplacer("R1", m.r1.URL, "R2", m.r2.URL, "HASH", smtptest.PasswordHash,
		"SES_EXTRA", sesExtra, "TENANT_EXTRA", tenantExtra).Replace(mrYAML)
	cfg, err := config.Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	opts := OptionsFromConfig(&cfg.SES)
	opts.AWSConfig = &testAWS
	opts.BackoffBase, opts.BackoffMax = 5*time.Millisecond, 20*time.Millisecond
	opts.Logger = zaptest.NewLogger(t)
	m.sender, err = New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := relay.NewServer(cfg, relay.Options{Sender: m.sender, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	m.addr = srv.Addrs()[0].String()
	return m
}

func (m *multiRelay) client(user string) *smtp.Client {
	m.t.Helper()
	c, err := smtp.Dial(m.addr)
	if err != nil {
		m.t.Fatal(err)
	}
	m.t.Cleanup(func() { c.Close() })
	if err := c.Auth(sasl.NewPlainClient("", user, smtptest.Password)); err != nil {
		m.t.Fatalf("auth %s: %v", user, err)
	}
	return c
}

// mail sends one message from domain and returns the reply: 250 text or
// the SMTP error.
func mail(c *smtp.Client, domain string) (string, error) {
	if err := c.Mail("app@"+domain, nil); err != nil {
		return "", err
	}
	if err := c.Rcpt("customer@example.org", nil); err != nil {
		return "", err
	}
	w, err := c.Data()
	if err != nil {
		return "", err
	}
	fmt.Fprintf(w, "From: <app@%s>\r\nTo: customer@example.org\r\nSubject: invoice\r\n\r\nHello.\r\n", domain)
	resp, err := w.CloseWithResponse()
	if err != nil {
		return "", err
	}
	return resp.StatusText, nil
}

func must250(t *testing.T, c *smtp.Client, domain string) {
	t.Helper()
	if _, err := mail(c, domain); err != nil {
		t.Fatalf("want 250, got %v", err)
	}
}

func regionUp(t *testing.T, s *Sender) map[string]float64 {
	t.Helper()
	return senderMetric(t, s, "sesrelay_ses_region_up")
}

// senderMetric gathers the Sender's collector and returns the series of
// one metric by region.
func senderMetric(t *testing.T, s *Sender, name string) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(s.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		switch mf.GetName() {
		case "sesrelay_ses_region_up", "sesrelay_ses_connections_opened_total", "sesrelay_ses_request_duration_seconds":
		default:
			t.Fatalf("unexpected metric %s", mf.GetName())
		}
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			v := m.GetGauge().GetValue()
			if m.GetCounter() != nil {
				v = m.GetCounter().GetValue()
			}
			out[m.GetLabel()[0].GetValue()] = v
		}
	}
	return out
}

// The first region answers 5xx: every message still gets 250 through the
// second; after ses.failover.after failures the first is down and no
// longer tried; once it recovers, the first message after probe_every
// goes to it again and traffic stays there.
func TestFailover5xxAndRecovery(t *testing.T) {
	m := startMulti(t, "", "")
	c := m.client("billing-app")
	m.r1.answer(&sestest.Reply{Status: 503, ErrorType: "ServiceUnavailable", Message: "down"})
	for i := 0; i < 6; i++ {
		must250(t, c, "billing.example.com")
	}
	if n := m.r1.Calls(); n != 3 {
		t.Fatalf("region 1 got %d calls, want 3 (ses.failover.after) before being skipped", n)
	}
	if n := len(m.r2.Requests()); n != 6 {
		t.Fatalf("region 2 accepted %d messages, want 6", n)
	}
	if up := regionUp(t, m.sender); up["us-east-1"] != 0 || up["us-west-2"] != 1 {
		t.Fatalf("sesrelay_ses_region_up = %v", up)
	}

	// Still failing at the probe: the probe message moves on, 250.
	time.Sleep(250 * time.Millisecond)
	probeSent := time.Now() // the probe is made after this
	must250(t, c, "billing.example.com")
	if n := m.r1.Calls(); n != 4 {
		t.Fatalf("region 1 got %d calls, want 4 (one probe)", n)
	}
	// Within probe_every of that probe: not tried. (On a machine so loaded
	// that 200ms went by, a second probe is due: nothing to check then.)
	next := time.Now()
	must250(t, c, "billing.example.com")
	if n := m.r1.Calls(); n != 4 && next.Sub(probeSent) < 200*time.Millisecond {
		t.Fatalf("region 1 probed again within probe_every (%d calls)", n)
	}

	m.r1.answer(nil)
	time.Sleep(250 * time.Millisecond)
	before2 := m.r2.Calls()
	for i := 0; i < 3; i++ {
		must250(t, c, "billing.example.com")
	}
	if n := len(m.r1.Requests()); n != 3 {
		t.Fatalf("region 1 accepted %d messages after recovering, want 3", n)
	}
	if n := m.r2.Calls() - before2; n != 0 {
		t.Fatalf("region 2 got %d calls after region 1 recovered", n)
	}
	if up := regionUp(t, m.sender); up["us-east-1"] != 1 || up["us-west-2"] != 1 {
		t.Fatalf("sesrelay_ses_region_up = %v", up)
	}
}

// A connection dropped after the request was written may have sent the
// message: it is never sent to the second region, and the client gets 451.
func TestAmbiguousNeverFailsOver(t *testing.T) {
	for _, retry := range []bool{false, true} {
		t.Run(fmt.Sprintf("retry_ambiguous=%v", retry), func(t *testing.T) {
			m := startMulti(t, fmt.Sprintf("  retry_ambiguous: %v", retry), "")
			m.r1.answer(&sestest.Reply{Drop: true})
			c := m.client("billing-app")
			_, err := mail(c, "billing.example.com")
			smtptest.ExpectCode(t, err, 451, "4.3.0")
			want := 1
			if retry {
				want = 2 // one more try, in the same region only
			}
			if m.r1.Calls() != want || m.r2.Calls() != 0 {
				t.Fatalf("region 1: %d calls (want %d), region 2: %d calls (want 0)", m.r1.Calls(), want, m.r2.Calls())
			}
		})
	}
}

// The budget running out while waiting for an answer is ambiguous too.
func TestTimeoutNeverFailsOver(t *testing.T) {
	r1, r2 := newRegion(t), newRegion(t)
	release := make(chan struct{})
	defer close(release)
	r1.Respond = func(int, *sestest.Request) sestest.Reply {
		select {
		case <-release:
		case <-time.After(2 * time.Second):
		}
		return sestest.Reply{}
	}
	s := newSender(t, "", func(o *Options) {
		o.Timeout = 300 * time.Millisecond
		o.Regions = []string{"us-east-1", "us-west-2"}
		o.RegionEndpoints = map[string]string{"us-east-1": r1.URL, "us-west-2": r2.URL}
	})
	_, err := s.Send(context.Background(), req)
	if !relay.Ambiguous(err) || r2.Calls() != 0 {
		t.Fatalf("%v; region 2: %d calls", err, r2.Calls())
	}
}

// Throttling, a daily quota (each region has its own) and a refused
// connection certainly did not send: the message moves to region 2.
// Permanent rejections do not move.
func TestNotSentMovesToNextRegion(t *testing.T) {
	refused := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		return "http://" + addr
	}()
	cases := []struct {
		name     string
		reply    *sestest.Reply
		endpoint string // region 1's endpoint instead of the stand-in
		moved    bool
		code     int
		enh      string
	}{
		{name: "throttled", reply: &sestest.Reply{Status: 429, ErrorType: "TooManyRequestsException", Message: "Too many requests"}, moved: true},
		{name: "max rate", reply: &sestest.Reply{Status: 400, ErrorType: "MessageRejected", Message: "Maximum sending rate exceeded."}, moved: true},
		{name: "daily quota", reply: &sestest.Reply{Status: 400, ErrorType: "MessageRejected", Message: "Daily message quota exceeded."}, moved: true},
		{name: "500", reply: &sestest.Reply{Status: 500, ErrorType: "InternalServiceErrorException"}, moved: true},
		{name: "refused", endpoint: refused, moved: true},
		{name: "rejected", reply: &sestest.Reply{Status: 400, ErrorType: "MessageRejected", Message: "Email address is not verified."}, code: 550, enh: "5.7.1"},
		{name: "bad request", reply: &sestest.Reply{Status: 400, ErrorType: "BadRequestException"}, code: 554, enh: "5.6.0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r1, r2 := newRegion(t), newRegion(t)
			r1.answer(tc.reply)
			ep1 := r1.URL
			if tc.endpoint != "" {
				ep1 = tc.endpoint
			}
			s := newSender(t, "", func(o *Options) {
				o.Regions = []string{"us-east-1", "us-west-2"}
				o.RegionEndpoints = map[string]string{"us-east-1": ep1, "us-west-2": r2.URL}
				o.FailoverAfter, o.ProbeEvery = 3, time.Minute
			})
			_, err := s.Send(context.Background(), req)
			if !tc.moved {
				if reply := relay.ReplyForSendError(err, "x"); reply.Code != tc.code ||
					fmt.Sprintf("%d.%d.%d", reply.EnhancedCode[0], reply.EnhancedCode[1], reply.EnhancedCode[2]) != tc.enh {
					t.Fatalf("%v: reply %d %v", err, reply.Code, reply.EnhancedCode)
				}
				if r1.Calls() != 1 || r2.Calls() != 0 {
					t.Fatalf("region 1: %d calls, region 2: %d", r1.Calls(), r2.Calls())
				}
				if up := regionUp(t, s); up["us-east-1"] != 1 {
					t.Fatal("an answered rejection marked the region down")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(r2.Requests()) != 1 || len(r1.Requests()) != 0 {
				t.Fatalf("region 1 accepted %d, region 2 %d", len(r1.Requests()), len(r2.Requests()))
			}
		})
	}
}

// Both regions failing: rounds of one call per region, backoff between
// rounds, at most ses.max_attempts rounds; the error names the last region.
func TestEveryRegionFailing(t *testing.T) {
	r1, r2 := newRegion(t), newRegion(t)
	r1.answer(&sestest.Reply{Status: 503})
	r2.answer(&sestest.Reply{Status: 429, ErrorType: "TooManyRequestsException"})
	s := newSender(t, "", func(o *Options) {
		o.MaxAttempts = 2
		o.Regions = []string{"us-east-1", "us-west-2"}
		o.RegionEndpoints = map[string]string{"us-east-1": r1.URL, "us-west-2": r2.URL}
		o.FailoverAfter, o.ProbeEvery = 10, time.Minute
	})
	_, err := s.Send(context.Background(), req)
	if kindOf(t, err) != relay.KindThrottled || !strings.Contains(err.Error(), "region us-west-2") {
		t.Fatalf("%v", err)
	}
	if r1.Calls() != 2 || r2.Calls() != 2 {
		t.Fatalf("region 1: %d calls, region 2: %d, want 2 each", r1.Calls(), r2.Calls())
	}
}

// tenants[].region and a delegated identity's region win over ses.regions:
// no failover for them. ses_endpoint_id goes to the multi-region endpoint.
func TestPinnedTenantsDoNotFailOver(t *testing.T) {
	m := startMulti(t, "", "")
	m.r2.answer(&sestest.Reply{Status: 503})
	_, err := mail(m.client("pinned-app"), "pinned.example.com")
	smtptest.ExpectCode(t, err, 451, "4.3.0")
	if m.r1.Calls() != 0 || m.r2.Calls() != 2 {
		t.Fatalf("pinned to us-west-2: region 1 %d calls, region 2 %d", m.r1.Calls(), m.r2.Calls())
	}

	m.r2.answer(nil)
	m.r1.answer(&sestest.Reply{Status: 503})
	_, err = mail(m.client("delegated-app"), "delegated.example.com")
	smtptest.ExpectCode(t, err, 451, "4.3.0")
	if m.r1.Calls() != 2 || m.r2.Calls() != 2 {
		t.Fatalf("delegated identity in us-east-1: region 1 %d calls, region 2 %d", m.r1.Calls(), m.r2.Calls())
	}
}

// recorder answers every SDK call itself and records what it was sent.
type recorder struct {
	mu   sync.Mutex
	reqs []*http.Request
	body []string
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	b, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.reqs = append(r.reqs, req)
	r.body = append(r.body, string(b))
	r.mu.Unlock()
	return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(strings.NewReader(`{"MessageId":"0100-global"}`)), Request: req}, nil
}

const sigV4a = "AWS4-ECDSA-P256-SHA256 "

// EndpointId is in the request and the request is SigV4a-signed for every
// region ("*"), with the endpoint override of tests and with the endpoint
// the SDK derives from the id.
func TestEndpointIDSignedWithSigV4a(t *testing.T) {
	// ses.endpoint_id for every tenant; tenants[].ses_endpoint_id wins.
	m := startMulti(t, `  endpoint_id: "global1234.mrep"`, "")
	// region_endpoints stand in for the SES endpoint here: the request goes
	// to the default region's override. SES fails over behind an endpoint
	// id, the relay does not.
	m.r1.answer(&sestest.Reply{Status: 503})
	_, err := mail(m.client("global-app"), "global.example.com")
	smtptest.ExpectCode(t, err, 451, "4.3.0")
	if m.r2.Calls() != 0 {
		t.Fatal("a multi-region endpoint request was failed over by the relay")
	}
	m.r1.answer(nil)
	must250(t, m.client("global-app"), "global.example.com")
	must250(t, m.client("billing-app"), "billing.example.com")
	got := m.r1.Requests()
	if len(got) != 2 || m.r2.Calls() != 0 {
		t.Fatalf("%d accepted in region 1, %d calls in region 2", len(got), m.r2.Calls())
	}
	if got[0].EndpointID != "tenant1234.mrep" || got[1].EndpointID != "global1234.mrep" {
		t.Fatalf("EndpointId %q, %q", got[0].EndpointID, got[1].EndpointID)
	}
	for _, r := range got {
		if !strings.HasPrefix(r.Authorization, sigV4a) {
			t.Fatalf("not SigV4a: %q", r.Authorization)
		}
	}
	if up := regionUp(t, m.sender); up["us-east-1"] != 1 {
		t.Fatal("a multi-region endpoint failure counted against us-east-1")
	}

	// Without an override the SDK builds the endpoint from the id.
	rec := &recorder{}
	s := newSender(t, "", func(o *Options) { o.HTTPClient = &http.Client{Transport: rec} })
	r := *req
	r.EndpointID = "abcd1234.efgh"
	if _, err := s.Send(context.Background(), &r); err != nil {
		t.Fatal(err)
	}
	// And without an id, plain SigV4 to the regional endpoint.
	if _, err := s.Send(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	h := rec.reqs[0]
	if h.URL.Host != "abcd1234.efgh.endpoints.email.amazonaws.com" || h.URL.Scheme != "https" {
		t.Fatalf("endpoint %s", h.URL)
	}
	if a := h.Header.Get("Authorization"); !strings.HasPrefix(a, sigV4a) || h.Header.Get("X-Amz-Region-Set") != "*" {
		t.Fatalf("Authorization %q, X-Amz-Region-Set %q", a, h.Header.Get("X-Amz-Region-Set"))
	}
	if !strings.Contains(rec.body[0], `"EndpointId":"abcd1234.efgh"`) {
		t.Fatalf("body %s", rec.body[0])
	}
	if h := rec.reqs[1]; h.URL.Host != "email.us-east-1.amazonaws.com" || !strings.HasPrefix(h.Header.Get("Authorization"), "AWS4-HMAC-SHA256 ") {
		t.Fatalf("regional request to %s signed %q", h.URL.Host, h.Header.Get("Authorization"))
	}
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestRegionHealth(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)}
	h := newRegionHealth(zaptest.NewLogger(t))
	h.now = clock.now
	regions := []string{"a-east-1", "b-west-2", "c-north-1"}
	order := func() string { return strings.Join(h.order(regions, 30*time.Second), " ") }

	h.record("a-east-1", true, 2, 30*time.Second)
	h.record("a-east-1", false, 2, 30*time.Second) // not consecutive
	h.record("a-east-1", true, 2, 30*time.Second)
	if o := order(); o != "a-east-1 b-west-2 c-north-1" {
		t.Fatal(o)
	}
	h.record("a-east-1", true, 2, 30*time.Second)
	h.record("b-west-2", true, 1, 30*time.Second)
	// Down regions stay as the last resort.
	if o := order(); o != "c-north-1 a-east-1 b-west-2" {
		t.Fatal(o)
	}
	clock.add(30 * time.Second)
	// Both probes are due: each goes to one message only.
	if o := order(); o != "a-east-1 b-west-2 c-north-1" {
		t.Fatal(o)
	}
	if o := order(); o != "c-north-1 a-east-1 b-west-2" {
		t.Fatal(o)
	}
	h.record("b-west-2", false, 1, 30*time.Second)
	if o := order(); o != "b-west-2 c-north-1 a-east-1" {
		t.Fatal(o)
	}
	clock.add(29 * time.Second)
	if o := order(); o != "b-west-2 c-north-1 a-east-1" {
		t.Fatal(o)
	}
	clock.add(time.Second)
	if o := order(); o != "a-east-1 b-west-2 c-north-1" {
		t.Fatal(o)
	}
}

// Concurrent messages while region 1 fails: every one is sent once, in
// region 2, and region 1 is down after it.
func TestFailoverConcurrent(t *testing.T) {
	r1, r2 := newRegion(t), newRegion(t)
	r1.answer(&sestest.Reply{Status: 500, ErrorType: "InternalServiceErrorException"})
	s := newSender(t, "", func(o *Options) {
		o.Regions = []string{"us-east-1", "us-west-2"}
		o.RegionEndpoints = map[string]string{"us-east-1": r1.URL, "us-west-2": r2.URL}
		o.FailoverAfter, o.ProbeEvery = 3, time.Minute
	})
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Send(context.Background(), req); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(r2.Requests()) != 40 || len(r1.Requests()) != 0 {
		t.Fatalf("region 1 accepted %d, region 2 %d", len(r1.Requests()), len(r2.Requests()))
	}
	if st := s.Regions(); st[0].Up || !st[1].Up {
		t.Fatalf("%+v", st)
	}
}
