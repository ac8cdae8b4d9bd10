package headers

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestReadRoundTrip(t *testing.T) {
	big := strings.Repeat("x", 900) + "\r\n"
	raw := "From: a@example.com\r\nSubject: hi\r\n folded\r\n\r\n" + strings.Repeat(big, 20) + "end\r\n"
	m, err := Read([]byte(raw), RejectBareNewlines)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(m.Bytes()); got != raw {
		t.Fatalf("round trip differs:\n%q\n%q", got[:80], raw[:80])
	}
	if m.Header.Get("Subject") != "hi folded" {
		t.Fatalf("subject %q", m.Header.Get("Subject"))
	}
}

func TestCanonicalize(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"a\r\nb\r\n", "a\r\nb\r\n"},
		{"a\nb\n", "a\r\nb\r\n"},
		{"a\rb", "a\r\nb\r\n"},
		{"a\r\n.\nb\r\n", "a\r\n.\r\nb\r\n"},
		{"a", "a\r\n"},
	} {
		got, err := Canonicalize([]byte(tc.in), NormalizeBareNewlines)
		if err != nil || string(got) != tc.want {
			t.Errorf("Canonicalize(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
		if tc.in != tc.want && tc.in != "a" {
			_, err := Canonicalize([]byte(tc.in), RejectBareNewlines)
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Errorf("reject mode accepted %q", tc.in)
			}
		}
	}
	long := bytes.Repeat([]byte("y"), 999)
	_, err := Canonicalize(append([]byte("a\r\n"), long...), NormalizeBareNewlines)
	var fe *FormatError
	if !errors.As(err, &fe) || fe.Line != 2 {
		t.Fatalf("long line: %v", err)
	}
}
