// Command oom-ride-through measures the recipe "riding through a backend
// OOM kill": -clients clients (pgx, one connection each, `SELECT 1` then
// -idle of sleep, in a loop; on a broken connection they reconnect every
// 100 ms, like an application's pool would) run straight against
// PostgreSQL and through pgrecycle. After -kill-at seconds one PostgreSQL
// backend of the clients' role gets SIGKILL, as the OOM killer would do,
// which makes PostgreSQL end every backend and restart. It counts the
// errors clients saw, the clients whose connection was closed, and the
// time from the kill until every client has succeeded again.
//
//	go run ./test/bench/recipes/oom-ride-through [-time 15] [-runs 3]
//
// Every process it starts (PostgreSQL, pgrecycle) is stopped on exit, on
// error and on SIGINT/SIGTERM/SIGHUP.
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
	"strings"
	"sync"
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
	queryErrs, connectErrs int
	disconnected, sawError int
	recovery               time.Duration
	queries                int
	firstErr               string
}

// event is one query that ended after the kill.
type event struct {
	start, end time.Time
	ok         bool
}

func main() { os.Exit(realMain()) }

func realMain() int {
	seconds := flag.Int("time", 15, "seconds per run")
	killAt := flag.Int("kill-at", 5, "seconds into the run when one backend is killed")
	runs := flag.Int("runs", 3, "runs per target (medians are reported)")
	clients := flag.Int("clients", 10, "clients")
	idle := flag.Duration("idle", 10*time.Millisecond, "sleep between a client's queries")
	pool := flag.Int("pool", 4, "pgrecycle pool size")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	e := kit.NewEnv("oom-ride-through")
	defer e.Cleanup()
	if err := e.Setup(ctx, map[string]string{"max_connections": "100", "restart_after_crash": "on"}); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", e.Name, err)
		return 1
	}
	all := map[string][]run{}
	for i := 0; i < *runs; i++ {
		for _, t := range targets {
			r, err := oneRun(ctx, e, t, i, *seconds, *killAt, *clients, *idle, *pool)
			if err != nil {
				fmt.Fprintf(os.Stderr, "%s: %s: %v\n", e.Name, t.label, err)
				return 1
			}
			e.Logf("%s run %d: %d queries, %d query errors, %d failed reconnects, %d clients disconnected, %d clients saw an error, all succeeding again %s after the kill; first error: %s",
				t.key, i+1, r.queries, r.queryErrs, r.connectErrs, r.disconnected, r.sawError, r.recovery.Round(time.Millisecond), r.firstErr)
			all[t.key] = append(all[t.key], r)
		}
	}
	fmt.Println()
	fmt.Println(report(e, all, *seconds, *killAt, *runs, *clients, *idle, *pool))
	return 0
}

