package auth

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

type secretCase struct {
	name   string
	raw    string // userlist form
	secret Secret
}

func testSecrets(t *testing.T) []secretCase {
	t.Helper()
	raws := []struct{ name, raw string }{
		{"plain", testPassword},
		{"md5", testMD5Secret(testPassword, testUser)},
		{"scram", testSCRAMString(t, testPassword)},
	}
	var out []secretCase
	for _, r := range raws {
		out = append(out, secretCase{r.name, r.raw, ParseSecret(r.raw)})
	}
	return out
}

// expectedMethod is the method actually run: md5 cannot be checked against
// a SCRAM verifier, nor SCRAM against an md5 hash.
func expectedMethod(method string, kind Kind) string {
	switch {
	case method == MethodMD5 && kind == KindSCRAM:
		return MethodSCRAM
	case method == MethodSCRAM && kind == KindMD5:
		return MethodMD5
	}
	return method
}

func challengeFor(method string) string {
	switch method {
	case MethodPlain:
		return "cleartext"
	case MethodMD5:
		return "md5"
	default:
		return "sasl"
	}
}

func TestAuthenticateMatrix(t *testing.T) {
	secrets := testSecrets(t)
	for _, method := range []string{MethodPlain, MethodMD5, MethodSCRAM} {
		for _, sc := range secrets {
			want := expectedMethod(method, sc.secret.Kind)
			t.Run(method+"/"+sc.name+"/right", func(t *testing.T) {
				res, err, out := run(t, method, testUser, sc.secret, true, passwordClient(testUser, testPassword, ""))
				if err != nil {
					t.Fatalf("Authenticate: %v", err)
				}
				if out.err != nil {
					t.Fatalf("client: %v", out.err)
				}
				if res.Method != want {
					t.Fatalf("method %q, want %q", res.Method, want)
				}
				if out.challenge != challengeFor(want) {
					t.Fatalf("client saw %q challenge, want %q", out.challenge, challengeFor(want))
				}
				if want == MethodPlain {
					if res.Password != testPassword {
						t.Fatalf("Password not returned for plain method")
					}
				} else if res.Password != "" {
					t.Fatalf("Password returned for %s", want)
				}
				if want != MethodSCRAM {
					if res.ClientKey != nil {
						t.Fatalf("ClientKey set for %s", want)
					}
					return
				}
				if len(out.mechanisms) != 1 || out.mechanisms[0] != "SCRAM-SHA-256" {
					t.Fatalf("advertised %v, want only SCRAM-SHA-256", out.mechanisms)
				}
				if !out.finalOK {
					t.Fatal("client did not verify SASLFinal")
				}
				salt, iter := out.scramFactors(t)
				if sc.secret.Kind == KindSCRAM && (!bytes.Equal(salt, sc.secret.SCRAM.Salt) || iter != sc.secret.SCRAM.Iterations) {
					t.Fatal("server-first does not carry the stored salt and iterations")
				}
				wantKey := testHMAC(testSaltedPassword(t, testPassword, salt, iter), "Client Key")
				if !bytes.Equal(res.ClientKey, wantKey) {
					t.Fatalf("ClientKey %x, want %x", res.ClientKey, wantKey)
				}
			})
			t.Run(method+"/"+sc.name+"/wrong", func(t *testing.T) {
				const wrong = "Tr0ub4dor&3"
				res, err, out := run(t, method, testUser, sc.secret, true, passwordClient(testUser, wrong, ""))
				ae := wantAuthError(t, err, CodeInvalidPassword)
				if ae.Message != `password authentication failed for user "alice"` {
					t.Fatalf("message %q", ae.Message)
				}
				for _, leak := range []string{testPassword, wrong, sc.raw} {
					if strings.Contains(ae.Error(), leak) {
						t.Fatalf("error %q leaks a secret", ae.Error())
					}
				}
				if res.Method != "" || res.ClientKey != nil || res.Password != "" {
					t.Fatalf("non-zero result on failure: %v", res)
				}
				if out.challenge != challengeFor(want) || out.finalOK {
					t.Fatalf("client outcome %+v", out)
				}
			})
		}
	}
}

// libpq and pgx send an empty user name in client-first; others may not.
func TestSCRAMClientUserNameIgnored(t *testing.T) {
	for _, sc := range testSecrets(t) {
		if sc.secret.Kind == KindMD5 {
			continue
		}
		for _, scramUser := range []string{"", testUser, "someone else"} {
			res, err, out := run(t, MethodSCRAM, testUser, sc.secret, true, passwordClient(testUser, testPassword, scramUser))
			if err != nil || out.err != nil || !out.finalOK || res.Method != MethodSCRAM {
				t.Fatalf("%s/%q: err=%v client=%+v", sc.name, scramUser, err, out)
			}
		}
	}
}

