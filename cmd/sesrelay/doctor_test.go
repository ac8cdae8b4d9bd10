package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sesrelay/sesrelay/config"
	"github.com/sesrelay/sesrelay/doctor/doctortest"
	"github.com/sesrelay/sesrelay/headers"
)

// doctorWorld is one tenant (acme, example.com, relay-signed) whose DNS is
// complete, and an SES endpoint that knows nothing yet.
func doctorWorld(t *testing.T) (cfgPath string, d *doctortest.DNS, s *doctortest.SES) {
	t.Helper()
	d, s = doctortest.NewDNS(t), doctortest.NewSES(t)
	key, err := filepath.Abs("../../doctor/testdata/relay-rsa.pem")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := config.LoadPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := headers.DNSRecord(signer)
	if err != nil {
		t.Fatal(err)
	}
	d.TXT("relay2024._domainkey.example.com", rec)
	d.TXT("_dmarc.example.com", "v=DMARC1; p=quarantine; rua=mailto:dmarc@example.com")
	d.TXT("_dmarc.example.net", "v=DMARC1; p=reject; rua=mailto:dmarc@example.net")
	y := `server:
  hostname: relay.test
  listeners: [{address: "127.0.0.1:2587", tls: starttls}]
  tls: {self_signed: true}
ses: {region: us-east-1, endpoint: "` + s.URL + `"}
tenants:
  - name: acme
    users: [{username: acme, password_hash: "$2a$10$fLk/pjHAlbeiM/xrxs7rM.c4LTB14MuTZ6tjapQ/.k4ypkOY1Q3IC"}]
    domains: [example.com]
    dkim: [{domain: example.com, selector: relay2024, key_file: "` + key + `"}]
  - name: globex
    users: [{username: globex, password_hash: "$2a$10$fLk/pjHAlbeiM/xrxs7rM.c4LTB14MuTZ6tjapQ/.k4ypkOY1Q3IC"}]
    domains: [example.net]
`
	cfgPath = filepath.Join(t.TempDir(), "sesrelay.yaml")
	if err := os.WriteFile(cfgPath, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	// The default credential chain, from the environment only.
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	return cfgPath, d, s
}

func runDoctor(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := run(context.Background(), append([]string{"doctor"}, args...), strings.NewReader(""), &out, &errOut, nil)
	return code, out.String(), errOut.String()
}

func TestDoctorCommandOffline(t *testing.T) {
	cfg, d, s := doctorWorld(t)

	code, out, errOut := runDoctor("--config", cfg, "--dns", d.Addr, "--offline", "--tenant", "acme")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{
		"tenant acme: example.com\n",
		"  ok    dkim.relay            relay2024._domainkey.example.com TXT matches the configured RSA-2048 key\n",
		"  skip  ses                   SES not checked (--offline)",
		"  verdict: PASS, DMARC alignment: dkim\n",
		"1 domain(s): 1 pass, 0 fail, 0 unknown (offline: SES not checked)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if n := len(s.Calls()); n != 0 {
		t.Errorf("%d SES calls with --offline", n)
	}

	// globex has no relay key: offline, nothing confirms alignment.
	if code, out, _ := runDoctor("--config", cfg, "--dns", d.Addr, "--offline"); code != 3 {
		t.Errorf("all tenants offline: exit %d\n%s", code, out)
	}
}

func TestDoctorCommandOnlineJSON(t *testing.T) {
	cfg, d, s := doctorWorld(t)
	// No identity in SES: the relay's signature aligns, but SES refuses
	// the mail.
	code, out, errOut := runDoctor("--config", cfg, "--dns", d.Addr, "--tenant", "acme", "--format", "json")
	if code != 1 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	var rep struct {
		Domains []struct {
			Checks []struct {
				ID, Status, Summary, Region string
			}
			Verdict struct{ Result, Alignment string }
		}
		Summary struct {
			ExitCode int `json:"exit_code"`
		}
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	found := false
	for _, c := range rep.Domains[0].Checks {
		if c.ID == "ses.identity" && c.Status == "fail" && c.Region == "us-east-1" && strings.HasPrefix(c.Summary, "no SES identity for example.com") {
			found = true
		}
	}
	if !found || rep.Domains[0].Verdict.Result != "fail" || rep.Summary.ExitCode != 1 {
		t.Errorf("report: %s", out)
	}
	calls := s.Calls()
	if len(calls) == 0 || !strings.HasPrefix(calls[0].Authorization, "AWS4-HMAC-SHA256 Credential=AKIDTEST/") || calls[0].Path != "/v2/email/identities/example.com" {
		t.Errorf("SES calls %+v", calls)
	}
}

func TestDoctorCommandUsage(t *testing.T) {
	cfg, d, _ := doctorWorld(t)
	for _, args := range [][]string{
		{"--config", cfg, "--dns", d.Addr, "--format", "yaml"},
		{"--config", cfg, "--dns", d.Addr, "--tenant", "nobody", "--offline"},
		{"--config", filepath.Join(t.TempDir(), "missing.yaml")},
		{"--config", cfg, "extra"},
	} {
		if code, out, errOut := runDoctor(args...); code != 2 || errOut == "" {
			t.Errorf("%q: exit %d\n%s%s", args, code, out, errOut)
		}
	}
}
