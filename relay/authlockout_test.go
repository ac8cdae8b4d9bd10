package relay_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-sasl"
)

// lockoutYAML is hardYAML with the default auth.max_failures (10).
var lockoutYAML = strings.Replace(hardYAML, "max_failures: 3,", "max_failures: 10,", 1)

// TestAuthLockoutKnownAddressKeepsWorking: an attacker who knows the
// username hammers it from 40 addresses. Fewer than 30 passwords are
// checked in all (the rest get 454 without a check), and the application's
// address, which authenticated before, keeps working, even after a
// failure of its own (a stale password during a rotation).
func TestAuthLockoutKnownAddressKeepsWorking(t *testing.T) {
	h := startHard(t, lockoutYAML, hOpts{})
	h.client("127.0.0.2", "billing-app", testPassword)

	checked, refused := 0, 0
	for i := 0; i < 40; i++ {
		c := h.client(fmt.Sprintf("127.0.1.%d", i+1), "", "")
		for j := 0; j < 2; j++ {
			switch code := codeOf(c.Auth(sasl.NewPlainClient("", "billing-app", fmt.Sprintf("guess-%d-%d", i, j)))); code {
			case 535:
				checked++
			case 454:
				refused++
			default:
				t.Fatalf("attacker %d attempt %d: %d", i, j, code)
			}
		}
	}
	t.Logf("80 attempts from 40 addresses: %d checked, %d refused without a check", checked, refused)
	if checked >= 30 {
		t.Fatalf("%d password checks for one username in one lockout window", checked)
	}

	// The application's address: a stale password fails (and is checked),
	// then the right one works, in the same connection and in a new one.
	c := h.client("127.0.0.2", "", "")
	expectCode(t, c.Auth(sasl.NewPlainClient("", "billing-app", "stale-password")), 535, "5.7.8")
	if err := c.Auth(sasl.NewPlainClient("", "billing-app", testPassword)); err != nil {
		t.Fatalf("known address after its own failure, during the attack: %v", err)
	}
	if err := sendMsg(c, "invoices@billing.example.com", []string{"a@example.org"}, simpleMsg); err != nil {
		t.Fatal(err)
	}
	h.client("127.0.0.2", "billing-app", testPassword)

	// A new address, never seen with this username, is a stranger: while
	// the username is under attack, it is refused without a check.
	c = h.client("127.0.0.3", "", "")
	expectCode(t, c.Auth(sasl.NewPlainClient("", "billing-app", testPassword)), 454, "4.7.0")
}

// TestAuthLockoutSharedAddress: auth.max_failures failures from one address (a NAT, or
// a load balancer without client addresses) lock that address out for
// new usernames, but not for an application that authenticated from it
// before.
func TestAuthLockoutSharedAddress(t *testing.T) {
	h := startHard(t, hardYAML, hOpts{}) // auth.max_failures: 3
	h.client("127.0.0.5", "billing-app", testPassword)
	c := h.client("127.0.0.5", "", "")
	for j := 0; j < 3; j++ {
		_ = c.Auth(sasl.NewPlainClient("", fmt.Sprintf("user-%d", j), "guess"))
	}
	// Spraying usernames from there is cut off...
	c = h.client("127.0.0.5", "", "")
	expectCode(t, c.Auth(sasl.NewPlainClient("", "marketing-app", testPassword)), 454, "4.7.0")
	// ...the application that authenticated from there before is not.
	c = h.client("127.0.0.5", "", "")
	if err := c.Auth(sasl.NewPlainClient("", "billing-app", testPassword)); err != nil {
		t.Fatalf("application behind the shared address: %v", err)
	}
}
