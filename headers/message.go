// Package headers holds the pure functions the relay applies to a message
// between DATA and SES: reading and canonicalizing it (RFC 5322 line rules,
// bare newlines), header hygiene, From rewriting, RFC 2369/8058
// List-Unsubscribe, and DKIM signing (RFC 6376, RFC 8463). Nothing here
// does I/O beyond the byte slices it is given.
package headers

import (
	"bufio"
	"bytes"
	"fmt"
	"sync"

	"github.com/emersion/go-message/textproto"
)

// MaxLineLength is the RFC 5322 limit on a line, excluding CRLF.
const MaxLineLength = 998

// Message is a parsed message: the header fields in order and the body,
// whose lines all end in CRLF.
type Message struct {
	Header textproto.Header
	Body   []byte

	// buf is the canonical message Read split, whose tail is Body: the
	// storage Assemble reuses. nil when the Message was built by hand or
	// after Assemble used it.
	buf []byte
}

// BareNewlines says what Read does with a CR or LF that is not part of a
// CRLF pair.
type BareNewlines int

const (
	// NormalizeBareNewlines turns a lone LF or lone CR into CRLF.
	NormalizeBareNewlines BareNewlines = iota
	// RejectBareNewlines refuses a message with a lone LF or CR.
	RejectBareNewlines
)

// FormatError is a message that cannot be sent as it is. Field names the
// header concerned, if any; Line is 1-based, 0 when not about one line.
type FormatError struct {
	Field  string
	Line   int
	Reason string
}

func (e *FormatError) Error() string {
	switch {
	case e.Field != "" && e.Line > 0:
		return fmt.Sprintf("header %s (line %d): %s", e.Field, e.Line, e.Reason)
	case e.Field != "":
		return fmt.Sprintf("header %s: %s", e.Field, e.Reason)
	case e.Line > 0:
		return fmt.Sprintf("line %d: %s", e.Line, e.Reason)
	}
	return e.Reason
}

// Canonicalize returns raw with every line ending in CRLF, checking the
// line length limit. With RejectBareNewlines a lone CR or LF is an error.
// raw is not modified; when it is already canonical it is returned as is.
func Canonicalize(raw []byte, mode BareNewlines) ([]byte, error) {
	// Fast path: scan once; most messages are already canonical.
	line, start := 1, 0
	canonical := true
	for i := 0; i < len(raw); i++ {
		switch raw[i] {
		case '\r':
			if i+1 < len(raw) && raw[i+1] == '\n' {
				if i-start > MaxLineLength {
					return nil, &FormatError{Line: line, Reason: fmt.Sprintf("longer than %d characters (SES and RFC 5322 limit)", MaxLineLength)}
				}
				i++
				line++
				start = i + 1
				continue
			}
			fallthrough
		case '\n':
			if mode == RejectBareNewlines {
				return nil, &FormatError{Line: line, Reason: "bare CR or LF (lines must end in CRLF)"}
			}
			canonical = false
			if i-start > MaxLineLength {
				return nil, &FormatError{Line: line, Reason: fmt.Sprintf("longer than %d characters (SES and RFC 5322 limit)", MaxLineLength)}
			}
			line++
			start = i + 1
		}
	}
	if len(raw)-start > MaxLineLength {
		return nil, &FormatError{Line: line, Reason: fmt.Sprintf("longer than %d characters (SES and RFC 5322 limit)", MaxLineLength)}
	}
	if canonical && (len(raw) == 0 || raw[len(raw)-1] == '\n') {
		return raw, nil
	}
	return crlf(raw), nil
}

// crlf turns every lone CR or LF into CRLF and ends raw with CRLF: the
// conversion of Canonicalize, without its checks.
func crlf(raw []byte) []byte {
	out := make([]byte, 0, len(raw)+len(raw)/32+2)
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; c {
		case '\r':
			out = append(out, '\r', '\n')
			if i+1 < len(raw) && raw[i+1] == '\n' {
				i++
			}
		case '\n':
			out = append(out, '\r', '\n')
		default:
			out = append(out, c)
		}
	}
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, '\r', '\n')
	}
	return out
}

// headerReaders are the readers of Read (ReadHeader copies what it keeps).
var headerReaders = sync.Pool{New: func() any { return bufio.NewReader(nil) }}

// Read canonicalizes raw and splits it into header and body.
func Read(raw []byte, mode BareNewlines) (*Message, error) {
	c, err := Canonicalize(raw, mode)
	if err != nil {
		return nil, err
	}
	rd := bytes.NewReader(c)
	br := headerReaders.Get().(*bufio.Reader)
	br.Reset(rd)
	h, err := textproto.ReadHeader(br)
	// What ReadHeader did not consume is the body.
	body := c[len(c)-rd.Len()-br.Buffered():]
	br.Reset(nil)
	headerReaders.Put(br)
	if err != nil {
		return nil, &FormatError{Reason: "malformed header: " + err.Error()}
	}
	if h.Len() == 0 {
		return nil, &FormatError{Reason: "the message has no header"}
	}
	return &Message{Header: h, Body: body, buf: c}, nil
}

// Bytes serializes the message into a new slice.
func (m *Message) Bytes() []byte {
	var b bytes.Buffer
	b.Grow(len(m.Body) + 2048)
	_ = textproto.WriteHeader(&b, m.Header)
	b.Write(m.Body)
	return b.Bytes()
}

// Assemble serializes the message like Bytes, but in the storage of the
// slice Read was given, when its capacity holds the result: only the header
// is rebuilt, written in front of the body, and the body moves within the
// same array (not at all when the header kept its length), so nothing in
// proportion to the body is allocated. Without that room, or for a Message
// not made by Read, it is Bytes.
//
// Assemble consumes the storage: the slice given to Read, and any Message
// sharing m.Body (Header.Copy with the same Body), must not be used after
// it; m.Body then refers to the body inside the result. The storage is used
// once: a second Assemble returns a new slice.
func (m *Message) Assemble() []byte {
	buf := m.buf
	m.buf = nil
	off := len(buf) - len(m.Body)
	if buf == nil || off < 0 || len(m.Body) > 0 && &buf[off] != &m.Body[0] {
		return m.bytesMoved()
	}
	var hb bytes.Buffer
	hb.Grow(off + 512)
	_ = textproto.WriteHeader(&hb, m.Header)
	hdr := hb.Bytes()
	n := len(hdr) + len(m.Body)
	if n > cap(buf) {
		return m.bytesMoved()
	}
	out := buf[:n]
	if len(hdr) != off {
		copy(out[len(hdr):], m.Body) // overlapping: copy moves like memmove
	}
	copy(out, hdr)
	m.Body = out[len(hdr):]
	return out
}

// bytesMoved is Bytes, with m.Body then referring to the body in the result.
func (m *Message) bytesMoved() []byte {
	out := m.Bytes()
	m.Body = out[len(out)-len(m.Body):]
	return out
}
