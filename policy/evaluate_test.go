package policy

import (
	"net/mail"
	"reflect"
	"strings"
	"testing"

	"github.com/sesrelay/sesrelay/config"
)

type evalCase struct {
	name     string
	tenant   string
	mailFrom string
	header   string
	reason   Reason // "" = accepted
	field    string // checked when set
	domain   string // expected FromDomain, checked when set
	detail   string // text the detail must contain, when set
}

func runEval(t *testing.T, r *Rules, cases []evalCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ten := r.Tenant(c.tenant)
			if ten == nil {
				t.Fatalf("no tenant %q", c.tenant)
			}
			d := ten.Evaluate(Envelope{From: c.mailFrom, To: []string{"rcpt@example.org"}}, header(t, c.header))
			switch {
			case c.reason == "" && d.Reject != nil:
				t.Fatalf("rejected: %s", d.Reject)
			case c.reason != "" && d.Reject == nil:
				t.Fatalf("accepted, want %s", c.reason)
			case c.reason != "" && d.Reject.Reason != c.reason:
				t.Fatalf("rejected with %s, want %s", d.Reject, c.reason)
			}
			if c.field != "" && d.Reject != nil && d.Reject.Field != c.field {
				t.Errorf("field = %q, want %q", d.Reject.Field, c.field)
			}
			if c.domain != "" && d.FromDomain != c.domain {
				t.Errorf("FromDomain = %q, want %q", d.FromDomain, c.domain)
			}
			if c.detail != "" && !strings.Contains(d.Reject.Detail, c.detail) {
				t.Errorf("detail %q does not contain %q", d.Reject.Detail, c.detail)
			}
			if d.Reject != nil {
				checkDetail(t, d.Reject.Detail)
			}
		})
	}
}

// checkDetail: one printable ASCII line, safe for a log or a reply.
func checkDetail(t testing.TB, s string) {
	t.Helper()
	if s == "" {
		t.Error("empty detail")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			t.Fatalf("detail has byte %#x: %q", s[i], s)
		}
	}
}

