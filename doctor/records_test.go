package doctor

import (
	"slices"
	"testing"
)

func TestParseDMARC(t *testing.T) {
	for _, tc := range []struct {
		in, err       string
		p, sp, adkim  string
		aspf          string
		pct           int
		isDMARCRecord bool
	}{
		{in: "v=DMARC1; p=reject", p: "reject", adkim: "r", aspf: "r", pct: 100, isDMARCRecord: true},
		{in: "v=DMARC1;p=Quarantine;sp=none;adkim=s;aspf=S;pct=20;rua=mailto:a@b.example", p: "quarantine", sp: "none", adkim: "s", aspf: "s", pct: 20, isDMARCRecord: true},
		{in: " v = DMARC1 ; p = none ; ", p: "none", adkim: "r", aspf: "r", pct: 100, isDMARCRecord: true},
		{in: "v=DMARC1; rua=mailto:a@b.example", err: "no p= tag", isDMARCRecord: true},
		{in: "v=DMARC1; p=none; p=reject", err: "tag p repeated", isDMARCRecord: true},
		{in: "v=DMARC1; p=none; adkim=x", err: "adkim=x is not r or s", isDMARCRecord: true},
		{in: "v=DMARC1; p=none; pct=101", err: "pct=101 is not 0-100", isDMARCRecord: true},
		{in: "p=none; v=DMARC1", err: "does not start with v=DMARC1"},
		{in: "v=spf1 -all", err: "does not start with v=DMARC1"},
	} {
		if got := isDMARC(tc.in); got != tc.isDMARCRecord {
			t.Errorf("isDMARC(%q) = %v", tc.in, got)
		}
		r, err := parseDMARC(tc.in)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("parseDMARC(%q) error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseDMARC(%q): %v", tc.in, err)
			continue
		}
		if r.P != tc.p || r.SP != tc.sp || r.ADKIM != tc.adkim || r.ASPF != tc.aspf || r.Pct != tc.pct {
			t.Errorf("parseDMARC(%q) = %+v", tc.in, r)
		}
	}
}

func TestOrgDomainAndCandidates(t *testing.T) {
	for in, want := range map[string]string{
		"example.com":          "example.com",
		"a.b.example.com":      "example.com",
		"mail.example.co.uk":   "example.co.uk",
		"tenant.herokuapp.com": "tenant.herokuapp.com", // a private public suffix
	} {
		if got := orgDomain(in); got != want {
			t.Errorf("orgDomain(%s) = %s, want %s", in, got, want)
		}
	}
	if got := candidates("a.b.example.co.uk"); !slices.Equal(got, []string{"a.b.example.co.uk", "b.example.co.uk", "example.co.uk"}) {
		t.Errorf("candidates = %q", got)
	}
	if !aligned(false, "mail.example.com", "news.example.com") || aligned(true, "mail.example.com", "example.com") ||
		aligned(false, "a.herokuapp.com", "b.herokuapp.com") {
		t.Error("alignment")
	}
}

func TestSPF(t *testing.T) {
	if got := spfRecords([]string{"v=spf1 include:amazonses.com ~all", "v=spf10", "google-site-verification=x", "V=SPF1"}); len(got) != 2 {
		t.Errorf("spfRecords = %q", got)
	}
	for rec, want := range map[string]bool{
		"v=spf1 include:amazonses.com ~all":  true,
		"v=spf1 +include:AmazonSES.com -all": true,
		"v=spf1 include:amazonses.com. -all": true,
		"v=spf1 ?include:amazonses.com -all": false,
		"v=spf1 include:amazonses.com.evil":  false,
		"v=spf1 redirect=amazonses.com":      false,
	} {
		if got := spfIncludes(rec, "amazonses.com"); got != want {
			t.Errorf("spfIncludes(%q) = %v", rec, got)
		}
	}
	if got := withInclude("v=spf1 mx -all", "amazonses.com"); got != "v=spf1 include:amazonses.com mx -all" {
		t.Errorf("withInclude = %q", got)
	}
}

func TestParseDKIMKey(t *testing.T) {
	for in, want := range map[string]string{
		"v=DKIM1; k=rsa; p=AAAA":         "",
		"p=":                             "",
		"v=DKIM2; p=AAAA":                "v=DKIM2 is not DKIM1",
		"v=DKIM1; k=rsa":                 "no p= tag",
		"v=DKIM1; p=!!!":                 "p= is not base64: illegal base64 data at input byte 0",
		"v=DKIM1; k=rsa; p=AA AA; t=y:s": "",
	} {
		_, err := parseDKIMKey(in)
		if (err == nil) != (want == "") || (err != nil && err.Error() != want) {
			t.Errorf("parseDKIMKey(%q) error %v, want %q", in, err, want)
		}
	}
	if r, _ := parseDKIMKey("v=DKIM1; k=rsa; p=AA AA; t=y:s"); !r.Testing || len(r.P) != 3 {
		t.Errorf("t=y:s and folded p=: %+v", r)
	}
}

// FuzzRecords feeds DNS TXT data, which anyone controlling a zone writes,
// to every parser.
func FuzzRecords(f *testing.F) {
	for _, s := range []string{"v=DMARC1; p=reject; sp=none; pct=50", "v=DKIM1; k=ed25519; p=AAAA", "v=spf1 include:amazonses.com ~all", ";;=;", "v=DMARC1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if isDMARC(s) {
			parseDMARC(s)
		}
		if r, err := parseDKIMKey(s); err == nil && r == nil {
			t.Fatal("nil record without error")
		}
		spfIncludes(s, "amazonses.com")
		withInclude(s, "amazonses.com")
	})
}
