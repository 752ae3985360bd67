// Command partitioned-prepared measures the recipe "prepared statements on
// a partitioned table": a table with -partitions partitions, pgbench -M
// prepared running `SELECT * FROM parted WHERE key = :k` through pgrecycle
// (transaction pooling) with plan_cache_mode left at auto, injected as
// force_custom_plan, and, to show what a generic plan costs, injected as
// force_generic_plan. It reports latency of the 6th and later executions
// per client, tps, and for one pooled backend the memory of its contexts,
// its cached plans and pg_prepared_statements.generic_plans, plus the
// largest RssAnon of the pool's backends.
//
//	go run ./test/bench/recipes/partitioned-prepared [-time 10] [-runs 3]
//
// Every process it starts (PostgreSQL, pgrecycle, pgbench) is stopped on
// exit, on error and on SIGINT/SIGTERM/SIGHUP.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/pgrecycle/pgrecycle/test/bench/recipes/kit"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5"
)

type target struct{ key, label, params string }

var targets = []target{
	{"a", "(a) pgrecycle, plan_cache_mode not injected (auto)", ""},
	{"b", "(b) pgrecycle, [parameters] plan_cache_mode = \"force_custom_plan\"", "\n[parameters]\nplan_cache_mode = \"force_custom_plan\"\n"},
	{"c", "(c) pgrecycle, plan_cache_mode = \"force_generic_plan\" (what auto does once it picks the generic plan)", "\n[parameters]\nplan_cache_mode = \"force_generic_plan\"\n"},
}

type run struct {
	tps, avg, p99    float64 // ms, 6th and later executions
	ctxBytes, planB  int64   // one backend: all memory contexts, CachedPlan* contexts
	generic, custom  int64   // that backend's pg_prepared_statements
	mode             string  // that backend's plan_cache_mode
	rssMaxKB, rssAvg int64   // over the pool's backends
}

func main() { os.Exit(realMain()) }

func realMain() int {
	seconds := flag.Int("time", 10, "seconds per pgbench run")
	runs := flag.Int("runs", 3, "runs per target (medians are reported)")
	parts := flag.Int("partitions", 1000, "partitions of the table")
	clients := flag.Int("clients", 4, "pgbench clients; pool size is the same")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	e := kit.NewEnv("partitioned-prepared")
	defer e.Cleanup()
	if err := e.Setup(ctx, map[string]string{"shared_buffers": "128MB", "max_connections": "100"}); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", e.Name, err)
		return 1
	}
	if err := createTable(ctx, e, *parts); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", e.Name, err)
		return 1
	}
	script := filepath.Join(e.Work, "select.sql")
	if err := os.WriteFile(script, []byte(fmt.Sprintf("\\set k random(1, %d)\nSELECT * FROM parted WHERE key = :k;\n", *parts)), 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", e.Name, err)
		return 1
	}
	all := map[string][]run{}
	for i := 0; i < *runs; i++ {
		for _, t := range targets {
			r, err := oneRun(ctx, e, t, i, script, *seconds, *clients)
			if err != nil {
				fmt.Fprintf(os.Stderr, "%s: %s: %v\n", e.Name, t.label, err)
				return 1
			}
			e.Logf("%s run %d: tps %.0f avg %.3f ms p99 %.3f ms, backend contexts %s (plans %s), generic_plans %d custom_plans %d, RssAnon max %d kB",
				t.key, i+1, r.tps, r.avg, r.p99, mb(r.ctxBytes), mb(r.planB), r.generic, r.custom, r.rssMaxKB)
			all[t.key] = append(all[t.key], r)
		}
	}
	fmt.Println()
	fmt.Println(report(e, all, *parts, *seconds, *runs, *clients))
	return 0
}

func createTable(ctx context.Context, e *kit.Env, parts int) error {
	e.Logf("creating table parted with %d partitions", parts)
	conn, err := pgx.Connect(ctx, e.PG.DSN(e.User, e.Pass, e.DB))
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	q := fmt.Sprintf(`CREATE TABLE parted (key int NOT NULL, id int NOT NULL, payload text) PARTITION BY RANGE (key);
DO $$
BEGIN
	FOR i IN 1..%d LOOP
		EXECUTE format('CREATE TABLE parted_%%s PARTITION OF parted FOR VALUES FROM (%%s) TO (%%s)', i, i, i + 1);
	END LOOP;
END $$;
CREATE INDEX ON parted (key, id);
INSERT INTO parted SELECT k, i, md5((k * 100 + i)::text) FROM generate_series(1, %d) k, generate_series(1, 20) i;
ANALYZE parted;`, parts, parts)
	_, err = conn.Exec(ctx, q)
	return err
}

