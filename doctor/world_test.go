package doctor_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/sesrelay/sesrelay/config"
	"github.com/sesrelay/sesrelay/doctor"
	"github.com/sesrelay/sesrelay/doctor/doctortest"
	"github.com/sesrelay/sesrelay/headers"
	"github.com/sesrelay/sesrelay/relay/ses"
)

// world is a DNS server and an SES endpoint on loopback, and the
// configuration files that point at them.
type world struct {
	t   *testing.T
	dns *doctortest.DNS
	ses *doctortest.SES
	dir string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	return &world{t: t, dns: doctortest.NewDNS(t), ses: doctortest.NewSES(t), dir: t.TempDir()}
}

const passwordHash = "$2a$10$fLk/pjHAlbeiM/xrxs7rM.c4LTB14MuTZ6tjapQ/.k4ypkOY1Q3IC"

// config loads a configuration whose tenants section is tenants (YAML,
// indented for the list). RELAY_KEY and OTHER_KEY stand for the test keys.
func (w *world) config(sesSection, tenants string) *config.Config {
	w.t.Helper()
	abs := func(p string) string {
		a, err := filepath.Abs(p)
		if err != nil {
			w.t.Fatal(err)
		}
		return a
	}
	tenants = strings.NewReplacer(
		"RELAY_KEY", abs("testdata/relay-rsa.pem"),
		"OTHER_KEY", abs("testdata/other-ed25519.pem"),
		"PASSWORD_HASH", passwordHash,
	).Replace(tenants)
	if sesSection == "" {
		sesSection = "ses:\n  region: us-east-1\n"
	}
	y := "server:\n  hostname: relay.test\n  listeners:\n    - address: \"127.0.0.1:2587\"\n      tls: starttls\n  tls:\n    self_signed: true\n" +
		"delivery:\n  sender: ses\n" + sesSection + "tenants:\n" + tenants
	path := filepath.Join(w.dir, "sesrelay.yaml")
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		w.t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		w.t.Fatalf("config: %v\n%s", err, y)
	}
	return cfg
}

// acme is one tenant sending as example.com, signed by the relay.
const acme = `  - name: acme
    users: [{username: acme, password_hash: "PASSWORD_HASH"}]
    domains: ["example.com"]
    configuration_set: acme-transactional
    dkim:
      - {domain: example.com, selector: relay2024, key_file: RELAY_KEY}
`

