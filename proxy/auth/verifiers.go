package auth

import (
	"crypto/sha256"
	"sync"
)

// VerifierCache keeps the SCRAM verifier derived from each plain password.
// Deriving one costs 4,096 PBKDF2 rounds (about a millisecond of CPU), which
// a plain-password userlist would otherwise pay at every login, and in a
// connection storm that is most of the proxy's work. PostgreSQL itself keeps
// one salt per role for as long as the password stands, so reusing it costs
// nothing in strength: each exchange still has fresh nonces.
//
// Entries are keyed by a salted hash of user and password, so a changed
// password simply misses, and a removed one leaves no plaintext behind.
// The cache is bounded; when full, an arbitrary entry makes room.
type VerifierCache struct {
	keySalt []byte
	max     int

	mu      sync.Mutex
	entries map[[sha256.Size]byte]SCRAMVerifier
}

// NewVerifierCache returns a cache of at most size verifiers (at least one).
func NewVerifierCache(size int) *VerifierCache {
	return &VerifierCache{
		keySalt: randomBytes(sha256.Size),
		max:     max(size, 1),
		entries: make(map[[sha256.Size]byte]SCRAMVerifier),
	}
}

// Len reports how many verifiers are cached.
func (c *VerifierCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// verifier returns the verifier for user's plain password, deriving it once.
// A nil cache derives one with a fresh salt at every call.
func (c *VerifierCache) verifier(user, password string) (SCRAMVerifier, error) {
	if c == nil {
		return deriveVerifier(password, randomBytes(saltLen), defaultIterations)
	}
	h := sha256.New()
	h.Write(c.keySalt)
	h.Write([]byte(user))
	h.Write([]byte{0})
	h.Write([]byte(password))
	var key [sha256.Size]byte
	h.Sum(key[:0])

	c.mu.Lock()
	v, ok := c.entries[key]
	c.mu.Unlock()
	if ok {
		return v, nil
	}
	// Derived outside the lock: concurrent first logins may each derive
	// one, and the last stored wins; either verifies the same password.
	v, err := deriveVerifier(password, randomBytes(saltLen), defaultIterations)
	if err != nil {
		return SCRAMVerifier{}, err
	}
	c.mu.Lock()
	if len(c.entries) >= c.max {
		for k := range c.entries {
			delete(c.entries, k)
			break
		}
	}
	c.entries[key] = v
	c.mu.Unlock()
	return v, nil
}
