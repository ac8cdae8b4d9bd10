package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/emersion/go-sasl"
	"go.uber.org/zap/zaptest"

	"github.com/sesrelay/sesrelay/config"
	"github.com/sesrelay/sesrelay/relay/ses"
	"github.com/sesrelay/sesrelay/relay/sestest"
	"github.com/sesrelay/sesrelay/relay/smtptest"
)

const regionsYAML = `
server:
  hostname: relay.test
  listeners:
    - {address: "127.0.0.1:0", tls: none, allow_insecure_auth: true}
  tls: {self_signed: true}
admin: {address: "127.0.0.1:0"}
ses:
  region: us-east-1
  max_attempts: 1
  timeout: 5s
  regions: [us-east-1, us-west-2]
  region_endpoints: {us-east-1: "R1", us-west-2: "R2"}
  failover: {after: 1, probe_every: 1h}
tenants:
  - name: billing
    users: [{username: billing-app, password_hash: "HASH"}]
    domains: ["billing.example.com"]
`

// TestAdminRegionHealth: /readyz lists each region of ses.regions and
// stays 200 while one is up; sesrelay_ses_region_up follows.
func TestAdminRegionHealth(t *testing.T) {
	var down1, down2 atomic.Bool
	stub := func(down *atomic.Bool) *sestest.Server {
		s := sestest.New()
		t.Cleanup(s.Close)
		s.Respond = func(int, *sestest.Request) sestest.Reply {
			if down.Load() {
				return sestest.Reply{Status: 503}
			}
			return sestest.Reply{}
		}
		return s
	}
	r1, r2 := stub(&down1), stub(&down2)
	path := filepath.Join(t.TempDir(), "sesrelay.yaml")
	y := strings.NewReplacer("HASH", smtptest.PasswordHash, "R1", r1.URL, "R2", r2.URL).Replace(regionsYAML)
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	opts := ses.OptionsFromConfig(&cfg.SES)
	opts.AWSConfig = &aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "secret-access-key", "")}
	opts.BackoffBase, opts.BackoffMax = time.Millisecond, time.Millisecond
	sender, err := ses.New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	d, err := startDaemon(context.Background(), cfg, path, zaptest.NewLogger(t), sesDelivery(sender))
	if err != nil {
		t.Fatal(err)
	}
	r := &relayUnderTest{t: t, d: d, admin: "http://" + d.AdminAddr().String(), smtp: d.srv.Addrs()[0].String(), path: path}
	t.Cleanup(r.stop)
	r.run()

	if code, body := r.get("/readyz"); code != 200 || body != "ready\nses region us-east-1: up\nses region us-west-2: up\n" {
		t.Fatalf("/readyz: %d %q", code, body)
	}
	down1.Store(true)
	c := r.dial()
	if err := c.Auth(sasl.NewPlainClient("", "billing-app", smtptest.Password)); err != nil {
		t.Fatal(err)
	}
	if err := sendAdmin(c, "app@billing.example.com", []string{"customer@example.org"}, adminTestMsg); err != nil {
		t.Fatalf("want 250 through us-west-2: %v", err)
	}
	if code, body := r.get("/readyz"); code != 200 || body != "ready\nses region us-east-1: down\nses region us-west-2: up\n" {
		t.Fatalf("/readyz: %d %q", code, body)
	}
	s := r.scrape()
	for region, want := range map[string]float64{"us-east-1": 0, "us-west-2": 1} {
		if v, ok := s.value("sesrelay_ses_region_up", "region="+region); !ok || v != want {
			t.Errorf("sesrelay_ses_region_up{region=%s} = %v (%v), want %v", region, v, ok, want)
		}
	}

	down2.Store(true)
	err = sendAdmin(c, "app@billing.example.com", []string{"customer@example.org"}, adminTestMsg)
	smtptest.ExpectCode(t, err, 451, "4.3.0")
	if r1.Calls() != 2 || r2.Calls() != 2 {
		t.Errorf("calls: us-east-1 %d, us-west-2 %d; want 2 each (the last resort tries a down region)", r1.Calls(), r2.Calls())
	}
	if code, body := r.get("/readyz"); code != http.StatusServiceUnavailable ||
		body != "ses: every region of ses.regions is down\nses region us-east-1: down\nses region us-west-2: down\n" {
		t.Fatalf("/readyz: %d %q", code, body)
	}
}
