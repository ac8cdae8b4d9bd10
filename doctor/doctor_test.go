package doctor_test

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/sesrelay/sesrelay/doctor"
	"github.com/sesrelay/sesrelay/doctor/doctortest"
)

func TestReadyDomain(t *testing.T) {
	w := newWorld(t)
	cfg := w.config("", acme)
	w.ready("us-east-1", "example.com", "acme-transactional", true)

	rep := w.run(cfg, w.options(cfg, true))
	wantVerdict(t, rep, 0, doctor.Pass, "both")
	for _, c := range rep.Domains[0].Checks {
		if c.Status != doctor.OK {
			t.Errorf("check %s %s: %s %s", c.ID, c.Region, c.Status, c.Summary)
		}
	}
	wantVia := []string{
		"DKIM d=example.com s=relay2024 (relay)",
		"DKIM d=example.com (SES Easy DKIM)",
		"SPF mail.example.com (custom MAIL FROM)",
	}
	if v := rep.Domains[0].Verdict.Via; !slices.Equal(v, wantVia) {
		t.Errorf("via %q, want %q", v, wantVia)
	}
	if len(rep.Domains[0].Steps) != 0 {
		t.Errorf("steps on a ready domain: %+v", rep.Domains[0].Steps)
	}
	if rep.ExitCode() != doctor.ExitPass {
		t.Errorf("exit code %d", rep.ExitCode())
	}
	if c := one(t, rep, 0, "dkim.relay", ""); c.Summary != "relay2024._domainkey.example.com TXT matches the configured RSA-2048 key" {
		t.Errorf("dkim.relay: %s", c.Summary)
	}

	// Every SES call went through the real client: SigV4 with the static
	// key, scoped to the region and the ses signing name.
	var paths []string
	for _, c := range w.ses.Calls() {
		if !strings.HasPrefix(c.Authorization, "AWS4-HMAC-SHA256 Credential=AKIDTEST/") || c.Region != "us-east-1" || c.Method != "GET" {
			t.Errorf("call %+v", c)
		}
		paths = append(paths, c.Path)
	}
	wantPaths := []string{
		"/v2/email/identities/example.com",
		"/v2/email/configuration-sets/acme-transactional",
		"/v2/email/configuration-sets/acme-transactional/event-destinations",
	}
	if !slices.Equal(paths, wantPaths) {
		t.Errorf("SES calls %q, want %q", paths, wantPaths)
	}
}

func TestMissingDMARC(t *testing.T) {
	w := newWorld(t)
	cfg := w.config("", acme)
	w.ready("us-east-1", "example.com", "acme-transactional", true)
	w.dns.Remove("_dmarc.example.com", dns.TypeTXT)
	w.dns.TXT("_dmarc.example.com", "google-site-verification=abc") // not a DMARC record

	rep := w.run(cfg, w.options(cfg, true))
	c := one(t, rep, 0, "dmarc", "")
	if c.Status != doctor.Fail || !strings.HasPrefix(c.Summary, "no DMARC record at _dmarc.example.com:") {
		t.Errorf("dmarc: %s %s", c.Status, c.Summary)
	}
	wantVerdict(t, rep, 0, doctor.Failing, "both")
	if !hasStep(rep, 0, doctor.Record{Name: "_dmarc.example.com", Type: "TXT", Value: "v=DMARC1; p=none; adkim=r; aspf=r"}) {
		t.Errorf("no DMARC step: %+v", rep.Domains[0].Steps)
	}
	if rep.ExitCode() != doctor.ExitFail {
		t.Errorf("exit code %d", rep.ExitCode())
	}
}

