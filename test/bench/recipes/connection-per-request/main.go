// Command connection-per-request measures the recipe "a web application
// opening a connection per request": pgbench -C (a new connection for every
// transaction) -S (one primary-key SELECT) straight to PostgreSQL and
// through pgrecycle. It reports tps, pgbench's average connection time,
// latency avg/p99, the largest number of PostgreSQL client backends of the
// role sampled every second from pg_stat_activity, and how many sessions
// PostgreSQL started (pg_stat_database.sessions: one fork and one
// authentication each).
//
//	go run ./test/bench/recipes/connection-per-request [-time 10] [-runs 3]
//
// Every process it starts (PostgreSQL, pgrecycle, pgbench) is stopped on
// exit, on error and on SIGINT/SIGTERM/SIGHUP.
package main

import (
	"context"
	"flag"
	"fmt"
	"github.com/pgrecycle/pgrecycle/test/bench/recipes/kit"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

type target struct{ key, label string }

var targets = []target{
	{"a", "(a) direct to PostgreSQL"},
	{"b", "(b) through pgrecycle"},
}

type run struct {
	tps, connMS, avg, p99 float64
	maxBackends           int
	sessions              int64
}

var (
	reConn = regexp.MustCompile(`(?m)^average connection time = ([0-9.]+) ms`)
	reLat  = regexp.MustCompile(`(?m)^latency average = ([0-9.]+) ms`)
)

func main() { os.Exit(realMain()) }

func realMain() int {
	seconds := flag.Int("time", 10, "seconds per pgbench run")
	runs := flag.Int("runs", 3, "runs per target (medians are reported)")
	clients := flag.Int("clients", 8, "pgbench clients")
	pool := flag.Int("pool", 4, "pgrecycle pool size")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	e := kit.NewEnv("connection-per-request")
	defer e.Cleanup()
	if err := e.Setup(ctx, map[string]string{"max_connections": "100"}); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", e.Name, err)
		return 1
	}
	e.Logf("creating the pgbench tables (scale 1)")
	if err := pgbenchInit(ctx, e); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", e.Name, err)
		return 1
	}
	all := map[string][]run{}
	for i := 0; i < *runs; i++ {
		for _, t := range targets {
			r, err := oneRun(ctx, e, t, i, *seconds, *clients, *pool)
			if err != nil {
				fmt.Fprintf(os.Stderr, "%s: %s: %v\n", e.Name, t.label, err)
				return 1
			}
			e.Logf("%s run %d: tps %.0f, connection %.3f ms, latency avg %.3f p99 %.3f ms, max backends %d, sessions started %d",
				t.key, i+1, r.tps, r.connMS, r.avg, r.p99, r.maxBackends, r.sessions)
			all[t.key] = append(all[t.key], r)
		}
	}
	fmt.Println()
	fmt.Println(report(e, all, *seconds, *runs, *clients, *pool))
	return 0
}

func pgbenchInit(ctx context.Context, e *kit.Env) error {
	conn, err := pgx.Connect(ctx, e.PG.DSN(e.User, e.Pass, e.DB))
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	// The tables of pgbench -i -s 1, made in SQL.
	_, err = conn.Exec(ctx, `CREATE TABLE pgbench_accounts (aid int PRIMARY KEY, bid int, abalance int, filler char(84));
INSERT INTO pgbench_accounts SELECT i, 1, 0, '' FROM generate_series(1, 100000) i;
CREATE TABLE pgbench_branches (bid int PRIMARY KEY, bbalance int, filler char(88));
INSERT INTO pgbench_branches VALUES (1, 0, '');
CREATE TABLE pgbench_tellers (tid int PRIMARY KEY, bid int, tbalance int, filler char(84));
INSERT INTO pgbench_tellers SELECT i, 1, 0, '' FROM generate_series(1, 10) i;
CREATE TABLE pgbench_history (tid int, bid int, aid int, delta int, mtime timestamp, filler char(22));
ANALYZE pgbench_accounts;`)
	return err
}

func sessions(ctx context.Context, super *pgx.Conn, db string) (n int64, err error) {
	err = super.QueryRow(ctx, "SELECT sessions FROM pg_stat_database WHERE datname = $1", db).Scan(&n)
	return n, err
}