func TestAlignment(t *testing.T) {
	runEval(t, testRules(t), []evalCase{
		{name: "exact", tenant: "billing", header: "From: Billing <billing@billing.example.com>", domain: "billing.example.com"},
		{name: "bare address", tenant: "billing", header: "From: billing@billing.example.com", domain: "billing.example.com"},
		{name: "subdomain via wildcard", tenant: "billing", header: "From: x@eu.billing.example.com", domain: "eu.billing.example.com"},
		{name: "deep subdomain via wildcard", tenant: "billing", header: "From: x@a.b.c.billing.example.com"},
		{name: "wildcard is not the parent", tenant: "books", header: "From: x@xn--mnchen-3ya.example", reason: FromNotOwned},
		{name: "exact entry owns no subdomain", tenant: "root", header: "From: x@www.example.com", reason: FromNotOwned},
		{name: "exact entry written with case and dot", tenant: "root", header: "From: x@example.com", domain: "example.com"},
		{name: "label boundary: evil-example.com", tenant: "root", header: "From: x@evil-example.com", reason: FromNotOwned, field: "From"},
		{name: "label boundary: xexample.com", tenant: "root", header: "From: x@xexample.com", reason: FromNotOwned},
		{name: "label boundary: wildcard xbilling", tenant: "billing", header: "From: x@xbilling.example.com", reason: FromNotOwned},
		{name: "label boundary: wildcard evil-billing", tenant: "billing", header: "From: x@evil-billing.example.com", reason: FromNotOwned},
		{name: "suffix is not ownership", tenant: "root", header: "From: x@example.com.evil.net", reason: FromNotOwned},
		{name: "parent of tenant domain", tenant: "billing", header: "From: x@example.com", reason: FromNotOwned},
		{name: "upper case", tenant: "billing", header: "From: X@BILLING.Example.COM", domain: "billing.example.com"},
		// RFC 5322 dot-atom: a header address cannot end in a dot (the
		// envelope and OwnsDomain accept one, see TestMailFrom and TestOwnsDomain).
		{name: "trailing dot", tenant: "billing", header: "From: <x@billing.example.com.>", reason: AddressInvalid},
		{name: "IDN unicode From, unicode config", tenant: "books", header: "From: leser@bücher.example", domain: "xn--bcher-kva.example"},
		{name: "IDN punycode From, unicode config", tenant: "books", header: "From: leser@xn--bcher-kva.example", domain: "xn--bcher-kva.example"},
		{name: "IDN punycode From upper case", tenant: "books", header: "From: leser@XN--BCHER-KVA.example"},
		{name: "IDN unicode From, punycode wildcard", tenant: "books", header: "From: x@shop.münchen.example", domain: "shop.xn--mnchen-3ya.example"},
		{name: "IDN unicode upper case", tenant: "books", header: "From: x@BÜCHER.example"},
		{name: "IDN lookalike is another domain", tenant: "books", header: "From: x@bucher.example", reason: FromNotOwned},
		{name: "fullwidth dot maps to dot", tenant: "billing", header: "From: x@billing.example．com", domain: "billing.example.com"},
		{name: "org domain: a may not send as b", tenant: "a", header: "From: x@b.example.com", reason: FromNotOwned, detail: "a.example.com"},
		{name: "org domain: b may not send as a", tenant: "b", header: "From: x@a.example.com", reason: FromNotOwned, detail: "b.example.com"},
		{name: "org domain: a sends as a", tenant: "a", header: "From: x@a.example.com"},
		{name: "org domain: a may not send as the org domain", tenant: "a", header: "From: x@example.com", reason: FromNotOwned},
		{name: "another tenant's domain", tenant: "billing", header: "From: x@a.example.com", reason: FromNotOwned, detail: `"x@a.example.com" is not in the domains of tenant "billing"; use an address in billing.example.com, *.billing.example.com`},
		{name: "quoted local part with @", tenant: "a", header: `From: "x@b.example.com"@a.example.com`},
		{name: "quoted local part hiding a foreign domain", tenant: "b", header: `From: "x@b.example.com"@a.example.com`, reason: FromNotOwned},
		{name: "display name is not the address", tenant: "a", header: `From: "x@a.example.com" <x@b.example.com>`, reason: FromNotOwned},
		{name: "comment is not the address", tenant: "a", header: `From: x@b.example.com (x@a.example.com)`, reason: FromNotOwned},
		{name: "domain literal", tenant: "a", header: `From: x@[192.0.2.1]`, reason: FromNotOwned},
		{name: "single-label domain", tenant: "a", header: `From: root@localhost`, reason: FromNotOwned},
		{name: "empty label", tenant: "billing", header: `From: x@a..billing.example.com`, reason: AddressInvalid},
		{name: "RFC 2047 display name", tenant: "a", header: "From: =?utf-8?q?J=C3=B6rg?= <j@a.example.com>"},
		{name: "unknown charset in display name", tenant: "a", header: "From: =?x-unknown?q?J=F6rg?= <j@a.example.com>"},
		{name: "folded From", tenant: "a", header: "From: Someone\n <j@a.example.com>"},
		{name: "lower case field name", tenant: "a", header: "from: j@b.example.com", reason: FromNotOwned},
		{name: "space before colon", tenant: "a", header: "From : j@b.example.com", reason: FromNotOwned},
	})
}

func TestFromStructure(t *testing.T) {
	runEval(t, testRules(t), []evalCase{
		{name: "no From", tenant: "a", header: "Subject: hi", reason: FromMissing, detail: "a.example.com"},
		{name: "empty header", tenant: "a", header: "", reason: FromMissing},
		{name: "empty From", tenant: "a", header: "From:   ", reason: FromMissing},
		{name: "two From fields", tenant: "a", header: "From: x@a.example.com\nFrom: y@a.example.com", reason: FromMultiple},
		{name: "two From fields, second foreign", tenant: "a", header: "From: x@a.example.com\nSubject: s\nfrom: y@b.example.com", reason: FromMultiple},
		{name: "two mailboxes", tenant: "a", header: "From: x@a.example.com, y@a.example.com", reason: FromMultiple, detail: `"x@a.example.com", "y@a.example.com"`},
		{name: "two mailboxes, second foreign", tenant: "a", header: "From: x@a.example.com, Y <y@b.example.com>", reason: FromMultiple},
		{name: "trailing comma is one mailbox", tenant: "a", header: "From: x@a.example.com,"},
		{name: "group", tenant: "a", header: "From: Team: x@a.example.com;", reason: FromGroup},
		{name: "group of two", tenant: "a", header: "From: Team: x@a.example.com, y@a.example.com;", reason: FromGroup},
		{name: "empty group", tenant: "a", header: "From: undisclosed-recipients:;", reason: FromGroup},
		{name: "mailbox then group", tenant: "a", header: "From: x@a.example.com, g: y@b.example.com;", reason: FromGroup},
		{name: "group hiding a foreign mailbox", tenant: "a", header: "From: g: y@b.example.com;", reason: FromGroup},
		{name: "colon in quoted name is no group", tenant: "a", header: `From: "Re: x" <x@a.example.com>`},
		{name: "colon in comment is no group", tenant: "a", header: `From: x@a.example.com (a: b)`},
		{name: "escaped quote", tenant: "a", header: `From: "a \" b" <x@a.example.com>`},
		{name: "garbage", tenant: "a", header: "From: not an address", reason: AddressInvalid},
		{name: "no angle close", tenant: "a", header: "From: X <x@a.example.com", reason: AddressInvalid},
		{name: "unterminated quote", tenant: "a", header: `From: "x <x@a.example.com>`, reason: AddressInvalid},
		{name: "unterminated comment", tenant: "a", header: `From: x@a.example.com (a: b`, reason: AddressInvalid},
		{name: "source route", tenant: "a", header: `From: <@b.example.com:x@a.example.com>`, reason: FromGroup},
		{name: "address then junk", tenant: "a", header: `From: x@a.example.com <y@b.example.com>`, reason: AddressInvalid},
	})
}