func TestDMARCPolicies(t *testing.T) {
	for _, tc := range []struct {
		name     string
		domain   string
		records  map[string]string
		status   doctor.Status
		summary  string
		note     string
		result   string
		relayVia bool
	}{
		{
			name: "none is monitoring only", domain: "example.com",
			records: map[string]string{"_dmarc.example.com": "v=DMARC1; p=none; rua=mailto:d@example.com"},
			status:  doctor.Warn, summary: "_dmarc.example.com: p=none applies to example.com (adkim=r, aspf=r)",
			note: "policy none is monitoring only", result: doctor.Pass, relayVia: true,
		},
		{
			name: "subdomain falls back to the organizational domain's sp", domain: "news.example.com",
			records: map[string]string{"_dmarc.example.com": "v=DMARC1; p=reject; sp=quarantine; rua=mailto:d@example.com"},
			status:  doctor.OK, summary: "_dmarc.example.com: sp=quarantine applies to news.example.com (adkim=r, aspf=r)",
			result: doctor.Pass, relayVia: true,
		},
		{
			name: "adkim=s noted against subdomain signing", domain: "news.example.com",
			records: map[string]string{"_dmarc.example.com": "v=DMARC1; p=reject; adkim=s; aspf=s; rua=mailto:d@example.com"},
			status:  doctor.OK, summary: "_dmarc.example.com: p=reject applies to news.example.com (adkim=s, aspf=s)",
			note:   "adkim=s: only a DKIM signature with d=news.example.com exactly aligns",
			result: doctor.Pass, relayVia: true, // the relay key is news.example.com's own
		},
		{
			name: "invalid record", domain: "example.com",
			records: map[string]string{"_dmarc.example.com": "v=DMARC1; p=maybe"},
			status:  doctor.Fail, summary: `_dmarc.example.com: invalid DMARC record "v=DMARC1; p=maybe": p=maybe is not none, quarantine or reject`,
			result: doctor.Failing, relayVia: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			cfg := w.config("", strings.ReplaceAll(acme, "example.com", tc.domain))
			w.dns.TXT("relay2024._domainkey."+tc.domain, relayRecord(t, "testdata/relay-rsa.pem"))
			for n, v := range tc.records {
				w.dns.TXT(n, v)
			}
			rep := w.run(cfg, w.options(cfg, false))
			c := one(t, rep, 0, "dmarc", "")
			if c.Status != tc.status || c.Summary != tc.summary {
				t.Errorf("dmarc: %s %q\nwant %s %q", c.Status, c.Summary, tc.status, tc.summary)
			}
			if tc.note != "" && !slices.ContainsFunc(c.Notes, func(n string) bool { return strings.HasPrefix(n, tc.note) }) {
				t.Errorf("notes %q lack %q", c.Notes, tc.note)
			}
			if got := rep.Domains[0].Verdict; got.Result != tc.result || (len(got.Via) == 1) != tc.relayVia {
				t.Errorf("verdict %+v; report:\n%s", got, text(rep))
			}
		})
	}
}

