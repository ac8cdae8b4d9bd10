package relay

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sesrelay/sesrelay/config"
)

// TestConcurrentAuthSharesKDF: many simultaneous logins with the same
// credentials run the KDF once; a wrong password is never cached.
func TestConcurrentAuthSharesKDF(t *testing.T) {
	h, err := config.ParsePasswordHash("$2a$10$fLk/pjHAlbeiM/xrxs7rM.c4LTB14MuTZ6tjapQ/.k4ypkOY1Q3IC")
	if err != nil {
		t.Fatal(err)
	}
	u := &config.User{Username: "demo", Hash: h}
	a := newAuthenticator(16, time.Minute, time.Now)
	var oks atomic.Int64
	var wg sync.WaitGroup
	release := make(chan struct{})
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-release
			if ok, err := a.verify(context.Background(), 1, u, "demo", "demo-password", nil); err == nil && ok {
				oks.Add(1)
			}
		}()
	}
	close(release)
	wg.Wait()
	if oks.Load() != 16 {
		t.Fatalf("%d of 16 verified", oks.Load())
	}
	if n := a.kdfRuns.Load(); n != 1 {
		t.Fatalf("16 concurrent logins ran the KDF %d times, want 1", n)
	}
	if ok, _ := a.verify(context.Background(), 1, u, "demo", "wrong", nil); ok {
		t.Fatal("wrong password accepted")
	}
	if a.cached(1, "demo", "wrong") {
		t.Fatal("a failure was cached")
	}
	if !a.cached(1, "demo", "demo-password") || a.cached(2, "demo", "demo-password") {
		t.Fatal("cache must be per configuration generation")
	}
}
