package doctor

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	"github.com/aws/aws-sdk-go-v2/service/sesv2/types"

	"github.com/sesrelay/sesrelay/config"
	"github.com/sesrelay/sesrelay/headers"
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

// ---- relay DKIM ----

func (d *domainRun) checkRelayDKIM(ctx context.Context) {
	d.relayKey = keyFor(d.t, d.domain)
	d.relayOK = d.checkRelayKey(ctx)
	if d.wildcard {
		// Keys for subdomains under the wildcard sign only their own mail;
		// their records are checked too, without bearing on the verdict.
		for i := range d.t.DKIM {
			k := &d.t.DKIM[i]
			if k != d.relayKey && strings.HasSuffix(k.Domain, "."+d.domain) {
				d.checkKey(ctx, k, fmt.Sprintf("signs mail From %s and its subdomains", k.Domain))
			}
		}
	}
}

func (d *domainRun) checkRelayKey(ctx context.Context) tri {
	if d.relayKey == nil {
		c := Check{ID: "dkim.relay", Status: Info,
			Summary: fmt.Sprintf("no relay DKIM key for %s: the relay passes its mail on unsigned", d.domain),
			Notes:   []string{"SES signs it if DKIM is on for the identity"}}
		if d.t.DKIMRequired && !d.wildcard {
			c.Status = Fail
			c.Summary = fmt.Sprintf("dkim_required is set but no key covers %s: the relay refuses its mail", d.domain)
			c.Notes = nil
			d.sendable = append(d.sendable, no)
			d.problem("the relay refuses mail From %s (dkim_required without a key)", d.domain)
			d.step(Step{Where: "config", Action: fmt.Sprintf("add a DKIM key for %s to tenant %s (sesrelay dkim keygen), or drop dkim_required", d.domain, d.t.Name)})
		}
		d.add(c)
		return no
	}
	note := ""
	if d.relayKey.Domain != d.domain {
		note = fmt.Sprintf("key of the parent domain %s: mail From %s is signed d=%s", d.relayKey.Domain, d.domain, d.relayKey.Domain)
	}
	return d.checkKey(ctx, d.relayKey, note)
}

// checkKey checks that the selector record of k publishes k's public key.
func (d *domainRun) checkKey(ctx context.Context, k *config.DKIMKey, note string) tri {
	name := k.Selector + "._domainkey." + k.Domain
	want, err := headers.DNSRecord(k.Signer)
	c := Check{ID: "dkim.relay"}
	if note != "" {
		c.Notes = append(c.Notes, note)
	}
	if err != nil {
		c.Status, c.Summary = Error, fmt.Sprintf("%s: %v", k.KeyFile, err)
		d.add(c)
		return unknown
	}
	publish := func(action string) {
		d.step(Step{Where: "dns", Action: action, Record: &Record{Name: name, Type: "TXT", Value: want}})
	}
	lctx, cancel := d.lookupCtx(ctx)
	txts, err := d.o.Resolver.LookupTXT(lctx, name)
	cancel()
	if err != nil {
		c.Status, c.Summary = Error, fmt.Sprintf("%s TXT: %v", name, err)
		d.add(c)
		d.problem("relay DKIM record of %s could not be read", k.Domain)
		return unknown
	}
	if len(txts) == 0 {
		c.Status, c.Summary = Fail, fmt.Sprintf("no TXT record at %s: receivers cannot verify the relay's signatures", name)
		d.add(c)
		publish("publish the relay's DKIM key")
		return no
	}
	var matched *dkimKeyRecord
	var why []string
	for _, txt := range txts {
		rec, err := parseDKIMKey(txt)
		switch {
		case err != nil:
			why = append(why, fmt.Sprintf("not a DKIM key record (%v)", err))
		case len(rec.P) == 0:
			why = append(why, "the key is revoked (empty p=)")
		case rec.matches(k.Signer):
			if matched == nil {
				matched = rec
			}
		default:
			why = append(why, fmt.Sprintf("publishes a different %s key (p= differs)", rec.K))
		}
	}
	if len(txts) > 1 {
		c.Notes = append(c.Notes, fmt.Sprintf("%d TXT records at %s: verifiers may use any one of them; keep only the key record", len(txts), name))
	}
	if matched == nil {
		c.Status = Fail
		c.Summary = fmt.Sprintf("%s TXT does not match the configured %s key (%s): %s", name, keyType(k.Signer), k.KeyFile, strings.Join(why, "; "))
		d.add(c)
		publish("replace the record with the relay's current DKIM key")
		return no
	}
	c.Status, c.Summary = OK, fmt.Sprintf("%s TXT matches the configured %s key", name, keyType(k.Signer))
	if matched.Testing {
		c.Status = Warn
		c.Notes = append(c.Notes, "t=y (testing): receivers may treat the signatures as absent; remove t=y once verified")
	}
	d.add(c)
	return yes
}

