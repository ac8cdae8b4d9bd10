package policy

import (
	"io"
	"mime"
	"net/mail"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"

	"github.com/sesrelay/sesrelay/config"
)

// normalizeDomain returns d as tenant domains are compiled: lowercase, one
// trailing dot removed, IDN in ASCII (punycode). It is config.NormalizeDomain
// with two differences: a wildcard ("*.x") is not a domain here, and the
// result must be a valid host name (non-empty labels of at most 63 letters,
// digits and hyphens, at most 253 octets), so that odd inputs such as
// "a..example.com" own nothing. The common case, an ASCII host name, is
// handled without calling idna and without allocating when d is already
// lowercase.
func normalizeDomain(d string) (string, bool) {
	if n, ok := fastDomain(d); ok {
		return n, true
	}
	if strings.HasPrefix(d, "*.") {
		return "", false
	}
	n, err := config.NormalizeDomain(d)
	if err != nil || !validHostname(n) {
		return "", false
	}
	return n, true
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

// validHostname checks a normalized (ASCII, lowercase) domain.
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

// domainOf returns the part of an address after its last "@" (a quoted
// local part may itself contain "@"), or false when there is none.
func domainOf(addr string) (string, bool) {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 {
		return "", false
	}
	return addr[at+1:], true
}

// wordDecoder decodes RFC 2047 display names. An unknown charset leaves the
// word's bytes as they are instead of failing: only the display name
// suffers, and ownership never depends on it.
var wordDecoder = &mime.WordDecoder{
	CharsetReader: func(cs string, in io.Reader) (io.Reader, error) {
		if r, err := charset.Reader(cs, in); err == nil {
			return r, nil
		}
		return in, nil
	},
}

var addressParser = &mail.AddressParser{WordDecoder: wordDecoder}

// hasGroup reports whether an address-list field value uses group syntax
// (RFC 5322 3.4: display-name ":" [group-list] ";"), that is, has a ":" or
// ";" outside quoted strings, comments and domain literals. net/mail
// accepts groups and flattens them into their members, so a From of
// "g: a@b;" would otherwise look like a single mailbox. A ":" inside an
// angle address (an obsolete source route) counts too: net/mail refuses
// those anyway. Unterminated quotes or comments are left to net/mail, which
// refuses them.
func hasGroup(v string) bool {
	var quoted, literal bool
	comment := 0
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case quoted:
			if c == '\\' {
				i++
			} else if c == '"' {
				quoted = false
			}
		case comment > 0:
			if c == '\\' {
				i++
			} else if c == '(' {
				comment++
			} else if c == ')' {
				comment--
			}
		case literal:
			if c == '\\' {
				i++
			} else if c == ']' {
				literal = false
			}
		default:
			switch c {
			case '"':
				quoted = true
			case '(':
				comment = 1
			case '[':
				literal = true
			case ':', ';':
				return true
			}
		}
	}
	return false
}

// parseMailboxes parses an address-list field value that must not use
// group syntax. It returns the mailboxes, or a short error text.
func parseMailboxes(v string) ([]*mail.Address, string) {
	if hasGroup(v) {
		return nil, "group syntax"
	}
	list, err := addressParser.ParseList(v)
	if err != nil {
		// net/mail quotes the client's text in its errors: escape it.
		e := strings.ReplaceAll(strings.TrimPrefix(err.Error(), "mail: "), "mail: ", "")
		return nil, escape(e)
	}
	if len(list) == 0 {
		return nil, "no address"
	}
	return list, ""
}

// cleanName makes a decoded display name safe to reuse: valid UTF-8, no
// control characters, spaces collapsed.
func cleanName(s string) string {
	if !utf8.ValidString(s) {
		return ""
	}
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool {
		return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == ' ' || r == '\u2028' || r == '\u2029'
	}), " ")
}
