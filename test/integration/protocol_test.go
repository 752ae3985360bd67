package integration

// Wire-protocol behaviour through the proxy with pgx, in both pooling
// modes: extended protocol, pipelines, errors, COPY both ways, messages
// larger than the proxy's buffers, notices, notifications, empty queries
// and a client that vanishes mid-transaction.

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// forModes runs f as a subtest per pooling mode, each with its own proxy.
func forModes(t *testing.T, o proxyOpts, f func(t *testing.T, e *env, mode string)) {
	t.Helper()
	for _, mode := range poolModes() {
		t.Run(mode, func(t *testing.T) {
			oo := o
			oo.mode = mode
			e := startProxy(t, oo)
			f(t, e, mode)
		})
	}
}

// execModeParam keeps pgx off named prepared statements in transaction
// mode (tested on their own in prepared_test.go); session mode uses pgx's
// default statement cache.
func execModeParam(mode string) []string {
	if mode == "transaction" {
		return []string{"default_query_exec_mode=exec"}
	}
	return nil
}

func TestProtocolExtendedUnnamed(t *testing.T) {
	leakCheck(t)
	forModes(t, proxyOpts{size: 3}, func(t *testing.T, e *env, mode string) {
		ctx := testCtx(t)
		c := e.connect(ctx, "default_query_exec_mode=exec")
		for i := 0; i < 200; i++ {
			var n int64
			var s string
			if err := c.QueryRow(ctx, "SELECT $1::int8 * 2, $2::text || '!'", int64(i), "v"+strconv.Itoa(i)).Scan(&n, &s); err != nil {
				t.Fatalf("query %d: %v", i, err)
			}
			if n != int64(2*i) || s != "v"+strconv.Itoa(i)+"!" {
				t.Fatalf("query %d: got %d %q", i, n, s)
			}
		}
		rows, err := c.Query(ctx, "SELECT g, g::text FROM generate_series(1, $1::int) g", 1000)
		if err != nil {
			t.Fatal(err)
		}
		var count, sum int
		for rows.Next() {
			var g int
			var gs string
			if err := rows.Scan(&g, &gs); err != nil {
				t.Fatal(err)
			}
			if gs != strconv.Itoa(g) {
				t.Fatalf("row %d: %q", g, gs)
			}
			count++
			sum += g
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if count != 1000 || sum != 500500 {
			t.Fatalf("count=%d sum=%d", count, sum)
		}
		// An error in the extended protocol is followed by a usable session.
		var x int
		err = c.QueryRow(ctx, "SELECT 1 / $1::int", 0).Scan(&x)
		if sqlState(err) != "22012" {
			t.Fatalf("division by zero: got %v", err)
		}
		if err := c.QueryRow(ctx, "SELECT $1::int + 1", 41).Scan(&x); err != nil || x != 42 {
			t.Fatalf("after error: %d %v", x, err)
		}
	})
}

func TestProtocolBatch(t *testing.T) {
	leakCheck(t)
	forModes(t, proxyOpts{size: 3}, func(t *testing.T, e *env, mode string) {
		execModes := map[string]pgx.QueryExecMode{
			"exec":   pgx.QueryExecModeExec,
			"simple": pgx.QueryExecModeSimpleProtocol,
		}
		if mode == "session" {
			execModes["cache_statement"] = pgx.QueryExecModeCacheStatement
		}
		for name, qm := range execModes {
			t.Run(name, func(t *testing.T) {
				ctx := testCtx(t)
				table := uniqueName("batch")
				dropTable(t, e, table)
				c := e.mustConnect(ctx, func(cfg *pgx.ConnConfig) { cfg.DefaultQueryExecMode = qm })
				if _, err := c.Exec(ctx, "CREATE TABLE "+table+" (id int PRIMARY KEY)"); err != nil {
					t.Fatal(err)
				}

				// A pipeline of 50 queries, all answered in order.
				b := &pgx.Batch{}
				for i := 0; i < 50; i++ {
					b.Queue("SELECT $1::int * 3", i)
				}
				br := c.SendBatch(ctx, b)
				for i := 0; i < 50; i++ {
					var n int
					if err := br.QueryRow().Scan(&n); err != nil {
						t.Fatalf("batch query %d: %v", i, err)
					}
					if n != 3*i {
						t.Fatalf("batch query %d: got %d", i, n)
					}
				}
				if err := br.Close(); err != nil {
					t.Fatal(err)
				}

				// An error in the middle: earlier results arrive, the
				// batch's implicit transaction is rolled back, later
				// queries are not run, and the connection stays usable.
				b = &pgx.Batch{}
				b.Queue("SELECT 1")
				b.Queue("INSERT INTO " + table + " VALUES (1)")
				b.Queue("SELECT $1::int", 7)
				b.Queue("SELECT 1/0")
				b.Queue("SELECT 5")
				br = c.SendBatch(ctx, b)
				var n int
				if err := br.QueryRow().Scan(&n); err != nil || n != 1 {
					t.Fatalf("q1: %d %v", n, err)
				}
				if _, err := br.Exec(); err != nil {
					t.Fatalf("q2 insert: %v", err)
				}
				if err := br.QueryRow().Scan(&n); err != nil || n != 7 {
					t.Fatalf("q3: %d %v", n, err)
				}
				if err := br.QueryRow().Scan(&n); sqlState(err) != "22012" {
					t.Fatalf("q4: want 22012, got %v", err)
				}
				n = 0
				if err := br.QueryRow().Scan(&n); err == nil {
					t.Fatalf("q5 ran after an error in the same pipeline: got %d", n)
				}
				_ = br.Close()

				if err := c.QueryRow(ctx, "SELECT 42").Scan(&n); err != nil || n != 42 {
					t.Fatalf("after failed batch: %d %v", n, err)
				}
				if err := c.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil || n != 0 {
					t.Fatalf("insert of the failed batch visible: count=%d err=%v", n, err)
				}
				if err := c.QueryRow(ctx, "SELECT txid_current_if_assigned() IS NULL").Scan(new(bool)); err != nil {
					t.Fatal(err)
				}
			})
		}
	})
}

func TestProtocolTransactionErrorRollback(t *testing.T) {
	leakCheck(t)
	forModes(t, proxyOpts{size: 2}, func(t *testing.T, e *env, mode string) {
		ctx := testCtx(t)
		table := uniqueName("txerr")
		dropTable(t, e, table)
		c := e.connect(ctx, execModeParam(mode)...)
		if _, err := c.Exec(ctx, "CREATE TABLE "+table+" (id int PRIMARY KEY)"); err != nil {
			t.Fatal(err)
		}
		tx, err := c.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO "+table+" VALUES (1)"); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "SELECT 1/0"); sqlState(err) != "22012" {
			t.Fatalf("want 22012, got %v", err)
		}
		if _, err := tx.Exec(ctx, "SELECT 1"); sqlState(err) != "25P02" {
			t.Fatalf("statement in aborted transaction: want 25P02, got %v", err)
		}
		if st := c.PgConn().TxStatus(); st != 'E' {
			t.Fatalf("transaction status %q, want 'E'", st)
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		if st := c.PgConn().TxStatus(); st != 'I' {
			t.Fatalf("transaction status after rollback %q, want 'I'", st)
		}
		var n int
		if err := c.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil || n != 0 {
			t.Fatalf("after rollback: count=%d err=%v", n, err)
		}
		// The same id again, committed this time.
		if err := pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, "INSERT INTO "+table+" VALUES (1)")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		d := e.direct(ctx)
		if err := d.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil || n != 1 {
			t.Fatalf("committed row: count=%d err=%v", n, err)
		}
	})
}