// ---- DMARC ----

func (d *domainRun) checkDMARC(ctx context.Context) {
	org := orgDomain(d.domain)
	var names []string
	if d.wildcard {
		// A subdomain without its own record falls back to the
		// organizational domain's (RFC 7489 6.6.3), never to an
		// intermediate name.
		names = []string{"_dmarc." + org}
	} else {
		names = []string{"_dmarc." + d.domain}
		if org != d.domain {
			names = append(names, "_dmarc."+org)
		}
	}
	c := Check{ID: "dmarc"}
	suggest := func(action string) {
		name := names[0]
		d.step(Step{Where: "dns", Action: action, Record: &Record{Name: name, Type: "TXT", Value: "v=DMARC1; p=none; adkim=r; aspf=r"}})
	}
	for i, name := range names {
		lctx, cancel := d.lookupCtx(ctx)
		txts, err := d.o.Resolver.LookupTXT(lctx, name)
		cancel()
		if err != nil {
			c.Status, c.Summary = Error, fmt.Sprintf("%s TXT: %v", name, err)
			d.add(c)
			d.dmarcOK = unknown
			d.problem("the DMARC record could not be read")
			return
		}
		var recs []string
		for _, t := range txts {
			if isDMARC(t) {
				recs = append(recs, t)
			}
		}
		if len(recs) == 0 {
			continue
		}
		if len(recs) > 1 {
			c.Status, c.Summary = Fail, fmt.Sprintf("%d DMARC records at %s: receivers apply none of them", len(recs), name)
			d.add(c)
			d.dmarcOK = no
			d.problem("no usable DMARC record")
			d.step(Step{Where: "dns", Action: "keep exactly one DMARC record at " + name})
			return
		}
		rec, err := parseDMARC(recs[0])
		if err != nil {
			c.Status, c.Summary = Fail, fmt.Sprintf("%s: invalid DMARC record %q: %v", name, recs[0], err)
			d.add(c)
			d.dmarcOK = no
			d.problem("no usable DMARC record")
			suggest("replace the invalid DMARC record")
			return
		}
		rec.FoundAt = name
		rec.Organization = i > 0 || d.wildcard
		d.dmarc, d.dmarcOK = rec, yes
		policy := rec.policyFor(rec.Organization)
		which := "p"
		if rec.Organization && rec.SP != "" {
			which = "sp"
		}
		c.Summary = fmt.Sprintf("%s: %s=%s applies to %s (adkim=%s, aspf=%s)", name, which, policy, d.subject(), rec.ADKIM, rec.ASPF)
		c.Status = OK
		if policy == "none" {
			c.Status = Warn
			c.Notes = append(c.Notes, "policy none is monitoring only: receivers report failures but still deliver them; move to quarantine or reject once reports are clean")
		}
		if rec.ADKIM == "s" {
			if d.wildcard {
				c.Notes = append(c.Notes, fmt.Sprintf("adkim=s: a subdomain's mail aligns only with a signature by that very subdomain; a key or SES identity of %s (subdomain signing) does not", d.domain))
			} else {
				c.Notes = append(c.Notes, fmt.Sprintf("adkim=s: only a DKIM signature with d=%s exactly aligns; a key or SES identity of a parent domain (subdomain signing) does not", d.domain))
			}
		}
		if rec.ASPF == "s" {
			c.Notes = append(c.Notes, "aspf=s: a custom MAIL FROM is a subdomain, so SPF never aligns; DMARC rests on DKIM alone")
		}
		if rec.Pct < 100 {
			c.Notes = append(c.Notes, fmt.Sprintf("pct=%d: the policy applies to %d%% of failing mail", rec.Pct, rec.Pct))
		}
		if rec.RUA == "" {
			c.Notes = append(c.Notes, "no rua=: no aggregate reports are sent anywhere")
		}
		d.add(c)
		return
	}
	c.Status = Fail
	c.Summary = fmt.Sprintf("no DMARC record at %s: receivers do not apply DMARC to %s (Gmail and Yahoo require one of bulk senders)", strings.Join(names, " nor "), d.subject())
	d.add(c)
	d.dmarcOK = no
	d.problem("no DMARC record")
	suggest("publish a DMARC record (start with p=none and add rua=mailto:ADDRESS for reports, then move to quarantine or reject)")
}

