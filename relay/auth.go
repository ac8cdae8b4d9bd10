package relay

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"
	"golang.org/x/sync/singleflight"

	"github.com/sesrelay/sesrelay/config"
)

// SASL mechanisms offered (RFC 4616 PLAIN, and the LOGIN mechanism that
// legacy clients use; go-sasl ships no LOGIN server).
const (
	mechPlain = "PLAIN"
	mechLogin = "LOGIN"
)

// credentialCheck is called by the SASL servers with what the client sent.
type credentialCheck func(identity, username, password string) error

// plainServer implements RFC 4616. Every error it returns is an
// *smtp.SMTPError so go-smtp passes it through unchanged.
type plainServer struct {
	done  bool
	check credentialCheck
}

func (p *plainServer) Next(response []byte) ([]byte, bool, error) {
	if p.done {
		return nil, false, errAuthSyntax
	}
	if response == nil {
		return []byte{}, false, nil
	}
	p.done = true
	parts := bytes.Split(response, []byte{0})
	if len(parts) != 3 {
		return nil, false, errAuthSyntax
	}
	return nil, true, p.check(string(parts[0]), string(parts[1]), string(parts[2]))
}

// loginServer implements the LOGIN mechanism (draft-murchison-sasl-login):
// "Username:" then "Password:" challenges; an initial response is the
// username.
type loginServer struct {
	step     int
	username string
	check    credentialCheck
}

func (l *loginServer) Next(response []byte) ([]byte, bool, error) {
	switch l.step {
	case 0:
		l.step = 1
		if response == nil {
			return []byte("Username:"), false, nil
		}
		fallthrough
	case 1:
		l.username = string(response)
		l.step = 2
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		return nil, true, l.check("", l.username, string(response))
	}
	return nil, false, errAuthSyntax
}

var (
	_ sasl.Server = (*plainServer)(nil)
	_ sasl.Server = (*loginServer)(nil)
)

// authenticator verifies credentials. It caps concurrent KDF runs (an
// Argon2id run holds 19 MiB) and remembers recent successful verifications
// under a keyed hash of username and password, so that applications that
// connect once per message do not pay the KDF each time. The cache key is
// keyed with a per-process random secret and is never logged.
type authenticator struct {
	sem   chan struct{}
	ttl   time.Duration
	now   func() time.Time
	key   [32]byte
	dummy *config.PasswordHash

	mu     sync.Mutex
	cache  map[[32]byte]time.Time
	flight singleflight.Group
	// kdfRuns counts password hash computations (tests).
	kdfRuns atomic.Int64
	kdfMem  *kdfMemory // kdfmemory.go
}

func newAuthenticator(maxConcurrent int, ttl time.Duration, now func() time.Time) *authenticator {
	a := &authenticator{
		sem:    make(chan struct{}, maxConcurrent),
		ttl:    ttl,
		now:    now,
		dummy:  config.DummyHash,
		cache:  map[[32]byte]time.Time{},
		kdfMem: newKDFMemory(),
	}
	_, _ = rand.Read(a.key[:])
	return a
}

func (a *authenticator) cacheKey(snapshot uint64, username, password string) [32]byte {
	m := hmac.New(sha256.New, a.key[:])
	var gen [8]byte
	for i := range gen {
		gen[i] = byte(snapshot >> (8 * i))
	}
	m.Write(gen[:])
	m.Write([]byte(username))
	m.Write([]byte{0})
	m.Write([]byte(password))
	var k [32]byte
	copy(k[:], m.Sum(nil))
	return k
}

// verify reports whether password is right for u (nil u: unknown user; the
// KDF still runs against a dummy hash so both cases take the same time).
// snapshot identifies the configuration generation, so a reload (a
// rotated password) never matches an old cache entry.
func (a *authenticator) verify(ctx context.Context, snapshot uint64, u *config.User, username, password string, dummy *config.PasswordHash) (ok bool, err error) {
	if u != nil && a.cached(snapshot, username, password) {
		return true, nil
	}
	// Concurrent checks of the same credentials (an application opening
	// many connections at once) share one KDF run.
	k := a.cacheKey(snapshot, username, password)
	v, err, _ := a.flight.Do(string(k[:]), func() (any, error) {
		select {
		case a.sem <- struct{}{}:
		case <-ctx.Done():
			return false, ctx.Err()
		}
		defer func() { <-a.sem }()
		if u != nil && a.cached(snapshot, username, password) {
			return true, nil
		}
		h := a.dummy
		if dummy != nil {
			h = dummy
		}
		if u != nil && u.Hash != nil {
			h = u.Hash
		}
		a.kdfRuns.Add(1)
		a.kdfMem.start()
		ok := h.Verify(password) && u != nil
		a.kdfMem.done()
		if ok && a.ttl > 0 {
			a.remember(k)
		}
		return ok, nil
	})
	if err != nil {
		return false, err
	}
	return v.(bool), nil
}

// remember caches a successful verification under k for the TTL.
func (a *authenticator) remember(k [32]byte) {
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.cache) > 10000 {
		for ck, exp := range a.cache {
			if now.After(exp) {
				delete(a.cache, ck)
			}
		}
		if len(a.cache) > 10000 {
			clear(a.cache)
		}
	}
	a.cache[k] = now.Add(a.ttl)
}

// cached reports whether these credentials were verified within the TTL.
func (a *authenticator) cached(snapshot uint64, username, password string) bool {
	if a.ttl <= 0 {
		return false
	}
	k := a.cacheKey(snapshot, username, password)
	a.mu.Lock()
	exp, hit := a.cache[k]
	a.mu.Unlock()
	return hit && a.now().Before(exp)
}

// verifyWithDummy is verify with the snapshot's dummy hash, which has the
// same algorithm and cost as the configured hashes.
func (a *authenticator) verifyWithDummy(ctx context.Context, st *state, u *config.User, username, password string) (bool, error) {
	if u == nil && st.dummy != nil {
		u2 := &config.User{Hash: st.dummy}
		ok, err := a.verify(ctx, st.gen, nil, username, password, u2.Hash)
		return ok, err
	}
	return a.verify(ctx, st.gen, u, username, password, nil)
}

// clear forgets every cached verification (on reload).
func (a *authenticator) clear() {
	a.mu.Lock()
	clear(a.cache)
	a.mu.Unlock()
}
