package headers

import (
	"fmt"
	"strings"

	"github.com/emersion/go-message/textproto"
)

// go-message's textproto.Header can only insert at the top (Add and AddRaw
// both prepend) and delete. Edits that keep a field in place, or append at
// the bottom, take the raw fields out and put them back.

// rawFields returns the header's fields in order, each a complete
// "Name: value\r\n" including folding.
func rawFields(h *textproto.Header) ([][]byte, error) {
	out := make([][]byte, 0, h.Len())
	fs := h.Fields()
	for fs.Next() {
		b, err := fs.Raw()
		if err != nil {
			return nil, &FormatError{Field: fs.Key(), Reason: err.Error()}
		}
		out = append(out, b)
	}
	return out, nil
}

// setFields replaces h with the given raw fields, in order.
func setFields(h *textproto.Header, fields [][]byte) {
	var nh textproto.Header
	for i := len(fields) - 1; i >= 0; i-- {
		nh.AddRaw(fields[i])
	}
	*h = nh
}

// fieldName returns the name of a raw field as written.
func fieldName(raw []byte) string {
	name, _, _ := strings.Cut(string(raw), ":")
	return strings.TrimRight(name, " \t")
}

// count returns how many fields are named name, compared without regard to
// case (go-message canonicalizes only names that are HTTP tokens).
func count(h *textproto.Header, name string) int {
	n := 0
	fs := h.Fields()
	for fs.Next() {
		if strings.EqualFold(fs.Key(), name) {
			n++
		}
	}
	return n
}

// values returns the unfolded values of the fields named name, top first.
func values(h *textproto.Header, name string) []string {
	var vs []string
	fs := h.Fields()
	for fs.Next() {
		if strings.EqualFold(fs.Key(), name) {
			vs = append(vs, fs.Value())
		}
	}
	return vs
}

// del removes every field whose name satisfies match and reports how many
// it removed.
func del(h *textproto.Header, match func(name string) bool) int {
	n := 0
	fs := h.Fields()
	for fs.Next() {
		if match(fs.Key()) {
			fs.Del()
			n++
		}
	}
	return n
}

// delName removes every field named name, without regard to case.
func delName(h *textproto.Header, name string) int {
	return del(h, func(k string) bool { return strings.EqualFold(k, name) })
}

// foldLimit is where formatField starts a continuation line (RFC 5322
// 2.1.1 "SHOULD be no more than 78 characters").
const foldLimit = 78

// formatField returns "name: value\r\n", folded before a space when a line
// would pass foldLimit. It never folds inside a word, nor at a space next to
// other white space: RFC 5322 unfolding (drop the CRLF) and the lenient kind
// that collapses the white space around a line break (go-message) then both
// give the value back exactly. A word that cannot fit in MaxLineLength is an
// error. value must not contain CR or LF.
func formatField(name, value string) ([]byte, error) {
	if strings.ContainsAny(value, "\r\n") {
		return nil, fmt.Errorf("header %s: value contains a line break", name)
	}
	var b strings.Builder
	b.Grow(len(name) + len(value) + 8)
	b.WriteString(name)
	b.WriteString(":")
	line := len(name) + 1
	words := strings.Split(value, " ")
	for i, w := range words {
		// Each word is written with the space that preceded it (the one
		// after the colon for the first word); folding turns that space
		// into CRLF + space, which unfolds back to the same space.
		if i > 0 && foldable(words[i-1], w) && line+1+len(w) > foldLimit {
			b.WriteString("\r\n")
			line = 0
		}
		b.WriteString(" ")
		b.WriteString(w)
		line += 1 + len(w)
		if line > MaxLineLength {
			return nil, &FormatError{Field: name, Reason: fmt.Sprintf("a word longer than %d characters cannot be folded", MaxLineLength)}
		}
	}
	b.WriteString("\r\n")
	return []byte(b.String()), nil
}

// foldable reports whether the single space between the words prev and
// next may become a fold: neither side is white space.
func foldable(prev, next string) bool {
	return prev != "" && next != "" && !strings.HasSuffix(prev, "\t") && !strings.HasPrefix(next, "\t")
}

// prependField adds name: value at the top of h.
func prependField(h *textproto.Header, name, value string) error {
	f, err := formatField(name, value)
	if err != nil {
		return err
	}
	h.AddRaw(f)
	return nil
}