// subject names the From domains the verdict is about.
func (d *domainRun) subject() string {
	if d.wildcard {
		return "subdomains of " + d.domain
	}
	return d.domain
}

// ---- SES ----

// sendingRegions are the regions the tenant's mail may go through.
func sendingRegions(cfg *config.Config, t *config.Tenant) []string {
	switch {
	case t.Region != "":
		return []string{t.Region}
	case len(cfg.SES.Regions) > 0:
		return cfg.SES.Regions
	}
	return []string{cfg.SES.Region}
}

var identityARN = regexp.MustCompile(`^arn:aws[a-z-]*:ses:([a-z0-9-]+):(\d{12}):identity/(.+)$`)

func (d *domainRun) checkSES(ctx context.Context) {
	d.regions = sendingRegions(d.cfg, d.t)
	if d.t.IdentityARN != "" {
		d.delegated = true
		d.checkIdentityARN()
	}
	if ep := cmpOr(d.t.SESEndpointID, d.cfg.SES.EndpointID); ep != "" {
		d.add(Check{ID: "ses.endpoint", Status: Info,
			Summary: fmt.Sprintf("mail goes through the SES multi-region endpoint %s", ep),
			Notes: []string{
				"SES sends from the endpoint's primary or secondary region: both need the identity, best as a DEED replica so DKIM records stay the same",
				"doctor checks the regions of the configuration: " + strings.Join(d.regions, ", "),
			}})
	}
	if d.offline {
		d.add(Check{ID: "ses", Status: Skip, Summary: "SES not checked (--offline): identity, Easy DKIM, MAIL FROM and configuration sets unknown"})
		return
	}
	if !d.delegated {
		for _, region := range d.regions {
			d.checkIdentity(ctx, region)
		}
		d.checkDEED()
	}
	d.checkConfigurationSets(ctx)
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func (d *domainRun) checkIdentityARN() {
	arn := d.t.IdentityARN
	c := Check{ID: "ses.identity_arn"}
	m := identityARN.FindStringSubmatch(arn)
	if m == nil {
		c.Status, c.Summary = Fail, fmt.Sprintf("identity_arn %q is not an SES identity ARN", arn)
		d.add(c)
		d.sendable = append(d.sendable, no)
		return
	}
	region, account, name := m[1], m[2], m[3]
	c.Region = region
	c.Notes = []string{fmt.Sprintf("delegated identity %s of account %s: its verification, DKIM and MAIL FROM are set up by that account and cannot be read from this one", name, account)}
	switch {
	case !slices.Contains(d.regions, region):
		c.Status = Fail
		c.Summary = fmt.Sprintf("identity is in %s but the tenant sends through %s: SES refuses it (delegated identities are regional)", region, strings.Join(d.regions, ", "))
		d.sendable = append(d.sendable, no)
		d.problem("the delegated identity is in another region")
		d.step(Step{Where: "config", Action: fmt.Sprintf("set region: %s on tenant %s (or use an identity in its region)", region, d.t.Name)})
	case len(d.regions) > 1:
		c.Status = Warn
		c.Summary = fmt.Sprintf("identity is in %s; failover to %s would be refused (delegated identities are regional)", region, strings.Join(slices.DeleteFunc(slices.Clone(d.regions), func(r string) bool { return r == region }), ", "))
	default:
		c.Status = OK
		c.Summary = fmt.Sprintf("identity region %s matches the tenant's region", region)
	}
	local, addrDomain, isAddress := strings.Cut(name, "@")
	switch {
	case isAddress && addrDomain == d.domain:
		c.Notes = append(c.Notes, fmt.Sprintf("an email address identity: SES accepts only mail From %s@%s", local, addrDomain))
		if c.Status == OK {
			c.Status = Warn
		}
	case isAddress || (name != d.domain && !strings.HasSuffix(d.domain, "."+name)):
		c.Notes = append(c.Notes, fmt.Sprintf("the identity %s does not cover %s: SES refuses mail From it", name, d.domain))
		c.Status = Fail
		d.sendable = append(d.sendable, no)
		d.problem("the delegated identity does not cover %s", d.domain)
	}
	d.add(c)
}

// candidates are the identities SES would use for mail From domain: the
// domain, then each parent up to the organizational domain (a verified
// domain covers its subdomains).
func candidates(domain string) []string {
	org := orgDomain(domain)
	out := []string{domain}
	for d := domain; d != org; {
		i := strings.IndexByte(d, '.')
		if i < 0 {
			break
		}
		d = d[i+1:]
		out = append(out, d)
	}
	return out
}

func (d *domainRun) checkIdentity(ctx context.Context, region string) {
	c := Check{ID: "ses.identity", Region: region}
	var out *sesv2.GetEmailIdentityOutput
	var name string
	for _, cand := range candidates(d.domain) {
		o, err := d.getIdentity(ctx, region, cand)
		if err == nil {
			out, name = o, cand
			break
		}
		if !isNotFound(err) {
			c.Status, c.Summary = Error, fmt.Sprintf("GetEmailIdentity %s: %s", cand, describeSESError(err))
			d.add(c)
			d.idents[region] = nil
			d.sendable = append(d.sendable, unknown)
			d.problem("SES identity in %s could not be read", region)
			return
		}
	}
	if out == nil {
		c.Status = Fail
		c.Summary = fmt.Sprintf("no SES identity for %s (nor a parent domain): SES refuses mail From it", d.domain)
		d.add(c)
		d.idents[region] = &identityFacts{dkimOK: no, spfOK: no}
		d.sendable = append(d.sendable, no)
		d.problem("no SES identity in %s", region)
		d.step(Step{Where: "ses", Action: fmt.Sprintf("create the domain identity %s in %s with Easy DKIM (RSA_2048_BIT) and a custom MAIL FROM domain such as mail.%s, then run doctor again for the records to publish", d.domain, region, d.domain)})
		return
	}
	f := &identityFacts{name: name, verified: out.VerifiedForSendingStatus, dkim: out.DkimAttributes,
		mailFrom: out.MailFromAttributes, defSet: deref(out.ConfigurationSetName)}
	d.idents[region] = f
	who := name
	if name != d.domain {
		who = fmt.Sprintf("%s (parent of %s)", name, d.domain)
	}
	if f.verified {
		c.Summary = who + " verified"
	} else {
		c.Summary = fmt.Sprintf("%s not verified (%s): SES refuses mail From it", who, cmpOr(string(out.VerificationStatus), "status unknown"))
		d.problem("identity %s not verified in %s", name, region)
	}
	d.sendable = append(d.sendable, triOf(f.verified))
	signs := false
	if da := f.dkim; da != nil {
		f.origin = originOf(da.SigningAttributesOrigin, region)
		state := "DKIM signing off"
		if da.SigningEnabled {
			state = "DKIM " + cmpOr(string(da.Status), "status unknown")
		}
		c.Notes = append(c.Notes, fmt.Sprintf("%s, %s", state, f.origin))
		signs = da.SigningEnabled && da.Status == types.DkimStatusSuccess
	} else {
		c.Notes = append(c.Notes, "no DKIM settings")
	}
	if f.defSet != "" {
		c.Notes = append(c.Notes, "default configuration set "+f.defSet)
	}
	switch {
	case !f.verified:
		c.Status = Fail
	case !signs && d.relayKey == nil:
		c.Status = Warn
	default:
		c.Status = OK
	}
	d.add(c)

	// SES's DKIM signature (d=identity) aligns with the From domain when
	// SES signs and its DNS records are in place.
	dnsOK := d.checkSESDKIMRecords(ctx, region, f)
	switch {
	case !signs:
		f.dkimOK = no
	case d.dmarc != nil && !aligned(d.dmarc.ADKIM == "s", name, d.from):
		f.dkimOK = no
		d.problem("SES signs d=%s, which does not align with %s under adkim=s", name, d.subject())
	default:
		f.dkimOK = dnsOK
	}
	if !f.verified && f.dkim != nil && len(f.dkim.Tokens) > 0 && f.dkim.SigningAttributesOrigin != types.DkimSigningAttributesOriginExternal {
		d.step(Step{Where: "ses", Action: fmt.Sprintf("wait for SES to verify %s in %s: it does once it finds the DKIM CNAME records", name, region)})
	}
	d.checkMailFrom(ctx, region, f)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// originOf names a DKIM signing origin for people.
func originOf(o types.DkimSigningAttributesOrigin, region string) string {
	switch {
	case o == types.DkimSigningAttributesOriginAwsSes || o == "":
		return "Easy DKIM"
	case o == types.DkimSigningAttributesOriginExternal:
		return "BYODKIM"
	case strings.HasPrefix(string(o), "AWS_SES_"):
		parent := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(string(o), "AWS_SES_"), "_", "-"))
		if parent == region {
			return "Easy DKIM"
		}
		return "Easy DKIM replica of " + parent + " (DEED)"
	}
	return string(o)
}

