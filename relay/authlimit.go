package relay

import (
	"net/netip"
	"sync"
	"time"
)

// authLimiter rate limits failed AUTH per remote address and per username
// (auth.max_failures within auth.lockout), in front of the KDF.
//
//   - A remote address with max_failures failures, the last one less than
//     lockout ago, is locked out: its attempts get 454 4.7.0 without running
//     the KDF (nor the success cache: a locked-out client learns nothing
//     about its guesses), and each refused attempt renews the lockout.
//   - A username with max_failures failures (from any address) is under
//     attack: attempts for it from an address that has failed itself
//     recently are refused the same way. An address with no recent failure
//     is still verified, so the application that owns the credential keeps
//     working from its own addresses while a bot hammers the username from
//     others, and a bot spread over many addresses gets one guess per
//     address per lockout period for that username. Unknown usernames are
//     tracked the same way, so a lockout does not tell which names exist.
//   - Failures and refusals are slowed by a delay that doubles with the
//     address's strikes (failures and refusals), from authDelayBase up to
//     authDelayMax, before the reply.
//
// IPv6 addresses are counted per /64 (what one host usually has).
// Memory is bounded: past authTrackMax entries per map, expired ones are
// dropped, and if that is not enough the username map is cleared (the
// address limit still holds).
type authLimiter struct {
	now func() time.Time

	mu    sync.Mutex
	ips   map[netip.Prefix]*authRecord
	users map[string]*authRecord
}

type authRecord struct {
	failures int       // failed verifications
	strikes  int       // failures and refused attempts (for the delay)
	last     time.Time // last failure or refusal
}

const (
	authDelayBase = 25 * time.Millisecond
	authDelayMax  = time.Second
	authTrackMax  = 50000
)

func newAuthLimiter(now func() time.Time) *authLimiter {
	return &authLimiter{now: now, ips: map[netip.Prefix]*authRecord{}, users: map[string]*authRecord{}}
}

func ipKey(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p
	}
	return netip.PrefixFrom(ip, ip.BitLen())
}

func authDelay(strikes int) time.Duration {
	if strikes <= 0 {
		return 0
	}
	d := authDelayBase
	for i := 1; i < strikes && d < authDelayMax; i++ {
		d *= 2
	}
	if d > authDelayMax {
		d = authDelayMax
	}
	return d
}

// live returns r if it is still within the lockout period.
func live(r *authRecord, now time.Time, window time.Duration) *authRecord {
	if r == nil || now.Sub(r.last) >= window {
		return nil
	}
	return r
}

// check runs before a verification. locked: refuse without verifying,
// after delay. reason is "ip" or "user".
func (a *authLimiter) check(ip netip.Addr, username string, maxFailures int, window time.Duration) (locked bool, reason string, delay time.Duration) {
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	ipr := live(a.ips[ipKey(ip)], now, window)
	switch {
	case ipr != nil && ipr.failures >= maxFailures:
		reason = "ip"
	case ipr != nil && ipr.failures > 0:
		if ur := live(a.users[username], now, window); ur != nil && ur.failures >= maxFailures {
			ur.last = now
			reason = "user"
		}
	}
	if reason == "" {
		return false, "", 0
	}
	ipr.strikes++
	ipr.last = now
	return true, reason, authDelay(ipr.strikes)
}

// fail records a failed verification and returns the delay before the
// reply.
func (a *authLimiter) fail(ip netip.Addr, username string, window time.Duration) time.Duration {
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	k := ipKey(ip)
	ipr := live(a.ips[k], now, window)
	if ipr == nil {
		a.prune(now, window)
		ipr = &authRecord{}
		a.ips[k] = ipr
	}
	ipr.failures++
	ipr.strikes++
	ipr.last = now
	ur := live(a.users[username], now, window)
	if ur == nil {
		if len(a.users) >= authTrackMax {
			a.prune(now, window)
		}
		if len(a.users) >= authTrackMax {
			clear(a.users)
		}
		ur = &authRecord{}
		a.users[username] = ur
	}
	ur.failures++
	ur.strikes++
	ur.last = now
	return authDelay(ipr.strikes)
}

// prune drops expired records when a map is full.
func (a *authLimiter) prune(now time.Time, window time.Duration) {
	if len(a.ips) >= authTrackMax {
		for k, r := range a.ips {
			if live(r, now, window) == nil {
				delete(a.ips, k)
			}
		}
		if len(a.ips) >= authTrackMax {
			clear(a.ips)
		}
	}
	if len(a.users) >= authTrackMax {
		for k, r := range a.users {
			if live(r, now, window) == nil {
				delete(a.users, k)
			}
		}
	}
}

// tenantConns counts authenticated sessions per tenant
// (tenants[].max_connections).
type tenantConns struct {
	mu   sync.Mutex
	n    map[string]int
	held map[*Session]string
}

// acquire counts sess for tenant unless the tenant already has max (0 =
// no limit: counted all the same, so a reload that sets a limit sees the
// sessions already open).
func (t *tenantConns) acquire(sess *Session, tenant string, max int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n == nil {
		t.n, t.held = map[string]int{}, map[*Session]string{}
	}
	if _, ok := t.held[sess]; ok {
		return true
	}
	if max > 0 && t.n[tenant] >= max {
		return false
	}
	t.n[tenant]++
	t.held[sess] = tenant
	return true
}

// release uncounts sess (a no-op for a session that was not counted).
func (t *tenantConns) release(sess *Session) {
	t.mu.Lock()
	defer t.mu.Unlock()
	tenant, ok := t.held[sess]
	if !ok {
		return
	}
	delete(t.held, sess)
	if t.n[tenant]--; t.n[tenant] <= 0 {
		delete(t.n, tenant)
	}
}

func (t *tenantConns) count(tenant string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.n[tenant]
}
