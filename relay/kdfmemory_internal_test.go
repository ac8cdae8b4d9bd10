package relay

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A burst of KDF runs releases memory once, after the last run, never
// while one runs.
func TestKDFMemoryReleasedOnceAfterABurst(t *testing.T) {
	var released atomic.Int32
	var m *kdfMemory
	m = &kdfMemory{quiet: 50 * time.Millisecond, release: func() {
		if m.inFlight.Load() != 0 {
			t.Error("released while a KDF runs")
		}
		released.Add(1)
	}}
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.start()
			time.Sleep(time.Duration(i%5) * 10 * time.Millisecond)
			m.done()
		}()
	}
	wg.Wait()
	waitFor(t, func() bool { return released.Load() >= 1 })
	time.Sleep(3 * m.quiet) // no second release follows
	if n := released.Load(); n != 1 {
		t.Fatalf("released %d times after one burst, want 1", n)
	}
	// A run that outlasts the quiet period holds the release back.
	m.start()
	m.done()
	m.start()
	time.Sleep(150 * time.Millisecond)
	if n := released.Load(); n != 1 {
		t.Fatalf("released during a KDF run (%d)", n)
	}
	m.done()
	waitFor(t, func() bool { return released.Load() >= 2 })
	time.Sleep(3 * m.quiet)
	if n := released.Load(); n != 2 {
		t.Fatalf("released %d times after the second burst, want 2", n)
	}
}

// An AUTH that runs the KDF ends with the release scheduled.
func TestAuthenticatorReleasesKDFMemory(t *testing.T) {
	a := newAuthenticator(2, 0, time.Now)
	done := make(chan struct{}, 4)
	a.kdfMem.quiet = 10 * time.Millisecond
	a.kdfMem.release = func() { done <- struct{}{} }
	if ok, err := a.verify(t.Context(), 1, nil, "nobody", "pw", nil); ok || err != nil {
		t.Fatalf("verify = %v, %v", ok, err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("no release after a KDF run")
	}
}
