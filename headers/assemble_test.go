package headers

import (
	"bytes"
	"github.com/emersion/go-message/textproto"
	"strings"
	"testing"
)

// TestAssembleRebuildsOnlyTheHeader checks that Assemble gives the bytes
// Bytes gives, for a header that grows, shrinks or keeps its length, and
// that it builds them in the storage Read was given when it has room (the
// body is never copied to a new array), falling back to a new slice when
// it has not.
func TestAssembleRebuildsOnlyTheHeader(t *testing.T) {
	body := strings.Repeat("line of the body\r\n", 5000)
	head := "From: a@example.com\r\nSubject: hello\r\nX-SES-CONFIGURATION-SET: x\r\n\r\n"
	edits := map[string]func(m *Message){
		"unchanged": func(*Message) {},
		"grows": func(m *Message) {
			m.Header.Add("Message-ID", "<0123456789@relay.example>")
			m.Header.AddRaw([]byte("DKIM-Signature: v=1; a=ed25519-sha256; d=example.com; s=s1;\r\n b=" + strings.Repeat("A", 400) + "\r\n"))
		},
		"shrinks":     func(m *Message) { m.Header.Del("X-Ses-Configuration-Set") },
		"same length": func(m *Message) { m.Header.Set("Subject", "HELLO") },
	}
	for name, edit := range edits {
		for _, room := range []int{0, 4096} {
			storage := make([]byte, 0, len(head)+len(body)+room)
			storage = append(append(storage, head...), body...)
			m, err := Read(storage, RejectBareNewlines)
			if err != nil {
				t.Fatal(err)
			}
			edit(m)
			want := (&Message{Header: m.Header.Copy(), Body: bytes.Clone(m.Body)}).Bytes()
			got := m.Assemble()
			if !bytes.Equal(got, want) {
				t.Fatalf("%s, room %d: Assemble differs from Bytes:\n%.200q\n%.200q", name, room, got, want)
			}
			if !bytes.Equal(m.Body, []byte(body)) || &m.Body[0] != &got[len(got)-len(body)] {
				t.Fatalf("%s, room %d: Body does not refer to the body in the result", name, room)
			}
			inPlace := &got[0] == &storage[:1][0]
			fits := len(want) <= cap(storage)
			if inPlace != fits {
				t.Fatalf("%s, room %d: built in place %v, but the result fits the storage: %v", name, room, inPlace, fits)
			}
			if again := m.Assemble(); !bytes.Equal(again, want) || &again[0] == &got[0] {
				t.Fatalf("%s, room %d: a second Assemble must build a new slice with the same bytes", name, room)
			}
		}
	}
	// A Message built by hand has no storage to reuse.
	m := &Message{Header: mustHeader(t, head), Body: []byte(body)}
	if got := m.Assemble(); !bytes.Equal(got, m.Bytes()) {
		t.Fatal("Assemble of a hand-built Message differs from Bytes")
	}
}

func mustHeader(t *testing.T, head string) (h textproto.Header) {
	t.Helper()
	m, err := Read([]byte(head+"x\r\n"), RejectBareNewlines)
	if err != nil {
		t.Fatal(err)
	}
	return m.Header
}