// checkSESDKIMRecords checks the DNS records SES's DKIM needs: the Easy
// DKIM CNAMEs, or for BYODKIM a key at each selector.
func (d *domainRun) checkSESDKIMRecords(ctx context.Context, region string, f *identityFacts) tri {
	da := f.dkim
	if da == nil || len(da.Tokens) == 0 {
		return no
	}
	external := da.SigningAttributesOrigin == types.DkimSigningAttributesOriginExternal
	key := fmt.Sprint(external, " ", f.name, " ", strings.Join(da.Tokens, ","))
	if r, ok := d.dkimDNS[key]; ok {
		return r // a DEED replica shares its parent's records: checked once
	}
	c := Check{ID: "dkim.ses", Region: region}
	var missing, wrong, failed []string
	if external {
		for _, sel := range da.Tokens {
			name := sel + "._domainkey." + f.name
			lctx, cancel := d.lookupCtx(ctx)
			txts, err := d.o.Resolver.LookupTXT(lctx, name)
			cancel()
			ok := false
			for _, t := range txts {
				if r, err := parseDKIMKey(t); err == nil && len(r.P) > 0 {
					ok = true
				}
			}
			switch {
			case err != nil:
				failed = append(failed, fmt.Sprintf("%s: %v", name, err))
			case !ok:
				missing = append(missing, name)
				d.step(Step{Where: "dns", Action: fmt.Sprintf("publish TXT %s with the public key of the key pair given to SES (BYODKIM)", name)})
			}
		}
	} else {
		for _, tok := range da.Tokens {
			name := tok + "._domainkey." + f.name
			want := tok + ".dkim.amazonses.com"
			lctx, cancel := d.lookupCtx(ctx)
			got, err := d.o.Resolver.LookupCNAME(lctx, name)
			cancel()
			switch {
			case err != nil:
				failed = append(failed, fmt.Sprintf("%s: %v", name, err))
			case got == "":
				missing = append(missing, name)
				d.step(Step{Where: "dns", Action: "publish the Easy DKIM record", Record: &Record{Name: name, Type: "CNAME", Value: want}})
			case !easyDKIMTarget(got, tok):
				wrong = append(wrong, fmt.Sprintf("%s points to %s", name, got))
				d.step(Step{Where: "dns", Action: "correct the Easy DKIM record", Record: &Record{Name: name, Type: "CNAME", Value: want}})
			}
		}
	}
	n := len(da.Tokens)
	what := "Easy DKIM CNAME"
	if external {
		what = "BYODKIM selector TXT"
	}
	var r tri
	switch {
	case len(missing)+len(wrong) > 0:
		c.Status, r = Fail, no
		c.Summary = fmt.Sprintf("%d of %d %s records for %s missing or wrong", len(missing)+len(wrong), n, what, f.name)
		for _, m := range missing {
			c.Notes = append(c.Notes, "missing: "+m)
		}
		c.Notes = append(c.Notes, wrong...)
		c.Notes = append(c.Notes, failed...)
		if d.relayKey == nil {
			d.problem("SES cannot DKIM-sign for %s: its DNS records are missing", f.name)
		}
	case len(failed) > 0:
		c.Status, r = Error, unknown
		c.Summary = fmt.Sprintf("%s records for %s could not be read", what, f.name)
		c.Notes = failed
	default:
		c.Status, r = OK, yes
		c.Summary = fmt.Sprintf("%d/%d %s records published for %s", n, n, what, f.name)
	}
	d.add(c)
	d.dkimDNS[key] = r
	return r
}

