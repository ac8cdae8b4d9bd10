package headers

import (
	"fmt"
	"mime"
	"net/mail"
	"strings"
	"time"

	"github.com/emersion/go-message/textproto"

	"github.com/sesrelay/sesrelay/address"
)

// UniqueFields are the header fields a message may carry at most once: the
// RFC 5322 section 3.6 fields limited to one occurrence, plus every field
// SES refuses to see twice (its "header fields" documentation). Names are
// compared without regard to case. Callers must not modify the slice.
var UniqueFields = []string{
	// RFC 5322 3.6
	"Date", "From", "Sender", "Reply-To", "To", "Cc", "Bcc",
	"Message-ID", "In-Reply-To", "References", "Subject",
	// SES, in its documentation's order, without the ones above
	"Accept-Language", "acceptLanguage", "Archived-At", "Auto-Submitted",
	"Bounces-To", "Comments", "Content-Alternative", "Content-Base",
	"Content-Class", "Content-Description", "Content-Disposition",
	"Content-Duration", "Content-ID", "Content-Language", "Content-Length",
	"Content-Location", "Content-MD5", "Content-Transfer-Encoding",
	"Content-Type", "Delivered-To", "Disposition-Notification-Options",
	"Disposition-Notification-To", "DKIM-Signature", "DomainKey-Signature",
	"Errors-To", "Importance", "Keywords", "List-Archive", "List-Help",
	"List-Id", "List-Owner", "List-Post", "List-Subscribe",
	"List-Unsubscribe", "List-Unsubscribe-Post", "Message-Context",
	"MIME-Version", "Organization", "Original-From", "Original-Message-ID",
	"Original-Recipient", "Original-Subject", "Precedence", "Priority",
	"Return-Path", "Return-Receipt-To", "Solicitation", "Sensitivity",
	"Thread-Index", "Thread-Topic", "User-Agent", "VBR-Info",
}

var uniqueSet = func() map[string]string {
	m := make(map[string]string, len(UniqueFields))
	for _, f := range UniqueFields {
		m[strings.ToLower(f)] = f
	}
	return m
}()

// CheckUnique returns a *FormatError naming the first field, in header
// order, that is one of UniqueFields and occurs more than once; nil when
// there is none. SES would refuse such a message; refusing it here lets the
// client see which field is wrong.
//
// When the relay signs, it removes the client's DKIM-Signature fields
// (Strip(h, []string{"DKIM-Signature"}); Sign removes them again) before
// calling CheckUnique, so a client's duplicate signatures are not reported;
// when it does not sign, two DKIM-Signature fields are refused like any
// other duplicate.
func CheckUnique(h *textproto.Header) error {
	counts := make(map[string]int)
	fs := h.Fields()
	for fs.Next() {
		counts[strings.ToLower(fs.Key())]++
	}
	fs = h.Fields()
	for fs.Next() {
		k := strings.ToLower(fs.Key())
		if name, ok := uniqueSet[k]; ok && counts[k] > 1 {
			return &FormatError{Field: name, Reason: fmt.Sprintf("appears %d times; it may appear only once", counts[k])}
		}
	}
	return nil
}

// CheckASCII returns a *FormatError naming the first field whose name or
// value holds a byte outside 7-bit ASCII, or a control character other
// than tab (NUL, ESC, DEL ...; CR and LF only as the CRLF that ends a line
// or folds one). SES has no SMTPUTF8: non-ASCII text must be RFC 2047
// encoded, addresses must be ASCII (punycode domains). RFC 5322 field
// bodies are printable characters and whitespace: a NUL in Subject or To
// is read differently by different parsers (text after it hidden, or a
// field smuggled behind it).
func CheckASCII(h *textproto.Header) error {
	fs := h.Fields()
	for fs.Next() {
		raw, err := fs.Raw()
		if err != nil {
			return &FormatError{Field: fs.Key(), Reason: err.Error()}
		}
		for _, c := range raw {
			switch {
			case c >= 0x80:
				return &FormatError{Field: fs.Key(), Reason: "non-ASCII characters; encode with RFC 2047"}
			case (c < 0x20 && c != '\t' && c != '\r' && c != '\n') || c == 0x7f:
				return &FormatError{Field: fs.Key(), Reason: fmt.Sprintf("control character 0x%02X (only tab is allowed in a header)", c)}
			}
		}
	}
	return nil
}

// SESConfigurationSetField is the header SES reads a configuration set
// from; StripSES hands its value to the relay instead.
const SESConfigurationSetField = "X-SES-CONFIGURATION-SET"

