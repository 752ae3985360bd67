package integration

// psycopg 3 through the proxy, in both pooling modes. A Python script
// does the work and prints JSON that the test checks.

import (
	"strconv"
	"testing"
)

const psycopgScript = `
import json, sys
import psycopg

cfg = json.loads(sys.argv[1])
dsn, table, mode = cfg["dsn"], cfg["table"], cfg["mode"]
# Transaction pooling: no server-side prepared statements here (see
# prepared_test.go). Session pooling: psycopg's default, which prepares
# after 5 executions.
kw = {"prepare_threshold": None} if mode == "transaction" else {}
out = {"errors": []}

def step(name, f):
    try:
        out[name] = f()
    except Exception as e:
        out["errors"].append("%s: %s: %s" % (name, type(e).__name__, e))

conn = psycopg.connect(dsn, autocommit=True, **kw)
other = psycopg.connect(dsn, autocommit=True, **kw)

step("simple", lambda: conn.execute("SELECT 1 + 1").fetchone()[0])
step("app_name", lambda: conn.execute("SHOW application_name").fetchone()[0])

def params():
    res = []
    for i in range(10):
        res.append(list(conn.execute("SELECT %s::int * 2, %s::text || '!'", (i, "v%d" % i)).fetchone()))
    return res
step("params", params)

def transactions():
    with conn.transaction():
        conn.execute("INSERT INTO " + table + " (id) VALUES (%s), (%s)", (1, 2))
    try:
        with conn.transaction():
            conn.execute("INSERT INTO " + table + " (id) VALUES (%s)", (3,))
            raise psycopg.Rollback()
    except psycopg.Rollback:
        pass
    nac = psycopg.connect(dsn, autocommit=False, **kw)
    nac.execute("INSERT INTO " + table + " (id) VALUES (%s)", (4,))
    seen_inside = other.execute("SELECT count(*) FROM " + table + " WHERE id = 4").fetchone()[0]
    nac.rollback()
    nac.execute("INSERT INTO " + table + " (id) VALUES (%s)", (5,))
    nac.commit()
    nac.close()
    ids = [r[0] for r in other.execute("SELECT id FROM " + table + " ORDER BY id").fetchall()]
    return {"ids": ids, "uncommitted_seen_by_other": seen_inside}
step("transactions", transactions)

def copy():
    cur = conn.cursor()
    with cur.copy("COPY " + table + "_copy (id, v) FROM STDIN") as cp:
        for i in range(1, 20001):
            cp.write_row((i, "row%d" % i))
    count, total = conn.execute("SELECT count(*), sum(id) FROM " + table + "_copy").fetchone()
    n, bad = 0, 0
    with cur.copy("COPY " + table + "_copy (id, v) TO STDOUT") as cp:
        for row in cp.rows():
            n += 1
            if row[1] != "row" + row[0]:
                bad += 1
    return {"count": count, "sum": int(total), "copied_out": n, "bad": bad}
step("copy", copy)

def notices():
    got = []
    conn.add_notice_handler(lambda d: got.append([d.severity, d.message_primary]))
    conn.execute("DO $$BEGIN RAISE NOTICE 'psycopg notice %', 5; END$$")
    return got
step("notices", notices)

def error_then_query():
    try:
        conn.execute("SELECT 1/0")
        return {"sqlstate": None}
    except psycopg.Error as e:
        state = e.sqlstate
    return {"sqlstate": state, "after": conn.execute("SELECT 'ok'").fetchone()[0]}
step("error", error_then_query)

def pipeline():
    with conn.pipeline() as p:
        curs = [conn.execute("SELECT %s::int", (i,)) for i in range(20)]
        p.sync()
        total = sum(c.fetchone()[0] for c in curs)
    state = None
    try:
        with conn.pipeline():
            conn.execute("SELECT 1")
            conn.execute("SELECT 1/0")
            conn.execute("SELECT 2")
    except psycopg.Error as e:
        state = e.sqlstate
    return {"sum": total, "sqlstate": state, "after": conn.execute("SELECT 'ok'").fetchone()[0]}
step("pipeline", pipeline)

step("big", lambda: len(conn.execute("SELECT repeat('y', 3000000)").fetchone()[0]))

def parked():
    import time
    time.sleep(0.5)  # longer than the test's client_park_after: both connections park
    return conn.execute("SELECT %s::int", (41,)).fetchone()[0] + other.execute("SELECT 1").fetchone()[0]

step("parked", parked)

conn.close()
other.close()

print(json.dumps(out))
`

