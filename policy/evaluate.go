package policy

import (
	"fmt"
	"net/mail"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message/textproto"

	"github.com/sesrelay/sesrelay/address"
	"github.com/sesrelay/sesrelay/config"
)

// Envelope is the SMTP envelope of one transaction.
type Envelope struct {
	// From is the MAIL FROM reverse-path without angle brackets; "" is the
	// null sender <>.
	From string
	// To are the RCPT TO forward-paths.
	To []string
}

// Header field names, in canonical form (what textproto.Header stores).
const (
	fieldFrom         = "From"
	fieldSender       = "Sender"
	fieldResentFrom   = "Resent-From"
	fieldResentSender = "Resent-Sender"
	fieldReplyTo      = "Reply-To"
	fieldConfigSet    = "X-Ses-Configuration-Set"

	fieldListUnsubscribe     = "List-Unsubscribe"
	fieldListUnsubscribePost = "List-Unsubscribe-Post"
)

// Names used in rejection details.
const (
	nameMailFrom  = "MAIL FROM"
	nameConfigSet = "X-SES-CONFIGURATION-SET"
)

// CheckMailFrom checks the envelope sender given at MAIL FROM: the null
// sender "" is allowed, anything else must be an address in the tenant's
// domains, whatever the from_policy (a rewrite changes the From header,
// not the envelope). It returns nil when the sender is acceptable, else a
// Decision whose Reject says why. Evaluate checks it again.
func (t *Tenant) CheckMailFrom(addr string) *Decision {
	if r := t.checkMailFrom(addr); r != nil {
		return &Decision{Reject: r}
	}
	return nil
}

func (t *Tenant) checkMailFrom(addr string) *Rejection {
	if addr == "" {
		return nil
	}
	local, d, ok := address.Split(addr)
	if ok {
		ok = strings.IndexFunc(local, func(r rune) bool { return r < 0x20 || r == 0x7f || r == utf8.RuneError }) < 0
	}
	if !ok {
		return &Rejection{Reason: AddressInvalid, Field: nameMailFrom, Detail: fmt.Sprintf(
			"the envelope sender (MAIL FROM) %s is not an address; use <> or an address in %s", quote(addr), t.domainList)}
	}
	if n, ok := normalizeDomain(d); !ok || !t.ownsNormalized(n) {
		return &Rejection{Reason: MailFromNotOwned, Field: nameMailFrom, Detail: fmt.Sprintf(
			"the envelope sender (MAIL FROM) %s is not in the domains of tenant %q; use <> or an address in %s", quote(addr), t.Name, t.domainList)}
	}
	return nil
}