// copyPayload is ~100 bytes per row with the id in it, so that a
// misordered or duplicated chunk changes the checksum.
func copyPayload(i int64) string {
	s := strconv.FormatInt(i, 10)
	return s + strings.Repeat("abcdefghij", 9)[len(s):]
}

func TestProtocolCopyLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("moves >100 MB each way")
	}
	leakCheck(t)
	const rows = 1_200_000
	forModes(t, proxyOpts{size: 2}, func(t *testing.T, e *env, mode string) {
		// Longer than testCtx: 2 × 100+ MB under -race on a busy machine.
		ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
		defer cancel()
		table := uniqueName("copybig")
		dropTable(t, e, table)
		c := e.connect(ctx, execModeParam(mode)...)
		if _, err := c.Exec(ctx, "CREATE UNLOGGED TABLE "+table+" (id int8, payload text)"); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		var i int64
		var sentBytes int64
		n, err := c.CopyFrom(ctx, pgx.Identifier{table}, []string{"id", "payload"}, pgx.CopyFromFunc(func() ([]any, error) {
			if i >= rows {
				return nil, nil
			}
			i++
			p := copyPayload(i)
			sentBytes += int64(len(p)) + 8 + 10
			return []any{i, p}, nil
		}))
		if err != nil {
			t.Fatalf("CopyFrom: %v", err)
		}
		if n != rows {
			t.Fatalf("CopyFrom reported %d rows, want %d", n, rows)
		}
		if sentBytes < 100<<20 {
			t.Fatalf("test sent only %d bytes; want > 100 MB", sentBytes)
		}
		t.Logf("COPY FROM STDIN: %d rows, ~%d MB in %s", n, sentBytes>>20, time.Since(start))

		var count, sum, plen int64
		if err := c.QueryRow(ctx, "SELECT count(*), sum(id), sum(length(payload)) FROM "+table).Scan(&count, &sum, &plen); err != nil {
			t.Fatal(err)
		}
		if count != rows || sum != rows*(rows+1)/2 || plen != rows*90 {
			t.Fatalf("after COPY FROM: count=%d sum=%d payload bytes=%d", count, sum, plen)
		}
		var bad int64
		if err := c.QueryRow(ctx, "SELECT count(*) FROM "+table+" WHERE payload NOT LIKE id::text || '%'").Scan(&bad); err != nil || bad != 0 {
			t.Fatalf("rows with a payload of another row: %d (%v)", bad, err)
		}

		copyOut := func(pc *pgconn.PgConn) (int64, string, error) {
			h := sha256.New()
			var cw countingWriter
			tag, err := pc.CopyTo(ctx, io.MultiWriter(h, &cw), "COPY "+table+" TO STDOUT")
			if err != nil {
				return 0, "", err
			}
			if tag.RowsAffected() != rows {
				return 0, "", fmt.Errorf("COPY TO reported %d rows", tag.RowsAffected())
			}
			return cw.n.Load(), hex.EncodeToString(h.Sum(nil)), nil
		}
		start = time.Now()
		gotN, gotSum, err := copyOut(c.PgConn())
		if err != nil {
			t.Fatalf("COPY TO STDOUT through proxy: %v", err)
		}
		t.Logf("COPY TO STDOUT: %d MB in %s", gotN>>20, time.Since(start))
		wantN, wantSum, err := copyOut(e.direct(ctx).PgConn())
		if err != nil {
			t.Fatalf("COPY TO STDOUT direct: %v", err)
		}
		if gotN < 100<<20 {
			t.Fatalf("COPY TO moved only %d bytes", gotN)
		}
		if gotN != wantN || gotSum != wantSum {
			t.Fatalf("COPY TO through proxy: %d bytes sha256 %s; direct: %d bytes sha256 %s", gotN, gotSum, wantN, wantSum)
		}
		// The session is in a clean state afterwards.
		var one int
		if err := c.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
			t.Fatal(err)
		}
	})
}