func TestDKIMRecordNotMatchingTheKey(t *testing.T) {
	w := newWorld(t)
	cfg := w.config("", acme)
	w.ready("us-east-1", "example.com", "acme-transactional", false)
	// The selector publishes another key: a rotation half done.
	w.dns.TXT("relay2024._domainkey.example.com", relayRecord(t, "testdata/other-ed25519.pem"))

	rep := w.run(cfg, w.options(cfg, true))
	c := one(t, rep, 0, "dkim.relay", "")
	if c.Status != doctor.Fail || !strings.Contains(c.Summary, "does not match the configured RSA-2048 key") || !strings.Contains(c.Summary, "publishes a different ed25519 key") {
		t.Errorf("dkim.relay: %s %s", c.Status, c.Summary)
	}
	want := doctor.Record{Name: "relay2024._domainkey.example.com", Type: "TXT", Value: relayRecord(t, "testdata/relay-rsa.pem")}
	if !hasStep(rep, 0, want) {
		t.Errorf("no step publishing the configured key: %+v", rep.Domains[0].Steps)
	}
	// SES still signs and the MAIL FROM aligns: DMARC passes without the
	// relay's signature.
	wantVerdict(t, rep, 0, doctor.Pass, "both")
	if slices.ContainsFunc(rep.Domains[0].Verdict.Via, func(v string) bool { return strings.HasSuffix(v, "(relay)") }) {
		t.Errorf("relay DKIM counted: %q", rep.Domains[0].Verdict.Via)
	}

	// Without SES DKIM and custom MAIL FROM nothing aligns.
	id := readyIdentity("example.com", "")
	id.DkimAttributes.SigningEnabled = false
	id.MailFromAttributes = nil
	w.ses.PutIdentity("us-east-1", "example.com", id)
	rep = w.run(cfg, w.options(cfg, true))
	wantVerdict(t, rep, 0, doctor.Failing, "none")
	if rep.ExitCode() != doctor.ExitFail {
		t.Errorf("exit code %d", rep.ExitCode())
	}

	// An RSA key published as a bare PKCS#1 key is the same key.
	w.dns.Remove("relay2024._domainkey.example.com", dns.TypeTXT)
	rec := relayRecord(t, "testdata/relay-rsa.pem")
	w.dns.TXT("relay2024._domainkey.example.com", "v=DKIM1; k=rsa; p="+pkcs1(t, rec))
	rep = w.run(cfg, w.options(cfg, true))
	if c := one(t, rep, 0, "dkim.relay", ""); c.Status != doctor.OK {
		t.Errorf("PKCS#1 record: %s %s", c.Status, c.Summary)
	}
}

func TestMailFromMXMissing(t *testing.T) {
	w := newWorld(t)
	cfg := w.config("", acme)
	w.ready("us-east-1", "example.com", "acme-transactional", true)
	w.dns.Remove("mail.example.com", dns.TypeMX)
	id := readyIdentity("example.com", "mail.example.com")
	id.MailFromAttributes.MailFromDomainStatus = "FAILED"
	id.MailFromAttributes.BehaviorOnMxFailure = "USE_DEFAULT_VALUE"
	w.ses.PutIdentity("us-east-1", "example.com", id)

	rep := w.run(cfg, w.options(cfg, true))
	if c := one(t, rep, 0, "mail_from.mx", "us-east-1"); c.Status != doctor.Fail || !strings.HasPrefix(c.Summary, "no MX record at mail.example.com") {
		t.Errorf("mail_from.mx: %s %s", c.Status, c.Summary)
	}
	if c := one(t, rep, 0, "ses.mail_from", "us-east-1"); c.Status != doctor.Warn || c.Summary != "mail.example.com FAILED; on MX failure SES will use the default MAIL FROM" {
		t.Errorf("ses.mail_from: %s %s", c.Status, c.Summary)
	}
	if !hasStep(rep, 0, doctor.Record{Name: "mail.example.com", Type: "MX", Value: "10 feedback-smtp.us-east-1.amazonses.com"}) {
		t.Errorf("no MX step: %+v", rep.Domains[0].Steps)
	}
	// DKIM still aligns; SPF no longer does.
	wantVerdict(t, rep, 0, doctor.Pass, "dkim")

	// With "reject the message" on MX failure SES refuses the mail.
	id.MailFromAttributes.BehaviorOnMxFailure = "REJECT_MESSAGE"
	w.ses.PutIdentity("us-east-1", "example.com", id)
	cfg2 := w.config("", acme) // a fresh run: SES answers are cached per run only
	rep = w.run(cfg2, w.options(cfg2, true))
	wantVerdict(t, rep, 0, doctor.Failing, "dkim")
	if c := one(t, rep, 0, "ses.mail_from", "us-east-1"); c.Status != doctor.Fail {
		t.Errorf("ses.mail_from: %s %s", c.Status, c.Summary)
	}

	// An MX pointing elsewhere and an SPF record without SES.
	w.dns.MX("mail.example.com", 10, "mx.other.example")
	w.dns.Remove("mail.example.com", dns.TypeTXT)
	w.dns.TXT("mail.example.com", "v=spf1 mx -all")
	rep = w.run(cfg2, w.options(cfg2, true))
	if c := one(t, rep, 0, "mail_from.mx", "us-east-1"); c.Status != doctor.Fail || c.Summary != "mail.example.com MX 10 mx.other.example, not feedback-smtp.us-east-1.amazonses.com" {
		t.Errorf("mail_from.mx: %s %s", c.Status, c.Summary)
	}
	if !hasStep(rep, 0, doctor.Record{Name: "mail.example.com", Type: "TXT", Value: "v=spf1 include:amazonses.com mx -all"}) {
		t.Errorf("no SPF step: %+v", rep.Domains[0].Steps)
	}
}

