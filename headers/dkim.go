package headers

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-message/textproto"
)

// DKIM signing, RFC 6376 with RFC 8301 (rsa-sha256, RSA >= 1024 bits) and
// RFC 8463 (ed25519-sha256).

// SignOptions says who signs. Domain, Selector and Signer are required.
type SignOptions struct {
	// Domain is the d= tag: the domain whose DNS publishes the key, equal
	// to or a parent of the From domain for DMARC alignment.
	Domain string
	// Selector is the s= tag: the key is at Selector._domainkey.Domain.
	Selector string
	// Signer holds the private key: *rsa.PrivateKey, ed25519.PrivateKey, or
	// any crypto.Signer whose Public() is *rsa.PublicKey or
	// ed25519.PublicKey. The algorithm follows the key type.
	Signer crypto.Signer
	// Expiration, when positive, adds x= = Now() + Expiration.
	Expiration time.Duration
	// Now is the clock for x=; nil means time.Now. go-msgauth v0.7.0 takes
	// the t= tag from the system clock itself, so Now should not run far
	// from it (a verifier rejects x= before t=).
	Now func() time.Time
}

// signedFieldList is the h= allow-list, in the order fields appear in h=:
// the fields RFC 6376 5.4.1 recommends, the MIME fields that decide how
// the body is read, the list fields (RFC 2369, RFC 2919, RFC 8058) and
// Feedback-ID. Left out on purpose: Date and Message-ID (SES replaces
// them), Return-Path, Received and X-SES-* (added or consumed on the way),
// and DKIM-Signature.
var signedFieldList = []string{
	"From", "Sender", "Reply-To", "Subject", "To", "Cc",
	"In-Reply-To", "References",
	"MIME-Version", "Content-Type", "Content-Transfer-Encoding",
	"Content-Disposition", "Content-Language", "Content-ID", "Content-Description",
	"List-Id", "List-Unsubscribe", "List-Unsubscribe-Post",
	"List-Help", "List-Subscribe", "List-Post", "List-Owner", "List-Archive",
	"Feedback-ID",
}

// oversigned fields are listed once more than they occur, so that a copy
// added after signing (above the signed one) breaks the signature: without
// it, anyone could prepend a second Subject or From that many clients show.
var oversigned = map[string]bool{
	"From": true, "Subject": true, "To": true, "Cc": true, "Reply-To": true,
	"List-Unsubscribe": true, "List-Unsubscribe-Post": true,
}

// SignedFields returns the h= list Sign uses for this header: every field
// of the allow-list that is present, as many times as it occurs, plus once
// more for From, Subject, To, Cc, Reply-To, List-Unsubscribe and
// List-Unsubscribe-Post (oversigning). Absent fields are not listed, so a
// field SES adds later (Message-ID, Feedback-ID) does not break the
// signature; From is always listed. Never listed: Date, Message-ID,
// Return-Path, Received, X-SES-*, DKIM-Signature.
func SignedFields(h *textproto.Header) []string {
	counts := make(map[string]int)
	fs := h.Fields()
	for fs.Next() {
		counts[strings.ToLower(fs.Key())]++
	}
	var keys []string
	for _, name := range signedFieldList {
		n := counts[strings.ToLower(name)]
		if n == 0 && name != "From" {
			continue
		}
		if oversigned[name] {
			n++
		}
		for range n {
			keys = append(keys, name)
		}
	}
	return keys
}

// Sign removes every DKIM-Signature field from m (SES accepts only one, and
// the relay's must be it), then signs m with relaxed/relaxed
// canonicalization, SHA-256 (rsa-sha256 or ed25519-sha256 by key type), h=
// from SignedFields, no l= and x= when opts.Expiration is set, and puts
// the DKIM-Signature field, exactly as go-msgauth formats it (dkimsign.go), at the top
// of m.Header. m.Body must already be canonical (Read makes it so).
//
// Sign is the last change to a message before it is sent: any later edit
// of a signed field or of the body invalidates the signature. On error m
// carries no DKIM-Signature and must not be sent (the relay fails closed).
// The error is a *FormatError only when the message itself cannot be
// signed (no single From, a signed field repeated so often that h= would
// not fit in a line); anything else is the key's or the configuration's
// fault.
func Sign(m *Message, opts SignOptions) error {
	delName(&m.Header, "DKIM-Signature")
	if n := count(&m.Header, "From"); n != 1 {
		return &FormatError{Field: "From", Reason: fmt.Sprintf("appears %d times; DKIM signing needs exactly one", n)}
	}
	if opts.Signer == nil {
		return errors.New("dkim: no signing key")
	}
	if k, ok := opts.Signer.Public().(*rsa.PublicKey); ok && k.N.BitLen() < 1024 {
		// RFC 8301 3.2: verifiers must not accept keys under 1024 bits.
		return fmt.Errorf("dkim: RSA key of %d bits is too short", k.N.BitLen())
	}
	var expires time.Time
	if opts.Expiration > 0 {
		now := opts.Now
		if now == nil {
			now = time.Now
		}
		expires = now().Add(opts.Expiration)
	}
	keys := SignedFields(&m.Header)
	// go-msgauth writes h= on one line: a client repeating a signed field
	// many times could push it past the line limit. That is the message's
	// fault, so say which field.
	if n := len(" h=;") + len(strings.Join(keys, ":")); n > MaxLineLength {
		top, most := "", 0
		for _, k := range keys {
			if c := count(&m.Header, k); c > most {
				top, most = k, c
			}
		}
		return &FormatError{Field: top, Reason: fmt.Sprintf("appears %d times; too many copies to sign", most)}
	}
	if opts.Domain == "" || opts.Selector == "" {
		return errors.New("dkim: no domain or selector")
	}
	field, err := dkimSignature(&m.Header, m.Body, keys, opts.Domain, opts.Selector, opts.Signer, time.Now(), expires)
	if err != nil {
		return fmt.Errorf("dkim: %w", err)
	}
	sig := []byte(field)
	for _, line := range bytes.Split(bytes.TrimSuffix(sig, []byte("\r\n")), []byte("\r\n")) {
		if len(line) > MaxLineLength {
			return fmt.Errorf("dkim: signature line of %d characters is too long", len(line))
		}
	}
	m.Header.AddRaw(sig)
	return nil
}

// DNSRecord returns the DKIM key record to publish as TXT at
// <selector>._domainkey.<domain>: "v=DKIM1; k=rsa; p=<base64 DER
// SubjectPublicKeyInfo>" for RSA, "v=DKIM1; k=ed25519; p=<base64 of the raw
// 32-byte key>" for Ed25519 (RFC 8463). pub may also be a private key (any
// value with a Public method). Use SplitTXT to publish it.
func DNSRecord(pub crypto.PublicKey) (string, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			return "", err
		}
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der), nil
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return "", fmt.Errorf("dkim: Ed25519 public key of %d bytes", len(k))
		}
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(k), nil
	case interface{ Public() crypto.PublicKey }:
		return DNSRecord(k.Public())
	}
	return "", fmt.Errorf("dkim: unsupported key type %T", pub)
}

// SplitTXT splits a TXT record value into the at most 255-byte
// character-strings DNS needs; a resolver joins them back without
// separator. An empty value is one empty string.
func SplitTXT(s string) []string {
	if s == "" {
		return []string{""}
	}
	var out []string
	for len(s) > 255 {
		out = append(out, s[:255])
		s = s[255:]
	}
	return append(out, s)
}
