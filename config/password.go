package config

import (
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/alexedwards/argon2id"
	"golang.org/x/crypto/bcrypt"
)

// PasswordHash is a parsed bcrypt ($2a$/$2b$/$2y$) or Argon2id PHC
// ($argon2id$v=19$...) password hash.
type PasswordHash struct {
	encoded string
	argon   bool
}

// ErrNotAHash is returned for a string that is neither bcrypt nor argon2id.
var ErrNotAHash = errors.New("not a bcrypt or argon2id hash")

// ParsePasswordHash checks the encoding of a stored hash.
func ParsePasswordHash(s string) (*PasswordHash, error) {
	switch {
	case strings.HasPrefix(s, "$argon2id$"):
		params, _, _, err := argon2id.DecodeHash(s)
		if err != nil {
			return nil, ErrNotAHash
		}
		if err := checkArgonFloor(params.Memory, params.Iterations); err != nil {
			return nil, err
		}
		return &PasswordHash{encoded: s, argon: true}, nil
	case strings.HasPrefix(s, "$2a$"), strings.HasPrefix(s, "$2b$"), strings.HasPrefix(s, "$2y$"):
		cost, err := bcrypt.Cost([]byte(s))
		if err != nil {
			return nil, ErrNotAHash
		}
		if cost < 10 {
			return nil, errors.New("bcrypt cost below 10")
		}
		return &PasswordHash{encoded: s}, nil
	}
	return nil, ErrNotAHash
}

// Verify reports whether password matches. It runs the full KDF every time
// and compares in constant time.
func (h *PasswordHash) Verify(password string) bool {
	if h.argon {
		ok, err := argon2id.ComparePasswordAndHash(password, h.encoded)
		return err == nil && ok
	}
	err := bcrypt.CompareHashAndPassword([]byte(h.encoded), []byte(password))
	return err == nil
}

// HashPassword returns an Argon2id PHC string with the OWASP parameters
// (m=19456 KiB, t=2, p=1).
func HashPassword(password string) (string, error) {
	return argon2id.CreateHash(password, &argon2id.Params{
		Memory: 19456, Iterations: 2, Parallelism: 1, SaltLength: 16, KeyLength: 32,
	})
}

// DummyHash is verified against when a username does not exist, so that a
// wrong username costs the same time as a wrong password.
var DummyHash = &PasswordHash{
	// Argon2id, OWASP parameters, of a random password nobody knows.
	encoded: "$argon2id$v=19$m=19456,t=2,p=1$c2VzcmVsYXktZHVtbXk$Wz0d0iVZ1SWwJtKH9H8MZC4sXYEvVn6I5bF0FvQ5ZXk",
	argon:   true,
}

var (
	dummyMu    sync.Mutex
	dummyCache = map[string]*PasswordHash{}
)

// DummyLike returns a hash with the same algorithm and cost parameters as
// h, for a password nobody knows. Verifying against it costs what
// verifying against h costs, so an unknown username is not revealed by
// timing. Results are cached per parameter set.
func DummyLike(h *PasswordHash) *PasswordHash {
	if h == nil {
		return DummyHash
	}
	var key string
	if h.argon {
		p, _, _, err := argon2id.DecodeHash(h.encoded)
		if err != nil {
			return DummyHash
		}
		key = fmt.Sprintf("argon2id:%d:%d:%d:%d", p.Memory, p.Iterations, p.Parallelism, p.KeyLength)
	} else {
		cost, err := bcrypt.Cost([]byte(h.encoded))
		if err != nil {
			return DummyHash
		}
		key = fmt.Sprintf("bcrypt:%d", cost)
	}
	dummyMu.Lock()
	defer dummyMu.Unlock()
	if d, ok := dummyCache[key]; ok {
		return d
	}
	var pw [24]byte
	_, _ = rand.Read(pw[:])
	var d *PasswordHash
	if h.argon {
		p, _, _, _ := argon2id.DecodeHash(h.encoded)
		p.SaltLength = 16
		s, err := argon2id.CreateHash(string(pw[:]), p)
		if err != nil {
			return DummyHash
		}
		d = &PasswordHash{encoded: s, argon: true}
	} else {
		cost, _ := bcrypt.Cost([]byte(h.encoded))
		b, err := bcrypt.GenerateFromPassword(pw[:], cost)
		if err != nil {
			return DummyHash
		}
		d = &PasswordHash{encoded: string(b)}
	}
	dummyCache[key] = d
	return d
}