func TestIdentityNotVerified(t *testing.T) {
	w := newWorld(t)
	cfg := w.config("", acme)
	w.ready("us-east-1", "example.com", "acme-transactional", true)
	for _, tok := range tokens("example.com") {
		w.dns.Remove(tok+"._domainkey.example.com", dns.TypeCNAME)
	}
	id := readyIdentity("example.com", "mail.example.com")
	id.VerifiedForSendingStatus = false
	id.VerificationStatus = "PENDING"
	id.DkimAttributes.Status = "PENDING"
	id.MailFromAttributes.MailFromDomainStatus = "PENDING"
	id.MailFromAttributes.BehaviorOnMxFailure = "USE_DEFAULT_VALUE"
	w.ses.PutIdentity("us-east-1", "example.com", id)

	rep := w.run(cfg, w.options(cfg, true))
	if c := one(t, rep, 0, "ses.identity", "us-east-1"); c.Status != doctor.Fail || c.Summary != "example.com not verified (PENDING): SES refuses mail From it" {
		t.Errorf("ses.identity: %s %s", c.Status, c.Summary)
	}
	if c := one(t, rep, 0, "dkim.ses", "us-east-1"); c.Status != doctor.Fail || c.Summary != "3 of 3 Easy DKIM CNAME records for example.com missing or wrong" {
		t.Errorf("dkim.ses: %s %s", c.Status, c.Summary)
	}
	for _, tok := range tokens("example.com") {
		if !hasStep(rep, 0, doctor.Record{Name: tok + "._domainkey.example.com", Type: "CNAME", Value: tok + ".dkim.amazonses.com"}) {
			t.Errorf("no CNAME step for %s", tok)
		}
	}
	// The relay's own signature would align, but SES does not send.
	wantVerdict(t, rep, 0, doctor.Failing, "dkim")
	if !slices.Contains(rep.Domains[0].Verdict.Problems, "identity example.com not verified in us-east-1") {
		t.Errorf("problems %q", rep.Domains[0].Verdict.Problems)
	}

	// No identity at all.
	w.ses.DeleteIdentity("us-east-1", "example.com")
	cfg = w.config("", acme)
	rep = w.run(cfg, w.options(cfg, true))
	if c := one(t, rep, 0, "ses.identity", "us-east-1"); c.Status != doctor.Fail || !strings.HasPrefix(c.Summary, "no SES identity for example.com") {
		t.Errorf("ses.identity: %s %s", c.Status, c.Summary)
	}
	wantVerdict(t, rep, 0, doctor.Failing, "dkim")
}

func TestSubdomainUsesParentIdentity(t *testing.T) {
	w := newWorld(t)
	cfg := w.config("", `  - name: acme
    users: [{username: acme, password_hash: "PASSWORD_HASH"}]
    domains: ["news.example.com"]
`)
	w.ready("us-east-1", "example.com", "", false)
	rep := w.run(cfg, w.options(cfg, true))
	c := one(t, rep, 0, "ses.identity", "us-east-1")
	if c.Status != doctor.OK || c.Summary != "example.com (parent of news.example.com) verified" {
		t.Errorf("ses.identity: %s %s", c.Status, c.Summary)
	}
	// Relaxed alignment: d=example.com and mail.example.com align with
	// news.example.com.
	wantVerdict(t, rep, 0, doctor.Pass, "both")
	if one(t, rep, 0, "dkim.relay", "").Status != doctor.Info {
		t.Error("dkim.relay without a key is not info")
	}
}

