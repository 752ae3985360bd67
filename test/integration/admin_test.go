package integration

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	"github.com/pgrecycle/pgrecycle/test/pgtest"
)

// TestAdminConsolePsql drives the console with psql after known pgx
// traffic and checks every SHOW command's columns and the counts.
func TestAdminConsolePsql(t *testing.T) {
	leakCheck(t)
	ctx := testCtx(t)
	role, pw := poolRole(ctx, t)
	e := startProxy(t, proxyOpts{size: 4, dbUser: role, users: map[string]string{role: pw}})

	// Three clients: a and b idle after some queries, c inside a
	// transaction (holding a backend).
	a, b, c := e.connect(ctx), e.connect(ctx), e.connect(ctx)
	for i := 0; i < 5; i++ {
		for _, conn := range []*pgx.Conn{a, b} {
			if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
				t.Fatal(err)
			}
		}
	}
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	var txPID uint32
	if err := tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&txPID); err != nil {
		t.Fatal(err)
	}

	// Let connects in flight (replacements opened ahead) settle.
	var pools adminTable
	for deadline := time.Now().Add(5 * time.Second); ; {
		pools = e.mustPsqlAdmin(ctx, "SHOW POOLS")
		if r, ok := pools.find("database", "app"); !ok || r["sv_login"] == "0" || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	sameCols(t, "SHOW POOLS", pools.cols, "database", "user", "cl_active", "cl_waiting", "sv_active", "sv_idle",
		"sv_login", "maxwait", "maxwait_us", "pool_mode", "pool_size")
	row, ok := pools.find("database", "app", "user", role)
	if !ok {
		t.Fatalf("SHOW POOLS has no app/%s row:\n%s", role, pools)
	}
	want := map[string]string{"cl_active": "3", "cl_waiting": "0", "sv_active": "1", "sv_login": "0",
		"maxwait": "0", "pool_mode": "transaction", "pool_size": "4"}
	for k, v := range want {
		if row[k] != v {
			t.Errorf("SHOW POOLS %s = %q, want %q\n%s", k, row[k], v, pools)
		}
	}
	if n := atoi(t, row["sv_idle"]); n < 0 || n > 3 {
		t.Errorf("sv_idle = %d", n)
	}

	// Case, spacing and a trailing semicolon don't matter.
	if again := e.mustPsqlAdmin(ctx, "  show   pools ;"); len(again.rows) != len(pools.rows) {
		t.Errorf("'show pools;' gave %d rows, SHOW POOLS %d", len(again.rows), len(pools.rows))
	}

	clients := e.mustPsqlAdmin(ctx, "SHOW CLIENTS")
	sameCols(t, "SHOW CLIENTS", clients.cols, "user", "database", "state", "addr", "port", "local_addr", "local_port",
		"connect_time", "wait", "wait_us", "application_name", "queries", "transactions", "server_pid")
	var appClients, active int
	for _, r := range clients.rows {
		switch r["database"] {
		case "app":
			appClients++
			if r["user"] != "postgres" || r["addr"] != "127.0.0.1" || r["port"] == "" {
				t.Errorf("client row %v", r)
			}
			if r["state"] == "active" {
				active++
				if r["server_pid"] != strconv.Itoa(int(txPID)) {
					t.Errorf("active client's server_pid = %q, want %d", r["server_pid"], txPID)
				}
			} else if r["state"] != "idle" || r["server_pid"] != "" {
				t.Errorf("idle client row %v", r)
			}
		case "pgrecycle":
			if r["user"] != "admin" || r["state"] != "active" {
				t.Errorf("admin client row %v", r)
			}
		default:
			t.Errorf("unexpected client row %v", r)
		}
	}
	if appClients != 3 || active != 1 {
		t.Errorf("SHOW CLIENTS: %d app clients, %d active; want 3 and 1\n%s", appClients, active, clients)
	}
	var queries int64
	for _, r := range clients.rows {
		if r["database"] == "app" {
			queries += atoi(t, r["queries"])
		}
	}
	if queries < 11 {
		t.Errorf("SHOW CLIENTS queries sum = %d, want >= 11", queries)
	}

	servers := e.mustPsqlAdmin(ctx, "SHOW SERVERS")
	sameCols(t, "SHOW SERVERS", servers.cols, "database", "user", "pid", "state", "connect_time", "age", "queries",
		"transactions", "memory_bytes", "memory_sampled_at", "retire_at", "retiring")
	d := e.direct(ctx)
	rows, err := d.Query(ctx, "SELECT pid FROM pg_stat_activity WHERE usename = $1 ORDER BY pid", role)
	if err != nil {
		t.Fatal(err)
	}
	pgPIDs, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	var adminPIDs []int64
	for _, r := range servers.rows {
		adminPIDs = append(adminPIDs, atoi(t, r["pid"]))
		if r["database"] != "app" || r["user"] != role || r["connect_time"] == "" || r["retire_at"] == "" {
			t.Errorf("server row %v", r)
		}
		if wantState := map[bool]string{true: "active", false: "idle"}[r["pid"] == strconv.Itoa(int(txPID))]; r["state"] != wantState {
			t.Errorf("server %s state %q, want %q", r["pid"], r["state"], wantState)
		}
	}
	slices.Sort(adminPIDs)
	if !slices.Equal(adminPIDs, pgPIDs) {
		t.Errorf("SHOW SERVERS pids %v, pg_stat_activity %v", adminPIDs, pgPIDs)
	}

	stats := e.mustPsqlAdmin(ctx, "SHOW STATS")
	sameCols(t, "SHOW STATS", stats.cols, "database", "total_xact_count", "total_query_count", "total_received",
		"total_sent", "total_xact_time", "total_query_time", "total_wait_time", "avg_xact_count", "avg_query_count",
		"avg_recv", "avg_sent", "avg_xact_time", "avg_query_time", "avg_wait_time")
	st, ok := stats.find("database", "app")
	if !ok {
		t.Fatalf("SHOW STATS has no app row:\n%s", stats)
	}
	// total_received and total_sent stay 0 until the session counts its
	// client bytes (proxy/inspect.go, byteCounts).
	if atoi(t, st["total_query_count"]) < 11 || atoi(t, st["total_xact_count"]) < 10 ||
		atoi(t, st["total_received"]) < 0 || atoi(t, st["total_sent"]) < 0 {
		t.Errorf("SHOW STATS app row %v", st)
	}

	ret := e.mustPsqlAdmin(ctx, "SHOW RETIREMENTS")
	sameCols(t, "SHOW RETIREMENTS", ret.cols, "database", "user", "reason", "count")

	dbs := e.mustPsqlAdmin(ctx, "SHOW DATABASES")
	sameCols(t, "SHOW DATABASES", dbs.cols, "name", "host", "port", "database", "force_user", "pool_size",
		"min_pool_size", "reserve_pool", "server_lifetime", "pool_mode", "max_connections", "current_connections", "max_client_connections",
		"current_client_connections", "paused", "disabled")
	if r, ok := dbs.find("name", "app"); !ok || r["database"] != "postgres" || r["force_user"] != role || r["paused"] != "0" ||
		r["server_lifetime"] != "3600" || r["reserve_pool"] != "0" {
		t.Errorf("SHOW DATABASES:\n%s", dbs)
	}

	lists := e.mustPsqlAdmin(ctx, "SHOW LISTS")
	sameCols(t, "SHOW LISTS", lists.cols, "list", "items")
	if r, ok := lists.find("list", "used_clients"); !ok || r["items"] != "1" {
		t.Errorf("SHOW LISTS:\n%s", lists)
	}
	if r, ok := lists.find("list", "free_clients"); !ok || r["items"] != "2" {
		t.Errorf("SHOW LISTS:\n%s", lists)
	}

	ver := e.mustPsqlAdmin(ctx, "SHOW VERSION")
	sameCols(t, "SHOW VERSION", ver.cols, "version")
	if len(ver.rows) != 1 || ver.rows[0]["version"] != "pgrecycle test" {
		t.Errorf("SHOW VERSION:\n%s", ver)
	}

	help := e.mustPsqlAdmin(ctx, "SHOW HELP")
	sameCols(t, "SHOW HELP", help.cols, "command", "description")
	for _, cmd := range []string{"SHOW POOLS", "SHOW SERVERS", "SHOW RETIREMENTS", "RELOAD", "PAUSE [db]", "RESUME [db]", "RECYCLE [db]", "SHUTDOWN"} {
		if _, ok := help.find("command", cmd); !ok {
			t.Errorf("SHOW HELP lacks %s", cmd)
		}
	}

	cfg := e.mustPsqlAdmin(ctx, "SHOW CONFIG")
	sameCols(t, "SHOW CONFIG", cfg.cols, "key", "value", "default", "changed")

	// Mistakes get an ERROR and the session goes on.
	_, stderr, code := e.psqlAdmin(ctx, "admin", "SHOW NOTHING")
	if code == 0 || !strings.Contains(stderr, "unknown SHOW subject") {
		t.Errorf("SHOW NOTHING: exit %d, stderr %q", code, stderr)
	}
	_, stderr, code = e.psqlAdmin(ctx, "admin", "DROP TABLE x")
	if code == 0 || !strings.Contains(stderr, "SHOW HELP") {
		t.Errorf("DROP TABLE: exit %d, stderr %q", code, stderr)
	}

	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestAdminRefusesOthers: only auth.admin_users get in, with 42501.
func TestAdminRefusesOthers(t *testing.T) {
	leakCheck(t)
	ctx := testCtx(t)
	e := startProxy(t, proxyOpts{})
	_, err := pgx.Connect(ctx, e.dsn("postgres", "x", "pgrecycle"))
	if errCode(err) != "42501" {
		t.Fatalf("non-admin login to the console: %v, want 42501", err)
	}
	_, stderr, code := e.psqlAdmin(ctx, "someone", "SHOW POOLS")
	if code == 0 || !strings.Contains(stderr, "not allowed on the admin console") {
		t.Fatalf("psql as non-admin: exit %d, %q", code, stderr)
	}
	// The admin gets in.
	c := e.adminConn(ctx)
	if _, err := adminQuery(ctx, c, "SHOW VERSION"); err != nil {
		t.Fatal(err)
	}
}

// TestAdminShowConfig: flattened keys with defaults, and no password.
func TestAdminShowConfig(t *testing.T) {
	leakCheck(t)
	ctx := testCtx(t)
	e := startProxy(t, proxyOpts{size: 3})
	if e.pg.SuperPassword == "" {
		t.Fatal("the test needs the superuser password in [databases.app]")
	}
	c := e.adminConn(ctx)
	cfg := e.mustAdminQuery(ctx, c, "SHOW CONFIG;")
	for _, r := range cfg.rows {
		for col, v := range r {
			if strings.Contains(v, e.pg.SuperPassword) {
				t.Errorf("SHOW CONFIG shows the password in %s of %s", col, r["key"])
			}
		}
	}
	psqlCfg := e.mustPsqlAdmin(ctx, "SHOW CONFIG")
	if strings.Contains(psqlCfg.String(), e.pg.SuperPassword) {
		t.Error("SHOW CONFIG through psql shows the password")
	}
	want := []struct{ key, value, def, changed string }{
		{"databases.app.password", "***", "", ""},
		{"databases.app.user", e.pg.SuperUser, "", ""},
		{"pool.size", "3", "20", "yes"},
		{"databases.app.pool.size", "3", "20", "yes"},
		{"pool.mode", "transaction", "transaction", ""},
		{"recycle.max_lifetime", "1h", "1h", ""},
		{"auth.admin_users", `["admin"]`, "[]", "yes"},
		{"parameters.plan_cache_mode", "force_custom_plan", "", ""},
		{"metrics.addr", "", "", ""},
	}
	for _, w := range want {
		r, ok := cfg.find("key", w.key)
		if !ok {
			t.Errorf("SHOW CONFIG lacks %s", w.key)
			continue
		}
		if r["value"] != w.value || r["default"] != w.def || r["changed"] != w.changed {
			t.Errorf("SHOW CONFIG %s = %v, want value %q default %q changed %q", w.key, r, w.value, w.def, w.changed)
		}
	}
}

// TestAdminRecycle: RECYCLE retires idle backends now and busy ones at
// their release; the next query runs on a new backend.
func TestAdminRecycle(t *testing.T) {
	leakCheck(t)
	ctx := testCtx(t)
	e := startProxy(t, proxyOpts{size: 2})
	a, b := e.connect(ctx), e.connect(ctx)

	// b holds a backend in a transaction across the RECYCLE; a's backend
	// is idle then.
	tx, err := b.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	var busyPID uint32
	if err := tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&busyPID); err != nil {
		t.Fatal(err)
	}
	before := adminBackendPID(ctx, t, a)
	if before == busyPID {
		t.Fatal("two clients on one backend")
	}

	admin := e.adminConn(ctx)
	tag, err := adminExec(ctx, admin, "RECYCLE app")
	if err != nil || tag != "RECYCLE" {
		t.Fatalf("RECYCLE: %q, %v", tag, err)
	}
	servers := e.mustAdminQuery(ctx, admin, "SHOW SERVERS")
	if r, ok := servers.find("pid", strconv.Itoa(int(busyPID))); !ok || r["retiring"] != "1" || r["state"] != "active" {
		t.Errorf("busy backend after RECYCLE:\n%s", servers)
	}
	if after := adminBackendPID(ctx, t, a); after == before || after == busyPID {
		t.Errorf("after RECYCLE the query ran on pid %d (before %d, busy %d)", after, before, busyPID)
	}
	// The busy backend finishes its transaction, then retires.
	var again uint32
	if err := tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&again); err != nil || again != busyPID {
		t.Fatalf("transaction moved to pid %d (%v), want %d", again, err, busyPID)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if p := adminBackendPID(ctx, t, b); p == busyPID {
		t.Errorf("the busy backend %d was reused after its release", busyPID)
	}
	// The busy backend retires when the pump releases it, just after the
	// client got its ReadyForQuery.
	deadline := time.Now().Add(5 * time.Second)
	for {
		ret := e.mustAdminQuery(ctx, admin, "SHOW RETIREMENTS")
		if r, ok := ret.find("database", "app", "reason", "admin"); ok && atoi(t, r["count"]) >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SHOW RETIREMENTS after RECYCLE:\n%s", ret)
		}
		time.Sleep(10 * time.Millisecond)
	}
	d := e.direct(ctx)
	deadline = time.Now().Add(5 * time.Second)
	for {
		var alive bool
		if err := d.QueryRow(ctx, "SELECT count(*) > 0 FROM pg_stat_activity WHERE pid = ANY($1)",
			[]int64{int64(before), int64(busyPID)}).Scan(&alive); err != nil {
			t.Fatal(err)
		}
		if !alive {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("retired backends %d and %d still in pg_stat_activity", before, busyPID)
		}
		time.Sleep(20 * time.Millisecond)
	}

	if _, err := adminExec(ctx, admin, "RECYCLE nosuchdb"); errCode(err) != "3D000" {
		t.Errorf("RECYCLE nosuchdb: %v, want 3D000", err)
	}
	// Without a database: every pool.
	if tag, err := adminExec(ctx, admin, "recycle"); err != nil || tag != "RECYCLE" {
		t.Errorf("recycle: %q, %v", tag, err)
	}
}

