package headers

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/emersion/go-message/textproto"
)

// One-click unsubscribe, RFC 2369 and RFC 8058.

const (
	// ListUnsubscribeField carries the unsubscribe URIs (RFC 2369).
	ListUnsubscribeField = "List-Unsubscribe"
	// ListUnsubscribePostField marks the HTTPS URI as one-click (RFC 8058).
	ListUnsubscribePostField = "List-Unsubscribe-Post"
	// OneClick is the only value RFC 8058 allows in List-Unsubscribe-Post.
	OneClick = "List-Unsubscribe=One-Click"
)

// Token layout, before base64url without padding:
//
//	version (1 byte, tokenVersion)
//	uvarint len(tenant) || tenant
//	uvarint len(list) || list
//	uvarint len(recipient) || recipient (lowercased)
//	HMAC-SHA256(secret, all of the above), first tokenMACSize bytes
//
// The payload travels in clear (base64 is not encryption): the endpoint
// learns tenant, list and recipient from the token itself, and the MAC
// makes them unforgeable without the tenant's secret.
const (
	tokenVersion = 1
	tokenMACSize = 16 // 128 bits
)

// Errors from VerifyUnsubscribeToken. The endpoint should answer all of
// them the same way; they are distinct for logging.
var (
	ErrTokenMalformed = errors.New("unsubscribe token: malformed")
	ErrTokenVersion   = errors.New("unsubscribe token: unknown version")
	ErrTokenMAC       = errors.New("unsubscribe token: bad signature")
	ErrTokenNoSecret  = errors.New("unsubscribe token: empty secret")
)

// UnsubscribeClaims is what an unsubscribe token says: which tenant's list
// the recipient leaves. Recipient is lowercased in the token.
type UnsubscribeClaims struct {
	Tenant    string
	List      string
	Recipient string
}

// UnsubscribeToken returns the opaque, URL-safe token (base64url without
// padding) naming tenant, list and the lowercased recipient, authenticated
// with HMAC-SHA256 under secret (truncated to 128 bits). The same inputs
// always give the same token. secret is the tenant's unsubscribe key, at
// least 32 random bytes (config enforces this); it must not be empty.
func UnsubscribeToken(secret []byte, tenant, list, recipient string) string {
	recipient = strings.ToLower(recipient)
	b := make([]byte, 0, 1+3*binary.MaxVarintLen64+len(tenant)+len(list)+len(recipient)+tokenMACSize)
	b = append(b, tokenVersion)
	for _, s := range []string{tenant, list, recipient} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(b)
	b = mac.Sum(b)[:len(b)+tokenMACSize]
	return base64.RawURLEncoding.EncodeToString(b)
}

// VerifyUnsubscribeToken checks a token made by UnsubscribeToken with the
// same secret and returns its claims. It returns ErrTokenMalformed (bad
// encoding or layout), ErrTokenVersion, ErrTokenMAC (forged, altered or
// made with another secret) or ErrTokenNoSecret. The MAC is compared in
// constant time. Every token UnsubscribeToken makes verifies, whatever its
// length: the work is linear, and bounding the request size is the HTTP
// server's job. A token does not expire: an unsubscribe link must keep
// working.
func VerifyUnsubscribeToken(secret []byte, token string) (UnsubscribeClaims, error) {
	if len(secret) == 0 {
		return UnsubscribeClaims{}, ErrTokenNoSecret
	}
	// One token, one spelling: encoding/base64 skips CR and LF, so refuse
	// anything outside the alphabet first; Strict wants the unused bits of
	// the last character zero.
	for i := 0; i < len(token); i++ {
		if c := token[i]; !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return UnsubscribeClaims{}, ErrTokenMalformed
		}
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(token)
	if err != nil || len(b) < 1+tokenMACSize {
		return UnsubscribeClaims{}, ErrTokenMalformed
	}
	if b[0] != tokenVersion {
		return UnsubscribeClaims{}, ErrTokenVersion
	}
	msg, got := b[:len(b)-tokenMACSize], b[len(b)-tokenMACSize:]
	mac := hmac.New(sha256.New, secret)
	mac.Write(msg)
	if !hmac.Equal(got, mac.Sum(nil)[:tokenMACSize]) {
		return UnsubscribeClaims{}, ErrTokenMAC
	}
	var fields [3]string
	rest := msg[1:]
	for i := range fields {
		n, k := binary.Uvarint(rest)
		if k <= 0 || n > uint64(len(rest)-k) {
			return UnsubscribeClaims{}, ErrTokenMalformed
		}
		fields[i] = string(rest[k : k+int(n)])
		rest = rest[k+int(n):]
	}
	if len(rest) != 0 {
		return UnsubscribeClaims{}, ErrTokenMalformed
	}
	return UnsubscribeClaims{Tenant: fields[0], List: fields[1], Recipient: fields[2]}, nil
}

