package integration

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgrecycle/pgrecycle/test/pgtest"
)

// TestRideThroughRestart: clients that were not in a transaction stay
// connected across a database restart and their next query succeeds.
func TestRideThroughRestart(t *testing.T) {
	leakCheck(t)
	pg := pgtest.Require(t)
	e := startProxy(t, proxyOpts{pg: pg, size: 3})
	ctx := testCtx(t)
	var clients []*pgx.Conn
	for i := 0; i < 5; i++ {
		c := e.connect(ctx)
		if _, err := c.Exec(ctx, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	for _, mode := range []string{"fast", "immediate"} {
		if err := pg.Restart(mode); err != nil {
			t.Fatal(err)
		}
		for i, c := range clients {
			var n int
			if err := c.QueryRow(ctx, "SELECT $1::int", i).Scan(&n); err != nil {
				t.Fatalf("after restart -m %s, client %d: %v", mode, i, err)
			}
			if n != i {
				t.Fatalf("client %d got %d", i, n)
			}
		}
	}
}

// TestBackendKilledByOOM: kill -9 of one backend makes PostgreSQL restart
// every backend. Idle clients keep working; the client whose transaction
// died gets a class 08 error and is disconnected, as from PostgreSQL: kept,
// its later statements would run in autocommit and commit half of the
// transaction.
func TestBackendKilledByOOM(t *testing.T) {
	leakCheck(t)
	pg := pgtest.Require(t)
	e := startProxy(t, proxyOpts{pg: pg, size: 3})
	ctx := testCtx(t)
	idle := e.connect(ctx)
	if _, err := idle.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	victim := e.connect(ctx)
	tx, pid := beginOnBackend(ctx, t, victim)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, err := tx.Exec(ctx, "SELECT 1")
	if err == nil {
		t.Fatal("query in a killed backend's transaction succeeded")
	}
	if code := pgCode(err); !strings.HasPrefix(code, "08") {
		t.Fatalf("lost transaction reported as %q (%v), want class 08", code, err)
	}
	_ = tx.Rollback(ctx)
	var n int
	if err := victim.QueryRow(ctx, "SELECT 2").Scan(&n); err == nil {
		t.Fatal("the session whose transaction died still runs statements")
	}
	again := e.connect(ctx)
	if err := again.QueryRow(ctx, "SELECT 2").Scan(&n); err != nil || n != 2 {
		t.Fatalf("new client after the crash restart: %v", err)
	}
	if err := idle.QueryRow(ctx, "SELECT 3").Scan(&n); err != nil || n != 3 {
		t.Fatalf("idle client failed after the crash restart: %v", err)
	}
}

func TestMaxDBConnections(t *testing.T) {
	leakCheck(t)
	ctx := testCtx(t)
	pg := pgtest.Shared(t)
	for _, u := range []string{"dbl_a", "dbl_b"} {
		_ = pg.Exec(ctx, "DROP ROLE IF EXISTS "+u)
		if err := pg.CreateRole(ctx, u, u+"-pw", false); err != nil {
			t.Fatal(err)
		}
	}
	e := startProxy(t, proxyOpts{size: 5, authType: "md5", dbUser: "-",
		users:   map[string]string{"dbl_a": "dbl_a-pw", "dbl_b": "dbl_b-pw"},
		dbExtra: "[databases.app.pool]\nmax_db_connections = 2\nquery_wait_timeout = \"1s\"\n"})
	held := holdTransactions(ctx, t, 2, e.dsn("dbl_a", "dbl_a-pw", "app"))
	// Logging in needs a backend of dbl_b's own pool: over the database's
	// limit it waits and fails with query_wait_timeout.
	_, err := pgx.Connect(ctx, e.dsn("dbl_b", "dbl_b-pw", "app"))
	if err == nil || !strings.Contains(err.Error(), "query_wait_timeout") {
		t.Fatalf("third backend over max_db_connections = 2: %v", err)
	}
	for _, tx := range held {
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// The idle backends of dbl_a's pool make room for dbl_b.
	c, err := pgx.Connect(ctx, e.dsn("dbl_b", "dbl_b-pw", "app"))
	if err != nil {
		t.Fatalf("after the other pool went idle: %v", err)
	}
	defer c.Close(context.Background())
	var who string
	if err := c.QueryRow(ctx, "SELECT current_user").Scan(&who); err != nil || who != "dbl_b" {
		t.Fatalf("current_user = %q, %v", who, err)
	}
}

// TestMaxDBConnectionsManyUsers: more users than max_db_connections, each
// with concurrent clients (PgBouncer's test_max_db_connections, scaled).
// A backend released while another user's pool waits for a slot is closed
// to give it the slot. Before, only a backend closing woke a waiting pool,
// and the users that found the limit reached waited until
// query_wait_timeout while the others' backends sat idle.
func TestMaxDBConnectionsManyUsers(t *testing.T) {
	leakCheck(t)
	ctx := testCtx(t)
	pg := pgtest.Shared(t)
	users := map[string]string{}
	for i := 1; i <= 4; i++ {
		u := fmt.Sprintf("dbm_u%d", i)
		users[u] = u + "-pw"
		_ = pg.Exec(ctx, "DROP ROLE IF EXISTS "+u)
		if err := pg.CreateRole(ctx, u, u+"-pw", false); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for u := range users {
			_ = pg.Exec(context.Background(), "DROP ROLE IF EXISTS "+u)
		}
	})
	e := startProxy(t, proxyOpts{size: 5, authType: "md5", dbUser: "-", users: users,
		dbExtra: "[databases.app.pool]\nmax_db_connections = 2\nquery_wait_timeout = \"8s\"\n"})
	dumpLogsOnFailure(t, e)
	errs := make(chan error, 2*len(users))
	var wg sync.WaitGroup
	for u, pw := range users {
		for i := 0; i < 2; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := pgx.Connect(ctx, e.dsn(u, pw, "app"))
				if err != nil {
					errs <- fmt.Errorf("%s: login: %w", u, err)
					return
				}
				defer c.Close(context.Background())
				if _, err := c.Exec(ctx, "SELECT pg_sleep(0.3)"); err != nil {
					errs <- fmt.Errorf("%s: %w", u, err)
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	d := e.direct(ctx)
	defer d.Close(ctx)
	var n int
	if err := d.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE usename LIKE 'dbm_u%'").Scan(&n); err != nil || n > 2 {
		t.Errorf("%d backends open (%v), max_db_connections = 2", n, err)
	}
}

func TestInvalidMessageTypeClosesOnlyThatClient(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{})
	ctx := testCtx(t)
	other := e.connect(ctx)
	c := e.connect(ctx)
	raw := c.PgConn().Conn()
	if _, err := raw.Write([]byte{'z', 0, 0, 0, 4}); err != nil {
		t.Fatal(err)
	}
	_ = raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 512)
	n, _ := raw.Read(buf)
	if n == 0 || buf[0] != 'E' || !strings.Contains(string(buf[:n]), "08P01") {
		t.Fatalf("no 08P01 ErrorResponse for an invalid message type: %q", buf[:n])
	}
	var x int
	if err := other.QueryRow(ctx, "SELECT 5").Scan(&x); err != nil || x != 5 {
		t.Fatalf("other client affected: %v", err)
	}
}

func openFDs(t *testing.T) int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(entries)
}

