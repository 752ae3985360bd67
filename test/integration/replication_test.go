package integration

// Replication connections through pgrecycle: physical (pg_basebackup,
// pg_receivewal, standbys) and logical (pg_recvlogical, Debezium-style
// clients) pass through on a backend of their own.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgrecycle/pgrecycle/test/pgtest"
)

// replicationServer is a PostgreSQL of its own with wal_level = logical,
// so the shared server's WAL and data stay out of base backups.
func replicationServer(t *testing.T) *pgtest.Server {
	return pgtest.RequireWith(t, pgtest.Options{Name: "repl", ExtraConf: map[string]string{"wal_level": "logical"}})
}

// replConnect opens a replication connection through the proxy with
// pgconn (mode "true" or "database").
func (e *env) replConnect(ctx context.Context, mode string) (*pgconn.PgConn, error) {
	return pgconn.Connect(ctx, fmt.Sprintf("host=%s port=%d user=postgres dbname=app sslmode=disable replication=%s application_name=repltest",
		e.host, e.port, mode))
}

func identifySystem(ctx context.Context, c *pgconn.PgConn) (string, error) {
	res, err := c.Exec(ctx, "IDENTIFY_SYSTEM").ReadAll()
	if err != nil {
		return "", err
	}
	if len(res) != 1 || len(res[0].Rows) != 1 {
		return "", fmt.Errorf("IDENTIFY_SYSTEM: %d results", len(res))
	}
	return string(res[0].Rows[0][0]), nil
}

// TestReplicationBaseBackup: pg_basebackup with WAL streamed (two
// replication connections at once) through pgrecycle gives a backup
// pg_verifybackup accepts, in both pool modes, and leaves no walsender.
func TestReplicationBaseBackup(t *testing.T) {
	leakCheck(t)
	pg := replicationServer(t)
	forModes(t, proxyOpts{pg: pg, size: 1}, func(t *testing.T, e *env, mode string) {
		ctx := testCtx(t)
		dir := filepath.Join(t.TempDir(), "backup")
		dsn := fmt.Sprintf("host=%s port=%d user=postgres dbname=app", e.host, e.port)
		out, errOut, code := runCmd(ctx, t, "", clientEnv(), filepath.Join(pg.BinDir, "pg_basebackup"),
			"-d", dsn, "-D", dir, "-X", "stream", "-c", "fast", "--no-sync", "-w")
		if code != 0 {
			t.Fatalf("pg_basebackup through pgrecycle: exit %d\n%s\n%s", code, out, errOut)
		}
		if out, errOut, code := runCmd(ctx, t, "", clientEnv(), filepath.Join(pg.BinDir, "pg_verifybackup"), dir); code != 0 {
			t.Fatalf("pg_verifybackup: exit %d\n%s\n%s", code, out, errOut)
		}
		if v, err := os.ReadFile(filepath.Join(dir, "PG_VERSION")); err != nil || strings.TrimSpace(string(v)) == "" {
			t.Fatalf("backup has no PG_VERSION: %v", err)
		}
		waitWalsenders(ctx, t, e, 0)
	})
}

// waitWalsenders waits until the server has want walsender processes.
func waitWalsenders(ctx context.Context, t *testing.T, e *env, want int) {
	t.Helper()
	d := e.direct(ctx)
	var n int
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if err := d.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == want {
			return
		}
	}
	t.Fatalf("%d walsenders on the server, want %d", n, want)
}

