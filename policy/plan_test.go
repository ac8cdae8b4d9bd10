package policy

import (
	"bufio"
	"net/mail"
	"reflect"
	"strings"
	"testing"

	"github.com/emersion/go-message/textproto"

	"github.com/sesrelay/sesrelay/config"
)

// planConfig is one tenant with every edit the decision carries.
func planConfig(mode string, display string) *config.Config {
	return &config.Config{Tenants: []config.Tenant{{
		Name:         "shop",
		Users:        []config.User{{Username: "shop-app"}},
		Domains:      []string{"shop.example", "*.shop.example"},
		StripHeaders: []string{"X-Originating-IP"},
		HeaderTags:   map[string]string{"X-Campaign": "campaign"},
		Region:       "eu-west-1",
		IdentityARN:  "arn:aws:ses:eu-west-1:123456789012:identity/shop.example",
		SESTenant:    "shop-ses",
		DKIM:         []config.DKIMKey{{Domain: "shop.example", Selector: "s1", Signer: testKey(7)}},
		DisplayName:  display,
		ListUnsubscribe: &config.ListUnsubscribe{
			Mode: mode, URL: "https://u.shop.example/{token}", Mailto: "u@shop.example",
			ListIDHeader: "X-List", Secret: []byte("0123456789abcdef0123456789abcdef"),
		},
	}}}
}

// TestDecisionIsThePlan: the decision carries every edit, so the relay
// needs nothing else from the tenant's configuration.
func TestDecisionIsThePlan(t *testing.T) {
	r, err := Compile(planConfig(config.UnsubAdd, ""))
	if err != nil {
		t.Fatal(err)
	}
	d := r.Tenant("shop").Evaluate(Envelope{}, header(t, "From: a@shop.example\nx-list:  monthly \nX-List: other\nX-Campaign: spring"))
	if d.Reject != nil {
		t.Fatal(d.Reject)
	}
	if want := []string{"X-Originating-IP", "X-Campaign", "X-List", "DKIM-Signature"}; !reflect.DeepEqual(d.Strip, want) {
		t.Errorf("Strip = %q, want %q", d.Strip, want)
	}
	if d.List != "monthly" {
		t.Errorf("List = %q, want the topmost X-List, trimmed", d.List)
	}
	want := Unsubscribe{Action: UnsubscribeAdd, URL: "https://u.shop.example/{token}", Mailto: "u@shop.example", Secret: []byte("0123456789abcdef0123456789abcdef")}
	if !reflect.DeepEqual(d.Unsubscribe, want) {
		t.Errorf("Unsubscribe = %+v, want %+v", d.Unsubscribe, want)
	}
	if want := (SES{Region: "eu-west-1", IdentityARN: "arn:aws:ses:eu-west-1:123456789012:identity/shop.example", Tenant: "shop-ses"}); d.SES != want {
		t.Errorf("SES = %+v, want %+v", d.SES, want)
	}

	// A folded list id is unfolded, as the header writer would read it.
	if d := r.Tenant("shop").Evaluate(Envelope{}, header(t, "From: a@shop.example\nX-List:  spring \n  sale")); d.List != "spring sale" {
		t.Errorf("folded List = %q, want %q", d.List, "spring sale")
	}

	for _, c := range []struct {
		mode, header string
		want         UnsubscribeAction
	}{
		{config.UnsubOff, "From: a@shop.example\nList-Unsubscribe: <https://x>", UnsubscribeKeep},
		{config.UnsubPreserve, "From: a@shop.example", UnsubscribeKeep},
		{config.UnsubPreserve, "From: a@shop.example\nList-Unsubscribe-Post: x", UnsubscribeCheck},
		{config.UnsubAdd, "From: a@shop.example\nlist-unsubscribe: <https://x>", UnsubscribeCheck},
		{config.UnsubRequire, "From: a@shop.example", UnsubscribeRequire},
		{config.UnsubRequire, "From: a@shop.example\nList-Unsubscribe: <https://x>", UnsubscribeRequire},
	} {
		r, err := Compile(planConfig(c.mode, ""))
		if err != nil {
			t.Fatal(err)
		}
		d := r.Tenant("shop").Evaluate(Envelope{}, header(t, c.header))
		if d.Unsubscribe.Action != c.want {
			t.Errorf("mode %s, %q: action %v, want %v", c.mode, c.header, d.Unsubscribe.Action, c.want)
		}
	}
}

