package relay

import (
	"sync"
)

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
