package headers

import (
	"bytes"
	"net/mail"
	"strings"
	"testing"

	"github.com/sesrelay/sesrelay/address"
)

// Fuzz targets for everything that parses client input. Seeds live in
// testdata/fuzz/<FuzzName>/; run one with e.g.
//
//	go test ./headers -run '^$' -fuzz '^FuzzRead$' -fuzztime 30s

// checkLines fails unless every line of raw ends in CRLF and is at most
// MaxLineLength long, with no bare CR or LF.
func checkLines(t *testing.T, raw []byte) {
	t.Helper()
	if len(raw) > 0 && !bytes.HasSuffix(raw, []byte("\r\n")) {
		t.Fatalf("does not end in CRLF: %q", raw)
	}
	for i, line := range bytes.Split(bytes.TrimSuffix(raw, []byte("\r\n")), []byte("\r\n")) {
		if bytes.ContainsAny(line, "\r\n") {
			t.Fatalf("line %d has a bare CR or LF: %q", i+1, line)
		}
		if len(line) > MaxLineLength {
			t.Fatalf("line %d is %d characters long", i+1, len(line))
		}
	}
}

func FuzzRead(f *testing.F) {
	f.Add([]byte("From: a@example.com\r\nSubject: hi\r\n folded\r\n\r\nbody\r\n"))
	f.Add([]byte("From: a@example.com\nSubject: bare LF\n\nbody"))
	f.Add([]byte(" leading continuation\r\n\r\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		for _, mode := range []BareNewlines{NormalizeBareNewlines, RejectBareNewlines} {
			m, err := Read(raw, mode)
			if err != nil {
				continue
			}
			out := m.Bytes()
			checkLines(t, out)
			c, err := Canonicalize(raw, mode)
			if err != nil {
				t.Fatalf("Read accepted what Canonicalize refuses: %v", err)
			}
			if !bytes.HasSuffix(c, m.Body) {
				t.Fatalf("the body is not the end of the canonical message")
			}
			// Reading the output again changes nothing.
			m2, err := Read(out, RejectBareNewlines)
			if err != nil {
				t.Fatalf("output does not read back: %v\n%q", err, out)
			}
			if out2 := m2.Bytes(); !bytes.Equal(out, out2) {
				t.Fatalf("not idempotent:\n%q\n%q", out, out2)
			}
		}
	})
}

// FuzzFromRewrite: whatever display name the policy hands over, the new
// From is one mailbox that reads back with that name, and nothing else in
// the header changes.
func FuzzFromRewrite(f *testing.F) {
	f.Add("Alice via shop", "alice@shop.example")
	f.Add("Jörg via shop", "jorg@shop.example")
	f.Add("t\r\nX-Injected: 1", "x y@shop.example")
	f.Add(`a "b" \\ c`, "")
	f.Fuzz(func(t *testing.T, name, replyTo string) {
		m, err := Read([]byte("From: a@shop.example\r\nSubject: s\r\n\r\nbody\r\n"), RejectBareNewlines)
		if err != nil {
			t.Fatal(err)
		}
		name = address.CleanName(name)
		if !address.IsASCII(replyTo) || strings.ContainsAny(replyTo, "\r\n") {
			return
		}
		if a, err := mail.ParseAddress((&mail.Address{Address: replyTo}).String()); replyTo != "" && (err != nil || a.Address != replyTo) {
			return // not an address net/mail can write and read back
		}
		err = FromRewrite(&m.Header, FromEdit{Name: name, Address: "noreply@relay.example.com", ReplyTo: replyTo})
		if err != nil {
			// Only an unfoldable word may fail, and only with a long input.
			if len(name)+len(replyTo) < 900 {
				t.Fatalf("FromRewrite(%q, %q): %v", name, replyTo, err)
			}
			return
		}
		out := m.Bytes()
		checkLines(t, out)
		m2, err := Read(out, RejectBareNewlines)
		if err != nil {
			t.Fatalf("output does not read back: %v\n%q", err, out)
		}
		if err := CheckASCII(&m2.Header); err != nil {
			t.Fatalf("output is not ASCII: %v\n%q", err, out)
		}
		if err := CheckUnique(&m2.Header); err != nil {
			t.Fatalf("output has duplicates: %v\n%q", err, out)
		}
		list, err := address.ParseList(m2.Header.Get("From"))
		if err != nil || len(list) != 1 {
			t.Fatalf("new From does not parse as one mailbox: %v\n%q", err, out)
		}
		if got := list[0]; got.Address != "noreply@relay.example.com" || got.Name != strings.ToValidUTF8(name, "\uFFFD") {
			t.Fatalf("new From is %q <%s>, want %q\n%q", got.Name, got.Address, name, out)
		}
		if replyTo == "" {
			if m2.Header.Has("Reply-To") {
				t.Fatalf("Reply-To added: %q", out)
			}
			return
		}
		rt, err := address.ParseList(m2.Header.Get("Reply-To"))
		if err != nil || len(rt) != 1 || rt[0].Address != replyTo {
			t.Fatalf("Reply-To %q (%v), want %s", m2.Header.Get("Reply-To"), err, replyTo)
		}
	})
}