type psycopgResult struct {
	Errors       []string
	Simple       int
	AppName      string `json:"app_name"`
	Params       [][]any
	Transactions struct {
		IDs      []int `json:"ids"`
		SeenByUs int   `json:"uncommitted_seen_by_other"`
	}
	Copy struct {
		Count, Sum int64
		CopiedOut  int64 `json:"copied_out"`
		Bad        int
	}
	Notices [][]string
	Error   struct {
		SQLState string
		After    string
	}
	Pipeline struct {
		Sum      int
		SQLState string
		After    string
	}
	Big    int
	Parked int
}

func TestPsycopg(t *testing.T) {
	leakCheck(t)
	py := requirePsycopg(t)
	script := writeProgram(t, "psycopg_check.py", psycopgScript)
	forModes(t, proxyOpts{size: 3, listenExtra: `client_park_after = "100ms"`}, func(t *testing.T, e *env, mode string) {
		ctx := testCtx(t)
		table := uniqueName("psy")
		dropTable(t, e, table)
		dropTable(t, e, table+"_copy")
		d := e.direct(ctx)
		if _, err := d.Exec(ctx, "CREATE TABLE "+table+" (id int PRIMARY KEY); CREATE TABLE "+table+"_copy (id int, v text)"); err != nil {
			t.Fatal(err)
		}
		var r psycopgResult
		runScriptJSON(ctx, t, py, script, map[string]string{
			"dsn":   e.kv("postgres", "app") + " application_name=psy",
			"table": table,
			"mode":  mode,
		}, &r)
		for _, e := range r.Errors {
			t.Errorf("psycopg: %s", e)
		}
		if r.Parked != 42 {
			t.Errorf("queries after idling past client_park_after: sum %d, want 42", r.Parked)
		}
		if r.Simple != 2 {
			t.Errorf("SELECT 1 + 1 = %d", r.Simple)
		}
		if r.AppName != "psy" {
			t.Errorf("application_name %q", r.AppName)
		}
		if len(r.Params) != 10 {
			t.Errorf("parameterised results: %v", r.Params)
		} else {
			for i, row := range r.Params {
				if len(row) != 2 || row[0] != float64(2*i) || row[1] != "v"+strconv.Itoa(i)+"!" {
					t.Errorf("parameterised query %d: %v", i, row)
				}
			}
		}
		if got := r.Transactions.IDs; len(got) != 3 || got[0] != 1 || got[1] != 2 || got[2] != 5 {
			t.Errorf("committed ids %v, want [1 2 5] (3 and 4 rolled back)", got)
		}
		if r.Transactions.SeenByUs != 0 {
			t.Errorf("another connection saw an uncommitted row")
		}
		if r.Copy.Count != 20000 || r.Copy.Sum != 200010000 || r.Copy.CopiedOut != 20000 || r.Copy.Bad != 0 {
			t.Errorf("COPY: %+v", r.Copy)
		}
		if len(r.Notices) != 1 || r.Notices[0][0] != "NOTICE" || r.Notices[0][1] != "psycopg notice 5" {
			t.Errorf("notices %v", r.Notices)
		}
		if r.Error.SQLState != "22012" || r.Error.After != "ok" {
			t.Errorf("error handling: %+v", r.Error)
		}
		if r.Pipeline.Sum != 190 || r.Pipeline.SQLState != "22012" || r.Pipeline.After != "ok" {
			t.Errorf("pipeline mode: %+v (want the sum of 0..19 = 190, then 22012, then ok)", r.Pipeline)
		}
		if r.Big != 3_000_000 {
			t.Errorf("big value of %d bytes", r.Big)
		}
		var n int
		if err := d.QueryRow(ctx, "SELECT count(*) FROM "+table+"_copy").Scan(&n); err != nil || n != 20000 {
			t.Errorf("copied rows seen directly: %d %v", n, err)
		}
	})
}