// easyDKIMTarget accepts <token>.dkim.amazonses.com and the regional
// spellings <token>.dkim.<region>.amazonses.com.
func easyDKIMTarget(got, tok string) bool {
	got = strings.ToLower(got)
	return strings.HasPrefix(got, strings.ToLower(tok)+".dkim.") && strings.HasSuffix(got, ".amazonses.com")
}

func (d *domainRun) checkMailFrom(ctx context.Context, region string, f *identityFacts) {
	c := Check{ID: "ses.mail_from", Region: region}
	mf := f.mailFrom
	if mf == nil || deref(mf.MailFromDomain) == "" {
		c.Status = Info
		c.Summary = "no custom MAIL FROM domain: SES uses a subdomain of amazonses.com, so SPF passes but does not align"
		d.add(c)
		f.spfOK = no
		return
	}
	m := strings.ToLower(deref(mf.MailFromDomain))
	behaviour := "use the default MAIL FROM"
	if mf.BehaviorOnMxFailure == types.BehaviorOnMxFailureRejectMessage {
		behaviour = "reject the message"
	}
	c.Summary = fmt.Sprintf("%s %s; on MX failure SES will %s", m, cmpOr(string(mf.MailFromDomainStatus), "status unknown"), behaviour)
	statusOK := mf.MailFromDomainStatus == types.MailFromDomainStatusSuccess
	switch {
	case statusOK:
		c.Status = OK
	case mf.BehaviorOnMxFailure == types.BehaviorOnMxFailureRejectMessage:
		c.Status = Fail
		c.Notes = append(c.Notes, fmt.Sprintf("SES rejects mail From %s until it finds the MX record", d.domain))
		d.sendable = append(d.sendable, no)
		d.problem("SES rejects the mail while the MAIL FROM domain %s is not verified (behaviour on MX failure: reject)", m)
	default:
		c.Status = Warn
		c.Notes = append(c.Notes, "until SES finds the MX record it sends with its own MAIL FROM: SPF does not align")
	}
	spfAligned := true
	if d.dmarc != nil && !aligned(d.dmarc.ASPF == "s", m, d.from) {
		spfAligned = false
		c.Notes = append(c.Notes, fmt.Sprintf("%s does not align with %s under aspf=%s", m, d.subject(), d.dmarc.ASPF))
		d.problem("the MAIL FROM %s does not align with %s under aspf=s", m, d.subject())
	}
	d.add(c)
	dnsOK := d.checkMailFromDNS(ctx, region, m)
	switch {
	case !statusOK || !spfAligned:
		f.spfOK = no
	default:
		f.spfOK = dnsOK
	}
}

