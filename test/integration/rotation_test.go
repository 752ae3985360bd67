package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestPasswordRotation: after ALTER ROLE ... PASSWORD, a new auth file and
// a reload, backends opened later log in with the new credentials, while
// the ones already open keep serving. Before, a pool kept its first
// login's password or SCRAM key, and every new backend failed with 28P01
// until a restart.
func TestPasswordRotation(t *testing.T) {
	leakCheck(t)
	ctx := testCtx(t)
	// fixed-user: databases.app.user names the role, whose password lives
	// only in the auth file (a reload used to blank it).
	for _, kind := range []string{"cleartext", "scram-verifier", "fixed-user"} {
		t.Run(kind, func(t *testing.T) {
			e0 := startProxy(t, proxyOpts{})
			role := uniqueName("rot")
			_ = e0.pg.Exec(ctx, "DROP ROLE IF EXISTS "+role)
			if err := e0.pg.CreateRole(ctx, role, "first-pw", false); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = e0.pg.Exec(context.Background(), "DROP ROLE IF EXISTS "+role) })
			d := e0.direct(ctx)
			defer d.Close(ctx)
			secret := func(pw string) string {
				if kind != "scram-verifier" {
					return pw
				}
				return roleSecret(ctx, t, d, role)
			}
			o := proxyOpts{authType: "scram-sha-256", dbUser: "-", users: map[string]string{role: secret("first-pw")}}
			if kind == "fixed-user" {
				o.dbExtra = fmt.Sprintf("user = %q\n", role)
			}
			e := startProxy(t, o)
			dumpLogsOnFailure(t, e)

			holder, err := pgx.Connect(ctx, e.dsn(role, "first-pw", "app"))
			if err != nil {
				t.Fatal(err)
			}
			defer holder.Close(ctx)
			var oldPID int
			if err := holder.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&oldPID); err != nil {
				t.Fatal(err)
			}
			// The holder keeps the pool's only backend in a transaction,
			// so the next client needs a new one.
			if _, err := holder.Exec(ctx, "BEGIN"); err != nil {
				t.Fatal(err)
			}

			if _, err := d.Exec(ctx, fmt.Sprintf("SET password_encryption = 'scram-sha-256'; ALTER ROLE %s PASSWORD 'second-pw'", pgx.Identifier{role}.Sanitize())); err != nil {
				t.Fatal(err)
			}
			line := fmt.Sprintf("%q %q\n", role, secret("second-pw"))
			if err := os.WriteFile(filepath.Join(e.dir, "userlist.txt"), []byte(line), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := e.srv.Reload(); err != nil {
				t.Fatal(err)
			}

			c, err := pgx.Connect(ctx, e.dsn(role, "second-pw", "app"))
			if err != nil {
				t.Fatalf("login with the rotated password: %v", err)
			}
			defer c.Close(ctx)
			var pid int
			if err := c.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
				t.Fatalf("query on a backend opened after the rotation: %v", err)
			}
			if pid == oldPID {
				t.Fatalf("the new client shared the held backend %d", pid)
			}
			// The backend opened before the rotation still serves.
			if _, err := holder.Exec(ctx, "COMMIT"); err != nil {
				t.Fatalf("backend opened with the old password: %v", err)
			}
			if _, err := pgx.Connect(ctx, e.dsn(role, "first-pw", "app")); pgCode(err) != "28P01" {
				t.Fatalf("login with the old password after the reload: %v, want 28P01", err)
			}
		})
	}
}

// TestTrustLoginKeepsPoolCredentials: a login that brings no credentials
// (trust on the unix socket) does not erase the ones a password login gave
// the pool (here a SCRAM key passed through): backends it needs still log
// in.
func TestTrustLoginKeepsPoolCredentials(t *testing.T) {
	leakCheck(t)
	ctx := testCtx(t)
	e0 := startProxy(t, proxyOpts{})
	role := uniqueName("mixed")
	if err := e0.pg.CreateRole(ctx, role, "mixed-pw", false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e0.pg.Exec(context.Background(), "DROP ROLE IF EXISTS "+role) })
	d := e0.direct(ctx)
	verifier := roleSecret(ctx, t, d, role)
	d.Close(ctx)
	o, dir, _ := withUnixSocket(t, proxyOpts{authType: "scram-sha-256", dbUser: "-", users: map[string]string{role: verifier},
		extra: "[[hba]]\ndatabase = \"all\"\nuser = \"all\"\naddress = \"local\"\nmethod = \"trust\"\n" +
			"[[hba]]\ndatabase = \"all\"\nuser = \"all\"\naddress = \"all\"\nmethod = \"scram-sha-256\"\n"})
	e := startProxy(t, o)
	dumpLogsOnFailure(t, e)
	tcp, err := pgx.Connect(ctx, e.dsn(role, "mixed-pw", "app"))
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close(ctx)
	tx, err := tcp.Begin(ctx) // holds the pool's first backend
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	local, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d user=%s dbname=app", dir, e.port, role))
	if err != nil {
		t.Fatalf("trust login on the unix socket: %v", err)
	}
	defer local.Close(ctx)
	var who string
	if err := local.QueryRow(ctx, "SELECT current_user").Scan(&who); err != nil || who != role {
		t.Fatalf("new backend after a trust login: %q, %v", who, err)
	}
}
