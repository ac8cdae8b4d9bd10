package policy

import (
	"net/mail"

	"github.com/sesrelay/sesrelay/config"
)

// Decision is what the policy says about one message of one tenant. It is a
// plain value: the relay acts on it, explain prints it.
//
// When Reject is non-nil the message must not be sent, and only Reject and
// FromDomain (when it was known) are meaningful.
type Decision struct {
	// Reject is nil when the message is accepted.
	Reject *Rejection

	// Rewrite is non-nil when the From field is replaced: with
	// from_policy rewrite when the From address is not the tenant's (an
	// owned From address is never rewritten), or with display_name
	// strip_addresses when its display name held a foreign address. The
	// headers package writes it as given.
	Rewrite *FromRewrite

	// FromDomain is the normalized (lowercase, ASCII) domain of the From
	// address the application wrote, before any rewrite. "" when the From
	// was missing or its domain is not a valid domain name.
	FromDomain string

	// ConfigurationSet is the SES configuration set to send with: the
	// tenant's configuration_set, or the X-SES-CONFIGURATION-SET header value
	// when that names the tenant's configuration_set or one of its
	// allowed_configuration_sets. "" means none.
	ConfigurationSet string

	// Tags are the SES message tags: static tags, tenant, from_domain (the
	// domain of the From that is sent, like DKIM: rewrite_from's after a
	// rewrite, "." becoming "_"), then header_tags found in the message (a
	// header tag overrides a static tag of the same name; RFC 2047 words are
	// decoded first, the first field of a name wins). Names and values hold only [A-Za-z0-9_-], at most
	// 256 characters; empty values are dropped. Sorted by Name.
	Tags []Tag

	// DKIM is the tenant key to sign with, chosen for the domain of the From
	// that is sent (after a rewrite, rewrite_from's): the key whose domain
	// is that domain, else the key of its nearest parent domain. The first
	// key listed for a domain wins. nil means do not sign.
	DKIM *config.DKIMKey

	// Strip lists the header fields to remove, in this order, compared
	// without regard to case: the tenant's strip_headers, the header_tags
	// fields (their values became Tags), the list_id_header field (its
	// value is List), and DKIM-Signature when the relay signs (SES takes
	// one signature; the relay's replaces the client's). X-SES-*,
	// Return-Path and Bcc are always removed and are not listed. The
	// slice is shared by every decision of the tenant: do not modify it.
	Strip []string

	// List is the value of the tenant's list_unsubscribe.list_id_header
	// field (the topmost one, unfolded and trimmed), "" when there is none.
	List string

	// Unsubscribe says what to do about the RFC 8058 headers.
	Unsubscribe Unsubscribe

	// SES says where and as whom the message is sent.
	SES SES
}

// Unsubscribe is the list_unsubscribe part of a decision.
type Unsubscribe struct {
	Action UnsubscribeAction
	// URL (a template), Mailto and Secret are set for UnsubscribeAdd.
	URL, Mailto string
	Secret      []byte
}

// UnsubscribeAction is what the relay does with the message's
// List-Unsubscribe and List-Unsubscribe-Post fields.
type UnsubscribeAction int

const (
	// UnsubscribeKeep: leave them as they are (mode off).
	UnsubscribeKeep UnsubscribeAction = iota
	// UnsubscribeCheck: the message has them; they must be valid RFC 8058
	// one-click headers, else the message is malformed (554 5.6.0). Modes
	// preserve, and add when the application wrote its own.
	UnsubscribeCheck
	// UnsubscribeRequire: they must be present and valid, else the tenant
	// may not send the message (550 5.7.1). Mode require.
	UnsubscribeRequire
	// UnsubscribeAdd: the message has none; add them, with a token per
	// recipient (one SES request per recipient). Mode add.
	UnsubscribeAdd
)

// SES is the tenant's SES routing of a decision.
type SES struct {
	// Region is the tenant's region, "" for the relay's.
	Region string
	// IdentityARN is FromEmailAddressIdentityArn (delegated sending).
	IdentityARN string
	// Tenant is the SES tenant name (TenantName).
	Tenant string
	// EndpointID is the SES multi-region endpoint id.
	EndpointID string
}

// Accepted reports whether the message may be sent.
func (d *Decision) Accepted() bool { return d.Reject == nil }

