package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// TestSessionSetIsolation: in transaction pooling a client's session-level
// SET (search_path, ROLE, a timeout), sent with the simple protocol, the
// extended one or as a statement pgx caches, never reaches another client
// that gets the same backend; the injected startup parameters and the
// other client's own settings stay; SET LOCAL needs no reset.
func TestSessionSetIsolation(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{mode: "transaction", size: 1})
	ctx := testCtx(t)
	d := e.direct(ctx)
	role := uniqueName("setrole")
	if _, err := d.Exec(ctx, "CREATE ROLE "+role); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = e.direct(testCtx(t)).Exec(testCtx(t), "DROP ROLE IF EXISTS "+role) })

	a := e.connect(ctx)
	b := e.connect(ctx, "application_name=bee", "timezone=Asia/Tokyo")
	if pa, pb := backendPID(ctx, t, a), backendPID(ctx, t, b); pa != pb {
		t.Fatalf("pool of one gave two backends: %d, %d", pa, pb)
	}
	show := func(c *pgx.Conn, what string) string {
		t.Helper()
		var v string
		if err := c.QueryRow(ctx, what, pgx.QueryExecModeSimpleProtocol).Scan(&v); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return v
	}
	defPath := show(b, "SHOW search_path")
	b0 := map[string]string{
		"SHOW search_path":       defPath,
		"SHOW statement_timeout": "0",
		"SELECT current_user":    "postgres",
		"SHOW plan_cache_mode":   "force_custom_plan",
		"SHOW application_name":  "bee",
		"SHOW TimeZone":          "Asia/Tokyo",
		"SHOW work_mem":          show(b, "SHOW work_mem"),
	}
	sets := []struct {
		name string
		run  func() error
	}{
		{"simple protocol", func() error {
			_, err := a.Exec(ctx, "SET search_path TO nowhere; SET statement_timeout = '4321ms'", pgx.QueryExecModeSimpleProtocol)
			return err
		}},
		{"extended protocol", func() error {
			_, err := a.Exec(ctx, "SET ROLE "+role, pgx.QueryExecModeExec)
			return err
		}},
		{"set_config", func() error {
			_, err := a.Exec(ctx, "SELECT set_config('role', $1, false), set_config('search_path', 'nowhere', false)", pgx.QueryExecModeExec, role)
			return err
		}},
		{"DO block", func() error {
			_, err := a.Exec(ctx, "DO $$ BEGIN EXECUTE 'SET statement_timeout = 4321'; END $$", pgx.QueryExecModeSimpleProtocol)
			return err
		}},
		{"SET after a long first statement", func() error {
			_, err := a.Exec(ctx, "SELECT '"+strings.Repeat("x", 3000)+"'; SET search_path TO nowhere", pgx.QueryExecModeSimpleProtocol)
			return err
		}},
		{"SET after a long comment, extended protocol", func() error {
			_, err := a.Exec(ctx, "/* "+strings.Repeat("x", 3000)+" */ SET ROLE "+role, pgx.QueryExecModeExec)
			return err
		}},
		{"SET in a query larger than the client buffer", func() error {
			_, err := a.Exec(ctx, "SELECT '"+strings.Repeat("x", 40000)+"'; SET statement_timeout = '4321ms'", pgx.QueryExecModeSimpleProtocol)
			return err
		}},
		{"cached statement", func() error {
			// Prepared once by pgx, then only bound and executed.
			for i := 0; i < 2; i++ {
				if _, err := a.Exec(ctx, "/* app */ SET work_mem = '77MB'", pgx.QueryExecModeCacheStatement); err != nil {
					return err
				}
				for q, want := range b0 {
					if got := show(b, q); got != want {
						t.Fatalf("cached statement, round %d: B's %s = %q, want %q", i, q, got, want)
					}
				}
			}
			return nil
		}},
	}
	for _, set := range sets {
		if err := set.run(); err != nil {
			t.Fatalf("%s: A's SET: %v", set.name, err)
		}
		for q, want := range b0 {
			if got := show(b, q); got != want {
				t.Errorf("%s: B's %s = %q after A's SET, want %q", set.name, q, got, want)
			}
		}
	}
	// A's own setting holds while nobody else used the backend.
	if _, err := a.Exec(ctx, "SET statement_timeout = '2345ms'", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	if got := show(a, "SHOW statement_timeout"); got != "2345ms" {
		t.Errorf("A's own SET, same backend, nobody between: %q", got)
	}
	// SET LOCAL ends with its transaction: no mark, B's settings untouched
	// and A's earlier SET not reset by it.
	tx, err := a.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SET LOCAL work_mem = '5MB'"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if got := show(a, "SHOW statement_timeout"); got != "2345ms" {
		t.Errorf("A's SET after its own SET LOCAL transaction: %q", got)
	}
}

