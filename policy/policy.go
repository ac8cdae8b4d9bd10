// Package policy decides what a tenant may send: From ownership and DMARC
// alignment of the author fields (RFC 5322 3.6.2 and 3.6.6, RFC 7489 3.1),
// the envelope sender (RFC 5321 4.1.1.2), the SES configuration set and
// message tags, and the DKIM key (RFC 6376) to sign with.
//
// Everything here is pure: Compile turns a validated configuration into
// immutable Rules, and a Tenant's Evaluate turns (envelope, header) into a
// Decision value. No I/O, logging, clock or SMTP.
package policy

import (
	"fmt"
	"maps"
	"net/mail"
	"net/textproto"
	"slices"
	"strings"

	"github.com/sesrelay/sesrelay/address"
	"github.com/sesrelay/sesrelay/config"
)

// Reserved tag names: the relay sets them itself.
const (
	TagTenant     = "tenant"
	TagFromDomain = "from_domain"
)

// Rules is the compiled policy of one configuration. It is immutable and
// safe for concurrent use; a reload compiles new Rules and swaps them whole.
type Rules struct {
	tenants []*Tenant
	byName  map[string]*Tenant
	byUser  map[string]userEntry
}

type userEntry struct {
	tenant *Tenant
	user   *config.User
}

// Tenant is one tenant's compiled rules.
type Tenant struct {
	Name string
	// Config is the tenant's configuration. It belongs to the Config given
	// to Compile and must not be modified.
	Config *config.Tenant
	// EncodeLongLines: a body line over 998 characters has its MIME part
	// re-encoded before the message is read (tenants[].long_lines).
	EncodeLongLines bool

	exact map[string]struct{} // "example.com"
	wild  map[string]struct{} // "example.com" for "*.example.com"
	// domainList is the tenant's domains for rejection details.
	domainList string

	rewrite       bool
	stripNames    bool   // display_name: strip_addresses
	rewriteFrom   string // local@normalized-domain
	rewriteDomain string

	configSets    map[string]struct{} // configuration_set and allowed_configuration_sets
	configSetList string              // for rejection details

	dkim         map[string]*config.DKIMKey // by domain, first listed wins
	dkimRequired bool
	dkimList     string // for rejection details

	staticTags []Tag // sorted by name, excluding reserved names
	headerTags []headerTag

	// strip and stripSigned are Decision.Strip without and with signing;
	// decisions share them.
	strip, stripSigned []string
}

type headerTag struct {
	header string // canonical header key
	tag    string
}

// Compile builds Rules from a configuration that config.Validate has
// accepted (domains normalized, DKIM keys loaded). It checks again
// everything the policy relies on, so that a configuration built by other
// means cannot weaken it, and returns a *config.Errors naming the key path
// of each problem.
//
// The Rules keep pointers into cfg: cfg must not be modified afterwards.
func Compile(cfg *config.Config) (*Rules, error) {
	// Names and usernames are unique by config's one rule; the lookups
	// below rely on it.
	if err := cfg.CheckUnique(); err != nil {
		return nil, err
	}
	p := &problems{}
	r := &Rules{
		byName: make(map[string]*Tenant, len(cfg.Tenants)),
		byUser: make(map[string]userEntry),
	}
	for i := range cfg.Tenants {
		ct := &cfg.Tenants[i]
		path := fmt.Sprintf("tenants[%d]", i)
		t := compileTenant(p, path, ct)
		if ct.Name == "" {
			p.add(path+".name", "required")
		}
		r.byName[ct.Name] = t
		for j := range ct.Users {
			u := &ct.Users[j]
			if u.Username == "" {
				p.add(fmt.Sprintf("%s.users[%d].username", path, j), "required")
				continue
			}
			r.byUser[u.Username] = userEntry{tenant: t, user: u}
		}
		r.tenants = append(r.tenants, t)
	}
	if len(p.list) > 0 {
		return nil, &config.Errors{List: p.list}
	}
	return r, nil
}

type problems struct{ list []string }

func (p *problems) add(path, format string, args ...any) {
	p.list = append(p.list, path+": "+fmt.Sprintf(format, args...))
}

