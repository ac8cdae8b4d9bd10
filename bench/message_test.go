package main

import (
	"bytes"
	"net/mail"
	"testing"
)

func TestMessageExactSizeAndShape(t *testing.T) {
	for _, size := range []int{2048, 8192, 8193, 8194, 10000, 1 << 20} {
		m := newMessage("sender@bench.example.com", "rcpt@example.net", size)
		msg := m.render(42, nil)
		if len(msg) != size || m.size != size {
			t.Errorf("size %d: got %d bytes (template says %d)", size, len(msg), m.size)
		}
		if !bytes.HasSuffix(msg, []byte("\r\n")) {
			t.Errorf("size %d: does not end in CRLF", size)
		}
		for i, line := range bytes.Split(bytes.TrimSuffix(msg, []byte("\r\n")), []byte("\r\n")) {
			if len(line) > 78 {
				t.Errorf("size %d: line %d has %d bytes", size, i, len(line))
			}
			if bytes.HasPrefix(line, []byte(".")) {
				t.Errorf("size %d: line %d starts with a dot", size, i)
			}
			if bytes.ContainsAny(line, "\r\n") {
				t.Errorf("size %d: bare CR or LF in line %d", size, i)
			}
		}
		pm, err := mail.ReadMessage(bytes.NewReader(msg))
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if got := pm.Header.Get("Message-Id"); got != "<000000000042.bench@bench.example.com>" {
			t.Errorf("Message-ID %q", got)
		}
		if a, err := pm.Header.AddressList("From"); err != nil || len(a) != 1 || a[0].Address != "sender@bench.example.com" {
			t.Errorf("From %v %v", a, err)
		}
	}
	// Rendering another sequence number keeps the size.
	m := newMessage("a@b.example", "c@d.example", 8192)
	if len(m.render(1, nil)) != len(m.render(999999999999, nil)) {
		t.Error("size depends on the sequence number")
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int{"8192": 8192, "8KiB": 8192, "8k": 8192, "30MiB": 30 << 20, "30M": 30 << 20, "1GiB": 1 << 30, "2KB": 2000, "10B": 10} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "MiB", "-1", "1.5MiB", "ten"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q): no error", bad)
		}
	}
}
