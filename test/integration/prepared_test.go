package integration

// Named prepared statements in transaction pooling, as drivers use them by
// default: pgx's statement cache and psycopg's server-side prepare. A
// client's statements must work whichever backend serves its next
// transaction.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// preparedClient runs 50 iterations of named prepared statements (pgx's
// default QueryExecModeCacheStatement) and returns every error it met.
func preparedClient(ctx context.Context, dsn string, i int) []error {
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return []error{err}
	}
	defer c.Close(context.Background())
	if c.Config().DefaultQueryExecMode != pgx.QueryExecModeCacheStatement {
		return []error{fmt.Errorf("pgx exec mode %v, want the statement cache", c.Config().DefaultQueryExecMode)}
	}
	var errs []error
	fail := func(j int, what string, err error) {
		errs = append(errs, fmt.Errorf("client %d iteration %d %s: %w", i, j, what, err))
	}
	for j := 0; j < 50; j++ {
		var n int
		if err := c.QueryRow(ctx, "SELECT $1::int + $2::int", i, j).Scan(&n); err != nil {
			fail(j, "sum", err)
		} else if n != i+j {
			fail(j, "sum", fmt.Errorf("got %d want %d", n, i+j))
		}
		var s string
		if err := c.QueryRow(ctx, "SELECT $1::text || '-' || $2::text", "c"+fmt.Sprint(i), fmt.Sprint(j)).Scan(&s); err != nil {
			fail(j, "concat", err)
		} else if want := fmt.Sprintf("c%d-%d", i, j); s != want {
			fail(j, "concat", fmt.Errorf("got %q want %q", s, want))
		}
		// A family of statements, so that backends see many names.
		var k int
		if err := c.QueryRow(ctx, fmt.Sprintf("SELECT %d::int * 100 + $1::int", j%7), j).Scan(&k); err != nil {
			fail(j, "family", err)
		} else if k != (j%7)*100+j {
			fail(j, "family", fmt.Errorf("got %d want %d", k, (j%7)*100+j))
		}
		switch j % 10 {
		case 3:
			// Prepared statements inside an explicit transaction.
			err := pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
				var a int64
				var b string
				if err := tx.QueryRow(ctx, "SELECT $1::int8 * 1000, $2::text", int64(j), "tx").Scan(&a, &b); err != nil {
					return err
				}
				if a != int64(j)*1000 || b != "tx" {
					return fmt.Errorf("got %d %q", a, b)
				}
				var cnt int
				if err := tx.QueryRow(ctx, "SELECT count(*) FROM generate_series(1, $1::int)", j+1).Scan(&cnt); err != nil {
					return err
				}
				if cnt != j+1 {
					return fmt.Errorf("count %d want %d", cnt, j+1)
				}
				return nil
			})
			if err != nil {
				fail(j, "transaction", err)
			}
		case 7:
			// A pipeline of prepared statements (Parse/Describe of new
			// names, then Bind/Execute, one Sync).
			b := &pgx.Batch{}
			for q := 0; q < 5; q++ {
				b.Queue(fmt.Sprintf("SELECT $1::int + %d", q), j)
			}
			br := c.SendBatch(ctx, b)
			for q := 0; q < 5; q++ {
				var v int
				if err := br.QueryRow().Scan(&v); err != nil {
					fail(j, fmt.Sprintf("batch %d", q), err)
				} else if v != j+q {
					fail(j, fmt.Sprintf("batch %d", q), fmt.Errorf("got %d want %d", v, j+q))
				}
			}
			if err := br.Close(); err != nil {
				fail(j, "batch close", err)
			}
		}
	}
	return errs
}

func TestPreparedPgxCacheTransactionMode(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{mode: "transaction", size: 3})
	dumpLogsOnFailure(t, e)
	ctx, cancel := context.WithTimeout(testCtx(t), 30*time.Second)
	defer cancel()
	dsn := e.dsn("postgres", "x", "app")
	var mu sync.Mutex
	var all []error
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs := preparedClient(ctx, dsn, i)
			mu.Lock()
			all = append(all, errs...)
			mu.Unlock()
		}(i)
	}
	wg.Wait()
	if len(all) > 0 {
		shown := all
		if len(shown) > 10 {
			shown = shown[:10]
		}
		t.Fatalf("%d errors with pgx's statement cache in transaction mode; first ones:\n%v", len(all), errors.Join(shown...))
	}
	// The pool stayed at its size.
	if n := e.backendCount(ctx); n > 3 {
		t.Logf("note: %d client backends on the server (other tests' may linger)", n)
	}
}

