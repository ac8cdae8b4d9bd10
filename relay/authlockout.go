package relay

import (
	"net/netip"
	"slices"
	"sync"
	"time"
)

// authLimiter decides, before the KDF, whether an AUTH attempt may have
// its password checked (auth.max_failures within auth.lockout). The model
// (docs/configuration.md, AUTH protection):
//
//   - A known address for a username is one that authenticated
//     successfully as that username (IPv6: its /64), within knownTTL.
//     Its attempts for that username are limited only by its own
//     failures: max_failures of them within the lockout window. A
//     stale password during a rotation fails there and the right one then
//     works; an attacker elsewhere cannot lock it out, whatever it does.
//   - Every other address is a stranger to that username. Strangers
//     share one budget per username: once max_failures checks of the
//     username by strangers failed within the window, strangers are
//     refused for it without a check until the window has passed since
//     the last failure. Attempts in progress count against the budget, so
//     concurrent attempts cannot overrun it. From any number of
//     addresses, a brute force gets at most max_failures password checks
//     per username per window.
//   - An address with max_failures failures as a stranger (any usernames)
//     is refused as a stranger for every username: one client spraying
//     many usernames is cut off. Its known usernames still work, so an
//     application behind a NAT or a load balancer without client
//     addresses is not locked out by a neighbour's failures.
//   - Refusals and failures are slowed by a delay that doubles with the
//     address's strikes (failures and refusals), from authDelayBase up to
//     authDelayMax, before the reply.
//
// Unknown usernames are tracked like known ones, so a refusal does not
// tell which usernames exist. Memory is bounded: past authTrackMax
// entries per map, expired ones are dropped, then the quarter idle longest.
type authLimiter struct {
	now func() time.Time

	mu    sync.Mutex
	ips   map[netip.Prefix]*authRecord // stranger failures per address
	users map[string]*authRecord       // stranger failures per username
	pairs map[authPair]*authRecord     // failures of a known address per username
	known map[authPair]time.Time       // last success of an address as a username
}

type authPair struct {
	user string
	ip   netip.Prefix
}

type authRecord struct {
	failures int       // failed checks within the window
	pending  int       // checks in progress
	strikes  int       // failures and refused attempts (for the delay)
	last     time.Time // last failure or refusal
}

// authTicket is one attempt allowed to check its password; the caller
// ends it with exactly one of fail, succeed or abandon.
type authTicket struct {
	pair  authPair
	known bool
}

const (
	authDelayBase = 25 * time.Millisecond
	authDelayMax  = time.Second
	authTrackMax  = 50000
	// knownTTL is how long a successful AUTH makes its address known for
	// that username (renewed by every success).
	knownTTL = 30 * 24 * time.Hour
	// authPendingWait bounds how long an attempt waits for checks in
	// progress that hold the rest of a limit; authPendingPoll is how often
	// it looks.
	authPendingWait = 5 * time.Second
	authPendingPoll = 10 * time.Millisecond
)

func newAuthLimiter(now func() time.Time) *authLimiter {
	return &authLimiter{now: now, ips: map[netip.Prefix]*authRecord{}, users: map[string]*authRecord{},
		pairs: map[authPair]*authRecord{}, known: map[authPair]time.Time{}}
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
	return min(d, authDelayMax)
}

// expired reports whether r holds nothing: no check in progress and no
// failure within the window.
func expired(r *authRecord, now time.Time, window time.Duration) bool {
	return r.pending == 0 && now.Sub(r.last) >= window
}

// record returns m[k], reset if its window has passed, created if absent.
func record[K comparable](m map[K]*authRecord, k K, now time.Time, window time.Duration) *authRecord {
	r := m[k]
	if r == nil {
		if len(m) >= authTrackMax {
			prune(m, now, window)
		}
		r = &authRecord{}
		m[k] = r
	} else if now.Sub(r.last) >= window {
		r.failures, r.strikes = 0, 0
	}
	return r
}

// prune drops expired records of a full map; if that is not enough, the
// quarter idle the longest.
func prune[K comparable](m map[K]*authRecord, now time.Time, window time.Duration) {
	for k, r := range m {
		if expired(r, now, window) {
			delete(m, k)
		}
	}
	if len(m) < authTrackMax {
		return
	}
	times := make([]time.Time, 0, len(m))
	for _, r := range m {
		times = append(times, r.last)
	}
	cut := quantile(times, 4)
	for k, r := range m {
		if r.pending == 0 && !r.last.After(cut) {
			delete(m, k)
		}
	}
}

// quantile returns the time below which about 1/n of ts lie.
func quantile(ts []time.Time, n int) time.Time {
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	return ts[len(ts)/n]
}

