package auth

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"github.com/xdg-go/scram"
)

func TestParseSecret(t *testing.T) {
	md5s := testMD5Secret(testPassword, testUser)
	scramS := testSCRAMString(t, testPassword)
	if s := ParseSecret(md5s); s.Kind != KindMD5 || s.MD5 != md5s {
		t.Fatalf("md5: %v", s.Kind)
	}
	s := ParseSecret(scramS)
	if s.Kind != KindSCRAM || s.SCRAM.Iterations != 4096 || len(s.SCRAM.Salt) != 16 ||
		len(s.SCRAM.StoredKey) != 32 || len(s.SCRAM.ServerKey) != 32 {
		t.Fatalf("scram: %v %d", s.Kind, s.SCRAM.Iterations)
	}
	parts := strings.FieldsFunc(scramS, func(r rune) bool { return r == '$' || r == ':' })
	if got := base64.StdEncoding.EncodeToString(s.SCRAM.Salt); got != parts[2] {
		t.Fatalf("salt %s, want %s", got, parts[2])
	}
	if s := ParseSecret(""); s.Kind != KindNone {
		t.Fatalf("empty: %v", s.Kind)
	}
	// Anything not a well-formed hash is a plain password, as in PostgreSQL.
	for _, p := range []string{
		testPassword,
		"md5",
		strings.ToUpper(md5s[3:]),
		"md5" + strings.ToUpper(md5s[3:]),
		md5s + "0",
		md5s[:34] + "g",
		"SCRAM-SHA-256$",
		"SCRAM-SHA-256$4096:c2FsdA==$AAAA:AAAA",
		strings.Replace(scramS, "4096", "0", 1),
		strings.Replace(scramS, "4096", "x", 1),
		strings.Replace(scramS, ":", "!", 1),
		strings.Replace(scramS, "SCRAM-SHA-256", "SCRAM-SHA-1", 1),
		scramS[:len(scramS)-4],
	} {
		if s := ParseSecret(p); s.Kind != KindPlain || s.Plain != p {
			t.Errorf("%q: kind %v, want plain", p, s.Kind)
		}
	}
}

func TestSecretStringRedacted(t *testing.T) {
	secrets := testSecrets(t)
	res := Result{Method: MethodSCRAM, Password: testPassword, ClientKey: []byte("client-key-bytes")}
	for _, sc := range secrets {
		sensitive := []string{testPassword, sc.raw, sc.raw[3:]}
		if sc.secret.Kind == KindSCRAM {
			v := sc.secret.SCRAM
			for _, b := range [][]byte{v.StoredKey, v.ServerKey} {
				sensitive = append(sensitive, base64.StdEncoding.EncodeToString(b), fmt.Sprintf("%x", b), fmt.Sprint(b))
			}
		}
		list := UserList{testUser: sc.secret}
		outputs := []string{
			sc.secret.String(),
			fmt.Sprintf("%v|%+v|%#v|%s", sc.secret, sc.secret, sc.secret, sc.secret),
			fmt.Sprintf("%v|%+v|%#v", sc.secret.SCRAM, sc.secret.SCRAM, sc.secret.SCRAM),
			fmt.Sprintf("%v|%+v|%#v", list, list, list),
			fmt.Sprintf("%v|%+v|%#v", res, res, &res),
		}
		for _, out := range outputs {
			for _, s := range append(sensitive, "client-key-bytes", fmt.Sprint([]byte("client-key-bytes"))) {
				if strings.Contains(out, s) {
					t.Fatalf("%s: %q contains a secret", sc.name, out)
				}
			}
		}
		if !strings.Contains(sc.secret.String(), sc.secret.Kind.String()) {
			t.Errorf("String() %q does not name the kind", sc.secret.String())
		}
	}
	if got := (Secret{}).String(); got != "none" {
		t.Errorf("none: %q", got)
	}
}

func TestSecretVerify(t *testing.T) {
	for _, sc := range testSecrets(t) {
		if !sc.secret.Verify(testUser, testPassword) {
			t.Errorf("%s: right password rejected", sc.name)
		}
		for _, wrong := range []string{"", "x", testPassword + " ", strings.ToUpper(testPassword)} {
			if sc.secret.Verify(testUser, wrong) {
				t.Errorf("%s: wrong password %q accepted", sc.name, wrong)
			}
		}
	}
	if ParseSecret(testMD5Secret(testPassword, testUser)).Verify("bob", testPassword) {
		t.Error("md5 secret accepted for another user (it is salted with the user name)")
	}
	if (Secret{}).Verify(testUser, "") {
		t.Error("KindNone accepted the empty password")
	}
}

// PostgreSQL SASLpreps passwords before hashing: a soft hyphen maps to
// nothing, so both spellings share a verifier.
func TestSCRAMSASLprep(t *testing.T) {
	s := ParseSecret(testSCRAMString(t, "password"))
	if !s.Verify(testUser, "pass\u00ADword") {
		t.Fatal("SASLprep not applied")
	}
}

// The package's derivation must agree with xdg-go/scram's.
func TestDeriveVerifierMatchesXDG(t *testing.T) {
	salt := []byte("0123456789abcdef")
	v, err := deriveVerifier(testPassword, salt, 4096)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := scram.SHA256.NewClient("", testPassword, "")
	if err != nil {
		t.Fatal(err)
	}
	creds, err := cl.GetStoredCredentialsWithError(scram.KeyFactors{Salt: string(salt), Iters: 4096})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(v.StoredKey, creds.StoredKey) || !bytes.Equal(v.ServerKey, creds.ServerKey) {
		t.Fatal("derived verifier differs from xdg-go/scram's")
	}
}

func TestMockSecret(t *testing.T) {
	a, b := MockSecret([]byte("k1"), "u"), MockSecret([]byte("k1"), "u")
	if a.Kind != KindSCRAM || !bytes.Equal(a.SCRAM.Salt, b.SCRAM.Salt) || !bytes.Equal(a.SCRAM.StoredKey, b.SCRAM.StoredKey) {
		t.Fatal("not deterministic")
	}
	if bytes.Equal(a.SCRAM.Salt, MockSecret([]byte("k2"), "u").SCRAM.Salt) {
		t.Fatal("salt does not depend on the key")
	}
	if bytes.Equal(a.SCRAM.Salt, MockSecret([]byte("k1"), "v").SCRAM.Salt) {
		t.Fatal("salt does not depend on the user")
	}
}