// TestReplicationLogicalDecoding: pg_recvlogical creates a slot, streams
// a committed change and drops the slot, all through pgrecycle.
func TestReplicationLogicalDecoding(t *testing.T) {
	leakCheck(t)
	pg := replicationServer(t)
	e := startProxy(t, proxyOpts{pg: pg, size: 1})
	ctx := testCtx(t)
	recv := filepath.Join(pg.BinDir, "pg_recvlogical")
	dsn := fmt.Sprintf("host=%s port=%d user=postgres dbname=app", e.host, e.port)
	slot := uniqueName("slot")
	if out, errOut, code := runCmd(ctx, t, "", clientEnv(), recv, "-d", dsn, "-S", slot, "-P", "test_decoding", "--create-slot"); code != 0 {
		t.Fatalf("pg_recvlogical --create-slot: exit %d\n%s\n%s", code, out, errOut)
	}
	d := e.direct(ctx)
	t.Cleanup(func() { _, _ = d.Exec(context.Background(), "SELECT pg_drop_replication_slot($1)", slot) })
	var plugin string
	if err := d.QueryRow(ctx, "SELECT plugin FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&plugin); err != nil || plugin != "test_decoding" {
		t.Fatalf("slot %s: plugin %q, %v", slot, plugin, err)
	}
	table := uniqueName("decoded")
	var lsn string
	if _, err := d.Exec(ctx, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, note text)", table)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = d.Exec(context.Background(), "DROP TABLE IF EXISTS "+table) })
	if _, err := d.Exec(ctx, fmt.Sprintf("INSERT INTO %s VALUES (42, 'through pgrecycle')", table)); err != nil {
		t.Fatal(err)
	}
	if err := d.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&lsn); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runCmd(ctx, t, "", clientEnv(), recv, "-d", dsn, "-S", slot, "--start", "-E", lsn, "--no-loop", "-f", "-", "-v")
	if code != 0 {
		t.Fatalf("pg_recvlogical --start: exit %d\n%s\n%s", code, out, errOut)
	}
	want := fmt.Sprintf("table public.%s: INSERT: id[integer]:42 note[text]:'through pgrecycle'", table)
	if !strings.Contains(out, want) {
		t.Fatalf("decoded stream lacks %q:\n%s\n%s", want, out, errOut)
	}
	if out, errOut, code := runCmd(ctx, t, "", clientEnv(), recv, "-d", dsn, "-S", slot, "--drop-slot"); code != 0 {
		t.Fatalf("pg_recvlogical --drop-slot: exit %d\n%s\n%s", code, out, errOut)
	}
	var n int
	if err := d.QueryRow(ctx, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&n); err != nil || n != 0 {
		t.Fatalf("slot still there after --drop-slot: %d, %v", n, err)
	}
}

