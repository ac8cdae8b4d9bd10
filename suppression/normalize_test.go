package suppression

import (
	"strings"
	"testing"

	"github.com/sesrelay/sesrelay/address"
)

func TestNormalize(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"bob@example.com", "bob@example.com"},
		{"Bob@Example.COM", "Bob@example.com"},
		{" <Bob@EXAMPLE.com.> ", "Bob@example.com"},
		{`"a b"@Example.com`, `"a b"@example.com`},
		{"x@bücher.example", "x@xn--bcher-kva.example"},
		{"x@XN--BCHER-KVA.example", "x@xn--bcher-kva.example"},
		{"user@sub.Ex-Ample.org", "user@sub.ex-ample.org"},
		{"no-domain", "no-domain"},
		{"a@", "a@"},
	} {
		if got := Normalize(c.in); got != c.want {
			t.Errorf("Normalize(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// TestNormalizeMatchesAddress: the ASCII fast path gives what
// address.Domain gives.
func TestNormalizeMatchesAddress(t *testing.T) {
	for _, d := range []string{"Example.COM", "example.com.", "a-b.c-d.example", "MAIL.Example.org", "x1.y2.z3"} {
		n, err := address.Domain(d)
		if err != nil {
			t.Fatal(err)
		}
		if got := Normalize("u@" + d); got != "u@"+n {
			t.Errorf("Normalize(u@%s) = %q, address.Domain gives %q", d, got, n)
		}
	}
}

func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"bob@example.com", "<A@B.C>", "x@bücher.example", `"q@x"@y.z`, "@", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n := Normalize(s)
		if Normalize(n) != n {
			t.Errorf("Normalize is not idempotent on %q: %q then %q", s, n, Normalize(n))
		}
		if at := strings.LastIndexByte(n, '@'); at > 0 && at < len(n)-1 && !strings.HasPrefix(strings.TrimSpace(s), "<") {
			// The local part is kept as written.
			if sat := strings.LastIndexByte(strings.TrimSpace(s), '@'); sat >= 0 && strings.TrimSpace(s)[:sat] != n[:at] {
				t.Errorf("Normalize(%q) = %q changed the local part", s, n)
			}
		}
	})
}