// TestListenIsolation: in transaction pooling a client's LISTEN does not
// make another client that gets the same backend receive its
// notifications.
func TestListenIsolation(t *testing.T) {
	leakCheck(t)
	// Two backends: A keeps the one it listens on (TestListenTransactionPooling).
	e := startProxy(t, proxyOpts{mode: "transaction", size: 2})
	ctx := testCtx(t)
	a, b := e.connect(ctx), e.connect(ctx)
	if _, err := a.Exec(ctx, "LISTEN secret_channel"); err != nil {
		t.Fatal(err)
	}
	d := e.direct(ctx)
	defer d.Close(ctx)
	// B is in a transaction of its own while the notification commits.
	tx, err := b.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Exec(ctx, "NOTIFY secret_channel, 'for A only'"); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT pg_sleep(0.1)"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if n, err := b.WaitForNotification(wctx); err == nil {
		t.Fatalf("B received A's notification: %+v", n)
	}
}

// TestResetQueryAlwaysTransactionMode: with server_reset_query_always in
// transaction pooling, DISCARD ALL runs after every transaction, as
// PgBouncer does: a client's temp table, SQL prepared statement and
// advisory lock are gone before the next client gets the backend, and
// protocol-level prepared statements keep working.
func TestResetQueryAlwaysTransactionMode(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{mode: "transaction", size: 1, dbExtra: "[databases.app.pool]\nserver_reset_query_always = true\n"})
	ctx := testCtx(t)
	a := e.connect(ctx)
	for _, q := range []string{"CREATE TEMP TABLE leak_tt (x int)", "PREPARE leak_stmt AS SELECT 1", "SELECT pg_advisory_lock(777)"} {
		if _, err := a.Exec(ctx, q, pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	b := e.connect(ctx)
	var tt, ps, locks int
	if err := b.QueryRow(ctx, `SELECT (SELECT count(*) FROM pg_class WHERE relname = 'leak_tt'),
		(SELECT count(*) FROM pg_prepared_statements WHERE name = 'leak_stmt'),
		(SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid())`, pgx.QueryExecModeSimpleProtocol).Scan(&tt, &ps, &locks); err != nil {
		t.Fatal(err)
	}
	if tt != 0 || ps != 0 || locks != 0 {
		t.Fatalf("next client sees temp tables %d, SQL prepared %d, advisory locks %d", tt, ps, locks)
	}
	// pgx's statement cache: statements are prepared again after each reset.
	for i := 0; i < 3; i++ {
		var n int
		if err := b.QueryRow(ctx, "SELECT $1::int + 1", i).Scan(&n); err != nil || n != i+1 {
			t.Fatalf("cached statement, round %d: %d, %v", i, n, err)
		}
	}
}

// TestResetRestoresStartupSettings: in transaction pooling a client's
// RESET returns the backend to its own startup values; the client's
// startup settings (here search_path from options) are applied again, for
// it and for the next client with the same settings. Before, the proxy
// believed they were still in force, and both ran with the default path.
func TestResetRestoresStartupSettings(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{mode: "transaction", size: 1})
	ctx := testCtx(t)
	opts := "options=" + qEscape("-c search_path=tenant_s1")
	a := e.connect(ctx, opts)
	b := e.connect(ctx, opts)
	path := func(c *pgx.Conn) string {
		t.Helper()
		var v string
		if err := c.QueryRow(ctx, "SHOW search_path", pgx.QueryExecModeSimpleProtocol).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	if p := path(a); p != "tenant_s1" {
		t.Fatalf("A's startup search_path: %q", p)
	}
	for _, q := range []string{"RESET ALL", "RESET search_path"} {
		if _, err := a.Exec(ctx, q, pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatal(err)
		}
		if p := path(b); p != "tenant_s1" {
			t.Fatalf("after A's %s, B's search_path = %q, want tenant_s1", q, p)
		}
		if p := path(a); p != "tenant_s1" {
			t.Fatalf("after its own %s and another client, A's search_path = %q, want tenant_s1", q, p)
		}
	}
}

// TestClientResetReturnsToStartupSettings: on PostgreSQL, RESET and
// DISCARD ALL return settings to the values of the client's startup
// packet. pgrecycle applies those with SET, which RESET undoes, so it sets
// them again after the client's reset, in both pooling modes: RESET ALL
// and DISCARD ALL bring back every startup setting, RESET name only that
// one, and a setting the client changed itself is kept by RESET of
// another. The client's ParameterStatus view follows. Before, session
// pooling lost search_path and TimeZone at the first DISCARD ALL (what
// Npgsql's pool sends at reuse), and transaction pooling lost TimeZone.
//
// The resets run as simple queries, as statements pgx prepares by name
// (Parse in one round trip, Bind in the next) and as unnamed statements
// described first (two round trips, as asyncpg without a statement cache):
// a prepared reset takes effect at its Bind, not at its Parse.
func TestClientResetReturnsToStartupSettings(t *testing.T) {
	for _, mode := range []string{"session", "transaction"} {
		for _, exec := range []string{"simple_protocol", "cache_statement", "describe_exec"} {
			t.Run(mode+"/"+exec, func(t *testing.T) { testClientResetReturnsToStartupSettings(t, mode, exec) })
		}
	}
}

func testClientResetReturnsToStartupSettings(t *testing.T, mode, execMode string) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{mode: mode, size: 1})
	ctx := testCtx(t)
	c := e.connect(ctx, "options=-c%20search_path%3Dtenant_x%20-c%20TimeZone%3DAsia/Tokyo",
		"default_query_exec_mode="+execMode)
	defer c.Close(context.Background())
	check := func(step, wantPath, wantTZ string) {
		t.Helper()
		var path, tz string
		if err := c.QueryRow(ctx, "SHOW search_path").Scan(&path); err != nil {
			t.Fatal(err)
		}
		if err := c.QueryRow(ctx, "SHOW TimeZone").Scan(&tz); err != nil {
			t.Fatal(err)
		}
		if path != wantPath || tz != wantTZ {
			t.Fatalf("after %s: search_path = %q, TimeZone = %q; want %q, %q", step, path, tz, wantPath, wantTZ)
		}
		if got := c.PgConn().ParameterStatus("TimeZone"); got != wantTZ {
			t.Fatalf("after %s: the client was told TimeZone = %q, want %q", step, got, wantTZ)
		}
	}
	exec := func(sql string) {
		t.Helper()
		if execMode == "simple_protocol" || !strings.HasPrefix(sql, "RESET") {
			if _, err := c.Exec(ctx, sql); err != nil {
				t.Fatalf("%s: %v", sql, err)
			}
			return
		}
		// pgx runs a statement without arguments as a simple query: the
		// reset is prepared by hand, by name or unnamed, and bound in the
		// next round trip.
		name := "reset_stmt"
		if execMode == "describe_exec" {
			name = ""
		}
		if _, err := c.PgConn().Prepare(ctx, name, sql, nil); err != nil {
			t.Fatalf("prepare %s: %v", sql, err)
		}
		if r := c.PgConn().ExecPrepared(ctx, name, nil, nil, nil).Read(); r.Err != nil {
			t.Fatalf("%s: %v", sql, r.Err)
		}
		if name != "" {
			if err := c.PgConn().Deallocate(ctx, name); err != nil {
				t.Fatal(err)
			}
		}
	}
	check("login", "tenant_x", "Asia/Tokyo")
	exec("SET TimeZone = 'Europe/Paris'")
	exec("SET search_path = other")
	exec("RESET search_path")
	check("RESET search_path", "tenant_x", "Europe/Paris")
	exec("RESET ALL")
	check("RESET ALL", "tenant_x", "Asia/Tokyo")
	exec("SET TimeZone = 'Europe/Paris'")
	exec("RESET TimeZone")
	check("RESET TimeZone", "tenant_x", "Asia/Tokyo")
	// The other spellings of a reset (PostgreSQL's regression suite uses
	// them): before, the server's defaults stayed.
	for _, reset := range []string{"RESET TIME ZONE", "SET TIME ZONE DEFAULT", "SET TIME ZONE LOCAL", "SET SESSION TimeZone = DEFAULT", "SET TimeZone TO DEFAULT"} {
		exec("SET TimeZone = 'Europe/Paris'")
		exec(reset)
		check(reset, "tenant_x", "Asia/Tokyo")
	}
	exec("SET search_path = other")
	exec("SET search_path TO DEFAULT")
	check("SET search_path TO DEFAULT", "tenant_x", "Asia/Tokyo")
	exec("SET search_path = other")
	if execMode == "simple_protocol" { // DISCARD ALL drops pgx's statement cache under it
		exec("DISCARD ALL")
		check("DISCARD ALL", "tenant_x", "Asia/Tokyo")
	}
}

