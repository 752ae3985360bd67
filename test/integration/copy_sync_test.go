package integration

// COPY FROM STDIN over the extended protocol with a Sync the server never
// answers. PostgreSQL ignores Sync (and Flush) while it is in copy-in mode,
// so a client that sends Bind, Execute and Sync in one batch before its
// COPY data (tokio-postgres does) gets one ReadyForQuery for two Syncs.
// The proxy must not wait for the second: in transaction pooling it would
// hold the backend for good.

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// rawFrontend logs in over a plain socket (trust auth) and returns a
// pgproto3 frontend ready for queries.
func (e *env) rawFrontend(t *testing.T) (*pgproto3.Frontend, net.Conn) {
	t.Helper()
	c := e.rawDial(t, 20*time.Second)
	fe := pgproto3.NewFrontend(c, c)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{"user": "postgres", "database": "app"}})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	expectUntilReady(t, fe)
	return fe, c
}

// expectUntilReady reads messages up to ReadyForQuery, failing on an
// ErrorResponse, and returns their types in order.
func expectUntilReady(t *testing.T, fe *pgproto3.Frontend) []string {
	t.Helper()
	var got []string
	for {
		m, err := fe.Receive()
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		got = append(got, fmt.Sprintf("%T", m))
		switch m := m.(type) {
		case *pgproto3.ErrorResponse:
			t.Fatalf("after %v: %s %s", got, m.Code, m.Message)
		case *pgproto3.ReadyForQuery:
			return got
		}
	}
}

// expectType reads one message and fails unless it has type T.
func expectType[T pgproto3.BackendMessage](t *testing.T, fe *pgproto3.Frontend) T {
	t.Helper()
	m, err := fe.Receive()
	if err != nil {
		t.Fatal(err)
	}
	v, ok := m.(T)
	if !ok {
		var want T
		t.Fatalf("got %T %+v, want %T", m, m, want)
	}
	return v
}

func TestCopyInWithEarlySync(t *testing.T) {
	leakCheck(t)
	cases := []struct {
		name string
		stmt string // "" = unnamed statement
		// early sends Sync with Bind and Execute, before COPY data
		// (tokio-postgres); otherwise Flush, and a Sync once the server
		// answered CopyInResponse (the server is then in copy mode).
		early bool
		bad   bool // the data fails: the server leaves copy mode early
	}{
		{"unnamed, Sync with Execute", "", true, false},
		{"named, Sync with Execute", "copy_stmt", true, false},
		{"unnamed, Sync after CopyInResponse", "", false, false},
		{"named, Sync with Execute, bad data", "copy_bad", true, true},
	}
	for _, mode := range poolModes() {
		t.Run(mode, func(t *testing.T) {
			// One backend: a session that kept it would starve the other.
			e := startProxy(t, proxyOpts{mode: mode, size: 1})
			ctx := testCtx(t)
			table := uniqueName("copysync")
			dropTable(t, e, table)
			if _, err := e.direct(ctx).Exec(ctx, "CREATE TABLE "+table+" (id int)"); err != nil {
				t.Fatal(err)
			}
			for i, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					fe, conn := e.rawFrontend(t)
					fe.Send(&pgproto3.Parse{Name: tc.stmt, Query: "COPY " + table + " FROM STDIN"})
					fe.Send(&pgproto3.Bind{PreparedStatement: tc.stmt})
					fe.Send(&pgproto3.Execute{})
					if tc.early {
						fe.Send(&pgproto3.Sync{})
					} else {
						fe.Send(&pgproto3.Flush{})
					}
					if err := fe.Flush(); err != nil {
						t.Fatal(err)
					}
					expectType[*pgproto3.ParseComplete](t, fe)
					expectType[*pgproto3.BindComplete](t, fe)
					expectType[*pgproto3.CopyInResponse](t, fe)
					if !tc.early {
						fe.Send(&pgproto3.Sync{}) // ignored by the server in copy mode
					}
					data := fmt.Appendf(nil, "%d\n%d\n", 10*i+1, 10*i+2)
					if tc.bad {
						data = []byte("not a number\n")
					}
					fe.Send(&pgproto3.CopyData{Data: data})
					fe.Send(&pgproto3.CopyDone{})
					fe.Send(&pgproto3.Sync{})
					if err := fe.Flush(); err != nil {
						t.Fatal(err)
					}
					if tc.bad {
						if er := expectType[*pgproto3.ErrorResponse](t, fe); er.Code != "22P02" {
							t.Fatalf("bad COPY data: %s %s", er.Code, er.Message)
						}
					} else if cc := expectType[*pgproto3.CommandComplete](t, fe); string(cc.CommandTag) != "COPY 2" {
						t.Fatalf("command tag %q", cc.CommandTag)
					}
					if rfq := expectType[*pgproto3.ReadyForQuery](t, fe); rfq.TxStatus != 'I' {
						t.Fatalf("ReadyForQuery %q", rfq.TxStatus)
					}

					// The same session goes on: a query answered once, in order.
					fe.Send(&pgproto3.Query{String: "SELECT count(*) FROM " + table})
					if err := fe.Flush(); err != nil {
						t.Fatal(err)
					}
					got := expectUntilReady(t, fe)
					if len(got) != 4 {
						t.Fatalf("count query answered with %v", got)
					}

					if mode == "transaction" {
						// The one backend went back to the pool: another
						// client gets it at once.
						qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
						defer cancel()
						other := e.connect(qctx)
						var n int
						if err := other.QueryRow(qctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
							t.Fatalf("another client after the COPY: %v (backend not released?)", err)
						}
						if want := 2 * min(i+1, 3); n != want { // the bad COPY adds none
							t.Fatalf("%d rows after copy %d, want %d", n, i+1, want)
						}
						_ = other.Close(ctx)
					}
					fe.Send(&pgproto3.Terminate{})
					_ = fe.Flush()
					_ = conn.Close()
				})
			}
		})
	}
}