func TestProtocolLargeMessages(t *testing.T) {
	leakCheck(t)
	forModes(t, proxyOpts{size: 2}, func(t *testing.T, e *env, mode string) {
		ctx := testCtx(t)
		for _, qm := range []string{"exec", "simple_protocol"} {
			t.Run(qm, func(t *testing.T) {
				c := e.connect(ctx, "default_query_exec_mode="+qm)
				// One 5 MB row from the server: far above the proxy's buffers.
				var s string
				if err := c.QueryRow(ctx, "SELECT repeat('x', 5000000)").Scan(&s); err != nil {
					t.Fatal(err)
				}
				if len(s) != 5_000_000 || strings.Trim(s, "x") != "" {
					t.Fatalf("big row: %d bytes, not all 'x'", len(s))
				}
				// One 5 MB message from the client (Bind or Query).
				big := strings.Repeat("0123456789", 500_000)
				var l int
				var h string
				if err := c.QueryRow(ctx, "SELECT length($1::text), md5($1::text)", big).Scan(&l, &h); err != nil {
					t.Fatal(err)
				}
				sum := md5.Sum([]byte(big))
				if l != len(big) || h != hex.EncodeToString(sum[:]) {
					t.Fatalf("big parameter: length %d md5 %s", l, h)
				}
				// Many medium rows, each checked.
				rows, err := c.Query(ctx, "SELECT i, repeat(md5(i::text), 100) FROM generate_series(1, 3000) i")
				if err != nil {
					t.Fatal(err)
				}
				got := 0
				for rows.Next() {
					var i int
					var v string
					if err := rows.Scan(&i, &v); err != nil {
						t.Fatal(err)
					}
					m := md5.Sum([]byte(strconv.Itoa(i)))
					if v != strings.Repeat(hex.EncodeToString(m[:]), 100) {
						t.Fatalf("row %d corrupted (len %d)", i, len(v))
					}
					got++
				}
				if err := rows.Err(); err != nil {
					t.Fatal(err)
				}
				if got != 3000 {
					t.Fatalf("got %d rows", got)
				}
				var one int
				if err := c.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
					t.Fatalf("after large messages: %v", err)
				}
			})
		}
	})
}

