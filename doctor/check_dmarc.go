package doctor

import (
	"context"
	"fmt"
	"strings"
)

// DMARC: the policy record of the From domain and its alignment (a DNS check).

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
