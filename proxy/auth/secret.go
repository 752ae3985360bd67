package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"strconv"
	"strings"
)

// Kind says which form of a user's password the proxy holds.
type Kind int

// The secret kinds. KindNone means no password is known: the user can only
// log in under trust.
const (
	KindNone Kind = iota
	KindPlain
	KindMD5
	KindSCRAM
)

// String names the kind; it never reveals a secret.
func (k Kind) String() string {
	switch k {
	case KindNone:
		return "none"
	case KindPlain:
		return "plain"
	case KindMD5:
		return "md5"
	case KindSCRAM:
		return "scram-sha-256"
	default:
		return "Kind(" + strconv.Itoa(int(k)) + ")"
	}
}

// Secret is what the proxy knows of a user's password.
type Secret struct {
	Kind  Kind
	Plain string        // KindPlain
	MD5   string        // KindMD5: "md5" + 32 hex of md5(password+username)
	SCRAM SCRAMVerifier // KindSCRAM
}

// SCRAMVerifier is a SCRAM-SHA-256 verifier as PostgreSQL stores it.
type SCRAMVerifier struct {
	Iterations int
	Salt       []byte
	StoredKey  []byte
	ServerKey  []byte
}

const (
	scramPrefix  = "SCRAM-SHA-256$"
	md5Prefix    = "md5"
	md5SecretLen = len(md5Prefix) + 32
)

// ParseSecret classifies a stored password the way PostgreSQL does:
// "SCRAM-SHA-256$<iter>:<salt b64>$<storedkey b64>:<serverkey b64>" is a
// SCRAM verifier, "md5" followed by 32 lowercase hex digits is an MD5 hash,
// and anything else, including a malformed verifier, is a plain password.
// The empty string is KindNone, so that an empty userlist entry can never be
// matched by an empty password.
func ParseSecret(s string) Secret {
	if s == "" {
		return Secret{Kind: KindNone}
	}
	if v, ok := parseSCRAMVerifier(s); ok {
		return Secret{Kind: KindSCRAM, SCRAM: v}
	}
	if isMD5Secret(s) {
		return Secret{Kind: KindMD5, MD5: s}
	}
	return Secret{Kind: KindPlain, Plain: s}
}

func parseSCRAMVerifier(s string) (SCRAMVerifier, bool) {
	rest, ok := strings.CutPrefix(s, scramPrefix)
	if !ok {
		return SCRAMVerifier{}, false
	}
	factors, keys, ok := strings.Cut(rest, "$")
	if !ok {
		return SCRAMVerifier{}, false
	}
	iterStr, saltStr, ok := strings.Cut(factors, ":")
	if !ok {
		return SCRAMVerifier{}, false
	}
	storedStr, serverStr, ok := strings.Cut(keys, ":")
	if !ok {
		return SCRAMVerifier{}, false
	}
	iter, err := strconv.Atoi(iterStr)
	if err != nil || iter < 1 {
		return SCRAMVerifier{}, false
	}
	salt, err := base64.StdEncoding.DecodeString(saltStr)
	if err != nil || len(salt) == 0 {
		return SCRAMVerifier{}, false
	}
	stored, err := base64.StdEncoding.DecodeString(storedStr)
	if err != nil || len(stored) != sha256.Size {
		return SCRAMVerifier{}, false
	}
	server, err := base64.StdEncoding.DecodeString(serverStr)
	if err != nil || len(server) != sha256.Size {
		return SCRAMVerifier{}, false
	}
	return SCRAMVerifier{Iterations: iter, Salt: salt, StoredKey: stored, ServerKey: server}, true
}

// isMD5Secret accepts lowercase hex only, as PostgreSQL does: "md5" plus
// uppercase hex is a (strange) plain password there too.
func isMD5Secret(s string) bool {
	if len(s) != md5SecretLen || !strings.HasPrefix(s, md5Prefix) {
		return false
	}
	for i := len(md5Prefix); i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// String is redacted so that a Secret can be logged, printed with %v, or
// end up inside a printed UserList without leaking anything.
func (s Secret) String() string {
	if s.Kind == KindNone {
		return "none"
	}
	return s.Kind.String() + "(***)"
}

// GoString keeps %#v redacted as well.
func (s Secret) GoString() string { return "auth.Secret{" + s.String() + "}" }

// String is redacted: StoredKey and ServerKey are enough to impersonate the
// server and to mount an offline dictionary attack.
func (v SCRAMVerifier) String() string {
	return "scram-sha-256(iterations=" + strconv.Itoa(v.Iterations) + ",***)"
}

// GoString keeps %#v redacted as well.
func (v SCRAMVerifier) GoString() string { return "auth.SCRAMVerifier{" + v.String() + "}" }

// MockSecret returns the made-up SCRAM verifier Authenticate should use for
// an unknown user, derived from a server-private key. Passing it with
// found=false makes the salt shown to a client stable across attempts, as a
// real user's is; with a fresh random verifier each time, a client could
// tell an unknown user from a known one by connecting twice. key must stay
// private to the process (for example random bytes generated at start-up).
func MockSecret(key []byte, user string) Secret {
	derive := func(label string) []byte {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(label))
		m.Write([]byte{0})
		m.Write([]byte(user))
		return m.Sum(nil)
	}
	return Secret{Kind: KindSCRAM, SCRAM: SCRAMVerifier{
		Iterations: defaultIterations,
		Salt:       derive("salt")[:saltLen],
		StoredKey:  derive("stored key"),
		ServerKey:  derive("server key"),
	}}
}

// Verify reports whether password is the user's password, in constant time
// with respect to the secret. A KindNone secret matches nothing.
func (s Secret) Verify(user, password string) bool {
	switch s.Kind {
	case KindPlain:
		// Comparing digests keeps the comparison independent of the length
		// of the stored password.
		a, b := sha256.Sum256([]byte(password)), sha256.Sum256([]byte(s.Plain))
		return subtle.ConstantTimeCompare(a[:], b[:]) == 1
	case KindMD5:
		return subtle.ConstantTimeCompare([]byte(md5Secret(password, user)), []byte(s.MD5)) == 1
	case KindSCRAM:
		v, err := deriveVerifier(password, s.SCRAM.Salt, s.SCRAM.Iterations)
		if err != nil {
			return false
		}
		// Both keys, combined without short-circuit, so timing says nothing
		// about which one differed.
		ok := subtle.ConstantTimeCompare(v.StoredKey, s.SCRAM.StoredKey) &
			subtle.ConstantTimeCompare(v.ServerKey, s.SCRAM.ServerKey)
		return ok == 1
	default:
		return false
	}
}
