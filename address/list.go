package address

import (
	"errors"
	"io"
	"mime"
	"net/mail"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
)

// WordDecoder decodes RFC 2047 encoded words, in every charset go-message
// knows (legacy applications still write ISO-8859-x and Windows-125x).
//
// The one rule for an unknown charset: the word's bytes are taken as they
// are (RFC 2047 6.1 (b), "best effort") instead of failing. Decoding only
// ever feeds display names and tag values, never ownership; a display name
// that is then not valid UTF-8 is dropped by CleanName. Every decoder in
// the relay is this one, so the policy and the header writer cannot
// disagree about a message.
var WordDecoder = &mime.WordDecoder{
	CharsetReader: func(cs string, in io.Reader) (io.Reader, error) {
		if r, err := charset.Reader(cs, in); err == nil {
			return r, nil
		}
		return in, nil
	},
}

var parser = &mail.AddressParser{WordDecoder: WordDecoder}

// DecodeHeader decodes the encoded words of an unstructured field value
// with WordDecoder. A value that does not decode is returned as it is.
func DecodeHeader(v string) string {
	if d, err := WordDecoder.DecodeHeader(v); err == nil {
		return d
	}
	return v
}

// ErrGroup is the error of ParseList for a value that uses group syntax.
var ErrGroup = errors.New("group syntax")

// IsGroup reports whether an address-list field value uses group syntax
// (RFC 5322 3.4: display-name ":" [group-list] ";"), that is, has a ":" or
// ";" outside quoted strings, comments and domain literals. net/mail
// accepts groups and flattens them into their members, so a From of
// "g: a@b;" would otherwise look like a single mailbox. A ":" inside an
// angle address (an obsolete source route) counts too: net/mail refuses
// those anyway. Unterminated quotes or comments are left to net/mail, which
// refuses them.
func IsGroup(v string) bool {
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

// ParseList parses an address-list field value that must not use group
// syntax (ErrGroup). Display names are decoded with WordDecoder. The error
// text is net/mail's without its "mail: " prefix; it may quote client
// text, which the caller escapes.
func ParseList(v string) ([]*mail.Address, error) {
	if IsGroup(v) {
		return nil, ErrGroup
	}
	list, err := parser.ParseList(v)
	if err != nil {
		return nil, errors.New(strings.ReplaceAll(err.Error(), "mail: ", ""))
	}
	if len(list) == 0 {
		return nil, errors.New("no address")
	}
	return list, nil
}

// CleanName makes a decoded display name safe to reuse: valid UTF-8 (else
// ""), no control characters, white space collapsed to single spaces.
func CleanName(s string) string {
	if !utf8.ValidString(s) {
		return ""
	}
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool {
		return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == ' ' || r == '\u2028' || r == '\u2029'
	}), " ")
}

// IsASCII reports whether s is 7-bit ASCII.
func IsASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
