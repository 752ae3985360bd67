package auth

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/xdg-go/scram"
)

const (
	testUser     = "alice"
	testPassword = "correct horse battery staple"
)

// The helpers below compute secrets independently of the package, so that
// the tests check the package against the formats, not against itself.

func testMD5Hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

func testMD5Secret(password, user string) string { return "md5" + testMD5Hex(password+user) }

func testSaltedPassword(t testing.TB, password string, salt []byte, iter int) []byte {
	t.Helper()
	k, err := pbkdf2.Key(sha256.New, password, salt, iter, 32)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testHMAC(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

// testSCRAMString encodes a verifier as PostgreSQL stores it in pg_authid.
func testSCRAMString(t testing.TB, password string) string {
	t.Helper()
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	salted := testSaltedPassword(t, password, salt, 4096)
	stored := sha256.Sum256(testHMAC(salted, "Client Key"))
	server := testHMAC(salted, "Server Key")
	b64 := base64.StdEncoding.EncodeToString
	return "SCRAM-SHA-256$4096:" + b64(salt) + "$" + b64(stored[:]) + ":" + b64(server)
}

// netConn is a minimal server-side Conn doing PostgreSQL framing over a
// net.Conn, as the proxy does.
type netConn struct{ c net.Conn }

func (n *netConn) Send(msg pgproto3.BackendMessage) error {
	b, err := msg.Encode(nil)
	if err != nil {
		return err
	}
	_, err = n.c.Write(b)
	return err
}

func (n *netConn) Receive() (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(n.c, hdr[:]); err != nil {
		return 0, nil, err
	}
	l := binary.BigEndian.Uint32(hdr[1:])
	if l < 4 || l > 1<<20 {
		return 0, nil, fmt.Errorf("bad message length %d", l)
	}
	body := make([]byte, l-4)
	if _, err := io.ReadFull(n.c, body); err != nil {
		return 0, nil, err
	}
	return hdr[0], body, nil
}

// clientOutcome is what the scripted client observed.
type clientOutcome struct {
	challenge   string // "cleartext", "md5", "sasl"
	mechanisms  []string
	serverFirst string
	finalOK     bool // SASLFinal received and its server signature verified
	err         error
}

// salt and iterations announced in serverFirst.
func (o clientOutcome) scramFactors(t testing.TB) ([]byte, int) {
	t.Helper()
	var salt []byte
	iter := 0
	for _, f := range strings.Split(o.serverFirst, ",") {
		switch {
		case strings.HasPrefix(f, "s="):
			var err error
			if salt, err = base64.StdEncoding.DecodeString(f[2:]); err != nil {
				t.Fatal(err)
			}
		case strings.HasPrefix(f, "i="):
			var err error
			if iter, err = strconv.Atoi(f[2:]); err != nil {
				t.Fatal(err)
			}
		}
	}
	if salt == nil || iter == 0 {
		t.Fatalf("no salt/iterations in server-first %q", o.serverFirst)
	}
	return salt, iter
}

type clientScript func(fe *pgproto3.Frontend, conn net.Conn) clientOutcome

// passwordClient behaves like libpq: it answers whatever challenge comes
// with password. scramUser is the name put in client-first (libpq sends "").
func passwordClient(user, password, scramUser string) clientScript {
	return func(fe *pgproto3.Frontend, _ net.Conn) clientOutcome {
		var out clientOutcome
		msg, err := fe.Receive()
		if err != nil {
			out.err = err
			return out
		}
		switch m := msg.(type) {
		case *pgproto3.AuthenticationCleartextPassword:
			out.challenge = "cleartext"
			fe.Send(&pgproto3.PasswordMessage{Password: password})
			out.err = fe.Flush()
		case *pgproto3.AuthenticationMD5Password:
			out.challenge = "md5"
			resp := "md5" + testMD5Hex(testMD5Hex(password+user)+string(m.Salt[:]))
			fe.Send(&pgproto3.PasswordMessage{Password: resp})
			out.err = fe.Flush()
		case *pgproto3.AuthenticationSASL:
			out.challenge = "sasl"
			out.mechanisms = append([]string(nil), m.AuthMechanisms...)
			out.err = scramClient(fe, scramUser, password, &out)
		default:
			out.err = fmt.Errorf("unexpected message %T", msg)
		}
		return out
	}
}

func scramClient(fe *pgproto3.Frontend, scramUser, password string, out *clientOutcome) error {
	cl, err := scram.SHA256.NewClient(scramUser, password, "")
	if err != nil {
		return err
	}
	conv := cl.NewConversation()
	first, err := conv.Step("")
	if err != nil {
		return err
	}
	fe.Send(&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte(first)})
	if err := fe.Flush(); err != nil {
		return err
	}
	msg, err := fe.Receive()
	if err != nil {
		return err
	}
	cont, ok := msg.(*pgproto3.AuthenticationSASLContinue)
	if !ok {
		return fmt.Errorf("expected SASLContinue, got %T", msg)
	}
	out.serverFirst = string(cont.Data)
	final, err := conv.Step(out.serverFirst)
	if err != nil {
		return err
	}
	fe.Send(&pgproto3.SASLResponse{Data: []byte(final)})
	if err := fe.Flush(); err != nil {
		return err
	}
	msg, err = fe.Receive()
	if err != nil {
		// The server refused: it closes without SASLFinal.
		return nil
	}
	fin, ok := msg.(*pgproto3.AuthenticationSASLFinal)
	if !ok {
		return fmt.Errorf("expected SASLFinal, got %T", msg)
	}
	if _, err := conv.Step(string(fin.Data)); err != nil {
		return fmt.Errorf("server signature rejected: %w", err)
	}
	out.finalOK = conv.Valid()
	return nil
}

// rawClient waits for the first challenge and then writes raw bytes.
func rawClient(frames ...[]byte) clientScript {
	return func(fe *pgproto3.Frontend, conn net.Conn) clientOutcome {
		var out clientOutcome
		if _, err := fe.Receive(); err != nil {
			out.err = err
			return out
		}
		for _, f := range frames {
			if _, err := conn.Write(f); err != nil {
				out.err = err
				return out
			}
		}
		return out
	}
}

func frame(typ byte, body []byte) []byte {
	b := []byte{typ, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], uint32(len(body)+4))
	return append(b, body...)
}

// run drives Authenticate against script over a net.Pipe.
func run(t *testing.T, method, user string, secret Secret, found bool, script clientScript) (Result, error, clientOutcome) {
	t.Helper()
	return runCached(t, method, user, secret, found, nil, script)
}

// runCached is run with a verifier cache.
func runCached(t *testing.T, method, user string, secret Secret, found bool, verifiers *VerifierCache, script clientScript) (Result, error, clientOutcome) {
	t.Helper()
	srv, cli := net.Pipe()
	deadline := time.Now().Add(10 * time.Second)
	_ = srv.SetDeadline(deadline)
	_ = cli.SetDeadline(deadline)
	done := make(chan clientOutcome, 1)
	go func() {
		defer cli.Close()
		done <- script(pgproto3.NewFrontend(cli, cli), cli)
	}()
	res, err := Authenticate(&netConn{c: srv}, method, user, secret, found, verifiers)
	srv.Close()
	return res, err, <-done
}

func wantAuthError(t *testing.T, err error, code string) *Error {
	t.Helper()
	var ae *Error
	if !errors.As(err, &ae) {
		t.Fatalf("want *Error %s, got %v", code, err)
	}
	if ae.Code != code {
		t.Fatalf("want code %s, got %s (%s)", code, ae.Code, ae.Message)
	}
	return ae
}
