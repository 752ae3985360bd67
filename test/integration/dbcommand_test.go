package integration

// A database pgrecycle keeps idle backends to can still be copied,
// renamed and dropped through pgrecycle (a test runner's DROP DATABASE of
// its test database): PostgreSQL refuses while others are connected.

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgrecycle/pgrecycle/test/pgtest"
)

func TestDatabaseCommandsCloseIdleBackends(t *testing.T) {
	leakCheck(t)
	pg := pgtest.Shared(t)
	for _, mode := range poolModes() {
		t.Run(mode, func(t *testing.T) {
			ctx := testCtx(t)
			name := uniqueName("dropme")
			copied, renamed := name+"_copy", name+"_renamed"
			d, err := pgx.Connect(ctx, pg.SuperDSN())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				for _, db := range []string{name, copied, renamed} {
					_, _ = d.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)")
				}
				_ = d.Close(context.Background())
			})
			if _, err := d.Exec(ctx, "CREATE DATABASE "+name); err != nil {
				t.Fatal(err)
			}
			e := startProxy(t, proxyOpts{mode: mode, extra: fmt.Sprintf("[databases.dropme]\nhost = %q\nport = %d\ndbname = %q\nsslmode = \"disable\"\nuser = %q\npassword = %q\n",
				pg.Host, pg.Port, name, pg.SuperUser, pg.SuperPassword)})
			// A client uses the database through pgrecycle and leaves; its
			// backend stays in the pool, idle.
			useAndLeave := func() {
				t.Helper()
				c, err := pgx.Connect(ctx, e.dsn("postgres", "x", "dropme"))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := c.Exec(ctx, "SELECT 1"); err != nil {
					t.Fatal(err)
				}
				_ = c.Close(ctx)
				var n int
				if err := d.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", name).Scan(&n); err != nil || n == 0 {
					t.Fatalf("pgrecycle's idle backends to %s: %d, %v; want some", name, n, err)
				}
			}
			app := e.connect(ctx)
			useAndLeave()
			if _, err := app.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", copied, name), pgx.QueryExecModeExec); err != nil {
				t.Fatalf("CREATE DATABASE ... TEMPLATE of a database with idle pooled backends (extended protocol): %v", err)
			}
			useAndLeave()
			if _, err := app.Exec(ctx, fmt.Sprintf("ALTER DATABASE %s RENAME TO %s", name, renamed), pgx.QueryExecModeSimpleProtocol); err != nil {
				t.Fatalf("ALTER DATABASE ... RENAME of a database with idle pooled backends: %v", err)
			}
			if _, err := app.Exec(ctx, fmt.Sprintf("ALTER DATABASE %s RENAME TO %s", renamed, name), pgx.QueryExecModeSimpleProtocol); err != nil {
				t.Fatal(err)
			}
			useAndLeave()
			if _, err := app.Exec(ctx, "/* test teardown */ DROP DATABASE IF EXISTS "+name, pgx.QueryExecModeSimpleProtocol); err != nil {
				t.Fatalf("DROP DATABASE of a database with idle pooled backends: %v", err)
			}
			if _, err := app.Exec(ctx, fmt.Sprintf("DROP DATABASE %s", copied)); err != nil {
				t.Fatalf("DROP DATABASE of the copy: %v", err)
			}
		})
	}
}

// TestDropRoleClosesIdleBackends: a role dropped and created again under
// the same name through pgrecycle is another role; the pooled idle backend
// logged in as the old one is closed, so the next login as the name works
// instead of failing with "invalid role OID" (pgjdbc's ScramTest).
func TestDropRoleClosesIdleBackends(t *testing.T) {
	leakCheck(t)
	ctx := testCtx(t)
	role := uniqueName("dropped")
	const pw = "pw-dropped"
	adminRole, adminPw := poolRole(ctx, t) // a superuser with a password, as backends log in as their client
	e := startProxy(t, proxyOpts{size: 2, dbUser: "-", users: map[string]string{role: pw, adminRole: adminPw}})
	whoAmI := loginRole(ctx, t, e, role, pw)
	admin, err := pgx.Connect(ctx, e.dsn(adminRole, adminPw, "app"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "DROP ROLE "+role+"; CREATE ROLE "+role+" LOGIN PASSWORD '"+pw+"'"); err != nil {
		t.Fatal(err)
	}
	if who, err := whoAmI(); err != nil || who != role {
		t.Fatalf("after the role was dropped and created again: %q, %v", who, err)
	}
}

// TestDroppedRoleOutsideClosesBackends: a role dropped and created again
// directly on PostgreSQL, not through pgrecycle, leaves backends logged in
// as the old role, which fail with "invalid role OID" (42704). The first
// such error closes the pool's backends: before, every later client of
// them failed the same way until they retired (an hour by default).
func TestDroppedRoleOutsideClosesBackends(t *testing.T) {
	leakCheck(t)
	for _, mode := range poolModes() {
		t.Run(mode, func(t *testing.T) { droppedRoleOutside(t, mode) })
	}
}

func droppedRoleOutside(t *testing.T, mode string) {
	ctx := testCtx(t)
	role := uniqueName("dropout")
	const pw = "pw-dropout"
	e := startProxy(t, proxyOpts{mode: mode, size: 2, dbUser: "-", users: map[string]string{role: pw}})
	whoAmI := loginRole(ctx, t, e, role, pw)
	if err := e.pg.Exec(ctx, "DROP ROLE "+role+"; CREATE ROLE "+role+" LOGIN PASSWORD '"+pw+"'"); err != nil {
		t.Fatal(err)
	}
	// The first client may see the stale backend's error, as it would
	// through any pooler; the next ones must not.
	if _, err := whoAmI(); err != nil && sqlState(err) != "42704" {
		t.Fatalf("first login after the role was recreated: %v", err)
	}
	for i := 0; i < 3; i++ {
		if who, err := whoAmI(); err != nil || who != role {
			t.Fatalf("login %d after the role was recreated: %q, %v", i+2, who, err)
		}
	}
}

// loginRole creates role with password pw on e's server (dropped at the
// end of the test), checks that it logs in through the proxy, and returns
// a function that logs in as it anew and reports current_user.
func loginRole(ctx context.Context, t *testing.T, e *env, role, pw string) func() (string, error) {
	t.Helper()
	if err := e.pg.CreateRole(ctx, role, pw, false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.pg.Exec(context.Background(), "DROP ROLE IF EXISTS "+role) })
	whoAmI := func() (string, error) {
		c, err := pgx.Connect(ctx, e.dsn(role, pw, "app"))
		if err != nil {
			return "", err
		}
		defer c.Close(ctx)
		var who string
		err = c.QueryRow(ctx, "SELECT current_user").Scan(&who)
		return who, err
	}
	if who, err := whoAmI(); err != nil || who != role {
		t.Fatalf("%s logging in before: %q, %v", role, who, err)
	}
	return whoAmI
}