// ExpandUnsubscribeURL fills the placeholders of a tenant's URL template:
// {token} with token (already URL-safe), and {recipient}, {tenant} and
// {list} with the claims' values escaped by url.QueryEscape with "+"
// turned into "%20". That escaping is safe both in a path segment and in a
// query value ("/", "?", "&", "=", "+" and "@" are all escaped), so the
// template author need not care where a placeholder sits. Unknown
// placeholders are left as they are.
func ExpandUnsubscribeURL(tmpl string, v UnsubscribeClaims, token string) string {
	return strings.NewReplacer(
		"{token}", token,
		"{recipient}", escapeURLValue(v.Recipient),
		"{tenant}", escapeURLValue(v.Tenant),
		"{list}", escapeURLValue(v.List),
	).Replace(tmpl)
}

func escapeURLValue(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}

// AddListUnsubscribe replaces any List-Unsubscribe and List-Unsubscribe-Post
// fields with
//
//	List-Unsubscribe: <httpsURL>, <mailto:...>
//	List-Unsubscribe-Post: List-Unsubscribe=One-Click
//
// at the top of the header, exactly as RFC 8058 asks. mailto is optional:
// an address ("unsubscribe@example.com") or a mailto: URI; empty leaves it
// out. httpsURL must be an absolute https URL with a host; neither may
// contain whitespace, angle brackets, quotes or non-ASCII bytes (use
// ExpandUnsubscribeURL, which escapes what it inserts). An unusable URI is
// a plain error (the template or its inputs are wrong, not the message)
// and leaves h unchanged. The List-Unsubscribe field is folded between
// URIs, never inside one.
func AddListUnsubscribe(h *textproto.Header, httpsURL, mailto string) error {
	if err := checkHTTPSURI(httpsURL); err != nil {
		return fmt.Errorf("list unsubscribe URL: %w", err)
	}
	uris := []string{"<" + httpsURL + ">"}
	if mailto != "" {
		if len(mailto) < 7 || !strings.EqualFold(mailto[:7], "mailto:") {
			mailto = "mailto:" + mailto
		}
		if err := checkURIChars(mailto); err != nil {
			return fmt.Errorf("list unsubscribe mailto: %w", err)
		}
		uris = append(uris, "<"+mailto+">")
	}
	lu, err := formatField(ListUnsubscribeField, strings.Join(uris, ", "))
	if err != nil {
		// Not the message's fault: a plain error, not a *FormatError.
		return fmt.Errorf("list unsubscribe URI does not fit in a %d-character line", MaxLineLength)
	}
	post, _ := formatField(ListUnsubscribePostField, OneClick)
	delName(h, ListUnsubscribeField)
	delName(h, ListUnsubscribePostField)
	h.AddRaw(post)
	h.AddRaw(lu)
	return nil
}

// HasListUnsubscribe reports whether the message carries a List-Unsubscribe
// or a List-Unsubscribe-Post field, valid or not. The relay's "add" mode
// adds both only when this is false.
func HasListUnsubscribe(h *textproto.Header) bool {
	return count(h, ListUnsubscribeField) > 0 || count(h, ListUnsubscribePostField) > 0
}

// ValidateListUnsubscribe checks that the message offers RFC 8058 one-click
// unsubscribe: exactly one List-Unsubscribe field holding a comma-separated
// list of <URI>s with exactly one https URI among them, and exactly one
// List-Unsubscribe-Post field whose value is exactly
// "List-Unsubscribe=One-Click". Each failure is a *FormatError naming the
// field and what is wrong with it.
func ValidateListUnsubscribe(h *textproto.Header) error {
	lu := values(h, ListUnsubscribeField)
	post := values(h, ListUnsubscribePostField)
	if err := checkOnce(ListUnsubscribeField, len(lu)); err != nil {
		return err
	}
	if err := checkOnce(ListUnsubscribePostField, len(post)); err != nil {
		return err
	}
	uris, err := splitURIList(lu[0])
	if err != nil {
		return &FormatError{Field: ListUnsubscribeField, Reason: err.Error()}
	}
	https := 0
	for _, u := range uris {
		if len(u) >= 6 && strings.EqualFold(u[:6], "https:") {
			if err := checkHTTPSURI(u); err != nil {
				return &FormatError{Field: ListUnsubscribeField, Reason: err.Error()}
			}
			https++
		}
	}
	switch {
	case https == 0:
		return &FormatError{Field: ListUnsubscribeField, Reason: "no https URI; one-click unsubscribe (RFC 8058) needs exactly one"}
	case https > 1:
		return &FormatError{Field: ListUnsubscribeField, Reason: fmt.Sprintf("%d https URIs; RFC 8058 allows exactly one", https)}
	}
	if v := strings.Trim(post[0], " \t"); v != OneClick {
		return &FormatError{Field: ListUnsubscribePostField, Reason: fmt.Sprintf("value %q; it must be exactly %q", truncate(v, 64), OneClick)}
	}
	return nil
}