// TestCopyInErrorBeforeCopyDone: the server rejects COPY data at once and
// returns to idle; the client's late CopyData and CopyDone are dropped, as
// PostgreSQL drops them, and the backend goes back to the pool. Before,
// they tied a backend to the client for good, and with a pool of one the
// next client never got one.
func TestCopyInErrorBeforeCopyDone(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{size: 1})
	table := intTable(t, e, "copyerr")
	ctx := testCtx(t)

	fe, _ := e.rawFrontend(t)
	failCopy(t, fe, table)
	expectType[*pgproto3.ReadyForQuery](t, fe)
	// The client had more in flight.
	fe.Send(&pgproto3.CopyData{Data: []byte("2\n")})
	fe.Send(&pgproto3.CopyDone{})
	fe.Send(&pgproto3.Query{String: "SELECT 1"})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	got := expectUntilReady(t, fe)
	if len(got) != 4 { // RowDescription, DataRow, CommandComplete, ReadyForQuery
		t.Fatalf("SELECT 1 after the failed COPY: %v", got)
	}
	assertBackendFree(ctx, t, e)
}

// TestErrorBeforeSyncDelivered: in transaction pooling the server's error
// for extended-protocol messages sent without a Sync reaches the client at
// once, as from PostgreSQL, for clients that wait for it before syncing
// (psycopg's pipeline mode). Before, it waited in the backend's socket
// until the client's Sync.
func TestErrorBeforeSyncDelivered(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{size: 1})
	fe, c := e.rawFrontend(t)
	fe.Send(&pgproto3.Parse{Query: "SELECT no_such_column"})
	fe.Send(&pgproto3.Bind{})
	fe.Send(&pgproto3.Execute{})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if e := expectType[*pgproto3.ErrorResponse](t, fe); e.Code != "42703" {
		t.Fatalf("error before Sync: %s %s", e.Code, e.Message)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	fe.Send(&pgproto3.Sync{})
	fe.Send(&pgproto3.Query{String: "SELECT 1"})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	expectType[*pgproto3.ReadyForQuery](t, fe)
	if got := expectUntilReady(t, fe); len(got) != 4 {
		t.Fatalf("SELECT 1 after the Sync: %v", got)
	}
	// The backend went back to the pool (size 1): another client runs.
	ctx := testCtx(t)
	var n int
	if err := e.connect(ctx).QueryRow(ctx, "SELECT 2").Scan(&n); err != nil {
		t.Fatal(err)
	}
}

