package integration

// pgbench through the proxy: many clients over few backends in
// transaction pooling (simple and extended protocol), and prepared
// statements in session pooling.

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgrecycle/pgrecycle/test/pgtest"
)

// benchDB is a database of its own, served by the proxy as "bench" with
// backends logging in as a dedicated role that identifies them in
// pg_stat_activity.
type benchDB struct {
	name, role, password string
}

func newBenchDB(ctx context.Context, t *testing.T) benchDB {
	t.Helper()
	pg := pgtest.Shared(t)
	b := benchDB{name: uniqueName("bench")}
	b.role, b.password = poolRole(ctx, t)
	if err := pg.CreateDatabase(ctx, b.name, b.role); err != nil {
		t.Fatal(err)
	}
	return b
}

// section is the TOML for the proxy database "bench".
func (b benchDB) section(t *testing.T) string {
	pg := pgtest.Shared(t)
	return fmt.Sprintf(`
[databases.bench]
host = %q
port = %d
dbname = %q
sslmode = "disable"
user = %q
password = %q
`, pg.Host, pg.Port, b.name, b.role, b.password)
}

func (b benchDB) direct(ctx context.Context, t *testing.T) *pgx.Conn {
	t.Helper()
	pg := pgtest.Shared(t)
	c, err := pgx.Connect(ctx, pg.DSN(pg.SuperUser, pg.SuperPassword, b.name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// pgbench runs pgbench against the proxy's "bench" database.
func (e *env) pgbench(ctx context.Context, t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	bin := requireTool(t, "pgbench")
	full := append([]string{"-h", e.host, "-p", strconv.Itoa(e.port), "-U", "postgres"}, args...)
	full = append(full, "bench")
	return runCmd(ctx, t, "", clientEnv(), bin, full...)
}

// sampleBackends records the largest number of backends of role seen in
// pg_stat_activity until stop is called.
func sampleBackends(ctx context.Context, t *testing.T, d *pgx.Conn, role string) (stop func() int) {
	var mu sync.Mutex
	peak, samples := 0, 0
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			n, _, err := poolBackends(ctx, d, role)
			if err == nil {
				mu.Lock()
				samples++
				if n > peak {
					peak = n
				}
				mu.Unlock()
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() int {
		close(done)
		<-finished
		mu.Lock()
		defer mu.Unlock()
		t.Logf("backend samples: %d, peak %d", samples, peak)
		if samples < 10 {
			t.Fatalf("only %d samples of pg_stat_activity", samples)
		}
		return peak
	}
}

var (
	failedRe    = regexp.MustCompile(`number of failed transactions: (\d+)`)
	processedRe = regexp.MustCompile(`number of transactions actually processed: (\d+)`)
)

// checkBenchOutput asserts a clean pgbench run and returns the number of
// transactions processed.
func checkBenchOutput(t *testing.T, out, errOut string, code int) int {
	t.Helper()
	if code != 0 {
		t.Fatalf("pgbench exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	m := failedRe.FindStringSubmatch(out)
	if m == nil || m[1] != "0" {
		t.Fatalf("want \"number of failed transactions: 0\"\nstdout:\n%s\nstderr:\n%s", out, errOut)
	}
	p := processedRe.FindStringSubmatch(out)
	if p == nil {
		t.Fatalf("no transaction count\n%s", out)
	}
	n, _ := strconv.Atoi(p[1])
	if n == 0 {
		t.Fatalf("no transaction processed\n%s", out)
	}
	if strings.Contains(errOut, "ERROR") || strings.Contains(errOut, "FATAL") {
		t.Fatalf("errors on stderr:\n%s", errOut)
	}
	return n
}

// checkBalances verifies TPC-B's invariant: every transaction updated
// account, teller and branch by the same delta and logged it once.
func checkBalances(ctx context.Context, t *testing.T, d *pgx.Conn, txns int) {
	t.Helper()
	var a, tl, br, h, hn int64
	err := d.QueryRow(ctx, `SELECT (SELECT sum(abalance) FROM pgbench_accounts),
		(SELECT sum(tbalance) FROM pgbench_tellers), (SELECT sum(bbalance) FROM pgbench_branches),
		(SELECT coalesce(sum(delta), 0) FROM pgbench_history), (SELECT count(*) FROM pgbench_history)`).Scan(&a, &tl, &br, &h, &hn)
	if err != nil {
		t.Fatal(err)
	}
	if a != tl || tl != br || br != h {
		t.Fatalf("TPC-B balances disagree: accounts %d tellers %d branches %d history %d", a, tl, br, h)
	}
	if hn < int64(txns) {
		t.Fatalf("history has %d rows, pgbench reported %d transactions", hn, txns)
	}
}

func TestPgbench(t *testing.T) {
	leakCheck(t)
	requireTool(t, "pgbench")
	ctx := testCtx(t)
	bdb := newBenchDB(ctx, t)
	d := bdb.direct(ctx, t)

	const poolSize = 5
	tx := startProxy(t, proxyOpts{mode: "transaction", size: poolSize, extra: bdb.section(t)})

	t.Run("init through proxy", func(t *testing.T) {
		ctx := testCtx(t)
		out, errOut, code := tx.pgbench(ctx, t, "-i", "-s", "1", "-q")
		if code != 0 {
			t.Fatalf("pgbench -i exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
		}
		var n int
		if err := d.QueryRow(ctx, "SELECT count(*) FROM pgbench_accounts").Scan(&n); err != nil || n != 100000 {
			t.Fatalf("pgbench_accounts: %d rows, %v", n, err)
		}
	})
	var n int
	if err := d.QueryRow(ctx, "SELECT count(*) FROM pgbench_accounts").Scan(&n); err != nil || n != 100000 {
		// Initialise directly so the runs below still test something.
		pg := pgtest.Shared(t)
		out, errOut, code := runCmd(ctx, t, "", clientEnv("PGPASSWORD="+pg.SuperPassword), requireTool(t, "pgbench"),
			"-i", "-s", "1", "-q", "-h", pg.Host, "-p", strconv.Itoa(pg.Port), "-U", pg.SuperUser, bdb.name)
		if code != 0 {
			t.Fatalf("direct pgbench -i exit %d\n%s\n%s", code, out, errOut)
		}
	}

	for _, proto := range []string{"simple", "extended"} {
		t.Run("transaction pool "+proto, func(t *testing.T) {
			ctx := testCtx(t)
			stop := sampleBackends(ctx, t, d, bdb.role)
			out, errOut, code := tx.pgbench(ctx, t, "-n", "-c", "50", "-j", "2", "-T", "5", "-M", proto)
			peak := stop()
			txns := checkBenchOutput(t, out, errOut, code)
			t.Logf("%s: %d transactions", proto, txns)
			if peak > poolSize {
				t.Fatalf("%d backends for a pool of %d", peak, poolSize)
			}
			if peak == 0 {
				t.Fatal("no pool backend seen during the run")
			}
			checkBalances(ctx, t, d, txns)
		})
	}

	t.Run("session pool prepared", func(t *testing.T) {
		ctx := testCtx(t)
		const size = 10
		// Close the transaction-mode proxy so that every backend of the
		// role seen from now on is the session pool's.
		tx.srv.Close()
		deadline := time.Now().Add(5 * time.Second)
		for {
			n, _, err := poolBackends(ctx, d, bdb.role)
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d backends left after the transaction-mode proxy closed", n)
			}
			time.Sleep(50 * time.Millisecond)
		}
		sess := startProxy(t, proxyOpts{mode: "session", size: size, extra: bdb.section(t)})
		stop := sampleBackends(ctx, t, d, bdb.role)
		out, errOut, code := sess.pgbench(ctx, t, "-n", "-c", "10", "-j", "2", "-T", "5", "-M", "prepared")
		peak := stop()
		txns := checkBenchOutput(t, out, errOut, code)
		t.Logf("prepared: %d transactions", txns)
		if peak > size {
			t.Fatalf("%d backends for a pool of %d", peak, size)
		}
		checkBalances(ctx, t, d, txns)
	})
}
