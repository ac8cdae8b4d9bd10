package policy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"mime"
	"net/mail"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-message/textproto"
	"golang.org/x/net/idna"

	"github.com/sesrelay/sesrelay/address"

	"github.com/sesrelay/sesrelay/config"
)

// The fuzz tests check the policy against a reference built only from
// idna, net/mail and the obvious suffix rule, written the slow way.

// refNormalize: lowercase, trim, one trailing dot off, IDNA to ASCII, two
// labels; a leading "*." is kept.
func refNormalize(d string) (string, error) {
	wild := strings.HasPrefix(d, "*.")
	if wild {
		d = d[2:]
	}
	d = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
	a, err := idna.Lookup.ToASCII(d)
	if err != nil || !strings.Contains(a, ".") {
		return "", errors.New("invalid")
	}
	if wild {
		a = "*." + a
	}
	return a, nil
}

func refCovers(entry, d string) bool {
	if base, ok := strings.CutPrefix(entry, "*."); ok {
		return strings.HasSuffix(d, "."+base)
	}
	return d == entry
}

// validHostname: the stricter rules address.Domain adds to the reference.
func validHostname(d string) bool {
	n, err := address.Domain(d)
	return err == nil && n == d
}

// refOwns: does one of the tenant's configured domains cover domain?
func refOwns(t *Tenant, domain string) bool {
	n, err := refNormalize(domain)
	if err != nil || strings.HasPrefix(n, "*.") {
		return false
	}
	for _, e := range t.Config.Domains {
		if ne, err := refNormalize(e); err == nil && refCovers(ne, n) {
			return true
		}
	}
	return false
}

func refOwnsAddress(t *Tenant, addr string) bool {
	at := strings.LastIndexByte(addr, '@')
	return at > 0 && refOwns(t, addr[at+1:])
}

var refParser = &mail.AddressParser{WordDecoder: &mime.WordDecoder{
	CharsetReader: func(_ string, in io.Reader) (io.Reader, error) { return in, nil },
}}

var sesTag = regexp.MustCompile(`^[A-Za-z0-9_-]{1,256}$`)

func FuzzOwnsDomain(f *testing.F) {
	for _, s := range []string{
		"billing.example.com", "eu.billing.example.com.", "EVIL-example.com", "xexample.com",
		"bücher.example", "XN--BCHER-KVA.example", "shop.münchen.example", "a..b.example.com",
		"*.billing.example.com", "example．com", "xn--zz.example", "a.xn--.com", " example.com",
		"ab--c.example.com", "-a.example.com", "1.2.3.4", strings.Repeat("a", 64) + ".com",
	} {
		f.Add(s)
	}
	r := testRules(f)
	f.Fuzz(func(t *testing.T, d string) {
		want, err := refNormalize(d)
		n, ok := normalizeDomain(d)
		if ok && (err != nil || n != want || !validHostname(n)) {
			t.Fatalf("normalizeDomain(%q) = %q, refNormalize = %q, %v", d, n, want, err)
		}
		for _, ten := range r.tenants {
			got, ref := ten.OwnsDomain(d), refOwns(ten, d)
			if got && !ref {
				t.Fatalf("%s owns %q (normalized %q), the reference says no", ten.Name, d, n)
			}
			// The policy may only be stricter on malformed names.
			if ref && !got && validHostname(want) {
				t.Fatalf("%s does not own %q (normalized %q), the reference says yes", ten.Name, d, want)
			}
		}
	})
}

func FuzzEvaluate(f *testing.F) {
	for _, s := range []struct{ header, mailFrom string }{
		{"From: x@billing.example.com\r\n\r\n", ""},
		{"From: \"Jane\" <jane@gmail.example>\r\nReply-To: a@b.example\r\n\r\n", "bounce@rw.example.net"},
		{"From: g: x@a.example.com;\r\n\r\n", ""},
		{"From: a@a.example.com, b@b.example.com\r\n\r\n", ""},
		{"From: x@a.example.com\r\nSender: y@b.example.com\r\nResent-From: z@a.example.com\r\n\r\n", "x@a.example.com"},
		{"From: x@billing.example.com\r\nX-SES-CONFIGURATION-SET: billing-bulk\r\nX-Campaign: =?utf-8?q?caf=C3=A9?=\r\n\r\n", ""},
		{"from : =?iso-8859-1?q?Ren=E9?= <r@bücher.example>\r\n\r\n", ""},
		{"From: \"a@b.example.com\"@a.example.com (c: d)\r\n\r\n", ""},
		{"From: x@signer.example\r\nFrom: y@signer.example\r\n\r\n", ""},
	} {
		f.Add([]byte(s.header), s.mailFrom)
	}
	r := testRules(f)
	f.Fuzz(func(t *testing.T, data []byte, mailFrom string) {
		h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(data)))
		if err != nil {
			return
		}
		for _, ten := range r.tenants {
			env := Envelope{From: mailFrom}
			d := ten.Evaluate(env, &h)
			if again := ten.Evaluate(env, &h); !reflect.DeepEqual(d, again) {
				t.Fatalf("%s: not deterministic:\n%+v\n%+v", ten.Name, d, again)
			}
			if d.Reject != nil {
				checkRejection(t, d.Reject)
				continue
			}
			checkAccepted(t, ten, env, &h, d)
		}
	})
}