func TestAuthenticateUnknownUser(t *testing.T) {
	secrets := testSecrets(t)
	for _, method := range []string{MethodPlain, MethodMD5, MethodSCRAM} {
		t.Run(method, func(t *testing.T) {
			_, err, out := run(t, method, "mallory", Secret{}, false, passwordClient("mallory", testPassword, ""))
			ae := wantAuthError(t, err, CodeInvalidPassword)
			if ae.Message != `password authentication failed for user "mallory"` {
				t.Fatalf("message %q", ae.Message)
			}
			if out.err != nil {
				t.Fatalf("client: %v", out.err)
			}
			// The client must see the same exchange as for a real user.
			if out.challenge != challengeFor(method) || out.finalOK {
				t.Fatalf("client outcome %+v", out)
			}
		})
		// Even a secret passed along with found=false must not let the
		// right password in.
		for _, sc := range secrets {
			t.Run(method+"/notfound-with-"+sc.name, func(t *testing.T) {
				_, err, _ := run(t, method, testUser, sc.secret, false, passwordClient(testUser, testPassword, ""))
				wantAuthError(t, err, CodeInvalidPassword)
			})
		}
		t.Run(method+"/no-password", func(t *testing.T) {
			for _, pw := range []string{"", testPassword} {
				_, err, out := run(t, method, testUser, Secret{Kind: KindNone}, true, passwordClient(testUser, pw, ""))
				wantAuthError(t, err, CodeInvalidPassword)
				if out.challenge != challengeFor(method) {
					t.Fatalf("client outcome %+v", out)
				}
			}
		})
	}
}

func TestUnknownUserSalt(t *testing.T) {
	saltOf := func(user string, secret Secret) []byte {
		_, err, out := run(t, MethodSCRAM, user, secret, false, passwordClient(user, testPassword, ""))
		wantAuthError(t, err, CodeInvalidPassword)
		salt, iter := out.scramFactors(t)
		if iter != 4096 || len(salt) != 16 {
			t.Fatalf("mock verifier looks unlike PostgreSQL's default: %d iterations, %d-byte salt", iter, len(salt))
		}
		return salt
	}
	key := []byte("process-private key")
	a1 := saltOf("mallory", MockSecret(key, "mallory"))
	a2 := saltOf("mallory", MockSecret(key, "mallory"))
	b := saltOf("trudy", MockSecret(key, "trudy"))
	if !bytes.Equal(a1, a2) {
		t.Fatal("MockSecret salt not stable for the same user")
	}
	if bytes.Equal(a1, b) {
		t.Fatal("MockSecret salt shared between users")
	}
	if bytes.Equal(saltOf("mallory", Secret{}), saltOf("mallory", Secret{})) {
		t.Fatal("random mock salt repeated")
	}
}

func TestAuthenticateTrust(t *testing.T) {
	for _, found := range []bool{true, false} {
		res, err := Authenticate(failConn{t}, MethodTrust, "anyone", Secret{}, found, nil)
		if err != nil || res.Method != MethodTrust || res.Password != "" || res.ClientKey != nil {
			t.Fatalf("found=%v: %v %v", found, res, err)
		}
	}
}

// failConn fails the test if trust touches the connection.
type failConn struct{ t *testing.T }

func (f failConn) Send(pgproto3.BackendMessage) error {
	f.t.Error("Send called")
	return errors.New("unexpected")
}

func (f failConn) Receive() (byte, []byte, error) {
	f.t.Error("Receive called")
	return 0, nil, errors.New("unexpected")
}

func TestAuthenticateUnsupportedMethod(t *testing.T) {
	_, err := Authenticate(failConn{t}, "ldap", testUser, ParseSecret(testPassword), true, nil)
	wantAuthError(t, err, CodeInvalidAuthorization)
}