// check runs before a verification. locked: refuse without verifying,
// after delay; reason is "known" (a known address at its own limit),
// "ip" (a stranger address at its limit) or "user" (the username's
// stranger budget is spent). Otherwise the attempt holds a ticket.
//
// Checks in progress count against the limit (so parallel guesses cannot
// overrun it), but they are not failures: an attempt that finds the limit
// reached only by checks still in progress waits for them (up to
// authPendingWait) instead of being refused. A burst of connections that
// all authenticate at once (a connection pool starting) gets through: the
// first success makes the address known, and the others follow.
func (a *authLimiter) check(ip netip.Addr, username string, maxFailures int, window time.Duration) (t authTicket, locked bool, reason string, delay time.Duration) {
	deadline := time.Now().Add(authPendingWait)
	for {
		var busy bool
		t, locked, reason, delay, busy = a.checkOnce(ip, username, maxFailures, window, time.Now().After(deadline))
		if !busy {
			return t, locked, reason, delay
		}
		time.Sleep(authPendingPoll)
	}
}

// checkOnce is one look at the limits. busy: the limit is reached only
// by checks in progress, and final is false: the caller waits and looks
// again.
func (a *authLimiter) checkOnce(ip netip.Addr, username string, maxFailures int, window time.Duration, final bool) (t authTicket, locked bool, reason string, delay time.Duration, busy bool) {
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	p := authPair{username, ipKey(ip)}
	t = authTicket{pair: p}
	if last, ok := a.known[p]; ok && now.Sub(last) < knownTTL {
		t.known = true
		pr := record(a.pairs, p, now, window)
		if pr.failures+pr.pending >= maxFailures {
			if pr.failures < maxFailures && !final {
				return t, false, "", 0, true
			}
			pr.strikes++
			pr.last = now
			return t, true, "known", authDelay(pr.strikes), false
		}
		pr.pending++
		return t, false, "", 0, false
	}
	ipr := record(a.ips, p.ip, now, window)
	ur := record(a.users, username, now, window)
	switch {
	case ipr.failures >= maxFailures:
		reason = "ip"
	case ur.failures+ur.pending >= maxFailures:
		if ur.failures < maxFailures && !final {
			return t, false, "", 0, true
		}
		reason = "user"
	}
	if reason != "" {
		ipr.strikes++
		ipr.last = now
		return t, true, reason, authDelay(ipr.strikes), false
	}
	ipr.pending++
	ur.pending++
	return t, false, "", 0, false
}

// fail records a failed verification and returns the delay before the
// reply.
func (a *authLimiter) fail(t authTicket, window time.Duration) time.Duration {
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if t.known {
		pr := record(a.pairs, t.pair, now, window)
		pr.pending = max(pr.pending-1, 0)
		pr.failures++
		pr.strikes++
		pr.last = now
		return authDelay(pr.strikes)
	}
	ur := record(a.users, t.pair.user, now, window)
	ur.pending = max(ur.pending-1, 0)
	ur.failures++
	ur.strikes++
	ur.last = now
	ipr := record(a.ips, t.pair.ip, now, window)
	ipr.pending = max(ipr.pending-1, 0)
	ipr.failures++
	ipr.strikes++
	ipr.last = now
	return authDelay(ipr.strikes)
}

// succeed records a successful verification: the address becomes (or
// stays) known for the username, and its own failures are forgotten. It
// does not reset the stranger counts (a tenant could otherwise reset an
// address's count between guesses at another tenant's password).
func (a *authLimiter) succeed(t authTicket) {
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.release(t)
	delete(a.pairs, t.pair)
	if _, ok := a.known[t.pair]; !ok && len(a.known) >= authTrackMax {
		a.pruneKnown(now)
	}
	a.known[t.pair] = now
}

// abandon ends an attempt whose password was not checked (throttled).
func (a *authLimiter) abandon(t authTicket) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.release(t)
}

func (a *authLimiter) release(t authTicket) {
	var rs []*authRecord
	if t.known {
		rs = append(rs, a.pairs[t.pair])
	} else {
		rs = append(rs, a.users[t.pair.user], a.ips[t.pair.ip])
	}
	for _, r := range rs {
		if r != nil && r.pending > 0 {
			r.pending--
		}
	}
}

// pruneKnown drops expired known addresses, then, if needed, the quarter
// used the longest ago.
func (a *authLimiter) pruneKnown(now time.Time) {
	for k, last := range a.known {
		if now.Sub(last) >= knownTTL {
			delete(a.known, k)
		}
	}
	if len(a.known) < authTrackMax {
		return
	}
	times := make([]time.Time, 0, len(a.known))
	for _, last := range a.known {
		times = append(times, last)
	}
	cut := quantile(times, 4)
	for k, last := range a.known {
		if !last.After(cut) {
			delete(a.known, k)
		}
	}
}
