package headers

import (
	"crypto"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message/textproto"
	"github.com/emersion/go-msgauth/dkim"
)

// goMsgauthSignature signs m as go-msgauth's own streaming Signer does,
// with the options Sign uses.
func goMsgauthSignature(t *testing.T, m *Message, keys []string, expires time.Time) string {
	t.Helper()
	s, err := dkim.NewSigner(&dkim.SignOptions{
		Domain: "example.com", Selector: "s1", Signer: testEd25519Key(), Hash: crypto.SHA256,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed,
		HeaderKeys: keys, Expiration: expires,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := textproto.WriteHeader(s, m.Header); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write(m.Body); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return s.Signature()
}

// TestSignerMatchesGoMsgauth compares the DKIM-Signature field of Sign's
// signer with go-msgauth's, byte for byte (Ed25519 signatures are
// deterministic), over bodies that exercise every rule of relaxed body
// canonicalization and headers with folding, repeats and odd spacing.
func TestSignerMatchesGoMsgauth(t *testing.T) {
	long := strings.Repeat("w", 20000) // longer than the hash chunk
	bodies := map[string]string{
		"empty":                 "",
		"one line":              "Hello.\r\n",
		"no final CRLF":         "Hello.",
		"only empty lines":      "\r\n\r\n\r\n",
		"only blank lines":      " \r\n\t\r\n  \t \r\n",
		"trailing empty lines":  "a\r\nb\r\n\r\n\r\n \r\n",
		"inner empty lines":     "a\r\n\r\n\r\n  b  \r\n",
		"whitespace runs":       "  lead \t\t mid   \t trail \t\r\nx\ty\r\n",
		"long words":            long + " " + long + "\r\n" + long + "\r\n",
		"many short lines":      strings.Repeat("ab  c \r\n", 3000),
		"text then blank lines": strings.Repeat("line of text, with  spaces\t\r\n", 200) + "\r\n\r\n",
	}
	headers := []string{
		"From: A <a@example.com>\r\nTo: b@example.org\r\nSubject: hi\r\n\r\n",
		"From:   a@example.com  \r\nSubject: a\r\n folded\r\n\tsubject \r\nTo: x@example.org\r\nTo: y@example.org\r\n" +
			"CC :  c@example.org\r\nList-Unsubscribe: <https://u.example.com/x>\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" +
			"Content-Type: text/plain;\r\n charset=utf-8\r\n\r\n",
	}
	for _, head := range headers {
		for name, body := range bodies {
			m, err := Read([]byte(head), NormalizeBareNewlines)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			m.Body = []byte(body) // as given: Read would refuse the long lines
			keys := SignedFields(&m.Header)
			for _, expires := range []time.Time{{}, time.Now().Add(time.Hour)} {
				for try := 0; ; try++ {
					before := time.Now().Unix()
					want := goMsgauthSignature(t, m, keys, expires)
					got, err := dkimSignature(&m.Header, m.Body, keys, "example.com", "s1", testEd25519Key(), time.Now(), expires)
					if err != nil {
						t.Fatal(err)
					}
					if time.Now().Unix() != before && try < 3 {
						continue // t= may differ across a second boundary
					}
					if got != want {
						t.Fatalf("%s: signature differs from go-msgauth's\ngot  %q\nwant %q", name, got, want)
					}
					break
				}
			}
		}
	}
}
