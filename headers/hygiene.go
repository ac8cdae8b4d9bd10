package headers

import (
	"fmt"
	"mime"
	"net/mail"
	"strings"
	"time"

	"github.com/emersion/go-message/charset"
	"github.com/emersion/go-message/textproto"
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

// TakeField returns the value of the topmost field named name (any case),
// unfolded and trimmed, and removes every field of that name. ok is false
// when there was none. The relay uses it for request headers that become
// SES tags or name a list and must not reach the recipient.
func TakeField(h *textproto.Header, name string) (value string, ok bool) {
	vs := values(h, name)
	if len(vs) == 0 {
		return "", false
	}
	delName(h, name)
	return strings.TrimSpace(vs[0]), true
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

// addressParser decodes RFC 2047 display names in any charset go-message
// knows, since legacy applications still write ISO-8859-x and Windows-125x.
var addressParser = mail.AddressParser{WordDecoder: &mime.WordDecoder{CharsetReader: charset.Reader}}

// ParseFrom returns the single mailbox of the message's single From field.
// A missing From, several From fields, an unparsable value, a list of
// mailboxes, group syntax (even with one member) or a non-ASCII address is
// a *FormatError naming From.
func ParseFrom(h *textproto.Header) (*mail.Address, error) {
	froms := values(h, "From")
	switch len(froms) {
	case 0:
		return nil, &FormatError{Field: "From", Reason: "missing"}
	case 1:
	default:
		return nil, &FormatError{Field: "From", Reason: fmt.Sprintf("appears %d times; it may appear only once", len(froms))}
	}
	if isGroup(froms[0]) {
		// net/mail takes "g: a@example.com;" for the mailbox alone.
		return nil, &FormatError{Field: "From", Reason: "group syntax; it must be a single mailbox"}
	}
	a, err := addressParser.Parse(froms[0])
	if err != nil {
		return nil, &FormatError{Field: "From", Reason: "not a single mailbox: " + strings.TrimPrefix(err.Error(), "mail: ")}
	}
	if !isASCII(a.Address) {
		return nil, &FormatError{Field: "From", Reason: "non-ASCII address; SES needs an ASCII address (punycode domain)"}
	}
	return a, nil
}

// FromRewrite replaces the message's From with newFrom, keeping the
// original sender visible: the display name becomes "<original display
// name, or original address> via <tenant>" (quoted, or RFC 2047 encoded
// when not ASCII). Unless the message has a Reply-To, one is added right
// after the From with the original address, so replies still reach the
// author. The new From takes the original's place in the header.
//
// A From that ParseFrom refuses is a *FormatError; a newFrom that is not a
// bare address is a plain error (a configuration mistake).
func FromRewrite(h *textproto.Header, newFrom string, tenant string) error {
	orig, err := ParseFrom(h)
	if err != nil {
		return err
	}
	if a, err := mail.ParseAddress(newFrom); err != nil || a.Name != "" || a.Address != newFrom || !isASCII(newFrom) {
		return fmt.Errorf("rewrite address %q is not a bare ASCII address", newFrom)
	}
	name := orig.Name
	if strings.TrimSpace(name) == "" {
		name = orig.Address
	}
	from, err := formatField("From", formatAddress(name+" via "+tenant, newFrom))
	if err != nil {
		return err
	}
	var replyTo []byte
	if count(h, "Reply-To") == 0 {
		if replyTo, err = formatField("Reply-To", (&mail.Address{Address: orig.Address}).String()); err != nil {
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

// isGroup reports whether an address field value uses RFC 5322 group
// syntax: a colon outside quoted strings, comments, angle brackets and
// domain literals.
func isGroup(v string) bool {
	var quoted, angle, literal bool
	comment := 0
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '\\' && (quoted || comment > 0):
			i++ // quoted-pair
		case quoted:
			quoted = c != '"'
		case comment > 0:
			switch c {
			case '(':
				comment++
			case ')':
				comment--
			}
		case angle:
			angle = c != '>'
		case literal:
			literal = c != ']'
		case c == '"':
			quoted = true
		case c == '(':
			comment = 1
		case c == '<':
			angle = true
		case c == '[':
			literal = true
		case c == ':':
			return true
		}
	}
	return false
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
