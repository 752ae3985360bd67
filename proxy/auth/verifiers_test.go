package auth

import (
	"bytes"
	"testing"
)

// A plain password's verifier is derived once: later logins are offered the
// same salt and still succeed, and a changed password or another user gets
// its own.
func TestVerifierCacheReusedAcrossLogins(t *testing.T) {
	cache := NewVerifierCache(8)
	login := func(user, password string) []byte {
		t.Helper()
		res, err, out := runCached(t, MethodSCRAM, user, ParseSecret(password), true, cache, passwordClient(user, password, ""))
		if err != nil || out.err != nil {
			t.Fatalf("login %s: %v / client %v", user, err, out.err)
		}
		if res.Method != MethodSCRAM || res.ClientKey == nil {
			t.Fatalf("login %s: %v", user, res)
		}
		salt, iter := out.scramFactors(t)
		if iter != defaultIterations || len(salt) != saltLen {
			t.Fatalf("verifier unlike PostgreSQL's default: %d iterations, %d-byte salt", iter, len(salt))
		}
		return salt
	}
	first := login("alice", "s3cret")
	if again := login("alice", "s3cret"); !bytes.Equal(first, again) {
		t.Fatal("second login derived a new verifier")
	}
	if changed := login("alice", "n3w"); bytes.Equal(first, changed) {
		t.Fatal("changed password reused the old verifier")
	}
	if other := login("bob", "s3cret"); bytes.Equal(first, other) {
		t.Fatal("another user with the same password shares the verifier")
	}
	if n := cache.Len(); n != 3 {
		t.Fatalf("cache holds %d verifiers, want 3", n)
	}

	// A wrong password is still refused with the cached verifier.
	_, err, _ := runCached(t, MethodSCRAM, "alice", ParseSecret("s3cret"), true, cache, passwordClient("alice", "wrong", ""))
	wantAuthError(t, err, CodeInvalidPassword)
}

func TestVerifierCacheBounded(t *testing.T) {
	cache := NewVerifierCache(2)
	for _, pw := range []string{"a", "b", "c", "d"} {
		if _, err := cache.verifier("u", pw); err != nil {
			t.Fatal(err)
		}
	}
	if n := cache.Len(); n != 2 {
		t.Fatalf("cache holds %d verifiers, want its bound 2", n)
	}
}

// Without a cache every login gets a fresh salt, as before.
func TestVerifierNilCacheFresh(t *testing.T) {
	var cache *VerifierCache
	a, err := cache.verifier("u", "pw")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := cache.verifier("u", "pw")
	if bytes.Equal(a.Salt, b.Salt) {
		t.Fatal("nil cache reused a salt")
	}
}
