package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgrecycle/pgrecycle/test/pgtest"
)

func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func TestClientIdleTimeout(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{dbExtra: "[databases.app.pool]\nclient_idle_timeout = \"700ms\"\n"})
	ctx := testCtx(t)
	c := e.connect(ctx)
	if _, err := c.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	_, err := c.Exec(ctx, "SELECT 1")
	if err == nil {
		t.Fatal("idle client was not disconnected after client_idle_timeout")
	}
	if code := pgCode(err); code != "57P05" && !strings.Contains(err.Error(), "client_idle_timeout") {
		t.Fatalf("error does not say client_idle_timeout: %v", err)
	}
}

func TestIdleTransactionTimeout(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{size: 1, dbExtra: "[databases.app.pool]\nidle_transaction_timeout = \"700ms\"\n"})
	ctx := testCtx(t)
	d := e.direct(ctx)
	if _, err := d.Exec(ctx, "CREATE TABLE IF NOT EXISTS idle_tx (id int primary key)"); err != nil {
		t.Fatal(err)
	}
	c := e.connect(ctx)
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO idle_tx VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	_, err = tx.Exec(ctx, "SELECT 1")
	if err == nil {
		t.Fatal("transaction idle past idle_transaction_timeout still usable")
	}
	if pgCode(err) != "25P03" && !strings.Contains(err.Error(), "idle_transaction_timeout") {
		t.Fatalf("error does not name idle_transaction_timeout: %v", err)
	}
	var n int
	if err := d.QueryRow(ctx, "SELECT count(*) FROM idle_tx WHERE id = 1").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatal("the abandoned transaction was committed")
	}
	// The backend was rolled back and serves the next client.
	c2 := e.connect(ctx)
	var st string
	if err := c2.QueryRow(ctx, "SELECT coalesce(txid_current_if_assigned()::text, 'none')").Scan(&st); err != nil {
		t.Fatal(err)
	}
	if st != "none" {
		t.Fatalf("next client inherited a transaction: %s", st)
	}
}

func TestShutdownDrains(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{size: 2})
	ctx := testCtx(t)
	d := e.direct(ctx)
	if _, err := d.Exec(ctx, "CREATE TABLE IF NOT EXISTS drained (id int primary key)"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Exec(ctx, "DELETE FROM drained"); err != nil {
		t.Fatal(err)
	}
	idle := e.connect(ctx)
	busy := e.connect(ctx)
	if _, err := idle.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	tx, err := busy.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO drained VALUES (7)"); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		e.srv.Shutdown()
		close(done)
	}()
	time.Sleep(300 * time.Millisecond)
	// New connections are refused.
	if c, err := pgx.Connect(ctx, e.dsn("postgres", "x", "app")); err == nil {
		c.Close(ctx)
		t.Fatal("a new client was accepted while draining")
	}
	// The idle client was told and closed.
	if _, err := idle.Exec(ctx, "SELECT 1"); err == nil {
		t.Fatal("idle client still served while draining")
	}
	// The client in a transaction finishes it.
	if _, err := tx.Exec(ctx, "INSERT INTO drained VALUES (8)"); err != nil {
		t.Fatalf("transaction interrupted by shutdown: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("commit during shutdown: %v", err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return after the last transaction ended")
	}
	var n int
	if err := d.QueryRow(ctx, "SELECT count(*) FROM drained").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("%d rows committed, want 2", n)
	}
}

func TestReloadAppliesWithoutDroppingClients(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{size: 1, dbExtra: "[databases.app.parameters]\nwork_mem = \"5MB\"\n"})
	ctx := testCtx(t)
	c := e.connect(ctx, "default_query_exec_mode=simple_protocol")
	var wm string
	if err := c.QueryRow(ctx, "SHOW work_mem").Scan(&wm); err != nil || wm != "5MB" {
		t.Fatalf("work_mem = %q, %v", wm, err)
	}
	before := backendPID(ctx, t, c)
	path := filepath.Join(e.dir, "pgrecycle.toml")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// A broken file is refused and the old configuration kept.
	if err := os.WriteFile(path, []byte(string(raw)+"\n[pool]\nsise = 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Reload(); err == nil {
		t.Fatal("a broken configuration was accepted")
	}
	if err := c.QueryRow(ctx, "SHOW work_mem").Scan(&wm); err != nil || wm != "5MB" {
		t.Fatalf("after refused reload: work_mem = %q, %v", wm, err)
	}
	updated := strings.Replace(string(raw), `work_mem = "5MB"`, `work_mem = "6MB"`, 1)
	if err := os.WriteFile(path, []byte(updated), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	// The same client keeps its session; its next transaction runs on a
	// backend opened with the new parameters.
	if err := c.QueryRow(ctx, "SHOW work_mem").Scan(&wm); err != nil {
		t.Fatalf("client dropped by reload: %v", err)
	}
	if wm != "6MB" {
		// The first query after reload may still use the old backend
		// (retired at its release); the next must not.
		if err := c.QueryRow(ctx, "SHOW work_mem").Scan(&wm); err != nil || wm != "6MB" {
			t.Fatalf("work_mem after reload = %q, %v", wm, err)
		}
	}
	if after := backendPID(ctx, t, c); after == before {
		t.Fatal("backend with old startup parameters was not retired")
	}
	if e.retirements()["reload"] < 1 {
		t.Fatalf("retirements = %v, want reload", e.retirements())
	}
}

// TestReloadRemovedDatabaseClosesBackends: a database removed from the
// configuration by a reload refuses new logins, and its idle backends are
// closed at once rather than at server_idle_timeout (found by the
// operations sweep: they stayed open for the default ten minutes).
func TestReloadRemovedDatabaseClosesBackends(t *testing.T) {
	leakCheck(t)
	pg := pgtest.Shared(t)
	app2 := fmt.Sprintf("[databases.app2]\nhost = %q\nport = %d\ndbname = \"postgres\"\nsslmode = \"disable\"\nuser = %q\npassword = %q\n",
		pg.Host, pg.Port, pg.SuperUser, pg.SuperPassword)
	e := startProxy(t, proxyOpts{extra: app2})
	ctx := testCtx(t)
	c, err := pgx.Connect(ctx, e.dsn("postgres", "x", "app2"))
	if err != nil {
		t.Fatal(err)
	}
	pid := backendPID(ctx, t, c)
	_ = c.Close(ctx)
	path := filepath.Join(e.dir, "pgrecycle.toml")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(raw), app2, "", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	d := e.direct(ctx)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var n int
		if err := d.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", int32(pid)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the removed database's idle backend (pid %d) is still open", pid)
		}
	}
	if _, err := pgx.Connect(ctx, e.dsn("postgres", "x", "app2")); errCode(err) != "3D000" {
		t.Fatalf("login to the removed database: %v, want 3D000", err)
	}
}

