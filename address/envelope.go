package address

import (
	"errors"
	"strings"
)

// Errors of Path. ErrNonASCII is its own error because it has its own
// reply (SES has no SMTPUTF8); the others are syntax errors.
var (
	ErrNonASCII   = errors.New("non-ASCII local part")
	ErrNoDomain   = errors.New("no domain")
	ErrLocalPart  = errors.New("bad local part")
	ErrBadDomain  = errors.New("bad domain")
	ErrEmptyLocal = errors.New("empty local part")
)

// Split returns the local part and the domain of addr, split at its last
// "@" (a quoted local part may itself hold "@"). ok is false when there is
// no "@", or nothing before or after it.
func Split(addr string) (local, domain string, ok bool) {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 {
		return "", "", false
	}
	return addr[:at], addr[at+1:], true
}

// Path checks an envelope address as go-smtp hands it over and returns the
// form the relay passes on: the domain normalised (Domain), the local part
// quoted where it is not a dot-atom (QuoteLocal).
//
// go-smtp removes the quoting of a quoted local part: RCPT
// TO:<"x@evil.com"@example.org> arrives as x@evil.com@example.org. The
// address is split at its last "@", so that reads back as the local part
// x@evil.com, and Path quotes it again: "x@evil.com"@example.org names the
// same mailbox the client named, where the unquoted text would name
// another (RFC 5321 4.1.2: the quoted and unquoted forms are the same
// mailbox only when the local part is a dot-string).
//
// The local part must be 7-bit ASCII (ErrNonASCII: SES has no SMTPUTF8)
// and hold no control characters (ErrLocalPart: RFC 5321 has no way to
// write them, quoted or not).
func Path(addr string) (string, error) {
	local, domain, ok := Split(addr)
	if !ok {
		if strings.HasPrefix(addr, "@") && len(addr) > 1 {
			return "", ErrEmptyLocal
		}
		return "", ErrNoDomain
	}
	for i := 0; i < len(local); i++ {
		switch c := local[i]; {
		case c >= 0x80:
			return "", ErrNonASCII
		case c < 0x20 || c == 0x7f:
			return "", ErrLocalPart
		}
	}
	d, err := Domain(domain)
	if err != nil {
		return "", ErrBadDomain
	}
	return QuoteLocal(local) + "@" + d, nil
}

// ParsePath reads an address as a client writes it in MAIL FROM or RCPT
// TO (without the angle brackets) into the form go-smtp hands a session:
// a quoted local part loses its quoting ("x@y"@example.org becomes
// x@y@example.org), anything else is returned as it is. explain uses it
// so that it sees what a live session sees.
func ParsePath(s string) string {
	if !strings.HasPrefix(s, `"`) {
		return s
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			if i+1 < len(s) {
				i++
				b.WriteByte(s[i])
			}
		case '"':
			return b.String() + s[i+1:]
		default:
			b.WriteByte(c)
		}
	}
	return s // unterminated: go-smtp refuses it; leave it to Path
}

// QuoteLocal returns local as it must be written in an address: as it is
// when it is a dot-string (RFC 5321 4.1.2: atoms of atext joined by single
// dots), else as a quoted string with '"' and '\' escaped. local must be
// printable ASCII or space.
func QuoteLocal(local string) string {
	if isDotString(local) {
		return local
	}
	var b strings.Builder
	b.Grow(len(local) + 2)
	b.WriteByte('"')
	for i := 0; i < len(local); i++ {
		if c := local[i]; c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(local[i])
	}
	b.WriteByte('"')
	return b.String()
}

// Unquote returns the text of a local part written by QuoteLocal (or by a
// client): the content of a quoted string with its quoted pairs resolved,
// or local itself when it is not quoted.
func Unquote(local string) string {
	if len(local) < 2 || local[0] != '"' || local[len(local)-1] != '"' {
		return local
	}
	var b strings.Builder
	for i := 1; i < len(local)-1; i++ {
		if local[i] == '\\' && i+1 < len(local)-1 {
			i++
		}
		b.WriteByte(local[i])
	}
	return b.String()
}

func isDotString(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '.' {
			if s[i-1] == '.' {
				return false
			}
			continue
		}
		if !isAtext(c) {
			return false
		}
	}
	return true
}

// isAtext: RFC 5322 3.2.3 atext.
func isAtext(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}
