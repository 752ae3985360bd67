package integration

// Query cancellation through the proxy: a CancelRequest reaches the
// backend the client is using, and only that one; a wrong key cancels
// nothing.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgrecycle/pgrecycle/test/pgtest"
)

// waitActive waits until a backend runs a query starting with prefix.
func waitActive(ctx context.Context, t *testing.T, d *pgx.Conn, prefix string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var n int
		if err := d.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE state = 'active' AND query LIKE $1 AND pid <> pg_backend_pid()`, prefix+"%").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no backend started %q", prefix)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type timedResult struct {
	err     error
	elapsed time.Duration
}

func runTimed(ctx context.Context, c *pgx.Conn, sql string) <-chan timedResult {
	ch := make(chan timedResult, 1)
	go func() {
		start := time.Now()
		_, err := c.Exec(ctx, sql)
		ch <- timedResult{err, time.Since(start)}
	}()
	return ch
}

func TestCancelContext(t *testing.T) {
	leakCheck(t)
	forModes(t, proxyOpts{size: 3}, func(t *testing.T, e *env, mode string) {
		ctx := testCtx(t)
		d := e.direct(ctx)
		victim := e.mustConnect(ctx, cancelRequests, execModeParam(mode)...)
		bystander := e.connect(ctx, execModeParam(mode)...)

		other := runTimed(ctx, bystander, "SELECT pg_sleep(2) /* bystander */")
		waitActive(ctx, t, d, "SELECT pg_sleep(2) /* bystander */")

		qctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		start := time.Now()
		_, err := victim.Exec(qctx, "SELECT pg_sleep(10) /* victim */")
		elapsed := time.Since(start)
		cancel()
		if err == nil {
			t.Fatal("pg_sleep(10) with a 300ms context returned no error")
		}
		if elapsed > 3*time.Second {
			t.Fatalf("cancel took %s", elapsed)
		}
		if code := sqlState(err); code != "57014" {
			t.Fatalf("cancelled query: want SQLSTATE 57014, got %v (%q)", err, code)
		}
		if victim.IsClosed() {
			t.Fatal("the cancelled client's connection was closed")
		}

		r := <-other
		if r.err != nil {
			t.Fatalf("the other client's pg_sleep(2) failed: %v", r.err)
		}
		if r.elapsed < 1900*time.Millisecond {
			t.Fatalf("the other client's pg_sleep(2) ended after %s", r.elapsed)
		}

		// The cancelled client carries on, and no late cancel hits it.
		var n int
		if err := victim.QueryRow(ctx, "SELECT 5").Scan(&n); err != nil || n != 5 {
			t.Fatalf("after cancel: %d %v", n, err)
		}
		if _, err := victim.Exec(ctx, "SELECT pg_sleep(0.3)"); err != nil {
			t.Fatalf("query after cancel: %v", err)
		}
	})
}

// cancelRequest sends a raw CancelRequest to the proxy.
func (e *env) cancelRequest(t *testing.T, pid uint32, secret []byte) {
	t.Helper()
	c := e.rawDial(t, 5*time.Second)
	msg := binary.BigEndian.AppendUint32(nil, uint32(12+len(secret)))
	msg = binary.BigEndian.AppendUint32(msg, cancelCode)
	msg = binary.BigEndian.AppendUint32(msg, pid)
	msg = append(msg, secret...)
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	// The proxy closes the connection once it has handled the request.
	var b [1]byte
	if n, err := c.Read(b[:]); err == nil {
		t.Fatalf("proxy answered a CancelRequest with %d bytes", n)
	}
}

func TestCancelWrongKey(t *testing.T) {
	leakCheck(t)
	forModes(t, proxyOpts{size: 2}, func(t *testing.T, e *env, mode string) {
		ctx := testCtx(t)
		d := e.direct(ctx)
		c := e.connect(ctx, execModeParam(mode)...)
		pid, secret := c.PgConn().PID(), c.PgConn().SecretKey()
		if len(secret) != 4 {
			t.Fatalf("secret key of %d bytes", len(secret))
		}

		res := runTimed(ctx, c, "SELECT pg_sleep(1.5) /* wrongkey */")
		waitActive(ctx, t, d, "SELECT pg_sleep(1.5) /* wrongkey */")
		wrong := append([]byte(nil), secret...)
		wrong[0] ^= 0xff
		e.cancelRequest(t, pid, wrong)                        // right pid, wrong secret
		e.cancelRequest(t, pid^0x5a5a5a5a&0x7fffffff, secret) // wrong pid, right secret
		e.cancelRequest(t, 0, []byte{0, 0, 0, 0})
		r := <-res
		if r.err != nil {
			t.Fatalf("query cancelled by a CancelRequest with a wrong key: %v", r.err)
		}
		if r.elapsed < 1400*time.Millisecond {
			t.Fatalf("pg_sleep(1.5) ended after %s", r.elapsed)
		}

		// Control: the same raw request with the right key does cancel.
		res = runTimed(ctx, c, "SELECT pg_sleep(10) /* rightkey */")
		waitActive(ctx, t, d, "SELECT pg_sleep(10) /* rightkey */")
		e.cancelRequest(t, pid, secret)
		select {
		case r := <-res:
			if sqlState(r.err) != "57014" {
				t.Fatalf("raw CancelRequest with the right key: got %v", r.err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("raw CancelRequest with the right key did not cancel")
		}
		var n int
		if err := c.QueryRow(ctx, "SELECT 1").Scan(&n); err != nil {
			t.Fatal(fmt.Errorf("after cancel: %w", err))
		}
	})
}

// TestCancelWhileWaitingForBackend: a query waiting for a backend (pool
// busy) is cancelled by the client's CancelRequest with 57014, as
// PostgreSQL would cancel it, and the connection stays usable. Before, the
// cancel was ignored and the query waited on (here until pgx's 8s
// deadline closed the connection).
func TestCancelWhileWaitingForBackend(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{mode: "transaction", size: 1})
	ctx := testCtx(t)
	tx := e.holdBackend(ctx, t)
	c := e.mustConnect(ctx, cancelRequests)
	qctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Exec(qctx, "SELECT 1")
	if sqlState(err) != "57014" {
		t.Fatalf("query cancelled while waiting for a backend: %v (after %s), want 57014", err, time.Since(start))
	}
	if c.IsClosed() {
		t.Fatal("connection closed by the cancel")
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := c.QueryRow(ctx, "SELECT 2").Scan(&n); err != nil || n != 2 {
		t.Fatalf("after the cancel: %d, %v", n, err)
	}
}

// TestCancelBurstCoalesced: a burst of CancelRequests for one running
// query (a driver's retries, a client gone wild) is coalesced: the query
// is cancelled, PostgreSQL gets a couple of cancels instead of hundreds,
// and every cancel connection is closed at once. Before, each was
// delivered in turn under the session's lock: the cancelled query took
// seconds to return, and cancel sockets piled up until the proxy ran
// out of file descriptors (found by the Node driver sweep).
func TestCancelBurstCoalesced(t *testing.T) {
	leakCheck(t)
	forModes(t, proxyOpts{size: 2, extra: metricsExtra}, func(t *testing.T, e *env, mode string) {
		ctx := testCtx(t)
		d := e.direct(ctx)
		c := e.connect(ctx)
		pid, secret := c.PgConn().PID(), c.PgConn().SecretKey()
		res := runTimed(ctx, c, "SELECT pg_sleep(10) /* burst */")
		waitActive(ctx, t, d, "SELECT pg_sleep(10) /* burst */")

		const burst = 200
		var wg sync.WaitGroup
		errs := make(chan error, burst)
		for range burst {
			wg.Add(1)
			go func() {
				defer wg.Done()
				conn, err := net.DialTimeout("tcp", fmt.Sprintf("%s:%d", e.host, e.port), 5*time.Second)
				if err != nil {
					errs <- err
					return
				}
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
				msg := binary.BigEndian.AppendUint32(nil, uint32(12+len(secret)))
				msg = binary.BigEndian.AppendUint32(msg, cancelCode)
				msg = binary.BigEndian.AppendUint32(msg, pid)
				if _, err := conn.Write(append(msg, secret...)); err != nil {
					errs <- err
					return
				}
				var b [1]byte
				if _, err := conn.Read(b[:]); !errors.Is(err, io.EOF) {
					errs <- fmt.Errorf("cancel connection: want EOF, got %v", err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		select {
		case r := <-res:
			if sqlState(r.err) != "57014" {
				t.Fatalf("query after a burst of cancels: %v, want 57014", r.err)
			}
		case <-time.After(8 * time.Second):
			t.Fatal("a burst of cancels did not cancel the query")
		}
		m := e.scrape(ctx)
		forwarded, _ := sample(m, "pgrecycle_cancel_requests_total", "result", "forwarded")
		coalesced, _ := sample(m, "pgrecycle_cancel_requests_total", "result", "coalesced")
		// Cancels that arrive once the query is over (its backend gone
		// back to the pool) are neither forwarded nor coalesced: how many
		// do depends on scheduling, so only the server's share is bounded.
		if forwarded < 1 || forwarded > burst/4 {
			t.Fatalf("%d cancels: %v forwarded (%v coalesced); want a few at most to reach the server", burst, forwarded, coalesced)
		}
		var n int
		if err := c.QueryRow(ctx, "SELECT 7").Scan(&n); err != nil || n != 7 {
			t.Fatalf("after the burst: %d, %v", n, err)
		}
	})
}

// TestCancelStalledKeepsSessionFlowing: a cancel the server is slow to take
// (here never answered, until its 5 s limit) holds the backend for the
// cancel, not the client's session: the client's replies keep flowing.
// Before, the session's lock was held for the delivery, and every reply,
// and the metrics endpoint, waited behind it. In transaction pooling the
// client keeps its backend until the cancel is delivered, then the
// backend serves the others.
func TestCancelStalledKeepsSessionFlowing(t *testing.T) {
	leakCheck(t)
	pg := pgtest.Shared(t)
	for _, mode := range []string{"transaction", "session"} {
		t.Run(mode, func(t *testing.T) {
			relay := newStallRelay(t, fmt.Sprintf("%s:%d", pg.Host, pg.Port))
			e := startProxy(t, proxyOpts{mode: mode, size: 1, extra: metricsExtra, portOverride: relay.port})
			ctx := testCtx(t)
			c := e.connect(ctx)
			// In a transaction, so the client is on its backend when its
			// cancel arrives.
			if _, err := c.Exec(ctx, "BEGIN"); err != nil {
				t.Fatal(err)
			}
			relay.stalled.Store(true)
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				e.cancelRequest(t, c.PgConn().PID(), c.PgConn().SecretKey())
			}()
			defer wg.Wait()
			for deadline := time.Now().Add(5 * time.Second); relay.heldCount() == 0; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("the cancel did not reach the server's address")
				}
			}
			qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			var n int
			for i := range 3 {
				if err := c.QueryRow(qctx, "SELECT $1::int", i).Scan(&n); err != nil || n != i {
					t.Fatalf("query %d while a cancel is on its way: %d, %v", i, n, err)
				}
			}
			if _, err := c.Exec(qctx, "COMMIT"); err != nil {
				t.Fatalf("COMMIT while a cancel is on its way: %v", err)
			}
			// Nor does the metrics endpoint wait (it reads the sessions' state).
			if v, _ := sample(e.scrape(qctx), "pgrecycle_cancel_requests_total", "result", "forwarded"); v != 1 {
				t.Fatalf("pgrecycle_cancel_requests_total{result=forwarded} = %v, want 1", v)
			}
			relay.dropHeld() // the cancel ends
			if mode == "transaction" {
				// The backend c kept for the cancel goes back to the pool
				// (of one) once it is delivered, with c idle.
				other := e.connect(ctx)
				if err := other.QueryRow(qctx, "SELECT 2").Scan(&n); err != nil || n != 2 {
					t.Fatalf("another client after the cancel: %d, %v", n, err)
				}
			}
		})
	}
}
