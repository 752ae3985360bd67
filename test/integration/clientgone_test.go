package integration

// A client that disappears while its backend still sends a large result.

import (
	"context"
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