func TestTrackingOnRelaySignedConfigurationSet(t *testing.T) {
	w := newWorld(t)
	cfg := w.config("", acme)
	w.ready("us-east-1", "example.com", "acme-transactional", true)
	w.ses.PutConfigurationSet("us-east-1", doctortest.ConfigurationSet{
		ConfigurationSetName: "acme-transactional",
		TrackingOptions:      &doctortest.TrackingOptions{CustomRedirectDomain: "track.example.com", HttpsPolicy: "REQUIRE"},
		VdmOptions:           &doctortest.VdmOptions{DashboardOptions: &doctortest.DashboardOptions{EngagementMetrics: "ENABLED"}},
		EventDestinations: []doctortest.EventDestination{
			{Name: "engagement", Enabled: true, MatchingEventTypes: []string{"SEND", "OPEN", "CLICK"}},
			{Name: "old", Enabled: false, MatchingEventTypes: []string{"CLICK"}},
		},
	})

	rep := w.run(cfg, w.options(cfg, true))
	c := one(t, rep, 0, "ses.configuration_set", "us-east-1")
	if c.Status != doctor.Warn || c.Summary != "acme-transactional (configuration_set) tracks opens and clicks, and the relay signs this domain's mail" {
		t.Errorf("ses.configuration_set: %s %s", c.Status, c.Summary)
	}
	wantNote := "tracking: custom redirect domain track.example.com; VDM engagement metrics; event destination engagement publishes OPEN, CLICK"
	if len(c.Notes) == 0 || c.Notes[0] != wantNote {
		t.Errorf("notes %q", c.Notes)
	}
	if !slices.ContainsFunc(c.Notes, func(n string) bool { return strings.Contains(n, "body hash of the relay's DKIM signature") }) {
		t.Errorf("notes do not say why: %q", c.Notes)
	}
	wantVerdict(t, rep, 0, doctor.Pass, "both")

	// A tenant the relay does not sign for: SES signs after rewriting.
	cfg = w.config("", `  - name: acme
    users: [{username: acme, password_hash: "PASSWORD_HASH"}]
    domains: ["example.com"]
    configuration_set: acme-transactional
`)
	rep = w.run(cfg, w.options(cfg, true))
	if c := one(t, rep, 0, "ses.configuration_set", "us-east-1"); c.Status != doctor.Info {
		t.Errorf("unsigned tenant: %s %s", c.Status, c.Summary)
	}
}

func TestConfigurationSetMissingOrPaused(t *testing.T) {
	w := newWorld(t)
	cfg := w.config("", acme)
	w.ready("us-east-1", "example.com", "", true)
	rep := w.run(cfg, w.options(cfg, true))
	if c := one(t, rep, 0, "ses.configuration_set", "us-east-1"); c.Status != doctor.Fail || c.Summary != "acme-transactional (configuration_set) does not exist: SES refuses mail naming it" {
		t.Errorf("ses.configuration_set: %s %s", c.Status, c.Summary)
	}
	wantVerdict(t, rep, 0, doctor.Failing, "both")

	w.ses.PutConfigurationSet("us-east-1", doctortest.ConfigurationSet{ConfigurationSetName: "acme-transactional", SendingOptions: &doctortest.SendingOptions{SendingEnabled: false}})
	cfg = w.config("", acme)
	rep = w.run(cfg, w.options(cfg, true))
	if c := one(t, rep, 0, "ses.configuration_set", "us-east-1"); c.Status != doctor.Fail || !strings.HasSuffix(c.Summary, "sending is paused on it") {
		t.Errorf("ses.configuration_set: %s %s", c.Status, c.Summary)
	}
}

