package integration

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestAuthQueryWithSCRAMPassthrough: a user absent from the auth file is
// looked up with auth.query; the client is verified against the SCRAM
// verifier, and the backend login reuses the client's SCRAM key: pgrecycle
// never learns the password.
func TestAuthQueryWithSCRAMPassthrough(t *testing.T) {
	leakCheck(t)
	ctx := testCtx(t)
	e0 := startProxy(t, proxyOpts{})
	pg := e0.pg
	_ = pg.Exec(ctx, "DROP ROLE IF EXISTS aq_alice")
	if err := pg.CreateRole(ctx, "aq_alice", "aq-alice-pw", false); err != nil {
		t.Fatal(err)
	}
	e := startProxy(t, proxyOpts{authType: "scram-sha-256", dbUser: "-",
		users:     map[string]string{"postgres": pg.SuperPassword},
		authExtra: "query = \"SELECT rolname, rolpassword FROM pg_authid WHERE rolname = $1\"\nquery_user = \"postgres\"\n"})
	c, err := pgx.Connect(ctx, e.dsn("aq_alice", "aq-alice-pw", "app"))
	if err != nil {
		t.Fatalf("user known through auth.query: %v", err)
	}
	defer c.Close(ctx)
	var who string
	if err := c.QueryRow(ctx, "SELECT current_user").Scan(&who); err != nil || who != "aq_alice" {
		t.Fatalf("backend logged in as %q (%v), want aq_alice through SCRAM passthrough", who, err)
	}
	if _, err := pgx.Connect(ctx, e.dsn("aq_alice", "wrong", "app")); pgCode(err) != "28P01" {
		t.Fatalf("wrong password: %v, want 28P01", err)
	}
	if _, err := pgx.Connect(ctx, e.dsn("aq_nobody", "x", "app")); pgCode(err) != "28P01" {
		t.Fatalf("unknown user: %v, want 28P01", err)
	}
	assertNoSecretsLogged(t, e, map[string]string{"aq_alice": "aq-alice-pw"})
}

// TestUserlistSCRAMVerifierPassthrough: the auth file holds only a SCRAM
// verifier (as PostgreSQL stores it); clients log in and so do backends.
func TestUserlistSCRAMVerifierPassthrough(t *testing.T) {
	leakCheck(t)
	ctx := testCtx(t)
	e0 := startProxy(t, proxyOpts{})
	pg := e0.pg
	_ = pg.Exec(ctx, "DROP ROLE IF EXISTS ul_bob")
	if err := pg.CreateRole(ctx, "ul_bob", "ul-bob-pw", false); err != nil {
		t.Fatal(err)
	}
	d := e0.direct(ctx)
	var verifier string
	if err := d.QueryRow(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = 'ul_bob'").Scan(&verifier); err != nil {
		t.Fatal(err)
	}
	e := startProxy(t, proxyOpts{authType: "scram-sha-256", dbUser: "-", users: map[string]string{"ul_bob": verifier}})
	c, err := pgx.Connect(ctx, e.dsn("ul_bob", "ul-bob-pw", "app"))
	if err != nil {
		t.Fatalf("login with a SCRAM verifier in the auth file: %v", err)
	}
	defer c.Close(ctx)
	var who string
	if err := c.QueryRow(ctx, "SELECT current_user").Scan(&who); err != nil || who != "ul_bob" {
		t.Fatalf("current_user = %q, %v", who, err)
	}
}

// TestAuthQueryUserNonASCIIPassword: the auth_query connection logs in
// with a password that SASLprep and pgconn's PRECIS prepare differently
// (U+2168 becomes "IX" only under SASLprep), as the pools' backends do.
func TestAuthQueryUserNonASCIIPassword(t *testing.T) {
	leakCheck(t)
	ctx := testCtx(t)
	e0 := startProxy(t, proxyOpts{})
	pg := e0.pg
	const lookup, lookupPW = "aq_lookup_nonascii", "look\u2168up"
	for _, r := range []string{lookup, "aq_carol"} {
		_ = pg.Exec(ctx, "DROP ROLE IF EXISTS "+r)
	}
	if err := pg.CreateRole(ctx, lookup, lookupPW, true); err != nil {
		t.Fatal(err)
	}
	if err := pg.CreateRole(ctx, "aq_carol", "carol-pw", false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, r := range []string{lookup, "aq_carol"} {
			_ = pg.Exec(context.Background(), "DROP ROLE IF EXISTS "+r)
		}
	})
	e := startProxy(t, proxyOpts{authType: "scram-sha-256", dbUser: "-",
		users:     map[string]string{lookup: lookupPW},
		authExtra: "query = \"SELECT rolname, rolpassword FROM pg_authid WHERE rolname = $1\"\nquery_user = \"" + lookup + "\"\n"})
	c, err := pgx.Connect(ctx, e.dsn("aq_carol", "carol-pw", "app"))
	if err != nil {
		t.Fatalf("login looked up by a query user with a non-ASCII password: %v", err)
	}
	_ = c.Close(ctx)
}

// TestAuthQueryPasswordChange: by default auth.query runs at every login,
// so after ALTER ROLE ... PASSWORD the new password logs in at once and the
// old one is refused, even while a pooled backend of that user is open (no
// server login checks it then). With query_cache_ttl set, a cached answer
// may be stale, but a login it refuses drops it: the next attempt with the
// new password succeeds. Before, the answer was cached for 30 s: the old
// password kept working and the new one was refused.
func TestAuthQueryPasswordChange(t *testing.T) {
	leakCheck(t)
	ctx := testCtx(t)
	e0 := startProxy(t, proxyOpts{})
	pg := e0.pg
	const query = "query = \"SELECT rolname, rolpassword FROM pg_authid WHERE rolname = $1\"\nquery_user = \"postgres\"\n"
	for _, tc := range []struct {
		name, extra string
		cached      bool
	}{{"default", "", false}, {"cache_ttl", "query_cache_ttl = \"1h\"\n", true}} {
		t.Run(tc.name, func(t *testing.T) {
			role := uniqueName("aqpw")
			if err := pg.CreateRole(ctx, role, "first-pw", false); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = pg.Exec(context.Background(), "DROP ROLE IF EXISTS "+role) })
			e := startProxy(t, proxyOpts{authType: "scram-sha-256", dbUser: "-",
				users:     map[string]string{"postgres": pg.SuperPassword},
				authExtra: query + tc.extra})
			login := func(pw string) error {
				c, err := pgx.Connect(ctx, e.dsn(role, pw, "app"))
				if err != nil {
					return err
				}
				defer c.Close(ctx)
				_, err = c.Exec(ctx, "SELECT 1")
				return err
			}
			// A backend of this user stays in the pool from here on.
			if err := login("first-pw"); err != nil {
				t.Fatalf("first password: %v", err)
			}
			if err := pg.Exec(ctx, "ALTER ROLE "+role+" PASSWORD 'second-pw'"); err != nil {
				t.Fatal(err)
			}
			if tc.cached {
				if err := login("second-pw"); pgCode(err) != "28P01" {
					t.Fatalf("new password against the cached answer: %v, want 28P01", err)
				}
			} else if err := login("first-pw"); pgCode(err) != "28P01" {
				t.Fatalf("old password after ALTER ROLE: %v, want 28P01", err)
			}
			if err := login("second-pw"); err != nil {
				t.Fatalf("new password: %v", err)
			}
			if err := login("first-pw"); pgCode(err) != "28P01" {
				t.Fatalf("old password once the new one is seen: %v, want 28P01", err)
			}
		})
	}
}