func TestSenderAndResent(t *testing.T) {
	runEval(t, testRules(t), []evalCase{
		{name: "owned Sender", tenant: "billing", header: "From: x@billing.example.com\nSender: y@eu.billing.example.com"},
		{name: "foreign Sender", tenant: "billing", header: "From: x@billing.example.com\nSender: y@a.example.com", reason: SenderNotOwned, field: "Sender", detail: `Sender address "y@a.example.com"`},
		{name: "second Sender foreign", tenant: "billing", header: "From: x@billing.example.com\nSender: y@billing.example.com\nSender: z@a.example.com", reason: SenderNotOwned},
		{name: "Sender group", tenant: "billing", header: "From: x@billing.example.com\nSender: g: y@billing.example.com;", reason: AddressInvalid, field: "Sender"},
		{name: "Sender empty", tenant: "billing", header: "From: x@billing.example.com\nSender:", reason: AddressInvalid, field: "Sender"},
		{name: "Sender garbage", tenant: "billing", header: "From: x@billing.example.com\nSender: nobody", reason: AddressInvalid},
		{name: "Resent-From owned", tenant: "billing", header: "From: x@billing.example.com\nResent-From: r@billing.example.com, s@eu.billing.example.com"},
		{name: "Resent-From second mailbox foreign", tenant: "billing", header: "From: x@billing.example.com\nResent-From: r@billing.example.com, s@b.example.com", reason: ResentNotOwned, field: "Resent-From"},
		{name: "Resent-From second block foreign", tenant: "billing", header: "From: x@billing.example.com\nResent-From: r@billing.example.com\nResent-From: r@b.example.com", reason: ResentNotOwned},
		{name: "Resent-Sender foreign", tenant: "billing", header: "From: x@billing.example.com\nResent-Sender: r@evil-billing.example.com", reason: ResentNotOwned, field: "Resent-Sender"},
		{name: "Resent-Sender owned", tenant: "billing", header: "From: x@billing.example.com\nResent-Sender: r@BILLING.example.com"},
		{name: "Resent-From group", tenant: "billing", header: "From: x@billing.example.com\nResent-From: g:;", reason: AddressInvalid, field: "Resent-From"},
		{name: "foreign Sender under rewrite still rejects", tenant: "rw", header: "From: x@gmail.example\nSender: y@gmail.example", reason: SenderNotOwned},
		{name: "foreign Resent-From under rewrite still rejects", tenant: "rw", header: "From: x@rw.example.net\nResent-From: y@gmail.example", reason: ResentNotOwned},
	})
}