// waitReady waits until PostgreSQL accepts the superuser again (after the
// previous run's crash restart).
func waitReady(ctx context.Context, e *kit.Env) (*pgx.Conn, error) {
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := pgx.Connect(ctx, e.PG.SuperDSN())
		if err == nil {
			return c, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func oneRun(ctx context.Context, e *kit.Env, t target, i, seconds, killAt, clients int, idle time.Duration, pool int) (run, error) {
	var r run
	dir := filepath.Join(e.Work, fmt.Sprintf("run-%s-%d", t.key, i))
	super, err := waitReady(ctx, e)
	if err != nil {
		return r, err
	}
	defer func() { super.Close(context.WithoutCancel(ctx)) }()
	port := e.PG.Port
	if t.key == "b" {
		p, stop, err := e.StartPgrecycle(ctx, dir, pool, "")
		if err != nil {
			return r, err
		}
		defer stop()
		port = p
	}
	dsn := e.DSN(port)
	rctx, cancel := context.WithTimeout(ctx, time.Duration(seconds)*time.Second)
	defer cancel()

	var (
		mu       sync.Mutex
		killed   time.Time // zero until the kill
		events   = make([][]event, clients)
		wg       sync.WaitGroup
		everyErr = make([]bool, clients)
	)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			var conn *pgx.Conn
			defer func() {
				if conn != nil {
					conn.Close(context.WithoutCancel(ctx))
				}
			}()
			for rctx.Err() == nil {
				if conn == nil {
					cctx, cc := context.WithTimeout(rctx, 5*time.Second)
					cn, err := pgx.Connect(cctx, dsn)
					cc()
					if err != nil {
						if rctx.Err() != nil {
							return
						}
						mu.Lock()
						r.connectErrs++
						everyErr[c] = true
						if r.firstErr == "" {
							r.firstErr = err.Error()
						}
						mu.Unlock()
						time.Sleep(100 * time.Millisecond)
						continue
					}
					conn = cn
				}
				start := time.Now()
				qctx, qc := context.WithTimeout(rctx, 30*time.Second)
				_, err := conn.Exec(qctx, "SELECT 1")
				qc()
				end := time.Now()
				if err != nil && rctx.Err() != nil {
					return
				}
				mu.Lock()
				r.queries++
				if err != nil {
					r.queryErrs++
					everyErr[c] = true
					if r.firstErr == "" {
						r.firstErr = err.Error()
					}
					if conn.IsClosed() {
						r.disconnected++
					}
				}
				if !killed.IsZero() {
					events[c] = append(events[c], event{start, end, err == nil})
				}
				mu.Unlock()
				if err != nil && conn.IsClosed() {
					conn = nil
					time.Sleep(100 * time.Millisecond)
					continue
				}
				time.Sleep(idle)
			}
		}(c)
	}

	// The kill.
	select {
	case <-time.After(time.Duration(killAt) * time.Second):
	case <-rctx.Done():
	}
	var pid int
	err = super.QueryRow(ctx, `SELECT pid FROM pg_stat_activity WHERE usename = $1 AND backend_type = 'client backend' ORDER BY backend_start LIMIT 1`, e.User).Scan(&pid)
	if err != nil {
		cancel()
		wg.Wait()
		return r, fmt.Errorf("no backend to kill: %w", err)
	}
	mu.Lock()
	killed = time.Now()
	mu.Unlock()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		cancel()
		wg.Wait()
		return r, fmt.Errorf("kill %d: %w", pid, err)
	}
	wg.Wait()
	if ctx.Err() != nil {
		return r, ctx.Err()
	}
	for c := 0; c < clients; c++ {
		if everyErr[c] {
			r.sawError++
		}
		lastBad := killed
		for _, ev := range events[c] {
			if !ev.ok && ev.end.After(lastBad) {
				lastBad = ev.end
			}
		}
		var back time.Time
		for _, ev := range events[c] {
			if ev.ok && !ev.start.Before(lastBad) {
				back = ev.end
				break
			}
		}
		if back.IsZero() {
			return r, errors.New("a client never succeeded again after the kill: make -time longer")
		}
		if d := back.Sub(killed); d > r.recovery {
			r.recovery = d
		}
	}
	return r, nil
}

func med(rs []run, f func(run) float64) float64 {
	var xs []float64
	for _, r := range rs {
		xs = append(xs, f(r))
	}
	return kit.Median(xs)
}

func report(e *kit.Env, all map[string][]run, seconds, killAt, runs, clients int, idle time.Duration, pool int) string {
	var b strings.Builder
	b.WriteString("| target | query errors | failed reconnects | clients disconnected | clients that saw an error | time from the kill until every client succeeds again |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|\n")
	for _, t := range targets {
		rs := all[t.key]
		if len(rs) == 0 {
			continue
		}
		fmt.Fprintf(&b, "| %s | %.0f | %.0f | %.0f of %d | %.0f of %d | %s |\n", t.label,
			med(rs, func(r run) float64 { return float64(r.queryErrs) }),
			med(rs, func(r run) float64 { return float64(r.connectErrs) }),
			med(rs, func(r run) float64 { return float64(r.disconnected) }), clients,
			med(rs, func(r run) float64 { return float64(r.sawError) }), clients,
			time.Duration(med(rs, func(r run) float64 { return float64(r.recovery) })).Round(time.Millisecond))
	}
	fmt.Fprintf(&b, "\nMedians of %d runs of %d s, %s: %d pgx clients, one connection each, `SELECT 1` then %s idle, in a loop "+
		"(a client whose connection breaks reconnects every 100 ms); %d s into the run one client backend of the role gets SIGKILL, "+
		"and PostgreSQL ends every backend, recovers and restarts (restart_after_crash = on). pgrecycle in transaction pooling, pool size %d. "+
		"%d CPUs (shared with another benchmark), Go %s.\n",
		runs, seconds, e.PGVersion(), clients, idle, killAt, pool, runtime.NumCPU(), strings.TrimPrefix(runtime.Version(), "go"))
	return b.String()
}