func FuzzListUnsubscribe(f *testing.F) {
	f.Add("<https://u.example.com/u/T>, <mailto:u@example.com>", OneClick, "https://u.example.com/u/T", "u@example.com")
	f.Add("<mailto:a>,<https://x>", " List-Unsubscribe=One-Click ", "https://x/?a=b,c", "mailto:u@example.com?subject=x")
	f.Add("<https://a>, <https://b>", "x", "http://x", "")
	f.Fuzz(func(t *testing.T, lu, post, url, mailto string) {
		m, err := Read([]byte("From: a@example.com\r\nList-Unsubscribe: "+lu+"\r\nList-Unsubscribe-Post: "+post+"\r\n\r\nbody\r\n"), RejectBareNewlines)
		if err == nil {
			if err := ValidateListUnsubscribe(&m.Header); err == nil {
				uris, err := splitURIList(m.Header.Get(ListUnsubscribeField))
				if err != nil || len(uris) == 0 {
					t.Fatalf("valid, yet the list does not split: %v", err)
				}
			}
		}
		m = mustRead(t, "From: a@example.com\r\nList-Unsubscribe: <mailto:old@example.com>\r\n\r\nbody\r\n")
		before := string(m.Bytes())
		if err := AddListUnsubscribe(&m.Header, url, mailto); err != nil {
			if string(m.Bytes()) != before {
				t.Fatal("a failed AddListUnsubscribe changed the header")
			}
			return
		}
		out := m.Bytes()
		checkLines(t, out)
		m2, err := Read(out, RejectBareNewlines)
		if err != nil {
			t.Fatalf("output does not read back: %v\n%q", err, out)
		}
		if err := ValidateListUnsubscribe(&m2.Header); err != nil {
			t.Fatalf("AddListUnsubscribe(%q, %q) output is invalid: %v\n%q", url, mailto, err, out)
		}
		if err := CheckASCII(&m2.Header); err != nil {
			t.Fatal(err)
		}
	})
}

func FuzzVerifyUnsubscribeToken(f *testing.F) {
	f.Add(UnsubscribeToken(testSecret, "shop", "news", "bob@example.net"), "shop", "news", "Bob@Example.net")
	f.Add("AQRzaG9wBG5ld3MPYm9iQGV4YW1wbGUubmV0", "", "", "")
	f.Add("", "t\x00", "\xff", "İ@EXAMPLE.COM")
	f.Fuzz(func(t *testing.T, token, tenant, list, recipient string) {
		if c, err := VerifyUnsubscribeToken(testSecret, token); err == nil {
			// Only our own tokens verify, and each has one spelling.
			if again := UnsubscribeToken(testSecret, c.Tenant, c.List, c.Recipient); again != token {
				t.Fatalf("%q verified as %+v, which encodes as %q", token, c, again)
			}
		}
		tok := UnsubscribeToken(testSecret, tenant, list, recipient)
		c, err := VerifyUnsubscribeToken(testSecret, tok)
		if err != nil {
			t.Fatalf("own token refused: %v", err)
		}
		if want := (UnsubscribeClaims{tenant, list, strings.ToLower(recipient)}); c != want {
			t.Fatalf("claims %+v, want %+v", c, want)
		}
		if _, err := VerifyUnsubscribeToken([]byte("another secret"), tok); err == nil {
			t.Fatal("verified under another secret")
		}
		for i := 0; i < len(tok); i++ {
			if strings.IndexByte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", tok[i]) < 0 {
				t.Fatalf("token %q is not URL-safe", tok)
			}
		}
	})
}
