package integration

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// serverStatements counts the statements pgrecycle prepared on the one
// backend of a size-1 pool, as that backend sees them.
func serverStatements(t *testing.T, ctx context.Context, c *pgx.Conn) int {
	t.Helper()
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'pgrecycle_%'",
		pgx.QueryExecModeSimpleProtocol).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestPreparedLRUClosesOnServer: beyond pool.max_prepared_statements the
// least recently used statements are really closed on the server, and a
// client still using an evicted one gets it prepared again transparently.
func TestPreparedLRUClosesOnServer(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{size: 1, dbExtra: "[databases.app.pool]\nmax_prepared_statements = 3\n"})
	ctx := testCtx(t)
	c := e.connect(ctx)
	pc := c.PgConn()
	for i := 0; i < 6; i++ {
		if _, err := pc.Prepare(ctx, fmt.Sprintf("s%d", i), fmt.Sprintf("SELECT %d + $1::int", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := serverStatements(t, ctx, c); n > 3 {
		t.Fatalf("%d statements on the backend, max_prepared_statements = 3", n)
	}
	// s0 was evicted long ago: executing it still works.
	res := pc.ExecPrepared(ctx, "s0", [][]byte{[]byte("5")}, nil, nil).Read()
	if res.Err != nil || len(res.Rows) != 1 || string(res.Rows[0][0]) != "5" {
		t.Fatalf("evicted statement s0: %v %v", res.Err, res.Rows)
	}
	if n := serverStatements(t, ctx, c); n > 3 {
		t.Fatalf("%d statements after re-preparing, want at most 3", n)
	}
}

// TestPreparedSharedAndClosed: two clients preparing the same statement
// share one server-side statement; one client's Close or DEALLOCATE does
// not break the other; DEALLOCATE ALL and DISCARD ALL clear only the
// client's own view.
func TestPreparedSharedAndClosed(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{size: 1})
	ctx := testCtx(t)
	a, b := e.connect(ctx), e.connect(ctx)
	for _, c := range []*pgx.Conn{a, b} {
		if _, err := c.PgConn().Prepare(ctx, "same", "SELECT 40 + $1::int", nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := serverStatements(t, ctx, a); n != 1 {
		t.Fatalf("%d server statements for one shared statement text", n)
	}
	exec := func(c *pgx.Conn, name string) *pgconn.Result {
		return c.PgConn().ExecPrepared(ctx, name, [][]byte{[]byte("2")}, nil, nil).Read()
	}
	if err := a.PgConn().Deallocate(ctx, "same"); err != nil { // protocol Close
		t.Fatal(err)
	}
	if r := exec(b, "same"); r.Err != nil || string(r.Rows[0][0]) != "42" {
		t.Fatalf("b's statement broken by a's Close: %v", r.Err)
	}
	if r := exec(a, "same"); r.Err == nil || !strings.Contains(r.Err.Error(), "does not exist") {
		t.Fatalf("a's closed statement still usable: %v", r.Err)
	}
	// SQL DEALLOCATE name / ALL and DISCARD ALL act on the client's view.
	for i, sql := range []string{"DEALLOCATE same", "DEALLOCATE ALL", "DISCARD ALL"} {
		if i > 0 { // b still holds "same" from above the first time
			if _, err := b.PgConn().Prepare(ctx, "same", "SELECT 40 + $1::int", nil); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := b.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		if r := exec(b, "same"); r.Err == nil {
			t.Fatalf("after %s the statement is still there", sql)
		}
	}
}

// TestPreparedDeallocateExtended: DEALLOCATE sent with the extended
// protocol, unnamed (PQexecParams; psycopg 3 evicting its cache) or
// prepared by name (pgx's statement cache), acts on the client's own
// statement like the simple-protocol one; DEALLOCATE ALL and DISCARD ALL
// leave other clients' statements working; an unknown name and statements
// of SQL PREPARE get PostgreSQL's own answers.
func TestPreparedDeallocateExtended(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{size: 1})
	ctx := testCtx(t)
	a, other := e.connect(ctx), e.connect(ctx)
	prepare := func(c *pgx.Conn) {
		t.Helper()
		if _, err := c.PgConn().Prepare(ctx, "same", "SELECT 40 + $1::int", nil); err != nil {
			t.Fatal(err)
		}
	}
	exec := func(c *pgx.Conn) *pgconn.Result {
		return c.PgConn().ExecPrepared(ctx, "same", [][]byte{[]byte("2")}, nil, nil).Read()
	}
	prepare(other)
	for _, tc := range []struct{ sql, tag string }{
		{"DEALLOCATE same", "DEALLOCATE"},
		{"deallocate prepare \"same\";", "DEALLOCATE"},
		{"DEALLOCATE ALL", "DEALLOCATE ALL"},
		{"DISCARD ALL", "DISCARD ALL"},
	} {
		for _, named := range []bool{false, true} {
			prepare(a)
			var tag string
			var err error
			if named {
				var ct pgconn.CommandTag
				ct, err = a.Exec(ctx, tc.sql, pgx.QueryExecModeCacheStatement)
				tag = ct.String()
			} else {
				r := a.PgConn().ExecParams(ctx, tc.sql, nil, nil, nil, nil).Read()
				err, tag = r.Err, r.CommandTag.String()
			}
			if err != nil || tag != tc.tag {
				t.Fatalf("%q (named %v): tag %q, error %v; want %q", tc.sql, named, tag, err, tc.tag)
			}
			if r := exec(a); r.Err == nil {
				t.Fatalf("after %q (named %v) the statement still runs", tc.sql, named)
			}
			if r := exec(other); r.Err != nil || string(r.Rows[0][0]) != "42" {
				t.Fatalf("another client's statement broken by %q (named %v): %v", tc.sql, named, r.Err)
			}
		}
	}
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol} {
		if _, err := a.Exec(ctx, "DEALLOCATE nosuch", mode); sqlState(err) != "26000" {
			t.Fatalf("DEALLOCATE of an unknown name (%v): %v, want 26000", mode, err)
		}
	}
	// SQL PREPARE lives on the backend (a pool of one keeps it there):
	// DEALLOCATE reaches it, so the name can be prepared again.
	for _, sql := range []string{"PREPARE sqlp AS SELECT 42", "EXECUTE sqlp", "DEALLOCATE sqlp", "PREPARE sqlp AS SELECT 43"} {
		if _, err := a.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	var n int
	if err := a.QueryRow(ctx, "EXECUTE sqlp", pgx.QueryExecModeSimpleProtocol).Scan(&n); err != nil || n != 43 {
		t.Fatalf("EXECUTE sqlp after re-PREPARE: %d, %v", n, err)
	}
}

// TestPreparedParseErrorInPipeline: a Parse that fails is reported where
// PostgreSQL reports it, the rest of the batch is skipped up to Sync, and
// the session goes on.
func TestPreparedParseErrorInPipeline(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{size: 1})
	ctx := testCtx(t)
	c := e.connect(ctx)
	pc := c.PgConn()
	batch := &pgconn.Batch{}
	batch.ExecParams("SELECT 1", nil, nil, nil, nil)
	batch.ExecParams("SELEC broken", nil, nil, nil, nil)
	batch.ExecParams("SELECT 3", nil, nil, nil, nil)
	results, err := pc.ExecBatch(ctx, batch).ReadAll()
	if err == nil {
		t.Fatal("batch with a syntax error succeeded")
	}
	var pgErr *pgconn.PgError
	if !asPgError(err, &pgErr) || pgErr.Code != "42601" {
		t.Fatalf("error %v, want 42601 syntax_error", err)
	}
	if len(results) < 1 || string(results[0].Rows[0][0]) != "1" {
		t.Fatalf("first statement's result lost: %+v", results)
	}
	if _, err := pc.Prepare(ctx, "bad", "SELECT nope FROM nowhere", nil); err == nil {
		t.Fatal("named Parse of a bad statement succeeded")
	}
	if _, err := pc.Prepare(ctx, "bad", "SELECT 7", nil); err != nil {
		t.Fatalf("name still taken after a failed Parse: %v", err)
	}
	var n int
	if err := c.QueryRow(ctx, "SELECT 9").Scan(&n); err != nil || n != 9 {
		t.Fatalf("session broken after parse errors: %v", err)
	}
}

func asPgError(err error, target **pgconn.PgError) bool {
	pe, ok := err.(*pgconn.PgError)
	if ok {
		*target = pe
	}
	return ok
}

// TestPreparedAfterAlterTable: after a table a shared statement reads
// changes shape, the client that prepared it gets PostgreSQL's 0A000 once,
// as directly, and re-preparing the same text, by it or by any other
// client, yields a fresh statement with the new columns instead of the
// stale shared one.
func TestPreparedAfterAlterTable(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{size: 1})
	ctx := testCtx(t)
	d := e.direct(ctx)
	if _, err := d.Exec(ctx, "DROP TABLE IF EXISTS reshaped; CREATE TABLE reshaped (a int); INSERT INTO reshaped VALUES (1); GRANT ALL ON reshaped TO PUBLIC"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = e.direct(context.Background()).Exec(context.Background(), "DROP TABLE IF EXISTS reshaped")
	})
	const query = "SELECT * FROM reshaped"
	a, b := e.connect(ctx), e.connect(ctx)
	columns := func(c *pgx.Conn, name string) (int, error) {
		r := c.PgConn().ExecPrepared(ctx, name, nil, nil, nil).Read()
		if r.Err != nil {
			return 0, r.Err
		}
		return len(r.FieldDescriptions), nil
	}
	for _, c := range []*pgx.Conn{a, b} {
		if _, err := c.PgConn().Prepare(ctx, "before", query, nil); err != nil {
			t.Fatal(err)
		}
		if n, err := columns(c, "before"); err != nil || n != 1 {
			t.Fatalf("before ALTER: %d columns, %v", n, err)
		}
	}
	if _, err := d.Exec(ctx, "ALTER TABLE reshaped ADD COLUMN b int"); err != nil {
		t.Fatal(err)
	}
	if _, err := columns(a, "before"); sqlState(err) != "0A000" {
		t.Fatalf("a's statement from before the ALTER: %v, want 0A000 as on PostgreSQL", err)
	}
	// What pgjdbc, pgx and Rails do next: prepare the same text again.
	if err := a.PgConn().Deallocate(ctx, "before"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.PgConn().Prepare(ctx, "after", query, nil); err != nil {
		t.Fatal(err)
	}
	if n, err := columns(a, "after"); err != nil || n != 2 {
		t.Fatalf("a re-prepared: %d columns, %v; want 2 (the stale shared statement came back?)", n, err)
	}
	c := e.connect(ctx)
	if _, err := c.PgConn().Prepare(ctx, "fresh", query, nil); err != nil {
		t.Fatal(err)
	}
	if n, err := columns(c, "fresh"); err != nil || n != 2 {
		t.Fatalf("a new client's statement: %d columns, %v; want 2", n, err)
	}
	// b prepared before the ALTER: PostgreSQL's answer, then its own heal.
	if _, err := columns(b, "before"); sqlState(err) != "0A000" {
		t.Fatalf("b's statement from before the ALTER: %v, want 0A000", err)
	}
	if _, err := b.PgConn().Prepare(ctx, "after", query, nil); err != nil {
		t.Fatal(err)
	}
	if n, err := columns(b, "after"); err != nil || n != 2 {
		t.Fatalf("b re-prepared: %d columns, %v", n, err)
	}
	// pgx's own statement cache heals by itself after at most one error.
	width := func() (int, error) {
		var n int
		r, err := a.Query(ctx, query)
		if err != nil {
			return 0, err
		}
		for r.Next() {
			v, _ := r.Values()
			n = len(v)
		}
		return n, r.Err()
	}
	if n, err := width(); err != nil || n != 2 {
		t.Fatalf("pgx before the second ALTER: %d columns, %v", n, err)
	}
	if _, err := d.Exec(ctx, "ALTER TABLE reshaped ADD COLUMN c int"); err != nil {
		t.Fatal(err)
	}
	n, err := width()
	if err != nil {
		n, err = width()
	}
	if err != nil || n != 3 {
		t.Fatalf("pgx after the second ALTER: %d columns, %v; want 3", n, err)
	}
}

// pipelineResults sends what send queues, syncs, and collects per request
// its error (nil on success) until n PipelineSyncs arrived.
func pipelineResults(ctx context.Context, t *testing.T, c *pgconn.PgConn, syncs int, send func(p *pgconn.Pipeline)) []error {
	t.Helper()
	p := c.StartPipeline(ctx)
	send(p)
	if err := p.Flush(); err != nil {
		t.Fatal(err)
	}
	var out []error
	for seen := 0; seen < syncs; {
		res, err := p.GetResults()
		switch r := res.(type) {
		case *pgconn.PipelineSync:
			seen++
			continue
		case *pgconn.ResultReader:
			_, err = r.Close()
		case nil:
			if err == nil {
				t.Fatalf("pipeline ended after %d syncs, want %d", seen, syncs)
			}
		}
		out = append(out, err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestPreparedPipelineAfterSkippedParse: a Parse skipped because an earlier
// message of its batch failed leaves nothing on the server; a Parse of the
// same text in a later batch of the same pipeline must still prepare it.
// Before, the proxy took the skipped Parse for done and sent nothing, and
// the second batch failed with 26000 naming an internal statement.
func TestPreparedPipelineAfterSkippedParse(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{size: 1})
	ctx := testCtx(t)
	for _, second := range []string{"other", "first"} {
		c := e.connect(ctx)
		const q = "SELECT 7 + $1::int"
		errs := pipelineResults(ctx, t, c.PgConn(), 2, func(p *pgconn.Pipeline) {
			p.SendQueryParams("SELECT 1/0", nil, nil, nil, nil)
			p.SendPrepare("first", q, nil)
			p.SendPipelineSync()
			p.SendPrepare(second, q, nil)
			p.SendQueryPrepared(second, [][]byte{[]byte("1")}, nil, nil)
			p.SendPipelineSync()
		})
		if len(errs) == 0 || sqlState(errs[0]) != "22012" {
			t.Fatalf("first batch: %v, want 22012 first", errs)
		}
		for _, err := range errs[1:] {
			if err != nil && sqlState(err) != "22012" {
				t.Fatalf("second batch (Parse %q after the skipped one): %v", second, err)
			}
		}
		r := c.PgConn().ExecPrepared(ctx, second, [][]byte{[]byte("2")}, nil, nil).Read()
		if r.Err != nil || string(r.Rows[0][0]) != "9" {
			t.Fatalf("statement %q after the pipeline: %v", second, r.Err)
		}
		c.Close(ctx)
	}
}

// TestPreparedDuplicateName: a Parse of a name the client already holds
// fails with 42P05, as on PostgreSQL, and the statement keeps its text.
// Before, the proxy silently redefined it.
func TestPreparedDuplicateName(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{size: 1})
	ctx := testCtx(t)
	c := e.connect(ctx)
	if _, err := c.PgConn().Prepare(ctx, "s2", "SELECT 'original'", nil); err != nil {
		t.Fatal(err)
	}
	_, err := c.PgConn().Prepare(ctx, "s2", "SELECT 'redefined'", nil)
	if sqlState(err) != "42P05" || !strings.Contains(err.Error(), `"s2"`) {
		t.Fatalf("Parse of an existing name: %v, want 42P05 naming s2", err)
	}
	r := c.PgConn().ExecPrepared(ctx, "s2", nil, nil, nil).Read()
	if r.Err != nil || string(r.Rows[0][0]) != "original" {
		t.Fatalf("s2 after the refused Parse: %v %q", r.Err, r.Rows)
	}
	// The batch after the error was skipped, as PostgreSQL does, and the
	// session goes on.
	var n int
	if err := c.QueryRow(ctx, "SELECT 5").Scan(&n); err != nil || n != 5 {
		t.Fatalf("after the refused Parse: %v", err)
	}
}

// TestPreparedErrorsNameClientStatement: an error about a shared
// statement names it as the client does, and a shared statement that
// vanished from the backend (here an SQL DEALLOCATE of its internal name)
// is prepared again at the next use.
func TestPreparedErrorsNameClientStatement(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{size: 1})
	ctx := testCtx(t)
	c := e.connect(ctx)
	if _, err := c.PgConn().Prepare(ctx, "mine", "SELECT 3", nil); err != nil {
		t.Fatal(err)
	}
	var internal string
	if err := c.QueryRow(ctx, "SELECT name FROM pg_prepared_statements WHERE statement = 'SELECT 3'", pgx.QueryExecModeSimpleProtocol).Scan(&internal); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "DEALLOCATE "+internal, pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	r := c.PgConn().ExecPrepared(ctx, "mine", nil, nil, nil).Read()
	if sqlState(r.Err) != "26000" || !strings.Contains(r.Err.Error(), `"mine"`) || strings.Contains(r.Err.Error(), internal) {
		t.Fatalf("statement gone from the backend: %v, want 26000 naming \"mine\"", r.Err)
	}
	r = c.PgConn().ExecPrepared(ctx, "mine", nil, nil, nil).Read()
	if r.Err != nil || string(r.Rows[0][0]) != "3" {
		t.Fatalf("next use after the statement vanished: %v", r.Err)
	}
}

// TestPreparedParseInFailedTransaction: a Parse of a statement another
// client already shares on the backend, sent inside a failed transaction,
// gets PostgreSQL's 25P02 and defines nothing, so the same Parse after
// ROLLBACK works. Before, it was answered ParseComplete (a Close stood in
// for it, which a failed transaction allows), the name was taken, and
// every later Parse of it failed with 42P05: with pgx's statement cache,
// that query failed for the rest of the connection.
func TestPreparedParseInFailedTransaction(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{size: 1})
	ctx := testCtx(t)
	const q = "SELECT 40 + $1::int"
	a := e.connect(ctx)
	if _, err := a.PgConn().Prepare(ctx, "shared", q, nil); err != nil {
		t.Fatal(err)
	}
	b := e.connect(ctx)
	if _, err := b.Exec(ctx, "BEGIN", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Exec(ctx, "SELECT 1/0", pgx.QueryExecModeSimpleProtocol); err == nil {
		t.Fatal("1/0 succeeded")
	}
	if _, err := b.PgConn().Prepare(ctx, "mine", q, nil); sqlState(err) != "25P02" {
		t.Fatalf("Parse in a failed transaction: %v, want 25P02", err)
	}
	if _, err := b.Exec(ctx, "ROLLBACK", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	if _, err := b.PgConn().Prepare(ctx, "mine", q, nil); err != nil {
		t.Fatalf("Parse after ROLLBACK: %v", err)
	}
	r := b.PgConn().ExecPrepared(ctx, "mine", [][]byte{[]byte("2")}, nil, nil).Read()
	if r.Err != nil || string(r.Rows[0][0]) != "42" {
		t.Fatalf("mine: %v", r.Err)
	}
	// Inside a healthy transaction a shared statement still just works.
	tx, err := b.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Conn().PgConn().Prepare(ctx, "in_tx", q, nil); err != nil {
		t.Fatalf("Parse inside a transaction: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	r = b.PgConn().ExecPrepared(ctx, "in_tx", [][]byte{[]byte("1")}, nil, nil).Read()
	if r.Err != nil || string(r.Rows[0][0]) != "41" {
		t.Fatalf("in_tx: %v", r.Err)
	}
}

// TestPreparedLimitLoweredByReload: after a reload lowers
// max_prepared_statements, the next Parse on a backend closes every
// statement over the new limit (PgBouncer's test_evict_statement_cache).
// Before, one was closed per new statement, so the backend stayed over
// the limit until it retired.
func TestPreparedLimitLoweredByReload(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{size: 1, dbExtra: "[databases.app.pool]\nmax_prepared_statements = 10\n"})
	ctx := testCtx(t)
	c := e.connect(ctx)
	pc := c.PgConn()
	for i := 0; i < 5; i++ {
		if _, err := pc.Prepare(ctx, fmt.Sprintf("s%d", i), fmt.Sprintf("SELECT %d + $1::int", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	e.editConfig(func(s string) string {
		return strings.Replace(s, "max_prepared_statements = 10", "max_prepared_statements = 2", 1)
	})
	if err := e.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := pc.Prepare(ctx, "s5", "SELECT 5 + $1::int", nil); err != nil {
		t.Fatal(err)
	}
	if n := serverStatements(t, ctx, c); n != 2 {
		t.Fatalf("%d statements on the backend after lowering the limit to 2", n)
	}
	// The evicted ones still work for the client.
	r := pc.ExecPrepared(ctx, "s0", [][]byte{[]byte("1")}, nil, nil).Read()
	if r.Err != nil || string(r.Rows[0][0]) != "1" {
		t.Fatalf("s0 after eviction: %v", r.Err)
	}
}

// TestPreparedDeallocateSeveral: one query of several DEALLOCATEs of the
// client's statements is answered as PostgreSQL answers it (a
// CommandComplete each) and removes them all; before, the server got
// the client's names and failed with 26000.
func TestPreparedDeallocateSeveral(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{size: 1})
	ctx := testCtx(t)
	c := e.connect(ctx)
	for _, name := range []string{"one", "two"} {
		if _, err := c.PgConn().Prepare(ctx, name, "SELECT 1", nil); err != nil {
			t.Fatal(err)
		}
	}
	results, err := c.PgConn().Exec(ctx, "DEALLOCATE one; deallocate prepare two;").ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 2 || results[0].CommandTag.String() != "DEALLOCATE" || results[1].CommandTag.String() != "DEALLOCATE" {
		t.Fatalf("results = %+v, want two DEALLOCATE", results)
	}
	for _, name := range []string{"one", "two"} {
		if r := c.PgConn().ExecPrepared(ctx, name, nil, nil, nil).Read(); r.Err == nil {
			t.Fatalf("statement %s survives DEALLOCATE", name)
		}
	}
	// A name the client does not hold gets the server's 26000, as before.
	if _, err := c.PgConn().Prepare(ctx, "three", "SELECT 3", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PgConn().Exec(ctx, "DEALLOCATE three; DEALLOCATE nosuch").ReadAll(); sqlState(err) != "26000" {
		t.Fatalf("DEALLOCATE of an unknown name: %v, want 26000", err)
	}
	var n int
	if err := c.QueryRow(ctx, "SELECT 5").Scan(&n); err != nil || n != 5 {
		t.Fatalf("connection after the error: %d, %v", n, err)
	}
}

// TestPreparedDeallocateInFailedTransaction: in a failed transaction the
// server refuses DEALLOCATE and DISCARD ALL with 25P02 and keeps the
// statements; before, pgrecycle answered the DEALLOCATEs itself and
// forgot the statement (PHP's pg_prepare then DEALLOCATE after an error,
// found by the driver sweep). DISCARD ALL in a transaction block fails
// on the server, and the client's statements stay too.
func TestPreparedDeallocateInFailedTransaction(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{size: 1})
	ctx := testCtx(t)
	c := e.connect(ctx)
	if _, err := c.PgConn().Prepare(ctx, "s2", "SELECT 2 * 3", nil); err != nil {
		t.Fatal(err)
	}
	exec := func(sql string) error {
		_, err := c.PgConn().Exec(ctx, sql).ReadAll()
		return err
	}
	if err := exec("BEGIN"); err != nil {
		t.Fatal(err)
	}
	if err := exec("SELECT 1/0"); sqlState(err) != "22012" {
		t.Fatalf("SELECT 1/0: %v", err)
	}
	for _, sql := range []string{"DEALLOCATE s2", "DEALLOCATE ALL", "DEALLOCATE s2; DEALLOCATE s2"} {
		if err := exec(sql); sqlState(err) != "25P02" {
			t.Errorf("%s in a failed transaction: %v, want 25P02", sql, err)
		}
	}
	check := func(after string) {
		t.Helper()
		r := c.PgConn().ExecPrepared(ctx, "s2", nil, nil, nil).Read()
		if r.Err != nil || len(r.Rows) != 1 || string(r.Rows[0][0]) != "6" {
			t.Fatalf("s2 after %s: %v %q, want 6", after, r.Err, r.Rows)
		}
	}
	if err := exec("ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	check("the refused DEALLOCATEs")
	if err := exec("BEGIN"); err != nil {
		t.Fatal(err)
	}
	if err := exec("DISCARD ALL"); sqlState(err) != "25001" {
		t.Errorf("DISCARD ALL in a transaction block: %v, want 25001", err)
	}
	if err := exec("ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	check("the refused DISCARD ALL")
}

// TestUnnamedStatementAcrossRoundTrips: asyncpg without a statement cache
// (the setting recommended behind PgBouncer) and pgx's describe-exec mode
// parse and describe the unnamed statement in one round trip and bind it
// in the next. Between the two, in transaction pooling, another client may
// parse its own unnamed statement on the same backend, or the client may
// land on another backend; before, its Bind then ran the other client's
// query (wrong results) or failed with 26000. The client's unnamed
// statement is now parsed again where needed; one destroyed by a simple
// query stays destroyed, as on PostgreSQL. The same holds without
// statement mapping (max_prepared_statements = 0).
func TestUnnamedStatementAcrossRoundTrips(t *testing.T) {
	leakCheck(t)
	forStatementMapping(t, unnamedStatementAcrossRoundTrips)
}

// forStatementMapping runs f against a transaction-pooling proxy with a
// pool of one, with statement mapping on, then off (max_prepared_statements
// = 0, PgBouncer's old default).
func forStatementMapping(t *testing.T, f func(t *testing.T, e *env)) {
	t.Helper()
	for _, mapped := range []bool{true, false} {
		t.Run(fmt.Sprintf("mapped=%v", mapped), func(t *testing.T) {
			opts := proxyOpts{size: 1}
			if !mapped {
				opts.dbExtra = "[databases.app.pool]\nmax_prepared_statements = 0\n"
			}
			f(t, startProxy(t, opts))
		})
	}
}

func unnamedStatementAcrossRoundTrips(t *testing.T, e *env) {
	ctx := testCtx(t)
	a, b := e.connect(ctx), e.connect(ctx)
	if _, err := a.PgConn().Prepare(ctx, "", "SELECT 'a:' || $1::text", nil); err != nil {
		t.Fatal(err)
	}
	// b's unnamed statement replaces a's on the one backend.
	if _, err := b.PgConn().Prepare(ctx, "", "SELECT 'b:' || $1::text || $1::text", nil); err != nil {
		t.Fatal(err)
	}
	r := b.PgConn().ExecPrepared(ctx, "", [][]byte{[]byte("x")}, nil, nil).Read()
	if r.Err != nil || string(r.Rows[0][0]) != "b:xx" {
		t.Fatalf("b: %v %q", r.Err, r.Rows)
	}
	r = a.PgConn().ExecPrepared(ctx, "", [][]byte{[]byte("1")}, nil, nil).Read()
	if r.Err != nil || len(r.Rows) != 1 || string(r.Rows[0][0]) != "a:1" {
		t.Fatalf("a's Bind of its unnamed statement: %v %q, want a:1", r.Err, r.Rows)
	}
	// Describe of the statement in a later round trip works as well.
	if _, err := b.Exec(ctx, "SELECT 1", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	if _, err := b.PgConn().Prepare(ctx, "", "SELECT 42::int8 AS answer", nil); err != nil {
		t.Fatal(err)
	}
	sd, err := a.PgConn().Prepare(ctx, "", "SELECT 'a:' || $1::text", nil)
	if err != nil || len(sd.Fields) != 1 || string(sd.Fields[0].Name) != "?column?" {
		t.Fatalf("a's second Prepare: %v %+v", err, sd)
	}
	// A simple query destroys the unnamed statement: a Bind after it fails
	// as on PostgreSQL, and never runs another client's statement.
	if _, err := a.Exec(ctx, "SELECT 1", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	if _, err := b.PgConn().Prepare(ctx, "", "SELECT 'b:' || $1::text", nil); err != nil {
		t.Fatal(err)
	}
	r = a.PgConn().ExecPrepared(ctx, "", [][]byte{[]byte("1")}, nil, nil).Read()
	if r.Err == nil || sqlState(r.Err) != "26000" {
		t.Fatalf("Bind of a destroyed unnamed statement: %v %q, want 26000", r.Err, r.Rows)
	}
	// Many clients interleaving describe and bind, each with its own text.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 4; i++ {
		c := e.connect(ctx)
		wg.Add(1)
		go func() {
			defer wg.Done()
			want := fmt.Sprintf("client%d", i)
			for k := 0; k < 100; k++ {
				if _, err := c.PgConn().Prepare(ctx, "", "SELECT $1::text || '"+want+"'", nil); err != nil {
					errs <- err
					return
				}
				r := c.PgConn().ExecPrepared(ctx, "", [][]byte{[]byte(">")}, nil, nil).Read()
				if r.Err != nil || len(r.Rows) != 1 || string(r.Rows[0][0]) != ">"+want {
					errs <- fmt.Errorf("%s got %v %q", want, r.Err, r.Rows)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestUnnamedStatementLargeOrParked: the client's unnamed statement is
// carried to another backend whatever its size (lib/pq sends every query
// with arguments as one, and a 10 KB comment failed with 26000 once it
// passed 8 KiB), and after a pause long enough for the client to park
// (PHP's pg_prepare and pg_execute of ""), both found by the driver sweep.
func TestUnnamedStatementLargeOrParked(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{size: 1, listenExtra: `client_park_after = "50ms"`})
	ctx := testCtx(t)
	a, b := e.connect(ctx), e.connect(ctx)
	for _, tc := range []struct {
		name  string
		query string
		pause bool
	}{
		{"20 KB statement", "/* " + strings.Repeat("x", 20000) + " */ SELECT 'a:' || $1::text", false},
		{"after parking", "SELECT 'a:' || $1::text", true},
		{"20 KB statement after parking", "/* " + strings.Repeat("y", 20000) + " */ SELECT 'a:' || $1::text", true},
	} {
		if _, err := a.PgConn().Prepare(ctx, "", tc.query, nil); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if tc.pause {
			waitParked(t, e, 2)
		}
		// b's unnamed statement replaces a's on the one backend.
		if _, err := b.PgConn().Prepare(ctx, "", "SELECT 'b:' || $1::text || $1::text", nil); err != nil {
			t.Fatal(err)
		}
		r := a.PgConn().ExecPrepared(ctx, "", [][]byte{[]byte("1")}, nil, nil).Read()
		if r.Err != nil || len(r.Rows) != 1 || string(r.Rows[0][0]) != "a:1" {
			t.Fatalf("%s: a's Bind of its unnamed statement: %v %q, want a:1", tc.name, r.Err, r.Rows)
		}
	}
}

// TestPreparedParseSettingsPerClient: the server reads literals with the
// parsing session's DateStyle and TimeZone ('now' included), so clients
// whose settings differ must not share a statement: before, a client in
// DMY and Asia/Tokyo that prepared the same text as one in MDY and UTC
// got the other's readings, silently (found by the Node driver sweep;
// Sequelize's timezone option sends SET timezone).
func TestPreparedParseSettingsPerClient(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{size: 1})
	ctx := testCtx(t)
	const query = "SELECT '01/02/2020'::date::text, extract(epoch FROM '2020-06-01 12:00'::timestamptz)::bigint"
	read := func(c *pgx.Conn, name string) (string, int64) {
		t.Helper()
		if _, err := c.PgConn().Prepare(ctx, name, query, nil); err != nil {
			t.Fatal(err)
		}
		r := c.PgConn().ExecPrepared(ctx, name, nil, nil, nil).Read()
		if r.Err != nil || len(r.Rows) != 1 {
			t.Fatalf("%s: %v %q", name, r.Err, r.Rows)
		}
		epoch, err := strconv.ParseInt(string(r.Rows[0][1]), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return string(r.Rows[0][0]), epoch
	}
	a := e.connect(ctx, "datestyle=ISO,MDY", "timezone=UTC")
	if date, epoch := read(a, "a"); date != "2020-01-02" || epoch != 1591012800 {
		t.Fatalf("MDY, UTC client: %s %d", date, epoch)
	}
	b := e.connect(ctx, "datestyle=ISO,DMY", "timezone=Asia/Tokyo")
	if date, epoch := read(b, "b"); date != "2020-02-01" || epoch != 1590980400 {
		t.Errorf("DMY, Asia/Tokyo client after an MDY, UTC one: %s %d, want 2020-02-01 1590980400", date, epoch)
	}
	c := e.connect(ctx, "datestyle=ISO,MDY", "timezone=UTC")
	if _, err := c.Exec(ctx, "SET timezone = 'Asia/Tokyo'", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	if date, epoch := read(c, "c"); date != "2020-01-02" || epoch != 1590980400 {
		t.Errorf("client after SET timezone: %s %d, want 2020-01-02 1590980400", date, epoch)
	}
}

// tenantSchemas creates two tenant schemas whose items tables differ in
// shape: a's (id, name) holds (1, 'a-item'), b's (id, name, price) holds
// (1, 'b-item', 9).
func tenantSchemas(ctx context.Context, t *testing.T, e *env, a, b string) {
	t.Helper()
	d := e.direct(ctx)
	defer d.Close(ctx)
	if _, err := d.Exec(ctx, fmt.Sprintf(`DROP SCHEMA IF EXISTS %[1]s, %[2]s CASCADE;
		CREATE SCHEMA %[1]s; CREATE TABLE %[1]s.items (id int, name text); INSERT INTO %[1]s.items VALUES (1, 'a-item');
		CREATE SCHEMA %[2]s; CREATE TABLE %[2]s.items (id int, name text, price int); INSERT INTO %[2]s.items VALUES (1, 'b-item', 9)`, a, b)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = e.direct(testCtx(t)).Exec(testCtx(t), "DROP SCHEMA IF EXISTS "+a+", "+b+" CASCADE") })
}

// TestPreparedSchemaPerTenant: clients whose startup search_path picks
// their tenant's schema prepare the same text; the tenants' tables differ
// in shape. They share no statement on a backend: before, the shared one
// was re-parsed at each switch of tenant and failed with "cached plan must
// not change result type" (found by the driver-sweep helper).
func TestPreparedSchemaPerTenant(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{size: 1})
	ctx := testCtx(t)
	tenantSchemas(ctx, t, e, "ten_a", "ten_b")
	a := e.connect(ctx, "options=-c%20search_path%3Dten_a")
	b := e.connect(ctx, "options=-c%20search_path%3Dten_b")
	for i := 0; i < 3; i++ {
		for _, c := range []struct {
			conn *pgx.Conn
			want string
			cols int
		}{{a, "a-item", 2}, {b, "b-item", 3}} {
			rows, err := c.conn.Query(ctx, "SELECT * FROM items WHERE id = $1", 1)
			if err != nil {
				t.Fatal(err)
			}
			vals := [][]any{}
			for rows.Next() {
				v, err := rows.Values()
				if err != nil {
					t.Fatal(err)
				}
				vals = append(vals, v)
			}
			if err := rows.Err(); err != nil {
				t.Fatalf("round %d, tenant %s: %v", i, c.want, err)
			}
			if len(vals) != 1 || len(vals[0]) != c.cols || vals[0][1] != c.want {
				t.Fatalf("round %d: got %v, want %s with %d columns", i, vals, c.want, c.cols)
			}
		}
	}
}

// TestPreparedSchemaBySetSearchPath: tenants chosen by SET LOCAL
// search_path in each transaction (the usual advice for transaction
// pooling), or by a session SET before a fresh Parse, never share a
// statement parsed under another path: before, the second tenant's
// statement mapped to the first's and failed with 0A000 "cached plan must
// not change result type" at every execution (found by the driver sweeps,
// node-postgres and PHP PDO).
func TestPreparedSchemaBySetSearchPath(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{size: 1})
	ctx := testCtx(t)
	tenantSchemas(ctx, t, e, "loc_a", "loc_b")
	check := func(what string, rows pgx.Rows, want string, cols int) {
		t.Helper()
		vals, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([]any, error) { return r.Values() })
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if len(vals) != 1 || len(vals[0]) != cols || vals[0][1] != want {
			t.Fatalf("%s: got %v, want %s with %d columns", what, vals, want, cols)
		}
	}
	a, b := e.connect(ctx), e.connect(ctx)
	for i := 0; i < 3; i++ {
		for _, c := range []struct {
			conn         *pgx.Conn
			schema, want string
			cols         int
		}{{a, "loc_a", "a-item", 2}, {b, "loc_b", "b-item", 3}} {
			tx, err := c.conn.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, "SET LOCAL search_path = "+c.schema); err != nil {
				t.Fatal(err)
			}
			rows, err := tx.Query(ctx, "SELECT * FROM items WHERE id = $1", 1)
			if err != nil {
				t.Fatalf("round %d, %s: %v", i, c.schema, err)
			}
			check(fmt.Sprintf("round %d, SET LOCAL search_path = %s", i, c.schema), rows, c.want, c.cols)
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A session SET, then a fresh Parse of the same text under each path.
	c := e.connect(ctx)
	for _, tc := range []struct {
		schema, want string
		cols         int
	}{{"loc_a", "a-item", 2}, {"loc_b", "b-item", 3}} {
		if _, err := c.Exec(ctx, "SET search_path = "+tc.schema, pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatal(err)
		}
		name := "q_" + tc.schema
		if _, err := c.PgConn().Prepare(ctx, name, "SELECT * FROM items WHERE id = 1", nil); err != nil {
			t.Fatal(err)
		}
		r := c.PgConn().ExecPrepared(ctx, name, nil, nil, nil).Read()
		if r.Err != nil || len(r.Rows) != 1 || len(r.Rows[0]) != tc.cols || string(r.Rows[0][1]) != tc.want {
			t.Fatalf("fresh Parse after SET search_path = %s: %v %q", tc.schema, r.Err, r.Rows)
		}
	}
}

// TestPreparedStaleAfterOutsideDDL: DDL run outside pgrecycle (a
// migration tool connected directly) leaves statements shared on the
// backends stale. A client whose fresh Parse mapped to one gets the
// server's 0A000 once; its statement then gets a fresh server statement,
// where before it failed at every execution for the life of the
// connection (node-postgres never prepares again; found by the sweep).
func TestPreparedStaleAfterOutsideDDL(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{size: 1})
	ctx := testCtx(t)
	d := e.direct(ctx)
	defer d.Close(ctx)
	if _, err := d.Exec(ctx, "DROP TABLE IF EXISTS outside_ddl; CREATE TABLE outside_ddl (id int); INSERT INTO outside_ddl VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = e.direct(testCtx(t)).Exec(testCtx(t), "DROP TABLE IF EXISTS outside_ddl") })
	const query = "SELECT * FROM outside_ddl"
	a := e.connect(ctx)
	if _, err := a.PgConn().Prepare(ctx, "before", query, nil); err != nil {
		t.Fatal(err)
	}
	if r := a.PgConn().ExecPrepared(ctx, "before", nil, nil, nil).Read(); r.Err != nil {
		t.Fatal(r.Err)
	}
	if _, err := d.Exec(ctx, "ALTER TABLE outside_ddl ADD COLUMN extra int DEFAULT 7"); err != nil {
		t.Fatal(err)
	}
	b := e.connect(ctx)
	failures := 0
	// Prepare describes the statement: the server may refuse the stale
	// shared one there already (the statement is parsed all the same).
	if _, err := b.PgConn().Prepare(ctx, "after", query, nil); sqlState(err) == "0A000" {
		failures++
	} else if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		r := b.PgConn().ExecPrepared(ctx, "after", nil, nil, nil).Read()
		switch {
		case r.Err != nil && sqlState(r.Err) == "0A000":
			failures++
		case r.Err != nil:
			t.Fatal(r.Err)
		case len(r.Rows) != 1 || len(r.Rows[0]) != 2 || string(r.Rows[0][1]) != "7":
			t.Fatalf("execution %d: %q", i, r.Rows)
		}
	}
	if failures > 1 {
		t.Fatalf("a statement parsed after outside DDL failed %d times with 0A000, want at most once", failures)
	}
}

// TestPreparedFreshParseAfterDDL: after a client's ALTER TABLE through
// the proxy, another client's first Parse of a query on that table works,
// as a fresh Parse always does on PostgreSQL. Before, it mapped to the
// statement shared on the backend from before the ALTER and failed once
// with "cached plan must not change result type" (found by the
// driver-sweep helper with postgres.js, which retries that error only for
// statements it prepared itself).
func TestPreparedFreshParseAfterDDL(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{size: 1})
	ctx := testCtx(t)
	d := e.direct(ctx)
	defer d.Close(ctx)
	if _, err := d.Exec(ctx, "DROP TABLE IF EXISTS ddl_t; CREATE TABLE ddl_t (id int, v text); INSERT INTO ddl_t VALUES (1, 'x')"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = e.direct(testCtx(t)).Exec(testCtx(t), "DROP TABLE IF EXISTS ddl_t") })
	a := e.connect(ctx)
	const q = "SELECT * FROM ddl_t WHERE id = $1"
	if _, err := a.Exec(ctx, q, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Exec(ctx, "ALTER TABLE ddl_t ADD COLUMN w int DEFAULT 5", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	b := e.connect(ctx)
	rows, err := b.Query(ctx, q, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	if !rows.Next() {
		t.Fatalf("fresh Parse after ALTER TABLE: %v", rows.Err())
	}
	if v, err := rows.Values(); err != nil || len(v) != 3 {
		t.Fatalf("fresh Parse after ALTER TABLE: %v, %v", v, err)
	}
}

// TestPreparedDeallocateAmongOtherSQL: psqlODBC deallocates a statement
// with SAVEPOINT; DEALLOCATE name; RELEASE, then prepares the name again.
// The mixed query reaches the server, which does not know the client's
// name (26000, which psqlODBC rolls back to its savepoint); the name is
// forgotten, so preparing it again works instead of failing with 42P05
// (found by the driver-sweep helper with UseServerSidePrepare=1).
func TestPreparedDeallocateAmongOtherSQL(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{size: 1})
	ctx := testCtx(t)
	c := e.connect(ctx)
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	if _, err := c.PgConn().Prepare(ctx, "_PLAN0x1", "SELECT $1::int + 1", nil); err != nil {
		t.Fatal(err)
	}
	_, _ = c.PgConn().Exec(ctx, `SAVEPOINT _per_query_svp_;DEALLOCATE "_PLAN0x1";RELEASE _per_query_svp_`).ReadAll()
	if _, err := c.PgConn().Exec(ctx, "ROLLBACK TO _per_query_svp_").ReadAll(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PgConn().Prepare(ctx, "_PLAN0x1", "SELECT $1::int + 2", nil); err != nil {
		t.Fatalf("preparing the deallocated name again: %v", err)
	}
	r := c.PgConn().ExecPrepared(ctx, "_PLAN0x1", [][]byte{[]byte("1")}, nil, nil).Read()
	if r.Err != nil || string(r.Rows[0][0]) != "3" {
		t.Fatalf("the statement prepared again: %v %q", r.Err, r.Rows)
	}
	// A DEALLOCATE after a comment is the client's too.
	if _, err := c.PgConn().Exec(ctx, `/* ORM */ DEALLOCATE "_PLAN0x1"`).ReadAll(); err != nil {
		t.Fatalf("DEALLOCATE after a comment: %v", err)
	}
	// A SQL EXECUTE of a protocol-level statement fails with 26000 (the
	// server knows it by its shared name), but the statement stays: only a
	// failed DEALLOCATE forgets it. Before, every later use failed too
	// (found by the Node driver sweep).
	_, _ = c.PgConn().Exec(ctx, "ROLLBACK").ReadAll() // frees the one backend
	c2 := e.connect(ctx)
	if _, err := c2.PgConn().Prepare(ctx, "s1", "SELECT $1::int * 10", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.PgConn().Exec(ctx, "EXECUTE s1(2)").ReadAll(); sqlState(err) != "26000" {
		t.Fatalf("SQL EXECUTE of a protocol-level statement: %v", err)
	}
	r = c2.PgConn().ExecPrepared(ctx, "s1", [][]byte{[]byte("3")}, nil, nil).Read()
	if r.Err != nil || len(r.Rows) != 1 || string(r.Rows[0][0]) != "30" {
		t.Fatalf("s1 after a failed SQL EXECUTE of it: %v %q, want 30", r.Err, r.Rows)
	}
}

// TestPreparedTempTableNotShared: a statement parsed beside a client's
// temporary table takes its types from that table, which shadows any
// other of the same name; the next client with its own temporary table of
// that name must get its own statement, as every session does on
// PostgreSQL. Before, the second client got the first one's parameter
// types (timestamptz[] for its bool[]) or "cached plan must not change
// result type" on a fresh Prepare (found by the Go-suites sweep helper
// with pgx's own tests).
func TestPreparedTempTableNotShared(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{size: 1})
	ctx := testCtx(t)
	open := func() *pgconn.PgConn {
		c, err := pgconn.Connect(ctx, e.dsn("postgres", "x", "app"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		return c
	}
	exec := func(c *pgconn.PgConn, sql string) {
		t.Helper()
		if _, err := c.Exec(ctx, sql).ReadAll(); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	const insert = "INSERT INTO tmp_shadow (v) VALUES ($1)"
	const selectAll = "SELECT * FROM tmp_shadow"
	for _, leaves := range []string{"disconnects", "drops its table and stays"} {
		a := open()
		exec(a, "CREATE TEMPORARY TABLE tmp_shadow (v timestamptz[])")
		if sd, err := a.Prepare(ctx, "a_ins", insert, nil); err != nil || len(sd.ParamOIDs) != 1 || sd.ParamOIDs[0] != 1185 {
			t.Fatalf("first client's insert: %v, %v", sd, err)
		}
		if _, err := a.Prepare(ctx, "a_sel", selectAll, nil); err != nil {
			t.Fatal(err)
		}
		if leaves == "disconnects" {
			a.Close(ctx)
		} else {
			exec(a, "DROP TABLE tmp_shadow") // unpins its backend
		}

		b := open() // the same backend: the pool has one
		exec(b, "CREATE TEMPORARY TABLE tmp_shadow (v bool[], extra text)")
		sd, err := b.Prepare(ctx, "b_ins", insert, nil)
		if err != nil || len(sd.ParamOIDs) != 1 || sd.ParamOIDs[0] != 1000 {
			t.Fatalf("first client %s: the second's insert has %v, %v; want bool[] (1000)", leaves, sd, err)
		}
		if r := b.ExecPrepared(ctx, "b_ins", [][]byte{[]byte("{t,f}")}, nil, nil).Read(); r.Err != nil {
			t.Fatalf("first client %s: the second's insert: %v", leaves, r.Err)
		}
		sd, err = b.Prepare(ctx, "b_sel", selectAll, nil)
		if err != nil || len(sd.Fields) != 2 {
			t.Fatalf("first client %s: the second's SELECT *: %v, %v; want its own two columns", leaves, sd, err)
		}
		b.Close(ctx)
		if leaves != "disconnects" {
			a.Close(ctx)
		}
	}
}

// TestPreparedFreshParseAfterDOBlockDDL: DDL run inside a DO block (as
// migrations do) renews the shared statements like plain DDL: a later
// client's fresh Parse gets the new column type, not the old statement's
// parameter types (found by the Go-suites sweep helper).
func TestPreparedFreshParseAfterDOBlockDDL(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{size: 1})
	ctx := testCtx(t)
	d := e.direct(ctx)
	if _, err := d.Exec(ctx, "DROP TABLE IF EXISTS do_ddl; CREATE TABLE do_ddl (x int)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = e.direct(testCtx(t)).Exec(testCtx(t), "DROP TABLE IF EXISTS do_ddl") })
	const insert = "INSERT INTO do_ddl (x) VALUES ($1)"
	a, err := pgconn.Connect(ctx, e.dsn("postgres", "x", "app"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(ctx)
	if sd, err := a.Prepare(ctx, "before", insert, nil); err != nil || sd.ParamOIDs[0] != 23 {
		t.Fatalf("before: %v, %v", sd, err)
	}
	if _, err := a.Exec(ctx, "DO $$BEGIN EXECUTE 'ALTER TABLE do_ddl ALTER x TYPE bool USING x <> 0'; END$$").ReadAll(); err != nil {
		t.Fatal(err)
	}
	b, err := pgconn.Connect(ctx, e.dsn("postgres", "x", "app"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(ctx)
	sd, err := b.Prepare(ctx, "after", insert, nil)
	if err != nil || len(sd.ParamOIDs) != 1 || sd.ParamOIDs[0] != 16 {
		t.Fatalf("fresh Parse after DDL in a DO block: %v, %v; want bool (16)", sd, err)
	}
	if r := b.ExecPrepared(ctx, "after", [][]byte{[]byte("true")}, nil, nil).Read(); r.Err != nil {
		t.Fatal(r.Err)
	}
}

// TestPreparedDeallocateQuotedNames: SQL DEALLOCATE of a protocol-level
// statement whose name needs quotes (ecpg deallocates "include_ _name"
// before preparing it again), or followed by a comment, removes the
// client's statement as on PostgreSQL. Before, it reached the server with
// the client's name and failed with 26000, aborting the transaction
// (found by the sweep helper with ecpg's sql/prepareas test).
func TestPreparedDeallocateQuotedNames(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{size: 1})
	ctx := testCtx(t)
	c, err := pgconn.Connect(ctx, e.dsn("postgres", "x", "app"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	exec := func(sql string) error {
		_, err := c.Exec(ctx, sql).ReadAll()
		return err
	}
	if err := exec("BEGIN"); err != nil {
		t.Fatal(err)
	}
	for name, dealloc := range map[string]string{
		"include_ _name": `deallocate "include_ _name"`,
		"Mixed Case":     `DEALLOCATE PREPARE "Mixed Case"`,
		"s7":             "DEALLOCATE s7 -- the end",
		"semi;colon":     `/* ; */ DEALLOCATE "semi;colon";`,
	} {
		if _, err := c.Prepare(ctx, name, "SELECT 1", nil); err != nil {
			t.Fatalf("prepare %q: %v", name, err)
		}
		if err := exec(dealloc); err != nil {
			t.Fatalf("%s: %v", dealloc, err)
		}
		if _, err := c.Prepare(ctx, name, "SELECT 2", nil); err != nil {
			t.Fatalf("prepare %q again after %s: %v", name, dealloc, err)
		}
		if r := c.ExecPrepared(ctx, name, nil, nil, nil).Read(); r.Err != nil || string(r.Rows[0][0]) != "2" {
			t.Fatalf("%q after re-prepare: %v %q", name, r.Err, r.Rows)
		}
	}
	if err := exec("COMMIT"); err != nil {
		t.Fatalf("the transaction did not survive the DEALLOCATEs: %v", err)
	}
}

// TestPreparedAfterDDLRolledBackByDisconnect: a client creates a type
// and a table in a transaction, runs a prepared INSERT over them and
// leaves without committing (psycopg's test_prepared, found by the psycopg
// sweep). The next client on that backend runs the same DDL and the same
// text: it must get a statement of its own objects, not the shared one
// naming the rolled-back type ("cache lookup failed for type", XX000).
func TestPreparedAfterDDLRolledBackByDisconnect(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{size: 1})
	ctx := testCtx(t)
	const insert = "INSERT INTO prep_rolled (bar) VALUES ($1::prep_rolled_enum[])"
	for _, client := range []string{"A", "B"} {
		c := e.connect(ctx)
		tx, err := c.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "CREATE TYPE prep_rolled_enum AS ENUM ('foo', 'bar'); CREATE TABLE prep_rolled (bar prep_rolled_enum[])"); err != nil {
			t.Fatalf("%s: %v", client, err)
		}
		if _, err := tx.Exec(ctx, insert, []string{"foo"}); err != nil {
			t.Fatalf("client %s: %v", client, err)
		}
		if err := c.Close(ctx); err != nil { // inside the transaction: rolled back
			t.Fatal(err)
		}
	}
}

// TestPreparedShapeCheckedOnAnotherBackend: a client that described its
// statement decodes later executions with that description. When a table
// it reads changes shape and the client's next execution lands on a
// backend that lacks the statement, the statement is not silently
// prepared afresh (rows in the new shape under the old description: wrong
// values, postgres.js's RangeError) but fails with 0A000 as on
// PostgreSQL; the client's re-prepare then works. A table recreated with
// the same columns is no change, and a table that is gone gives the
// server's own error, also inside a transaction block.
func TestPreparedShapeCheckedOnAnotherBackend(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{size: 2})
	ctx := testCtx(t)
	d := e.direct(ctx)
	setup := func(sql string) { t.Helper(); mustExec(ctx, t, d, sql) }
	setup(`DROP TABLE IF EXISTS shape_changed, shape_same, shape_gone;
		CREATE TABLE shape_changed (x int, y int, z int); INSERT INTO shape_changed VALUES (1, 2, 3);
		CREATE TABLE shape_same (v int); INSERT INTO shape_same VALUES (7);
		CREATE TABLE shape_gone (v int);
		GRANT ALL ON shape_changed, shape_same, shape_gone TO PUBLIC`)
	t.Cleanup(func() {
		_, _ = e.direct(context.Background()).Exec(context.Background(), "DROP TABLE IF EXISTS shape_changed, shape_same, shape_gone")
	})
	a := e.connect(ctx) // pgx's statement cache: prepared and described once
	var x, y, z, v int
	if err := a.QueryRow(ctx, "SELECT * FROM shape_changed").Scan(&x, &y, &z); err != nil || x+y+z != 6 {
		t.Fatalf("before: %d %d %d, %v", x, y, z, err)
	}
	if err := a.QueryRow(ctx, "SELECT * FROM shape_same").Scan(&v); err != nil || v != 7 {
		t.Fatalf("before: %d, %v", v, err)
	}
	if _, err := a.Exec(ctx, "SELECT * FROM shape_gone"); err != nil {
		t.Fatal(err)
	}
	setup(`DROP TABLE shape_changed; CREATE TABLE shape_changed (a int, b bool); INSERT INTO shape_changed VALUES (2, true);
		DROP TABLE shape_same; CREATE TABLE shape_same (v int); INSERT INTO shape_same VALUES (8);
		DROP TABLE shape_gone;
		GRANT ALL ON shape_changed, shape_same TO PUBLIC`)
	// a's next transactions run on a backend that lacks its statements.
	leaveBackend(ctx, t, d, a)
	if err := a.QueryRow(ctx, "SELECT * FROM shape_same").Scan(&v); err != nil || v != 8 {
		t.Fatalf("same columns, new table: %d, %v; want 8", v, err)
	}
	var n int
	var b bool
	err := a.QueryRow(ctx, "SELECT * FROM shape_changed").Scan(&x, &y, &z)
	if sqlState(err) != "0A000" || !strings.Contains(err.Error(), "cached plan must not change result type") {
		t.Fatalf("statement whose table changed shape: %v; want 0A000 as on PostgreSQL", err)
	}
	if err := a.QueryRow(ctx, "SELECT * FROM shape_changed").Scan(&n, &b); err != nil || n != 2 || !b {
		t.Fatalf("after pgx's re-prepare: %d %v, %v; want 2 true", n, b, err)
	}
	tx, err := a.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT * FROM shape_gone"); sqlState(err) != "42P01" {
		t.Fatalf("statement whose table is gone, in a transaction: %v; want 42P01", err)
	}
	if _, err := tx.Exec(ctx, "SELECT 1"); sqlState(err) != "25P02" {
		t.Fatalf("after the failed statement: %v; want 25P02 (the transaction is aborted)", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.QueryRow(ctx, "SELECT * FROM shape_same").Scan(&v); err != nil || v != 8 {
		t.Fatalf("after the rollback: %d, %v", v, err)
	}
}

// TestPreparedShapeCheckedOnSharedStatement: after a table changed shape
// (DDL run directly, which pgrecycle does not see), another client
// prepares the same text on another backend and gets the new shape. A
// client that described the statement before the change and lands on
// that backend gets 0A000, as on PostgreSQL, not rows of the new shape
// under its old description.
func TestPreparedShapeCheckedOnSharedStatement(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{size: 2})
	ctx := testCtx(t)
	d := e.direct(ctx)
	setup := func(sql string) { t.Helper(); mustExec(ctx, t, d, sql) }
	setup(`DROP TABLE IF EXISTS shape_shared; CREATE TABLE shape_shared (x int, y int, z int);
		INSERT INTO shape_shared VALUES (1, 2, 3); GRANT ALL ON shape_shared TO PUBLIC`)
	t.Cleanup(func() {
		_, _ = e.direct(context.Background()).Exec(context.Background(), "DROP TABLE IF EXISTS shape_shared")
	})
	const query = "SELECT * FROM shape_shared"
	old := e.connect(ctx)
	var x, y, z, n int
	var b bool
	if err := old.QueryRow(ctx, query).Scan(&x, &y, &z); err != nil {
		t.Fatal(err)
	}
	setup(`DROP TABLE shape_shared; CREATE TABLE shape_shared (a int, b bool);
		INSERT INTO shape_shared VALUES (2, true); GRANT ALL ON shape_shared TO PUBLIC`)
	// old holds its backend in a transaction; a new client prepares the
	// same text on the other one.
	tx, oldPID := beginOnBackend(ctx, t, old)
	fresh := e.connect(ctx)
	if err := fresh.QueryRow(ctx, query).Scan(&n, &b); err != nil || n != 2 || !b {
		t.Fatalf("new client after the change: %d %v, %v", n, b, err)
	}
	freshPID, err := pidOf(ctx, fresh)
	if err != nil || uint32(freshPID) == uint32(oldPID) {
		t.Fatalf("new client on backend %d, %v; want another than %d", freshPID, err, oldPID)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	// old's backend goes away: old's next transactions run on fresh's.
	if _, pid := leaveBackend(ctx, t, d, old); pid != freshPID {
		t.Skipf("old client landed on a new backend %d, not the shared one %d", pid, freshPID)
	}
	err = old.QueryRow(ctx, query).Scan(&x, &y, &z)
	if sqlState(err) != "0A000" {
		t.Fatalf("old client's statement on the backend where it has the new shape: %v; want 0A000", err)
	}
	if err := old.QueryRow(ctx, query).Scan(&n, &b); err != nil || n != 2 || !b {
		t.Fatalf("after the re-prepare: %d %v, %v; want 2 true", n, b, err)
	}
}

// TestQuerySkippedAfterExtendedError: after an error in an extended-protocol
// message the server skips everything up to the next Sync, a simple Query
// sent before that Sync included, which then gets no ReadyForQuery
// (pgjdbc's autosave: Bind, Execute, then SAVEPOINT as a simple query,
// then the next statement and its Sync). The proxy waited for that
// ReadyForQuery and stopped reading the client for good (pgjdbc's
// AutoRollbackTestSuite hung).
func TestQuerySkippedAfterExtendedError(t *testing.T) {
	leakCheck(t)
	// With statement mapping, and without (which pgjdbc users pair with
	// prepareThreshold=0): the skip is tracked either way.
	forStatementMapping(t, querySkippedAfterExtendedError)
}

func querySkippedAfterExtendedError(t *testing.T, e *env) {
	// In one write, and with the Sync in a later one, as pgjdbc's
	// autosave sends them: the server waits for that Sync.
	for _, split := range []bool{false, true} {
		fe, c := e.rawFrontend(t)
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		fe.Send(&pgproto3.Bind{PreparedStatement: "never_prepared"})
		fe.Send(&pgproto3.Execute{})
		fe.Send(&pgproto3.Query{String: "SAVEPOINT skipped"})
		if split {
			if err := fe.Flush(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		fe.Send(&pgproto3.Parse{Query: "SELECT 1"})
		fe.Send(&pgproto3.Bind{})
		fe.Send(&pgproto3.Execute{})
		fe.Send(&pgproto3.Sync{})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		m, err := fe.Receive()
		if er, ok := m.(*pgproto3.ErrorResponse); err != nil || !ok || er.Code != "26000" {
			t.Fatalf("split %v: first reply %#v, %v; want the Bind's 26000", split, m, err)
		}
		if m, err := fe.Receive(); err != nil {
			t.Fatalf("split %v: no ReadyForQuery after the skipped batch: %v", split, err)
		} else if _, ok := m.(*pgproto3.ReadyForQuery); !ok {
			t.Fatalf("split %v: after the error: %#v, want ReadyForQuery (the rest up to Sync is skipped)", split, m)
		}
		// The session goes on, on a released backend.
		fe.Send(&pgproto3.Query{String: "SELECT 2"})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		got := expectUntilReady(t, fe)
		if !strings.Contains(strings.Join(got, " "), "DataRow") {
			t.Fatalf("split %v: next query after the skipped batch: %v", split, got)
		}
		d := e.connect(testCtx(t))
		var n int
		// Simple protocol: without statement mapping a named statement
		// would stay on the pool's one backend for the next round.
		if err := d.QueryRow(testCtx(t), "SELECT 3", pgx.QueryExecModeSimpleProtocol).Scan(&n); err != nil || n != 3 {
			t.Fatalf("split %v: another client on the pool of one: %d, %v", split, n, err)
		}
		c.Close()
	}
}

// TestPreparedDeallocateAllInStream: DEALLOCATE ALL and DISCARD ALL sent
// with the extended protocol, with Parses after them in the same stream
// (found with the spqr/Odyssey protocol tests). DEALLOCATE ALL now acts on
// the client's statements, as the simple-query one does; a DISCARD ALL the
// server runs forgets only the statements parsed before it. Before, the
// backend's record lost the statements parsed after it, which the server
// had: every later client parsing the same text there got 42P05 until the
// backend retired.
func TestPreparedDeallocateAllInStream(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{size: 1})
	// replies sends msgs and returns the reply types (error codes for
	// ErrorResponse, tags for CommandComplete) through n ReadyForQuery.
	replies := func(fe *pgproto3.Frontend, n int, msgs ...pgproto3.FrontendMessage) string {
		t.Helper()
		for _, m := range msgs {
			fe.Send(m)
		}
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		var got []string
		for n > 0 {
			m, err := fe.Receive()
			if err != nil {
				t.Fatalf("after %v: %v", got, err)
			}
			switch m := m.(type) {
			case *pgproto3.ErrorResponse:
				got = append(got, "E"+m.Code)
			case *pgproto3.CommandComplete:
				got = append(got, "C:"+string(m.CommandTag))
			case *pgproto3.DataRow:
				got = append(got, "D:"+string(m.Values[0]))
			case *pgproto3.ReadyForQuery:
				got = append(got, "Z")
				n--
			default:
				got = append(got, strings.TrimPrefix(fmt.Sprintf("%T", m), "*pgproto3."))
			}
		}
		return strings.Join(got, " ")
	}
	execute := func(stmt string) []pgproto3.FrontendMessage {
		return []pgproto3.FrontendMessage{&pgproto3.Bind{PreparedStatement: stmt}, &pgproto3.Execute{}}
	}
	msgs := func(parts ...[]pgproto3.FrontendMessage) []pgproto3.FrontendMessage {
		var all []pgproto3.FrontendMessage
		for _, p := range parts {
			all = append(all, p...)
		}
		return all
	}
	parse := func(name, query string) []pgproto3.FrontendMessage {
		return []pgproto3.FrontendMessage{&pgproto3.Parse{Name: name, Query: query}}
	}
	sync := []pgproto3.FrontendMessage{&pgproto3.Sync{}}
	check := func(what, got, want string) {
		t.Helper()
		if got != want {
			t.Errorf("%s:\n got %s\nwant %s", what, got, want)
		}
	}

	a, ca := e.rawFrontend(t)
	defer ca.Close()
	check("DEALLOCATE ALL, then a Parse, in one batch",
		replies(a, 1, msgs(parse("r", "DEALLOCATE ALL"), execute("r"), parse("x", "SELECT 4242"), execute("x"), sync)...),
		"ParseComplete BindComplete C:DEALLOCATE ALL ParseComplete BindComplete D:4242 C:SELECT 1 Z")
	check("the statement parsed after it", replies(a, 1, msgs(execute("x"), sync)...), "BindComplete D:4242 C:SELECT 1 Z")
	check("the DEALLOCATE ALL statement itself", replies(a, 1, msgs(execute("r"), sync)...), "E26000 Z")
	b, cb := e.rawFrontend(t) // the pool's one backend
	defer cb.Close()
	check("another client parsing the same text",
		replies(b, 1, msgs(parse("y", "SELECT 4242"), execute("y"), sync)...),
		"ParseComplete BindComplete D:4242 C:SELECT 1 Z")

	check("DISCARD ALL, then a Parse, in one batch",
		replies(a, 1, msgs(parse("", "DISCARD ALL"), execute(""), parse("z", "SELECT 4343"), execute("z"), sync)...),
		"ParseComplete BindComplete C:DISCARD ALL ParseComplete BindComplete D:4343 C:SELECT 1 Z")
	check("the statement parsed after DISCARD ALL", replies(a, 1, msgs(execute("z"), sync)...), "BindComplete D:4343 C:SELECT 1 Z")
	check("a statement parsed before DISCARD ALL", replies(a, 1, msgs(execute("x"), sync)...), "E26000 Z")
	check("another client parsing the text after DISCARD ALL",
		replies(b, 1, msgs(parse("w", "SELECT 4343"), execute("w"), sync)...),
		"ParseComplete BindComplete D:4343 C:SELECT 1 Z")

	c, cc := e.rawFrontend(t)
	defer cc.Close()
	check("a statement deallocated earlier in the pipeline",
		replies(c, 2, msgs(parse("remover", "DEALLOCATE ALL"), parse("pstmt", "SELECT 42"), execute("pstmt"),
			execute("remover"), sync, execute("pstmt"), sync)...),
		"ParseComplete ParseComplete BindComplete D:42 C:SELECT 1 BindComplete C:DEALLOCATE ALL Z E26000 Z")
}

// TestPreparedReparseAfterDDLInTransaction: a statement parsed again after
// an ALTER TABLE in the same transaction is a fresh one, as on PostgreSQL
// (Rails' query cache test after a migration). Before, the new Parse got
// the shared statement prepared before the ALTER, and its execution failed
// with 0A000 "cached plan must not change result type" in a transaction
// the client could not retry.
func TestPreparedReparseAfterDDLInTransaction(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{size: 1})
	ctx := testCtx(t)
	table := uniqueName("reparse")
	dropTable(t, e, table)
	d := e.direct(ctx)
	if _, err := d.Exec(ctx, "CREATE TABLE "+table+" (id int, title varchar(40)); INSERT INTO "+table+" VALUES (1, 'a')"); err != nil {
		t.Fatal(err)
	}
	c := e.connect(ctx).PgConn()
	query := "SELECT * FROM " + table + " WHERE id = $1"
	run := func(name string) *pgconn.Result {
		if _, err := c.Prepare(ctx, name, query, nil); err != nil {
			t.Fatalf("Prepare %s: %v", name, err)
		}
		return c.ExecPrepared(ctx, name, [][]byte{[]byte("1")}, nil, nil).Read()
	}
	// Prepared before the transaction, then again inside it after the DDL.
	if r := run("before"); r.Err != nil {
		t.Fatal(r.Err)
	}
	if err := c.Exec(ctx, "BEGIN").Close(); err != nil {
		t.Fatal(err)
	}
	if r := run("in_tx"); r.Err != nil {
		t.Fatal(r.Err)
	}
	if err := c.Exec(ctx, "ALTER TABLE "+table+" ALTER COLUMN title TYPE varchar(80)").Close(); err != nil {
		t.Fatal(err)
	}
	r := run("after_alter")
	if r.Err != nil || len(r.Rows) != 1 || len(r.FieldDescriptions) != 2 {
		t.Fatalf("fresh Parse after ALTER TABLE in the transaction: %v, %d rows", r.Err, len(r.Rows))
	}
	if err := c.Exec(ctx, "COMMIT").Close(); err != nil {
		t.Fatal(err)
	}
	if r := run("after_commit"); r.Err != nil {
		t.Fatalf("after COMMIT: %v", r.Err)
	}
}
