package integration

// asyncpg through the proxy, in both pooling modes. asyncpg prepares every
// statement under its own name and caches it, so in transaction pooling
// this exercises the prepared-statement mapping with a real driver's
// traffic: type introspection, cursors, COPY, its own connection pool.

import (
	"fmt"
	"testing"
)

const asyncpgScript = `
import asyncio, json, sys
import asyncpg

cfg = json.loads(sys.argv[1])
dsn, table, pool_max = cfg["dsn"], cfg["table"], cfg["pool_max"]
out = {"errors": []}

async def step(name, f):
    try:
        out[name] = await f()
    except Exception as e:
        out["errors"].append("%s: %s: %s" % (name, type(e).__name__, e))

async def main():
    conns = [await asyncpg.connect(dsn) for _ in range(3)]
    c = conns[0]

    async def cached():
        total = 0
        for i in range(20):
            for k in conns:
                total += await k.fetchval("SELECT $1::int + 1", i)
        return total
    await step("cached", cached)

    # Without a statement cache (the setting recommended behind
    # PgBouncer), asyncpg describes the unnamed statement in one round
    # trip and binds it in the next: concurrent clients interleave there.
    async def uncached():
        ks = [await asyncpg.connect(dsn, statement_cache_size=0) for _ in range(4)]
        async def run(i, k):
            ok = 0
            for n in range(50):
                if await k.fetchval("SELECT $1::text || ' %d'" % i, str(n)) == "%d %d" % (n, i):
                    ok += 1
            return ok
        try:
            return sum(await asyncio.gather(*(run(i, k) for i, k in enumerate(ks))))
        finally:
            for k in ks:
                await k.close()
    if cfg["mode"] == "transaction":  # session pooling has no backend left for 4 more
        await step("uncached", uncached)

    async def prepared():
        stmt = await c.prepare("SELECT $1::text || '!'")
        return [await stmt.fetchval("v%d" % i) for i in range(3)]
    await step("prepared", prepared)

    # An enum is not built in: asyncpg introspects it with its own query.
    await step("enum", lambda: c.fetchval("SELECT 'sad'::" + table + "_mood"))

    async def batch():
        async with c.transaction():
            await c.executemany("INSERT INTO " + table + " (id, v) VALUES ($1, $2)", [(i, "r%d" % i) for i in range(1, 101)])
            return await c.fetchval("SELECT count(*) FROM " + table)
    await step("batch", batch)

    async def cursor():
        async with c.transaction():
            cur = await c.cursor("SELECT g FROM generate_series(1, 1000) g")
            first = [r[0] for r in await cur.fetch(10)]
            n = 0
            async for r in c.cursor("SELECT g FROM generate_series(1, 300) g", prefetch=50):
                n += r[0]
            return {"first": first, "sum": n}
    await step("cursor", cursor)

    async def copy():
        await c.copy_records_to_table(table + "_copy", records=[(i, "c%d" % i) for i in range(1, 501)])
        return await c.fetchval("SELECT sum(id) FROM " + table + "_copy")
    await step("copy", copy)

    async def error():
        try:
            await c.fetchval("SELECT 1/0")
            return {"sqlstate": None}
        except asyncpg.PostgresError as e:
            state = e.sqlstate
        return {"sqlstate": state, "after": await c.fetchval("SELECT 'ok'")}
    await step("error", error)

    for k in conns[1:]:
        await k.close()

    async def pooled():
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=pool_max)
        async def work(i):
            async with pool.acquire() as pc:
                return await pc.fetchval("SELECT $1::int * 2", i)
        res = await asyncio.gather(*[work(i) for i in range(200)])
        await pool.close()
        return sum(1 for i, v in enumerate(res) if v == 2 * i)
    await step("pooled", pooled)

    await c.close()

asyncio.run(main())
print(json.dumps(out))
`

type asyncpgResult struct {
	Errors   []string
	Cached   int
	Prepared []string
	Enum     string
	Batch    int
	Cursor   struct {
		First []int
		Sum   int
	}
	Copy  int
	Error struct {
		SQLState string
		After    string
	}
	Pooled   int
	Uncached int
}

func TestAsyncpg(t *testing.T) {
	leakCheck(t)
	py := requirePythonModule(t, "asyncpg", "python3-asyncpg")
	script := writeProgram(t, "asyncpg_check.py", asyncpgScript)
	forModes(t, proxyOpts{size: 3}, func(t *testing.T, e *env, mode string) {
		ctx := testCtx(t)
		table := uniqueName("apg")
		dropTable(t, e, table)
		dropTable(t, e, table+"_copy")
		d := e.direct(ctx)
		if _, err := d.Exec(ctx, "DROP TYPE IF EXISTS "+table+"_mood; CREATE TYPE "+table+"_mood AS ENUM ('happy', 'sad'); "+
			"CREATE TABLE "+table+" (id int PRIMARY KEY, v text); CREATE TABLE "+table+"_copy (id int, v text)"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _, _ = e.direct(testCtx(t)).Exec(testCtx(t), "DROP TYPE IF EXISTS "+table+"_mood") })
		// Session pooling gives each client its own backend for life, so
		// asyncpg's pool may only open as many as the proxy's pool holds
		// (beside the one connection still open); transaction pooling
		// multiplexes 8 onto 3.
		poolMax := 8
		if mode == "session" {
			poolMax = 2
		}
		var r asyncpgResult
		runScriptJSON(ctx, t, py, script, map[string]any{
			"dsn":      fmt.Sprintf("postgresql://postgres@%s:%d/app?sslmode=disable", e.host, e.port),
			"table":    table,
			"pool_max": poolMax,
			"mode":     mode,
		}, &r)
		for _, e := range r.Errors {
			t.Errorf("asyncpg: %s", e)
		}
		if mode == "transaction" && r.Uncached != 200 {
			t.Errorf("statement_cache_size=0: %d of 200 results right", r.Uncached)
		}
		if want := 3 * 210; r.Cached != want { // 3 connections × Σ(i+1), i < 20
			t.Errorf("cached statements over 3 connections: sum %d, want %d", r.Cached, want)
		}
		if len(r.Prepared) != 3 || r.Prepared[0] != "v0!" || r.Prepared[2] != "v2!" {
			t.Errorf("explicitly prepared statement: %v", r.Prepared)
		}
		if r.Enum != "sad" {
			t.Errorf("enum through introspection: %q", r.Enum)
		}
		if r.Batch != 100 {
			t.Errorf("executemany in a transaction: %d rows", r.Batch)
		}
		if len(r.Cursor.First) != 10 || r.Cursor.First[0] != 1 || r.Cursor.First[9] != 10 || r.Cursor.Sum != 300*301/2 {
			t.Errorf("cursors: %+v", r.Cursor)
		}
		if r.Copy != 500*501/2 {
			t.Errorf("copy_records_to_table: sum %d", r.Copy)
		}
		if r.Error.SQLState != "22012" || r.Error.After != "ok" {
			t.Errorf("error handling: %+v", r.Error)
		}
		if r.Pooled != 200 {
			t.Errorf("asyncpg pool: %d of 200 right answers", r.Pooled)
		}
	})
}
