package relay

import (
	"runtime/debug"
	"sync/atomic"
	"time"
)

// kdfMemory gives the memory of password KDF runs back to the OS once a
// burst of them is over. An Argon2id run allocates 19 MiB that is garbage
// as soon as it returns; the Go runtime hands freed pages back only
// gradually (the background scavenger), so after a burst of first AUTHs
// an idle relay kept several MiB of dead KDF memory resident, on top of
// its connections. Release runs once, quiet after the last KDF of a burst
// ended, and never while one runs; AUTHs answered from the cache run no
// KDF and never trigger it.
type kdfMemory struct {
	quiet   time.Duration
	release func()

	inFlight atomic.Int32
	pending  atomic.Bool
}

func newKDFMemory() *kdfMemory {
	return &kdfMemory{quiet: time.Second, release: debug.FreeOSMemory}
}

func (m *kdfMemory) start() { m.inFlight.Add(1) }

func (m *kdfMemory) done() {
	if m.inFlight.Add(-1) != 0 || !m.pending.CompareAndSwap(false, true) {
		return
	}
	time.AfterFunc(m.quiet, m.fire)
}

func (m *kdfMemory) fire() {
	if m.inFlight.Load() != 0 {
		// Another burst began: its last run schedules the release.
		m.pending.Store(false)
		if m.inFlight.Load() == 0 && m.pending.CompareAndSwap(false, true) {
			time.AfterFunc(m.quiet, m.fire)
		}
		return
	}
	m.pending.Store(false)
	m.release()
}
