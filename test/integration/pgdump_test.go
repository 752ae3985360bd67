package integration

// pg_dump and pg_restore through the proxy, in parallel (-j), which
// synchronizes its workers' snapshots with pg_export_snapshot and SET
// TRANSACTION SNAPSHOT: operators point them at the pooler's address too.

import (
	"fmt"
	"path/filepath"
	"testing"
)

func TestPgDumpRestoreParallel(t *testing.T) {
	leakCheck(t)
	dump := requireTool(t, "pg_dump")
	restore := requireTool(t, "pg_restore")
	forModes(t, proxyOpts{size: 4}, func(t *testing.T, e *env, mode string) {
		ctx := testCtx(t)
		d := e.direct(ctx)
		src, dst := uniqueName("dump_src"), uniqueName("dump_dst")
		t.Cleanup(func() {
			_, _ = e.direct(testCtx(t)).Exec(testCtx(t), fmt.Sprintf("DROP SCHEMA IF EXISTS %s, %s CASCADE", src, dst))
		})
		setup := fmt.Sprintf(`CREATE SCHEMA %[1]s;
CREATE TABLE %[1]s.parent (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE %[1]s.child (id bigserial PRIMARY KEY, parent_id int REFERENCES %[1]s.parent, payload jsonb, at timestamptz);
CREATE TABLE %[1]s.wide AS SELECT g AS id, md5(g::text) AS h, g * 1.5 AS f FROM generate_series(1, 30000) g;
CREATE INDEX ON %[1]s.wide (h);
INSERT INTO %[1]s.parent SELECT g, 'p' || g FROM generate_series(1, 500) g;
INSERT INTO %[1]s.child (parent_id, payload, at) SELECT 1 + g %% 500, jsonb_build_object('g', g), '2026-01-01'::timestamptz + g * interval '1 minute' FROM generate_series(1, 20000) g;
CREATE VIEW %[1]s.totals AS SELECT parent_id, count(*) AS n FROM %[1]s.child GROUP BY parent_id;
CREATE FUNCTION %[1]s.double(x int) RETURNS int LANGUAGE sql AS 'SELECT x * 2';`, src)
		if _, err := d.Exec(ctx, setup); err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(t.TempDir(), "dump")
		dsn := e.kv("postgres", "app")
		if out, errOut, code := runCmd(ctx, t, "", clientEnv(), dump, "-d", dsn, "-n", src, "-Fd", "-j", "3", "-f", dir); code != 0 {
			t.Fatalf("pg_dump -j 3 through pgrecycle: exit %d\n%s\n%s", code, out, errOut)
		}
		// Restore under another name: the original stays to compare with.
		if _, err := d.Exec(ctx, fmt.Sprintf("ALTER SCHEMA %s RENAME TO %s", src, dst)); err != nil {
			t.Fatal(err)
		}
		if out, errOut, code := runCmd(ctx, t, "", clientEnv(), restore, "-d", dsn, "-j", "3", "--exit-on-error", dir); code != 0 {
			t.Fatalf("pg_restore -j 3 through pgrecycle: exit %d\n%s\n%s", code, out, errOut)
		}
		for _, q := range []string{
			"SELECT count(*)::text || md5(string_agg(id::text || name, ',' ORDER BY id)) FROM %s.parent",
			"SELECT count(*)::text || md5(string_agg(id::text || parent_id || payload::text || at::text, ',' ORDER BY id)) FROM %s.child",
			"SELECT count(*)::text || md5(string_agg(h || f::text, ',' ORDER BY id)) FROM %s.wide",
			"SELECT sum(n)::text FROM %s.totals",
			"SELECT %s.double(21)::text",
			"SELECT nextval('%s.child_id_seq')::text",
			"SELECT count(*)::text FROM pg_indexes WHERE schemaname = '%s'",
		} {
			var restored, original string
			if err := d.QueryRow(ctx, fmt.Sprintf(q, src)).Scan(&restored); err != nil {
				t.Fatalf("restored: %s: %v", q, err)
			}
			if err := d.QueryRow(ctx, fmt.Sprintf(q, dst)).Scan(&original); err != nil {
				t.Fatal(err)
			}
			if restored != original {
				t.Errorf("%s: restored %q, original %q", q, restored, original)
			}
		}
	})
}