// TestAdminReload: RELOAD applies a new pool size; a broken file is
// refused and the old configuration stays.
func TestAdminReload(t *testing.T) {
	leakCheck(t)
	ctx := testCtx(t)
	e := startProxy(t, proxyOpts{size: 3})
	c := e.connect(ctx)
	if _, err := c.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	e.editConfig(func(s string) string { return strings.Replace(s, "size = 3", "size = 7", 1) })
	out, stderr, code := e.psqlAdmin(ctx, "admin", "RELOAD")
	if code != 0 {
		t.Fatalf("RELOAD: exit %d: %s %v", code, stderr, out)
	}
	admin := e.adminConn(ctx)
	pools := e.mustAdminQuery(ctx, admin, "SHOW POOLS")
	if r, ok := pools.find("database", "app"); !ok || r["pool_size"] != "7" {
		t.Errorf("pool size after RELOAD:\n%s", pools)
	}
	if e.srv.Config().Pool.Size != 7 {
		t.Errorf("config pool.size = %d after RELOAD", e.srv.Config().Pool.Size)
	}

	e.editConfig(func(s string) string { return strings.Replace(s, "size = 7", "size = \"many\"", 1) })
	if _, err := adminExec(ctx, admin, "RELOAD"); errCode(err) != "F0000" {
		t.Errorf("RELOAD of a broken file: %v, want F0000", err)
	}
	if e.srv.Config().Pool.Size != 7 {
		t.Errorf("a broken file changed pool.size to %d", e.srv.Config().Pool.Size)
	}
	// The client was never dropped.
	if _, err := c.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}

	// A listener address can't move on reload: said so, and the old one
	// keeps serving.
	e.editConfig(func(s string) string {
		s = strings.Replace(s, "size = \"many\"", "size = 7", 1)
		return strings.Replace(s, `addr = "127.0.0.1:0"`, `addr = "127.0.0.1:1"`, 1)
	})
	if _, err := adminExec(ctx, admin, "RELOAD"); err != nil {
		t.Fatalf("RELOAD with a new listen.addr: %v", err)
	}
	warned := e.logs.FilterMessageSnippet("takes effect at the next start").FilterField(zap.String("key", "listen.addr"))
	if warned.Len() != 1 {
		t.Errorf("%d warnings naming listen.addr after its reload, want 1", warned.Len())
	}
	if _, err := e.connect(ctx).Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("new client on the old address after the reload: %v", err)
	}
}

