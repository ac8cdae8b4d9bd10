package headers

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message/textproto"
)

// msg builds a message from lines joined with CRLF; "" separates header
// and body.
func msg(lines ...string) string {
	return strings.Join(lines, "\r\n") + "\r\n"
}

func mustRead(t testing.TB, raw string) *Message {
	t.Helper()
	m, err := Read([]byte(raw), RejectBareNewlines)
	if err != nil {
		t.Fatalf("Read: %v\n%s", err, raw)
	}
	return m
}

// diff fails the test with both messages when they differ.
func diff(t *testing.T, got, want string) {
	t.Helper()
	if got != want {
		t.Errorf("message differs\n--- got ---\n%s\n--- want ---\n%s\ngot  %q\nwant %q", got, want, got, want)
	}
}

// wantFormatError checks err is a *FormatError about field whose reason
// contains reason.
func wantFormatError(t *testing.T, err error, field, reason string) {
	t.Helper()
	var fe *FormatError
	if !errors.As(err, &fe) {
		t.Fatalf("got %v (%T), want *FormatError about %s", err, err, field)
	}
	if fe.Field != field || !strings.Contains(fe.Reason, reason) {
		t.Fatalf("got %q, want field %s with reason containing %q", err, field, reason)
	}
}

func TestCheckUnique(t *testing.T) {
	for _, tc := range []struct {
		name, raw     string
		field, reason string // empty: no error
	}{
		{"clean", msg("From: a@example.com", "To: b@example.com", "Received: x", "Received: y", "", "body"), "", ""},
		{"two subjects", msg("Subject: a", "From: a@example.com", "subject: b", "", ""), "Subject", "appears 2 times"},
		{"first offender in header order", msg("To: a@example.com", "Message-Id: <1@x>", "To: c@example.com", "Message-ID: <2@x>", "", ""), "To", "appears 2 times"},
		{"three list-unsubscribe", msg("From: a@example.com", "List-Unsubscribe: <https://a/>", "LIST-UNSUBSCRIBE: <https://b/>", "list-unsubscribe: <https://c/>", "", ""), "List-Unsubscribe", "appears 3 times; it may appear only once"},
		{"ses-only field", msg("From: a@example.com", "Importance: high", "Importance: low", "", ""), "Importance", "appears 2 times"},
		{"dkim signatures", msg("DKIM-Signature: a", "DKIM-Signature: b", "From: a@example.com", "", ""), "DKIM-Signature", "appears 2 times"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := mustRead(t, tc.raw)
			err := CheckUnique(&m.Header)
			if tc.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantFormatError(t, err, tc.field, tc.reason)
		})
	}
	// After stripping the client's signatures, as the relay does when it signs.
	m := mustRead(t, msg("DKIM-Signature: a", "DKIM-Signature: b", "From: a@example.com", "", ""))
	Strip(&m.Header, []string{"dkim-signature"})
	if err := CheckUnique(&m.Header); err != nil {
		t.Fatal(err)
	}
}

func TestCheckASCII(t *testing.T) {
	m := mustRead(t, msg("From: a@example.com", "Subject: =?utf-8?q?caf=C3=A9?=", "", "caf\xc3\xa9 in the body is fine"))
	if err := CheckASCII(&m.Header); err != nil {
		t.Fatal(err)
	}
	m = mustRead(t, msg("From: a@example.com", "Subject: fine", "X-Note: first line", " caf\xc3\xa9", "", ""))
	wantFormatError(t, CheckASCII(&m.Header), "X-Note", "non-ASCII characters; encode with RFC 2047")
	m = mustRead(t, msg("From: J\xc3\xb6rg <j@example.com>", "", ""))
	wantFormatError(t, CheckASCII(&m.Header), "From", "non-ASCII")
}

func TestStripSES(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
		set            string
		found          bool
	}{
		{
			name: "everything SES would act on",
			in: msg(
				"Return-Path: <bounce@evil.example>",
				"From: a@example.com",
				"X-SES-CONFIGURATION-SET:  tenant-b-set ",
				"x-ses-message-tags: campaign=x",
				"X-Ses-Source-Arn: arn:aws:ses:us-east-1:1:identity/b.example",
				"X-SES-FROM-ARN: arn",
				"X-SES-RETURN-PATH-ARN: arn",
				"X-SES-CONFIGURATION-SET: second",
				"Bcc: hidden@example.com",
				"X-Sesame: kept, not an X-SES- field",
				"Subject: hi",
				"", "body"),
			want:  msg("From: a@example.com", "X-Sesame: kept, not an X-SES- field", "Subject: hi", "", "body"),
			set:   "tenant-b-set",
			found: true,
		},
		{
			name: "empty configuration set is still found",
			in:   msg("From: a@example.com", "X-SES-Configuration-Set:", "", ""),
			want: msg("From: a@example.com", "", ""),
			set:  "", found: true,
		},
		{
			name: "nothing to strip",
			in:   msg("From: a@example.com", "Subject: s", "", "b"),
			want: msg("From: a@example.com", "Subject: s", "", "b"),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := mustRead(t, tc.in)
			set, found := StripSES(&m.Header)
			if set != tc.set || found != tc.found {
				t.Errorf("StripSES = %q, %v; want %q, %v", set, found, tc.set, tc.found)
			}
			diff(t, string(m.Bytes()), tc.want)
		})
	}
}

