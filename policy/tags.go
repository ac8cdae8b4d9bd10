package policy

import (
	"strings"
	"unicode/utf8"
)

// maxTagLen is the SES limit on a tag name or value.
const maxTagLen = 256

func tagByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-'
}

// SanitizeTagValue maps s to the SES tag character set: every character
// outside [A-Za-z0-9_-] becomes "_" (one per character, not per byte), and
// the result is cut to 256 characters. Values that are already valid are
// returned as they are, without allocating. The empty string stays empty:
// callers drop such tags.
func SanitizeTagValue(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if !tagByte(s[i]) {
			clean = false
			break
		}
	}
	if clean {
		if len(s) > maxTagLen {
			return s[:maxTagLen]
		}
		return s
	}
	var b strings.Builder
	b.Grow(min(len(s), maxTagLen))
	for i := 0; i < len(s) && b.Len() < maxTagLen; {
		c := s[i]
		if tagByte(c) {
			b.WriteByte(c)
			i++
			continue
		}
		b.WriteByte('_')
		if c < utf8.RuneSelf {
			i++
		} else {
			_, n := utf8.DecodeRuneInString(s[i:])
			i += n
		}
	}
	return b.String()
}
