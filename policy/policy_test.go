package policy

import (
	"strings"
	"testing"

	"github.com/sesrelay/sesrelay/config"
)

func TestOwnsDomain(t *testing.T) {
	r := testRules(t)
	for _, c := range []struct {
		tenant, domain string
		want           bool
	}{
		{"billing", "billing.example.com", true},
		{"billing", "eu.billing.example.com", true},
		{"billing", "a.b.billing.example.com", true},
		{"billing", "BILLING.EXAMPLE.COM", true},
		{"billing", "billing.example.com.", true},
		{"billing", "Eu.Billing.Example.Com.", true},
		{"billing", "billing.example.com..", false},
		{"billing", ".billing.example.com", false},
		{"billing", "a..billing.example.com", false},
		{"billing", "example.com", false},
		{"billing", "xbilling.example.com", false},
		{"billing", "evil-billing.example.com", false},
		{"billing", "billing.example.com.evil.net", false},
		{"billing", "billing-example.com", false},
		{"billing", "*.billing.example.com", false},
		{"billing", "*billing.example.com", false},
		{"billing", "-x.billing.example.com", false},
		{"billing", "x_y.billing.example.com", false},
		{"billing", "x y.billing.example.com", false},
		{"billing", " billing.example.com", true}, // as config.NormalizeDomain
		{"billing", "", false},
		{"billing", ".", false},
		{"root", "example.com", true},
		{"root", "EXAMPLE.com.", true},
		{"root", "www.example.com", false},
		{"root", "evil-example.com", false},
		{"root", "xexample.com", false},
		{"root", "com", false},
		{"a", "a.example.com", true},
		{"a", "b.example.com", false},
		{"a", "example.com", false},
		{"b", "b.example.com", true},
		{"b", "a.example.com", false},
		{"books", "bücher.example", true},
		{"books", "BÜCHER.example", true},
		{"books", "xn--bcher-kva.example", true},
		{"books", "XN--BCHER-KVA.EXAMPLE.", true},
		{"books", "bucher.example", false},
		{"books", "shop.münchen.example", true},
		{"books", "shop.xn--mnchen-3ya.example", true},
		{"books", "münchen.example", false},
		{"books", "xn--mnchen-3ya.example", false},
		{"books", "shop.xn--zz.example", false},
	} {
		if got := r.Tenant(c.tenant).OwnsDomain(c.domain); got != c.want {
			t.Errorf("%s.OwnsDomain(%q) = %v, want %v", c.tenant, c.domain, got, c.want)
		}
	}
}

func TestNormalizeDomainAllocations(t *testing.T) {
	n := testing.AllocsPerRun(100, func() {
		if _, ok := normalizeDomain("mail.billing.example.com."); !ok {
			t.Fatal("not ok")
		}
	})
	if n != 0 {
		t.Errorf("%v allocations for a lowercase ASCII domain", n)
	}
	ten := testRules(t).Tenant("billing")
	n = testing.AllocsPerRun(100, func() { ten.OwnsDomain("a.eu.billing.example.com") })
	if n != 0 {
		t.Errorf("%v allocations in OwnsDomain", n)
	}
}

func TestTenantForUser(t *testing.T) {
	r := testRules(t)
	ten, u := r.TenantForUser("a-app")
	if ten == nil || ten.Name != "a" || u == nil || u.Username != "a-app" || ten.Config.Name != "a" {
		t.Fatalf("TenantForUser(a-app) = %v, %v", ten, u)
	}
	if ten, u := r.TenantForUser("A-APP"); ten != nil || u != nil {
		t.Fatal("usernames are case sensitive")
	}
	if ten, u := r.TenantForUser(""); ten != nil || u != nil {
		t.Fatal("empty username found")
	}
	if r.Tenant("nope") != nil {
		t.Fatal("unknown tenant found")
	}
	if got := len(r.Tenants()); got != len(testConfig().Tenants) {
		t.Fatalf("%d tenants", got)
	}
}

// TestCompileLoadedConfig: what config.Load accepts, Compile accepts.
func TestCompileLoadedConfig(t *testing.T) {
	cfg, err := config.Load("")
	if err != nil {
		t.Fatal(err)
	}
	r, err := Compile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ten, _ := r.TenantForUser("demo")
	if ten == nil || !ten.OwnsDomain("example.com") || !ten.OwnsDomain("x.example.com") {
		t.Fatalf("demo tenant: %+v", ten)
	}
}