func TestSESErrorsAreFindings(t *testing.T) {
	w := newWorld(t)
	cfg := w.config("", acme)
	w.ready("us-east-1", "example.com", "acme-transactional", true)
	w.ses.Fail("", "/v2/email/identities/example.com", 403, "AccessDeniedException", "User is not authorized to perform ses:GetEmailIdentity")

	rep := w.run(cfg, w.options(cfg, true))
	c := one(t, rep, 0, "ses.identity", "us-east-1")
	want := "GetEmailIdentity example.com: AccessDeniedException: User is not authorized to perform ses:GetEmailIdentity (doctor needs ses:GetEmailIdentity and ses:GetConfigurationSet*)"
	if c.Status != doctor.Error || c.Summary != want {
		t.Errorf("ses.identity: %s %q", c.Status, c.Summary)
	}
	// The relay's own DKIM aligns, but whether SES sends is unknown.
	wantVerdict(t, rep, 0, doctor.Unknown, "dkim")
	if rep.ExitCode() != doctor.ExitUnknown {
		t.Errorf("exit code %d", rep.ExitCode())
	}

	// No AWS configuration at all: every SES check says so, DNS checks run.
	o := w.options(cfg, false)
	o.SES = func(string) (doctor.SESAPI, error) {
		return nil, errors.New("ses: loading AWS configuration: no credentials")
	}
	rep = w.run(cfg, o)
	if c := one(t, rep, 0, "ses.identity", "us-east-1"); c.Status != doctor.Error || !strings.Contains(c.Summary, "no credentials") {
		t.Errorf("ses.identity: %s %s", c.Status, c.Summary)
	}
	if c := one(t, rep, 0, "dkim.relay", ""); c.Status != doctor.OK {
		t.Errorf("dkim.relay: %s %s", c.Status, c.Summary)
	}
}

func TestOffline(t *testing.T) {
	w := newWorld(t)
	cfg := w.config("", acme+`  - name: globex
    users: [{username: globex, password_hash: "PASSWORD_HASH"}]
    domains: ["example.net"]
`)
	w.ready("us-east-1", "example.com", "acme-transactional", true)
	w.ready("us-east-1", "example.net", "", false)

	rep := w.run(cfg, w.options(cfg, false))
	if n := len(w.ses.Calls()); n != 0 {
		t.Errorf("%d SES calls offline", n)
	}
	if !rep.Offline {
		t.Error("report not marked offline")
	}
	// The relay's signature is enough to pass; SES is not asked.
	wantVerdict(t, rep, 0, doctor.Pass, "dkim")
	if c := one(t, rep, 0, "ses", ""); c.Status != doctor.Skip {
		t.Errorf("ses: %s", c.Status)
	}
	// Without a relay key nothing can be confirmed offline.
	wantVerdict(t, rep, 1, doctor.Unknown, doctor.Unknown)
	if rep.ExitCode() != doctor.ExitUnknown {
		t.Errorf("exit code %d", rep.ExitCode())
	}

	o := w.options(cfg, false)
	o.Tenant = "acme"
	if rep := w.run(cfg, o); len(rep.Domains) != 1 || rep.ExitCode() != doctor.ExitPass {
		t.Errorf("--tenant acme: %d domains, exit %d", len(rep.Domains), rep.ExitCode())
	}
}