func TestAuthenticateProtocolErrors(t *testing.T) {
	plain := ParseSecret(testPassword)
	scramSecret := ParseSecret(testSCRAMString(t, testPassword))
	saslInitial := func(mech, data string) []byte {
		b, _ := (&pgproto3.SASLInitialResponse{AuthMechanism: mech, Data: []byte(data)}).Encode(nil)
		return b
	}
	cases := []struct {
		name   string
		method string
		secret Secret
		script clientScript
		code   string // "" means an I/O error, not *Error
		ioErr  error
	}{
		{"query instead of password", MethodPlain, plain, rawClient(frame('Q', []byte("SELECT 1\x00"))), CodeProtocolViolation, nil},
		{"query instead of md5", MethodMD5, plain, rawClient(frame('Q', []byte("SELECT 1\x00"))), CodeProtocolViolation, nil},
		{"query instead of SASL", MethodSCRAM, scramSecret, rawClient(frame('Q', []byte("SELECT 1\x00"))), CodeProtocolViolation, nil},
		{"unterminated password", MethodPlain, plain, rawClient(frame('p', []byte("secret"))), CodeProtocolViolation, nil},
		{"SASL initial response truncated", MethodSCRAM, scramSecret, rawClient(frame('p', []byte("SCRAM-SHA-256"))), CodeProtocolViolation, nil},
		{"wrong mechanism", MethodSCRAM, scramSecret, rawClient(saslInitial("SCRAM-SHA-256-PLUS", "p=tls-server-end-point,,n=,r=abc")), CodeProtocolViolation, nil},
		{"garbage client-first", MethodSCRAM, scramSecret, rawClient(saslInitial("SCRAM-SHA-256", "hello")), CodeProtocolViolation, nil},
		{"channel binding requested", MethodSCRAM, scramSecret, rawClient(saslInitial("SCRAM-SHA-256", "p=tls-server-end-point,,n=,r=abc")), CodeProtocolViolation, nil},
		{"terminate", MethodPlain, plain, rawClient(frame('X', nil)), "", io.EOF},
		{"client closes", MethodSCRAM, scramSecret, rawClient(), "", io.EOF},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err, _ := run(t, tc.method, testUser, tc.secret, true, tc.script)
			if tc.code != "" {
				wantAuthError(t, err, tc.code)
				return
			}
			var ae *Error
			if errors.As(err, &ae) || !errors.Is(err, tc.ioErr) {
				t.Fatalf("want I/O error %v, got %v", tc.ioErr, err)
			}
		})
	}
}

// A client-final with a tampered nonce is a protocol violation, a tampered
// proof a wrong password.
func TestSCRAMTamperedClientFinal(t *testing.T) {
	secret := ParseSecret(testSCRAMString(t, testPassword))
	tamper := func(edit func(final string) string) clientScript {
		return func(fe *pgproto3.Frontend, conn net.Conn) clientOutcome {
			var out clientOutcome
			if _, err := fe.Receive(); err != nil {
				out.err = err
				return out
			}
			first := "n,,n=,r=clientnonce"
			fe.Send(&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte(first)})
			if out.err = fe.Flush(); out.err != nil {
				return out
			}
			msg, err := fe.Receive()
			if err != nil {
				out.err = err
				return out
			}
			s1 := string(msg.(*pgproto3.AuthenticationSASLContinue).Data)
			nonce := strings.TrimPrefix(strings.Split(s1, ",")[0], "r=")
			proof := base64.StdEncoding.EncodeToString(make([]byte, 32))
			final := "c=biws,r=" + nonce + ",p=" + proof
			fe.Send(&pgproto3.SASLResponse{Data: []byte(edit(final))})
			out.err = fe.Flush()
			return out
		}
	}
	_, err, _ := run(t, MethodSCRAM, testUser, secret, true, tamper(func(f string) string { return f }))
	wantAuthError(t, err, CodeInvalidPassword)
	_, err, _ = run(t, MethodSCRAM, testUser, secret, true, tamper(func(f string) string { return strings.Replace(f, "r=", "r=x", 1) }))
	wantAuthError(t, err, CodeProtocolViolation)
	_, err, _ = run(t, MethodSCRAM, testUser, secret, true, tamper(func(f string) string { return strings.Replace(f, "c=biws", "c=eSws", 1) }))
	wantAuthError(t, err, CodeProtocolViolation)
}

// sendErrConn fails every Send with its error.
type sendErrConn struct{ err error }

func (s sendErrConn) Send(pgproto3.BackendMessage) error { return s.err }
func (s sendErrConn) Receive() (byte, []byte, error)     { return 0, nil, s.err }

func TestAuthenticateSendErrorReturnedAsIs(t *testing.T) {
	sentinel := errors.New("broken pipe")
	for _, method := range []string{MethodPlain, MethodMD5, MethodSCRAM} {
		_, err := Authenticate(sendErrConn{sentinel}, method, testUser, ParseSecret(testPassword), true, nil)
		if !errors.Is(err, sentinel) {
			t.Fatalf("%s: got %v", method, err)
		}
	}
}

func TestErrorResponse(t *testing.T) {
	e := passwordFailed("bob")
	r := e.ErrorResponse()
	if r.Severity != "FATAL" || r.SeverityUnlocalized != "FATAL" || r.Code != "28P01" || r.Message != `password authentication failed for user "bob"` {
		t.Fatalf("%+v", r)
	}
	if !strings.Contains(e.Error(), "28P01") {
		t.Fatalf("Error() = %q", e.Error())
	}
}
