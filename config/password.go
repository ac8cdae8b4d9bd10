package config

import (
	"crypto/subtle"
	"errors"
	"strings"

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
		if _, _, _, err := argon2id.DecodeHash(s); err != nil {
			return nil, ErrNotAHash
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

// Equal reports whether two parsed hashes are the same string (constant time).
func (h *PasswordHash) Equal(o *PasswordHash) bool {
	return subtle.ConstantTimeCompare([]byte(h.encoded), []byte(o.encoded)) == 1
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
var DummyHash = func() *PasswordHash {
	s, err := HashPassword("sesrelay-dummy-password-never-matches")
	if err != nil {
		panic(err)
	}
	return &PasswordHash{encoded: s, argon: true}
}()