// Evaluate decides whether the tenant may send a message with this
// envelope and header, and with which From, configuration set, tags and
// DKIM key. h is only read; a nil h is an empty header.
//
// The checks run in this order and the first failure is returned: the
// envelope sender; the From field (present, once, one mailbox, no group,
// parsable); its domain (rejected or, with from_policy rewrite, rewritten);
// every Sender, Resent-From and Resent-Sender mailbox; the
// X-SES-CONFIGURATION-SET value; the DKIM key when dkim_required. Other
// X-SES-* fields play no part: the relay removes them.
func (t *Tenant) Evaluate(env Envelope, h *textproto.Header) Decision {
	var d Decision
	if h == nil {
		h = &textproto.Header{}
	}
	if r := t.checkMailFrom(env.From); r != nil {
		d.Reject = r
		return d
	}

	from, r := t.author(h)
	if r != nil {
		d.Reject = r
		return d
	}
	_, dom, _ := address.Split(from.Address) // net/mail guarantees an "@"
	n, valid := normalizeDomain(dom)
	if valid {
		d.FromDomain = n
	}
	sendDomain := n
	owned := valid && t.ownsNormalized(n)
	// The display name matters only to a rewrite or to strip_addresses:
	// the common case (an owned From, keep) does not clean it.
	var name string
	stripped := false
	if !owned || t.stripNames {
		name = address.CleanName(from.Name)
	}
	if t.stripNames {
		name, stripped = address.StripAddresses(name, t.ownsNormalized)
	}
	switch {
	case !owned && !t.rewrite:
		d.Reject = &Rejection{Reason: FromNotOwned, Field: fieldFrom, Detail: fmt.Sprintf(
			"the From address %s is not in the domains of tenant %q; use an address in %s", quote(from.Address), t.Name, t.domainList)}
		return d
	case !owned:
		shown := name
		if shown == "" {
			shown = address.CleanName(from.Address)
			if t.stripNames {
				local, _, _ := address.Split(from.Address)
				shown = address.CleanName(local)
			}
		}
		d.Rewrite = &FromRewrite{
			Cause:       RewriteFromPolicy,
			NewFrom:     t.rewriteFrom,
			DisplayName: strings.TrimSpace(shown + " via " + t.Name),
			Original:    mail.Address{Name: address.CleanName(from.Name), Address: from.Address},
		}
		if !h.Has(fieldReplyTo) {
			d.Rewrite.ReplyTo = from.Address
		}
		sendDomain = t.rewriteDomain
	case stripped:
		d.Rewrite = &FromRewrite{
			Cause:       RewriteDisplayName,
			NewFrom:     from.Address,
			DisplayName: name,
			Original:    mail.Address{Name: address.CleanName(from.Name), Address: from.Address},
		}
	}

	for _, f := range [...]struct {
		field  string
		reason Reason
	}{
		{fieldSender, SenderNotOwned},
		{fieldResentFrom, ResentNotOwned},
		{fieldResentSender, ResentNotOwned},
	} {
		if r := t.checkMailboxes(h, f.field, f.reason); r != nil {
			d.Reject = r
			return d
		}
	}

	cs, r := t.configurationSet(h)
	if r != nil {
		d.Reject = r
		return d
	}
	d.ConfigurationSet = cs

	d.DKIM = t.dkimKey(sendDomain)
	if d.DKIM == nil && t.dkimRequired {
		what := "the From domain " + sendDomain
		if d.Rewrite != nil {
			what = "the rewritten From domain " + sendDomain
		}
		d.Reject = &Rejection{Reason: DKIMKeyMissing, Field: fieldFrom, Detail: fmt.Sprintf(
			"tenant %q requires DKIM signing but has no key for %s; its keys cover %s", t.Name, what, t.dkimList)}
		return d
	}

	d.Tags = t.tags(h, sendDomain)
	t.plan(&d, h)
	return d
}

// plan fills in the edits of an accepted decision: the fields to strip,
// the list, the unsubscribe action and the SES routing.
func (t *Tenant) plan(d *Decision, h *textproto.Header) {
	tc := t.Config
	d.Strip = t.strip
	if d.DKIM != nil {
		d.Strip = t.stripSigned
	}
	lu := tc.ListUnsubscribe
	if lu != nil && lu.ListIDHeader != "" {
		d.List = topValue(h, lu.ListIDHeader)
	}
	if d.List == "" {
		d.List = listID(topValue(h, "List-Id"))
	}
	mode := config.UnsubOff
	if lu != nil {
		mode = lu.Mode
	}
	// Whether the message has its own, once the fields to strip are gone.
	has := false
	for _, f := range []string{fieldListUnsubscribe, fieldListUnsubscribePost} {
		if hasField(h, f) && !slices.ContainsFunc(d.Strip, func(s string) bool { return strings.EqualFold(s, f) }) {
			has = true
		}
	}
	switch {
	case mode == config.UnsubRequire:
		d.Unsubscribe.Action = UnsubscribeRequire
	case mode == config.UnsubOff:
	case has:
		d.Unsubscribe.Action = UnsubscribeCheck
	case mode == config.UnsubAdd:
		d.Unsubscribe = Unsubscribe{Action: UnsubscribeAdd, URL: lu.URL, Mailto: lu.Mailto, Secret: lu.Secret}
	}
	d.SES = SES{Region: tc.Region, IdentityARN: tc.IdentityARN, Tenant: tc.SESTenant, EndpointID: tc.SESEndpointID}
}