func TestMailFrom(t *testing.T) {
	r := testRules(t)
	runEval(t, r, []evalCase{
		{name: "null sender", tenant: "a", mailFrom: "", header: "From: x@a.example.com"},
		{name: "owned", tenant: "a", mailFrom: "bounce@A.example.com.", header: "From: x@a.example.com"},
		{name: "foreign", tenant: "a", mailFrom: "bounce@b.example.com", header: "From: x@a.example.com", reason: MailFromNotOwned, field: "MAIL FROM"},
		{name: "trap", tenant: "root", mailFrom: "bounce@evil-example.com", header: "From: x@example.com", reason: MailFromNotOwned},
		{name: "no domain", tenant: "a", mailFrom: "postmaster", header: "From: x@a.example.com", reason: AddressInvalid},
		{name: "empty local part", tenant: "a", mailFrom: "@a.example.com", header: "From: x@a.example.com", reason: AddressInvalid},
		{name: "foreign under rewrite", tenant: "rw", mailFrom: "x@gmail.example", header: "From: x@gmail.example", reason: MailFromNotOwned},
	})
	ten := r.Tenant("a")
	for addr, want := range map[string]Reason{
		"":                     "",
		"x@a.example.com":      "",
		`"x y"@a.example.com`:  "",
		"x@b.example.com":      MailFromNotOwned,
		"x@a.example.com@evil": MailFromNotOwned,
		"x\r\n@a.example.com":  AddressInvalid,
		"x@":                   AddressInvalid,
	} {
		d := ten.CheckMailFrom(addr)
		switch {
		case want == "" && d != nil:
			t.Errorf("CheckMailFrom(%q) = %s", addr, d.Reject)
		case want != "" && (d == nil || d.Reject.Reason != want):
			t.Errorf("CheckMailFrom(%q) = %v, want %s", addr, d, want)
		case d != nil:
			checkDetail(t, d.Reject.Detail)
		}
	}
}

func TestRewrite(t *testing.T) {
	r := testRules(t)
	rw := r.Tenant("rw")
	for _, c := range []struct {
		name   string
		header string
		want   *FromRewrite
		domain string
	}{
		{
			name:   "owned From is never rewritten",
			header: "From: App <app@rw.example.net>",
			domain: "rw.example.net",
		},
		{
			name:   "owned subdomain is never rewritten",
			header: "From: app@eu.RW.example.net",
			domain: "eu.rw.example.net",
		},
		{
			name:   "foreign From with name",
			header: "From: Jane Doe <jane@gmail.example>",
			want: &FromRewrite{
				Cause:   RewriteFromPolicy,
				NewFrom: "noreply@rw.example.net", DisplayName: "Jane Doe via rw",
				Original: mail.Address{Name: "Jane Doe", Address: "jane@gmail.example"}, ReplyTo: "jane@gmail.example",
			},
			domain: "gmail.example",
		},
		{
			name:   "foreign From without name",
			header: "From: jane@gmail.example",
			want: &FromRewrite{
				Cause:   RewriteFromPolicy,
				NewFrom: "noreply@rw.example.net", DisplayName: "jane@gmail.example via rw",
				Original: mail.Address{Address: "jane@gmail.example"}, ReplyTo: "jane@gmail.example",
			},
			domain: "gmail.example",
		},
		{
			name:   "existing Reply-To is kept",
			header: "From: \"Jane\" <jane@gmail.example>\nReply-To: support@rw.example.net",
			want: &FromRewrite{
				Cause:   RewriteFromPolicy,
				NewFrom: "noreply@rw.example.net", DisplayName: "Jane via rw",
				Original: mail.Address{Name: "Jane", Address: "jane@gmail.example"},
			},
			domain: "gmail.example",
		},
		{
			name:   "encoded name is decoded, controls removed",
			header: "From: =?iso-8859-1?q?Ren=E9=09M=2E?= <rene@gmail.example>",
			want: &FromRewrite{
				Cause:   RewriteFromPolicy,
				NewFrom: "noreply@rw.example.net", DisplayName: "René M. via rw",
				Original: mail.Address{Name: "René M.", Address: "rene@gmail.example"}, ReplyTo: "rene@gmail.example",
			},
			domain: "gmail.example",
		},
		{
			name:   "windows-1252 name",
			header: "From: =?windows-1252?q?=93Q=94?= <q@gmail.example>",
			want: &FromRewrite{
				Cause:   RewriteFromPolicy,
				NewFrom: "noreply@rw.example.net", DisplayName: "\u201cQ\u201d via rw",
				Original: mail.Address{Name: "\u201cQ\u201d", Address: "q@gmail.example"}, ReplyTo: "q@gmail.example",
			},
			domain: "gmail.example",
		},
		{
			name:   "single-label domain is rewritten",
			header: "From: root@localhost",
			want: &FromRewrite{
				Cause:   RewriteFromPolicy,
				NewFrom: "noreply@rw.example.net", DisplayName: "root@localhost via rw",
				Original: mail.Address{Address: "root@localhost"}, ReplyTo: "root@localhost",
			},
		},
		{
			name:   "label-boundary trap is rewritten",
			header: "From: x@evil-rw.example.net",
			want: &FromRewrite{
				Cause:   RewriteFromPolicy,
				NewFrom: "noreply@rw.example.net", DisplayName: "x@evil-rw.example.net via rw",
				Original: mail.Address{Address: "x@evil-rw.example.net"}, ReplyTo: "x@evil-rw.example.net",
			},
			domain: "evil-rw.example.net",
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := rw.Evaluate(Envelope{}, header(t, c.header))
			if d.Reject != nil {
				t.Fatalf("rejected: %s", d.Reject)
			}
			if !reflect.DeepEqual(d.Rewrite, c.want) {
				t.Fatalf("Rewrite = %+v\nwant      %+v", d.Rewrite, c.want)
			}
			if d.FromDomain != c.domain {
				t.Errorf("FromDomain = %q, want %q", d.FromDomain, c.domain)
			}
			// The key and the from_domain tag follow the From that is sent.
			if d.DKIM == nil || d.DKIM.Selector != "r1" {
				t.Errorf("DKIM = %+v, want the rw.example.net key", d.DKIM)
			}
			if c.want != nil && tagValue(d.Tags, TagFromDomain) != "rw_example_net" {
				t.Errorf("from_domain tag = %q", tagValue(d.Tags, TagFromDomain))
			}
		})
	}
	// Structural errors are not rewritten away.
	runEval(t, r, []evalCase{
		{name: "rewrite: two mailboxes", tenant: "rw", header: "From: a@gmail.example, b@gmail.example", reason: FromMultiple},
		{name: "rewrite: group", tenant: "rw", header: "From: g: a@gmail.example;", reason: FromGroup},
		{name: "rewrite: missing", tenant: "rw", header: "To: x@y.example", reason: FromMissing},
		{name: "rewrite: garbage", tenant: "rw", header: "From: <<>>", reason: AddressInvalid},
	})
}

