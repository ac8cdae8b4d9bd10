package doctor

import (
	"context"
	"fmt"
	"strings"

	"github.com/sesrelay/sesrelay/config"
	"github.com/sesrelay/sesrelay/headers"
)

// Relay DKIM: the DNS record of the key the relay signs with (a DNS check).

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
