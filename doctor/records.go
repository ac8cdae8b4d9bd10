package doctor

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/net/publicsuffix"
)

// tagList parses a tag=value list (RFC 6376 3.2, RFC 7489 6.4): tags
// separated by ";", whitespace around names and values ignored. Names are
// lowercased; a repeated tag is an error.
func tagList(s string) (map[string]string, []string, error) {
	tags := map[string]string{}
	var order []string
	for _, part := range strings.Split(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return nil, nil, fmt.Errorf("%q is not tag=value", part)
		}
		k = strings.ToLower(strings.TrimSpace(k))
		if _, dup := tags[k]; dup {
			return nil, nil, fmt.Errorf("tag %s repeated", k)
		}
		tags[k] = strings.TrimSpace(v)
		order = append(order, k)
	}
	return tags, order, nil
}

// dmarcRecord is a parsed RFC 7489 policy record.
type dmarcRecord struct {
	P, SP        string // none | quarantine | reject ("" SP: same as P)
	ADKIM, ASPF  string // r | s
	Pct          int
	RUA          string
	Raw          string
	FoundAt      string // the name it was found at (_dmarc.<domain>)
	Organization bool   // found at the organizational domain, not the domain itself
}

// isDMARC reports whether a TXT record claims to be a DMARC record; other
// TXT records at _dmarc are ignored by receivers (RFC 7489 6.6.3).
func isDMARC(txt string) bool {
	first, _, _ := strings.Cut(txt, ";")
	name, val, ok := strings.Cut(first, "=")
	return ok && strings.TrimSpace(name) == "v" && strings.TrimSpace(val) == "DMARC1"
}

func parseDMARC(txt string) (*dmarcRecord, error) {
	tags, order, err := tagList(txt)
	if err != nil {
		return nil, err
	}
	if len(order) == 0 || order[0] != "v" || tags["v"] != "DMARC1" {
		return nil, errors.New("does not start with v=DMARC1")
	}
	r := &dmarcRecord{Raw: txt, ADKIM: "r", ASPF: "r", Pct: 100}
	policy := func(tag string) (string, error) {
		v := strings.ToLower(tags[tag])
		switch v {
		case "none", "quarantine", "reject":
			return v, nil
		}
		return "", fmt.Errorf("%s=%s is not none, quarantine or reject", tag, tags[tag])
	}
	if _, ok := tags["p"]; !ok {
		return nil, errors.New("no p= tag")
	}
	if r.P, err = policy("p"); err != nil {
		return nil, err
	}
	if _, ok := tags["sp"]; ok {
		if r.SP, err = policy("sp"); err != nil {
			return nil, err
		}
	}
	for _, a := range []struct {
		tag string
		dst *string
	}{{"adkim", &r.ADKIM}, {"aspf", &r.ASPF}} {
		if v, ok := tags[a.tag]; ok {
			v = strings.ToLower(v)
			if v != "r" && v != "s" {
				return nil, fmt.Errorf("%s=%s is not r or s", a.tag, tags[a.tag])
			}
			*a.dst = v
		}
	}
	if v, ok := tags["pct"]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 100 {
			return nil, fmt.Errorf("pct=%s is not 0-100", v)
		}
		r.Pct = n
	}
	r.RUA = tags["rua"]
	return r, nil
}

// policyFor returns the policy a receiver applies to mail From a domain
// covered by this record: sp= for a subdomain of the organizational domain
// whose record this is, p= otherwise.
func (r *dmarcRecord) policyFor(subdomain bool) string {
	if subdomain && r.SP != "" {
		return r.SP
	}
	return r.P
}

// orgDomain is the RFC 7489 organizational domain: the public suffix plus
// one label. A name that is itself a public suffix is its own.
func orgDomain(d string) string {
	o, err := publicsuffix.EffectiveTLDPlusOne(d)
	if err != nil {
		return d
	}
	return o
}

// aligned reports DMARC identifier alignment (RFC 7489 3.1): strict
// needs the same name, relaxed the same organizational domain.
func aligned(strict bool, authenticated, from string) bool {
	if strict {
		return authenticated == from
	}
	return orgDomain(authenticated) == orgDomain(from)
}

// dkimKeyRecord is a parsed RFC 6376 3.6.1 key record.
type dkimKeyRecord struct {
	K       string // rsa | ed25519
	P       []byte // decoded key data (empty: revoked)
	Testing bool   // t=y
}

func parseDKIMKey(txt string) (*dkimKeyRecord, error) {
	tags, _, err := tagList(txt)
	if err != nil {
		return nil, err
	}
	if v, ok := tags["v"]; ok && v != "DKIM1" {
		return nil, fmt.Errorf("v=%s is not DKIM1", v)
	}
	r := &dkimKeyRecord{K: "rsa"}
	if k, ok := tags["k"]; ok {
		r.K = strings.ToLower(k)
	}
	p, ok := tags["p"]
	if !ok {
		return nil, errors.New("no p= tag")
	}
	p = strings.Join(strings.Fields(p), "")
	if r.P, err = base64.StdEncoding.DecodeString(p); err != nil {
		return nil, fmt.Errorf("p= is not base64: %v", err)
	}
	for _, f := range strings.Split(tags["t"], ":") {
		if strings.TrimSpace(f) == "y" {
			r.Testing = true
		}
	}
	return r, nil
}

// matches reports whether the record publishes the public half of
// signer. RSA keys are compared as keys, so a record holding the
// SubjectPublicKeyInfo and one holding the bare PKCS#1 key both match.
func (r *dkimKeyRecord) matches(signer crypto.Signer) bool {
	switch pub := signer.Public().(type) {
	case *rsa.PublicKey:
		if r.K != "rsa" {
			return false
		}
		if k, err := x509.ParsePKIXPublicKey(r.P); err == nil {
			rk, ok := k.(*rsa.PublicKey)
			return ok && rk.Equal(pub)
		}
		if k, err := x509.ParsePKCS1PublicKey(r.P); err == nil {
			return k.Equal(pub)
		}
	case ed25519.PublicKey:
		return r.K == "ed25519" && bytes.Equal(r.P, pub)
	}
	return false
}

// keyType names the algorithm of signer for messages.
func keyType(signer crypto.Signer) string {
	switch pub := signer.Public().(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA-%d", pub.N.BitLen())
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return fmt.Sprintf("%T", signer)
}

// spfRecords returns the TXT records that are SPF records (RFC 7208 4.5).
func spfRecords(txts []string) []string {
	var out []string
	for _, t := range txts {
		l := strings.ToLower(strings.TrimSpace(t))
		if l == "v=spf1" || strings.HasPrefix(l, "v=spf1 ") {
			out = append(out, t)
		}
	}
	return out
}

// spfIncludes reports whether an SPF record has an include: of domain
// (with any qualifier but "-" or "?" weakening it away).
func spfIncludes(record, domain string) bool {
	for _, term := range strings.Fields(strings.ToLower(record)) {
		term = strings.TrimPrefix(term, "+")
		if strings.TrimSuffix(strings.TrimPrefix(term, "include:"), ".") == domain && strings.HasPrefix(term, "include:") {
			return true
		}
	}
	return false
}

// withInclude returns record with include:domain added after v=spf1.
func withInclude(record, domain string) string {
	f := strings.Fields(record)
	if len(f) == 0 {
		return "v=spf1 include:" + domain + " ~all"
	}
	return strings.Join(append([]string{f[0], "include:" + domain}, f[1:]...), " ")
}