func oneRun(ctx context.Context, e *kit.Env, t target, i int, script string, seconds, clients int) (run, error) {
	var r run
	dir := filepath.Join(e.Work, fmt.Sprintf("run-%s-%d", t.key, i))
	port, stop, err := e.StartPgrecycle(ctx, dir, clients, t.params)
	if err != nil {
		return r, err
	}
	defer stop()
	prefix := filepath.Join(dir, "txlog")
	out, err := e.Pgbench(ctx, port, prefix, "-M", "prepared", "-f", script,
		"-c", strconv.Itoa(clients), "-j", "2", "-T", strconv.Itoa(seconds))
	if err != nil {
		return r, err
	}
	r.tps = kit.ParseFloat(kit.ReTPS, out)
	txs, err := kit.ReadTxLogs(prefix)
	if err != nil {
		return r, err
	}
	var lats []float64
	for _, tx := range txs {
		if tx.TxNo >= 5 { // transaction_no counts from 0: the 6th and later
			lats = append(lats, tx.Us/1000)
		}
	}
	sort.Float64s(lats)
	r.avg, r.p99 = kit.Mean(lats), kit.Percentile(lats, 0.99)

	// One pooled backend, through pgrecycle (simple protocol: one
	// statement, one transaction, on whichever backend is free).
	cfg, err := pgx.ParseConfig(e.DSN(port))
	if err != nil {
		return r, err
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return r, err
	}
	err = c.QueryRow(ctx, `SELECT (SELECT sum(total_bytes)::bigint FROM pg_backend_memory_contexts),
	(SELECT coalesce(sum(total_bytes), 0)::bigint FROM pg_backend_memory_contexts WHERE name LIKE 'CachedPlan%'),
	(SELECT coalesce(sum(generic_plans), 0)::bigint FROM pg_prepared_statements),
	(SELECT coalesce(sum(custom_plans), 0)::bigint FROM pg_prepared_statements),
	current_setting('plan_cache_mode')`).Scan(&r.ctxBytes, &r.planB, &r.generic, &r.custom, &r.mode)
	c.Close(context.WithoutCancel(ctx))
	if err != nil {
		return r, err
	}
	super, err := pgx.Connect(ctx, e.PG.SuperDSN())
	if err != nil {
		return r, err
	}
	defer super.Close(context.WithoutCancel(ctx))
	rows, err := super.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE usename = $1 AND backend_type = 'client backend'`, e.User)
	if err != nil {
		return r, err
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		return r, err
	}
	var n, sum int64
	for _, pid := range pids {
		if kb := kit.RssAnonKB(pid); kb >= 0 {
			n++
			sum += kb
			if kb > r.rssMaxKB {
				r.rssMaxKB = kb
			}
		}
	}
	if n > 0 {
		r.rssAvg = sum / n
	}
	if r.mode == "" {
		return r, errors.New("no plan_cache_mode")
	}
	return r, nil
}

func mb(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/(1<<20)) }

func med(rs []run, f func(run) float64) float64 {
	var xs []float64
	for _, r := range rs {
		xs = append(xs, f(r))
	}
	return kit.Median(xs)
}

func report(e *kit.Env, all map[string][]run, parts, seconds, runs, clients int) string {
	var b strings.Builder
	b.WriteString("| target | backend plan_cache_mode | generic_plans / custom_plans (one backend) | latency avg, 6th+ exec | p99, 6th+ exec | tps | memory contexts, one backend | of which CachedPlan* | RssAnon, largest pool backend |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, t := range targets {
		rs := all[t.key]
		if len(rs) == 0 {
			continue
		}
		last := rs[len(rs)-1]
		fmt.Fprintf(&b, "| %s | %s | %.0f / %.0f | %.3f ms | %.3f ms | %.0f | %s | %s | %.1f MB |\n",
			t.label, last.mode,
			med(rs, func(r run) float64 { return float64(r.generic) }),
			med(rs, func(r run) float64 { return float64(r.custom) }),
			med(rs, func(r run) float64 { return r.avg }),
			med(rs, func(r run) float64 { return r.p99 }),
			med(rs, func(r run) float64 { return r.tps }),
			mb(int64(med(rs, func(r run) float64 { return float64(r.ctxBytes) }))),
			mb(int64(med(rs, func(r run) float64 { return float64(r.planB) }))),
			med(rs, func(r run) float64 { return float64(r.rssMaxKB) })/1024)
	}
	fmt.Fprintf(&b, "\nMedians of %d runs of %d s, %s: table `parted` with %d range partitions (20 rows each, index on (key, id)); "+
		"pgbench -M prepared -c %d -j 2 running `SELECT * FROM parted WHERE key = :k` (random k) through pgrecycle in transaction pooling, pool size %d; "+
		"latency from pgbench's per-transaction log, leaving out each client's first 5 executions; memory of one pooled backend read through pgrecycle after the run "+
		"(`pg_backend_memory_contexts`, `pg_prepared_statements`); RssAnon from /proc of every pool backend. %d CPUs (shared with another benchmark), Go %s.\n",
		runs, seconds, e.PGVersion(), parts, clients, clients, runtime.NumCPU(), strings.TrimPrefix(runtime.Version(), "go"))
	return b.String()
}
