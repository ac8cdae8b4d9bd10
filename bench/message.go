package main

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// words feed the generated bodies: plain prose, so that nothing in a
// message looks unusual to a parser (no over-long lines, no leading dots).
var words = strings.Fields(`the relay reads each message once checks that the
tenant owns the sender domain strips headers a client must not set signs
with the tenant key and hands the raw bytes to the email service which
answers with an identifier that goes back to the client in the final
reply of the transaction your order has shipped and will arrive soon
thank you for your purchase here is the receipt for your records`)

// messageTemplate produces messages of an exact size: a header that differs
// only in a fixed-width sequence number, and a body built once.
type messageTemplate struct {
	from, to string
	header   string // with one %012d for the sequence number
	body     []byte
	size     int
}

// newMessage builds the template of a realistic transactional message of
// size bytes (header and body, CRLF line ends, before the DATA terminator):
// multipart/alternative with a text part and an HTML part of about equal
// size, lines under 78 characters, 7bit ASCII.
func newMessage(from, to string, size int) *messageTemplate {
	domain := from[strings.LastIndexByte(from, '@')+1:]
	boundary := "bench-boundary-7f3c2a"
	// Date is fixed: a changing Date would change the header length.
	header := "From: \"Bench Sender\" <" + from + ">\r\n" +
		"To: <" + to + ">\r\n" +
		"Subject: Your order %012d has shipped\r\n" +
		"Date: " + time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).Format(time.RFC1123Z) + "\r\n" +
		"Message-ID: <%012[1]d.bench@" + domain + ">\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: multipart/alternative; boundary=\"" + boundary + "\"\r\n" +
		"\r\n"
	headerLen := len(fmt.Sprintf(header, 0))
	textHead := "--" + boundary + "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
	htmlHead := "--" + boundary + "\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n" +
		"<html><body>\r\n"
	tail := "</body></html>\r\n--" + boundary + "--\r\n"
	fill := size - headerLen - len(textHead) - len(htmlHead) - len(tail)
	var body bytes.Buffer
	body.Grow(max(fill, 0) + 512)
	body.WriteString(textHead)
	if fill >= 8 {
		body.Write(prose(fill/2, ""))
		body.WriteString(htmlHead)
		body.Write(prose(fill-fill/2, "<p>"))
	} else {
		body.WriteString(htmlHead)
	}
	body.WriteString(tail)
	return &messageTemplate{from: from, to: to, header: header, body: body.Bytes(), size: headerLen + body.Len()}
}

// prose returns exactly n bytes (n >= 4) of CRLF-terminated lines of at
// most 78 bytes, each starting with prefix.
func prose(n int, prefix string) []byte {
	out := make([]byte, 0, n)
	w := 0
	for len(out) < n {
		left := n - len(out)
		lineLen := min(78, left) // including CRLF
		if left-lineLen > 0 && left-lineLen < 3 {
			lineLen = left - 3 // never leave a remainder too short for a line
		}
		line := make([]byte, 0, lineLen)
		line = append(line, prefix...)
		for len(line) < lineLen-2 {
			word := words[w%len(words)]
			w++
			if len(line) > 0 && len(line) < lineLen-2 {
				line = append(line, ' ')
			}
			line = append(line, word...)
		}
		line = line[:lineLen-2]
		// A line must not end with a space (trailing white space is
		// changed by relaxed canonicalization, but keep it plain).
		for i := len(line) - 1; i >= 0 && unicode.IsSpace(rune(line[i])); i-- {
			line[i] = 'x'
		}
		if len(line) > 0 && line[0] == '.' { // never needs dot-stuffing
			line[0] = 'x'
		}
		out = append(out, line...)
		out = append(out, '\r', '\n')
	}
	return out
}

// render returns message number seq, ready to write after DATA (no line
// starts with a dot, so no stuffing is needed).
func (m *messageTemplate) render(seq int64, buf []byte) []byte {
	buf = fmt.Appendf(buf[:0], m.header, seq)
	return append(buf, m.body...)
}

// parseSize reads "8192", "8KiB", "8k", "30MiB", "30M", "1GiB".
func parseSize(s string) (int, error) {
	t := strings.TrimSpace(s)
	mult := 1
	for _, u := range []struct {
		suffix string
		mult   int
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1000}, {"MB", 1000 * 1000}, {"K", 1 << 10}, {"k", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}} {
		if rest, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	n, err := strconv.Atoi(t)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}
