package headers

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"io"
	"mime"
	"mime/quotedprintable"
	"strings"

	"github.com/emersion/go-message/textproto"
)

// maxMIMEDepth bounds the nesting EncodeLongLines follows (multipart in
// multipart, message/rfc822 parts); deeper parts are left as they are.
const maxMIMEDepth = 16

// EncodeLongLines returns raw with every MIME part that has a line longer
// than MaxLineLength re-encoded so that no line is (RFC 2045): a part in
// 7bit, 8bit or binary (or with no Content-Transfer-Encoding) becomes
// quoted-printable, a quoted-printable part is decoded and encoded again,
// a base64 part is re-wrapped at 76 characters. The decoded content of
// every part is unchanged; parts without a long line are not touched, nor
// is any header field (a top-level part that gets a
// Content-Transfer-Encoding also gets MIME-Version: 1.0 when it has none).
//
// What it cannot fix it leaves as it is, for Read to refuse: a long
// header line, a long line in a multipart preamble or epilogue, a part
// in another transfer encoding, an invalid base64 body. With
// RejectBareNewlines a message with a bare CR or LF is returned unchanged;
// with NormalizeBareNewlines the result has CRLF line ends. raw is not
// modified; without a long line it is returned as is.
func EncodeLongLines(raw []byte, mode BareNewlines) []byte {
	if !hasLongLine(raw) {
		return raw
	}
	msg := raw
	if hasBareNewline(raw) {
		if mode == RejectBareNewlines {
			return raw
		}
		msg = crlf(raw)
	}
	h, body, ok := splitEntity(msg)
	if !ok || h.Len() == 0 {
		return raw
	}
	out, changed := encodeEntity(&h, body, 0)
	if !changed {
		return raw
	}
	if !h.Has("Mime-Version") && h.Has("Content-Transfer-Encoding") {
		h.AddRaw([]byte("MIME-Version: 1.0\r\n")) // Set would write Mime-Version
	}
	return joinEntity(h, out)
}

// encodeEntity re-encodes body, the body of an entity with header h, and
// updates h; changed is false when nothing was done.
func encodeEntity(h *textproto.Header, body []byte, depth int) (out []byte, changed bool) {
	if depth > maxMIMEDepth || !hasLongLine(body) {
		return body, false
	}
	mt, params := "text/plain", map[string]string(nil)
	if ct := h.Get("Content-Type"); ct != "" {
		var err error
		if mt, params, err = mime.ParseMediaType(ct); err != nil {
			return body, false
		}
	}
	switch {
	case strings.HasPrefix(mt, "multipart/"):
		if params["boundary"] == "" {
			return body, false
		}
		return encodeMultipart(body, params["boundary"], depth)
	case mt == "message/rfc822" || mt == "message/global":
		// RFC 2046 §5.2.1: no transfer encoding but 7bit, 8bit or binary
		// for a message; re-encode inside it.
		nh, nbody, ok := splitEntity(body)
		if !ok {
			return body, false
		}
		nout, changed := encodeEntity(&nh, nbody, depth+1)
		if !changed {
			return body, false
		}
		return joinEntity(nh, nout), true
	}
	switch cte := strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding"))); cte {
	case "", "7bit", "8bit", "binary":
		h.Set("Content-Transfer-Encoding", "quoted-printable")
		return encodeQP(body), true
	case "quoted-printable":
		dec, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(body)))
		if err != nil {
			return body, false
		}
		out := encodeQP(dec)
		// A body whose last line ends in a soft line break ("=") has
		// content without a final line break, also when the message's
		// closing CRLF follows it; the new body must end the same way,
		// or that CRLF would become content.
		crlfEnd := bytes.HasSuffix(body, []byte("\r\n"))
		last := bytes.TrimRight(bytes.TrimSuffix(body, []byte("\r\n")), " \t")
		if bytes.HasSuffix(last, []byte("=")) && len(out) > 0 && !bytes.HasSuffix(out, []byte("\r\n")) {
			out = append(out, '=')
			if crlfEnd {
				out = append(out, "\r\n"...)
			}
		}
		return out, true
	case "base64":
		dec, err := base64.StdEncoding.DecodeString(string(bytes.Map(dropSpace, body)))
		if err != nil {
			return body, false
		}
		return wrapBase64(dec, bytes.HasSuffix(body, []byte("\r\n"))), true
	}
	return body, false
}

