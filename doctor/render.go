package doctor

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/sesrelay/sesrelay/headers"
)

// Summary counts the verdicts of a report.
type Summary struct {
	Domains  int `json:"domains"`
	Pass     int `json:"pass"`
	Fail     int `json:"fail"`
	Unknown  int `json:"unknown"`
	ExitCode int `json:"exit_code"`
}

// Summary counts the verdicts.
func (r *Report) Summary() Summary {
	s := Summary{Domains: len(r.Domains), ExitCode: r.ExitCode()}
	for _, d := range r.Domains {
		switch d.Verdict.Result {
		case Pass:
			s.Pass++
		case Failing:
			s.Fail++
		default:
			s.Unknown++
		}
	}
	return s
}

// WriteJSON writes the report as one indented JSON object: the Report
// fields plus "summary".
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		*Report
		Summary Summary `json:"summary"`
	}{r, r.Summary()})
}

// WriteText writes the report for people: per domain its checks, the
// verdict and the steps left, each DNS record as it must be published.
func (r *Report) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	p := func(format string, args ...any) { fmt.Fprintf(bw, format, args...) }
	for i, d := range r.Domains {
		if i > 0 {
			p("\n")
		}
		if d.Entry != d.Domain {
			p("tenant %s: %s (checked as %s)\n", d.Tenant, d.Entry, d.Domain)
		} else {
			p("tenant %s: %s\n", d.Tenant, d.Domain)
		}
		for _, c := range d.Checks {
			summary := c.Summary
			if c.Region != "" {
				summary = "[" + c.Region + "] " + summary
			}
			p("  %-5s %-21s %s\n", c.Status, c.ID, summary)
			for _, n := range c.Notes {
				p("  %-5s %-21s   - %s\n", "", "", n)
			}
		}
		v := d.Verdict
		p("  verdict: %s, DMARC alignment: %s\n", strings.ToUpper(v.Result), v.Alignment)
		for _, via := range v.Via {
			p("    via %s\n", via)
		}
		for _, pr := range v.Problems {
			p("    because %s\n", pr)
		}
		if len(d.Steps) > 0 {
			p("  to do:\n")
			for j, s := range d.Steps {
				p("    %d. [%s] %s\n", j+1, s.Where, s.Action)
				if s.Record != nil {
					p("       %s\n", recordLine(s.Record))
				}
			}
		}
	}
	s := r.Summary()
	p("\n%d domain(s): %d pass, %d fail, %d unknown", s.Domains, s.Pass, s.Fail, s.Unknown)
	if r.Offline {
		p(" (offline: SES not checked)")
	}
	p("\n")
	return bw.Flush()
}

// recordLine writes a record the way DNS consoles and zone files take it:
// a TXT value quoted, split into 255-byte strings.
func recordLine(rec *Record) string {
	value := rec.Value
	if rec.Type == "TXT" {
		parts := headers.SplitTXT(rec.Value)
		for i, s := range parts {
			parts[i] = `"` + s + `"`
		}
		value = strings.Join(parts, " ")
	}
	return fmt.Sprintf("%s  %s  %s", rec.Name, rec.Type, value)
}