func compileTenant(p *problems, path string, ct *config.Tenant) *Tenant {
	t := &Tenant{
		Name:            ct.Name,
		Config:          ct,
		exact:           map[string]struct{}{},
		wild:            map[string]struct{}{},
		configSets:      map[string]struct{}{},
		dkim:            map[string]*config.DKIMKey{},
		dkimRequired:    ct.DKIMRequired,
		stripNames:      ct.DisplayName == config.DisplayStripAddresses,
		EncodeLongLines: ct.LongLines == config.LongLinesEncode,
	}
	if len(ct.Domains) == 0 {
		p.add(path+".domains", "at least one domain is required")
	}
	var shown []string
	for j, d := range ct.Domains {
		n, err := address.Pattern(d)
		base, wild := strings.CutPrefix(n, "*.")
		if err != nil {
			p.add(fmt.Sprintf("%s.domains[%d]", path, j), "not a domain name: %q", d)
			continue
		}
		if wild {
			t.wild[base] = struct{}{}
		} else {
			t.exact[base] = struct{}{}
		}
		shown = append(shown, n)
	}
	t.domainList = listText(shown)

	switch ct.FromPolicy {
	case "", config.FromReject:
	case config.FromRewrite:
		t.rewrite = true
		a, err := mail.ParseAddress(ct.RewriteFrom)
		var n string
		ok := err == nil && a.Name == "" && address.IsASCII(a.Address)
		if ok {
			_, d, _ := address.Split(a.Address)
			n, ok = normalizeDomain(d)
		}
		switch {
		case !ok:
			p.add(path+".rewrite_from", "must be a bare ASCII address like noreply@%s, got %q", firstDomain(shown), ct.RewriteFrom)
		case !t.ownsNormalized(n):
			p.add(path+".rewrite_from", "%q is not in the tenant's domains", ct.RewriteFrom)
		default:
			t.rewriteFrom = a.Address[:strings.LastIndexByte(a.Address, '@')+1] + n
			t.rewriteDomain = n
		}
	default:
		p.add(path+".from_policy", "must be reject or rewrite, got %q", ct.FromPolicy)
	}
	switch ct.DisplayName {
	case "", config.DisplayKeep, config.DisplayStripAddresses:
	default:
		p.add(path+".display_name", "must be keep or strip_addresses, got %q", ct.DisplayName)
	}

	var sets []string
	for _, cs := range append([]string{ct.ConfigurationSet}, ct.AllowedConfigurationSets...) {
		if cs == "" {
			continue
		}
		if _, dup := t.configSets[cs]; !dup {
			t.configSets[cs] = struct{}{}
			sets = append(sets, cs)
		}
	}
	t.configSetList = listText(sets)

	var keyDomains []string
	for j := range ct.DKIM {
		k := &ct.DKIM[j]
		kp := fmt.Sprintf("%s.dkim[%d]", path, j)
		n, ok := normalizeDomain(k.Domain)
		switch {
		case !ok:
			p.add(kp+".domain", "not a domain name: %q", k.Domain)
			continue
		case !t.ownsNormalized(n):
			p.add(kp+".domain", "%q is not among the tenant's domains", n)
			continue
		case k.Signer == nil:
			p.add(kp+".key_file", "key not loaded")
			continue
		}
		if _, dup := t.dkim[n]; !dup {
			t.dkim[n] = k
			keyDomains = append(keyDomains, n)
		}
	}
	t.dkimList = listText(keyDomains)
	if t.dkimRequired && len(t.dkim) == 0 {
		p.add(path+".dkim_required", "true but the tenant has no dkim keys")
	}

	for _, name := range slices.Sorted(maps.Keys(ct.Tags)) {
		v := ct.Tags[name]
		switch {
		case name == TagTenant || name == TagFromDomain:
			p.add(path+".tags."+name, "reserved: the relay sets this tag itself")
		case !validTag(name):
			p.add(path+".tags."+name, "tag name must be 1-256 characters of A-Z, a-z, 0-9, _ and -")
		case !validTag(v):
			p.add(path+".tags."+name, "tag value %q must be 1-256 characters of A-Z, a-z, 0-9, _ and -", v)
		default:
			t.staticTags = append(t.staticTags, Tag{Name: name, Value: v})
		}
	}
	slices.SortFunc(t.staticTags, func(a, b Tag) int { return strings.Compare(a.Name, b.Name) })

	for _, h := range slices.Sorted(maps.Keys(ct.HeaderTags)) {
		tag := ct.HeaderTags[h]
		hp := path + ".header_tags." + h
		switch {
		case !validHeaderName(h):
			p.add(hp, "not a header field name")
		case strings.HasPrefix(strings.ToLower(h), "x-ses-"):
			p.add(hp, "X-SES-* headers are removed by the relay and cannot set tags")
		case tag == TagTenant || tag == TagFromDomain:
			p.add(hp, "tag %q is reserved: the relay sets it itself", tag)
		case !validTag(tag):
			p.add(hp, "tag name %q must be 1-256 characters of A-Z, a-z, 0-9, _ and -", tag)
		default:
			t.headerTags = append(t.headerTags, headerTag{header: textproto.CanonicalMIMEHeaderKey(h), tag: tag})
		}
	}
	slices.SortFunc(t.headerTags, func(a, b headerTag) int {
		if c := strings.Compare(a.tag, b.tag); c != 0 {
			return c
		}
		return strings.Compare(a.header, b.header)
	})
	for i := 1; i < len(t.headerTags); i++ {
		if t.headerTags[i].tag == t.headerTags[i-1].tag {
			p.add(path+".header_tags."+t.headerTags[i].header, "tag %q is also set by header %s", t.headerTags[i].tag, t.headerTags[i-1].header)
		}
	}

	t.strip = append([]string(nil), ct.StripHeaders...)
	for _, ht := range t.headerTags {
		t.strip = append(t.strip, ht.header)
	}
	if lu := ct.ListUnsubscribe; lu != nil && lu.ListIDHeader != "" {
		t.strip = append(t.strip, lu.ListIDHeader)
	}
	t.strip = slices.Clip(t.strip)
	t.stripSigned = append(slices.Clone(t.strip), "DKIM-Signature")
	return t
}

