package headers

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
)

var (
	rsaOnce sync.Once
	rsaKey  *rsa.PrivateKey
)

func testRSAKey(t testing.TB) *rsa.PrivateKey {
	rsaOnce.Do(func() {
		var err error
		if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	return rsaKey
}

func testEd25519Key() ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
}

// verify runs go-msgauth's verifier over raw with the key of opts
// published at selector._domainkey.domain, and returns the verifications.
func verify(t *testing.T, raw []byte, pub crypto.PublicKey, opts SignOptions) []*dkim.Verification {
	t.Helper()
	rec, err := DNSRecord(pub)
	if err != nil {
		t.Fatal(err)
	}
	name := opts.Selector + "._domainkey." + opts.Domain
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(raw), &dkim.VerifyOptions{
		LookupTXT: func(domain string) ([]string, error) {
			if domain != name {
				return nil, fmt.Errorf("no TXT at %s", domain)
			}
			// One TXT record: a resolver joins its character-strings.
			return []string{strings.Join(SplitTXT(rec), "")}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

func verifyOK(t *testing.T, raw []byte, pub crypto.PublicKey, opts SignOptions) *dkim.Verification {
	t.Helper()
	vs := verify(t, raw, pub, opts)
	if len(vs) != 1 {
		t.Fatalf("%d signatures, want 1", len(vs))
	}
	if vs[0].Err != nil {
		t.Fatalf("verification failed: %v\n%s", vs[0].Err, raw)
	}
	return vs[0]
}

func verifyFails(t *testing.T, raw []byte, pub crypto.PublicKey, opts SignOptions) {
	t.Helper()
	for _, v := range verify(t, raw, pub, opts) {
		if v.Err == nil {
			t.Fatalf("verification passed, want failure\n%s", raw)
		}
	}
}

var timeTag = regexp.MustCompile(` t=[0-9]+;`)

// maskSignature replaces what changes from run to run in a signed message
// (t=, which go-msgauth takes from the system clock, and b=, which covers
// it) so the rest can be compared byte for byte.
func maskSignature(t *testing.T, raw string) string {
	t.Helper()
	if !strings.HasPrefix(raw, "DKIM-Signature:") {
		t.Fatalf("the message does not start with a DKIM-Signature:\n%s", raw)
	}
	i := strings.Index(raw, "\r\n b=")
	if i < 0 {
		t.Fatalf("no b= tag:\n%s", raw)
	}
	// The b= value runs until the first line that does not start with a space.
	j := i + len("\r\n b=")
	for {
		k := strings.Index(raw[j:], "\r\n")
		j += k + 2
		if raw[j] != ' ' {
			break
		}
	}
	head := timeTag.ReplaceAllString(raw[:i], " t=T;")
	return head + "\r\n b=B\r\n" + raw[j:]
}

func TestSignedFields(t *testing.T) {
	for _, tc := range []struct {
		name string
		raw  string
		want string
	}{
		{"minimal", msg("From: a@example.com", "", ""), "From:From"},
		{"from missing is still listed", msg("Subject: s", "", ""), "From:Subject:Subject"},
		{
			"typical",
			msg("Received: x", "Return-Path: <b@example.com>", "Date: d", "Message-ID: <1@x>",
				"Subject: s", "From: a@example.com", "To: b@example.net", "Cc: c@example.net",
				"Reply-To: r@example.com", "MIME-Version: 1.0", "Content-Type: text/plain",
				"Content-Transfer-Encoding: 7bit", "X-SES-CONFIGURATION-SET: x", "X-Mailer: m",
				"List-Unsubscribe: <https://u/>", "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
				"List-Id: <news.example.com>", "Feedback-ID: a:b:c", "In-Reply-To: <0@x>",
				"References: <0@x>", "Sender: s@example.com", "DKIM-Signature: old", "", ""),
			"From:From:Sender:Reply-To:Reply-To:Subject:Subject:To:To:Cc:Cc:In-Reply-To:References:" +
				"MIME-Version:Content-Type:Content-Transfer-Encoding:List-Id:" +
				"List-Unsubscribe:List-Unsubscribe:List-Unsubscribe-Post:List-Unsubscribe-Post:Feedback-ID",
		},
		{"repeated non-unique field signed per copy", msg("From: a@example.com", "to: x@example.net", "TO: y@example.net", "", ""), "From:From:To:To:To"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := mustRead(t, tc.raw)
			if got := strings.Join(SignedFields(&m.Header), ":"); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

const signInput = "From: Shop <news@billing.example.com>\r\n" +
	"To: bob@example.net\r\n" +
	"Subject: Your   March statement\r\n" +
	"DKIM-Signature: v=1; a=rsa-sha256; d=evil.example; s=x; h=From; bh=AAAA; b=AAAA\r\n" +
	"Date: Thu, 05 Mar 2026 07:08:09 +0000\r\n" +
	"Message-ID: <1@relay.example.com>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=us-ascii\r\n" +
	"List-Unsubscribe: <https://u.billing.example.com/u/T>\r\n" +
	"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" +
	"dkim-signature: second client signature\r\n" +
	"\r\n" +
	"Hello Bob,  \r\n" +
	"\r\n" +
	"your statement is ready.\r\n" +
	"\r\n\r\n"

// signOutputFmt is signInput signed, with t= and b= masked: the client's
// signatures are gone, ours is on top, and nothing else changed. bh= is the
// base64 SHA-256 of the relaxed body "Hello Bob,\r\n\r\nyour statement is
// ready.\r\n", computed outside Go.
const signOutputFmt = "DKIM-Signature: a=%s; bh=vs81+7wswyvDD3JNmnDtjsJ8qxs8cQ7A9PgHrpb54tA=;\r\n" +
	" c=relaxed/relaxed; d=billing.example.com;\r\n" +
	" h=From:From:Subject:Subject:To:To:MIME-Version:Content-Type:List-Unsubscribe:List-Unsubscribe:List-Unsubscribe-Post:List-Unsubscribe-Post;\r\n" +
	" s=s2026; t=T; v=1;\r\n" +
	" b=B\r\n" +
	"From: Shop <news@billing.example.com>\r\n" +
	"To: bob@example.net\r\n" +
	"Subject: Your   March statement\r\n" +
	"Date: Thu, 05 Mar 2026 07:08:09 +0000\r\n" +
	"Message-ID: <1@relay.example.com>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=us-ascii\r\n" +
	"List-Unsubscribe: <https://u.billing.example.com/u/T>\r\n" +
	"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" +
	"\r\n" +
	"Hello Bob,  \r\n" +
	"\r\n" +
	"your statement is ready.\r\n" +
	"\r\n\r\n"

func TestSign(t *testing.T) {
	for _, tc := range []struct {
		name   string
		signer crypto.Signer
		algo   string
	}{
		{"rsa-2048", testRSAKey(t), "rsa-sha256"},
		{"ed25519", testEd25519Key(), "ed25519-sha256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := SignOptions{Domain: "billing.example.com", Selector: "s2026", Signer: tc.signer}
			pub := tc.signer.Public()
			sign := func() []byte {
				t.Helper()
				m := mustRead(t, signInput)
				if err := Sign(m, opts); err != nil {
					t.Fatal(err)
				}
				return m.Bytes()
			}
			signed := sign()
			diff(t, maskSignature(t, string(signed)), fmt.Sprintf(signOutputFmt, tc.algo))
			v := verifyOK(t, signed, pub, opts)
			if v.Domain != "billing.example.com" || !v.Expiration.IsZero() {
				t.Errorf("verification %+v", v)
			}
			for _, line := range strings.Split(string(signed), "\r\n") {
				if len(line) > MaxLineLength {
					t.Errorf("line of %d characters", len(line))
				}
			}

			edit := func(name string, f func(s string) string, ok bool) {
				t.Run(name, func(t *testing.T) {
					raw := []byte(f(string(signed)))
					if ok {
						verifyOK(t, raw, pub, opts)
					} else {
						verifyFails(t, raw, pub, opts)
					}
				})
			}
			// What SES does: replace Message-ID and Date, add Feedback-ID.
			edit("SES adds Message-ID, Date, Feedback-ID", func(s string) string {
				s = strings.Replace(s, "Date: Thu, 05 Mar 2026 07:08:09 +0000\r\n", "", 1)
				s = strings.Replace(s, "Message-ID: <1@relay.example.com>\r\n", "", 1)
				return "Message-ID: <0100018e@email.amazonses.com>\r\nDate: Fri, 06 Mar 2026 08:00:00 +0000\r\nFeedback-ID: 1.eu-west-1.x:AmazonSES\r\n" + s
			}, true)
			edit("whitespace refolded (relaxed)", func(s string) string {
				return strings.Replace(s, "Subject: Your   March statement\r\n", "Subject:Your March\r\n\tstatement \r\n", 1)
			}, true)
			edit("signed header changed", func(s string) string {
				return strings.Replace(s, "Your   March statement", "Your April statement", 1)
			}, false)
			edit("body changed", func(s string) string {
				return strings.Replace(s, "is ready", "is overdue", 1)
			}, false)
			edit("second Subject added on top", func(s string) string {
				return "Subject: URGENT: verify your account\r\n" + s
			}, false)
			edit("second From added on top", func(s string) string {
				return "From: ceo@billing.example.com\r\n" + s
			}, false)
			edit("List-Unsubscribe removed", func(s string) string {
				return strings.Replace(s, "List-Unsubscribe: <https://u.billing.example.com/u/T>\r\n", "", 1)
			}, false)
			edit("second List-Unsubscribe-Post added", func(s string) string {
				return "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" + s
			}, false)
			// Absent fields are not in h= (SES may add some, e.g. with its own
			// subscription management), so adding one still verifies.
			edit("Cc added to a message without one", func(s string) string {
				return "Cc: eve@example.net\r\n" + s
			}, true)
		})
	}
}

func TestSignExpiration(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	opts := SignOptions{Domain: "example.com", Selector: "s", Signer: testEd25519Key(),
		Expiration: 7 * 24 * time.Hour, Now: func() time.Time { return now }}
	m := mustRead(t, msg("From: a@example.com", "", "b"))
	if err := Sign(m, opts); err != nil {
		t.Fatal(err)
	}
	raw := m.Bytes()
	want := " x=" + strconv.FormatInt(now.Add(7*24*time.Hour).Unix(), 10) + ";"
	if !strings.Contains(string(raw), want) {
		t.Fatalf("no %q in\n%s", want, raw)
	}
	v := verifyOK(t, raw, opts.Signer.Public(), opts)
	if !v.Expiration.Equal(now.Add(7 * 24 * time.Hour)) {
		t.Errorf("expiration %v", v.Expiration)
	}
	if strings.Contains(string(raw), " l=") {
		t.Error("l= present")
	}
}

func TestSignRefuses(t *testing.T) {
	good := SignOptions{Domain: "example.com", Selector: "s", Signer: testEd25519Key()}
	for _, tc := range []struct {
		name string
		raw  string
		opts SignOptions
	}{
		{"no From", msg("Subject: s", "DKIM-Signature: client", "", "b"), good},
		{"two From", msg("From: a@example.com", "From: b@example.com", "", "b"), good},
		{"no key", msg("From: a@example.com", "", "b"), SignOptions{Domain: "example.com", Selector: "s"}},
		{"no domain", msg("From: a@example.com", "", "b"), SignOptions{Selector: "s", Signer: testEd25519Key()}},
		{"no selector", msg("From: a@example.com", "", "b"), SignOptions{Domain: "example.com", Signer: testEd25519Key()}},
		{"unsupported key", msg("From: a@example.com", "", "b"), SignOptions{Domain: "example.com", Selector: "s", Signer: badSigner{}}},
		{"failing key", msg("From: a@example.com", "", "b"), SignOptions{Domain: "example.com", Selector: "s", Signer: failingSigner{testEd25519Key()}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := mustRead(t, tc.raw)
			if err := Sign(m, tc.opts); err == nil {
				t.Fatalf("signed:\n%s", m.Bytes())
			}
			if count(&m.Header, "DKIM-Signature") != 0 {
				t.Error("a DKIM-Signature is left after a failure")
			}
		})
	}
	wantFormatError(t, Sign(mustRead(t, msg("Subject: s", "", "")), good), "From", "appears 0 times")
	many := []string{"From: a@example.com"}
	for range 90 {
		many = append(many, "Feedback-ID: a:b:c")
	}
	wantFormatError(t, Sign(mustRead(t, msg(append(many, "", "")...)), good), "Feedback-ID", "appears 90 times; too many copies to sign")
	// Fewer copies are all signed, and the signature verifies.
	m := mustRead(t, msg(append(many[:40], "", "")...))
	if err := Sign(m, good); err != nil {
		t.Fatal(err)
	}
	verifyOK(t, m.Bytes(), good.Signer.Public(), good)
}

func TestSignRefusesShortRSAKey(t *testing.T) {
	t.Setenv("GODEBUG", "rsa1024min=0")
	k, err := rsa.GenerateKey(rand.Reader, 768)
	if err != nil {
		t.Skip("cannot make a short key here:", err)
	}
	m := mustRead(t, msg("From: a@example.com", "", "b"))
	if err := Sign(m, SignOptions{Domain: "example.com", Selector: "s", Signer: k}); err == nil || !strings.Contains(err.Error(), "768 bits") {
		t.Fatalf("a 768-bit key: %v", err)
	}
}

type badSigner struct{}

func (badSigner) Public() crypto.PublicKey { return "not a key" }
func (badSigner) Sign(_ io.Reader, _ []byte, _ crypto.SignerOpts) ([]byte, error) {
	return nil, errors.New("unreachable")
}

type failingSigner struct{ ed25519.PrivateKey }

func (failingSigner) Sign(_ io.Reader, _ []byte, _ crypto.SignerOpts) ([]byte, error) {
	return nil, errors.New("key store unavailable")
}

func TestDNSRecord(t *testing.T) {
	ed := testEd25519Key()
	rec, err := DNSRecord(ed.Public())
	if err != nil {
		t.Fatal(err)
	}
	want := "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(ed.Public().(ed25519.PublicKey))
	if rec != want {
		t.Errorf("got %s\nwant %s", rec, want)
	}
	if rec2, _ := DNSRecord(ed); rec2 != rec {
		t.Errorf("from the private key: %s", rec2)
	}
	if len(rec) != len("v=DKIM1; k=ed25519; p=")+44 {
		t.Errorf("ed25519 record length %d", len(rec))
	}

	rk := testRSAKey(t)
	rec, err = DNSRecord(&rk.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	p, ok := strings.CutPrefix(rec, "v=DKIM1; k=rsa; p=")
	if !ok {
		t.Fatalf("rsa record %s", rec)
	}
	der, err := base64.StdEncoding.DecodeString(p)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil || !rk.PublicKey.Equal(pub) {
		t.Fatalf("p= does not hold the key: %v", err)
	}
	if _, err := DNSRecord("nope"); err == nil {
		t.Error("a string was accepted as a key")
	}
	if _, err := DNSRecord(ed25519.PublicKey{1, 2, 3}); err == nil {
		t.Error("a 3-byte Ed25519 key was accepted")
	}
}

func TestSplitTXT(t *testing.T) {
	s := strings.Repeat("a", 255) + strings.Repeat("b", 255) + "c"
	got := SplitTXT(s)
	if len(got) != 3 || got[0] != strings.Repeat("a", 255) || got[1] != strings.Repeat("b", 255) || got[2] != "c" {
		t.Errorf("SplitTXT = %q", got)
	}
	if got := SplitTXT("short"); len(got) != 1 || got[0] != "short" {
		t.Errorf("SplitTXT(short) = %q", got)
	}
	if got := SplitTXT(strings.Repeat("x", 255)); len(got) != 1 {
		t.Errorf("exactly 255 bytes split in %d", len(got))
	}
	if got := SplitTXT(""); len(got) != 1 || got[0] != "" {
		t.Errorf("SplitTXT(\"\") = %q", got)
	}
	rec, _ := DNSRecord(&testRSAKey(t).PublicKey)
	if parts := SplitTXT(rec); len(parts) != 2 || strings.Join(parts, "") != rec {
		t.Errorf("a 2048-bit RSA record split into %d parts", len(parts))
	}
}