// checkMailFromDNS checks the MX and SPF records SES needs at a MAIL FROM
// domain: MX to feedback-smtp.<region>.amazonses.com, SPF including
// amazonses.com.
func (d *domainRun) checkMailFromDNS(ctx context.Context, region, m string) tri {
	key := region + " " + m
	if r, ok := d.mailFromD[key]; ok {
		return all(r.mx, r.spf)
	}
	var r mailFromDNS
	want := "feedback-smtp." + region + ".amazonses.com"
	mxRecord := &Record{Name: m, Type: "MX", Value: "10 " + want}
	c := Check{ID: "mail_from.mx", Region: region}
	lctx, cancel := d.lookupCtx(ctx)
	mxs, err := d.o.Resolver.LookupMX(lctx, m)
	cancel()
	var hosts []string
	for _, mx := range mxs {
		hosts = append(hosts, fmt.Sprintf("%d %s", mx.Pref, mx.Host))
	}
	switch {
	case err != nil:
		c.Status, c.Summary, r.mx = Error, fmt.Sprintf("%s MX: %v", m, err), unknown
	case len(mxs) == 0:
		c.Status, c.Summary, r.mx = Fail, fmt.Sprintf("no MX record at %s: SES cannot use it as MAIL FROM (bounces have nowhere to go)", m), no
		d.step(Step{Where: "dns", Action: "publish the MAIL FROM MX record", Record: mxRecord})
	case !slices.ContainsFunc(mxs, func(mx *net.MX) bool { return mx.Host == want }):
		c.Status, c.Summary, r.mx = Fail, fmt.Sprintf("%s MX %s, not %s", m, strings.Join(hosts, ", "), want), no
		d.step(Step{Where: "dns", Action: "point the MAIL FROM MX record at SES in " + region, Record: mxRecord})
	default:
		c.Status, c.Summary, r.mx = OK, fmt.Sprintf("%s MX %s", m, strings.Join(hosts, ", ")), yes
		if len(mxs) > 1 {
			c.Notes = append(c.Notes, "other exchangers besides SES receive some of the bounces")
		}
	}
	d.add(c)

	c = Check{ID: "mail_from.spf", Region: region}
	lctx, cancel = d.lookupCtx(ctx)
	txts, err := d.o.Resolver.LookupTXT(lctx, m)
	cancel()
	spfs := spfRecords(txts)
	spfRecord := &Record{Name: m, Type: "TXT", Value: "v=spf1 include:amazonses.com ~all"}
	switch {
	case err != nil:
		c.Status, c.Summary, r.spf = Error, fmt.Sprintf("%s TXT: %v", m, err), unknown
	case len(spfs) == 0:
		c.Status, c.Summary, r.spf = Fail, fmt.Sprintf("no SPF record at %s", m), no
		d.step(Step{Where: "dns", Action: "publish the MAIL FROM SPF record", Record: spfRecord})
	case len(spfs) > 1:
		c.Status, c.Summary, r.spf = Fail, fmt.Sprintf("%d SPF records at %s: SPF fails with permerror (RFC 7208 4.5)", len(spfs), m), no
		d.step(Step{Where: "dns", Action: "keep a single SPF record at " + m, Record: spfRecord})
	case !spfIncludes(spfs[0], "amazonses.com"):
		c.Status, c.Summary, r.spf = Fail, fmt.Sprintf("%s SPF %q does not include amazonses.com", m, spfs[0]), no
		d.step(Step{Where: "dns", Action: "add include:amazonses.com to the MAIL FROM SPF record", Record: &Record{Name: m, Type: "TXT", Value: withInclude(spfs[0], "amazonses.com")}})
	default:
		c.Status, c.Summary, r.spf = OK, fmt.Sprintf("%s SPF %q", m, spfs[0]), yes
	}
	d.add(c)
	d.mailFromD[key] = r
	return all(r.mx, r.spf)
}