func TestWildcardEntry(t *testing.T) {
	w := newWorld(t)
	cfg := w.config("", `  - name: acme
    users: [{username: acme, password_hash: "PASSWORD_HASH"}]
    domains: ["*.example.com"]
    dkim:
      - {domain: news.example.com, selector: relay2024, key_file: RELAY_KEY}
`)
	w.ready("us-east-1", "example.com", "", false)
	w.dns.Remove("_dmarc.example.com", dns.TypeTXT)
	w.dns.TXT("_dmarc.example.com", "v=DMARC1; p=reject; sp=none; rua=mailto:d@example.com")
	w.dns.TXT("_dmarc.example.com", "unrelated")

	rep := w.run(cfg, w.options(cfg, true))
	d := rep.Domains[0]
	if d.Entry != "*.example.com" || d.Domain != "example.com" {
		t.Errorf("entry %s domain %s", d.Entry, d.Domain)
	}
	if c := one(t, rep, 0, "wildcard", ""); c.Status != doctor.Info {
		t.Errorf("wildcard: %s", c.Status)
	}
	if c := one(t, rep, 0, "dmarc", ""); c.Status != doctor.Warn || c.Summary != "_dmarc.example.com: sp=none applies to subdomains of example.com (adkim=r, aspf=r)" {
		t.Errorf("dmarc: %s %s", c.Status, c.Summary)
	}
	// news.example.com's key is checked (its record is missing), the
	// verdict stands on SES.
	relay := checks(rep, 0, "dkim.relay", "")
	if len(relay) != 2 || relay[0].Status != doctor.Info || relay[1].Status != doctor.Fail {
		t.Errorf("dkim.relay checks: %+v", relay)
	}
	wantVerdict(t, rep, 0, doctor.Pass, "both")
}

func TestDelegatedIdentityRegion(t *testing.T) {
	w := newWorld(t)
	cfg := w.config("ses:\n  region: us-east-1\n  regions: [us-east-1, eu-west-1]\n", acme)
	// config.Load refuses an identity outside ses.regions; doctor still
	// checks configurations built without it.
	cfg.Tenants[0].IdentityARN = "arn:aws:ses:us-west-2:123456789012:identity/example.com"
	w.ready("us-east-1", "example.com", "acme-transactional", true)
	w.ses.PutConfigurationSet("eu-west-1", doctortest.ConfigurationSet{ConfigurationSetName: "acme-transactional"})

	rep := w.run(cfg, w.options(cfg, true))
	c := one(t, rep, 0, "ses.identity_arn", "us-west-2")
	if c.Status != doctor.Fail || c.Summary != "identity is in us-west-2 but the tenant sends through us-east-1, eu-west-1: SES refuses it (delegated identities are regional)" {
		t.Errorf("ses.identity_arn: %s %s", c.Status, c.Summary)
	}
	if len(checks(rep, 0, "ses.identity", "")) != 0 {
		t.Error("a delegated identity was looked up in this account")
	}
	wantVerdict(t, rep, 0, doctor.Failing, "dkim")
}

func TestRegionsShareDEEDKeys(t *testing.T) {
	w := newWorld(t)
	cfg := w.config("ses:\n  region: us-east-1\n  regions: [us-east-1, us-west-2]\n", acme)
	w.ready("us-east-1", "example.com", "acme-transactional", true)
	// The replica shares the parent's DKIM records; its MAIL FROM is
	// regional, as advised.
	replica := readyIdentity("example.com", "mail-usw2.example.com")
	replica.DkimAttributes.SigningAttributesOrigin = "AWS_SES_US_EAST_1"
	w.ses.PutIdentity("us-west-2", "example.com", replica)
	w.ses.PutConfigurationSet("us-west-2", doctortest.ConfigurationSet{ConfigurationSetName: "acme-transactional"})
	w.dns.MX("mail-usw2.example.com", 10, "feedback-smtp.us-west-2.amazonses.com")
	w.dns.TXT("mail-usw2.example.com", "v=spf1 include:amazonses.com ~all")

	rep := w.run(cfg, w.options(cfg, true))
	if c := one(t, rep, 0, "ses.deed", ""); c.Status != doctor.OK || c.Summary != "every region signs with the DKIM keys of us-east-1 (DEED): failover keeps DKIM aligned" {
		t.Errorf("ses.deed: %s %s", c.Status, c.Summary)
	}
	if c := one(t, rep, 0, "ses.identity", "us-west-2"); !slices.Contains(c.Notes, "DKIM SUCCESS, Easy DKIM replica of us-east-1 (DEED)") {
		t.Errorf("replica notes %q", c.Notes)
	}
	if n := len(checks(rep, 0, "dkim.ses", "")); n != 1 {
		t.Errorf("%d dkim.ses checks: the replica's records are the parent's", n)
	}
	wantVerdict(t, rep, 0, doctor.Pass, "both")

	// The second region lacks the identity: failover would fail.
	w.ses.DeleteIdentity("us-west-2", "example.com")
	cfg = w.config("ses:\n  region: us-east-1\n  regions: [us-east-1, us-west-2]\n", acme)
	rep = w.run(cfg, w.options(cfg, true))
	if c := one(t, rep, 0, "ses.deed", ""); c.Status != doctor.Warn {
		t.Errorf("ses.deed: %s %s", c.Status, c.Summary)
	}
	wantVerdict(t, rep, 0, doctor.Failing, "dkim")
}

