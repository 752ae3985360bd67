package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/pgrecycle/pgrecycle/test/pgtest"
)

// healthTOML runs the advisor every 200ms with thresholds low enough for
// what the test provokes. The second database shares the server and has a
// small max_memory and a pool of one, for the memory check.
func healthTOML(pg *pgtest.Server) string {
	return fmt.Sprintf(`
[health]
interval = "200ms"
query_timeout = "5s"
memory_fraction = 0.25
generic_plan_partitions = 50
xid_age_fraction = 0.0000001
dead_tuples = 50000
idle_in_transaction = "1s"
connections_fraction = 0.001
bypass_connections = 1

[databases.mem]
host = %q
port = %d
dbname = "postgres"
sslmode = "disable"
user = %q
password = %q

[databases.mem.pool]
size = 1

[databases.mem.recycle]
max_memory = "4MB"
memory_check_interval = "0s"
`, pg.Host, pg.Port, pg.SuperUser, pg.SuperPassword)
}

// healthFindings returns SHOW HEALTH through the pgx simple protocol.
func healthFindings(ctx context.Context, t *testing.T, e *env) adminTable {
	t.Helper()
	return e.mustAdminQuery(ctx, e.adminConn(ctx), "SHOW HEALTH")
}

// waitFinding waits until SHOW HEALTH has a row for check whose object
// contains object, and returns it.
func waitFinding(ctx context.Context, t *testing.T, e *env, check, object string) map[string]string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	admin := e.adminConn(ctx)
	var last adminTable
	for time.Now().Before(deadline) {
		last = e.mustAdminQuery(ctx, admin, "SHOW HEALTH")
		for _, r := range last.rows {
			if r["check"] == check && strings.Contains(r["object"], object) {
				return r
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no SHOW HEALTH finding %s on %q; SHOW HEALTH:\n%s", check, object, last)
	return nil
}

// TestHealthAdvisor provokes each check of the health advisor against the
// real PostgreSQL and finds it in SHOW HEALTH, /metrics and the log.
func TestHealthAdvisor(t *testing.T) {
	leakCheck(t)
	ctx := testCtx(t)
	pg := pgtest.Shared(t)

	// A partitioned table with 64 partitions; a table left with 100,000
	// dead tuples that autovacuum may not clean; some transaction IDs
	// burnt so the database's age is over the (tiny) threshold.
	if err := pg.Exec(ctx, `DROP TABLE IF EXISTS health_parts, health_dead;
CREATE TABLE health_parts (k int, v int) PARTITION BY HASH (k);
DO $$ BEGIN FOR i IN 0..63 LOOP
  EXECUTE format('CREATE TABLE health_parts_%s PARTITION OF health_parts FOR VALUES WITH (MODULUS 64, REMAINDER %s)', i, i);
END LOOP; END $$;
INSERT INTO health_parts SELECT g, g % 100 FROM generate_series(1, 10000) g;
ANALYZE health_parts;
CREATE TABLE health_dead (id int) WITH (autovacuum_enabled = false);
INSERT INTO health_dead SELECT generate_series(1, 100000);
DELETE FROM health_dead`); err != nil {
		t.Fatal(err)
	}
	if err := pg.Exec(ctx, `DO $$ BEGIN FOR i IN 1..100 LOOP PERFORM txid_current(); COMMIT; END LOOP; END $$`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pg.Exec(context.Background(), "DROP TABLE IF EXISTS health_parts, health_dead") })

	e := startProxy(t, proxyOpts{size: 2,
		dbExtra: "[databases.app.parameters]\nplan_cache_mode = \"auto\"\n",
		extra:   metricsExtra + healthTOML(pg)})
	dumpLogsOnFailure(t, e)

	// Generic plans: a statement on the partitioned table, prepared by pgx
	// (named, cached) through transaction pooling, executed 8 times in one
	// transaction under plan_cache_mode auto: from the 6th execution on
	// PostgreSQL picks the generic plan. The backend then goes back to the
	// pool with the statement, where the advisor looks.
	c := e.connect(ctx)
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 8; i++ {
		var n int64
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM health_parts WHERE v = $1", i).Scan(&n); err != nil {
			t.Fatal(err)
		}
	}
	var generic int64
	if err := tx.QueryRow(ctx, "SELECT coalesce(max(generic_plans), 0) FROM pg_prepared_statements WHERE statement LIKE '%health_parts WHERE v%'").Scan(&generic); err != nil {
		t.Fatal(err)
	}
	if generic == 0 {
		t.Fatal("the statement did not switch to a generic plan; the test provokes nothing")
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	// Memory: a backend of the "mem" pool, sampled at its release.
	m, err := pgx.Connect(ctx, e.dsn("postgres", "x", "mem"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	if _, err := m.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}

	// A direct session (bypassing pgrecycle) left idle in a transaction.
	d := e.direct(ctx)
	if _, err := d.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Exec(ctx, "SELECT txid_current()"); err != nil {
		t.Fatal(err)
	}
	defer func() { _, _ = d.Exec(context.Background(), "ROLLBACK") }()

	row := waitFinding(ctx, t, e, "generic_plans", "public.health_parts")
	if !strings.Contains(row["advice"], "force_custom_plan") || row["database"] != "app" {
		t.Errorf("generic plan finding: %v", row)
	}
	row = waitFinding(ctx, t, e, "dead_tuples", "public.health_dead")
	if atoiPrefix(row["value"]) < 100000 || !strings.Contains(row["advice"], "autovacuum is disabled") {
		t.Errorf("dead tuples finding: %v", row)
	}
	waitFinding(ctx, t, e, "xid_age", "postgres")
	waitFinding(ctx, t, e, "connections", "total")
	row = waitFinding(ctx, t, e, "idle_in_transaction", "postgres")
	if !strings.Contains(row["advice"], "connected directly") {
		t.Errorf("idle in transaction finding: %v", row)
	}
	waitFinding(ctx, t, e, "bypass", "postgres")
	row = waitFinding(ctx, t, e, "memory", "postgres: largest backend")
	if row["database"] != "mem" {
		t.Errorf("memory finding: %v", row)
	}
	waitFinding(ctx, t, e, "memory", "postgres: total")

	// psql shows the same table.
	table := e.mustPsqlAdmin(ctx, "SHOW HEALTH")
	sameCols(t, "SHOW HEALTH", table.cols, "database", "check", "object", "value", "threshold", "advice", "since")
	if _, ok := table.find("check", "dead_tuples", "object", "public.health_dead"); !ok {
		t.Errorf("psql SHOW HEALTH lacks the dead tuples finding:\n%s", table)
	}
	help := e.mustPsqlAdmin(ctx, "SHOW HELP")
	if _, ok := help.find("command", "SHOW HEALTH"); !ok {
		t.Error("SHOW HELP does not list SHOW HEALTH")
	}

	// Metrics: every item with its threshold and finding state.
	ms := e.scrape(ctx)
	lbl := []string{"database", "app", "check", "dead_tuples", "object", "public.health_dead"}
	if v, ok := sample(ms, "pgrecycle_health_value", lbl...); !ok || v < 100000 {
		t.Errorf("pgrecycle_health_value dead tuples = %v, %v", v, ok)
	}
	if v, ok := sample(ms, "pgrecycle_health_threshold", lbl...); !ok || v != 50000 {
		t.Errorf("pgrecycle_health_threshold dead tuples = %v, %v", v, ok)
	}
	if v, ok := sample(ms, "pgrecycle_health_finding", lbl...); !ok || v != 1 {
		t.Errorf("pgrecycle_health_finding dead tuples = %v, %v", v, ok)
	}
	if v, ok := sample(ms, "pgrecycle_health_up", "database", "app"); !ok || v != 1 {
		t.Errorf("pgrecycle_health_up = %v, %v", v, ok)
	}
	if v, ok := sample(ms, "pgrecycle_health_value", "database", "mem", "check", "memory", "object", "postgres: largest backend"); !ok || v < 1<<20 {
		t.Errorf("memory value = %v, %v", v, ok)
	}

	// Host: PostgreSQL runs here, so vm.overcommit_memory is read, and a
	// setting other than 2 is a finding.
	over, ok := sample(ms, "pgrecycle_health_value", "database", "app", "check", "overcommit")
	if !ok {
		t.Fatal("no overcommit measurement although PostgreSQL runs on this host")
	}
	findings := healthFindings(ctx, t, e)
	if _, found := findings.find("check", "overcommit"); found != (over != 2) {
		t.Errorf("vm.overcommit_memory = %v but finding shown = %v", over, found)
	}
	if adj, ok := sample(ms, "pgrecycle_health_value", "database", "app", "check", "oom_score_adj"); ok {
		if _, found := findings.find("check", "oom_score_adj"); found != (adj != -1000) {
			t.Errorf("postmaster oom_score_adj = %v but finding shown = %v", adj, found)
		}
	} else {
		t.Log("postmaster oom_score_adj not readable here")
	}

	// A crossed threshold is logged once, not every round.
	time.Sleep(600 * time.Millisecond)
	n := 0
	for _, entry := range e.logs.FilterMessage("health: threshold crossed").All() {
		f := entry.ContextMap()
		if f["check"] == "dead_tuples" && f["object"] == "public.health_dead" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("dead tuples warning logged %d times, want once", n)
	}

	// Fixed, the finding goes away.
	if err := pg.Exec(ctx, "VACUUM health_dead"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, found := healthFindings(ctx, t, e).find("check", "dead_tuples", "object", "public.health_dead"); !found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("dead tuples finding still shown after VACUUM")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestHealthAdvisorWraparoundVacuum provokes an anti-wraparound autovacuum
// and a session blocked by it: a table whose own autovacuum_freeze_max_age
// is the minimum (100,000) ages past it, and autovacuum, made to visit the
// databases every second and to crawl on that table, freezes it.
func TestHealthAdvisorWraparoundVacuum(t *testing.T) {
	leakCheck(t)
	ctx := testCtx(t)
	pg := pgtest.Shared(t)
	if err := pg.Exec(ctx, `DROP TABLE IF EXISTS health_frozen;
CREATE TABLE health_frozen (id int, pad text)
  WITH (autovacuum_freeze_max_age = 100000, autovacuum_vacuum_cost_delay = 100, autovacuum_vacuum_cost_limit = 1);
INSERT INTO health_frozen SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dropUnderAutovacuum(t, pg, "health_frozen") })
	if err := pg.Exec(ctx, `DO $$ BEGIN FOR i IN 1..100500 LOOP PERFORM txid_current(); COMMIT; END LOOP; END $$`); err != nil {
		t.Fatal(err)
	}
	if err := pg.Exec(ctx, "ALTER SYSTEM SET autovacuum_naptime = '1s'"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = pg.Exec(context.Background(), "ALTER SYSTEM RESET autovacuum_naptime")
		_ = pg.Exec(context.Background(), "SELECT pg_reload_conf()")
	})
	if err := pg.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
		t.Fatal(err)
	}

	e := startProxy(t, proxyOpts{extra: metricsExtra + "\n[health]\ninterval = \"200ms\"\n"})
	dumpLogsOnFailure(t, e)
	row := waitFinding(ctx, t, e, "wraparound_vacuum", "health_frozen")
	if row["database"] != "app" || !strings.Contains(row["advice"], "does not give way to locks") {
		t.Errorf("wraparound vacuum finding: %v", row)
	}

	// A session that wants a lock the worker holds waits behind it.
	lctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		c, err := pgx.Connect(lctx, pg.SuperDSN())
		if err != nil {
			done <- err
			return
		}
		defer c.Close(context.Background())
		_, err = c.Exec(lctx, "BEGIN; SET LOCAL lock_timeout = '20s'; LOCK TABLE health_frozen IN SHARE MODE; COMMIT")
		done <- err
	}()
	row = waitFinding(ctx, t, e, "vacuum_blocking", "health_frozen")
	cancel()
	if err := <-done; err == nil {
		t.Error("LOCK TABLE got its lock while the anti-wraparound autovacuum ran")
	}
	if row["value"] != "1" || !strings.Contains(row["advice"], "anti-wraparound") {
		t.Errorf("vacuum blocking finding: %v", row)
	}
	if v, ok := sample(e.scrape(ctx), "pgrecycle_health_value", "database", "app", "check", "autovacuum", "object", "workers"); !ok || v < 1 {
		t.Errorf("autovacuum workers = %v, %v", v, ok)
	}
}

// dropUnderAutovacuum drops a table an anti-wraparound autovacuum (which
// does not give way to locks) may be working on, ending the worker first.
func dropUnderAutovacuum(t *testing.T, pg *pgtest.Server, table string) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		err := pg.Exec(ctx, fmt.Sprintf(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
WHERE backend_type = 'autovacuum worker' AND query LIKE '%%%s%%';
SET lock_timeout = '300ms';
DROP TABLE IF EXISTS %s`, table, table))
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			t.Errorf("drop %s: %v", table, err)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestHealthAdvisorSkipsUnreachable: a database the advisor cannot
// connect to is reported, not hammered.
func TestHealthAdvisorSkipsUnreachable(t *testing.T) {
	leakCheck(t)
	ctx := testCtx(t)
	e := startProxy(t, proxyOpts{extra: `
[health]
interval = "100ms"

[databases.down]
host = "127.0.0.1"
port = 1
dbname = "nothing"
sslmode = "disable"
user = "nobody"
`})
	deadline := time.Now().Add(10 * time.Second)
	var row map[string]string
	for time.Now().Before(deadline) {
		if r, ok := healthFindings(ctx, t, e).find("database", "down", "check", "advisor"); ok {
			row = r
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if row == nil || !strings.Contains(row["value"], "cannot connect") {
		t.Fatalf("no advisor row for the unreachable database: %v", row)
	}
	// Backoff: without it, 2 seconds would be 20 attempts at 100ms.
	before := len(e.logs.FilterMessage("health: connect failed").FilterField(zap.String("database", "down")).All())
	time.Sleep(2 * time.Second)
	attempts := len(e.logs.FilterMessage("health: connect failed").FilterField(zap.String("database", "down")).All()) - before
	if attempts > 6 {
		t.Errorf("%d connect attempts in 2s at a 100ms interval: no backoff", attempts)
	}
	if n := len(e.logs.FilterMessage("health: database not sampled").FilterField(zap.String("database", "down")).All()); n != 1 {
		t.Errorf("unreachable database logged %d times, want once", n)
	}
}

func atoiPrefix(s string) int64 {
	var n int64
	for _, c := range s {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int64(c-'0')
	}
	return n
}