// TestNoLeaksAfterManyCycles: after 10,000 connect/query/disconnect
// cycles, goroutines (leakCheck), file descriptors and backends are back
// at their baseline.
func TestNoLeaksAfterManyCycles(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{size: 4})
	ctx := testCtx(t)
	cfg, err := pgx.ParseConfig(e.dsn("postgres", "x", "app"))
	if err != nil {
		t.Fatal(err)
	}
	cycles := 10000
	if testing.Short() {
		cycles = 1000
	}
	warm := func() error {
		c, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			return err
		}
		defer c.Close(ctx)
		_, err = c.Exec(ctx, "SELECT 1")
		return err
	}
	if err := warm(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	baseFDs := openFDs(t)
	const workers = 8
	err = parallel(workers, func(w int) error {
		for i := w; i < cycles; i += workers {
			c, err := net.DialTimeout("tcp", fmt.Sprintf("%s:%d", e.host, e.port), 5*time.Second)
			if err != nil {
				return err
			}
			c.Close()
			if err := warm(); err != nil {
				return fmt.Errorf("cycle %d: %w", i, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for openFDs(t) > baseFDs+4 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if fds := openFDs(t); fds > baseFDs+4 {
		t.Fatalf("file descriptors: %d after, %d before", fds, baseFDs)
	}
	if n := e.backendCount(ctx); n > 4+1 {
		t.Fatalf("%d backends open, pool size is 4", n)
	}
}

// TestBackendLostInTransactionDisconnects: in transaction pooling, a
// backend that dies inside a client's transaction ends the client's
// connection. Before, the client got an error and kept its session, and
// its next statements ran in autocommit on another backend: half of the
// transaction was committed.
func TestBackendLostInTransactionDisconnects(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{size: 2})
	ctx := testCtx(t)
	table := uniqueName("atom")
	d := e.direct(ctx)
	defer d.Close(ctx)
	if _, err := d.Exec(ctx, "CREATE TABLE "+table+" (i int)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dropTable(t, e, table) })
	c := e.connect(ctx, "default_query_exec_mode=simple_protocol")
	for _, q := range []string{"BEGIN", "INSERT INTO " + table + " VALUES (1)"} {
		if _, err := c.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Exec(ctx, "SELECT pg_terminate_backend(pg_backend_pid())"); err == nil {
		t.Fatal("terminating the backend succeeded")
	}
	_, err2 := c.Exec(ctx, "INSERT INTO "+table+" VALUES (2)")
	_, err3 := c.Exec(ctx, "COMMIT")
	if err2 == nil || err3 == nil {
		t.Fatalf("statements after the transaction's backend died: insert %v, commit %v; want both to fail", err2, err3)
	}
	var n int
	if err := d.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d rows committed (%v), want 0: the transaction must not be half committed", n, err)
	}
}

// TestBackendLostUnderPipelinedRequests: a backend that dies while the
// client has several requests pipelined ends the connection; no request
// that never ran is answered with a bare ReadyForQuery, as if it had run.
func TestBackendLostUnderPipelinedRequests(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{size: 2})
	c := e.rawDial(t, 10*time.Second)
	if _, err := c.Write(startupMessage(3<<16, "user", "postgres", "database", "app")); err != nil {
		t.Fatal(err)
	}
	for {
		typ, _, err := readMessage(c)
		if err != nil {
			t.Fatal(err)
		}
		if typ == 'Z' {
			break
		}
	}
	query := func(q string) []byte {
		msg := []byte{'Q', 0, 0, 0, 0}
		msg = append(msg, q...)
		msg = append(msg, 0)
		binary.BigEndian.PutUint32(msg[1:], uint32(len(msg)-1))
		return msg
	}
	batch := append(query("SELECT pg_terminate_backend(pg_backend_pid())"), query("SELECT 1")...)
	batch = append(batch, query("SELECT 2")...)
	if _, err := c.Write(batch); err != nil {
		t.Fatal(err)
	}
	var seq []byte
	answered := false // since the last ReadyForQuery: a result or an error
	for {
		typ, _, err := readMessage(c)
		if err != nil {
			break // the connection closes
		}
		seq = append(seq, typ)
		switch typ {
		case 'C', 'E', 'I':
			answered = true
		case 'Z':
			if !answered {
				t.Fatalf("a request was answered with a bare ReadyForQuery: %q", seq)
			}
			answered = false
		}
	}
	if len(seq) == 0 || seq[len(seq)-1] == 'Z' && len(seq) < 6 {
		t.Logf("messages: %q", seq)
	}
}

// TestBackendDiesUnderIdleTransaction: in transaction pooling nothing reads
// the backend of a client idle in a transaction. When the server ends that
// backend (pg_terminate_backend, its idle_in_transaction_session_timeout),
// the proxy notices within about a second: the client is told and
// disconnected, and the others get the backend's slot. Before, the dead
// backend stayed with the idle client and, with a pool of one, everyone
// else waited until query_wait_timeout.
func TestBackendDiesUnderIdleTransaction(t *testing.T) {
	for _, how := range []string{"terminate", "idle_in_transaction_session_timeout"} {
		t.Run(how, func(t *testing.T) {
			leakCheck(t)
			e := startProxy(t, proxyOpts{size: 1})
			ctx := testCtx(t)
			var victim *pgx.Conn
			if how == "terminate" {
				victim = e.connect(ctx)
			} else {
				victim = e.connect(ctx, "options=-c%20idle_in_transaction_session_timeout%3D300")
			}
			tx, pid := beginOnBackend(ctx, t, victim)
			if how == "terminate" {
				d := e.direct(ctx)
				if _, err := d.Exec(ctx, "SELECT pg_terminate_backend($1)", pid); err != nil {
					t.Fatal(err)
				}
			}
			start := time.Now()
			other := e.connect(ctx)
			var n int
			if err := other.QueryRow(ctx, "SELECT 7").Scan(&n); err != nil || n != 7 {
				t.Fatalf("another client after the idle client's backend died: %d, %v", n, err)
			}
			if waited := time.Since(start); waited > 5*time.Second {
				t.Fatalf("another client waited %s for the dead backend's slot", waited)
			}
			if _, err := tx.Exec(ctx, "SELECT 1"); err == nil {
				t.Fatal("the client whose backend died inside its transaction was not told")
			}
		})
	}
}

// holdTransactions opens n clients, each inside a transaction that holds a
// backend until the caller commits it; the clients close with the test.
func holdTransactions(ctx context.Context, t *testing.T, n int, dsn string) []pgx.Tx {
	t.Helper()
	var held []pgx.Tx
	for i := 0; i < n; i++ {
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close(context.Background()) })
		tx, err := c.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
		held = append(held, tx)
	}
	return held
}