func TestProtocolNotice(t *testing.T) {
	leakCheck(t)
	forModes(t, proxyOpts{size: 2}, func(t *testing.T, e *env, mode string) {
		ctx := testCtx(t)
		var mu sync.Mutex
		var notices []*pgconn.Notice
		c := e.mustConnect(ctx, func(cfg *pgx.ConnConfig) {
			cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
				mu.Lock()
				notices = append(notices, n)
				mu.Unlock()
			}
		}, execModeParam(mode)...)
		if _, err := c.Exec(ctx, "DO $$BEGIN RAISE NOTICE 'pgrecycle notice %', 7; RAISE WARNING 'pgrecycle warning'; END$$"); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		got := append([]*pgconn.Notice(nil), notices...)
		mu.Unlock()
		if len(got) != 2 {
			t.Fatalf("got %d notices, want 2: %+v", len(got), got)
		}
		if got[0].Severity != "NOTICE" || got[0].Message != "pgrecycle notice 7" || got[0].Code != "00000" {
			t.Fatalf("notice: %+v", got[0])
		}
		if got[1].Severity != "WARNING" || got[1].Message != "pgrecycle warning" || got[1].Code != "01000" {
			t.Fatalf("warning: %+v", got[1])
		}
		var one int
		if err := c.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
			t.Fatal(err)
		}
	})
}

func TestProtocolListenNotifySession(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{mode: "session", size: 3})
	ctx := testCtx(t)
	listener := e.connect(ctx)
	notifier := e.connect(ctx)
	if _, err := listener.Exec(ctx, "LISTEN pgrecycle_chan"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		payload := fmt.Sprintf("hello-%d", i)
		// The listener is idle when the notification is sent: the proxy
		// must forward it without a request in flight.
		if _, err := notifier.Exec(ctx, "SELECT pg_notify('pgrecycle_chan', $1)", payload); err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		n, err := listener.WaitForNotification(wctx)
		cancel()
		if err != nil {
			t.Fatalf("notification %d: %v", i, err)
		}
		if n.Channel != "pgrecycle_chan" || n.Payload != payload {
			t.Fatalf("notification %d: %+v", i, n)
		}
	}
	var one int
	if err := listener.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Fatal(err)
	}
}

