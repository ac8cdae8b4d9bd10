package relay

import (
	"sync"
	"time"
)

// deliveryMemory remembers, per message, which recipients SES already
// accepted when a message needs one SES call per recipient. After a
// partial failure the relay answers 4xx; the client retries the same
// message and the relay then sends only to the recipients not yet done,
// so nobody gets it twice and nobody is lost. It is in-process (a restart
// or another replica forgets it), bounded in entries and has a TTL.
type deliveryMemory struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu      sync.Mutex
	entries map[[32]byte]*memoryEntry
}

type memoryEntry struct {
	expires time.Time
	sent    map[string]string // recipient → SES message id
}

func newDeliveryMemory(ttl time.Duration, max int, now func() time.Time) *deliveryMemory {
	return &deliveryMemory{ttl: ttl, max: max, now: now, entries: map[[32]byte]*memoryEntry{}}
}

// get returns a copy of the recipients already sent for key.
func (m *deliveryMemory) get(key [32]byte) map[string]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries[key]
	if !ok || m.now().After(e.expires) {
		return nil
	}
	out := make(map[string]string, len(e.sent))
	for k, v := range e.sent {
		out[k] = v
	}
	return out
}

func (m *deliveryMemory) add(key [32]byte, rcpt, id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	e, ok := m.entries[key]
	if !ok {
		if len(m.entries) >= m.max {
			m.evict(now)
		}
		e = &memoryEntry{sent: map[string]string{}}
		m.entries[key] = e
	}
	e.expires = now.Add(m.ttl)
	e.sent[rcpt] = id
}

// forget drops key (the message is fully delivered: a later identical
// message is a new send, not a retry).
func (m *deliveryMemory) forget(key [32]byte) {
	m.mu.Lock()
	delete(m.entries, key)
	m.mu.Unlock()
}

// evict drops expired entries, then, if still full, the one expiring first.
func (m *deliveryMemory) evict(now time.Time) {
	var oldest [32]byte
	var oldestT time.Time
	for k, e := range m.entries {
		if now.After(e.expires) {
			delete(m.entries, k)
			continue
		}
		if oldestT.IsZero() || e.expires.Before(oldestT) {
			oldest, oldestT = k, e.expires
		}
	}
	if len(m.entries) >= m.max && !oldestT.IsZero() {
		delete(m.entries, oldest)
	}
}