func oneRun(ctx context.Context, e *kit.Env, t target, i, seconds, clients, pool int) (run, error) {
	var r run
	dir := filepath.Join(e.Work, fmt.Sprintf("run-%s-%d", t.key, i))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return r, err
	}
	super, err := pgx.Connect(ctx, e.PG.SuperDSN())
	if err != nil {
		return r, err
	}
	defer super.Close(context.WithoutCancel(ctx))
	port := e.PG.Port
	if t.key == "b" {
		p, stop, err := e.StartPgrecycle(ctx, dir, pool, "")
		if err != nil {
			return r, err
		}
		defer stop()
		port = p
	}
	// Statistics are flushed at session end or about once a second.
	_, _ = super.Exec(ctx, "SELECT pg_stat_force_next_flush()")
	time.Sleep(1500 * time.Millisecond)
	before, err := sessions(ctx, super, e.DB)
	if err != nil {
		return r, err
	}
	sctx, stopSampling := context.WithCancel(ctx)
	maxc := make(chan int, 1)
	go func() {
		m := 0
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			var n int
			if err := super.QueryRow(sctx, `SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND backend_type = 'client backend'`, e.User).Scan(&n); err == nil && n > m {
				m = n
			}
			select {
			case <-sctx.Done():
				maxc <- m
				return
			case <-tick.C:
			}
		}
	}()
	prefix := filepath.Join(dir, "txlog")
	out, err := e.Pgbench(ctx, port, prefix, "-C", "-S", "-c", strconv.Itoa(clients), "-j", "2", "-T", strconv.Itoa(seconds))
	stopSampling()
	r.maxBackends = <-maxc
	if err != nil {
		return r, err
	}
	time.Sleep(1500 * time.Millisecond)
	after, err := sessions(ctx, super, e.DB)
	if err != nil {
		return r, err
	}
	r.sessions = after - before
	r.tps = kit.ParseFloat(kit.ReTPS, out)
	r.connMS = kit.ParseFloat(reConn, out)
	r.avg = kit.ParseFloat(reLat, out)
	txs, err := kit.ReadTxLogs(prefix)
	if err != nil {
		return r, err
	}
	var lats []float64
	for _, tx := range txs {
		lats = append(lats, tx.Us/1000)
	}
	sort.Float64s(lats)
	r.p99 = kit.Percentile(lats, 0.99)
	return r, nil
}

func med(rs []run, f func(run) float64) float64 {
	var xs []float64
	for _, r := range rs {
		xs = append(xs, f(r))
	}
	return kit.Median(xs)
}

func report(e *kit.Env, all map[string][]run, seconds, runs, clients, pool int) string {
	var b strings.Builder
	b.WriteString("| target | tps (connect + query + disconnect) | average connection time | latency avg | latency p99 | PostgreSQL backends, max sampled | sessions PostgreSQL started (forks + auths) |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|\n")
	for _, t := range targets {
		rs := all[t.key]
		if len(rs) == 0 {
			continue
		}
		fmt.Fprintf(&b, "| %s | %.0f | %.3f ms | %.3f ms | %.3f ms | %.0f | %.0f |\n", t.label,
			med(rs, func(r run) float64 { return r.tps }),
			med(rs, func(r run) float64 { return r.connMS }),
			med(rs, func(r run) float64 { return r.avg }),
			med(rs, func(r run) float64 { return r.p99 }),
			med(rs, func(r run) float64 { return float64(r.maxBackends) }),
			med(rs, func(r run) float64 { return float64(r.sessions) }))
	}
	fmt.Fprintf(&b, "\nMedians of %d runs of %d s, %s: pgbench -C -S -c %d -j 2 (a new connection, SCRAM-SHA-256 authentication, "+
		"one primary-key SELECT and a disconnect per transaction) on 100,000 rows; pgrecycle in transaction pooling, pool size %d. "+
		"Latency as pgbench reports it (p99 from its per-transaction log); with -C, tps counts the connection time. Backends: "+
		"count of the role's client backends in pg_stat_activity, sampled every second; sessions: delta of pg_stat_database.sessions. "+
		"%d CPUs (shared with another benchmark), Go %s.\n",
		runs, seconds, e.PGVersion(), clients, pool, runtime.NumCPU(), strings.TrimPrefix(runtime.Version(), "go"))
	return b.String()
}