func TestStrip(t *testing.T) {
	m := mustRead(t, msg(
		"X-Originating-IP: [10.0.0.1]",
		"From: a@example.com",
		"X-Campaign:  spring ",
		"  sale",
		"x-originating-ip: 10.0.0.2",
		"X-Mailer: legacy 1.0",
		"X-CAMPAIGN: second",
		"", "body"))
	Strip(&m.Header, []string{"x-originating-ip", "X-Mailer", "Not-There", "x-campaign"})
	diff(t, string(m.Bytes()), msg("From: a@example.com", "", "body"))
}

func TestPrepare(t *testing.T) {
	now := time.Date(2026, 3, 5, 7, 8, 9, 0, time.FixedZone("", -5*3600))
	ids := 0
	newID := func() string { ids++; return "20260305.1@relay.example.com" }
	for _, tc := range []struct {
		name, in, want string
		ids            int
	}{
		{"both missing", msg("From: a@example.com", "", "b"),
			msg("Date: Thu, 05 Mar 2026 07:08:09 -0500", "Message-ID: <20260305.1@relay.example.com>", "From: a@example.com", "", "b"), 1},
		{"date present", msg("From: a@example.com", "date: Mon, 1 Jan 2024 00:00:00 +0000", "", "b"),
			msg("Message-ID: <20260305.1@relay.example.com>", "From: a@example.com", "date: Mon, 1 Jan 2024 00:00:00 +0000", "", "b"), 1},
		{"both present", msg("Message-Id: <x@y>", "From: a@example.com", "Date: Mon, 1 Jan 2024 00:00:00 +0000", "", "b"),
			msg("Message-Id: <x@y>", "From: a@example.com", "Date: Mon, 1 Jan 2024 00:00:00 +0000", "", "b"), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ids = 0
			m := mustRead(t, tc.in)
			if err := Prepare(&m.Header, now, newID); err != nil {
				t.Fatal(err)
			}
			diff(t, string(m.Bytes()), tc.want)
			if ids != tc.ids {
				t.Errorf("newID called %d times, want %d", ids, tc.ids)
			}
		})
	}
}

// TestFromRewrite: the edit is applied as given (the policy composed the
// name and chose the Reply-To); the header writer only formats it.
func TestFromRewrite(t *testing.T) {
	const to = "noreply@relay.example.com"
	for _, tc := range []struct {
		name, in string
		edit     FromEdit
		want     string
	}{
		{
			name: "display name, Reply-To added after From",
			in:   msg("Subject: s", "From: Alice Doe <alice@shop.example>", "To: b@example.net", "", "body"),
			edit: FromEdit{Name: "Alice Doe via shop", Address: to, ReplyTo: "alice@shop.example"},
			want: msg("Subject: s", `From: "Alice Doe via shop" <noreply@relay.example.com>`, "Reply-To: <alice@shop.example>", "To: b@example.net", "", "body"),
		},
		{
			name: "field name in any case",
			in:   msg("from: alice@shop.example", "", "body"),
			edit: FromEdit{Name: "alice@shop.example via shop", Address: to, ReplyTo: "alice@shop.example"},
			want: msg(`From: "alice@shop.example via shop" <noreply@relay.example.com>`, "Reply-To: <alice@shop.example>", "", "body"),
		},
		{
			name: "no Reply-To asked for",
			in:   msg("From: \"Billing\" <billing@shop.example>", "Reply-To: support@shop.example", "", "body"),
			edit: FromEdit{Name: "Billing via shop", Address: to},
			want: msg(`From: "Billing via shop" <noreply@relay.example.com>`, "Reply-To: support@shop.example", "", "body"),
		},
		{
			name: "no display name",
			in:   msg("From: \"ceo@victim.example\" <a@shop.example>", "", "body"),
			edit: FromEdit{Address: "a@shop.example"},
			want: msg("From: <a@shop.example>", "", "body"),
		},
		{
			name: "non-ASCII name is RFC 2047 encoded",
			in:   msg("From: =?iso-8859-1?q?J=F6rg?= <jorg@shop.example>", "", "body"),
			edit: FromEdit{Name: "Jörg via shop", Address: to, ReplyTo: "jorg@shop.example"},
			want: msg("From: =?utf-8?q?J=C3=B6rg_via_shop?= <noreply@relay.example.com>", "Reply-To: <jorg@shop.example>", "", "body"),
		},
		{
			name: "non-ASCII name with specials is B encoded",
			in:   msg("From: hm@shop.example", "", "body"),
			edit: FromEdit{Name: "Müller, Hans \\ Co via shop", Address: to, ReplyTo: "hm@shop.example"},
			want: msg("From: =?utf-8?b?TcO8bGxlciwgSGFucyBcIENvIHZpYSBzaG9w?=", " <noreply@relay.example.com>", "Reply-To: <hm@shop.example>", "", "body"),
		},
		{
			name: "quotes in the name are escaped",
			in:   msg(`From: a@shop.example`, "", "body"),
			edit: FromEdit{Name: `The "Best" Shop via shop`, Address: to, ReplyTo: "a@shop.example"},
			want: msg(`From: "The \"Best\" Shop via shop" <noreply@relay.example.com>`, "Reply-To: <a@shop.example>", "", "body"),
		},
		{
			name: "quoted local part in Reply-To",
			in:   msg(`From: "x y"@shop.example`, "", "body"),
			edit: FromEdit{Name: "x y via shop", Address: to, ReplyTo: "x y@shop.example"},
			want: msg(`From: "x y via shop" <noreply@relay.example.com>`, `Reply-To: <"x y"@shop.example>`, "", "body"),
		},
		{
			name: "display name only, quoted local part",
			in:   msg(`From: "ceo@victim.example" <"x y"@shop.example>`, "", "body"),
			edit: FromEdit{Address: "x y@shop.example"},
			want: msg(`From: <"x y"@shop.example>`, "", "body"),
		},
		{
			name: "long name is folded between words",
			in:   msg("From: statements@shop.example", "", "body"),
			edit: FromEdit{Name: "Quarterly Statements And Other Important Account Notices via shop", Address: to, ReplyTo: "statements@shop.example"},
			want: msg(`From: "Quarterly Statements And Other Important Account Notices via shop"`, ` <noreply@relay.example.com>`, "Reply-To: <statements@shop.example>", "", "body"),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := mustRead(t, tc.in)
			if err := FromRewrite(&m.Header, tc.edit); err != nil {
				t.Fatal(err)
			}
			diff(t, string(m.Bytes()), tc.want)
		})
	}
}

