package pool

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgrecycle/pgrecycle/test/pgtest"
)

// nonASCIIPassword changes under SASLprep but not under PRECIS: U+2168
// (ROMAN NUMERAL NINE) becomes "IX" under NFKC only, and the soft hyphen
// is mapped to nothing only by SASLprep.
const nonASCIIPassword = "p\u2168ss\u00adword"

// TestNonASCIIPasswordSCRAM: a backend logs in with a cleartext password
// that PostgreSQL prepares with SASLprep and pgconn with PRECIS. Before,
// pgconn's proof was wrong and every connect failed with 28P01.
func TestNonASCIIPasswordSCRAM(t *testing.T) {
	leakCheck(t)
	srv := pgtest.Shared(t)
	ctx := testContext(t, 30*time.Second)
	const role = "pool_saslprep"
	if err := srv.Exec(ctx, "DROP ROLE IF EXISTS "+role); err != nil {
		t.Fatal(err)
	}
	if err := srv.CreateRole(ctx, role, nonASCIIPassword, false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Exec(context.Background(), "DROP ROLE IF EXISTS "+role) })
	opts := testOptions(t, srv, 1)
	opts.User, opts.Password = role, nonASCIIPassword
	p := newPool(t, opts)
	b := acquire(t, p)
	if got := queryOne(t, b, "SELECT current_user"); got != role {
		t.Fatalf("current_user = %q", got)
	}
	p.Release(b)

	// A wrong password is still refused, fast.
	opts.Password = "p\u2168ss"
	p2 := newPool(t, opts)
	if b, err := p2.Acquire(ctx); err == nil {
		p2.Release(b)
		t.Fatal("a wrong non-ASCII password logged in")
	} else if pgErr := (*pgconn.PgError)(nil); !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
		t.Fatalf("wrong password: %v, want 28P01", err)
	}
}

// TestNonASCIIPasswordCleartextAndMD5: for the methods that use the raw
// password (cleartext and md5), the login answers with the password's own
// bytes, as libpq does, not a normalised form. A scripted server checks
// what arrives.
func TestNonASCIIPasswordCleartextAndMD5(t *testing.T) {
	leakCheck(t)
	const user = "u"
	for _, method := range []string{"cleartext", "md5"} {
		t.Run(method, func(t *testing.T) {
			client, server := net.Pipe()
			got := make(chan string, 1)
			go func() {
				defer server.Close()
				be := pgproto3.NewBackend(server, server)
				if _, err := be.ReceiveStartupMessage(); err != nil {
					got <- "startup: " + err.Error()
					return
				}
				salt := [4]byte{1, 2, 3, 4}
				if method == "cleartext" {
					be.Send(&pgproto3.AuthenticationCleartextPassword{})
				} else {
					be.Send(&pgproto3.AuthenticationMD5Password{Salt: salt})
				}
				if err := be.Flush(); err != nil {
					got <- err.Error()
					return
				}
				be.SetAuthType(pgproto3.AuthTypeCleartextPassword)
				msg, err := be.Receive()
				if err != nil {
					got <- err.Error()
					return
				}
				pm, ok := msg.(*pgproto3.PasswordMessage)
				if !ok {
					got <- "not a password message"
					return
				}
				got <- pm.Password
				be.Send(&pgproto3.AuthenticationOk{})
				be.Send(&pgproto3.BackendKeyData{ProcessID: 1, SecretKey: []byte{0, 0, 0, 1}})
				be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
				_ = be.Flush()
			}()

			opts := testOptions(t, pgtest.Shared(t), 1)
			opts.User, opts.Password = user, nonASCIIPassword
			cc, err := newConnectConfig(opts)
			if err != nil {
				t.Fatal(err)
			}
			cfg := cc.pg.Copy()
			cfg.DialFunc = func(context.Context, string, string) (net.Conn, error) { return client, nil }
			ctx := testContext(t, 10*time.Second)
			conn, err := pgconn.ConnectConfig(ctx, cfg)
			if err != nil {
				t.Fatalf("login: %v", err)
			}
			defer conn.Close(context.Background())

			want := nonASCIIPassword
			if method == "md5" {
				inner := md5.Sum([]byte(nonASCIIPassword + user))
				outer := md5.Sum(append([]byte(hex.EncodeToString(inner[:])), 1, 2, 3, 4))
				want = "md5" + hex.EncodeToString(outer[:])
			}
			if g := <-got; g != want {
				t.Fatalf("server received %q, want %q", g, want)
			}
		})
	}
}