func TestProtocolEmptyQuery(t *testing.T) {
	leakCheck(t)
	forModes(t, proxyOpts{size: 2}, func(t *testing.T, e *env, mode string) {
		ctx := testCtx(t)
		c := e.connect(ctx, execModeParam(mode)...)
		for _, q := range []string{";", "", "  ", ";;"} {
			if _, err := c.PgConn().Exec(ctx, q).ReadAll(); err != nil {
				t.Fatalf("simple protocol %q: %v", q, err)
			}
		}
		if _, err := c.Exec(ctx, ";", pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatalf("pgx Exec(;) simple protocol: %v", err)
		}
		// Extended protocol with an empty statement.
		rr := c.PgConn().ExecParams(ctx, "", nil, nil, nil, nil)
		if _, err := rr.Close(); err != nil {
			t.Fatalf("extended protocol empty query: %v", err)
		}
		var n int
		if err := c.QueryRow(ctx, "SELECT 7").Scan(&n); err != nil || n != 7 {
			t.Fatalf("after empty queries: %d %v", n, err)
		}
	})
}

// TestProtocolAbruptDisconnectMidTransaction closes a client's socket
// after BEGIN + INSERT. With a pool of one, the next client must get that
// backend rolled back (or a fresh one), never still in the transaction.
func TestProtocolAbruptDisconnectMidTransaction(t *testing.T) {
	leakCheck(t)
	for _, mode := range poolModes() {
		t.Run(mode, func(t *testing.T) {
			ctx := testCtx(t)
			role, pw := poolRole(ctx, t)
			e := startProxy(t, proxyOpts{mode: mode, size: 1, dbUser: role, users: map[string]string{role: pw}})
			table := uniqueName("abrupt")
			dropTable(t, e, table)
			d := e.direct(ctx)
			if _, err := d.Exec(ctx, "CREATE TABLE "+table+" (k int PRIMARY KEY)"); err != nil {
				t.Fatal(err)
			}

			c1 := e.connect(ctx, "default_query_exec_mode=simple_protocol")
			if _, err := c1.Exec(ctx, "BEGIN"); err != nil {
				t.Fatal(err)
			}
			if _, err := c1.Exec(ctx, "INSERT INTO "+table+" VALUES (1)"); err != nil {
				t.Fatal(err)
			}
			if _, idleTx, err := poolBackends(ctx, d, role); err != nil || idleTx != 1 {
				t.Fatalf("before the disconnect: %d backends idle in transaction (want 1), err %v", idleTx, err)
			}
			// Vanish without COMMIT or Terminate.
			if err := c1.PgConn().Conn().Close(); err != nil {
				t.Fatal(err)
			}

			c2 := e.connect(ctx, "default_query_exec_mode=simple_protocol")
			qctx, cancel := context.WithTimeout(ctx, 8*time.Second)
			defer cancel()
			var xid *int64
			if err := c2.QueryRow(qctx, "SELECT txid_current_if_assigned()").Scan(&xid); err != nil {
				t.Fatal(err)
			}
			if xid != nil {
				t.Fatalf("new client got a backend inside a transaction (txid %d)", *xid)
			}
			var n int
			if err := c2.QueryRow(qctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil || n != 0 {
				t.Fatalf("uncommitted row visible: count=%d err=%v", n, err)
			}
			var iso string
			if err := c2.QueryRow(qctx, "SHOW transaction_isolation").Scan(&iso); err != nil || iso != "read committed" {
				t.Fatalf("transaction_isolation %q %v", iso, err)
			}
			var t1, t2 time.Time
			if err := c2.QueryRow(qctx, "SELECT now()").Scan(&t1); err != nil {
				t.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond)
			if err := c2.QueryRow(qctx, "SELECT now()").Scan(&t2); err != nil {
				t.Fatal(err)
			}
			if !t2.After(t1) {
				t.Fatalf("now() did not advance between statements (%v, %v): still inside a transaction", t1, t2)
			}
			// The key is free: had the old transaction survived on some
			// backend, this insert would wait for it.
			if _, err := c2.Exec(qctx, "INSERT INTO "+table+" VALUES (1)"); err != nil {
				t.Fatalf("insert of the abandoned key: %v", err)
			}
			if err := d.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil || n != 1 {
				t.Fatalf("after reinsert: count=%d err=%v", n, err)
			}
			deadline := time.Now().Add(3 * time.Second)
			for {
				_, idleTx, err := poolBackends(ctx, d, role)
				if err != nil {
					t.Fatal(err)
				}
				if idleTx == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%d backends still idle in transaction", idleTx)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}
