package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
)

// TestSessionSetsFollowClient: in transaction pooling a client's
// session-level SETs (search_path, a custom setting, SET ROLE), sent
// outside a transaction, hold on the next backend it gets, while the
// backend it ran them on is reset before another client uses it. RESET
// drops one; a SET inside a transaction block that rolled back, and one
// that failed, are not carried. Before, the client lost them as soon as
// another client had used its backend: its search_path went back to the
// default and SET ROLE was undone (the client ran with the login role's
// privileges again).
func TestSessionSetsFollowClient(t *testing.T) {
	leakCheck(t)
	ctx := testCtx(t)
	e := startProxy(t, proxyOpts{size: 2})
	role := uniqueName("carry_r")
	if err := e.pg.Exec(ctx, "CREATE ROLE "+role); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.pg.Exec(context.Background(), "DROP ROLE IF EXISTS "+role) })

	a := e.connect(ctx)
	defer a.Close(ctx)
	other := e.connect(ctx)
	defer other.Close(ctx)
	simple := pgx.QueryExecModeSimpleProtocol
	exec := func(c *pgx.Conn, sql string) {
		t.Helper()
		if _, err := c.Exec(ctx, sql, simple); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	type view struct{ path, tenant, user string }
	look := func(c *pgx.Conn) (v view) {
		t.Helper()
		if err := c.QueryRow(ctx, "SELECT current_setting('search_path'), coalesce(current_setting('app.tenant', true), ''), current_user", simple).
			Scan(&v.path, &v.tenant, &v.user); err != nil {
			t.Fatal(err)
		}
		return v
	}
	pid := func(c *pgx.Conn) (p int) {
		t.Helper()
		if err := c.QueryRow(ctx, "SELECT pg_backend_pid()", simple).Scan(&p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	defaults := look(other)

	exec(a, "SET search_path TO carried_schema, public")
	exec(a, "SET app.tenant = '42' -- a comment ends the statement")
	exec(a, "SET ROLE "+role)
	ranOn := pid(a)
	want := view{"carried_schema, public", "42", role}
	if got := look(a); got != want {
		t.Fatalf("on the backend that ran the SETs: %+v, want %+v", got, want)
	}

	// other takes that backend (the most recently used) and keeps it in a
	// transaction: it sees none of a's settings, and a moves to the other.
	exec(other, "BEGIN")
	if p := pid(other); p != ranOn {
		t.Fatalf("other got backend %d, want a's %d (LIFO)", p, ranOn)
	}
	if got := look(other); got != defaults {
		t.Fatalf("the next client of a's backend sees %+v, want the defaults %+v", got, defaults)
	}
	if p := pid(a); p == ranOn {
		t.Fatal("a kept its backend while other holds it")
	}
	if got := look(a); got != want {
		t.Fatalf("a on another backend: %+v, want its settings %+v", got, want)
	}
	exec(other, "COMMIT")

	// RESET drops one setting; a rolled-back SET and a failed one are not
	// carried. other again takes a's last backend each time, so a's next
	// query runs where its settings must be applied anew.
	exec(a, "RESET search_path")
	exec(a, "BEGIN")
	exec(a, "SET app.tenant = 'rolled back'")
	exec(a, "ROLLBACK")
	if _, err := a.Exec(ctx, "SET no_such_setting_anywhere = 1", simple); err == nil {
		t.Fatal("an unknown setting was accepted")
	}
	exec(other, "BEGIN")
	want = view{defaults.path, "42", role}
	if got := look(a); got != want {
		t.Fatalf("after RESET, a rolled-back SET and a failed one: %+v, want %+v", got, want)
	}
	exec(other, "COMMIT")

	// The extended protocol (an unnamed Parse, as psycopg 3 and pgjdbc send
	// SET) is carried too.
	fe, c := e.rawFrontend(t)
	defer c.Close()
	fe.SendParse(&pgproto3.Parse{Query: "SET search_path TO raw_schema"})
	fe.SendBind(&pgproto3.Bind{})
	fe.SendExecute(&pgproto3.Execute{})
	fe.SendSync(&pgproto3.Sync{})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	expectUntilReady(t, fe)
	exec(other, "BEGIN")
	fe.SendQuery(&pgproto3.Query{String: "SELECT current_setting('search_path')"})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	var path string
	for {
		m, err := fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		if d, ok := m.(*pgproto3.DataRow); ok {
			path = string(d.Values[0])
		}
		if _, ok := m.(*pgproto3.ReadyForQuery); ok {
			break
		}
	}
	if path != "raw_schema" {
		t.Fatalf("extended-protocol SET on another backend: search_path %q, want raw_schema", path)
	}
	exec(other, "COMMIT")
}

// TestSessionSetsSharedWithoutReset: clients that ran the same SETs (an
// application setting search_path at connect) take over each other's
// backends without a reset or a replay; a client with other settings, or
// none, gets the backend reset first.
func TestSessionSetsSharedWithoutReset(t *testing.T) {
	leakCheck(t)
	ctx := testCtx(t)
	e := startProxy(t, proxyOpts{size: 2})
	simple := pgx.QueryExecModeSimpleProtocol
	resets := func() int { return e.logs.FilterMessage("resetting the server connection's session state").Len() }
	pathOf := func(c *pgx.Conn) (path string, pid int) {
		t.Helper()
		if err := c.QueryRow(ctx, "SELECT current_setting('search_path'), pg_backend_pid()", simple).Scan(&path, &pid); err != nil {
			t.Fatal(err)
		}
		return path, pid
	}
	a, b, plain := e.connect(ctx), e.connect(ctx), e.connect(ctx)
	defer a.Close(ctx)
	defer b.Close(ctx)
	defer plain.Close(ctx)
	for _, c := range []*pgx.Conn{a, b} {
		if _, err := c.Exec(ctx, "SET search_path TO app_schema, public", simple); err != nil {
			t.Fatal(err)
		}
	}
	_, aPID := pathOf(a)
	before := resets()
	path, bPID := pathOf(b) // the most recently used backend: a's
	if bPID != aPID || path != "app_schema, public" {
		t.Fatalf("b on backend %d (a's %d) with search_path %q", bPID, aPID, path)
	}
	if n := resets() - before; n != 0 {
		t.Fatalf("%d resets for a client with the same settings, want none", n)
	}
	if path, _ := pathOf(plain); path == "app_schema, public" {
		t.Fatal("a client without the SET sees it")
	}
	if n := resets() - before; n != 1 {
		t.Fatalf("%d resets for a client without the settings, want 1", n)
	}
}

// TestSessionSetOverStartupOption: a client's own SET of a setting it also
// gave at startup (options=-c search_path=...) wins on every backend, as
// on PostgreSQL, where the later SET replaces the startup value: the
// startup settings are applied first and the carried SET after them.
func TestSessionSetOverStartupOption(t *testing.T) {
	leakCheck(t)
	ctx := testCtx(t)
	e := startProxy(t, proxyOpts{size: 2})
	simple := pgx.QueryExecModeSimpleProtocol
	a := e.connect(ctx, "options=-c%20search_path%3Dstartup_schema")
	other := e.connect(ctx)
	exec := func(c *pgx.Conn, sql string) {
		t.Helper()
		if _, err := c.Exec(ctx, sql, simple); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	pathOf := func(c *pgx.Conn) (path string) {
		t.Helper()
		if err := c.QueryRow(ctx, "SELECT current_setting('search_path')", simple).Scan(&path); err != nil {
			t.Fatal(err)
		}
		return path
	}
	// elsewhere: other takes a's backend and holds it, so a's query runs
	// on a backend that gets a's startup settings and then its SETs.
	elsewhere := func(after, want string) {
		t.Helper()
		exec(other, "BEGIN")
		if p := pathOf(a); p != want {
			t.Fatalf("after %s, on another backend: search_path %q, want %q", after, p, want)
		}
		exec(other, "COMMIT")
	}
	if p := pathOf(a); p != "startup_schema" {
		t.Fatalf("startup option: search_path %q", p)
	}
	exec(a, "SET search_path TO own_schema")
	elsewhere("the client's own SET", "own_schema")
	// SET ... TO DEFAULT returns to the startup value, here and elsewhere.
	exec(a, "SET search_path TO DEFAULT")
	elsewhere("SET search_path TO DEFAULT", "startup_schema")
}

// TestSessionSetNamedStatementFollowsClient: a SET the client runs as a
// named prepared statement (pgjdbc does, from a statement's fifth use, or
// at once with prepareThreshold=-1) follows it to its next backends like
// one sent as a query; before, it was reset away and the client silently
// ran with its old search_path or isolation level.
func TestSessionSetNamedStatementFollowsClient(t *testing.T) {
	leakCheck(t)
	ctx := testCtx(t)
	e := startProxy(t, proxyOpts{size: 2})
	a, other := e.connect(ctx), e.connect(ctx)
	for i, stmt := range []string{
		"SET search_path TO carried_named, public",
		"SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE",
	} {
		name := fmt.Sprintf("named_set_%d", i)
		if _, err := a.PgConn().Prepare(ctx, name, stmt, nil); err != nil {
			t.Fatal(err)
		}
		if r := a.PgConn().ExecPrepared(ctx, name, nil, nil, nil).Read(); r.Err != nil {
			t.Fatalf("%s: %v", stmt, r.Err)
		}
	}
	for i := 0; i < 2; i++ {
		// other holds the backend a used; a runs on the other one.
		tx, pidOther := beginOnBackend(ctx, t, other)
		var path, iso string
		var pid int
		if err := a.QueryRow(ctx, "SELECT current_setting('search_path'), current_setting('transaction_isolation'), pg_backend_pid()", pgx.QueryExecModeSimpleProtocol).Scan(&path, &iso, &pid); err != nil {
			t.Fatal(err)
		}
		if pid == pidOther {
			t.Fatalf("a and other share backend %d", pid)
		}
		if path != "carried_named, public" || iso != "serializable" {
			t.Fatalf("round %d, backend %d: search_path %q, isolation %q; want the named statements' SETs", i, pid, path, iso)
		}
		var otherPath string
		if err := tx.QueryRow(ctx, "SHOW search_path", pgx.QueryExecModeSimpleProtocol).Scan(&otherPath); err != nil || strings.Contains(otherPath, "carried_named") {
			t.Fatalf("other sees search_path %q, %v", otherPath, err)
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
	}
}
