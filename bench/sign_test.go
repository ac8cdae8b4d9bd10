package main

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"testing"
)

// The floor under scenario 3: one DKIM signature is one private-key
// operation over a SHA-256 digest. go test -run - -bench Sign ./bench
func BenchmarkSignRSA2048(b *testing.B) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	d := sha256.Sum256([]byte("header hash"))
	for b.Loop() {
		if _, err := k.Sign(rand.Reader, d[:], crypto.SHA256); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSignEd25519(b *testing.B) {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	d := sha256.Sum256([]byte("header hash"))
	for b.Loop() {
		ed25519.Sign(k, d[:])
	}
}

// BenchmarkBodyHash8KiB is the body hash every signature needs.
func BenchmarkBodyHash8KiB(b *testing.B) {
	body := newMessage(benchFrom, benchTo, 8192).body
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		sha256.Sum256(body)
	}
}