// Tenant returns the tenant called name, or nil.
func (r *Rules) Tenant(name string) *Tenant { return r.byName[name] }

// TenantForUser returns the tenant an SMTP AUTH username belongs to and
// that user's configuration, or nil, nil.
func (r *Rules) TenantForUser(username string) (*Tenant, *config.User) {
	e, ok := r.byUser[username]
	if !ok {
		return nil, nil
	}
	return e.tenant, e.user
}

// Tenants returns every tenant in configuration order.
func (r *Rules) Tenants() []*Tenant { return slices.Clone(r.tenants) }

// OwnsDomain reports whether the tenant may send as domain: domain is
// normalized (lowercase, trailing dot removed, IDN to ASCII), then it must
// equal one of the tenant's domains, or be a subdomain, on a label
// boundary, of a "*." entry. Ownership is never granted by the
// organizational domain: a.example.com does not own b.example.com.
func (t *Tenant) OwnsDomain(domain string) bool {
	n, ok := normalizeDomain(domain)
	return ok && t.ownsNormalized(n)
}

func (t *Tenant) ownsNormalized(d string) bool {
	if _, ok := t.exact[d]; ok {
		return true
	}
	// Walk the parents on label boundaries: "a.b.example.com" tries
	// "b.example.com", then "example.com", then "com".
	for i := strings.IndexByte(d, '.'); i >= 0; {
		d = d[i+1:]
		if _, ok := t.wild[d]; ok {
			return true
		}
		i = strings.IndexByte(d, '.')
	}
	return false
}

// dkimKey returns the key for d (normalized) or its nearest parent.
func (t *Tenant) dkimKey(d string) *config.DKIMKey {
	if len(t.dkim) == 0 {
		return nil
	}
	for {
		if k := t.dkim[d]; k != nil {
			return k
		}
		i := strings.IndexByte(d, '.')
		if i < 0 {
			return nil
		}
		d = d[i+1:]
	}
}

func validTag(s string) bool {
	if len(s) == 0 || len(s) > maxTagLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tagByte(s[i]) {
			return false
		}
	}
	return true
}

// validHeaderName: RFC 5322 2.2 field-name, printable ASCII except ":".
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '!' || s[i] > '~' || s[i] == ':' {
			return false
		}
	}
	return true
}

func firstDomain(domains []string) string {
	for _, d := range domains {
		return strings.TrimPrefix(d, "*.")
	}
	return "example.com"
}

// listText renders a list for a rejection detail, shortened when long.
func listText(l []string) string {
	const max = 8
	if len(l) <= max {
		return strings.Join(l, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(l[:max], ", "), len(l)-max)
}