// hasField reports whether h has a field called name, in any case
// (textproto.Header canonicalizes only names that are HTTP tokens).
func hasField(h *textproto.Header, name string) bool {
	fs := h.Fields()
	for fs.Next() {
		if strings.EqualFold(fs.Key(), name) {
			return true
		}
	}
	return false
}

// topValue returns the trimmed value of the topmost field called name, in
// any case, or "".
func topValue(h *textproto.Header, name string) string {
	fs := h.Fields()
	for fs.Next() {
		if strings.EqualFold(fs.Key(), name) {
			return strings.TrimSpace(fs.Value())
		}
	}
	return ""
}

// author returns the single From mailbox, or why there is none.
func (t *Tenant) author(h *textproto.Header) (*mail.Address, *Rejection) {
	reject := func(reason Reason, format string, args ...any) (*mail.Address, *Rejection) {
		return nil, &Rejection{Reason: reason, Field: fieldFrom, Detail: fmt.Sprintf(format, args...)}
	}
	if !h.Has(fieldFrom) {
		return reject(FromMissing, "the message has no From field; add one with an address in %s", t.domainList)
	}
	values := h.Values(fieldFrom)
	if len(values) > 1 {
		return reject(FromMultiple, "the message has %d From fields; exactly one is allowed, with an address in %s", len(values), t.domainList)
	}
	v := trimWSP(values[0])
	if v == "" {
		return reject(FromMissing, "the From field is empty; put one address in %s there", t.domainList)
	}
	if address.IsGroup(v) {
		return reject(FromGroup, "the From field %s uses group syntax (\"name: addresses;\"); give a single address in %s", quote(v), t.domainList)
	}
	list, bad := parseMailboxes(v)
	if bad != "" {
		return reject(AddressInvalid, "the From field %s is not a valid address (%s)", quote(v), bad)
	}
	if len(list) > 1 {
		return reject(FromMultiple, "the From field lists %d addresses (%s, %s...); exactly one is allowed, in %s",
			len(list), quote(list[0].Address), quote(list[1].Address), t.domainList)
	}
	return list[0], nil
}

// checkMailboxes holds every mailbox of every field called key to the
// same ownership rule as From. The fields are optional.
func (t *Tenant) checkMailboxes(h *textproto.Header, key string, reason Reason) *Rejection {
	if !h.Has(key) {
		return nil
	}
	for _, v := range h.Values(key) {
		list, bad := parseMailboxes(trimWSP(v))
		if bad != "" {
			return &Rejection{Reason: AddressInvalid, Field: key, Detail: fmt.Sprintf(
				"the %s field %s is not a valid list of addresses (%s)", key, quote(v), bad)}
		}
		for _, a := range list {
			_, dom, _ := address.Split(a.Address)
			if n, ok := normalizeDomain(dom); !ok || !t.ownsNormalized(n) {
				return &Rejection{Reason: reason, Field: key, Detail: fmt.Sprintf(
					"the %s address %s is not in the domains of tenant %q; use an address in %s or remove the field", key, quote(a.Address), t.Name, t.domainList)}
			}
		}
	}
	return nil
}