// TestSessionObjectsIsolation: in transaction pooling, a client's cursor
// WITH HOLD, temporary table and session-level advisory lock outlive its
// transactions on the backend; before, the next client on that backend
// could fetch the cursor, read the table and was blocked by the lock
// (found by the peer-suite helper). The backend is now reset first.
func TestSessionObjectsIsolation(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{mode: "transaction", size: 1})
	ctx := testCtx(t)
	a := e.connect(ctx, "default_query_exec_mode=simple_protocol")
	for _, sql := range []string{
		"DECLARE a_secret CURSOR WITH HOLD FOR SELECT 'private to a'::text",
		"CREATE TEMP TABLE a_private (v text)",
		"INSERT INTO a_private VALUES ('private to a')",
		"SELECT pg_advisory_lock(424242)",
	} {
		if _, err := a.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	a.Close(ctx)
	b := e.connect(ctx, "default_query_exec_mode=simple_protocol")
	defer b.Close(context.Background())
	var cursors, tables int
	if err := b.QueryRow(ctx, "SELECT (SELECT count(*) FROM pg_cursors), (SELECT count(*) FROM pg_class WHERE relname = 'a_private')").Scan(&cursors, &tables); err != nil {
		t.Fatal(err)
	}
	if cursors != 0 || tables != 0 {
		t.Fatalf("the next client sees %d cursors and %d temp tables of the previous one", cursors, tables)
	}
	// SELECT ... INTO TEMP creates a temporary table too.
	c := e.connect(ctx, "default_query_exec_mode=simple_protocol")
	if _, err := c.Exec(ctx, "SELECT 'private to c'::text AS v INTO TEMP c_selected"); err != nil {
		t.Fatal(err)
	}
	c.Close(ctx)
	if err := b.QueryRow(ctx, "SELECT count(*) FROM pg_class WHERE relname = 'c_selected'").Scan(&tables); err != nil || tables != 0 {
		t.Fatalf("the next client sees the previous one's SELECT INTO TEMP table (%d): %v", tables, err)
	}
	var locks int
	d := e.direct(ctx)
	defer d.Close(ctx)
	if err := d.QueryRow(ctx, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 424242").Scan(&locks); err != nil || locks != 0 {
		t.Fatalf("the previous client's advisory lock still held (%d): %v", locks, err)
	}
	// Temporary objects made without TEMP at the start, and a setting
	// changed through pg_settings (PostgreSQL's regression suite does
	// each): before, the next client saw them.
	for _, tc := range []struct{ sql, check string }{
		{"CREATE TABLE pg_temp.e_private AS SELECT 1 AS v", "SELECT count(*) FROM pg_class WHERE relname = 'e_private'"},
		{"CREATE OR REPLACE TEMP VIEW e_view AS SELECT 1 AS v", "SELECT count(*) FROM pg_class WHERE relname = 'e_view'"},
		{"EXPLAIN (ANALYZE, COSTS OFF) CREATE TEMP TABLE e_explained AS SELECT 1 AS v", "SELECT count(*) FROM pg_class WHERE relname = 'e_explained'"},
		{"UPDATE pg_settings SET setting = 'off' WHERE name = 'enable_seqscan'", "SELECT count(*) FROM pg_settings WHERE name = 'enable_seqscan' AND setting = 'off'"},
	} {
		c := e.connect(ctx, "default_query_exec_mode=simple_protocol")
		if _, err := c.Exec(ctx, tc.sql); err != nil {
			t.Fatalf("%s: %v", tc.sql, err)
		}
		c.Close(ctx)
		var n int
		if err := b.QueryRow(ctx, tc.check).Scan(&n); err != nil || n != 0 {
			t.Fatalf("after another client's %s, the next client's %s = %d, %v; want 0", tc.sql, tc.check, n, err)
		}
	}
}