func TestConfigurationSet(t *testing.T) {
	r := testRules(t)
	for _, c := range []struct {
		name, tenant, header string
		want                 string
		reject               bool
	}{
		{name: "default", tenant: "billing", header: "", want: "billing-tx"},
		{name: "header names the default", tenant: "billing", header: "X-SES-CONFIGURATION-SET: billing-tx", want: "billing-tx"},
		{name: "header names an allowed set", tenant: "billing", header: "X-SES-CONFIGURATION-SET: billing-bulk", want: "billing-bulk"},
		{name: "any case of the field name", tenant: "billing", header: "x-ses-configuration-set:  billing-bulk ", want: "billing-bulk"},
		{name: "empty value is ignored", tenant: "billing", header: "X-SES-CONFIGURATION-SET:", want: "billing-tx"},
		{name: "same value twice", tenant: "billing", header: "X-SES-CONFIGURATION-SET: billing-bulk\nX-SES-CONFIGURATION-SET: billing-bulk", want: "billing-bulk"},
		{name: "different values", tenant: "billing", header: "X-SES-CONFIGURATION-SET: billing-bulk\nX-SES-CONFIGURATION-SET: billing-tx", reject: true},
		{name: "another tenant's set", tenant: "billing", header: "X-SES-CONFIGURATION-SET: a-tx", reject: true},
		{name: "value case matters", tenant: "billing", header: "X-SES-CONFIGURATION-SET: Billing-Bulk", reject: true},
		{name: "tenant without sets", tenant: "a", header: "X-SES-CONFIGURATION-SET: billing-tx", reject: true},
		{name: "tenant without sets, no header", tenant: "a", header: "", want: ""},
		{name: "other X-SES fields change nothing", tenant: "billing", header: "X-SES-MESSAGE-TAGS: tenant=a, campaign=x\nX-SES-SOURCE-ARN: arn:aws:ses:us-east-1:123456789012:identity/a.example.com\nX-SES-FROM-ARN: x\nX-SES-RETURN-PATH-ARN: y", want: "billing-tx"},
	} {
		t.Run(c.name, func(t *testing.T) {
			from := map[string]string{"billing": "x@billing.example.com", "a": "x@a.example.com"}[c.tenant]
			h := "From: " + from
			if c.header != "" {
				h += "\n" + c.header
			}
			d := r.Tenant(c.tenant).Evaluate(Envelope{}, header(t, h))
			if c.reject {
				if d.Reject == nil || d.Reject.Reason != ConfigurationSetNotAllowed || d.Reject.Field != "X-SES-CONFIGURATION-SET" {
					t.Fatalf("Reject = %v, want configuration_set_not_allowed", d.Reject)
				}
				checkDetail(t, d.Reject.Detail)
				return
			}
			if d.Reject != nil {
				t.Fatalf("rejected: %s", d.Reject)
			}
			if d.ConfigurationSet != c.want {
				t.Fatalf("ConfigurationSet = %q, want %q", d.ConfigurationSet, c.want)
			}
			if c.name == "other X-SES fields change nothing" {
				want := r.Tenant("billing").Evaluate(Envelope{}, header(t, "From: "+from))
				if !reflect.DeepEqual(d, want) {
					t.Fatalf("X-SES-* fields changed the decision:\n%+v\n%+v", d, want)
				}
			}
		})
	}
	d := r.Tenant("billing").Evaluate(Envelope{}, header(t, "From: x@billing.example.com\nX-SES-CONFIGURATION-SET: a-tx"))
	if want := `X-SES-CONFIGURATION-SET "a-tx" is not a configuration set tenant "billing" may use; allowed: billing-tx, billing-bulk`; d.Reject.Detail != want {
		t.Errorf("detail:\n got %s\nwant %s", d.Reject.Detail, want)
	}
}

