package address

import (
	"errors"
	"testing"
)

func TestDomain(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"Example.COM", "example.com"},
		{"example.com.", "example.com"},
		{"bücher.example", "xn--bcher-kva.example"},
		{"XN--BCHER-KVA.example", "xn--bcher-kva.example"},
		{"example．com", "example.com"},
		{"a..b.example", ""},
		{"*.example.com", ""},
		{"localhost", ""},
		{"x_y.com", ""},
		{"-a.example.com", ""},
		{"", ""},
		{"[1.2.3.4]", ""},
	} {
		got, err := Domain(c.in)
		if c.want == "" {
			if err == nil {
				t.Errorf("Domain(%q) = %q, want an error", c.in, got)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("Domain(%q) = %q, %v, want %q", c.in, got, err, c.want)
		}
	}
}

func TestPatternCovers(t *testing.T) {
	p, err := Pattern("*.Example.com.")
	if err != nil || p != "*.example.com" {
		t.Fatalf("Pattern = %q, %v", p, err)
	}
	for d, want := range map[string]bool{"a.example.com": true, "example.com": false, "evil-example.com": false, "a.b.example.com": true} {
		if Covers(p, d) != want {
			t.Errorf("Covers(%q, %q) = %v", p, d, !want)
		}
	}
	if !Covers("example.com", "example.com") || Covers("example.com", "a.example.com") {
		t.Error("exact pattern")
	}
}

func TestPath(t *testing.T) {
	for _, c := range []struct {
		in, want string
		err      error
	}{
		{"a@Example.COM", "a@example.com", nil},
		{"a.b+c@example.com", "a.b+c@example.com", nil},
		// go-smtp hands quoted local parts over unquoted: quote them again.
		{"x@evil.com@example.org", `"x@evil.com"@example.org`, nil},
		{"r,s@example.org", `"r,s"@example.org`, nil},
		{`x"y@example.org`, `"x\"y"@example.org`, nil},
		{`a\b@example.org`, `"a\\b"@example.org`, nil},
		{"a b@example.org", `"a b"@example.org`, nil},
		{".a@example.org", `".a"@example.org`, nil},
		{"a..b@example.org", `"a..b"@example.org`, nil},
		{"jürgen@example.org", "", ErrNonASCII},
		{"a\x01b@example.org", "", ErrLocalPart},
		{"a@", "", ErrNoDomain},
		{"a", "", ErrNoDomain},
		{"@example.org", "", ErrEmptyLocal},
		{"a@b", "", ErrBadDomain},
		{"a@*.example.org", "", ErrBadDomain},
		{"a@bücher.example", "a@xn--bcher-kva.example", nil},
	} {
		got, err := Path(c.in)
		if !errors.Is(err, c.err) || got != c.want {
			t.Errorf("Path(%q) = %q, %v, want %q, %v", c.in, got, err, c.want, c.err)
		}
		if err == nil {
			l, _, _ := Split(got)
			il, _, _ := Split(c.in)
			if Unquote(l) != il {
				t.Errorf("Unquote(%q) = %q, want %q", l, Unquote(l), il)
			}
		}
	}
}

func TestIsGroup(t *testing.T) {
	for v, want := range map[string]bool{
		"g: a@example.com;":                 true,
		"g:;":                               true,
		"a@example.com":                     false,
		`"a:b" <a@example.com>`:             false,
		"(a:b) a@example.com":               false,
		"a@[1:2::3]":                        false,
		"<@route:a@example.com>":            true,
		`"unterminated: <a@example.com>`:    false,
		`"esc \" g:" <a@example.com>`:       false,
		"a@example.com (note: (nested:) x)": false,
		`<a@example.com> (a\) b:)`:          false,
		"<a@[IPv6:2001:db8::1]>":            false,
		"x (c) : a@example.com;":            true,
		"a@example.com; b@example.com":      true,
	} {
		if got := IsGroup(v); got != want {
			t.Errorf("IsGroup(%q) = %v, want %v", v, got, want)
		}
	}
}

func TestParseList(t *testing.T) {
	if _, err := ParseList("g: a@example.com;"); !errors.Is(err, ErrGroup) {
		t.Errorf("group: %v", err)
	}
	l, err := ParseList("=?iso-8859-1?q?Ren=E9?= <r@example.com>, b@example.com")
	if err != nil || len(l) != 2 || l[0].Name != "René" {
		t.Fatalf("ParseList = %v, %v", l, err)
	}
	// The one rule for an unknown charset: the word's bytes as they are.
	l, err = ParseList("=?x-unknown?q?Shop?= <s@example.com>")
	if err != nil || l[0].Name != "Shop" {
		t.Fatalf("unknown charset: %v, %v", l, err)
	}
	if got := DecodeHeader("=?x-unknown?q?a_b?="); got != "a b" {
		t.Errorf("DecodeHeader = %q", got)
	}
	if _, err := ParseList(""); err == nil {
		t.Error("empty list accepted")
	}
}

func TestStripAddresses(t *testing.T) {
	owned := func(d string) bool { return d == "tenant.example" || d == "shop.tenant.example" }
	for _, c := range []struct {
		in, want string
		removed  bool
	}{
		{"ceo@victim.com", "", true},
		{"CEO <ceo@victim.com>", "CEO", true},
		{"CEO (ceo@victim.com) Office", "CEO Office", true},
		{"Shop ceo\uFF20victim.com", "Shop", true},
		{"ceo@victim．com team", "team", true},
		{"Sales sales@tenant.example", "Sales sales@tenant.example", false},
		{"a@shop.tenant.example.", "a@shop.tenant.example.", false},
		{"x@y", "", true},
		{"Jane Doe", "Jane Doe", false},
		{"a@b@tenant.example", "", true},
	} {
		got, removed := StripAddresses(c.in, owned)
		if got != c.want || removed != c.removed {
			t.Errorf("StripAddresses(%q) = %q, %v, want %q, %v", c.in, got, removed, c.want, c.removed)
		}
	}
}

func TestParsePath(t *testing.T) {
	for in, want := range map[string]string{
		`"x@evil.com"@example.org`: "x@evil.com@example.org",
		`"x\"y"@example.org`:       `x"y@example.org`,
		"a@example.org":            "a@example.org",
		`"open@example.org`:        `"open@example.org`,
	} {
		if got := ParsePath(in); got != want {
			t.Errorf("ParsePath(%q) = %q, want %q", in, got, want)
		}
		if p, err := Path(ParsePath(in)); err == nil && in != "a@example.org" && in[0] == '"' && p != in && in != `"open@example.org` {
			t.Errorf("Path(ParsePath(%q)) = %q, want it back", in, p)
		}
	}
}