// TestSQLPrepareClearedForNextClient: a client's SQL PREPARE stays on its
// backend after it disconnects; before, every later client's PREPARE of
// the same name failed with 42P05 (pgcat's "clears state before
// connection checkin", found by the peer-suite helper). The backend is
// now cleared with DEALLOCATE ALL before another client gets it, and the
// proxy's own statements there are prepared again as needed.
func TestSQLPrepareClearedForNextClient(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{mode: "transaction", size: 1})
	ctx := testCtx(t)
	for i := 0; i < 4; i++ {
		c := e.connect(ctx)
		// A protocol-level statement shared on the backend survives too.
		var n int
		if err := c.QueryRow(ctx, "SELECT $1::int * 2", i).Scan(&n); err != nil || n != 2*i {
			t.Fatalf("client %d, prepared by pgx: %d, %v", i, n, err)
		}
		if _, err := c.Exec(ctx, "PREPARE prepared_q (int) AS SELECT $1", pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		if err := c.QueryRow(ctx, "EXECUTE prepared_q(7)", pgx.QueryExecModeSimpleProtocol).Scan(&n); err != nil || n != 7 {
			t.Fatalf("client %d: EXECUTE: %d, %v", i, n, err)
		}
		c.Close(ctx)
	}
}

// TestSQLPrepareDeallocateAll: DEALLOCATE ALL removes the client's SQL
// PREPAREs, as on PostgreSQL, by simple query or extended protocol, and
// another client's shared statement on the backend is prepared again.
// Before, pgrecycle answered a simple DEALLOCATE ALL itself: the SQL
// PREPAREs stayed, and preparing one again failed with 42P05 (found by
// PostgreSQL's regression suite, test prepare).
func TestSQLPrepareDeallocateAll(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{mode: "transaction", size: 1})
	ctx := testCtx(t)
	c := e.connect(ctx)
	other := e.connect(ctx)
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
		var n int
		if err := other.QueryRow(ctx, "SELECT $1::int + 1", 1).Scan(&n); err != nil || n != 2 {
			t.Fatalf("another client's shared statement: %d, %v", n, err)
		}
		for _, sql := range []string{"PREPARE q1 AS SELECT 1", "PREPARE q2 AS SELECT 2", "DEALLOCATE ALL"} {
			if _, err := c.Exec(ctx, sql, mode); err != nil {
				t.Fatalf("%v: %s: %v", mode, sql, err)
			}
		}
		if err := c.QueryRow(ctx, "SELECT count(*) FROM pg_prepared_statements WHERE name IN ('q1', 'q2')", pgx.QueryExecModeSimpleProtocol).Scan(&n); err != nil || n != 0 {
			t.Fatalf("%v: SQL PREPAREs left after DEALLOCATE ALL: %d, %v", mode, n, err)
		}
		if _, err := c.Exec(ctx, "EXECUTE q1", pgx.QueryExecModeSimpleProtocol); sqlState(err) != "26000" {
			t.Fatalf("%v: EXECUTE after DEALLOCATE ALL: %v, want 26000", mode, err)
		}
		if _, err := c.Exec(ctx, "PREPARE q1 AS SELECT 1; DEALLOCATE q1", pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatalf("%v: PREPARE again after DEALLOCATE ALL: %v", mode, err)
		}
		if err := other.QueryRow(ctx, "SELECT $1::int + 1", 2).Scan(&n); err != nil || n != 3 {
			t.Fatalf("%v: another client's shared statement after DEALLOCATE ALL: %d, %v", mode, n, err)
		}
	}
}

