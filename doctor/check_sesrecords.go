package doctor

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/sesv2/types"
)

// The DNS records SES needs: Easy DKIM CNAMEs or BYODKIM keys, and the MX
// and SPF records of a custom MAIL FROM domain (DNS checks).

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
