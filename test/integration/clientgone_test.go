package integration

// A client that disappears while its backend still sends a large result.

import (
	"context"

	"github.com/jackc/pgx/v5/pgproto3"
	"net"
	"testing"
	"time"
)

// TestClientGoneMidResultFreesBackend: a client that stops reading a large
// result and then dies (a killed process, a reset connection) gets its
// backend closed at the first failed write, so the pool's next client is
// served at once. Before, pgrecycle read the rest of the result for nobody
// (minutes of CPU for a large one) while the others waited.
func TestClientGoneMidResultFreesBackend(t *testing.T) {
	leakCheck(t)
	forModes(t, proxyOpts{size: 1, extra: metricsExtra}, func(t *testing.T, e *env, mode string) {
		ctx := testCtx(t)
		c := e.connect(ctx)
		rows, err := c.Query(ctx, "SELECT repeat('x', 1000), generate_series(1, 100000000)" /* streamed, not materialized first */)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 10 && rows.Next(); i++ {
		}
		// The client stops reading, the buffers fill up, then it resets
		// its connection.
		time.Sleep(300 * time.Millisecond)
		tcp := c.PgConn().Conn().(*net.TCPConn)
		_ = tcp.SetLinger(0)
		_ = tcp.Close()
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		other := e.connect(qctx)
		var n int
		if err := other.QueryRow(qctx, "SELECT 1").Scan(&n); err != nil || n != 1 {
			t.Fatalf("the next client of a pool of one, its previous client gone mid-result: %d, %v", n, err)
		}
		if v, _ := sample(e.scrape(ctx), "pgrecycle_retirements_total", "reason", "client-gone"); v != 1 {
			t.Fatalf("pgrecycle_retirements_total{reason=client-gone} = %v, want 1", v)
		}
	})
}

// TestClientGoneRequestDoesNotRun: a client that disconnects while its
// request waits for a backend, or (transaction pooling) while its query
// runs, is noticed within about a second: the waiting request never runs,
// and the running query is cancelled, freeing the backend. Before, the
// INSERT of a client killed while waiting ran once a backend freed up, and
// a killed client's long query held its backend to the end. The clients
// are raw sockets that close without a word, as a killed psql does (pgx
// sends a CancelRequest when its connection breaks).
func TestClientGoneRequestDoesNotRun(t *testing.T) {
	leakCheck(t)
	forModes(t, proxyOpts{size: 1, extra: metricsExtra}, func(t *testing.T, e *env, mode string) {
		ctx := testCtx(t)
		d := e.direct(ctx)
		table := markerTable(ctx, t, e, "gone_marker")
		// Until pgrecycle says it noticed, or long enough that it should
		// have: the assertions after tell whether it acted.
		goneLogged := func(n int) {
			for deadline := time.Now().Add(5 * time.Second); e.logs.FilterMessageSnippet("client gone while its request").Len() < n && time.Now().Before(deadline); {
				time.Sleep(20 * time.Millisecond)
			}
		}
		holder := e.holdBackend(ctx, t) // the pool's only backend, in a transaction
		fe, gone := e.rawFrontend(t)
		fe.Send(&pgproto3.Query{String: "INSERT INTO " + table + " VALUES ('from a client that left')"})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if v, _ := sample(e.scrape(ctx), "pgrecycle_pool_waiting_clients"); v == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the client's INSERT never waited for the backend")
			}
		}
		_ = gone.Close()
		goneLogged(1)
		if err := holder.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if mode == "session" {
			_ = holder.Conn().Close(ctx) // its backend is its own until then
		}
		// Through the same single backend, after where the INSERT would
		// have run.
		other := e.connect(ctx)
		var n int
		if err := other.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil || n != 0 {
			t.Fatalf("rows inserted by a client that left while waiting: %d, %v; want 0", n, err)
		}
		if mode != "transaction" {
			return // session pooling reads the client while the query runs
		}
		fe, sleeper := e.rawFrontend(t)
		fe.Send(&pgproto3.Query{String: "SELECT pg_sleep(60) /* gone sleeper */"})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		waitActive(ctx, t, d, "SELECT pg_sleep(60) /* gone sleeper */")
		_ = sleeper.Close()
		goneLogged(2)
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := other.QueryRow(qctx, "SELECT 1").Scan(&n); err != nil || n != 1 {
			t.Fatalf("the pool's backend after its client left mid-query: %d, %v", n, err)
		}
	})
}
