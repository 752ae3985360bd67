package integration

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// waitParked waits until the proxy reports want parked clients.
func waitParked(t *testing.T, e *env, want int) {
	t.Helper()
	waitCount(t, "clients parked", e.srv.ParkedClients, want)
}

// waitCount waits up to 5 s for count to report want.
func waitCount(t *testing.T, what string, count func() int, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for count() != want {
		if time.Now().After(deadline) {
			t.Fatalf("%d %s, want %d", count(), what, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Idle clients give up their goroutine, then resume at their next query
// and get their own answers, singly and in pipelines.
func TestIdleClientsPark(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{size: 2, listenExtra: `client_park_after = "100ms"`, extra: metricsExtra})
	ctx := testCtx(t)
	const n = 20
	conns := make([]*pgx.Conn, n)
	for i := range conns {
		conns[i] = e.connect(ctx)
		if _, err := conns[i].Exec(ctx, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
	}
	waitParked(t, e, n)
	if v, ok := sample(e.scrape(ctx), "pgrecycle_clients_parked"); !ok || v != n {
		t.Fatalf("pgrecycle_clients_parked = %v (found %v), want %d", v, ok, n)
	}
	// Parked clients hold no goroutine: starting a query on each must add
	// goroutines back, and all of them go away again once idle.
	parkedGoroutines := runtime.NumGoroutine()

	for round := range 3 {
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i, c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				want := round*1000 + i
				var got int
				if err := c.QueryRow(ctx, "SELECT $1::int", want).Scan(&got); err != nil {
					errs <- err
					return
				}
				if got != want {
					errs <- fmt.Errorf("client %d got %d, want %d", i, got, want)
					return
				}
				// A pipeline resumed by its first byte must be read whole.
				b := &pgx.Batch{}
				for k := range 5 {
					b.Queue("SELECT $1::int", want+k)
				}
				br := c.SendBatch(ctx, b)
				for k := range 5 {
					if err := br.QueryRow().Scan(&got); err != nil || got != want+k {
						errs <- fmt.Errorf("client %d batch item %d: got %d, %v", i, k, got, err)
						break
					}
				}
				_ = br.Close()
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		waitParked(t, e, n)
	}
	if g := runtime.NumGoroutine(); g > parkedGoroutines+2 {
		t.Fatalf("%d goroutines with every client parked again, %d the first time", g, parkedGoroutines)
	}

	// A parked client that disconnects ends its session.
	_ = conns[0].Close(ctx)
	waitParked(t, e, n-1)
	deadline := time.Now().Add(5 * time.Second)
	for !loggedCause(e, "client closed") {
		if time.Now().After(deadline) {
			t.Fatal("the parked client's disconnect did not end its session")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// client_idle_timeout still ends a parked client, on time, with 57P05.
func TestParkedClientIdleTimeout(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{
		listenExtra: `client_park_after = "50ms"`,
		dbExtra:     "[databases.app.pool]\nclient_idle_timeout = \"700ms\"\n",
	})
	ctx := testCtx(t)
	c := e.connect(ctx)
	if _, err := c.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	idleFrom := time.Now()
	waitParked(t, e, 1)
	deadline := time.Now().Add(5 * time.Second)
	for e.srv.ParkedClients() != 0 || !loggedCause(e, "client_idle_timeout") {
		if time.Now().After(deadline) {
			t.Fatal("parked client not ended by client_idle_timeout")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if d := time.Since(idleFrom); d < 700*time.Millisecond || d > 2500*time.Millisecond {
		t.Fatalf("idle timeout of 700ms ended the parked client after %s", d)
	}
	_, err := c.Exec(ctx, "SELECT 1")
	var pe *pgconn.PgError
	if err == nil || (errors.As(err, &pe) && pe.Code != "57P05") {
		t.Fatalf("query after idle timeout: %v, want the connection ended (57P05)", err)
	}
}

// Shutdown reaches parked clients: each is told and closed, and Shutdown
// returns without waiting for shutdown_timeout.
func TestShutdownWithParkedClients(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{listenExtra: `client_park_after = "50ms"`})
	ctx := testCtx(t)
	var conns []*pgx.Conn
	for range 5 {
		c := e.connect(ctx)
		if _, err := c.Exec(ctx, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	waitParked(t, e, 5)
	start := time.Now()
	e.srv.Shutdown() // shutdown_timeout is 2s in these tests
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Shutdown took %s with parked clients: they were not woken", d)
	}
	for i, c := range conns {
		if _, err := c.Exec(ctx, "SELECT 1"); err == nil {
			t.Fatalf("parked client %d still served after shutdown", i)
		}
	}
}

// A session-mode client keeps its backend and its goroutine: parking is
// only for clients without a backend.
func TestSessionModeClientWithBackendDoesNotPark(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{mode: "session", listenExtra: `client_park_after = "50ms"`})
	ctx := testCtx(t)
	c := e.connect(ctx)
	if _, err := c.Exec(ctx, "SET application_name = 'kept'"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(400 * time.Millisecond)
	if n := e.srv.ParkedClients(); n != 0 {
		t.Fatalf("%d session-mode clients parked while holding a backend", n)
	}
	var name string
	if err := c.QueryRow(ctx, "SHOW application_name").Scan(&name); err != nil || name != "kept" {
		t.Fatalf("session state after idling: %q, %v", name, err)
	}
}

func loggedCause(e *env, cause string) bool {
	for _, l := range e.logs.FilterMessage("session ended").All() {
		if l.ContextMap()["cause"] == cause {
			return true
		}
	}
	return false
}

// A client parks only once it has been idle for client_park_after, not at
// the first sweep that sees it waiting.
func TestClientParksOnlyAfterDelay(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{listenExtra: `client_park_after = "400ms"`})
	ctx := testCtx(t)
	c := e.connect(ctx)
	// The first sweeps run before the sweep period adapts to the setting:
	// park and resume once, then time the second park.
	if _, err := c.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	waitParked(t, e, 1)
	time.Sleep(100 * time.Millisecond) // start the idle period between two sweeps
	if _, err := c.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	idleFrom := time.Now()
	waitParked(t, e, 1)
	if d := time.Since(idleFrom); d < 400*time.Millisecond || d > 2*time.Second {
		t.Fatalf("client parked after %s of idleness, want between 400ms and 600ms (2s allowed)", d)
	}
	var n int
	if err := c.QueryRow(ctx, "SELECT 7").Scan(&n); err != nil || n != 7 {
		t.Fatalf("after parking: %d, %v", n, err)
	}
}