// StripSES removes every field whose name starts with "X-SES-" (any case),
// and Return-Path and Bcc: SES would act on X-SES-* fields (configuration
// set, tags, ARNs) with the relay's authority, the Return-Path is SES's to
// set, and recipients come from the envelope. It returns the trimmed value
// of the topmost X-SES-CONFIGURATION-SET field and found = true when there
// was one (the value may then be empty); the relay decides whether the
// tenant may use that configuration set.
func StripSES(h *textproto.Header) (configSet string, found bool) {
	fs := h.Fields()
	for fs.Next() {
		k := fs.Key()
		if !found && strings.EqualFold(k, SESConfigurationSetField) {
			configSet, found = strings.TrimSpace(fs.Value()), true
		}
		if len(k) >= 6 && strings.EqualFold(k[:6], "X-SES-") ||
			strings.EqualFold(k, "Return-Path") || strings.EqualFold(k, "Bcc") {
			fs.Del()
		}
	}
	return configSet, found
}

// Strip removes every field whose name is in names, compared without
// regard to case.
func Strip(h *textproto.Header, names []string) {
	if len(names) == 0 {
		return
	}
	del(h, func(k string) bool {
		for _, n := range names {
			if strings.EqualFold(k, n) {
				return true
			}
		}
		return false
	})
}

// DateLayout is the RFC 5322 date-time format Prepare writes.
const DateLayout = "Mon, 02 Jan 2006 15:04:05 -0700"

// Prepare adds the fields RFC 5322 requires when the client left them out:
// Date (now, in now's location) and Message-ID ("<" + newID() + ">"; newID
// returns an id-left "@" id-right without brackets and is called only when
// the field is missing). Both go at the top of the header, Date first.
// Existing fields are kept as they are (SES replaces both anyway; a message
// without them is still not valid mail).
func Prepare(h *textproto.Header, now time.Time, newID func() string) error {
	if count(h, "Message-ID") == 0 {
		if err := prependField(h, "Message-ID", "<"+newID()+">"); err != nil {
			return err
		}
	}
	if count(h, "Date") == 0 {
		if err := prependField(h, "Date", now.Format(DateLayout)); err != nil {
			return err
		}
	}
	return nil
}

// FromEdit is a From field decided elsewhere (policy.Decision): the
// header writer applies it as given and decides nothing.
type FromEdit struct {
	// Name is the display name, UTF-8; formatAddress quotes it or encodes
	// it (RFC 2047). "" writes a bare address.
	Name string
	// Address is the new From address: a bare ASCII address.
	Address string
	// ReplyTo, when not "", is written into a new Reply-To field right
	// after the From field.
	ReplyTo string
}

// FromRewrite replaces the message's single From field with e, in place,
// and adds the Reply-To e asks for right after it. The policy has checked
// the From field (exactly one, one mailbox); a message with no From field
// or several is still a *FormatError naming From, so the edit can never
// add a second author. An Address that is not a bare ASCII address is a
// plain error (a configuration mistake).
func FromRewrite(h *textproto.Header, e FromEdit) error {
	// Address is in net/mail's form (a quoted local part unquoted), as
	// policy has it: it must read back the same once written.
	if a, err := mail.ParseAddress((&mail.Address{Address: e.Address}).String()); err != nil || a.Address != e.Address || !address.IsASCII(e.Address) {
		return fmt.Errorf("rewrite address %q is not a bare ASCII address", e.Address)
	}
	switch n := count(h, "From"); n {
	case 1:
	case 0:
		return &FormatError{Field: "From", Reason: "missing"}
	default:
		return &FormatError{Field: "From", Reason: fmt.Sprintf("appears %d times; it may appear only once", n)}
	}
	value := (&mail.Address{Address: e.Address}).String()
	if e.Name != "" {
		value = formatAddress(e.Name, e.Address)
	}
	from, err := formatField("From", value)
	if err != nil {
		return err
	}
	var replyTo []byte
	if e.ReplyTo != "" {
		if replyTo, err = formatField("Reply-To", (&mail.Address{Address: e.ReplyTo}).String()); err != nil {
			return err
		}
	}
	fields, err := rawFields(h)
	if err != nil {
		return err
	}
	out := make([][]byte, 0, len(fields)+1)
	for _, f := range fields {
		if !strings.EqualFold(fieldName(f), "From") {
			out = append(out, f)
			continue
		}
		out = append(out, from)
		if replyTo != nil {
			out = append(out, replyTo)
		}
	}
	setFields(h, out)
	return nil
}

// formatAddress is mail.Address.String with one fix: a name that needs RFC
// 2047 encoding and holds a backslash is B-encoded, where String would put
// the backslash raw into a Q encoded-word, which no parser takes as a
// phrase (RFC 2047 5(3); the standard library B-encodes for the other
// specials but forgot this one). Invalid UTF-8 in the name becomes U+FFFD.
func formatAddress(name, address string) string {
	name = strings.ToValidUTF8(name, "\uFFFD")
	a := &mail.Address{Name: name, Address: address}
	// "Needs encoding" as mime sees it: a tab alone does not (String
	// quotes such a name), and mime.BEncoding would return it raw.
	if strings.Contains(name, "\\") && strings.ContainsFunc(name, func(r rune) bool { return (r < ' ' && r != '\t') || r > '~' }) {
		return mime.BEncoding.Encode("utf-8", name) + " " + (&mail.Address{Address: address}).String()
	}
	return a.String()
}
