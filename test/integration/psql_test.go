package integration

// psql through the proxy, in both pooling modes.

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// psql runs psql -X -v ON_ERROR_STOP=1 (unless overridden by args) with
// the proxy's keyword/value DSN.
func (e *env) psql(ctx context.Context, t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	bin := requireTool(t, "psql")
	full := append([]string{"-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", e.kv("postgres", "app")}, args...)
	return runCmd(ctx, t, stdin, clientEnv(), bin, full...)
}

func TestPsql(t *testing.T) {
	leakCheck(t)
	requireTool(t, "psql")
	forModes(t, proxyOpts{size: 2}, func(t *testing.T, e *env, mode string) {
		t.Run("multi-statement -c", func(t *testing.T) {
			ctx := testCtx(t)
			table := uniqueName("psql_multi")
			dropTable(t, e, table)
			// One simple Query message holding several statements.
			out, errOut, code := e.psql(ctx, t, "", "-At", "-c",
				"CREATE TABLE "+table+" (x int); INSERT INTO "+table+" VALUES (1), (2); INSERT INTO "+table+" VALUES (3); SELECT 'sum=' || sum(x) FROM "+table)
			if code != 0 {
				t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
			}
			if !strings.Contains(out, "sum=6") {
				t.Fatalf("stdout %q, want sum=6 (stderr %q)", out, errOut)
			}
			var n int
			if err := e.direct(ctx).QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil || n != 3 {
				t.Fatalf("rows committed: %d %v", n, err)
			}
			// Several results of one Query message.
			out, errOut, code = e.psql(ctx, t, "", "-At", "-c", "SELECT 'r1'; SELECT 'r2'; SELECT 'r3'")
			if f := strings.Fields(out); code != 0 || len(f) == 0 || f[len(f)-1] != "r3" {
				t.Fatalf("exit %d stdout %q stderr %q", code, out, errOut)
			}
		})

		t.Run("copy", func(t *testing.T) {
			ctx := testCtx(t)
			table := uniqueName("psql_copy")
			dropTable(t, e, table)
			file := filepath.Join(t.TempDir(), "data.csv")
			out, errOut, code := e.psql(ctx, t, "", "-At",
				"-c", "CREATE TABLE "+table+" (id int, v text)",
				"-c", "INSERT INTO "+table+" SELECT g, md5(g::text) FROM generate_series(1, 20000) g",
				"-c", `\copy `+table+` TO '`+file+`' CSV`,
				"-c", "TRUNCATE "+table,
				"-c", `\copy `+table+` FROM '`+file+`' CSV`,
				"-c", "SELECT count(*) || ' ' || sum(id) || ' ' || bool_and(v = md5(id::text)) FROM "+table)
			if code != 0 {
				t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
			}
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if lines := strings.Count(string(data), "\n"); lines != 20000 {
				t.Fatalf("\\copy TO wrote %d lines", lines)
			}
			if !strings.HasPrefix(string(data), "1,c4ca4238a0b923820dcc509a6f75849b\n") {
				t.Fatalf("\\copy TO file starts with %q", string(data[:min(len(data), 60)]))
			}
			if !strings.Contains(out, "20000 200010000 t") {
				t.Fatalf("after \\copy FROM: %q", out)
			}
		})

		t.Run("error in transaction then rollback", func(t *testing.T) {
			ctx := testCtx(t)
			table := uniqueName("psql_tx")
			dropTable(t, e, table)
			if _, err := e.direct(ctx).Exec(ctx, "CREATE TABLE "+table+" (id int PRIMARY KEY)"); err != nil {
				t.Fatal(err)
			}
			script := "BEGIN;\nINSERT INTO " + table + " VALUES (1);\nSELECT 1/0;\nROLLBACK;\nSELECT 'after=' || count(*) FROM " + table + ";\n"

			// ON_ERROR_STOP=1: psql gives up at the error, mid-transaction.
			out, errOut, code := e.psql(ctx, t, script, "-At", "-f", "-")
			if code != 3 {
				t.Fatalf("exit %d, want 3 (ON_ERROR_STOP)\nstdout: %s\nstderr: %s", code, out, errOut)
			}
			if !strings.Contains(errOut, "division by zero") || strings.Contains(out, "after=") {
				t.Fatalf("stdout %q stderr %q", out, errOut)
			}

			// Without it: the error, ROLLBACK, and the session goes on.
			out, errOut, code = e.psql(ctx, t, script, "-At", "-v", "ON_ERROR_STOP=0", "-f", "-")
			if code != 0 {
				t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
			}
			if !strings.Contains(errOut, "division by zero") {
				t.Fatalf("stderr %q", errOut)
			}
			if strings.Contains(errOut, "current transaction is aborted") || !strings.Contains(out, "after=0") {
				t.Fatalf("stdout %q stderr %q, want after=0", out, errOut)
			}
			// Neither run left the row or a lock behind.
			var n int
			ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if err := e.direct(ctx).QueryRow(ictx, "INSERT INTO "+table+" VALUES (1) RETURNING id").Scan(&n); err != nil {
				t.Fatalf("key of the rolled-back insert: %v", err)
			}
		})

		t.Run("notice", func(t *testing.T) {
			ctx := testCtx(t)
			out, errOut, code := e.psql(ctx, t, "", "-At",
				"-c", "DO $$BEGIN RAISE NOTICE 'psql notice %', 42; END$$",
				"-c", "SELECT 'done'")
			if code != 0 {
				t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
			}
			if !strings.Contains(errOut, "NOTICE:  psql notice 42") {
				t.Fatalf("stderr %q lacks the notice", errOut)
			}
			if strings.TrimSpace(out) != "done" {
				t.Fatalf("stdout %q", out)
			}
		})

		t.Run("empty query", func(t *testing.T) {
			ctx := testCtx(t)
			out, errOut, code := e.psql(ctx, t, "", "-At", "-c", ";", "-c", "", "-c", "SELECT 'alive'")
			if code != 0 {
				t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
			}
			if strings.TrimSpace(out) != "alive" || strings.Contains(errOut, "ERROR") || strings.Contains(errOut, "FATAL") {
				t.Fatalf("stdout %q stderr %q", out, errOut)
			}
		})
	})
}
