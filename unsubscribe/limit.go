package unsubscribe

import (
	"math"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiter is a token bucket per client address. IPv6 clients are counted
// per /64 (one host usually holds a whole /64). The map is bounded: past
// maxClients, buckets that have refilled (as good as new) are dropped, and
// if that is not enough, all of them.
type limiter struct {
	rate  rate.Limit
	burst int

	mu      sync.Mutex
	clients map[netip.Addr]*bucket
}

type bucket struct {
	lim  *rate.Limiter
	last time.Time
}

const maxClients = 100000

func newLimiter(perSecond float64, burst int) *limiter {
	return &limiter{rate: rate.Limit(perSecond), burst: burst, clients: map[netip.Addr]*bucket{}}
}

func clientKey(a netip.Addr) netip.Addr {
	if a.Is6() && !a.Is4In6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// allow takes one token of a's bucket at now.
func (l *limiter) allow(a netip.Addr, now time.Time) bool {
	k := clientKey(a)
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.clients[k]
	if b == nil {
		if len(l.clients) >= maxClients {
			l.sweep(now)
		}
		b = &bucket{lim: rate.NewLimiter(l.rate, l.burst)}
		l.clients[k] = b
	}
	b.last = now
	return b.lim.AllowN(now, 1)
}

// refill is how long an unused bucket takes to be full again.
func (l *limiter) refill() time.Duration {
	return time.Duration(float64(l.burst) / float64(l.rate) * float64(time.Second))
}

func (l *limiter) sweep(now time.Time) {
	full := l.refill()
	for k, b := range l.clients {
		if now.Sub(b.last) >= full {
			delete(l.clients, k)
		}
	}
	if len(l.clients) >= maxClients {
		clear(l.clients)
	}
}

// retryAfter is the Retry-After of a refused request, in whole seconds.
func (l *limiter) retryAfter() int {
	return int(math.Max(1, math.Ceil(1/float64(l.rate))))
}