// checkDEED reports whether the regions share one DKIM setup (Deterministic
// Easy DKIM) so regional failover keeps the same DKIM records.
func (d *domainRun) checkDEED() {
	if len(d.regions) < 2 {
		return
	}
	parents := map[string][]string{} // DKIM source region -> regions
	var missing []string
	for _, region := range d.regions {
		f := d.idents[region]
		if f == nil || f.dkim == nil {
			missing = append(missing, region)
			continue
		}
		src := region
		if o := string(f.dkim.SigningAttributesOrigin); strings.HasPrefix(o, "AWS_SES_") {
			src = strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(o, "AWS_SES_"), "_", "-"))
		} else if o == string(types.DkimSigningAttributesOriginExternal) {
			src = "BYODKIM"
		}
		parents[src] = append(parents[src], region)
	}
	c := Check{ID: "ses.deed"}
	switch {
	case len(missing) > 0:
		c.Status, c.Summary = Warn, fmt.Sprintf("no usable identity in %s: failover there would fail or change DKIM", strings.Join(missing, ", "))
	case len(parents) == 1:
		for src := range parents {
			c.Status = OK
			if src == "BYODKIM" {
				c.Summary = "every region signs with the same BYODKIM selectors"
			} else {
				c.Summary = fmt.Sprintf("every region signs with the DKIM keys of %s (DEED): failover keeps DKIM aligned", src)
			}
		}
	default:
		c.Status = Info
		c.Summary = "regions sign with different DKIM keys: every region's records must be published (a DEED replica of one parent needs none)"
	}
	d.add(c)
}

// configuration sets the tenant's mail may carry.
type namedSet struct {
	name, role string
	required   bool // every message carries it: a missing set stops all mail
}

