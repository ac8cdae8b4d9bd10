package headers

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef")

func TestUnsubscribeTokenRoundTrip(t *testing.T) {
	tok := UnsubscribeToken(testSecret, "shop", "newsletter", "Bob.Smith@Example.NET")
	if strings.ContainsAny(tok, "+/=") {
		t.Errorf("token %q is not base64url without padding", tok)
	}
	if tok != UnsubscribeToken(testSecret, "shop", "newsletter", "bob.smith@example.net") {
		t.Error("the token depends on the recipient's case")
	}
	got, err := VerifyUnsubscribeToken(testSecret, tok)
	if err != nil {
		t.Fatal(err)
	}
	want := UnsubscribeClaims{Tenant: "shop", List: "newsletter", Recipient: "bob.smith@example.net"}
	if got != want {
		t.Fatalf("claims %+v, want %+v", got, want)
	}
	// Empty list and odd bytes survive too.
	tok = UnsubscribeToken(testSecret, "t\x00", "", "r:1")
	if got, err := VerifyUnsubscribeToken(testSecret, tok); err != nil || got != (UnsubscribeClaims{"t\x00", "", "r:1"}) {
		t.Fatalf("%+v, %v", got, err)
	}
}

func TestUnsubscribeTokenRefused(t *testing.T) {
	tok := UnsubscribeToken(testSecret, "shop", "newsletter", "bob@example.net")
	raw, _ := b64url(tok)
	other := UnsubscribeToken(testSecret, "shop", "newsletter", "eve@example.net")

	// Move the tenant/list boundary while keeping the bytes: the MAC must
	// cover the lengths, not only the concatenation.
	shifted := append([]byte{1, 3}, "sho"...)
	shifted = append(shifted, 11)
	shifted = append(shifted, "pnewsletter"...)
	shifted = append(shifted, raw[1+1+4+1+10:]...)

	for _, tc := range []struct {
		name, token string
		secret      []byte
		want        error
	}{
		{"another tenant's secret", tok, []byte("another secret, also 32 bytes...."), ErrTokenMAC},
		{"empty secret", tok, nil, ErrTokenNoSecret},
		{"one character changed", flip(tok, 5), testSecret, ErrTokenMAC},
		{"last character changed", flip(tok, len(tok)-1), testSecret, nil}, // MAC or encoding
		{"recipient swapped into the payload", string(append(append([]byte{}, tok[:len(tok)-22]...), other[len(other)-22:]...)), testSecret, nil},
		{"truncated text", tok[:len(tok)-4], testSecret, nil},
		{"truncated bytes", b64urlEncode(raw[:len(raw)-3]), testSecret, ErrTokenMAC},
		{"boundary moved", b64urlEncode(shifted), testSecret, ErrTokenMAC},
		{"padding", tok + "=", testSecret, ErrTokenMalformed},
		{"line break inside", tok[:10] + "\r\n" + tok[10:], testSecret, ErrTokenMalformed},
		{"standard alphabet", strings.NewReplacer("-", "+", "_", "/").Replace(tok) + "+", testSecret, ErrTokenMalformed},
		{"empty", "", testSecret, ErrTokenMalformed},
		{"too short", "AQ", testSecret, ErrTokenMalformed},
		{"version 2", b64urlEncode(append([]byte{2}, raw[1:]...)), testSecret, ErrTokenVersion},
		{"huge", strings.Repeat("A", 5000), testSecret, ErrTokenVersion},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := VerifyUnsubscribeToken(tc.secret, tc.token)
			if err == nil {
				t.Fatalf("accepted: %+v", got)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			if got != (UnsubscribeClaims{}) {
				t.Fatalf("claims returned with an error: %+v", got)
			}
		})
	}

	// A well-formed payload with a valid MAC but trailing bytes is refused.
	var b []byte
	b = append(b, 1, 1, 'a', 1, 'b', 1, 'c', 'x')
	if _, err := VerifyUnsubscribeToken(testSecret, b64urlEncode(withMAC(b))); !errors.Is(err, ErrTokenMalformed) {
		t.Errorf("trailing bytes: %v", err)
	}
	// And a length running past the end.
	b = append(b[:0], 1, 1, 'a', 1, 'b', 9, 'c')
	if _, err := VerifyUnsubscribeToken(testSecret, b64urlEncode(withMAC(b))); !errors.Is(err, ErrTokenMalformed) {
		t.Errorf("overlong length: %v", err)
	}
	b = append(b[:0], 1, 1, 'a', 1, 'b', 1, 'c')
	if c, err := VerifyUnsubscribeToken(testSecret, b64urlEncode(withMAC(b))); err != nil || c != (UnsubscribeClaims{"a", "b", "c"}) {
		t.Errorf("hand-built token: %+v, %v", c, err)
	}
}