// TestCopyInErrorBeforeCopyDoneInTransaction: the same inside an explicit
// transaction, where the backend stays attached after the error: the late
// CopyDone must not keep it from going back to the pool after ROLLBACK
// (PgBouncer's test_copy_stdin_error_before_copy_done_in_transaction).
func TestCopyInErrorBeforeCopyDoneInTransaction(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{size: 1})
	table := intTable(t, e, "copyerrtx")
	ctx := testCtx(t)

	fe, _ := e.rawFrontend(t)
	fe.Send(&pgproto3.Query{String: "BEGIN"})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	expectUntilReady(t, fe)
	failCopy(t, fe, table)
	if z := expectType[*pgproto3.ReadyForQuery](t, fe); z.TxStatus != 'E' {
		t.Fatalf("after the failed COPY: status %q", z.TxStatus)
	}
	fe.Send(&pgproto3.CopyDone{}) // late
	fe.Send(&pgproto3.Query{String: "ROLLBACK"})
	fe.Send(&pgproto3.Query{String: "SELECT 1"})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	expectUntilReady(t, fe)
	expectUntilReady(t, fe)
	assertBackendFree(ctx, t, e)
}

// intTable creates a one-column table for the test and drops it after.
func intTable(t *testing.T, e *env, prefix string) string {
	t.Helper()
	ctx := testCtx(t)
	table := uniqueName(prefix)
	d := e.direct(ctx)
	defer d.Close(ctx)
	if _, err := d.Exec(ctx, "CREATE TABLE "+table+" (i int)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dropTable(t, e, table) })
	return table
}

// failCopy starts COPY table FROM STDIN and sends a row the server
// rejects at once (22P02), up to its ErrorResponse.
func failCopy(t *testing.T, fe *pgproto3.Frontend, table string) {
	t.Helper()
	fe.Send(&pgproto3.Query{String: "COPY " + table + " (i) FROM STDIN"})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	expectType[*pgproto3.CopyInResponse](t, fe)
	fe.Send(&pgproto3.CopyData{Data: []byte("not a number\n")})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	if e := expectType[*pgproto3.ErrorResponse](t, fe); e.Code != "22P02" {
		t.Fatalf("bad COPY row: %s %s", e.Code, e.Message)
	}
}

// assertBackendFree checks that another client gets the backend of a
// pool of one within 3 s: the test's client gave it back.
func assertBackendFree(ctx context.Context, t *testing.T, e *env) {
	t.Helper()
	qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	var n int
	if err := e.connect(ctx).QueryRow(qctx, "SELECT 2").Scan(&n); err != nil || n != 2 {
		t.Fatalf("another client with a pool of one: %v", err)
	}
}

// TestPipelineWaitTimeoutThenSync: a pipeline's batch that fails waiting
// for a backend (query_wait_timeout) is answered as PostgreSQL answers a
// failed batch followed by a lone Sync: ErrorResponse, ReadyForQuery,
// ReadyForQuery. Before, the lone Sync waited for a backend in turn and
// failed again (E Z E Z, after two timeouts), which left libpq's and
// psycopg's pipeline mode unusable.
func TestPipelineWaitTimeoutThenSync(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{size: 1, dbExtra: "[databases.app.pool]\nquery_wait_timeout = \"500ms\"\n"})
	ctx := testCtx(t)
	holder := e.holdBackend(ctx, t)
	defer func() { _ = holder.Rollback(context.Background()) }()
	fe, _ := e.rawFrontend(t)
	fe.SendParse(&pgproto3.Parse{Query: "SELECT 1"})
	fe.SendBind(&pgproto3.Bind{})
	fe.SendExecute(&pgproto3.Execute{})
	fe.SendSync(&pgproto3.Sync{})
	fe.SendSync(&pgproto3.Sync{})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	if e := expectType[*pgproto3.ErrorResponse](t, fe); e.Code != "57014" {
		t.Fatalf("the batch waiting past query_wait_timeout: %s %s, want 57014", e.Code, e.Message)
	}
	expectType[*pgproto3.ReadyForQuery](t, fe)
	if z := expectType[*pgproto3.ReadyForQuery](t, fe); z.TxStatus != 'I' {
		t.Fatalf("the lone Sync: ReadyForQuery %q, want 'I'", z.TxStatus)
	}
	// The session goes on.
	fe.SendQuery(&pgproto3.Query{String: "SELECT 1"})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := holder.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	expectUntilReady(t, fe)
}

