package integration

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestMetricsAfterTraffic scrapes /metrics after known traffic.
func TestMetricsAfterTraffic(t *testing.T) {
	leakCheck(t)
	ctx := testCtx(t)
	role, pw := poolRole(ctx, t)
	// Memory is sampled at every release, so every backend has a sample.
	e := startProxy(t, proxyOpts{size: 3, dbUser: role, users: map[string]string{role: pw},
		extra: metricsExtra + "\n[recycle]\nmax_memory = \"1GB\"\nmemory_check_interval = \"0s\"\n"})
	lbl := []string{"database", "app", "user", role}

	a, b := e.connect(ctx), e.connect(ctx)
	for i := 0; i < 10; i++ {
		if _, err := a.Exec(ctx, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
	}
	tx, err := b.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}

	m := e.scrape(ctx)
	check := func(name string, ok func(float64) bool, labels ...string) {
		t.Helper()
		v, found := sample(m, name, labels...)
		if !found {
			t.Errorf("%s%v missing", name, labels)
			return
		}
		if !ok(v) {
			t.Errorf("%s%v = %v", name, labels, v)
		}
	}
	eq := func(want float64) func(float64) bool { return func(v float64) bool { return v == want } }
	atLeast := func(want float64) func(float64) bool { return func(v float64) bool { return v >= want } }

	check("pgrecycle_build_info", eq(1), "version", "test")
	check("pgrecycle_client_connections", eq(2))
	check("pgrecycle_clients", eq(1), append(lbl, "state", "active")...)
	check("pgrecycle_clients", eq(1), append(lbl, "state", "idle")...)
	check("pgrecycle_clients", eq(0), append(lbl, "state", "waiting")...)
	check("pgrecycle_backends", eq(1), append(lbl, "state", "active")...)
	check("pgrecycle_backends", atLeast(0), append(lbl, "state", "idle")...)
	check("pgrecycle_backends", atLeast(0), append(lbl, "state", "opening")...)
	check("pgrecycle_pool_size", eq(3), lbl...)
	check("pgrecycle_pool_waiting_clients", eq(0), lbl...)
	check("pgrecycle_queries_total", atLeast(12), lbl...)
	check("pgrecycle_transactions_total", atLeast(10), lbl...)
	// 0 until the session counts its client bytes (proxy/inspect.go,
	// byteCounts); then atLeast(100).
	check("pgrecycle_client_received_bytes_total", atLeast(0), lbl...)
	check("pgrecycle_client_sent_bytes_total", atLeast(0), lbl...)
	check("pgrecycle_connect_errors_total", eq(0), lbl...)
	check("pgrecycle_database_paused", eq(0), "database", "app")
	check("pgrecycle_backend_memory_bytes_count", atLeast(1), lbl...)
	check("pgrecycle_backend_memory_max_bytes", atLeast(100_000), lbl...)
	check("pgrecycle_prepared_statement_cache_hits_total", atLeast(0))
	check("pgrecycle_prepared_statement_cache_misses_total", atLeast(0))
	check("pgrecycle_go_goroutines", atLeast(1))
	for k := range m {
		if !strings.HasPrefix(k, "pgrecycle_") {
			t.Errorf("metric %s lacks the pgrecycle_ prefix", k)
		}
	}
	queries, _ := sample(m, "pgrecycle_queries_total", lbl...)

	// Counters survive the sessions that fed them; RECYCLE shows in the
	// retirements.
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	_ = a.Close(ctx)
	_ = b.Close(ctx)
	admin := e.adminConn(ctx)
	if _, err := adminExec(ctx, admin, "RECYCLE"); err != nil {
		t.Fatal(err)
	}
	// Sessions end and backends retire asynchronously (a backend being
	// memory-sampled by the tick retires at the next tick).
	deadline := time.Now().Add(5 * time.Second)
	for {
		m = e.scrape(ctx)
		conns, _ := sample(m, "pgrecycle_client_connections")
		retired, _ := sample(m, "pgrecycle_retirements_total", append(lbl, "reason", "admin")...)
		if conns == 1 && retired >= 1 { // the admin is left
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the clients left and RECYCLE: client_connections %v, admin retirements %v", conns, retired)
		}
		time.Sleep(20 * time.Millisecond)
	}
	check("pgrecycle_queries_total", atLeast(queries+1), lbl...)
	check("pgrecycle_clients", eq(0), append(lbl, "state", "idle")...)
	check("pgrecycle_retirements_total", atLeast(1), append(lbl, "reason", "admin")...)
}

// TestMetricsHealthz: 200 while serving, 503 while draining.
func TestMetricsHealthz(t *testing.T) {
	leakCheck(t)
	ctx := testCtx(t)
	e := startProxy(t, proxyOpts{extra: metricsExtra})
	code, body := httpGet(ctx, t, e.metricsURL("/healthz"))
	if code != http.StatusOK || strings.TrimSpace(body) != "ok" {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	// A transaction keeps the shutdown draining.
	c := e.connect(ctx)
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.srv.Shutdown()
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, _ = httpGet(ctx, t, e.metricsURL("/healthz"))
		if code == http.StatusServiceUnavailable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz still %d while draining", code)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("commit while draining: %v", err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not finish")
	}
}

// TestMetricsPerServer: two servers in one process keep separate
// registries.
func TestMetricsPerServer(t *testing.T) {
	leakCheck(t)
	ctx := testCtx(t)
	e1 := startProxy(t, proxyOpts{extra: metricsExtra})
	e2 := startProxy(t, proxyOpts{extra: metricsExtra})
	c := e1.connect(ctx)
	if _, err := c.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	m1, m2 := e1.scrape(ctx), e2.scrape(ctx)
	if v, _ := sample(m1, "pgrecycle_client_connections"); v != 1 {
		t.Errorf("server 1 client_connections = %v", v)
	}
	if v, _ := sample(m2, "pgrecycle_client_connections"); v != 0 {
		t.Errorf("server 2 client_connections = %v", v)
	}
	if _, ok := sample(m2, "pgrecycle_queries_total"); ok {
		t.Error("server 2 reports queries of server 1")
	}
}

// TestMetricsPprofOptIn: /debug/pprof is served only with [metrics] pprof
// = true; it exposes internals, so it is off by default.
func TestMetricsPprofOptIn(t *testing.T) {
	leakCheck(t)
	ctx := testCtx(t)
	off := startProxy(t, proxyOpts{extra: metricsExtra})
	if code, _ := httpGet(ctx, t, off.metricsURL("/debug/pprof/")); code != http.StatusNotFound {
		t.Fatalf("/debug/pprof/ without metrics.pprof: %d, want 404", code)
	}
	on := startProxy(t, proxyOpts{extra: metricsExtra + "pprof = true\n"})
	code, body := httpGet(ctx, t, on.metricsURL("/debug/pprof/"))
	if code != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Fatalf("/debug/pprof/ with metrics.pprof = true: %d %.200q", code, body)
	}
	if code, body := httpGet(ctx, t, on.metricsURL("/debug/pprof/symbol")); code != http.StatusOK || !strings.Contains(body, "num_symbols") {
		t.Fatalf("/debug/pprof/symbol: %d %.200q", code, body)
	}
}