func TestCompileErrors(t *testing.T) {
	for _, c := range []struct {
		name   string
		change func(*config.Config)
		want   []string
	}{
		{"no domains", func(c *config.Config) { c.Tenants[1].Domains = nil }, []string{"tenants[1].domains: at least one domain is required"}},
		{"bad domain", func(c *config.Config) { c.Tenants[1].Domains = []string{"a.example.com", "a..b", "*.x_y.com"} },
			[]string{`tenants[1].domains[1]: not a domain name: "a..b"`, `tenants[1].domains[2]: not a domain name: "*.x_y.com"`}},
		{"duplicate tenant", func(c *config.Config) { c.Tenants[2].Name = "a" }, []string{`tenants[2].name: "a" is already tenants[1]`}},
		{"empty tenant name", func(c *config.Config) { c.Tenants[2].Name = "" }, []string{"tenants[2].name: required"}},
		{"duplicate user", func(c *config.Config) { c.Tenants[2].Users[0].Username = "a-app" },
			[]string{`tenants[2].users[0].username: "a-app" is already used by tenants[1].users[0]`}},
		{"empty user", func(c *config.Config) { c.Tenants[2].Users[0].Username = "" }, []string{"tenants[2].users[0].username: required"}},
		{"bad from_policy", func(c *config.Config) { c.Tenants[1].FromPolicy = "bounce" }, []string{`tenants[1].from_policy: must be reject or rewrite, got "bounce"`}},
		{"rewrite_from foreign", func(c *config.Config) { c.Tenants[5].RewriteFrom = "noreply@evil-rw.example.net" },
			[]string{`tenants[5].rewrite_from: "noreply@evil-rw.example.net" is not in the tenant's domains`}},
		{"rewrite_from with name", func(c *config.Config) { c.Tenants[5].RewriteFrom = "RW <noreply@rw.example.net>" },
			[]string{"tenants[5].rewrite_from: must be a bare ASCII address like noreply@rw.example.net"}},
		{"rewrite_from missing", func(c *config.Config) { c.Tenants[5].RewriteFrom = "" }, []string{"tenants[5].rewrite_from: must be a bare"}},
		{"dkim foreign domain", func(c *config.Config) { c.Tenants[0].DKIM[0].Domain = "example.com" },
			[]string{`tenants[0].dkim[0].domain: "example.com" is not among the tenant's domains`}},
		{"dkim wildcard domain", func(c *config.Config) { c.Tenants[0].DKIM[0].Domain = "*.billing.example.com" },
			[]string{`tenants[0].dkim[0].domain: not a domain name`}},
		{"dkim key not loaded", func(c *config.Config) { c.Tenants[0].DKIM[0].Signer = nil }, []string{"tenants[0].dkim[0].key_file: key not loaded"}},
		{"dkim_required without keys", func(c *config.Config) { c.Tenants[1].DKIMRequired = true }, []string{"tenants[1].dkim_required: true but the tenant has no dkim keys"}},
		{"reserved static tag", func(c *config.Config) { c.Tenants[0].Tags["tenant"] = "x" }, []string{"tenants[0].tags.tenant: reserved"}},
		{"bad static tag value", func(c *config.Config) { c.Tenants[0].Tags["stream"] = "a b" }, []string{`tenants[0].tags.stream: tag value "a b"`}},
		{"reserved header tag", func(c *config.Config) { c.Tenants[0].HeaderTags["X-Domain"] = "from_domain" }, []string{`tenants[0].header_tags.X-Domain: tag "from_domain" is reserved`}},
		{"X-SES header tag", func(c *config.Config) { c.Tenants[0].HeaderTags["X-SES-MESSAGE-TAGS"] = "t" }, []string{"tenants[0].header_tags.X-SES-MESSAGE-TAGS: X-SES-* headers are removed"}},
		{"bad header name", func(c *config.Config) { c.Tenants[0].HeaderTags["X Bad"] = "t" }, []string{"tenants[0].header_tags.X Bad: not a header field name"}},
		{"two headers, one tag", func(c *config.Config) { c.Tenants[0].HeaderTags["X-Other"] = "campaign" }, []string{`tag "campaign" is also set by header`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := testConfig()
			c.change(cfg)
			r, err := Compile(cfg)
			if err == nil {
				t.Fatalf("compiled: %v", r)
			}
			if _, ok := err.(*config.Errors); !ok {
				t.Errorf("error is %T, want *config.Errors", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestClassOf(t *testing.T) {
	want := map[Reason]Class{
		FromMissing:                ClassContent,
		FromMultiple:               ClassContent,
		FromGroup:                  ClassContent,
		AddressInvalid:             ClassContent,
		FromNotOwned:               ClassPolicy,
		SenderNotOwned:             ClassPolicy,
		ResentNotOwned:             ClassPolicy,
		MailFromNotOwned:           ClassPolicy,
		ConfigurationSetNotAllowed: ClassPolicy,
		DKIMKeyMissing:             ClassPolicy,
		"some_future_reason":       ClassPolicy,
	}
	if len(Reasons()) != len(want)-1 {
		t.Fatalf("Reasons() has %d, the table %d", len(Reasons()), len(want)-1)
	}
	for _, r := range Reasons() {
		if _, ok := want[r]; !ok {
			t.Errorf("reason %s missing from this table", r)
		}
	}
	for r, c := range want {
		if got := ClassOf(r); got != c {
			t.Errorf("ClassOf(%s) = %s, want %s", r, got, c)
		}
	}
}