// configurationSet returns the configuration set the message asks for or
// the tenant's default.
func (t *Tenant) configurationSet(h *textproto.Header) (string, *Rejection) {
	cs := t.Config.ConfigurationSet
	if !h.Has(fieldConfigSet) {
		return cs, nil
	}
	chosen := ""
	for _, v := range h.Values(fieldConfigSet) {
		v = strings.TrimSpace(v)
		switch {
		case v == "":
		case chosen == "":
			chosen = v
		case v != chosen:
			return "", &Rejection{Reason: ConfigurationSetNotAllowed, Field: nameConfigSet, Detail: fmt.Sprintf(
				"the message has several %s fields with different values (%s, %s); give one", nameConfigSet, quote(chosen), quote(v))}
		}
	}
	if chosen == "" {
		return cs, nil
	}
	if _, ok := t.configSets[chosen]; !ok {
		allowed := "none: remove the field"
		if t.configSetList != "" {
			allowed = t.configSetList
		}
		return "", &Rejection{Reason: ConfigurationSetNotAllowed, Field: nameConfigSet, Detail: fmt.Sprintf(
			"%s %s is not a configuration set tenant %q may use; allowed: %s", nameConfigSet, quote(chosen), t.Name, allowed)}
	}
	return chosen, nil
}

// tags builds the SES tags: static, tenant, from_domain, then header tags
// (which override static tags of the same name), sorted by name.
func (t *Tenant) tags(h *textproto.Header, fromDomain string) []Tag {
	tags := make([]Tag, 0, len(t.staticTags)+2+len(t.headerTags))
	tags = append(tags, t.staticTags...)
	tags = append(tags, Tag{Name: TagTenant, Value: t.Name})
	if v := SanitizeTagValue(fromDomain); v != "" {
		tags = append(tags, Tag{Name: TagFromDomain, Value: v})
	}
	for _, ht := range t.headerTags {
		if !h.Has(ht.header) {
			continue
		}
		raw := strings.TrimSpace(h.Get(ht.header))
		raw = strings.TrimSpace(address.DecodeHeader(raw))
		v := SanitizeTagValue(raw)
		if v == "" {
			continue
		}
		if i := slices.IndexFunc(tags[:len(t.staticTags)], func(g Tag) bool { return g.Name == ht.tag }); i >= 0 {
			tags[i].Value = v
			continue
		}
		tags = append(tags, Tag{Name: ht.tag, Value: v})
	}
	slices.SortFunc(tags, func(a, b Tag) int { return strings.Compare(a.Name, b.Name) })
	return tags
}

// normalizeDomain is address.Domain for the policy's lookups: a domain
// that does not normalize owns nothing.
func normalizeDomain(d string) (string, bool) {
	n, err := address.Domain(d)
	return n, err == nil
}

// parseMailboxes parses an address-list field value that must not use
// group syntax. It returns the mailboxes, or a short error text, escaped
// (net/mail quotes the client's text in its errors).
func parseMailboxes(v string) ([]*mail.Address, string) {
	list, err := address.ParseList(v)
	if err != nil {
		return nil, escape(err.Error())
	}
	return list, ""
}

// trimWSP trims RFC 5322 white space (space and tab) around a field value.
// Nothing else: a stray CR, a vertical tab or a Unicode space at the end of
// an address belongs to the value, and net/mail refuses it, as a receiver
// would.
func trimWSP(s string) string { return strings.Trim(s, " \t") }

// quote renders client text for a rejection detail: shortened, quoted, and
// escaped to printable ASCII.
func quote(s string) string { return `"` + escape(s) + `"` }

// escape shortens s and escapes it to printable ASCII as inside a Go
// string literal.
func escape(s string) string {
	const max = 100
	more := ""
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s, more = s[:cut], "..."
	}
	q := strconv.QuoteToASCII(s)
	return q[1:len(q)-1] + more
}

// listID is the list identifier of a List-Id value (RFC 2919): the part
// between the angle brackets of `"phrase" <list-id>`, or the whole
// trimmed value when it has no brackets.
func listID(v string) string {
	v = strings.TrimSpace(v)
	if i := strings.LastIndexByte(v, '<'); i >= 0 {
		if j := strings.IndexByte(v[i:], '>'); j > 0 {
			return strings.TrimSpace(v[i+1 : i+j])
		}
	}
	return v
}