func TestExpandUnsubscribeURL(t *testing.T) {
	c := UnsubscribeClaims{Tenant: "shop & co", List: "news/letter", Recipient: "a+b c@example.net"}
	got := ExpandUnsubscribeURL("https://u.example.com/u/{token}?r={recipient}&t={tenant}&l={list}&x={unknown}", c, "TOK-_1")
	want := "https://u.example.com/u/TOK-_1?r=a%2Bb%20c%40example.net&t=shop%20%26%20co&l=news%2Fletter&x={unknown}"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if got := ExpandUnsubscribeURL("https://u.example.com/{list}/{recipient}", c, ""); got != "https://u.example.com/news%2Fletter/a%2Bb%20c%40example.net" {
		t.Errorf("path: %s", got)
	}
}

func TestAddListUnsubscribe(t *testing.T) {
	long := "https://unsubscribe.billing.example.com/u/" + strings.Repeat("T", 60)
	for _, tc := range []struct {
		name, in, url, mailto, want string
	}{
		{
			name: "https and mailto",
			in:   msg("From: a@shop.example", "Subject: s", "", "body"),
			url:  "https://u.example.com/u/TOKEN", mailto: "unsubscribe@shop.example",
			want: msg("List-Unsubscribe: <https://u.example.com/u/TOKEN>,", " <mailto:unsubscribe@shop.example>",
				"List-Unsubscribe-Post: List-Unsubscribe=One-Click", "From: a@shop.example", "Subject: s", "", "body"),
		},
		{
			name: "https only",
			in:   msg("From: a@shop.example", "", "body"),
			url:  "https://u.example.com/u/TOKEN",
			want: msg("List-Unsubscribe: <https://u.example.com/u/TOKEN>",
				"List-Unsubscribe-Post: List-Unsubscribe=One-Click", "From: a@shop.example", "", "body"),
		},
		{
			name: "mailto URI given as is; existing fields replaced",
			in: msg("From: a@shop.example", "List-Unsubscribe: <mailto:old@shop.example>",
				"list-unsubscribe-post: List-Unsubscribe=One-Click", "List-Unsubscribe: <https://old/>", "", "body"),
			url: "https://u.example.com/u/T", mailto: "mailto:u@x.example",
			want: msg("List-Unsubscribe: <https://u.example.com/u/T>, <mailto:u@x.example>",
				"List-Unsubscribe-Post: List-Unsubscribe=One-Click", "From: a@shop.example", "", "body"),
		},
		{
			name: "folded between URIs",
			in:   msg("From: a@shop.example", "", "body"),
			url:  long, mailto: "unsubscribe@billing.example.com",
			want: msg("List-Unsubscribe: <"+long+">,", " <mailto:unsubscribe@billing.example.com>",
				"List-Unsubscribe-Post: List-Unsubscribe=One-Click", "From: a@shop.example", "", "body"),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := mustRead(t, tc.in)
			if err := AddListUnsubscribe(&m.Header, tc.url, tc.mailto); err != nil {
				t.Fatal(err)
			}
			diff(t, string(m.Bytes()), tc.want)
			if err := ValidateListUnsubscribe(&m.Header); err != nil {
				t.Errorf("own output does not validate: %v", err)
			}
			if !HasListUnsubscribe(&m.Header) {
				t.Error("HasListUnsubscribe = false")
			}
			// Reading the output back gives the same header (folding is lossless).
			m2 := mustRead(t, string(m.Bytes()))
			if m2.Header.Get(ListUnsubscribeField) != m.Header.Get(ListUnsubscribeField) {
				t.Errorf("value changed on re-read: %q", m2.Header.Get(ListUnsubscribeField))
			}
		})
	}
}

func TestAddListUnsubscribeRefuses(t *testing.T) {
	for _, tc := range []struct{ url, mailto string }{
		{"http://u.example.com/u/T", ""},
		{"https:///nohost", ""},
		{"https:opaque", ""},
		{"https://u.example.com/u/a b", ""},
		{"https://u.example.com/u/<T>", ""},
		{"https://user:pw@u.example.com/u/T", ""},
		{"https://u.example.com/u/caf\xc3\xa9", ""},
		{"https://u.example.com/u/" + strings.Repeat("x", 1000), ""},
		{"", ""},
		{"https://u.example.com/u/T", "a b@example.com"},
		{"https://u.example.com/u/T", "a@example.com>"},
	} {
		m := mustRead(t, msg("From: a@shop.example", "List-Unsubscribe: <https://old.example/>", "", "body"))
		before := string(m.Bytes())
		err := AddListUnsubscribe(&m.Header, tc.url, tc.mailto)
		var fe *FormatError
		if err == nil || errors.As(err, &fe) {
			t.Errorf("AddListUnsubscribe(%q, %q) = %v, want a plain error", tc.url, tc.mailto, err)
		}
		diff(t, string(m.Bytes()), before)
	}
}

