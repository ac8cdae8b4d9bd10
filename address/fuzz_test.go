package address

import (
	"net/mail"
	"strings"
	"testing"

	"golang.org/x/net/idna"
)

// FuzzDomain checks the fast path against the obvious slow one (lowercase,
// trim, idna), and that a result is stable and a valid host name.
func FuzzDomain(f *testing.F) {
	for _, s := range []string{
		"billing.example.com", "eu.billing.example.com.", "EVIL-example.com", "bücher.example",
		"XN--BCHER-KVA.example", "a..b.example.com", "*.billing.example.com", "example．com",
		"xn--zz.example", "a.xn--.com", " example.com", "ab--c.example.com", "-a.example.com", "1.2.3.4",
		strings.Repeat("a", 64) + ".com",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, d string) {
		n, err := Domain(d)
		if fast, ok := fastDomain(d); ok {
			ref, rerr := idna.Lookup.ToASCII(strings.TrimSuffix(strings.ToLower(d), "."))
			if rerr != nil || ref != fast || err != nil || n != fast {
				t.Fatalf("fastDomain(%q) = %q, idna %q, %v; Domain %q, %v", d, fast, ref, rerr, n, err)
			}
		}
		if err != nil {
			return
		}
		if !validHostname(n) {
			t.Fatalf("Domain(%q) = %q, not a host name", d, n)
		}
		if again, err := Domain(n); err != nil || again != n {
			t.Fatalf("Domain(Domain(%q)) = %q, %v, want %q", d, again, err, n)
		}
	})
}

// FuzzPath checks that a path Path accepts is one net/mail reads back as
// the same mailbox, and that quoting is undone by Unquote.
func FuzzPath(f *testing.F) {
	for _, s := range []string{
		"a@example.com", "x@evil.com@example.org", `x"y@example.org`, "r,s@example.org",
		"a b@example.org", `a\b@example.org`, "jürgen@example.org", "@example.org", ".@a.example",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		p, err := Path(addr)
		if err != nil {
			return
		}
		local, domain, _ := Split(addr)
		plocal, pdomain, ok := Split(p)
		if !ok || Unquote(plocal) != local {
			t.Fatalf("Path(%q) = %q: local part %q does not unquote to %q", addr, p, plocal, local)
		}
		if want, _ := Domain(domain); pdomain != want {
			t.Fatalf("Path(%q) = %q: domain %q, want %q", addr, p, pdomain, want)
		}
		a, err := mail.ParseAddress("<" + p + ">")
		if err != nil {
			t.Fatalf("net/mail refuses Path(%q) = %q: %v", addr, p, err)
		}
		if l, _, _ := Split(a.Address); l != local {
			t.Fatalf("net/mail reads Path(%q) = %q as local part %q", addr, p, l)
		}
	})
}

// FuzzParseList checks that ParseList never accepts group syntax and never
// returns an empty list, and that StripAddresses leaves no foreign address
// in a display name.
func FuzzParseList(f *testing.F) {
	for _, s := range []string{
		"a@example.com", "g: a@example.com;", `"ceo@victim.com" <a@tenant.example>`,
		"=?utf-8?q?ceo=40victim.com?= <a@tenant.example>", "=?x-unknown?q?Shop?= <s@example.com>",
		"(c:;) a@example.com", `"a;b" <a@example.com>`,
	} {
		f.Add(s)
	}
	owned := func(d string) bool { return d == "tenant.example" }
	f.Fuzz(func(t *testing.T, v string) {
		list, err := ParseList(v)
		if err != nil {
			return
		}
		if len(list) == 0 || IsGroup(v) {
			t.Fatalf("ParseList(%q) = %v", v, list)
		}
		for _, a := range list {
			name, _ := StripAddresses(CleanName(a.Name), owned)
			for _, r := range name {
				if isAt(r) {
					// Only an owned address may be left.
					for tok := range strings.FieldsFuncSeq(name, nameSeparator) {
						if i := strings.IndexFunc(tok, isAt); i >= 0 {
							_, sz := utf8DecodeAt(tok, i)
							d, derr := Domain(strings.TrimRight(tok[i+sz:], "."))
							if derr != nil || !owned(d) {
								t.Fatalf("StripAddresses(%q) left %q", a.Name, tok)
							}
						}
					}
					break
				}
			}
		}
	})
}

func utf8DecodeAt(s string, i int) (rune, int) {
	for _, r := range s[i:] {
		return r, len(string(r))
	}
	return 0, 0
}