// encodeMultipart re-encodes the parts of a multipart body (RFC 2046
// §5.1.1): the CRLF before a delimiter line belongs to the delimiter, and
// the preamble, the delimiters and the epilogue are kept as they are.
func encodeMultipart(body []byte, boundary string, depth int) ([]byte, bool) {
	delim := []byte("--" + boundary)
	var out bytes.Buffer
	out.Grow(len(body) + len(body)/16)
	changed := false
	partStart := -1
	for pos := 0; pos < len(body); {
		next := len(body)
		lineEnd := len(body)
		if i := bytes.Index(body[pos:], []byte("\r\n")); i >= 0 {
			lineEnd, next = pos+i, pos+i+2
		}
		closing, isDelim := delimiter(body[pos:lineEnd], delim)
		if !isDelim {
			pos = next
			continue
		}
		if partStart < 0 {
			out.Write(body[:pos]) // the preamble and its CRLF
		} else {
			end := max(partStart, pos-2)
			part, c := encodePart(body[partStart:end], depth+1)
			changed = changed || c
			out.Write(part)
			if pos-2 >= partStart {
				out.WriteString("\r\n")
			}
		}
		out.Write(body[pos:next])
		if closing {
			out.Write(body[next:]) // the epilogue
			return out.Bytes(), changed
		}
		partStart = next
		pos = next
	}
	// No closing delimiter: leave the body as it came.
	return body, false
}

// delimiter reports whether line is a boundary delimiter line for delim
// ("--boundary", optionally followed by "--" for the closing one, then
// optional transport padding).
func delimiter(line, delim []byte) (closing, ok bool) {
	rest, found := bytes.CutPrefix(line, delim)
	if !found {
		return false, false
	}
	rest, closing = bytes.CutPrefix(rest, []byte("--"))
	if len(bytes.Trim(rest, " \t")) != 0 {
		return false, false
	}
	return closing, true
}

// encodePart re-encodes one body part: its header, a blank line and its
// body (a part that starts with CRLF has an empty header).
func encodePart(part []byte, depth int) ([]byte, bool) {
	h, body, ok := splitEntity(part)
	if !ok {
		return part, false
	}
	out, changed := encodeEntity(&h, body, depth)
	if !changed {
		return part, false
	}
	return joinEntity(h, out), true
}

// splitEntity reads the header of a CRLF entity and returns it and the
// body; ok is false without a header/body separator or with a header
// line over the limit (which no encoding can fix).
func splitEntity(b []byte) (textproto.Header, []byte, bool) {
	var hdrEnd int
	switch {
	case bytes.HasPrefix(b, []byte("\r\n")):
		hdrEnd = 2
	default:
		i := bytes.Index(b, []byte("\r\n\r\n"))
		if i < 0 {
			return textproto.Header{}, nil, false
		}
		hdrEnd = i + 4
	}
	if hasLongLine(b[:hdrEnd]) {
		return textproto.Header{}, nil, false
	}
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(b[:hdrEnd])))
	if err != nil {
		return textproto.Header{}, nil, false
	}
	return h, b[hdrEnd:], true
}

func joinEntity(h textproto.Header, body []byte) []byte {
	var b bytes.Buffer
	b.Grow(len(body) + 1024)
	_ = textproto.WriteHeader(&b, h)
	b.Write(body)
	return b.Bytes()
}

// encodeQP encodes b as quoted-printable (RFC 2045 §6.7): CRLF in b are
// hard line breaks (unless b has a lone CR or LF), every encoded line is at most 76 characters, '=',
// bytes outside printable ASCII and whitespace at a line end are escaped.
func encodeQP(b []byte) []byte {
	var out bytes.Buffer
	out.Grow(len(b) + len(b)/8)
	w := quotedprintable.NewWriter(&out)
	// A lone CR or LF (decoded from a quoted-printable part) is content,
	// not a line break: binary mode escapes every CR and LF. A final CRLF
	// stays a line break: the message ends with one.
	final := false
	if hasBareNewline(b) {
		w.Binary = true
		b, final = bytes.CutSuffix(b, []byte("\r\n"))
	}
	_, _ = w.Write(b)
	_ = w.Close()
	if final {
		out.WriteString("\r\n")
	}
	return out.Bytes()
}

// wrapBase64 encodes b in base64 lines of 76 characters (RFC 2045 §6.8),
// each ending in CRLF when crlfEnd, the last one otherwise without.
func wrapBase64(b []byte, crlfEnd bool) []byte {
	enc := base64.StdEncoding.EncodeToString(b)
	var out bytes.Buffer
	out.Grow(len(enc) + len(enc)/38 + 2)
	for len(enc) > 76 {
		out.WriteString(enc[:76])
		out.WriteString("\r\n")
		enc = enc[76:]
	}
	out.WriteString(enc)
	if crlfEnd {
		out.WriteString("\r\n")
	}
	return out.Bytes()
}

func dropSpace(r rune) rune {
	switch r {
	case ' ', '\t', '\r', '\n':
		return -1
	}
	return r
}

// hasLongLine reports whether a line of b (ended by CR, LF or the end)
// is longer than MaxLineLength.
func hasLongLine(b []byte) bool {
	start := 0
	for i, c := range b {
		if c == '\r' || c == '\n' {
			if i-start > MaxLineLength {
				return true
			}
			start = i + 1
		}
	}
	return len(b)-start > MaxLineLength
}

func hasBareNewline(b []byte) bool {
	for i, c := range b {
		if c == '\r' && (i+1 == len(b) || b[i+1] != '\n') {
			return true
		}
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			return true
		}
	}
	return false
}