func TestValidateListUnsubscribe(t *testing.T) {
	const post = "List-Unsubscribe-Post: List-Unsubscribe=One-Click"
	for _, tc := range []struct {
		name          string
		fields        []string
		field, reason string // empty: valid
	}{
		{"valid", []string{"List-Unsubscribe: <mailto:u@shop.example>, <https://u.example.com/u/T>", post}, "", ""},
		{"valid, no spaces, folded", []string{"List-Unsubscribe: <https://u.example.com/u/T>,", "\t<mailto:u@shop.example>,<http://u.example.com/u/T>", post}, "", ""},
		{"valid, https only", []string{"list-unsubscribe:<HTTPS://u.example.com/u/T>", "LIST-UNSUBSCRIBE-POST:  List-Unsubscribe=One-Click  "}, "", ""},
		{"no fields", nil, ListUnsubscribeField, "missing"},
		{"no post", []string{"List-Unsubscribe: <https://u.example.com/u/T>"}, ListUnsubscribePostField, "missing"},
		{"post only", []string{post}, ListUnsubscribeField, "missing"},
		{"two list-unsubscribe", []string{"List-Unsubscribe: <https://u.example.com/u/T>", "List-Unsubscribe: <mailto:u@shop.example>", post}, ListUnsubscribeField, "appears 2 times"},
		{"two post", []string{"List-Unsubscribe: <https://u.example.com/u/T>", post, post}, ListUnsubscribePostField, "appears 2 times"},
		{"no https", []string{"List-Unsubscribe: <mailto:u@shop.example>, <http://u.example.com/u/T>", post}, ListUnsubscribeField, "no https URI"},
		{"two https", []string{"List-Unsubscribe: <https://a.example.com/u/T>, <https://b.example.com/u/T>", post}, ListUnsubscribeField, "2 https URIs"},
		{"no brackets", []string{"List-Unsubscribe: https://u.example.com/u/T", post}, ListUnsubscribeField, "angle brackets"},
		{"unclosed", []string{"List-Unsubscribe: <https://u.example.com/u/T", post}, ListUnsubscribeField, "not closed"},
		{"no comma", []string{"List-Unsubscribe: <https://u.example.com/u/T> <mailto:u@shop.example>", post}, ListUnsubscribeField, "separated by commas"},
		{"trailing comma", []string{"List-Unsubscribe: <https://u.example.com/u/T>,", post}, ListUnsubscribeField, "angle brackets"},
		{"empty value", []string{"List-Unsubscribe:", post}, ListUnsubscribeField, "empty"},
		{"empty URI", []string{"List-Unsubscribe: <>, <https://u.example.com/u/T>", post}, ListUnsubscribeField, "empty URI"},
		{"space in URI", []string{"List-Unsubscribe: <https://u.example.com/u/a b>", post}, ListUnsubscribeField, "percent-encode"},
		{"no scheme", []string{"List-Unsubscribe: <u@shop.example>, <https://u.example.com/u/T>", post}, ListUnsubscribeField, "no scheme"},
		{"https without host", []string{"List-Unsubscribe: <https:/u/T>", post}, ListUnsubscribeField, "not an absolute https URL"},
		{"wrong post value", []string{"List-Unsubscribe: <https://u.example.com/u/T>", "List-Unsubscribe-Post: List-Unsubscribe=one-click"}, ListUnsubscribePostField, "it must be exactly \"List-Unsubscribe=One-Click\""},
		{"post value with extra", []string{"List-Unsubscribe: <https://u.example.com/u/T>", "List-Unsubscribe-Post: List-Unsubscribe=One-Click; x=y"}, ListUnsubscribePostField, "must be exactly"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lines := append([]string{"From: a@shop.example"}, tc.fields...)
			m := mustRead(t, msg(append(lines, "", "body")...))
			err := ValidateListUnsubscribe(&m.Header)
			if tc.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantFormatError(t, err, tc.field, tc.reason)
			if HasListUnsubscribe(&m.Header) != (len(tc.fields) > 0) {
				t.Errorf("HasListUnsubscribe = %v", !(len(tc.fields) > 0))
			}
		})
	}
}

func b64url(s string) ([]byte, error) {
	return b64.DecodeString(s)
}

func b64urlEncode(b []byte) string { return b64.EncodeToString(b) }

func flip(s string, i int) string {
	b := []byte(s)
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

var b64 = base64.RawURLEncoding

// withMAC appends the token MAC to a hand-built payload.
func withMAC(b []byte) []byte {
	mac := hmac.New(sha256.New, testSecret)
	mac.Write(b)
	return append(bytes.Clone(b), mac.Sum(nil)[:tokenMACSize]...)
}

func TestUnverifiedUnsubscribeTenant(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	tok := UnsubscribeToken(secret, "billing", "monthly", "Ann@Example.org")
	if got, err := UnverifiedUnsubscribeTenant(tok); err != nil || got != "billing" {
		t.Fatalf("got %q, %v", got, err)
	}
	for _, bad := range []string{"", "!!", "AQ", tok + "="} {
		if _, err := UnverifiedUnsubscribeTenant(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
