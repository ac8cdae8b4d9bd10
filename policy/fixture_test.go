package policy

import (
	"bufio"
	"crypto/ed25519"
	"strings"
	"testing"

	"github.com/emersion/go-message/textproto"

	"github.com/sesrelay/sesrelay/config"
)

// testKey returns a deterministic Ed25519 key: Compile only needs a
// loaded signer.
func testKey(seed byte) ed25519.PrivateKey {
	s := make([]byte, ed25519.SeedSize)
	s[0] = seed
	return ed25519.NewKeyFromSeed(s)
}

// testConfig is a configuration as config.Validate leaves it, except that
// some domains are deliberately not normalized (Compile must normalize
// them itself).
func testConfig() *config.Config {
	user := func(name string) []config.User { return []config.User{{Username: name}} }
	return &config.Config{Tenants: []config.Tenant{
		{
			Name:                     "billing",
			Users:                    user("billing-app"),
			Domains:                  []string{"billing.example.com", "*.billing.example.com"},
			ConfigurationSet:         "billing-tx",
			AllowedConfigurationSets: []string{"billing-bulk"},
			Tags:                     map[string]string{"stream": "transactional", "Team": "billing"},
			HeaderTags:               map[string]string{"X-Campaign": "campaign", "x-stream": "stream"},
			DKIM:                     []config.DKIMKey{{Domain: "billing.example.com", Selector: "s1", Signer: testKey(1)}},
		},
		// Two tenants under one organizational domain.
		{Name: "a", Users: user("a-app"), Domains: []string{"a.example.com"}},
		{Name: "b", Users: user("b-app"), Domains: []string{"b.example.com"}},
		// Exact entry only: the label-boundary traps.
		{Name: "root", Users: user("root-app"), Domains: []string{"Example.COM."}},
		// IDN, once written in Unicode and once in ASCII.
		{Name: "books", Users: user("books-app"), Domains: []string{"bücher.example", "*.xn--mnchen-3ya.example"}},
		{
			Name:         "rw",
			Users:        user("rw-app"),
			Domains:      []string{"rw.example.net", "*.rw.example.net"},
			FromPolicy:   config.FromRewrite,
			RewriteFrom:  "noreply@RW.example.net",
			DKIM:         []config.DKIMKey{{Domain: "rw.example.net", Selector: "r1", Signer: testKey(2)}},
			DKIMRequired: true,
		},
		{
			Name:    "signer",
			Users:   user("signer-app"),
			Domains: []string{"signer.example", "*.signer.example"},
			DKIM: []config.DKIMKey{
				{Domain: "signer.example", Selector: "new", Signer: testKey(3)},
				{Domain: "mail.signer.example", Selector: "mail", Signer: testKey(4)},
				{Domain: "signer.example", Selector: "old", Signer: testKey(5)},
			},
			DKIMRequired: true,
		},
		{
			Name:    "loose",
			Users:   user("loose-app"),
			Domains: []string{"loose.example", "*.loose.example"},
			DKIM:    []config.DKIMKey{{Domain: "mail.loose.example", Selector: "m", Signer: testKey(6)}},
		},
	}}
}

func testRules(t testing.TB) *Rules {
	t.Helper()
	r, err := Compile(testConfig())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// header parses header lines written with "\n" and no final blank line.
func header(t testing.TB, s string) *textproto.Header {
	t.Helper()
	if s != "" {
		s = strings.ReplaceAll(s, "\n", "\r\n") + "\r\n"
	}
	h, err := textproto.ReadHeader(bufio.NewReader(strings.NewReader(s + "\r\n")))
	if err != nil {
		t.Fatalf("header %q: %v", s, err)
	}
	return &h
}