// FromRewrite is the From field to write instead of the application's.
// The headers package performs the edit exactly as described.
type FromRewrite struct {
	// Cause is RewriteFromPolicy or RewriteDisplayName.
	Cause string
	// NewFrom is the From address to write: the tenant's rewrite_from
	// (domain normalized) for RewriteFromPolicy, the original address for
	// RewriteDisplayName.
	NewFrom string
	// DisplayName is the name to write, UTF-8, without control characters
	// ("" for none); the header writer encodes it (RFC 2047). For
	// RewriteFromPolicy: "<original name, or original address> via
	// <tenant>", foreign addresses removed from the name with display_name
	// strip_addresses (the address fallback is then its local part).
	DisplayName string
	// Original is the From mailbox the application wrote, display name
	// decoded.
	Original mail.Address
	// ReplyTo, when not "", is the address of a Reply-To field to add
	// right after From: the original address, for RewriteFromPolicy when
	// the message has no Reply-To, so that replies still reach the author.
	ReplyTo string
}

// Causes of a FromRewrite.
const (
	RewriteFromPolicy  = "from_policy"
	RewriteDisplayName = "display_name"
)

// Tag is one SES message tag.
type Tag struct {
	Name, Value string
}

// Rejection explains why a message is refused.
type Rejection struct {
	// Reason is stable: metrics and tests use it.
	Reason Reason
	// Field names what was refused: a header field name ("From", "Sender",
	// "Resent-From", "Resent-Sender", "X-SES-CONFIGURATION-SET") or
	// "MAIL FROM" for the envelope sender.
	Field string
	// Detail is one sentence for the application's developer naming the
	// field, the address and what the tenant may use instead. It is printable
	// ASCII (client text is quoted and escaped, and shortened when long), so
	// it can go into a log line or an SMTP reply as it is.
	Detail string
}

// String returns "reason: detail".
func (r *Rejection) String() string { return string(r.Reason) + ": " + r.Detail }

// Reason is a stable, machine-readable rejection reason.
type Reason string

// Reasons. Each says which Class it is.
const (
	// FromMissing: the message has no From field, or an empty one. Content.
	FromMissing Reason = "from_missing"
	// FromMultiple: more than one From field, or one From field listing
	// several mailboxes. RFC 5322 then requires a Sender; the relay refuses
	// instead, which is simpler and leaves no doubt whose mail it is. Content.
	FromMultiple Reason = "from_multiple"
	// FromGroup: the From field uses group syntax ("name: a@b;"), empty
	// groups included. Legal but never what an application means. Content.
	FromGroup Reason = "from_group"
	// AddressInvalid: a From, Sender, Resent-From or Resent-Sender field, or
	// the envelope sender, cannot be parsed as addresses (or a Sender/Resent
	// field uses group syntax or is empty). Content.
	AddressInvalid Reason = "address_invalid"
	// FromNotOwned: the From domain is not one of the tenant's domains and
	// from_policy is reject. Policy.
	FromNotOwned Reason = "from_not_owned"
	// SenderNotOwned: a Sender mailbox is outside the tenant's domains.
	// Policy.
	SenderNotOwned Reason = "sender_not_owned"
	// ResentNotOwned: a Resent-From or Resent-Sender mailbox is outside the
	// tenant's domains. Policy.
	ResentNotOwned Reason = "resent_not_owned"
	// MailFromNotOwned: the envelope sender (MAIL FROM) is neither <> nor
	// an address in the tenant's domains. Policy.
	MailFromNotOwned Reason = "mail_from_not_owned"
	// ConfigurationSetNotAllowed: X-SES-CONFIGURATION-SET names a
	// configuration set that is neither the tenant's configuration_set nor
	// in its allowed_configuration_sets, or the field appears with
	// different values. Policy.
	ConfigurationSetNotAllowed Reason = "configuration_set_not_allowed"
	// DKIMKeyMissing: the tenant sets dkim_required and has no key for the
	// From domain that would be sent (nor for a parent of it). Policy.
	DKIMKeyMissing Reason = "dkim_key_missing"
)

// Class tells the relay which kind of permanent refusal a Reason is.
type Class int

const (
	// ClassPolicy: the tenant may not send this; the relay answers
	// 550 5.7.1 (RFC 3463: delivery not authorized).
	ClassPolicy Class = iota
	// ClassContent: the message is malformed for sending; the relay answers
	// 554 5.6.0 (RFC 3463: other or undefined media error).
	ClassContent
)

func (c Class) String() string {
	if c == ClassContent {
		return "content"
	}
	return "policy"
}

// ClassOf returns the class of a reason. An unknown reason is ClassPolicy,
// so a new reason without a class still refuses.
func ClassOf(r Reason) Class {
	switch r {
	case FromMissing, FromMultiple, FromGroup, AddressInvalid:
		return ClassContent
	}
	return ClassPolicy
}

// Reasons lists every reason, for documentation and metrics
// initialization.
func Reasons() []Reason {
	return []Reason{
		FromMissing, FromMultiple, FromGroup, AddressInvalid,
		FromNotOwned, SenderNotOwned, ResentNotOwned, MailFromNotOwned,
		ConfigurationSetNotAllowed, DKIMKeyMissing,
	}
}