func checkRejection(t *testing.T, r *Rejection) {
	t.Helper()
	if !slices.Contains(Reasons(), r.Reason) {
		t.Fatalf("unknown reason %q", r.Reason)
	}
	if r.Field == "" {
		t.Fatalf("%s without a field", r.Reason)
	}
	checkDetail(t, r.Detail)
}

// checkAccepted verifies an accepted decision against the reference.
func checkAccepted(t *testing.T, ten *Tenant, env Envelope, h *textproto.Header, d Decision) {
	t.Helper()
	if env.From != "" && !refOwnsAddress(ten, env.From) {
		t.Fatalf("%s: accepted MAIL FROM %q", ten.Name, env.From)
	}
	froms := h.Values("From")
	if len(froms) != 1 {
		t.Fatalf("%s: accepted with %d From fields", ten.Name, len(froms))
	}
	list, err := refParser.ParseList(froms[0])
	if err != nil || len(list) != 1 {
		t.Fatalf("%s: accepted From %q: %v, %d mailboxes", ten.Name, froms[0], err, len(list))
	}
	// The policy may be stricter than the reference on malformed names
	// (labels over 63 octets and the like), never laxer.
	owned := refOwnsAddress(ten, list[0].Address)
	at := strings.LastIndexByte(list[0].Address, '@')
	n, _ := refNormalize(list[0].Address[at+1:])
	switch {
	case d.Rewrite == nil && !owned:
		t.Fatalf("%s: accepted From %q, not owned", ten.Name, list[0].Address)
	case d.Rewrite != nil && ten.Config.FromPolicy != config.FromRewrite:
		t.Fatalf("%s: rewrite without from_policy rewrite", ten.Name)
	case d.Rewrite != nil && owned && validHostname(n):
		t.Fatalf("%s: rewrote the owned From %q", ten.Name, list[0].Address)
	case d.Rewrite != nil && !refOwnsAddress(ten, d.Rewrite.NewFrom):
		t.Fatalf("%s: rewrite to %q, not owned", ten.Name, d.Rewrite.NewFrom)
	}
	if d.Rewrite == nil {
		if d.FromDomain != n {
			t.Fatalf("%s: FromDomain %q, want %q", ten.Name, d.FromDomain, n)
		}
	}
	for _, key := range []string{"Sender", "Resent-From", "Resent-Sender"} {
		for _, v := range h.Values(key) {
			l, err := refParser.ParseList(v)
			if err != nil || len(l) == 0 {
				t.Fatalf("%s: accepted %s %q: %v", ten.Name, key, v, err)
			}
			for _, a := range l {
				if !refOwnsAddress(ten, a.Address) {
					t.Fatalf("%s: accepted %s %q", ten.Name, key, a.Address)
				}
			}
		}
	}
	if cs := d.ConfigurationSet; cs != ten.Config.ConfigurationSet && !slices.Contains(ten.Config.AllowedConfigurationSets, cs) {
		t.Fatalf("%s: configuration set %q", ten.Name, cs)
	}
	if ten.Config.DKIMRequired && d.DKIM == nil {
		t.Fatalf("%s: dkim_required but no key", ten.Name)
	}
	if d.DKIM != nil && !ten.OwnsDomain(d.DKIM.Domain) {
		t.Fatalf("%s: key for %q", ten.Name, d.DKIM.Domain)
	}
	for i, g := range d.Tags {
		if !sesTag.MatchString(g.Name) || !sesTag.MatchString(g.Value) {
			t.Fatalf("%s: bad tag %+v", ten.Name, g)
		}
		if i > 0 && d.Tags[i-1].Name >= g.Name {
			t.Fatalf("%s: tags not sorted and unique: %v", ten.Name, d.Tags)
		}
	}
	if tagValue(d.Tags, TagTenant) != ten.Name {
		t.Fatalf("%s: tenant tag %q", ten.Name, tagValue(d.Tags, TagTenant))
	}
}