func (d *domainRun) checkConfigurationSets(ctx context.Context) {
	for _, region := range d.regions {
		var sets []namedSet
		if cs := d.t.ConfigurationSet; cs != "" {
			sets = append(sets, namedSet{cs, "configuration_set", true})
		} else if f := d.idents[region]; f != nil && f.defSet != "" {
			sets = append(sets, namedSet{f.defSet, "the identity's default", true})
		}
		for _, cs := range d.t.AllowedConfigurationSets {
			if !slices.ContainsFunc(sets, func(s namedSet) bool { return s.name == cs }) {
				sets = append(sets, namedSet{cs, "allowed_configuration_sets", false})
			}
		}
		for _, s := range sets {
			d.checkConfigurationSet(ctx, region, s)
		}
	}
}

func (d *domainRun) checkConfigurationSet(ctx context.Context, region string, s namedSet) {
	c := Check{ID: "ses.configuration_set", Region: region}
	out, err := d.getConfigurationSet(ctx, region, s.name)
	bad := func(why string) {
		if s.required {
			c.Status = Fail
			d.sendable = append(d.sendable, no)
			d.problem("SES refuses mail naming configuration set %s in %s (%s)", s.name, region, why)
		} else {
			c.Status = Warn
		}
	}
	switch {
	case isNotFound(err):
		c.Summary = fmt.Sprintf("%s (%s) does not exist: SES refuses mail naming it", s.name, s.role)
		bad("missing")
		d.step(Step{Where: "ses", Action: fmt.Sprintf("create configuration set %s in %s, or change the tenant's %s", s.name, region, s.role)})
		d.add(c)
		return
	case err != nil:
		c.Status, c.Summary = Error, fmt.Sprintf("GetConfigurationSet %s: %s", s.name, describeSESError(err))
		if s.required {
			d.sendable = append(d.sendable, unknown)
			d.problem("configuration set %s in %s could not be read", s.name, region)
		}
		d.add(c)
		return
	}
	if out.SendingOptions != nil && !out.SendingOptions.SendingEnabled {
		c.Summary = fmt.Sprintf("%s (%s): sending is paused on it", s.name, s.role)
		bad("sending paused")
		d.step(Step{Where: "ses", Action: fmt.Sprintf("resume sending on configuration set %s in %s", s.name, region)})
		d.add(c)
		return
	}
	var tracking []string
	if t := out.TrackingOptions; t != nil && deref(t.CustomRedirectDomain) != "" {
		tracking = append(tracking, "custom redirect domain "+deref(t.CustomRedirectDomain))
	}
	if v := out.VdmOptions; v != nil && v.DashboardOptions != nil && v.DashboardOptions.EngagementMetrics == types.FeatureStatusEnabled {
		tracking = append(tracking, "VDM engagement metrics")
	}
	dests, derr := d.getEventDestinations(ctx, region, s.name)
	if derr == nil {
		for _, e := range dests.EventDestinations {
			var kinds []string
			for _, k := range e.MatchingEventTypes {
				if k == types.EventTypeOpen || k == types.EventTypeClick {
					kinds = append(kinds, string(k))
				}
			}
			if e.Enabled && len(kinds) > 0 {
				tracking = append(tracking, fmt.Sprintf("event destination %s publishes %s", deref(e.Name), strings.Join(kinds, ", ")))
			}
		}
	} else {
		c.Notes = append(c.Notes, "event destinations not read: "+describeSESError(derr))
	}
	switch {
	case len(tracking) == 0:
		c.Status, c.Summary = OK, fmt.Sprintf("%s (%s): no open or click tracking", s.name, s.role)
	case d.relayKey != nil:
		c.Status = Warn
		c.Summary = fmt.Sprintf("%s (%s) tracks opens and clicks, and the relay signs this domain's mail", s.name, s.role)
		c.Notes = append(c.Notes, "tracking: "+strings.Join(tracking, "; "),
			"SES tracking rewrites links and adds an open pixel after the relay signed: the body hash of the relay's DKIM signature would no longer match",
			"the relay turns click and open tracking off for each message it signs (SendEmail ConfigurationOverrides), so the signature survives and this tenant's signed mail produces no open or click events",
			"to track this mail, let SES sign it (Easy DKIM) instead of the relay")
	default:
		c.Status = Info
		c.Summary = fmt.Sprintf("%s (%s) tracks opens and clicks; the relay does not sign this domain, SES signs after rewriting", s.name, s.role)
		c.Notes = append(c.Notes, "tracking: "+strings.Join(tracking, "; "))
	}
	d.add(c)
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