func tagValue(tags []Tag, name string) string {
	for _, g := range tags {
		if g.Name == name {
			return g.Value
		}
	}
	return ""
}

func TestTags(t *testing.T) {
	r := testRules(t)
	long := strings.Repeat("é", 300)
	for _, c := range []struct {
		name, tenant, header string
		want                 []Tag
	}{
		{
			name: "static and automatic", tenant: "billing", header: "From: x@EU.billing.example.com",
			want: []Tag{{"Team", "billing"}, {"from_domain", "eu_billing_example_com"}, {"stream", "transactional"}, {"tenant", "billing"}},
		},
		{
			name: "header tag", tenant: "billing", header: "From: x@billing.example.com\nX-Campaign: spring-2026",
			want: []Tag{{"Team", "billing"}, {"campaign", "spring-2026"}, {"from_domain", "billing_example_com"}, {"stream", "transactional"}, {"tenant", "billing"}},
		},
		{
			name: "header tag overrides static tag", tenant: "billing", header: "From: x@billing.example.com\nX-Stream: bulk",
			want: []Tag{{"Team", "billing"}, {"from_domain", "billing_example_com"}, {"stream", "bulk"}, {"tenant", "billing"}},
		},
		{
			name: "sanitized", tenant: "billing", header: "From: x@billing.example.com\nX-Campaign:  Spring sale! 50% (é) ",
			want: []Tag{{"Team", "billing"}, {"campaign", "Spring_sale__50_____"}, {"from_domain", "billing_example_com"}, {"stream", "transactional"}, {"tenant", "billing"}},
		},
		{
			name: "encoded word decoded then sanitized", tenant: "billing", header: "From: x@billing.example.com\nX-Campaign: =?utf-8?q?caf=C3=A9-1?=",
			want: []Tag{{"Team", "billing"}, {"campaign", "caf_-1"}, {"from_domain", "billing_example_com"}, {"stream", "transactional"}, {"tenant", "billing"}},
		},
		{
			name: "empty value dropped", tenant: "billing", header: "From: x@billing.example.com\nX-Campaign:   \nX-Stream:",
			want: []Tag{{"Team", "billing"}, {"from_domain", "billing_example_com"}, {"stream", "transactional"}, {"tenant", "billing"}},
		},
		{
			name: "first field wins", tenant: "billing", header: "From: x@billing.example.com\nX-Campaign: one\nX-Campaign: two",
			want: []Tag{{"Team", "billing"}, {"campaign", "one"}, {"from_domain", "billing_example_com"}, {"stream", "transactional"}, {"tenant", "billing"}},
		},
		{
			name: "cut to 256", tenant: "billing", header: "From: x@billing.example.com\nX-Campaign: " + long,
			want: []Tag{{"Team", "billing"}, {"campaign", strings.Repeat("_", 256)}, {"from_domain", "billing_example_com"}, {"stream", "transactional"}, {"tenant", "billing"}},
		},
		{
			name: "X-SES-MESSAGE-TAGS is ignored", tenant: "billing", header: "From: x@billing.example.com\nX-SES-MESSAGE-TAGS: tenant=a, campaign=evil",
			want: []Tag{{"Team", "billing"}, {"from_domain", "billing_example_com"}, {"stream", "transactional"}, {"tenant", "billing"}},
		},
		{
			name: "IDN domain", tenant: "books", header: "From: x@bücher.example",
			want: []Tag{{"from_domain", "xn--bcher-kva_example"}, {"tenant", "books"}},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := r.Tenant(c.tenant).Evaluate(Envelope{}, header(t, c.header))
			if d.Reject != nil {
				t.Fatalf("rejected: %s", d.Reject)
			}
			if !reflect.DeepEqual(d.Tags, c.want) {
				t.Fatalf("Tags =\n %v\nwant\n %v", d.Tags, c.want)
			}
		})
	}
}

