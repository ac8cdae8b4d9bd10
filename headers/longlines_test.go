package headers

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/emersion/go-message"
)

// decodedParts returns the decoded content of every leaf part of a
// message, in order, read by go-message (an independent MIME reader);
// message/rfc822 parts are opened too.
func decodedParts(t testing.TB, raw []byte, depth int) ([]string, error) {
	e, err := message.Read(bytes.NewReader(raw))
	if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
		return nil, err
	}
	var out []string
	err = e.Walk(func(path []int, ent *message.Entity, err error) error {
		if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
			return err
		}
		if ent.MultipartReader() != nil {
			return nil
		}
		b, err := io.ReadAll(ent.Body)
		if err != nil {
			return err
		}
		if mt, _, _ := ent.Header.ContentType(); (mt == "message/rfc822" || mt == "message/global") && depth < 8 {
			inner, err := decodedParts(t, b, depth+1)
			if err != nil {
				return err
			}
			out = append(out, inner...)
			return nil
		}
		out = append(out, string(b))
		return nil
	})
	return out, err
}

// checkEncoded checks that out has no line over the limit and the same
// decoded content as in.
func checkEncoded(t *testing.T, in, out []byte) {
	t.Helper()
	if _, err := Read(out, RejectBareNewlines); err != nil {
		t.Fatalf("encoded message does not read: %v\n%s", err, out)
	}
	want, err := decodedParts(t, in, 0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodedParts(t, out, 0)
	if err != nil {
		t.Fatalf("encoded message: %v", err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d parts, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("part %d decodes to\n%q\nwant\n%q", i, got[i], want[i])
		}
	}
}

var (
	longHTML = "<html><body>" + strings.Repeat(`<a href="https://shop.example/p?id=1&x=y">Très bien = ok</a> `, 40) + "</body></html>"
	longText = strings.Repeat("word ", 300) + "end with spaces   "
)

func TestEncodeLongLinesPlain(t *testing.T) {
	in := []byte("From: a@shop.example\r\nSubject: s\r\n\r\nshort\r\n" + longText + "\r\n.dot line\r\n")
	out := EncodeLongLines(in, RejectBareNewlines)
	if bytes.Equal(out, in) {
		t.Fatal("not encoded")
	}
	m, err := Read(out, RejectBareNewlines)
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.Get("Content-Transfer-Encoding") != "quoted-printable" || !bytes.Contains(out, []byte("MIME-Version: 1.0\r\n")) {
		t.Fatalf("header %q", out[:bytes.Index(out, []byte("\r\n\r\n"))])
	}
	if !bytes.HasPrefix(out[bytes.Index(out, []byte("\r\n\r\n")):], []byte("\r\n\r\nshort\r\nword word")) {
		t.Fatalf("body %q", out)
	}
	checkEncoded(t, in, out)
}

// TestEncodeLongLinesQPSoftEnd: a quoted-printable body whose last line
// ends in a soft line break has content without a final line break; the
// re-encoded body keeps it so (the message's closing CRLF must not become
// content). Found by FuzzEncodeLongLines.
func TestEncodeLongLinesQPSoftEnd(t *testing.T) {
	for _, end := range []string{"=\r\n", "=  \r\n", "\r\n"} {
		in := []byte("From: a@shop.example\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" + strings.Repeat("x", 1200) + end)
		out := EncodeLongLines(in, RejectBareNewlines)
		if bytes.Equal(out, in) {
			t.Fatalf("%q: not encoded", end)
		}
		checkEncoded(t, in, out)
		// What is sent: Read ends every message with CRLF.
		m, err := Read(out, RejectBareNewlines)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := decodedParts(t, in, 0)
		got, err := decodedParts(t, m.Bytes(), 0)
		if err != nil || len(got) != 1 || got[0] != want[0] {
			t.Errorf("%q: sent body decodes to %q, want %q (%v)", end, got, want, err)
		}
	}
}

func TestEncodeLongLinesOnlyAffectedPart(t *testing.T) {
	text := "Content-Type: text/plain; charset=utf-8\r\n\r\nHello, short lines = fine.\r\n"
	in := []byte("From: a@shop.example\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n" +
		"preamble\r\n" +
		"--outer\r\n" +
		"Content-Type: multipart/alternative; boundary=inner\r\n\r\n" +
		"--inner\r\n" + text +
		"--inner\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + longHTML + "\r\n" +
		"--inner--\r\n" +
		"--outer\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0, 1, 2, 250}, 600)) + "\r\n" +
		"--outer\r\nContent-Type: message/rfc822\r\n\r\n" +
		"From: b@shop.example\r\nSubject: inner\r\n\r\n" + longText + "\r\n" +
		"--outer--  \r\n" +
		"epilogue\r\n")
	out := EncodeLongLines(in, RejectBareNewlines)
	checkEncoded(t, in, out)
	for _, keep := range []string{"preamble\r\n--outer\r\n", "--inner\r\n" + text + "--inner\r\n", "--outer--  \r\nepilogue\r\n",
		"From: a@shop.example\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n"} {
		if !bytes.Contains(out, []byte(keep)) {
			t.Errorf("a part without long lines changed: %q missing", keep)
		}
	}
	if bytes.Count(out, []byte("Content-Transfer-Encoding: quoted-printable")) != 2 {
		t.Errorf("want the HTML part and the inner message's body in quoted-printable:\n%s", out)
	}
	if bytes.Contains(out, []byte("8bit")) {
		t.Error("the old transfer encoding is still there")
	}
}

func TestEncodeLongLinesUnchanged(t *testing.T) {
	for name, in := range map[string]string{
		"no long line":     "From: a@shop.example\r\n\r\nhi\r\n",
		"long header line": "From: a@shop.example\r\nX-Long: " + strings.Repeat("h", 1000) + "\r\n\r\nhi\r\n",
		"unknown encoding": "From: a@shop.example\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\n" + longText + "\r\n",
		"bad base64":       "From: a@shop.example\r\nContent-Transfer-Encoding: base64\r\n\r\n" + strings.Repeat("!", 1200) + "\r\n",
		"unclosed multipart": "From: a@shop.example\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n" +
			longText + "\r\n",
		"bare LF, reject mode": "From: a@shop.example\r\n\r\nhi\n" + longText + "\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			out := EncodeLongLines([]byte(in), RejectBareNewlines)
			if string(out) != in {
				t.Fatalf("changed:\n%q", out)
			}
		})
	}
}

