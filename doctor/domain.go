package doctor

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/sesv2/types"

	"github.com/sesrelay/sesrelay/config"
)

// tri is a fact that may be unknown (a lookup failed, SES not asked).
type tri int8

const (
	unknown tri = iota
	yes
	no
)

func triOf(b bool) tri {
	if b {
		return yes
	}
	return no
}

// all combines per-region facts: yes only if every one is yes.
func all(ts ...tri) tri {
	if len(ts) == 0 {
		return unknown
	}
	out := yes
	for _, t := range ts {
		switch t {
		case no:
			return no
		case unknown:
			out = unknown
		}
	}
	return out
}

// domainRun is one domain entry being checked.
type domainRun struct {
	*run
	t   *config.Tenant
	rep DomainReport

	domain   string // checked: the entry without "*."
	wildcard bool
	from     string // a From domain the verdict is about (a subdomain for a wildcard)

	relayKey *config.DKIMKey
	relayOK  tri
	dmarc    *dmarcRecord
	dmarcOK  tri

	offline   bool
	delegated bool
	regions   []string
	idents    map[string]*identityFacts // by region; nil entry: lookup failed
	sendable  []tri
	dkimDNS   map[string]tri // Easy DKIM CNAME results by token set
	mailFromD map[string]mailFromDNS
	steps     map[string]bool
	problems  []string
}

// identityFacts is what GetEmailIdentity said in one region.
type identityFacts struct {
	name     string // the identity (the domain or a parent)
	verified bool
	dkim     *types.DkimAttributes
	origin   string // Easy DKIM, BYODKIM, Easy DKIM replica of REGION (DEED)
	dkimOK   tri    // SES signs, its DNS records are in place
	mailFrom *types.MailFromAttributes
	spfOK    tri
	defSet   string
}

type mailFromDNS struct{ mx, spf tri }

func (r *run) domain(ctx context.Context, t *config.Tenant, entry string) DomainReport {
	d := &domainRun{
		run:       r,
		t:         t,
		rep:       DomainReport{Tenant: t.Name, Entry: entry, Checks: []Check{}},
		idents:    map[string]*identityFacts{},
		dkimDNS:   map[string]tri{},
		mailFromD: map[string]mailFromDNS{},
		steps:     map[string]bool{},
		offline:   r.o.SES == nil,
	}
	d.domain = strings.TrimPrefix(entry, "*.")
	d.wildcard = d.domain != entry
	d.from = d.domain
	if d.wildcard {
		d.from = "sub." + d.domain // any subdomain: alignment and DMARC lookups only look at its shape
		d.add(Check{ID: "wildcard", Status: Info,
			Summary: fmt.Sprintf("%s covers the subdomains of %s: checked are %s's records, which subdomains without their own inherit", entry, d.domain, d.domain),
			Notes: []string{
				"a subdomain with its own SES identity, relay DKIM key or _dmarc record needs its own records: list it as a domain to check it",
			}})
	}
	d.rep.Domain = d.domain
	// One file per check: DNS checks in check_relaydkim.go, check_dmarc.go
	// and check_sesrecords.go; SES API checks in check_identity.go and
	// check_configsets.go; the verdict below combines their facts.
	d.checkRelayDKIM(ctx)
	d.checkDMARC(ctx)
	d.checkSES(ctx)
	d.verdict()
	return d.rep
}

func (d *domainRun) add(c Check) { d.rep.Checks = append(d.rep.Checks, c) }

func (d *domainRun) step(s Step) {
	k := s.Where + "|" + s.Action
	if s.Record != nil {
		k += "|" + s.Record.Name + "|" + s.Record.Type + "|" + s.Record.Value
	}
	if !d.steps[k] {
		d.steps[k] = true
		d.rep.Steps = append(d.rep.Steps, s)
	}
}

func (d *domainRun) problem(format string, args ...any) {
	p := fmt.Sprintf(format, args...)
	if !slices.Contains(d.problems, p) {
		d.problems = append(d.problems, p)
	}
}

func (d *domainRun) lookupCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return d.withTimeout(ctx)
}