func TestSanitizeTagValue(t *testing.T) {
	for in, want := range map[string]string{
		"":                       "",
		"abc-DEF_123":            "abc-DEF_123",
		"a.b":                    "a_b",
		"a b\tc":                 "a_b_c",
		"ü":                      "_",
		"日本":                     "__",
		"\xff\xfe":               "__",
		strings.Repeat("a", 300): strings.Repeat("a", 256),
		strings.Repeat(".", 300): strings.Repeat("_", 256),
	} {
		if got := SanitizeTagValue(in); got != want {
			t.Errorf("SanitizeTagValue(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDKIMKeyChoice(t *testing.T) {
	r := testRules(t)
	for _, c := range []struct {
		name, tenant, from string
		selector           string // "" = no key
		reject             bool
	}{
		{name: "exact", tenant: "signer", from: "x@signer.example", selector: "new"},
		{name: "first listed wins, any case", tenant: "signer", from: "x@SIGNER.example", selector: "new"},
		{name: "exact subdomain key", tenant: "signer", from: "x@mail.signer.example", selector: "mail"},
		{name: "nearest parent", tenant: "signer", from: "x@eu.mail.signer.example", selector: "mail"},
		{name: "parent", tenant: "signer", from: "x@news.signer.example", selector: "new"},
		{name: "no key, not required", tenant: "loose", from: "x@loose.example"},
		{name: "no key for sibling", tenant: "loose", from: "x@news.loose.example"},
		{name: "child key is not used for parent", tenant: "loose", from: "x@loose.example"},
		{name: "key of subdomain", tenant: "loose", from: "x@a.mail.loose.example", selector: "m"},
		{name: "tenant without keys", tenant: "a", from: "x@a.example.com"},
		{name: "required and found", tenant: "rw", from: "x@eu.rw.example.net", selector: "r1"},
		{name: "not required, key found", tenant: "billing", from: "x@billing.example.com", selector: "s1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := r.Tenant(c.tenant).Evaluate(Envelope{}, header(t, "From: "+c.from))
			if d.Reject != nil {
				t.Fatalf("rejected: %s", d.Reject)
			}
			got := ""
			if d.DKIM != nil {
				got = d.DKIM.Selector
			}
			if got != c.selector {
				t.Fatalf("selector = %q, want %q", got, c.selector)
			}
		})
	}
}

func TestDKIMRequired(t *testing.T) {
	cfg := testConfig()
	cfg.Tenants = append(cfg.Tenants, testConfig().Tenants[0])
	req := &cfg.Tenants[len(cfg.Tenants)-1]
	req.Name, req.Users = "req", nil
	req.Domains = []string{"req.example", "*.req.example"}
	req.DKIM = []config.DKIMKey{{Domain: "mail.req.example", Selector: "m", Signer: testKey(9)}}
	req.DKIMRequired = true
	r, err := Compile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	runEval(t, r, []evalCase{
		{name: "key", tenant: "req", header: "From: x@a.mail.req.example"},
		{name: "no key for the domain", tenant: "req", header: "From: x@req.example", reason: DKIMKeyMissing, field: "From",
			detail: `tenant "req" requires DKIM signing but has no key for the From domain req.example; its keys cover mail.req.example`},
		{name: "no key for a sibling", tenant: "req", header: "From: x@news.req.example", reason: DKIMKeyMissing},
	})
}