func TestEncodeLongLinesBareNewlines(t *testing.T) {
	in := []byte("From: a@shop.example\n\nhi\n" + longText + "\n")
	out := EncodeLongLines(in, NormalizeBareNewlines)
	if hasBareNewline(out) {
		t.Fatal("bare newline left")
	}
	checkEncoded(t, crlf(in), out)
}

func TestEncodeQPRoundTrip(t *testing.T) {
	for _, s := range []string{"", "a\r\n", longText, "x\ry\nz\r\n" + longHTML, "= =\t\r\n \r\n\t", strings.Repeat("\xff", 2000)} {
		enc := encodeQP([]byte(s))
		if hasLongLine(enc) || bytes.Contains(enc, []byte(strings.Repeat("x", 77))) {
			t.Fatalf("long line in %q", enc)
		}
		for _, l := range strings.Split(string(enc), "\r\n") {
			if len(l) > 76 {
				t.Fatalf("QP line of %d characters", len(l))
			}
		}
		got, err := decodedParts(t, []byte("Content-Transfer-Encoding: quoted-printable\r\n\r\n"+string(enc)), 0)
		if err != nil {
			t.Fatal(err)
		}
		if got[0] != s {
			t.Fatalf("%q decodes to %q", s, got[0])
		}
	}
}

func FuzzEncodeLongLines(f *testing.F) {
	f.Add([]byte("From: a@shop.example\r\n\r\n"+longText+"\r\n"), false, uint16(0))
	f.Add([]byte("From: a@b\r\nContent-Type: multipart/alternative; boundary=x\r\n\r\n--x\r\nContent-Type: text/html\r\n\r\n"+longHTML+"\r\n--x--\r\n"), false, uint16(0))
	f.Add([]byte("From: a@b\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n\r\nab\r\n--x\r\nContent-Transfer-Encoding: base64\r\n\r\nQUJD\r\n--x--\r\n"), false, uint16(60))
	f.Add([]byte("From: a@b\nContent-Type: message/rfc822\n\nSubject: x\n\n"+longText+"\n"), true, uint16(0))
	f.Add([]byte("From: a@b\r\nContent-Transfer-Encoding: base64\r\n\r\n"+base64.StdEncoding.EncodeToString([]byte(longText))+"\r\n"), false, uint16(0))
	f.Add([]byte("From: a@b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"+strings.Repeat("=41=0A", 200)+"\r\n"), false, uint16(0))
	f.Fuzz(func(t *testing.T, raw []byte, normalize bool, pad uint16) {
		if pad > 0 {
			// A long run of text somewhere: in a header, a body, a
			// delimiter, a base64 or quoted-printable part.
			pos := int(pad) % (len(raw) + 1)
			filler := bytes.Repeat([]byte{"a= \xe9.=\t"[int(pad)%7]}, 1000+int(pad)%40)
			raw = append(append(append([]byte(nil), raw[:pos]...), filler...), raw[pos:]...)
		}
		mode := RejectBareNewlines
		if normalize {
			mode = NormalizeBareNewlines
		}
		in := append([]byte(nil), raw...)
		out := EncodeLongLines(raw, mode)
		if !bytes.Equal(raw, in) {
			t.Fatal("raw modified")
		}
		if bytes.Equal(out, raw) {
			return
		}
		if _, err := Read(out, RejectBareNewlines); err != nil {
			var fe *FormatError
			// Only what the encoding does not touch may still be long.
			if !strings.Contains(fmt.Sprint(err), "longer than") || !asFE(err, &fe) {
				t.Fatalf("encoded message does not read: %v\n%q", err, out)
			}
		}
		// Read (Canonicalize) ends every message with CRLF; compare
		// what it reads on both sides.
		want, err := decodedParts(t, crlf(raw), 0)
		if err != nil {
			return
		}
		got, err := decodedParts(t, crlf(out), 0)
		if err != nil {
			t.Fatalf("encoded message does not parse: %v\n%q", err, out)
		}
		if len(got) != len(want) {
			t.Fatalf("%d parts, want %d\n%q", len(got), len(want), out)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("part %d decodes to %q, want %q\n%q", i, got[i], want[i], out)
			}
		}
	})
}

func asFE(err error, fe **FormatError) bool {
	e, ok := err.(*FormatError)
	*fe = e
	return ok
}