func TestResolver(t *testing.T) {
	w := newWorld(t)
	cfg := w.config("", acme)
	w.ready("us-east-1", "example.com", "acme-transactional", true)

	// Truncated UDP answers are asked again over TCP.
	w.dns.TruncateUDP.Store(true)
	rep := w.run(cfg, w.options(cfg, false))
	if c := one(t, rep, 0, "dkim.relay", ""); c.Status != doctor.OK {
		t.Errorf("dkim.relay over TCP: %s %s", c.Status, c.Summary)
	}
	if w.dns.Queries("tcp") == 0 {
		t.Error("no TCP query")
	}
	w.dns.TruncateUDP.Store(false)

	// SERVFAIL is an unknown answer, not a missing record.
	w.dns.Fail("_dmarc.example.com", dns.RcodeServerFailure)
	rep = w.run(cfg, w.options(cfg, false))
	if c := one(t, rep, 0, "dmarc", ""); c.Status != doctor.Error || !strings.Contains(c.Summary, "SERVFAIL") {
		t.Errorf("dmarc: %s %s", c.Status, c.Summary)
	}
	wantVerdict(t, rep, 0, doctor.Unknown, "dkim")
}

func TestJSON(t *testing.T) {
	w := newWorld(t)
	cfg := w.config("", acme)
	w.ready("us-east-1", "example.com", "acme-transactional", true)
	w.dns.Remove("_dmarc.example.com", dns.TypeTXT)
	rep := w.run(cfg, w.options(cfg, true))
	var b bytes.Buffer
	if err := rep.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Offline bool `json:"offline"`
		Domains []struct {
			Tenant  string `json:"tenant"`
			Domain  string `json:"domain"`
			Checks  []struct{ ID, Status string }
			Verdict struct{ Result, Alignment string }
			Steps   []struct {
				Where  string
				Record *struct{ Name, Type, Value string }
			}
		} `json:"domains"`
		Summary struct {
			Domains, Pass, Fail, Unknown int
			ExitCode                     int `json:"exit_code"`
		} `json:"summary"`
	}
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	d := got.Domains[0]
	if d.Tenant != "acme" || d.Domain != "example.com" || d.Verdict.Result != "fail" || d.Verdict.Alignment != "both" ||
		got.Summary.Fail != 1 || got.Summary.ExitCode != 1 || len(d.Steps) != 1 || d.Steps[0].Record.Name != "_dmarc.example.com" {
		t.Errorf("json: %s", b.String())
	}
}

// pkcs1 re-encodes the p= of an RSA DKIM record as a bare PKCS#1 key.
func pkcs1(t *testing.T, record string) string {
	t.Helper()
	_, p, _ := strings.Cut(record, "p=")
	der, err := base64.StdEncoding.DecodeString(p)
	if err != nil {
		t.Fatal(err)
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(x509.MarshalPKCS1PublicKey(k.(*rsa.PublicKey)))
}
