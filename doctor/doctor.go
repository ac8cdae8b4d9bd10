// Package doctor checks, per tenant domain, whether mail the relay sends
// through Amazon SES can pass DMARC (RFC 7489): the relay's DKIM key
// records (RFC 6376), the DMARC record, the SES identity with its Easy DKIM
// records and custom MAIL FROM domain (MX and SPF, RFC 7208), and the
// configuration sets the tenant's mail carries. It reports what is missing
// with the exact DNS record to publish.
//
// Checks only read: DNS queries and SES Get* calls. Nothing is changed.
package doctor

import (
	"context"
	"fmt"
	"time"

	"github.com/sesrelay/sesrelay/config"
)

// Status is the outcome of one check.
type Status string

// Check outcomes. Only Fail and Error can make a domain's verdict fail or
// unknown; Warn is advice.
const (
	OK    Status = "ok"
	Info  Status = "info"
	Warn  Status = "warn"
	Fail  Status = "fail"
	Error Status = "error" // the check could not be made (DNS or SES error)
	Skip  Status = "skip"  // not run (--offline, delegated identity)
)

// Check is one finding about a domain.
type Check struct {
	// ID names the kind of check: dkim.relay, dmarc, ses.identity,
	// dkim.ses, ses.mail_from, mail_from.mx, mail_from.spf,
	// ses.configuration_set, ses.identity_arn, ses.endpoint, wildcard.
	ID      string   `json:"id"`
	Region  string   `json:"region,omitempty"`
	Status  Status   `json:"status"`
	Summary string   `json:"summary"`
	Notes   []string `json:"notes,omitempty"`
}

// Record is one DNS record to publish. Value is the record data as a zone
// file writes it, without quotes; a TXT value longer than 255 bytes must be
// published as several strings (Text shows them).
type Record struct {
	Name  string `json:"name"`
	Type  string `json:"type"`
	Value string `json:"value"`
}

// Step is one thing to do: publish a DNS record (Where "dns") or change
// something in SES or the relay configuration (Where "ses", "config").
type Step struct {
	Where  string  `json:"where"`
	Action string  `json:"action"`
	Record *Record `json:"record,omitempty"`
}

// Verdict results.
const (
	Pass    = "pass"
	Failing = "fail"
	Unknown = "unknown"
)

// Verdict says whether mail From the domain can pass DMARC.
type Verdict struct {
	// Result is pass, fail (cannot pass) or unknown (some check could not
	// be made and nothing proves a pass).
	Result string `json:"result"`
	// Alignment is how DMARC is expected to align: dkim, spf, both, none,
	// or unknown.
	Alignment string `json:"alignment"`
	// Via lists each aligned identifier: relay DKIM, SES DKIM, custom MAIL
	// FROM.
	Via []string `json:"via,omitempty"`
	// Problems say why the result is not pass.
	Problems []string `json:"problems,omitempty"`
}

// DomainReport is everything found about one domain entry of a tenant.
type DomainReport struct {
	Tenant string `json:"tenant"`
	// Entry is the configured domain; Domain the one checked (a wildcard
	// entry *.x is checked as x).
	Entry   string  `json:"entry"`
	Domain  string  `json:"domain"`
	Checks  []Check `json:"checks"`
	Verdict Verdict `json:"verdict"`
	Steps   []Step  `json:"steps,omitempty"`
}

// Report is the result of a run.
type Report struct {
	Offline bool           `json:"offline"`
	Domains []DomainReport `json:"domains"`
}

// Exit codes of ExitCode.
const (
	ExitPass    = 0 // every domain can pass DMARC
	ExitFail    = 1 // at least one domain cannot pass DMARC
	ExitUnknown = 3 // none fails, but at least one could not be confirmed
)

// ExitCode is the process exit code for the report.
func (r *Report) ExitCode() int {
	code := ExitPass
	for _, d := range r.Domains {
		switch d.Verdict.Result {
		case Failing:
			return ExitFail
		case Unknown:
			code = ExitUnknown
		}
	}
	return code
}

// Options configures a run.
type Options struct {
	// Tenant restricts the run to one tenant ("" = all).
	Tenant string
	// Resolver answers DNS questions (required).
	Resolver Resolver
	// SES returns the client for a region. Nil means offline: no SES call
	// is made and SES checks are skipped. An error is reported by every
	// SES check of that region.
	SES func(region string) (SESAPI, error)
	// Timeout bounds each DNS query and SES call (default 10s).
	Timeout time.Duration
}

// Run checks every domain of every tenant (or of Options.Tenant) in
// configuration order. Failures of DNS or SES are findings in the report;
// the error is only for an unusable request (unknown tenant, no resolver).
func Run(ctx context.Context, cfg *config.Config, o Options) (*Report, error) {
	if o.Resolver == nil {
		return nil, fmt.Errorf("doctor: no resolver")
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Tenant != "" && cfg.TenantByName(o.Tenant) == nil {
		return nil, fmt.Errorf("doctor: no tenant %q in the configuration", o.Tenant)
	}
	run := &run{cfg: cfg, o: o, ses: newSESCache(o)}
	rep := &Report{Offline: o.SES == nil, Domains: []DomainReport{}}
	for i := range cfg.Tenants {
		t := &cfg.Tenants[i]
		if o.Tenant != "" && t.Name != o.Tenant {
			continue
		}
		for _, entry := range t.Domains {
			rep.Domains = append(rep.Domains, run.domain(ctx, t, entry))
		}
	}
	return rep, nil
}

// run holds what a run shares between domains.
type run struct {
	cfg *config.Config
	o   Options
	ses *sesCache
}

func (r *run) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.o.Timeout)
}