// TestDisplayNamePolicy: with strip_addresses, an address of a foreign
// domain leaves the From display name, also in its encoded-word forms;
// keep leaves the name alone (14.16).
func TestDisplayNamePolicy(t *testing.T) {
	for _, c := range []struct {
		display, from string
		want          *FromRewrite
	}{
		{config.DisplayKeep, `"ceo@victim.example" <a@shop.example>`, nil},
		{"", `"ceo@victim.example" <a@shop.example>`, nil},
		{config.DisplayStripAddresses, `"Shop" <a@shop.example>`, nil},
		{config.DisplayStripAddresses, `"sales@shop.example" <a@shop.example>`, nil},
		{config.DisplayStripAddresses, `"ceo@victim.example" <a@shop.example>`, &FromRewrite{
			Cause: RewriteDisplayName, NewFrom: "a@shop.example",
			Original: mail.Address{Name: "ceo@victim.example", Address: "a@shop.example"},
		}},
		{config.DisplayStripAddresses, `=?utf-8?q?CEO_=3Cceo=40victim=2Eexample=3E?= <a@shop.example>`, &FromRewrite{
			Cause: RewriteDisplayName, NewFrom: "a@shop.example", DisplayName: "CEO",
			Original: mail.Address{Name: "CEO <ceo@victim.example>", Address: "a@shop.example"},
		}},
		{config.DisplayStripAddresses, `=?utf-8?b?Y2Vv77ygdmljdGltLmV4YW1wbGU=?= <a@shop.example>`, &FromRewrite{
			Cause: RewriteDisplayName, NewFrom: "a@shop.example",
			Original: mail.Address{Name: "ceo\uff20victim.example", Address: "a@shop.example"},
		}},
	} {
		r, err := Compile(planConfig(config.UnsubOff, c.display))
		if err != nil {
			t.Fatal(err)
		}
		d := r.Tenant("shop").Evaluate(Envelope{}, header(t, "From: "+c.from))
		if d.Reject != nil {
			t.Fatal(d.Reject)
		}
		if !reflect.DeepEqual(d.Rewrite, c.want) {
			t.Errorf("%s, From %s:\nRewrite = %+v\nwant      %+v", c.display, c.from, d.Rewrite, c.want)
		}
	}

	// Under from_policy rewrite the "via" name loses the address too; a
	// name that was only an address falls back to its local part.
	rw := testConfig()
	for i := range rw.Tenants {
		rw.Tenants[i].DisplayName = config.DisplayStripAddresses
	}
	r, err := Compile(rw)
	if err != nil {
		t.Fatal(err)
	}
	for from, want := range map[string]string{
		`"CEO <ceo@victim.example>" <ceo@victim.example>`: "CEO via rw",
		`ceo@victim.example`:                              "ceo via rw",
		`"Jane" <jane@gmail.example>`:                     "Jane via rw",
	} {
		d := r.Tenant("rw").Evaluate(Envelope{}, header(t, "From: "+from))
		if d.Rewrite == nil || d.Rewrite.DisplayName != want || d.Rewrite.Cause != RewriteFromPolicy {
			t.Errorf("From %s: Rewrite = %+v, want display name %q", from, d.Rewrite, want)
		}
	}
}

// TestListFromListID: without the tenant's list_id_header the list is the
// identifier of List-Id (RFC 2919), as the unsubscribe token and the
// suppression lookup use it.
func TestListFromListID(t *testing.T) {
	for _, tc := range []struct{ field, want string }{
		{"List-Id: Monthly news <monthly.example.com>\r\n", "monthly.example.com"},
		{"List-Id: \"A <b>\" <list.example.com>\r\n", "list.example.com"},
		{"List-ID: plain.example.com\r\n", "plain.example.com"},
		{"List-Id: Monthly\r\n <monthly.example.com>\r\n", "monthly.example.com"},
		{"Subject: x\r\n", ""},
	} {
		h, err := textproto.ReadHeader(bufio.NewReader(strings.NewReader(tc.field + "From: a@example.com\r\n\r\n")))
		if err != nil {
			t.Fatal(err)
		}
		if got := listID(topValue(&h, "List-Id")); got != tc.want {
			t.Errorf("%q: got %q, want %q", tc.field, got, tc.want)
		}
	}
}
