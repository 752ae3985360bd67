package integration

// Helpers of the admin console and metrics tests. They only add to
// env_test.go and helpers_clients_test.go.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// metricsExtra is the TOML that turns the metrics endpoint on, for
// proxyOpts.extra.
const metricsExtra = "\n[metrics]\naddr = \"127.0.0.1:0\"\n"

// adminTable is a result of the admin console: column names and rows as
// text ("" for NULL).
type adminTable struct {
	cols []string
	rows []map[string]string
}

// col returns the values of a column.
func (a adminTable) col(name string) []string {
	var out []string
	for _, r := range a.rows {
		out = append(out, r[name])
	}
	return out
}

// find returns the first row whose columns have the given values.
func (a adminTable) find(kv ...string) (map[string]string, bool) {
	for _, r := range a.rows {
		ok := true
		for i := 0; i+1 < len(kv); i += 2 {
			if r[kv[i]] != kv[i+1] {
				ok = false
				break
			}
		}
		if ok {
			return r, true
		}
	}
	return nil, false
}

func (a adminTable) String() string {
	var sb strings.Builder
	sb.WriteString(strings.Join(a.cols, "|"))
	for _, r := range a.rows {
		sb.WriteString("\n")
		for i, c := range a.cols {
			if i > 0 {
				sb.WriteString("|")
			}
			sb.WriteString(r[c])
		}
	}
	return sb.String()
}

// psqlAdmin runs one command on the admin console with psql (unaligned
// output) and returns the table, psql's stderr and exit status.
func (e *env) psqlAdmin(ctx context.Context, user, sql string) (adminTable, string, int) {
	e.t.Helper()
	return e.psqlAdminDB(ctx, user, "pgrecycle", sql)
}

// psqlAdminDB is psqlAdmin through another database name.
func (e *env) psqlAdminDB(ctx context.Context, user, db, sql string) (adminTable, string, int) {
	e.t.Helper()
	psql := requireTool(e.t, "psql")
	out, stderr, code := runCmd(ctx, e.t, "", clientEnv(), psql, "-X", "-A", "-F", "|", "-P", "footer=off",
		"-v", "ON_ERROR_STOP=1", e.kv(user, db), "-c", sql)
	var t adminTable
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) > 0 && lines[0] != "" {
		t.cols = strings.Split(lines[0], "|")
		for _, l := range lines[1:] {
			vals := strings.Split(l, "|")
			row := make(map[string]string, len(vals))
			for i, c := range t.cols {
				if i < len(vals) {
					row[c] = vals[i]
				}
			}
			t.rows = append(t.rows, row)
		}
	}
	return t, stderr, code
}

// mustPsqlAdmin is psqlAdmin that fails the test on a psql error.
func (e *env) mustPsqlAdmin(ctx context.Context, sql string) adminTable {
	e.t.Helper()
	t, stderr, code := e.psqlAdmin(ctx, "admin", sql)
	if code != 0 {
		e.t.Fatalf("psql %q: exit %d: %s", sql, code, stderr)
	}
	return t
}

// adminConn opens a pgx connection to the admin console using the simple
// query protocol.
func (e *env) adminConn(ctx context.Context) *pgx.Conn {
	e.t.Helper()
	cfg, err := pgx.ParseConfig(e.dsn("admin", "x", "pgrecycle"))
	if err != nil {
		e.t.Fatal(err)
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		e.t.Fatalf("connect to the admin console: %v", err)
	}
	e.t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// adminQuery runs a command on an admin connection.
func adminQuery(ctx context.Context, c *pgx.Conn, sql string) (adminTable, error) {
	rows, err := c.Query(ctx, sql)
	if err != nil {
		return adminTable{}, err
	}
	defer rows.Close()
	var t adminTable
	for _, f := range rows.FieldDescriptions() {
		t.cols = append(t.cols, f.Name)
	}
	for rows.Next() {
		raw := rows.RawValues()
		row := make(map[string]string, len(raw))
		for i, v := range raw {
			row[t.cols[i]] = string(v)
		}
		t.rows = append(t.rows, row)
	}
	return t, rows.Err()
}

func (e *env) mustAdminQuery(ctx context.Context, c *pgx.Conn, sql string) adminTable {
	e.t.Helper()
	t, err := adminQuery(ctx, c, sql)
	if err != nil {
		e.t.Fatalf("admin %q: %v", sql, err)
	}
	return t
}

// adminExec runs a command that returns no rows and returns its tag.
func adminExec(ctx context.Context, c *pgx.Conn, sql string) (string, error) {
	tag, err := c.Exec(ctx, sql)
	return tag.String(), err
}

// errCode is the SQLSTATE of a PostgreSQL error, "" otherwise.
func errCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func atoi(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("not an integer: %q", s)
	}
	return n
}

func sameCols(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("%s columns:\n got %v\nwant %v", what, got, want)
	}
}

// httpGet fetches a URL without keeping connections (nothing outlives
// the test) and returns the status and body.
func httpGet(ctx context.Context, t *testing.T, url string) (int, string) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func (e *env) metricsURL(path string) string {
	e.t.Helper()
	a := e.srv.MetricsAddr()
	if a == nil {
		e.t.Fatal("metrics endpoint not listening")
	}
	return "http://" + a.String() + path
}

// scrape returns the samples of /metrics: "name{labels}" → value, labels
// in the exposition's order.
func (e *env) scrape(ctx context.Context) map[string]float64 {
	e.t.Helper()
	code, body := httpGet(ctx, e.t, e.metricsURL("/metrics"))
	if code != http.StatusOK {
		e.t.Fatalf("/metrics: %d\n%s", code, body)
	}
	out := make(map[string]float64)
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			e.t.Fatalf("bad sample line %q", line)
		}
		out[line[:i]] = v
	}
	return out
}

// sample finds a metric by name and label values (any order).
func sample(m map[string]float64, name string, labels ...string) (float64, bool) {
	for k, v := range m {
		n, ls, _ := strings.Cut(k, "{")
		if n != name {
			continue
		}
		ok := true
		for i := 0; i+1 < len(labels); i += 2 {
			if !strings.Contains(ls, fmt.Sprintf("%s=%q", labels[i], labels[i+1])) {
				ok = false
				break
			}
		}
		if ok {
			return v, true
		}
	}
	return 0, false
}

// configPath is the TOML file startProxy wrote.
func (e *env) configPath() string { return filepath.Join(e.dir, "pgrecycle.toml") }

// editConfig rewrites the proxy's configuration file.
func (e *env) editConfig(edit func(string) string) {
	e.t.Helper()
	b, err := os.ReadFile(e.configPath())
	if err != nil {
		e.t.Fatal(err)
	}
	n := edit(string(b))
	if n == string(b) {
		e.t.Fatal("editConfig changed nothing")
	}
	if err := os.WriteFile(e.configPath(), []byte(n), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// adminBackendPID returns the backend pid a proxied connection runs on now.
func adminBackendPID(ctx context.Context, t *testing.T, c *pgx.Conn) uint32 {
	t.Helper()
	var pid uint32
	if err := c.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	return pid
}

// waitPoolWaiting waits until SHOW POOLS shows n clients of app waiting
// (cl_waiting), failing after five seconds.
func (e *env) waitPoolWaiting(ctx context.Context, t *testing.T, n string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		pools := e.mustPsqlAdmin(ctx, "SHOW POOLS")
		if r, ok := pools.find("database", "app"); ok && r["cl_waiting"] == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("SHOW POOLS, want cl_waiting %s for app:\n%s", n, pools)
		}
	}
}
