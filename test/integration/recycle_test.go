package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgrecycle/pgrecycle/test/pgtest"
)

// retirements counts "backend retired" log lines by reason.
func (e *env) retirements() map[string]int {
	out := map[string]int{}
	for _, entry := range e.logs.FilterMessage("backend retired").All() {
		out[entry.ContextMap()["reason"].(string)]++
	}
	return out
}

func TestRecycleMaxQueries(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{size: 1, extra: "[recycle]\nmax_queries = 10\n"})
	ctx := testCtx(t)
	c := e.connect(ctx)
	first := backendPID(ctx, t, c)
	for i := 2; i <= 10; i++ {
		if pid := backendPID(ctx, t, c); pid != first {
			t.Fatalf("query %d ran on pid %d, want %d (retired too early)", i, pid, first)
		}
	}
	if pid := backendPID(ctx, t, c); pid == first {
		t.Fatalf("11th query still on pid %d: max_queries = 10 not enforced", pid)
	}
	if got := e.retirements(); got["queries"] != 1 || len(got) != 1 {
		t.Fatalf("retirements = %v, want only queries:1", got)
	}
}

func TestRecycleMaxTransactions(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{size: 1, extra: "[recycle]\nmax_transactions = 3\n"})
	ctx := testCtx(t)
	c := e.connect(ctx)
	first := backendPID(ctx, t, c)
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ { // several queries, one transaction
		if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if pid := backendPID(ctx, t, c); pid != first {
		t.Fatalf("third transaction ran on %d, want %d", pid, first)
	}
	if pid := backendPID(ctx, t, c); pid == first {
		t.Fatal("fourth transaction still on the first backend: max_transactions = 3 not enforced")
	}
	if got := e.retirements(); got["transactions"] != 1 || len(got) != 1 {
		t.Fatalf("retirements = %v, want only transactions:1", got)
	}
}

func TestRecycleLifetimeNeverInterruptsTransaction(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{size: 1, extra: "[recycle]\nmax_lifetime = \"1s\"\nlifetime_jitter = 0.0\n"})
	ctx := testCtx(t)
	c := e.connect(ctx)
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var first uint32
	if err := tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&first); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "CREATE TEMP TABLE held (x int) ON COMMIT DROP"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond) // past the deadline, and past a tick
	var pid uint32
	if err := tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatalf("transaction interrupted across the lifetime deadline: %v", err)
	}
	if pid != first {
		t.Fatalf("transaction moved from %d to %d", first, pid)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO held VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if pid := backendPID(ctx, t, c); pid == first {
		t.Fatal("backend past max_lifetime was not retired at release")
	}
	if got := e.retirements(); got["lifetime"] < 1 {
		t.Fatalf("retirements = %v, want lifetime", got)
	}
	// An idle backend past its deadline is retired by the tick, with no
	// client asking.
	deadline := time.Now().Add(5 * time.Second)
	for e.retirements()["lifetime"] < 2 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if e.retirements()["lifetime"] < 2 {
		t.Fatal("idle backend past max_lifetime not retired by the background tick")
	}
}

func TestRecycleMaxMemory(t *testing.T) {
	leakCheck(t)
	ctx := testCtx(t)
	pg := pgtest.Shared(t)
	// 1,500 tables: touching them all loads their relcache entries.
	if err := pg.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS wide;
DO $$ BEGIN FOR i IN 1..1500 LOOP EXECUTE format('CREATE TABLE IF NOT EXISTS wide.t%s (id int, a text, b text)', i); END LOOP; END $$`); err != nil {
		t.Fatal(err)
	}
	e := startProxy(t, proxyOpts{size: 1, extra: "[recycle]\nmax_memory = \"8MB\"\nmemory_check_interval = \"0s\"\n"})
	c := e.connect(ctx, "default_query_exec_mode=simple_protocol")
	first := backendPID(ctx, t, c)
	if _, err := c.Exec(ctx, `DO $$ BEGIN FOR i IN 1..1500 LOOP EXECUTE format('SELECT * FROM wide.t%s', i); END LOOP; END $$`); err != nil {
		t.Fatal(err)
	}
	second := backendPID(ctx, t, c)
	if second == first {
		t.Fatal("backend over max_memory was not retired")
	}
	var entries int
	for _, entry := range e.logs.FilterMessage("backend retired").All() {
		m := entry.ContextMap()
		if m["reason"] != "memory" {
			t.Fatalf("unexpected retirement %v", m)
		}
		if mem, _ := m["memory_bytes"].(int64); mem <= 8<<20 {
			t.Fatalf("retired with memory_bytes = %v, want > 8MB", m["memory_bytes"])
		}
		entries++
	}
	if entries != 1 {
		t.Fatalf("%d memory retirements, want 1", entries)
	}
	var size int64
	if err := c.QueryRow(ctx, "SELECT sum(total_bytes)::int8 FROM pg_backend_memory_contexts").Scan(&size); err != nil {
		t.Fatal(err)
	}
	if size > 4<<20 {
		t.Fatalf("replacement backend uses %d bytes, want a fresh (small) backend", size)
	}
}

func TestInjectedParametersSurviveReset(t *testing.T) {
	leakCheck(t)
	for _, mode := range []string{"session", "transaction"} {
		t.Run(mode, func(t *testing.T) {
			e := startProxy(t, proxyOpts{mode: mode, size: 2,
				dbExtra: "[databases.app.parameters]\nwork_mem = \"7MB\"\n",
				extra:   "[users.postgres.parameters]\nstatement_timeout = \"42s\"\n"})
			ctx := testCtx(t)
			c := e.connect(ctx, "default_query_exec_mode=simple_protocol")
			check := func(stage string) {
				t.Helper()
				for setting, want := range map[string]string{"plan_cache_mode": "force_custom_plan", "work_mem": "7MB", "statement_timeout": "42s"} {
					var got string
					if err := c.QueryRow(ctx, "SHOW "+setting).Scan(&got); err != nil {
						t.Fatal(err)
					}
					if got != want {
						t.Fatalf("%s: %s = %q, want %q", stage, setting, got, want)
					}
				}
			}
			check("fresh")
			if _, err := c.Exec(ctx, "SET plan_cache_mode = auto"); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Exec(ctx, "RESET ALL"); err != nil {
				t.Fatal(err)
			}
			check("after RESET ALL")
			if _, err := c.Exec(ctx, "DISCARD ALL"); err != nil {
				t.Fatal(err)
			}
			check("after DISCARD ALL")
		})
	}
}

func TestRejectedParameterNamedAtConnect(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{dbExtra: "[databases.app.parameters]\nplan_cache_mode = \"sometimes\"\n"})
	ctx := testCtx(t)
	_, err := pgx.Connect(ctx, e.dsn("postgres", "x", "app"))
	if err == nil {
		t.Fatal("connect succeeded with an invalid injected parameter")
	}
	if !strings.Contains(err.Error(), "plan_cache_mode") {
		t.Fatalf("error does not name the parameter: %v", err)
	}
}
