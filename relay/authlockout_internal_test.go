package relay

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

func TestAuthLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	a := newAuthLimiter(func() time.Time { return now })
	app := netip.MustParseAddr("192.0.2.2")
	const max, window = 3, time.Minute
	attempt := func(ip netip.Addr, user string, ok bool) (locked bool, why string) {
		tk, locked, why, _ := a.check(ip, user, max, window)
		if locked {
			return true, why
		}
		if ok {
			a.succeed(tk)
		} else {
			a.fail(tk, window)
		}
		return false, ""
	}
	// The application authenticates once: its address is known.
	if locked, _ := attempt(app, "app", true); locked {
		t.Fatal("first login refused")
	}
	// Strangers share max failures for the username, then are refused
	// without a check, whatever their number.
	checked := 0
	for i := 1; i <= 50; i++ {
		bot := netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})
		if locked, why := attempt(bot, "app", false); !locked {
			checked++
		} else if why != "user" {
			t.Fatalf("bot %d refused for %q", i, why)
		}
	}
	if checked != max {
		t.Fatalf("%d password checks from 50 addresses, want %d", checked, max)
	}
	// The known address still works, even after a failure of its own
	// (a stale password), up to its own limit.
	if locked, _ := attempt(app, "app", false); locked {
		t.Fatal("known address refused during the attack")
	}
	if locked, _ := attempt(app, "app", true); locked {
		t.Fatal("known address refused after its own failure")
	}
	for i := 0; i < max; i++ {
		if locked, _ := attempt(app, "app", false); locked {
			t.Fatalf("known address refused after %d failures", i)
		}
	}
	if locked, why := attempt(app, "app", true); !locked || why != "known" {
		t.Fatalf("known address past its own limit: %v %q", locked, why)
	}
	// Attempts in progress count: strangers cannot overrun the budget
	// concurrently.
	var tickets []authTicket
	for i := 0; i < 10; i++ {
		tk, locked, _, _ := a.check(netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), "other", max, window)
		if !locked {
			tickets = append(tickets, tk)
		}
	}
	if len(tickets) != max {
		t.Fatalf("%d concurrent checks allowed, want %d", len(tickets), max)
	}
	for _, tk := range tickets {
		a.abandon(tk)
	}
	// An address failing as a stranger for many usernames is cut off for
	// all of them, except those it is known for.
	nat := netip.MustParseAddr("192.0.2.9")
	if locked, _ := attempt(nat, "natapp", true); locked {
		t.Fatal("nat app login")
	}
	for i := 0; i < max; i++ {
		attempt(nat, fmt.Sprintf("guess%d", i), false)
	}
	if locked, why := attempt(nat, "guess-next", false); !locked || why != "ip" {
		t.Fatalf("spraying address: %v %q", locked, why)
	}
	if locked, _ := attempt(nat, "natapp", true); locked {
		t.Fatal("the application behind the same address was locked out")
	}
	// A quiet window ends the username's lockout.
	now = now.Add(window)
	if locked, _ := attempt(netip.MustParseAddr("198.51.100.200"), "app", false); locked {
		t.Fatal("lockout did not end")
	}
	// IPv6: one /64 is one address.
	v6a, v6b := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::ffff:2")
	for i := 0; i < max; i++ {
		attempt(v6a, fmt.Sprintf("u%d", i), false)
	}
	if locked, why := attempt(v6b, "u9", false); !locked || why != "ip" {
		t.Fatal("another address of the same /64 is not locked")
	}
	// The delay grows and is capped.
	if authDelay(1) != authDelayBase || authDelay(2) != 2*authDelayBase || authDelay(100) != authDelayMax {
		t.Fatal("delay shape")
	}
}

func TestAuthLimiterBounded(t *testing.T) {
	a := newAuthLimiter(time.Now)
	for i := 0; i < authTrackMax+10; i++ {
		ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		tk, locked, _, _ := a.check(ip, fmt.Sprintf("user-%d", i), 10, time.Minute)
		if locked {
			t.Fatalf("attempt %d locked", i)
		}
		if i%2 == 0 {
			a.fail(tk, time.Minute)
		} else {
			a.succeed(tk)
		}
	}
	if len(a.users) > authTrackMax || len(a.ips) > authTrackMax || len(a.known) > authTrackMax {
		t.Fatalf("tracked: %d usernames, %d addresses, %d known", len(a.users), len(a.ips), len(a.known))
	}
}

// TestAuthLimiterBurstWaitsForChecksInProgress: attempts beyond the limit
// that find it held only by checks in progress wait for them. When one of
// those succeeds the address is known and the waiting attempt goes on;
// when they all fail it is refused. A connection pool that opens many
// connections at once from a new address used to get 454 for the excess.
func TestAuthLimiterBurstWaitsForChecksInProgress(t *testing.T) {
	const max, window = 3, time.Minute
	for _, succeed := range []bool{true, false} {
		a := newAuthLimiter(time.Now)
		pool := netip.MustParseAddr("192.0.2.7")
		var tickets []authTicket
		for range max {
			tk, locked, why, _ := a.check(pool, "app", max, window)
			if locked {
				t.Fatalf("attempt within the limit refused (%s)", why)
			}
			tickets = append(tickets, tk)
		}
		type result struct {
			locked bool
			why    string
		}
		done := make(chan result, 1)
		go func() {
			tk, locked, why, _ := a.check(pool, "app", max, window)
			if !locked {
				a.succeed(tk)
			}
			done <- result{locked, why}
		}()
		select {
		case r := <-done:
			t.Fatalf("succeed=%v: the attempt over the limit did not wait for the checks in progress: locked=%v %q", succeed, r.locked, r.why)
		case <-time.After(100 * time.Millisecond):
		}
		for _, tk := range tickets {
			if succeed {
				a.succeed(tk)
			} else {
				a.fail(tk, window)
			}
		}
		select {
		case r := <-done:
			if succeed && r.locked {
				t.Fatalf("after a success from the same address the waiting attempt was refused (%s)", r.why)
			}
			if !succeed && !r.locked {
				t.Fatalf("after %d failures the waiting attempt was let through", max)
			}
		case <-time.After(authPendingWait + time.Second):
			t.Fatalf("succeed=%v: the waiting attempt never ended", succeed)
		}
	}
}