// TestReplicationSessionControl: a replication connection takes no pool
// slot, shows in SHOW CLIENTS with its walsender's pid, can be cancelled,
// and ends with 57P01 at KILL and at shutdown, its walsender with it.
func TestReplicationSessionControl(t *testing.T) {
	leakCheck(t)
	pg := replicationServer(t)
	e := startProxy(t, proxyOpts{pg: pg, size: 1, mode: "transaction"})
	ctx := testCtx(t)
	d := e.direct(ctx)

	rc, err := e.replConnect(ctx, "database")
	if err != nil {
		t.Fatalf("replication=database through pgrecycle: %v", err)
	}
	defer rc.Close(context.Background())
	sysID, err := identifySystem(ctx, rc)
	if err != nil {
		t.Fatal(err)
	}
	var want string
	if err := d.QueryRow(ctx, "SELECT system_identifier::text FROM pg_control_system()").Scan(&want); err != nil {
		t.Fatal(err)
	}
	if sysID != want {
		t.Fatalf("IDENTIFY_SYSTEM systemid %s, server's %s", sysID, want)
	}
	var walPID uint32
	if err := d.QueryRow(ctx, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'walsender' AND application_name = 'repltest'").Scan(&walPID); err != nil {
		t.Fatalf("no walsender with the client's application_name: %v", err)
	}

	// The pool's only slot still serves an application client.
	app := e.connect(ctx)
	var one int
	if err := app.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Fatalf("application query with a replication connection open and pool.size 1: %v", err)
	}
	clients := e.mustAdminQuery(ctx, e.adminConn(ctx), "SHOW CLIENTS")
	if _, ok := clients.find("application_name", "repltest", "state", "active", "server_pid", fmt.Sprint(walPID)); !ok {
		t.Errorf("SHOW CLIENTS has no active row with the walsender's pid %d:\n%s", walPID, clients)
	}

	// A cancel reaches the walsender's query (SQL runs on logical ones).
	res := rc.Exec(ctx, "SELECT pg_sleep(30)")
	time.Sleep(200 * time.Millisecond)
	cancelled := make(chan error, 1)
	go func() { cancelled <- rc.CancelRequest(ctx) }()
	_, err = res.ReadAll()
	if code := errCode(err); code != "57014" {
		t.Fatalf("cancelled query on the replication connection: %v (code %q), want 57014", err, code)
	}
	if err := <-cancelled; err != nil {
		t.Fatal(err)
	}
	if _, err := identifySystem(ctx, rc); err != nil {
		t.Fatalf("replication connection after a cancel: %v", err)
	}

	// KILL tells the client why, and its walsender goes.
	if _, err := adminExec(ctx, e.adminConn(ctx), "KILL app"); err != nil {
		t.Fatal(err)
	}
	_, err = identifySystem(ctx, rc)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "57P01" {
		t.Fatalf("after KILL: %v, want FATAL 57P01", err)
	}
	waitWalsenders(ctx, t, e, 0)

	// Shutdown does not wait shutdown_timeout for a stream that never
	// idles: the client is told, at once.
	rc2, err := e.replConnect(ctx, "true")
	if err != nil {
		t.Fatalf("replication=true through pgrecycle: %v", err)
	}
	defer rc2.Close(context.Background())
	if _, err := identifySystem(ctx, rc2); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	e.srv.Shutdown()
	if took := time.Since(start); took > 1500*time.Millisecond {
		t.Errorf("shutdown took %s with a replication connection open (shutdown_timeout 2s)", took)
	}
	_, err = identifySystem(ctx, rc2)
	if !errors.As(err, &pgErr) || pgErr.Code != "57P01" {
		t.Fatalf("after shutdown: %v, want FATAL 57P01", err)
	}
	waitWalsenders(ctx, t, e, 0)
}

// TestReplicationAccessRules: as in pg_hba.conf, a physical replication
// connection needs a rule for "replication"; logical ones match their
// database; a client that closes ends its walsender; physical ones are
// routed only where the server is unambiguous.
func TestReplicationAccessRules(t *testing.T) {
	leakCheck(t)
	pg := replicationServer(t)
	e := startProxy(t, proxyOpts{pg: pg, mode: "session", extra: `
[[hba]]
database = "app"
user = "all"
address = "all"
method = "trust"
`})
	ctx := testCtx(t)
	_, err := e.replConnect(ctx, "true")
	if code := errCode(err); code != "28000" {
		t.Fatalf("physical replication without a replication rule: %v, want 28000", err)
	}
	rc, err := e.replConnect(ctx, "database")
	if err != nil {
		t.Fatalf("logical replication matching the app rule: %v", err)
	}
	if _, err := identifySystem(ctx, rc); err != nil {
		t.Fatal(err)
	}
	waitWalsenders(ctx, t, e, 1)
	rc.Close(ctx)
	waitWalsenders(ctx, t, e, 0)

	// Before PostgreSQL 17, pg_basebackup and pg_receivewal send database
	// "replication" whatever their connection string says: with
	// databases on two servers, pgrecycle can't tell where to go.
	e2 := startProxy(t, proxyOpts{pg: pg, mode: "session", extra: `
[databases.elsewhere]
host = "127.0.0.1"
port = 1
dbname = "postgres"
`})
	c, err := pgconn.Connect(ctx, fmt.Sprintf("host=%s port=%d user=postgres dbname=replication sslmode=disable replication=true", e2.host, e2.port))
	if err == nil {
		c.Close(ctx)
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "3D000" || !strings.Contains(pgErr.Hint, "[databases.replication]") {
		t.Fatalf("physical replication with databases on two servers: %v, want 3D000 with a hint", err)
	}
}