func checkOnce(field string, n int) error {
	switch {
	case n == 0:
		return &FormatError{Field: field, Reason: "missing; one-click unsubscribe (RFC 8058) needs it"}
	case n > 1:
		return &FormatError{Field: field, Reason: fmt.Sprintf("appears %d times; it may appear only once", n)}
	}
	return nil
}

// splitURIList parses RFC 2369's "<uri>, <uri>" list. Whitespace is allowed
// around the brackets and commas, not inside them.
func splitURIList(v string) ([]string, error) {
	var uris []string
	rest := strings.Trim(v, " \t")
	if rest == "" {
		return nil, errors.New("empty; it must hold URIs in angle brackets")
	}
	for {
		if rest == "" || rest[0] != '<' {
			return nil, fmt.Errorf("expected \"<\" at %q; URIs must be in angle brackets, separated by commas", truncate(rest, 32))
		}
		end := strings.IndexByte(rest, '>')
		if end < 0 {
			return nil, errors.New("an angle bracket is not closed")
		}
		u := rest[1:end]
		if err := checkURIChars(u); err != nil {
			return nil, err
		}
		uris = append(uris, u)
		rest = strings.TrimLeft(rest[end+1:], " \t")
		if rest == "" {
			return uris, nil
		}
		if rest[0] != ',' {
			return nil, fmt.Errorf("expected \",\" at %q; URIs must be separated by commas", truncate(rest, 32))
		}
		rest = strings.TrimLeft(rest[1:], " \t")
	}
}

// checkURIChars refuses what cannot sit between angle brackets: nothing,
// whitespace, brackets, control characters and non-ASCII bytes (a URI is
// ASCII; anything else must be percent-encoded). It also wants a scheme.
func checkURIChars(u string) error {
	if u == "" {
		return errors.New("an empty URI \"<>\"")
	}
	for i := 0; i < len(u); i++ {
		c := u[i]
		if c <= ' ' || c >= 0x7f || c == '<' || c == '>' || c == '"' {
			return fmt.Errorf("URI %q contains %q; percent-encode it", truncate(u, 64), c)
		}
	}
	if i := strings.IndexByte(u, ':'); i <= 0 {
		return fmt.Errorf("URI %q has no scheme", truncate(u, 64))
	}
	return nil
}

// checkHTTPSURI wants an absolute https URL with a host and no user info.
func checkHTTPSURI(u string) error {
	if err := checkURIChars(u); err != nil {
		return err
	}
	p, err := url.Parse(u)
	if err != nil {
		return fmt.Errorf("URI %q does not parse", truncate(u, 64))
	}
	if !strings.EqualFold(p.Scheme, "https") || p.Host == "" || p.Opaque != "" {
		return fmt.Errorf("URI %q is not an absolute https URL", truncate(u, 64))
	}
	if p.User != nil {
		return fmt.Errorf("URI %q carries user info", truncate(u, 64))
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// UnverifiedUnsubscribeTenant returns the tenant a well-formed token names,
// WITHOUT checking its MAC: only to choose which tenant's secrets to verify
// the token with (VerifyUnsubscribeToken). It fails with ErrTokenMalformed
// or ErrTokenVersion as VerifyUnsubscribeToken would.
func UnverifiedUnsubscribeTenant(token string) (string, error) {
	for i := 0; i < len(token); i++ {
		if c := token[i]; !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return "", ErrTokenMalformed
		}
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(token)
	if err != nil || len(b) < 1+tokenMACSize {
		return "", ErrTokenMalformed
	}
	if b[0] != tokenVersion {
		return "", ErrTokenVersion
	}
	rest := b[1 : len(b)-tokenMACSize]
	n, k := binary.Uvarint(rest)
	if k <= 0 || n > uint64(len(rest)-k) {
		return "", ErrTokenMalformed
	}
	return string(rest[k : k+int(n)]), nil
}
