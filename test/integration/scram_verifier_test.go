package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/xdg-go/scram"
)

// TestSCRAMPlainPasswordVerifierKept: with a plain password in the auth
// file, the SCRAM verifier is derived once and offered again at the next
// login (same salt), as PostgreSQL keeps one per role. Before, every login
// paid 4,096 PBKDF2 rounds for a fresh one. A wrong password still fails.
func TestSCRAMPlainPasswordVerifierKept(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{authType: "scram-sha-256", users: map[string]string{"alice": "alice-pw"}})
	first := e.scramLoginSalt(t, "alice", "alice-pw", true)
	if again := e.scramLoginSalt(t, "alice", "alice-pw", true); again != first {
		t.Fatalf("second login offered salt %q, first %q", again, first)
	}
	if wrong := e.scramLoginSalt(t, "alice", "not-it", false); wrong != first {
		t.Fatalf("wrong-password login offered salt %q, first %q", wrong, first)
	}
}

// scramLoginSalt logs user in with SCRAM by hand and returns the salt of the
// server-first message; ok says whether the login must succeed.
func (e *env) scramLoginSalt(t *testing.T, user, password string, ok bool) string {
	t.Helper()
	c := e.rawDial(t, 20*time.Second)
	defer c.Close()
	fe := pgproto3.NewFrontend(c, c)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{"user": user, "database": "app"}})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	expectType[*pgproto3.AuthenticationSASL](t, fe)
	client, err := scram.SHA256.NewClient("", password, "")
	if err != nil {
		t.Fatal(err)
	}
	conv := client.NewConversation()
	clientFirst, _ := conv.Step("")
	fe.Send(&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte(clientFirst)})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	serverFirst := string(expectType[*pgproto3.AuthenticationSASLContinue](t, fe).Data)
	var salt string
	for _, attr := range strings.Split(serverFirst, ",") {
		if v, found := strings.CutPrefix(attr, "s="); found {
			salt = v
		}
	}
	if salt == "" {
		t.Fatalf("no salt in server-first %q", serverFirst)
	}
	clientFinal, err := conv.Step(serverFirst)
	if err != nil {
		t.Fatal(err)
	}
	fe.Send(&pgproto3.SASLResponse{Data: []byte(clientFinal)})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	if !ok {
		if er := expectType[*pgproto3.ErrorResponse](t, fe); er.Code != "28P01" {
			t.Fatalf("wrong password: %s %s, want 28P01", er.Code, er.Message)
		}
		return salt
	}
	expectType[*pgproto3.AuthenticationSASLFinal](t, fe)
	expectType[*pgproto3.AuthenticationOk](t, fe)
	expectUntilReady(t, fe)
	fe.Send(&pgproto3.Terminate{})
	_ = fe.Flush()
	return salt
}
