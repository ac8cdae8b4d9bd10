// Package address owns every question about what names a mailbox or a
// domain: normalising domains (lowercase, one trailing dot removed, IDNA to
// ASCII, RFC 1035 host names), envelope paths (RFC 5321 4.1.2), header
// address lists and group syntax (RFC 5322 3.4), and RFC 2047 encoded words
// in display names (one rule for an unknown charset). config, policy,
// headers and relay use it; it imports nothing of the relay's own.
//
// The model is chasquid's internal/normalize and internal/envelope: one
// small package, pure functions, fuzzed.
package address

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/net/idna"
)

// Domain returns d in the form the relay compares domains in: lowercase,
// one trailing dot removed, an IDN in ASCII (punycode). The result is a
// valid host name of at least two labels: non-empty labels of at most 63
// letters, digits and hyphens, not starting or ending with a hyphen, at
// most 253 octets. A wildcard ("*.x") is not a domain here (see Pattern).
//
// The common case, an ASCII host name, is handled without calling idna and
// without allocating when d is already lowercase.
func Domain(d string) (string, error) {
	if n, ok := fastDomain(d); ok {
		return n, nil
	}
	if strings.HasPrefix(d, "*.") {
		return "", fmt.Errorf("invalid domain %q: a wildcard is not a domain", d)
	}
	return slowDomain(d)
}

// Pattern normalises a tenant domain entry: a domain as Domain returns it,
// or "*." and such a domain (its subdomains, see Covers).
func Pattern(p string) (string, error) {
	base, wild := strings.CutPrefix(p, "*.")
	n, err := Domain(base)
	if err != nil {
		return "", err
	}
	if wild {
		return "*." + n, nil
	}
	return n, nil
}

// Covers reports whether a normalised pattern ("*.x" means x's
// subdomains, on a label boundary) covers the normalised domain d.
func Covers(pattern, d string) bool {
	if base, ok := strings.CutPrefix(pattern, "*."); ok {
		return strings.HasSuffix(d, "."+base)
	}
	return d == pattern
}

func slowDomain(d string) (string, error) {
	t := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
	if t == "" {
		return "", errors.New("empty domain")
	}
	a, err := idna.Lookup.ToASCII(t)
	if err != nil {
		return "", fmt.Errorf("invalid domain %q: %v", t, err)
	}
	if !strings.Contains(a, ".") {
		return "", fmt.Errorf("invalid domain %q: needs at least two labels", t)
	}
	if !validHostname(a) {
		return "", fmt.Errorf("invalid domain %q: labels must be 1-63 letters, digits and hyphens", t)
	}
	return a, nil
}

// fastDomain handles an ASCII host name that idna would only lowercase. It
// returns false both for invalid names and for names it leaves to idna
// (non-ASCII, "xn--" labels, spaces).
func fastDomain(d string) (string, bool) {
	d = strings.TrimSuffix(d, ".")
	if len(d) == 0 || len(d) > 253 {
		return "", false
	}
	upper, labels, start := false, 1, 0
	for i := 0; i <= len(d); i++ {
		if i == len(d) || d[i] == '.' {
			l := d[start:i]
			if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' ||
				(len(l) >= 4 && l[2] == '-' && l[3] == '-') {
				return "", false
			}
			if i < len(d) {
				labels++
			}
			start = i + 1
			continue
		}
		switch c := d[i]; {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-':
		case 'A' <= c && c <= 'Z':
			upper = true
		default:
			return "", false
		}
	}
	if labels < 2 {
		return "", false
	}
	if upper {
		d = strings.ToLower(d)
	}
	return d, true
}

// validHostname checks a normalised (ASCII, lowercase) domain.
func validHostname(d string) bool {
	if len(d) == 0 || len(d) > 253 || !strings.Contains(d, ".") {
		return false
	}
	for l := range strings.SplitSeq(d, ".") {
		if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}
