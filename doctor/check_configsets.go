package doctor

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/sesv2/types"
)

// Configuration sets: that each set the tenant's mail may carry exists in
// each sending region (SES API checks).

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