// TestAdminPauseResume: PAUSE waits for running transactions and is shown
// in SHOW DATABASES; RESUME undoes it.
func TestAdminPauseResume(t *testing.T) {
	leakCheck(t)
	ctx := testCtx(t)
	e := startProxy(t, proxyOpts{size: 2})
	c := e.connect(ctx)
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}

	admin := e.adminConn(ctx)
	done := make(chan error, 1)
	go func() {
		tag, err := adminExec(ctx, admin, "PAUSE app")
		if err == nil && tag != "PAUSE" {
			err = fmt.Errorf("tag %q", tag)
		}
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("PAUSE returned while a transaction runs: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	if !e.srv.Paused("app") {
		t.Error("Paused(app) is false during PAUSE")
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("PAUSE: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("PAUSE did not return after the transaction ended")
	}
	dbs := e.mustPsqlAdmin(ctx, "SHOW DATABASES")
	if r, ok := dbs.find("name", "app"); !ok || r["paused"] != "1" {
		t.Errorf("SHOW DATABASES while paused:\n%s", dbs)
	}
	// A client's query held by the pause is shown waiting, as in
	// PgBouncer (cl_waiting, maxwait): operators watch it in a switchover.
	held := make(chan error, 1)
	go func() {
		_, err := c.Exec(context.Background(), "SELECT 1")
		held <- err
	}()
	e.waitPoolWaiting(ctx, t, "1")
	if r, _ := e.mustPsqlAdmin(ctx, "SHOW POOLS").find("database", "app"); r["cl_active"] != "0" {
		t.Fatalf("SHOW POOLS with a query held by PAUSE: cl_active %s, want 0", r["cl_active"])
	}
	if tag, err := adminExec(ctx, admin, "RESUME app"); err != nil || tag != "RESUME" {
		t.Fatalf("RESUME: %q %v", tag, err)
	}
	if err := <-held; err != nil {
		t.Fatalf("the query held by PAUSE, after RESUME: %v", err)
	}
	if e.srv.Paused("app") {
		t.Error("still paused after RESUME")
	}
	if _, err := adminExec(ctx, admin, "RESUME app"); err == nil {
		t.Error("RESUME of a database not paused succeeded")
	}
	if _, err := adminExec(ctx, admin, "PAUSE nosuchdb"); errCode(err) != "3D000" {
		t.Errorf("PAUSE nosuchdb: %v, want 3D000", err)
	}
	// PAUSE and RESUME of everything.
	if tag, err := adminExec(ctx, admin, "PAUSE"); err != nil || tag != "PAUSE" {
		t.Fatalf("PAUSE: %q %v", tag, err)
	}
	if !e.srv.Paused("app") {
		t.Error("PAUSE without a database did not pause app")
	}
	if tag, err := adminExec(ctx, admin, "RESUME"); err != nil || tag != "RESUME" {
		t.Fatalf("RESUME: %q %v", tag, err)
	}
	if _, err := c.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
}

// TestAdminExtendedProtocolRefused: the console answers extended-protocol
// requests with 0A000 and stays usable.
func TestAdminExtendedProtocolRefused(t *testing.T) {
	leakCheck(t)
	ctx := testCtx(t)
	e := startProxy(t, proxyOpts{})
	c, err := pgx.Connect(ctx, e.dsn("admin", "x", "pgrecycle"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	if _, err := adminQuery(ctx, c, "SHOW POOLS"); errCode(err) != "0A000" {
		t.Fatalf("extended-protocol SHOW POOLS: %v, want 0A000", err)
	}
	rows, err := c.Query(ctx, "SHOW VERSION", pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		t.Fatal(err)
	}
	vs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(vs) != 1 || !strings.HasPrefix(vs[0], "pgrecycle ") {
		t.Fatalf("SHOW VERSION after the refusal: %v %v", vs, err)
	}
	// Several commands in one Query message, and an empty one.
	res := c.PgConn().Exec(ctx, "SHOW VERSION; SHOW LISTS;")
	results, err := res.ReadAll()
	if err != nil || len(results) != 2 || results[0].CommandTag.String() != "SHOW" {
		t.Fatalf("two commands: %d results, %v", len(results), err)
	}
	if _, err := c.PgConn().Exec(ctx, " ; ").ReadAll(); err != nil {
		t.Fatalf("empty query: %v", err)
	}
}

// TestAdminShutdown: SHUTDOWN answers, stops accepting, and closes the
// server.
func TestAdminShutdown(t *testing.T) {
	leakCheck(t)
	ctx := testCtx(t)
	e := startProxy(t, proxyOpts{extra: metricsExtra})
	c := e.connect(ctx)
	if _, err := c.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := e.psqlAdmin(ctx, "admin", "SHUTDOWN")
	if code != 0 {
		t.Fatalf("SHUTDOWN: exit %d %q %v", code, stderr, out)
	}
	select {
	case <-e.srv.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the server did not close after SHUTDOWN")
	}
	if _, err := pgx.Connect(ctx, e.dsn("postgres", "x", "app")); err == nil {
		t.Fatal("a client could connect after SHUTDOWN")
	}
	if _, err := c.Exec(ctx, "SELECT 1"); err == nil {
		t.Fatal("an idle client survived SHUTDOWN")
	}
}

// TestAdminIncidentCommands: PgBouncer's incident commands. DISABLE
// refuses new logins to a database while its clients stay; ENABLE allows
// them again; RECONNECT retires backends and WAIT_CLOSE returns once the
// busy one is gone; KILL disconnects the database's clients at once and
// leaves the admin console alone.
func TestAdminIncidentCommands(t *testing.T) {
	leakCheck(t)
	ctx := testCtx(t)
	e := startProxy(t, proxyOpts{size: 2})
	a := e.connect(ctx)
	admin := e.adminConn(ctx)

	if tag, err := adminExec(ctx, admin, "DISABLE app"); err != nil || tag != "DISABLE" {
		t.Fatalf("DISABLE app: %q, %v", tag, err)
	}
	if c, err := pgx.Connect(ctx, e.dsn("postgres", "x", "app")); sqlState(err) != "55000" {
		if c != nil {
			_ = c.Close(ctx)
		}
		t.Fatalf("login to a disabled database: %v, want 55000", err)
	}
	if r, ok := e.mustAdminQuery(ctx, admin, "SHOW DATABASES").find("name", "app"); !ok || r["disabled"] != "1" {
		t.Fatalf("SHOW DATABASES after DISABLE: %v", r)
	}
	var n int
	if err := a.QueryRow(ctx, "SELECT 1").Scan(&n); err != nil {
		t.Fatalf("client logged in before DISABLE: %v", err)
	}
	if tag, err := adminExec(ctx, admin, "ENABLE app"); err != nil || tag != "ENABLE" {
		t.Fatalf("ENABLE app: %q, %v", tag, err)
	}
	b := e.connect(ctx)

	// RECONNECT with b's backend busy; WAIT_CLOSE returns after it commits.
	tx, err := b.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	if tag, err := adminExec(ctx, admin, "RECONNECT app"); err != nil || tag != "RECONNECT" {
		t.Fatalf("RECONNECT app: %q, %v", tag, err)
	}
	committed := make(chan error, 1)
	go func() {
		time.Sleep(300 * time.Millisecond)
		committed <- tx.Commit(context.Background())
	}()
	start := time.Now()
	if tag, err := adminExec(ctx, admin, "WAIT_CLOSE app"); err != nil || tag != "WAIT_CLOSE" {
		t.Fatalf("WAIT_CLOSE app: %q, %v", tag, err)
	}
	if el := time.Since(start); el < 250*time.Millisecond {
		t.Fatalf("WAIT_CLOSE returned after %s, before the busy backend was released", el)
	}
	if err := <-committed; err != nil {
		t.Fatal(err)
	}

	if tag, err := adminExec(ctx, admin, "KILL app"); err != nil || tag != "KILL" {
		t.Fatalf("KILL app: %q, %v", tag, err)
	}
	for name, c := range map[string]*pgx.Conn{"a": a, "b": b} {
		// Told why, as by pg_terminate_backend: 57P01.
		if err := c.QueryRow(ctx, "SELECT 1").Scan(&n); errCode(err) != "57P01" {
			t.Fatalf("client %s after KILL: %v, want 57P01", name, err)
		}
	}
	if _, err := adminExec(ctx, admin, "SHOW POOLS"); err != nil {
		t.Fatalf("admin console after KILL: %v", err)
	}
	c := e.connect(ctx)
	if err := c.QueryRow(ctx, "SELECT 1").Scan(&n); err != nil {
		t.Fatalf("new client after KILL: %v", err)
	}
	if _, err := adminExec(ctx, admin, "KILL nosuchdb"); errCode(err) != "3D000" {
		t.Fatalf("KILL nosuchdb: %v, want 3D000", err)
	}
}

// TestAdminStatsTransactionTime: SHOW STATS and the metrics count the time
// clients spend in transactions (microseconds, as PgBouncer's
// total_xact_time), from the first query to ReadyForQuery outside a
// transaction.
func TestAdminStatsTransactionTime(t *testing.T) {
	leakCheck(t)
	ctx := testCtx(t)
	e := startProxy(t, proxyOpts{extra: metricsExtra})
	c := e.connect(ctx)
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT pg_sleep(0.2)"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // the client thinking, inside the transaction
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	st, ok := e.mustPsqlAdmin(ctx, "SHOW STATS").find("database", "app")
	if !ok {
		t.Fatal("no app row in SHOW STATS")
	}
	if us := atoi(t, st["total_xact_time"]); us < 300_000 || us > 10_000_000 {
		t.Fatalf("total_xact_time = %d µs after a 0.3 s transaction", us)
	}
	if avg := atoi(t, st["avg_xact_time"]); avg <= 0 {
		t.Fatalf("avg_xact_time = %d", avg)
	}
	if v, ok := sample(e.scrape(ctx), "pgrecycle_transaction_seconds_total", "database", "app"); !ok || v < 0.3 {
		t.Fatalf("pgrecycle_transaction_seconds_total = %v (%v), want at least 0.3", v, ok)
	}
	// Query time counts the requests only: the 0.2 s sleep, not the 0.1 s
	// the client thought inside the transaction.
	if us := atoi(t, st["total_query_time"]); us < 200_000 || us >= atoi(t, st["total_xact_time"]) {
		t.Fatalf("total_query_time = %d µs, total_xact_time = %s µs", us, st["total_xact_time"])
	}
	if avg := atoi(t, st["avg_query_time"]); avg <= 0 {
		t.Fatalf("avg_query_time = %d", avg)
	}
	if v, ok := sample(e.scrape(ctx), "pgrecycle_query_seconds_total", "database", "app"); !ok || v < 0.2 {
		t.Fatalf("pgrecycle_query_seconds_total = %v (%v), want at least 0.2", v, ok)
	}
	// SHOW STATS_TOTALS and STATS_AVERAGES, which PgBouncer's Prometheus
	// exporter reads, with PgBouncer's column names.
	totals, ok := e.mustPsqlAdmin(ctx, "SHOW STATS_TOTALS").find("database", "app")
	if !ok || atoi(t, totals["query_time"]) != atoi(t, st["total_query_time"]) || atoi(t, totals["xact_count"]) < 1 ||
		atoi(t, totals["wait_time"]) < 0 {
		t.Fatalf("SHOW STATS_TOTALS app row %v (SHOW STATS %v)", totals, st)
	}
	averages := e.mustPsqlAdmin(ctx, "SHOW STATS_AVERAGES")
	sameCols(t, "SHOW STATS_AVERAGES", averages.cols, "database", "xact_count", "query_count", "bytes_received",
		"bytes_sent", "xact_time", "query_time", "wait_time")
	if avg, ok := averages.find("database", "app"); !ok || atoi(t, avg["xact_time"]) != atoi(t, st["avg_xact_time"]) {
		t.Fatalf("SHOW STATS_AVERAGES app row %v (SHOW STATS %v)", avg, st)
	}
}

// TestAdminPgBouncerName: tools written for PgBouncer (its Prometheus
// exporters, the Datadog agent) connect to the database "pgbouncer"; they
// get the admin console, unless a database of that name is configured.
func TestAdminPgBouncerName(t *testing.T) {
	leakCheck(t)
	ctx := testCtx(t)
	e := startProxy(t, proxyOpts{})
	tbl, stderr, code := e.psqlAdminDB(ctx, "admin", "pgbouncer", "SHOW VERSION")
	if code != 0 || len(tbl.cols) != 1 || tbl.cols[0] != "version" || len(tbl.rows) != 1 {
		t.Fatalf("SHOW VERSION on database pgbouncer: exit %d %s %v", code, stderr, tbl)
	}
	// A configured database of that name is a database like any other.
	pg := pgtest.Shared(t)
	named := startProxy(t, proxyOpts{extra: fmt.Sprintf("[databases.pgbouncer]\nhost = %q\nport = %d\ndbname = \"postgres\"\nsslmode = \"disable\"\nuser = %q\npassword = %q\n",
		pg.Host, pg.Port, pg.SuperUser, pg.SuperPassword)})
	c, err := pgx.Connect(ctx, named.dsn("postgres", "x", "pgbouncer"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var db string
	if err := c.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil || db != "postgres" {
		t.Fatalf("configured database pgbouncer: %q, %v", db, err)
	}
}

// TestPauseHeldRequestsCancelAndGone: a query held by PAUSE can be
// cancelled (57014), as any waiting query, and the request of a client
// that left while held never runs at RESUME. Before, cancels were ignored
// until RESUME, and every abandoned INSERT of a switchover ran then (found
// by the operations sweep).
func TestPauseHeldRequestsCancelAndGone(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{size: 2})
	ctx := testCtx(t)
	table := markerTable(ctx, t, e, "paused_marker")
	c := e.connect(ctx)
	admin := e.adminConn(ctx)
	if _, err := adminExec(ctx, admin, "PAUSE app"); err != nil {
		t.Fatal(err)
	}
	resumed := false
	defer func() {
		if !resumed {
			_, _ = adminExec(context.Background(), admin, "RESUME app")
		}
	}()
	held := make(chan error, 1)
	go func() {
		_, err := c.Exec(context.Background(), "SELECT 1")
		held <- err
	}()
	e.waitPoolWaiting(ctx, t, "1")
	e.cancelRequest(t, c.PgConn().PID(), c.PgConn().SecretKey())
	select {
	case err := <-held:
		if errCode(err) != "57014" {
			t.Fatalf("a held query, cancelled: %v, want 57014", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a CancelRequest did not end a query held by PAUSE")
	}
	// A client that leaves while held: a raw socket closed without a word.
	fe, gone := e.rawFrontend(t)
	fe.Send(&pgproto3.Query{String: "INSERT INTO " + table + " VALUES ('left during the pause')"})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	e.waitPoolWaiting(ctx, t, "1")
	_ = gone.Close()
	e.waitPoolWaiting(ctx, t, "0") // noticed within about a second
	if _, err := adminExec(ctx, admin, "RESUME app"); err != nil {
		t.Fatal(err)
	}
	resumed = true
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil || n != 0 {
		t.Fatalf("rows inserted at RESUME by a client that left during the pause: %d, %v; want 0", n, err)
	}
}

// TestKillEndsWaitingRequests: KILL ends a client whose request waits (for
// a backend, or for a RESUME): it is told 57P01 and the request never
// runs. Before, its session kept waiting after KILL cut the socket, and
// the request ran once a backend freed up.
func TestKillEndsWaitingRequests(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{size: 2})
	ctx := testCtx(t)
	table := markerTable(ctx, t, e, "killed_marker")
	admin := e.adminConn(ctx)
	if _, err := adminExec(ctx, admin, "PAUSE app"); err != nil {
		t.Fatal(err)
	}
	fe, _ := e.rawFrontend(t)
	fe.Send(&pgproto3.Query{String: "INSERT INTO " + table + " VALUES ('killed while waiting')"})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	e.waitPoolWaiting(ctx, t, "1")
	if _, err := adminExec(ctx, admin, "KILL app"); err != nil {
		t.Fatal(err)
	}
	if e := expectType[*pgproto3.ErrorResponse](t, fe); e.Code != "57P01" || e.Severity != "FATAL" {
		t.Fatalf("the waiting client after KILL: %s %s %s, want FATAL 57P01", e.Severity, e.Code, e.Message)
	}
	if _, err := adminExec(ctx, admin, "RESUME app"); err != nil {
		t.Fatal(err)
	}
	c := e.connect(ctx)
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil || n != 0 {
		t.Fatalf("rows inserted after KILL by the killed client's waiting request: %d, %v; want 0", n, err)
	}
}