// TestPinnedSessionObjects: in transaction pooling a client that takes a
// session-level advisory lock, declares a cursor WITH HOLD or creates a
// temporary table keeps its backend until they are gone, so it can use
// them in its later transactions while other clients use the other
// backends (Rails migrations, Django's iterator() outside a transaction,
// both found by the framework sweep); when it disconnects they are
// released at once. Before, its next transaction could land on another
// backend (the cursor or table "does not exist", the lock is not held),
// and the lock stayed held until another client got the backend.
func TestPinnedSessionObjects(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{mode: "transaction", size: 2, extra: metricsExtra})
	ctx := testCtx(t)
	d := e.direct(ctx)
	a := e.connect(ctx, "default_query_exec_mode=simple_protocol")
	b := e.connect(ctx, "default_query_exec_mode=simple_protocol")
	pinnedGauge := func() float64 {
		t.Helper()
		v, _ := sample(e.scrape(ctx), "pgrecycle_backends_pinned")
		return v
	}
	// busyOther has b hold a backend in a transaction: the one a just
	// used, unless a kept it.
	busyOther := func() pgx.Tx {
		t.Helper()
		tx, _ := beginOnBackend(ctx, t, b)
		return tx
	}
	for _, sql := range []string{
		"DECLARE pinned_cur CURSOR WITH HOLD FOR SELECT generate_series(1, 10)",
		"SELECT pg_advisory_lock(515151)",
		"CREATE TEMP TABLE pinned_tmp AS SELECT 42 AS v",
	} {
		if _, err := a.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	if n := pinnedGauge(); n != 1 {
		t.Fatalf("pgrecycle_backends_pinned = %v with a's objects held, want 1", n)
	}
	tx := busyOther()
	var first, v, locks int
	if err := a.QueryRow(ctx, "FETCH 1 FROM pinned_cur").Scan(&first); err != nil || first != 1 {
		t.Fatalf("FETCH from a's cursor in a later transaction: %d, %v", first, err)
	}
	if err := a.QueryRow(ctx, "SELECT v FROM pinned_tmp").Scan(&v); err != nil || v != 42 {
		t.Fatalf("a's temporary table in a later transaction: %d, %v", v, err)
	}
	if err := a.QueryRow(ctx, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 515151 AND pid = pg_backend_pid()").Scan(&locks); err != nil || locks != 1 {
		t.Fatalf("a's advisory lock on its backend in a later transaction: %d, %v", locks, err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	// Once all is gone, the backend goes back to the pool: two other
	// clients can each hold one.
	for _, sql := range []string{"CLOSE pinned_cur", "SELECT pg_advisory_unlock(515151)", "DROP TABLE pinned_tmp"} {
		if _, err := a.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	// (a has its reply before pgrecycle asks the backend.)
	for deadline := time.Now().Add(5 * time.Second); pinnedGauge() != 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("pgrecycle_backends_pinned stays above 0 once a's objects are gone")
		}
	}
	tx = busyOther()
	c := e.connect(ctx, "default_query_exec_mode=simple_protocol")
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	if _, err := c.Exec(wctx, "BEGIN; SELECT 1; COMMIT"); err != nil {
		t.Fatalf("a third client while a idles, its objects gone: %v (a's backend still pinned?)", err)
	}
	cancel()
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	// The same through the extended protocol, where the statement is
	// parsed in one round trip and bound in the next: named (pgx's
	// statement cache) and unnamed (describe-exec, as lib/pq).
	for i, mode := range []string{"cache_statement", "describe_exec"} {
		key := 515160 + i
		p := e.connect(ctx, "default_query_exec_mode="+mode)
		if _, err := p.Exec(ctx, "SELECT pg_advisory_lock($1)", key); err != nil {
			t.Fatal(err)
		}
		tx = busyOther()
		if err := p.QueryRow(ctx, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = $1 AND pid = pg_backend_pid()", key).Scan(&locks); err != nil || locks != 1 {
			t.Fatalf("%s: the advisory lock on the client's backend in a later transaction: %d, %v", mode, locks, err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Exec(ctx, "SELECT pg_advisory_unlock($1)", key); err != nil {
			t.Fatal(err)
		}
		p.Close(ctx)
	}
	// After a COPY FROM STDIN, whose replies a pump relays, the pin is
	// still checked at the end of the client's next transaction.
	if _, err := d.Exec(ctx, "CREATE TABLE pinned_copy (v int)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = d.Exec(context.Background(), "DROP TABLE pinned_copy") })
	if _, err := a.Exec(ctx, "SELECT pg_advisory_lock(515153)"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.PgConn().CopyFrom(ctx, strings.NewReader("1\n2\n"), "COPY pinned_copy FROM STDIN"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Exec(ctx, "SELECT pg_advisory_unlock(515153)"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); pinnedGauge() != 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("pgrecycle_backends_pinned stays above 0 after COPY FROM STDIN and the unlock")
		}
	}
	// A client that disconnects holding a lock releases it at once.
	if _, err := a.Exec(ctx, "SELECT pg_advisory_lock(515152)"); err != nil {
		t.Fatal(err)
	}
	a.Close(ctx)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if err := d.QueryRow(ctx, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 515152").Scan(&locks); err != nil {
			t.Fatal(err)
		}
		if locks == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the advisory lock of a disconnected client is still held")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestUnnamedSetBoundElsewhere: an unnamed statement that runs a session
// SET (lib/pq's db.Exec("SELECT set_config('search_path', $1, false)", x)),
// parsed in one round trip and bound in the next on another backend,
// marks that backend for the reset too. Before, only the backend of its
// Parse was marked, and the setting reached the next client of the other.
func TestUnnamedSetBoundElsewhere(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{mode: "transaction", size: 2})
	ctx := testCtx(t)
	p := e.connect(ctx)
	if _, err := p.PgConn().Prepare(ctx, "", "SELECT set_config('search_path', $1, false)", nil); err != nil {
		t.Fatal(err)
	}
	// Another client holds the backend p parsed on, so p's Bind runs on
	// the other one.
	tx, _ := beginOnBackend(ctx, t, e.connect(ctx))
	if r := p.PgConn().ExecPrepared(ctx, "", [][]byte{[]byte("evil_path")}, nil, nil).Read(); r.Err != nil {
		t.Fatal(r.Err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	// Two other clients in transactions at once cover both backends.
	var txs []pgx.Tx
	for i := 0; i < 2; i++ {
		tx, _ := beginOnBackend(ctx, t, e.connect(ctx))
		txs = append(txs, tx)
		var path string
		if err := tx.QueryRow(ctx, "SHOW search_path").Scan(&path); err != nil {
			t.Fatal(err)
		}
		if path == "evil_path" {
			t.Fatalf("client %d sees another client's search_path %q", i, path)
		}
	}
	for _, tx := range txs {
		_ = tx.Rollback(ctx)
	}
}

// TestListenTransactionPooling: a client's LISTEN works in transaction
// pooling as on PostgreSQL: the client keeps its backend while it
// listens, gets the notifications sent while it idles between
// transactions, and gives the backend back after UNLISTEN. Before, the
// backend went to the next client and was reset, and the notifications
// never came (pgx's TestListenNotify hung; found by the Go-suites sweep).
func TestListenTransactionPooling(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{mode: "transaction", size: 2})
	ctx := testCtx(t)
	listener, other := e.connect(ctx), e.connect(ctx)
	if _, err := listener.Exec(ctx, "LISTEN jobs"); err != nil {
		t.Fatal(err)
	}
	pid := backendPID(ctx, t, listener)
	for i := 0; i < 3; i++ {
		// The other client, on the other backend, notifies (in its own
		// transaction) while the listener idles.
		notifyAndWait(ctx, t, other, listener, "jobs", fmt.Sprint("job ", i))
		if got := backendPID(ctx, t, listener); got != pid {
			t.Fatalf("listening client moved from backend %d to %d", pid, got)
		}
		if got := backendPID(ctx, t, other); got == pid {
			t.Fatal("another client got the listening backend")
		}
	}
	if _, err := listener.Exec(ctx, "UNLISTEN jobs"); err != nil {
		t.Fatal(err)
	}
	// Unlistened, it gives the backend back: with the other client in a
	// transaction on one backend, a third client gets the other.
	tx, err := other.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	third := e.connect(ctx)
	qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	var one int
	if err := third.QueryRow(qctx, "SELECT 1").Scan(&one); err != nil {
		t.Fatalf("after UNLISTEN the backend stayed with the listener: %v", err)
	}
}

// TestListenWatchedNotPolled: a listening client idle between
// transactions on the backend it keeps waits for that backend's socket to
// speak, through the park set's watcher, instead of waking every 50 ms to
// look; the watch ends when the client stops keeping the backend, and with
// the session.
func TestListenWatchedNotPolled(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{mode: "transaction", size: 2})
	ctx := testCtx(t)
	watched := func(want int) {
		t.Helper()
		waitCount(t, "pinned backends watched", e.srv.WatchedPinnedBackends, want)
	}
	listener, other := e.connect(ctx), e.connect(ctx)
	if _, err := listener.Exec(ctx, "LISTEN watched"); err != nil {
		t.Fatal(err)
	}
	watched(1)
	if n := e.srv.ParkedClients(); n != 0 {
		t.Fatalf("%d parked clients: the watch is not a parked client", n)
	}
	for i := 0; i < 3; i++ {
		notifyAndWait(ctx, t, other, listener, "watched", fmt.Sprint(i))
		watched(1) // armed again for the next one
	}
	if _, err := listener.Exec(ctx, "UNLISTEN watched"); err != nil {
		t.Fatal(err)
	}
	watched(0)
	if _, err := listener.Exec(ctx, "LISTEN watched"); err != nil {
		t.Fatal(err)
	}
	watched(1)
	if err := listener.Close(ctx); err != nil {
		t.Fatal(err)
	}
	watched(0)
}

// TestListenInDoBlockTransactionPooling: a LISTEN inside a DO block
// (Postgrex's notifications re-listen that way after a reconnect) pins the
// backend as a plain LISTEN does. Before, the block was only reset away:
// the listener silently lost its channel. A DO block that leaves nothing
// behind gives the backend back at the end of its transaction.
func TestListenInDoBlockTransactionPooling(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{mode: "transaction", size: 2})
	ctx := testCtx(t)
	listener, other := e.connect(ctx), e.connect(ctx)
	if _, err := listener.Exec(ctx, `DO $$BEGIN LISTEN "do_jobs"; END$$`); err != nil {
		t.Fatal(err)
	}
	// The other client takes a backend in between, as a busy pool would.
	if _, err := other.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		notifyAndWait(ctx, t, other, listener, "do_jobs", fmt.Sprint("job ", i))
	}

	// Nothing left behind: a pool of one serves the next client at once.
	single := startProxy(t, proxyOpts{mode: "transaction", size: 1})
	a, b := single.connect(ctx), single.connect(ctx)
	if _, err := a.Exec(ctx, "DO $$BEGIN PERFORM 1; END$$"); err != nil {
		t.Fatal(err)
	}
	qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	var one int
	if err := b.QueryRow(qctx, "SELECT 1").Scan(&one); err != nil {
		t.Fatalf("a DO block that left nothing kept the backend: %v", err)
	}
}

// TestListenExtendedSplitTransactionPooling: a LISTEN sent with the
// extended protocol, its messages in separate writes (asyncpg's
// add_listener), pins the backend from the reply pump; the idle listener
// still gets its notifications within the pinned watch, not only at its
// next query (asyncpg's test_listeners hung 120 s).
func TestListenExtendedSplitTransactionPooling(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{mode: "transaction", size: 2})
	ctx := testCtx(t)
	fe, c := e.rawFrontend(t)
	defer c.Close()
	for _, m := range []pgproto3.FrontendMessage{
		&pgproto3.Parse{Query: "LISTEN split_jobs"},
		&pgproto3.Bind{},
		&pgproto3.Execute{},
		&pgproto3.Sync{},
	} {
		fe.Send(m)
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond) // each its own write, and seen alone
	}
	expectUntilReady(t, fe)
	other := e.connect(ctx)
	for i := 0; i < 2; i++ {
		if _, err := other.Exec(ctx, "SELECT pg_notify('split_jobs', $1)", fmt.Sprint("job ", i)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		m, err := fe.Receive()
		if err != nil {
			t.Fatalf("notification %d not delivered to the idle listener: %v", i, err)
		}
		n, ok := m.(*pgproto3.NotificationResponse)
		if !ok || n.Channel != "split_jobs" || n.Payload != fmt.Sprint("job ", i) {
			t.Fatalf("notification %d: got %#v", i, m)
		}
	}
}

// TestOwnNotificationPID: a notification a client sends itself carries the
// process ID its BackendKeyData gave (PQbackendPID, asyncpg's
// get_server_pid), as directly, so clients can tell their own apart; one
// from another client does not (asyncpg's test_listen_01, libpqxx's
// test_notification).
func TestOwnNotificationPID(t *testing.T) {
	leakCheck(t)
	forModes(t, proxyOpts{size: 2}, func(t *testing.T, e *env, mode string) {
		ctx := testCtx(t)
		listener, other := e.connect(ctx), e.connect(ctx)
		if _, err := listener.Exec(ctx, "LISTEN own_pid"); err != nil {
			t.Fatal(err)
		}
		wait := func(what string) *pgconn.Notification {
			t.Helper()
			wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			n, err := listener.WaitForNotification(wctx)
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			return n
		}
		if _, err := listener.Exec(ctx, "NOTIFY own_pid, 'self'"); err != nil {
			t.Fatal(err)
		}
		if n, key := wait("own notification"), listener.PgConn().PID(); n.Payload != "self" || n.PID != key {
			t.Fatalf("own notification %+v: PID %d, want the client's key PID %d", n, n.PID, key)
		}
		if _, err := other.Exec(ctx, "NOTIFY own_pid, 'other'"); err != nil {
			t.Fatal(err)
		}
		if n := wait("other's notification"); n.Payload != "other" || n.PID == listener.PgConn().PID() {
			t.Fatalf("another client's notification %+v carries the listener's own PID", n)
		}
	})
}

// TestPinnedTempTypesAndFunctions: a temporary type (enum, domain, range)
// or function has no pg_class row, yet pins its client's backend like a
// temporary table; before, the end-of-transaction check let the backend
// go, another client's reset dropped them, and the owner got 42704
// (tokio-postgres's custom_enum, custom_domain and custom_range tests).
func TestPinnedTempTypesAndFunctions(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{mode: "transaction", size: 2})
	ctx := testCtx(t)
	a := e.connect(ctx, "default_query_exec_mode=simple_protocol")
	b := e.connect(ctx, "default_query_exec_mode=simple_protocol")
	for _, sql := range []string{
		"CREATE TYPE pg_temp.mood AS ENUM ('sad', 'ok')",
		"CREATE DOMAIN pg_temp.posint AS int CHECK (VALUE > 0)",
		"CREATE FUNCTION pg_temp.twice(int) RETURNS int LANGUAGE sql AS 'SELECT $1 * 2'",
	} {
		if _, err := a.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	tx, otherPID := beginOnBackend(ctx, t, b) // on a's backend, were it let go
	defer tx.Rollback(ctx)
	var mood string
	var n, pid int
	if err := a.QueryRow(ctx, "SELECT 'ok'::mood::text, pg_temp.twice(21::posint), pg_backend_pid()").Scan(&mood, &n, &pid); err != nil || mood != "ok" || n != 42 {
		t.Fatalf("a's temporary type, domain and function in a later transaction: %q %d, %v", mood, n, err)
	}
	if pid == otherPID {
		t.Fatalf("a and b share backend %d", pid)
	}
}

// notifyAndWait has from notify channel with payload, and fails unless
// to receives that notification within 5 s.
func notifyAndWait(ctx context.Context, t *testing.T, from, to *pgx.Conn, channel, payload string) {
	t.Helper()
	if _, err := from.Exec(ctx, "SELECT pg_notify($1, $2)", channel, payload); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	n, err := to.WaitForNotification(wctx)
	if err != nil || n.Channel != channel || n.Payload != payload {
		t.Fatalf("notification %q on %q: %+v, %v", payload, channel, n, err)
	}
}