const psycopgPreparedScript = `
import json, sys
import psycopg

cfg = json.loads(sys.argv[1])
dsn = cfg["dsn"]
out = {"errors": [], "results": [], "pids": [], "prepared": []}

# Every parameterised query becomes a named server-side statement.
conn = psycopg.connect(dsn, autocommit=True, prepare_threshold=0)
# Holders keep backends busy in open transactions so that conn is served
# by different backends over time.
holders = [psycopg.connect(dsn, autocommit=False, prepare_threshold=None) for _ in range(2)]

def run(i):
    try:
        row = conn.execute("SELECT %s::int * 10 + 1, pg_backend_pid()", (i,)).fetchone()
        out["results"].append(row[0])
        out["pids"].append(row[1])
    except Exception as e:
        out["errors"].append("execution %d: %s: %s" % (i, type(e).__name__, e))

i = 0
for rnd in range(5):
    busy = rnd % 3   # 0, 1 or 2 backends held by others
    for h in holders[:busy]:
        h.execute("SELECT 1")          # opens a transaction, keeps the backend
    try:
        with conn.transaction():
            run(i); i += 1
            run(i); i += 1
    except Exception as e:
        out["errors"].append("transaction %d: %s: %s" % (rnd, type(e).__name__, e))
    for h in holders[:busy]:
        h.commit()
    # Let a holder take the backend conn just used.
    for h in holders:
        h.execute("SELECT 2")
    for h in holders:
        h.commit()

# A full statement cache evicts with SQL "DEALLOCATE _pg3_N", sent with
# the extended protocol (libpq before 17), on whichever backend serves it.
small = psycopg.connect(dsn, autocommit=True, prepare_threshold=0)
small.prepared_max = 2
for rnd in range(3):
    for k in range(5):
        try:
            v = small.execute("SELECT %s::int + " + str(k), (100,)).fetchone()[0]
            if v != 100 + k:
                out["errors"].append("eviction round %d query %d returned %r" % (rnd, k, v))
        except Exception as e:
            out["errors"].append("eviction round %d query %d: %s: %s" % (rnd, k, type(e).__name__, e))
small.close()

try:
    out["prepared"] = [r[0] for r in conn.execute("SELECT name FROM pg_prepared_statements").fetchall()]
except Exception as e:
    out["errors"].append("pg_prepared_statements: %s: %s" % (type(e).__name__, e))

conn.close()
for h in holders:
    h.close()
print(json.dumps(out))
`

func TestPreparedPsycopgTransactionMode(t *testing.T) {
	leakCheck(t)
	py := requirePsycopg(t)
	e := startProxy(t, proxyOpts{mode: "transaction", size: 3})
	dumpLogsOnFailure(t, e)
	ctx := testCtx(t)
	script := writeProgram(t, "psycopg_prepared.py", psycopgPreparedScript)
	var r struct {
		Errors   []string
		Results  []int
		PIDs     []int `json:"pids"`
		Prepared []string
	}
	runScriptJSON(ctx, t, py, script, map[string]string{"dsn": e.kv("postgres", "app")}, &r)
	if len(r.Errors) > 0 {
		t.Fatalf("%d errors with psycopg prepare_threshold=0 in transaction mode:\n%s", len(r.Errors), strings.Join(r.Errors, "\n"))
	}
	if len(r.Results) != 10 {
		t.Fatalf("%d results, want 10", len(r.Results))
	}
	for i, v := range r.Results {
		if v != i*10+1 {
			t.Fatalf("execution %d returned %d", i, v)
		}
	}
	pids := map[int]bool{}
	for _, p := range r.PIDs {
		pids[p] = true
	}
	if len(pids) < 2 {
		t.Fatalf("all executions ran on backend(s) %v: the test did not exercise backend switching", r.PIDs)
	}
	t.Logf("executions over backends %v", r.PIDs)
}
