package address

import (
	"strings"
	"unicode"
)

// StripAddresses removes from a display name (decoded, see CleanName) every
// address-like text whose domain owned does not accept: "local@domain",
// with "@" or one of its look-alikes (U+FF20 FULLWIDTH COMMERCIAL AT,
// U+FE6B SMALL COMMERCIAL AT), running up to white space or one of
// <>()[]",;:. A domain that is not a valid domain name is never owned.
// Brackets and quotes left empty are removed too, and white space is
// collapsed. It returns the new name and whether anything was removed.
//
// It is what display_name: strip_addresses applies: "ceo@victim.com"
// <a@tenant.example> would otherwise show the victim's address to most
// readers.
func StripAddresses(name string, owned func(domain string) bool) (string, bool) {
	rs := []rune(name)
	removed := false
	for i := 0; i < len(rs); i++ {
		if !isAt(rs[i]) {
			continue
		}
		start := i
		for start > 0 && !nameSeparator(rs[start-1]) {
			start--
		}
		end := i + 1
		for end < len(rs) && !nameSeparator(rs[end]) {
			end++
		}
		domain := strings.TrimRight(string(rs[i+1:end]), ".")
		if d, err := Domain(domain); err == nil && owned(d) {
			continue
		}
		rs = append(rs[:start], rs[end:]...)
		removed = true
		i = start - 1
	}
	if !removed {
		return name, false
	}
	out := string(rs)
	for {
		n := out
		for _, empty := range []string{"<>", "()", "[]", `""`, "< >", "( )", "[ ]", `" "`} {
			n = strings.ReplaceAll(n, empty, "")
		}
		if n == out {
			break
		}
		out = n
	}
	return strings.Join(strings.FieldsFunc(out, unicode.IsSpace), " "), true
}

func isAt(r rune) bool { return r == '@' || r == '\uFF20' || r == '\uFE6B' }

func nameSeparator(r rune) bool {
	return unicode.IsSpace(r) || strings.ContainsRune(`<>()[]",;:`, r)
}