// options points doctor at the world; online adds the SES endpoint,
// reached through the relay's own client construction with static
// credentials.
func (w *world) options(cfg *config.Config, online bool) doctor.Options {
	o := doctor.Options{
		Resolver: &doctor.DNSResolver{Servers: []string{w.dns.Addr}, Timeout: 2 * time.Second},
		Timeout:  5 * time.Second,
	}
	if online {
		opts := ses.OptionsFromConfig(&cfg.SES)
		opts.Endpoint = w.ses.URL
		opts.MaxAttempts = 1
		opts.AWSConfig = &aws.Config{Region: cfg.SES.Region, Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", "")}
		sender, err := ses.New(context.Background(), opts)
		if err != nil {
			w.t.Fatal(err)
		}
		o.SES = func(region string) (doctor.SESAPI, error) { return sender.Client(region), nil }
	}
	return o
}

func (w *world) run(cfg *config.Config, o doctor.Options) *doctor.Report {
	w.t.Helper()
	rep, err := doctor.Run(context.Background(), cfg, o)
	if err != nil {
		w.t.Fatal(err)
	}
	return rep
}

func relayRecord(t *testing.T, file string) string {
	t.Helper()
	k, err := config.LoadPrivateKey(file)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := headers.DNSRecord(k)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// tokens are Easy DKIM tokens as SES hands them out (32 characters).
func tokens(domain string) []string {
	base := strings.ReplaceAll(domain, ".", "")
	var out []string
	for _, c := range []string{"a", "b", "c"} {
		out = append(out, (base + strings.Repeat(c, 32))[:32])
	}
	return out
}

// ready sets up domain completely in region: relay key record (when the
// tenant has one, selector relay2024), DMARC p=reject, a verified identity
// with Easy DKIM and its CNAMEs, custom MAIL FROM mail.<domain> with its MX
// and SPF, and the configuration set without tracking.
func (w *world) ready(region, domain, configSet string, relaySigned bool) {
	if relaySigned {
		w.dns.TXT("relay2024._domainkey."+domain, relayRecord(w.t, "testdata/relay-rsa.pem"))
	}
	w.dns.TXT("_dmarc."+domain, "v=DMARC1; p=reject; rua=mailto:dmarc@"+domain)
	for _, tok := range tokens(domain) {
		w.dns.CNAME(tok+"._domainkey."+domain, tok+".dkim.amazonses.com")
	}
	w.dns.MX("mail."+domain, 10, "feedback-smtp."+region+".amazonses.com")
	w.dns.TXT("mail."+domain, "v=spf1 include:amazonses.com ~all")
	w.ses.PutIdentity(region, domain, readyIdentity(domain, "mail."+domain))
	if configSet != "" {
		w.ses.PutConfigurationSet(region, doctortest.ConfigurationSet{
			ConfigurationSetName: configSet,
			SendingOptions:       &doctortest.SendingOptions{SendingEnabled: true},
			EventDestinations: []doctortest.EventDestination{
				{Name: "bounces", Enabled: true, MatchingEventTypes: []string{"BOUNCE", "COMPLAINT", "DELIVERY"}},
			},
		})
	}
}

func readyIdentity(domain, mailFrom string) doctortest.Identity {
	return doctortest.Identity{
		IdentityType:             "DOMAIN",
		VerifiedForSendingStatus: true,
		VerificationStatus:       "SUCCESS",
		FeedbackForwardingStatus: true,
		DkimAttributes: &doctortest.DkimAttributes{
			SigningEnabled: true, Status: "SUCCESS", Tokens: tokens(domain),
			SigningAttributesOrigin: "AWS_SES", CurrentSigningKeyLength: "RSA_2048_BIT", NextSigningKeyLength: "RSA_2048_BIT",
		},
		MailFromAttributes: &doctortest.MailFromAttributes{
			MailFromDomain: mailFrom, MailFromDomainStatus: "SUCCESS", BehaviorOnMxFailure: "REJECT_MESSAGE",
		},
	}
}

// checks returns the checks of domain report i with id (and region, if
// not "").
func checks(rep *doctor.Report, i int, id, region string) []doctor.Check {
	var out []doctor.Check
	for _, c := range rep.Domains[i].Checks {
		if c.ID == id && (region == "" || c.Region == region) {
			out = append(out, c)
		}
	}
	return out
}

func one(t *testing.T, rep *doctor.Report, i int, id, region string) doctor.Check {
	t.Helper()
	cs := checks(rep, i, id, region)
	if len(cs) != 1 {
		t.Fatalf("%d checks %s %s, want 1; report:\n%s", len(cs), id, region, text(rep))
	}
	return cs[0]
}

func text(rep *doctor.Report) string {
	var b strings.Builder
	rep.WriteText(&b)
	return b.String()
}

func hasStep(rep *doctor.Report, i int, rec doctor.Record) bool {
	for _, s := range rep.Domains[i].Steps {
		if s.Record != nil && *s.Record == rec {
			return true
		}
	}
	return false
}

func wantVerdict(t *testing.T, rep *doctor.Report, i int, result, alignment string) {
	t.Helper()
	v := rep.Domains[i].Verdict
	if v.Result != result || v.Alignment != alignment {
		t.Fatalf("verdict %s/%s, want %s/%s; report:\n%s", v.Result, v.Alignment, result, alignment, text(rep))
	}
}