func TestFromRewriteRefuses(t *testing.T) {
	edit := FromEdit{Name: "x via shop", Address: "noreply@relay.example.com"}
	for _, tc := range []struct{ name, in, reason string }{
		{"missing", msg("Subject: s", "", ""), "missing"},
		{"two fields", msg("From: a@shop.example", "From: b@shop.example", "", ""), "appears 2 times"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := mustRead(t, tc.in)
			before := string(m.Bytes())
			wantFormatError(t, FromRewrite(&m.Header, edit), "From", tc.reason)
			diff(t, string(m.Bytes()), before)
		})
	}
	m := mustRead(t, msg("From: a@shop.example", "", ""))
	for _, bad := range []string{"", "Name <n@relay.example.com>", "not an address", "n\xc3\xb6@relay.example.com"} {
		var fe *FormatError
		if err := FromRewrite(&m.Header, FromEdit{Address: bad}); err == nil || errors.As(err, &fe) {
			t.Errorf("FromRewrite(%q) = %v, want a plain error", bad, err)
		}
	}
}

func TestFormatField(t *testing.T) {
	for _, tc := range []struct{ name, value, want string }{
		{"X", "short", "X: short\r\n"},
		{"X", "", "X: \r\n"},
		{"X", strings.Repeat("a ", 40) + "b", "X:" + strings.Repeat(" a", 38) + "\r\n a a b\r\n"},
		{"X", "trailing ", "X: trailing \r\n"},
	} {
		got, err := formatField(tc.name, tc.value)
		if err != nil || string(got) != tc.want {
			t.Errorf("formatField(%q) = %q, %v; want %q", tc.value, got, err, tc.want)
		}
	}
	if _, err := formatField("X", strings.Repeat("a", 996)); err == nil {
		t.Error("a 999-character line was accepted")
	}
	if _, err := formatField("X", "a\r\nb"); err == nil {
		t.Error("a line break was accepted")
	}
	var h textproto.Header
	if err := prependField(&h, "X", strings.Repeat("a", 995)); err != nil {
		t.Errorf("a 998-character line was refused: %v", err)
	}
}

func TestCheckASCIIControls(t *testing.T) {
	m := mustRead(t, msg("From: a@example.com", "Subject: tab\tis fine", "X-Folded: first", "\tsecond", "", "body \x00 is not checked here"))
	if err := CheckASCII(&m.Header); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ field, line, code string }{
		{"Subject", "Subject: hi\x00From: ceo@victim.com", "0x00"},
		{"To", "To: a@exa\x00mple.org", "0x00"},
		{"Subject", "Subject: esc \x1b[31m", "0x1B"},
		{"X-Del", "X-Del: a\x7fb", "0x7F"},
		{"X-Vt", "X-Vt: a\x0bb", "0x0B"},
	} {
		m := mustRead(t, msg("From: a@example.com", tc.line, "", ""))
		wantFormatError(t, CheckASCII(&m.Header), tc.field, "control character "+tc.code)
	}
}