var _ = context.Background

// At shutdown_timeout the clients still at work are told why they are cut
// (57P01), whether idle in a transaction or waiting for a query, and their
// transactions are rolled back, not committed.
func TestShutdownTimeoutTellsClients(t *testing.T) {
	for _, mode := range []string{"transaction", "session"} {
		t.Run(mode, func(t *testing.T) { testShutdownTimeoutTellsClients(t, mode) })
	}
}

func testShutdownTimeoutTellsClients(t *testing.T, mode string) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{size: 2, mode: mode}) // shutdown_timeout is 2s in these tests
	ctx := testCtx(t)
	d := e.direct(ctx)
	if _, err := d.Exec(ctx, "CREATE TABLE IF NOT EXISTS cut_short (id int primary key)"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Exec(ctx, "DELETE FROM cut_short"); err != nil {
		t.Fatal(err)
	}
	inTx := e.connect(ctx)
	tx, err := inTx.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO cut_short VALUES (9)"); err != nil {
		t.Fatal(err)
	}
	busy := e.connect(ctx)
	busyErr := make(chan error, 1)
	go func() {
		_, err := busy.Exec(ctx, "SELECT pg_sleep(30)")
		busyErr <- err
	}()
	time.Sleep(200 * time.Millisecond) // the sleep has reached the server
	start := time.Now()
	done := make(chan struct{})
	go func() {
		e.srv.Shutdown()
		close(done)
	}()
	select {
	case err := <-busyErr:
		if pgCode(err) != "57P01" || !strings.Contains(err.Error(), "shutdown_timeout") {
			t.Fatalf("client waiting for a query got %v, want 57P01 naming shutdown_timeout", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("client waiting for a query was not cut at shutdown_timeout")
	}
	if elapsed := time.Since(start); elapsed < 2*time.Second {
		t.Fatalf("client cut after %s, before shutdown_timeout", elapsed)
	}
	_, err = tx.Exec(ctx, "INSERT INTO cut_short VALUES (10)")
	if pgCode(err) != "57P01" {
		t.Fatalf("client idle in a transaction got %v, want 57P01", err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return")
	}
	var n int
	if err := d.QueryRow(ctx, "SELECT count(*) FROM cut_short").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d rows of the cut transaction committed", n)
	}
}

// TestShutdownWithServerNotReading: a session blocked writing a request to
// a backend that stopped reading (a hung server, a network that stopped
// carrying) does not hold up shutdown past shutdown_timeout: its backend
// is cut. Before, Close waited for it forever (found while testing the
// pipeline deadlock, whose stuck session hung the test's Close).
func TestShutdownWithServerNotReading(t *testing.T) {
	leakCheck(t)
	pg := pgtest.Shared(t)
	for _, mode := range poolModes() {
		t.Run(mode, func(t *testing.T) { shutdownWithServerNotReading(t, pg, mode) })
	}
}

func shutdownWithServerNotReading(t *testing.T, pg *pgtest.Server, mode string) {
	{
		relay := newStallRelay(t, fmt.Sprintf("%s:%d", pg.Host, pg.Port))
		e := startProxy(t, proxyOpts{mode: mode, size: 1, portOverride: relay.port})
		ctx := testCtx(t)
		c, err := pgconn.Connect(ctx, e.dsn("postgres", "x", "app"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(ctx, "SELECT 1").ReadAll(); err != nil {
			t.Fatal(err)
		}
		relay.frozen.Store(true)
		// Far more than the sockets on the way hold: pgrecycle blocks
		// writing it to the backend.
		big := "SELECT '" + strings.Repeat("x", 64<<20) + "'"
		sent := make(chan struct{})
		go func() {
			defer close(sent)
			_, _ = c.Exec(context.Background(), big).ReadAll()
		}()
		time.Sleep(time.Second)
		start := time.Now()
		shut := make(chan struct{})
		go func() { defer close(shut); e.srv.Shutdown() }()
		select {
		case <-shut:
		case <-time.After(20 * time.Second):
			t.Fatal("shutdown still waiting 20 s later for a session blocked writing to its backend (shutdown_timeout 2s)")
		}
		t.Logf("shutdown took %s", time.Since(start))
		<-sent // the closed client connection ends the request's write
		relay.frozen.Store(false)
	}
}