// TestCopyDataBeforeCopyInResponse: a client may stream COPY data right
// behind the Execute that starts the COPY, without waiting for the
// server's CopyInResponse (Postgrex does; so may any pipelining client).
// Before, pgrecycle took that data for the leftovers of a failed COPY and
// dropped it: the server waited in copy mode for good, or, with part of
// the data sent after another reply, the COPY lost rows and reported
// success. Both pooling modes.
func TestCopyDataBeforeCopyInResponse(t *testing.T) {
	leakCheck(t)
	forModes(t, proxyOpts{size: 1}, func(t *testing.T, e *env, mode string) {
		table := intTable(t, e, "copyearly")
		ctx := testCtx(t)

		// Everything in one write.
		fe, conn := e.rawFrontend(t)
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		fe.Send(&pgproto3.Parse{Query: "COPY " + table + " FROM STDIN"})
		fe.Send(&pgproto3.Bind{})
		fe.Send(&pgproto3.Execute{})
		fe.Send(&pgproto3.CopyData{Data: []byte("1\n")})
		fe.Send(&pgproto3.CopyDone{})
		fe.Send(&pgproto3.Sync{})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		expectType[*pgproto3.ParseComplete](t, fe)
		expectType[*pgproto3.BindComplete](t, fe)
		expectType[*pgproto3.CopyInResponse](t, fe)
		if cc := expectType[*pgproto3.CommandComplete](t, fe); string(cc.CommandTag) != "COPY 1" {
			t.Fatalf("one-write COPY: %q, want COPY 1", cc.CommandTag)
		}
		expectType[*pgproto3.ReadyForQuery](t, fe)

		// Postgrex's savepoint pattern: the portal bound in a transaction,
		// then SAVEPOINT, Execute and the first row in one write, the
		// next rows right after the SAVEPOINT's ReadyForQuery.
		fe.Send(&pgproto3.Query{String: "BEGIN"})
		fe.Send(&pgproto3.Parse{Query: "COPY " + table + " FROM STDIN"})
		fe.Send(&pgproto3.Bind{DestinationPortal: "copy_portal"})
		fe.Send(&pgproto3.Sync{})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		expectUntilReady(t, fe)
		expectUntilReady(t, fe)
		fe.Send(&pgproto3.Query{String: "SAVEPOINT before_copy"})
		fe.Send(&pgproto3.Execute{Portal: "copy_portal"})
		fe.Send(&pgproto3.CopyData{Data: []byte("2\n")})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		expectUntilReady(t, fe) // the SAVEPOINT's
		fe.Send(&pgproto3.CopyData{Data: []byte("3\n")})
		fe.Send(&pgproto3.CopyData{Data: []byte("4\n")})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		fe.Send(&pgproto3.CopyDone{})
		fe.Send(&pgproto3.Query{String: "RELEASE SAVEPOINT before_copy"})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		expectType[*pgproto3.CopyInResponse](t, fe)
		if cc := expectType[*pgproto3.CommandComplete](t, fe); string(cc.CommandTag) != "COPY 3" {
			t.Fatalf("savepoint COPY: %q, want COPY 3 (rows dropped)", cc.CommandTag)
		}
		expectUntilReady(t, fe) // RELEASE
		fe.Send(&pgproto3.Sync{})
		fe.Send(&pgproto3.Query{String: "COMMIT"})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		expectUntilReady(t, fe)
		expectUntilReady(t, fe)

		var n, sum int
		if err := e.direct(ctx).QueryRow(ctx, "SELECT count(*), sum(i) FROM "+table).Scan(&n, &sum); err != nil || n != 4 || sum != 10 {
			t.Fatalf("table holds %d rows summing to %d (%v), want 4 and 10", n, sum, err)
		}
		fe.Send(&pgproto3.Terminate{})
		_ = fe.Flush()
		_ = conn.Close()
		assertBackendFree(ctx, t, e)
	})
}
