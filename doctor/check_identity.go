package doctor

import (
	"cmp"
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	"github.com/aws/aws-sdk-go-v2/service/sesv2/types"

	"github.com/sesrelay/sesrelay/config"
)

// SES identities: what the SES API says about each sending region's
// identity, MAIL FROM domain and DKIM setup (SES API checks).

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
	if ep := cmp.Or(d.t.SESEndpointID, d.cfg.SES.EndpointID); ep != "" {
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
		c.Summary = fmt.Sprintf("%s not verified (%s): SES refuses mail From it", who, cmp.Or(string(out.VerificationStatus), "status unknown"))
		d.problem("identity %s not verified in %s", name, region)
	}
	d.sendable = append(d.sendable, triOf(f.verified))
	signs := false
	if da := f.dkim; da != nil {
		f.origin = originOf(da.SigningAttributesOrigin, region)
		state := "DKIM signing off"
		if da.SigningEnabled {
			state = "DKIM " + cmp.Or(string(da.Status), "status unknown")
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
	c.Summary = fmt.Sprintf("%s %s; on MX failure SES will %s", m, cmp.Or(string(mf.MailFromDomainStatus), "status unknown"), behaviour)
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