// keyFor returns the tenant's key for domain or its nearest parent, first
// listed wins: the key the relay signs mail From that domain with.
func keyFor(t *config.Tenant, domain string) *config.DKIMKey {
	for d := domain; ; {
		for i := range t.DKIM {
			if t.DKIM[i].Domain == d {
				return &t.DKIM[i]
			}
		}
		i := strings.IndexByte(d, '.')
		if i < 0 {
			return nil
		}
		d = d[i+1:]
	}
}

// subject names the From domains the verdict is about.
func (d *domainRun) subject() string {
	if d.wildcard {
		return "subdomains of " + d.domain
	}
	return d.domain
}

// ---- verdict ----

func (d *domainRun) verdict() {
	v := Verdict{}
	relay := d.relayOK
	if relay == yes && d.dmarc != nil && !aligned(d.dmarc.ADKIM == "s", d.relayKey.Domain, d.from) {
		relay = no
		d.problem("the relay signs d=%s, which does not align with %s under adkim=s", d.relayKey.Domain, d.subject())
	}
	sesDKIM, spf := unknown, unknown
	if !d.offline && !d.delegated {
		var ds, ss []tri
		for _, region := range d.regions {
			f := d.idents[region]
			if f == nil {
				ds, ss = append(ds, unknown), append(ss, unknown)
				continue
			}
			ds, ss = append(ds, f.dkimOK), append(ss, f.spfOK)
		}
		sesDKIM, spf = all(ds...), all(ss...)
	}
	if relay == yes {
		v.Via = append(v.Via, fmt.Sprintf("DKIM d=%s s=%s (relay)", d.relayKey.Domain, d.relayKey.Selector))
	}
	if sesDKIM == yes {
		f := d.idents[d.regions[0]]
		v.Via = append(v.Via, fmt.Sprintf("DKIM d=%s (SES %s)", f.name, f.origin))
	}
	if spf == yes {
		var ms []string
		for _, region := range d.regions {
			if m := strings.ToLower(deref(d.idents[region].mailFrom.MailFromDomain)); !slices.Contains(ms, m) {
				ms = append(ms, m)
			}
		}
		v.Via = append(v.Via, "SPF "+strings.Join(ms, ", ")+" (custom MAIL FROM)")
	}
	dkim := relay == yes || sesDKIM == yes
	switch {
	case dkim && spf == yes:
		v.Alignment = "both"
	case dkim:
		v.Alignment = "dkim"
	case spf == yes:
		v.Alignment = "spf"
	case relay == unknown || sesDKIM == unknown || spf == unknown:
		v.Alignment = Unknown
	default:
		v.Alignment = "none"
	}

	if v.Alignment == "none" {
		d.problem("nothing aligns with %s: neither DKIM (relay or SES) nor SPF (custom MAIL FROM)", d.subject())
	}
	if v.Alignment == Unknown && d.offline {
		d.problem("SES not checked (--offline) and no working relay DKIM key: alignment cannot be confirmed")
	}
	if !dkim && spf != yes && !d.offline && !d.delegated && d.relayKey == nil {
		// The cheapest route to alignment the checks have not already
		// spelled out.
		for _, region := range d.regions {
			if f := d.idents[region]; f != nil && f.name != "" && (f.mailFrom == nil || deref(f.mailFrom.MailFromDomain) == "") {
				d.step(Step{Where: "ses", Action: fmt.Sprintf("set a custom MAIL FROM domain (e.g. mail.%s) on identity %s in %s, or add a relay DKIM key for %s", f.name, f.name, region, d.domain)})
			}
		}
	}
	sendable := all(append([]tri{yes}, d.sendable...)...)
	switch {
	case d.dmarcOK == no || sendable == no || v.Alignment == "none":
		v.Result = Failing
	case d.dmarcOK == yes && sendable == yes && v.Alignment != Unknown:
		v.Result = Pass
	default:
		v.Result = Unknown
	}
	if v.Result != Pass {
		v.Problems = d.problems
	}
	d.rep.Verdict = v
}
