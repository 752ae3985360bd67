package integration

// Helpers shared by the client-compatibility tests (psql, pgbench, psycopg,
// pgx protocol, parameters, cancel, limits). They only add to env_test.go.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pgrecycle/pgrecycle/test/pgtest"
)

// poolModes are the pooling modes the table-driven tests run in.
func poolModes() []string { return []string{"session", "transaction"} }

// inCI reports whether a missing tool must fail rather than skip.
func inCI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v == "true" || v == "1" || v == "yes"
}

// requireTool returns the path of an external program, skipping the test
// (failing it under CI=true) when it is missing.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		msg := fmt.Sprintf("%s not found on PATH (Debian: apt-get install postgresql-client): %v", name, err)
		if inCI() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return p
}

// systemPython is Debian's interpreter, which has python3-psycopg; the
// pyenv python3 on PATH does not.
const systemPython = "/usr/bin/python3"

// requirePsycopg returns the python interpreter that can import psycopg 3.
func requirePsycopg(t *testing.T) string {
	t.Helper()
	return requirePythonModule(t, "psycopg", "python3-psycopg")
}

// requirePythonModule returns Debian's python interpreter once it can
// import module (from the Debian package pkg), skipping the test (failing
// it under CI=true) when it can't.
func requirePythonModule(t *testing.T, module, pkg string) string {
	t.Helper()
	fail := func(msg string) {
		if inCI() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	if _, err := os.Stat(systemPython); err != nil {
		fail(fmt.Sprintf("%s missing: %v", systemPython, err))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, systemPython, "-c", "import "+module+"; print("+module+".__version__)").CombinedOutput()
	if err != nil {
		fail(fmt.Sprintf("%s not importable by %s (Debian: apt-get install %s): %v\n%s", module, systemPython, pkg, err, out))
	}
	t.Logf("%s %s", module, strings.TrimSpace(string(out)))
	return systemPython
}

// clientEnv is the environment for psql/pgbench/python: the test's own,
// without any PG* variable that could redirect the client.
func clientEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "PGCONNECT_TIMEOUT=10", "PGSSLMODE=disable")
	return append(env, extra...)
}

// runCmd runs a client program and returns stdout, stderr and its exit
// status (-1 when it could not run or was killed).
func runCmd(ctx context.Context, t *testing.T, stdin string, env []string, name string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	cmd.Dir = t.TempDir()
	cmd.WaitDelay = 5 * time.Second
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else {
			t.Logf("%s: %v", name, err)
			code = -1
		}
	}
	return stdout.String(), stderr.String(), code
}

// uniqueName returns prefix plus a random lowercase suffix, usable as an
// unquoted SQL identifier.
func uniqueName(prefix string) string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return prefix + "_" + hex.EncodeToString(b[:])
}

// poolRole creates a superuser role with a unique name for a proxy's
// backends to log in as, so that pg_stat_activity can tell that pool's
// backends (usename) from the test's direct connections. Use the result
// as proxyOpts{dbUser: name, users: map[string]string{name: password}}.
func poolRole(ctx context.Context, t *testing.T) (name, password string) {
	t.Helper()
	pg := pgtest.Shared(t)
	name = uniqueName("pool")
	password = "pw-" + name
	if err := pg.CreateRole(ctx, name, password, true); err != nil {
		t.Fatal(err)
	}
	return name, password
}

// poolBackends counts the backends of a pool role, by state.
func poolBackends(ctx context.Context, c *pgx.Conn, role string) (total, idleInTx int, err error) {
	err = c.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE state LIKE 'idle in transaction%')
		FROM pg_stat_activity WHERE usename = $1 AND pid <> pg_backend_pid()`, role).Scan(&total, &idleInTx)
	return total, idleInTx, err
}

// startProxyListen is startProxy with extra keys in [listen] and a chosen
// client_login_timeout ("" keeps the default).
func startProxyListen(t *testing.T, o proxyOpts, loginTimeout, listenExtra string) *env {
	t.Helper()
	o.loginTimeout = loginTimeout
	o.listenExtra = listenExtra
	return startProxy(t, o)
}

// connectConfig opens a pgx connection through the proxy after letting
// the caller adjust the parsed config.
func (e *env) connectConfig(ctx context.Context, dsn string, adjust func(*pgx.ConnConfig)) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	if adjust != nil {
		adjust(cfg)
	}
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	e.t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c, nil
}

// mustConnect is connectConfig that fails the test on error.
func (e *env) mustConnect(ctx context.Context, adjust func(*pgx.ConnConfig), extra ...string) *pgx.Conn {
	e.t.Helper()
	c, err := e.connectConfig(ctx, e.dsn("postgres", "x", "app", extra...), adjust)
	if err != nil {
		e.t.Fatalf("connect through pgrecycle: %v", err)
	}
	return c
}

// cancelRequests makes pgx answer a cancelled context with a protocol
// CancelRequest (through the proxy) rather than by closing the socket,
// which is pgx's default.
func cancelRequests(cfg *pgx.ConnConfig) {
	cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, CancelRequestDelay: 0, DeadlineDelay: 8 * time.Second}
	}
}

// sqlState returns the SQLSTATE of a PostgreSQL error, or "".
func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// countingWriter counts the bytes written to it.
type countingWriter struct{ n atomic.Int64 }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.n.Add(int64(len(p)))
	return len(p), nil
}

// directConn opens a direct superuser connection to the shared server.
func directConn(ctx context.Context, t *testing.T) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(ctx, pgtest.Shared(t).SuperDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// dropTable drops a table through a direct connection when the test ends.
func dropTable(t *testing.T, e *env, name string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, e.pg.SuperDSN())
		if err != nil {
			return
		}
		defer c.Close(ctx)
		_, _ = c.Exec(ctx, "DROP TABLE IF EXISTS "+pgx.Identifier{name}.Sanitize())
	})
}

// logsContain reports whether any proxy log entry (message or field)
// contains s.
func logsContain(logs *observer.ObservedLogs, s string) (string, bool) {
	for _, e := range logs.All() {
		line := e.Message + " " + fmt.Sprint(e.ContextMap())
		if strings.Contains(line, s) {
			return line, true
		}
	}
	return "", false
}

// ---- raw protocol ----

// Startup-phase request codes.
const (
	protoV30       = 196608 // 3.0
	protoV32       = 196610 // 3.2
	sslRequestCode = 80877103
	cancelCode     = 80877102
)

// rawDial opens a plain TCP connection to the proxy with a deadline.
func (e *env) rawDial(t *testing.T, timeout time.Duration) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("%s:%d", e.host, e.port), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(timeout))
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// startupMessage encodes a StartupMessage with the given protocol version
// and parameters (name, value pairs).
func startupMessage(version uint32, kv ...string) []byte {
	body := binary.BigEndian.AppendUint32(nil, version)
	for _, s := range kv {
		body = append(body, s...)
		body = append(body, 0)
	}
	body = append(body, 0)
	msg := binary.BigEndian.AppendUint32(nil, uint32(len(body)+4))
	return append(msg, body...)
}

// readMessage reads one typed backend message: type byte and body.
func readMessage(r io.Reader) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := int(binary.BigEndian.Uint32(hdr[1:]))
	if n < 4 || n > 1<<20 {
		return 0, nil, fmt.Errorf("bad message length %d for type %q", n, hdr[0])
	}
	body := make([]byte, n-4)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, err
	}
	return hdr[0], body, nil
}

// errorFields decodes an ErrorResponse/NoticeResponse body.
func errorFields(body []byte) map[byte]string {
	out := make(map[byte]string)
	for len(body) > 0 && body[0] != 0 {
		f := body[0]
		end := bytes.IndexByte(body[1:], 0)
		if end < 0 {
			break
		}
		out[f] = string(body[1 : 1+end])
		body = body[2+end:]
	}
	return out
}

// dumpLogsOnFailure prints the proxy's log entries at info level and above
// when the test fails, to help diagnose it.
func dumpLogsOnFailure(t *testing.T, e *env) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		entries := e.logs.FilterLevelExact(zap.InfoLevel).All()
		entries = append(entries, e.logs.FilterLevelExact(zap.WarnLevel).All()...)
		entries = append(entries, e.logs.FilterLevelExact(zap.ErrorLevel).All()...)
		if len(entries) > 60 {
			entries = entries[len(entries)-60:]
		}
		for _, x := range entries {
			t.Logf("proxy log: %s %s %v", x.Level, x.Message, x.ContextMap())
		}
	})
}

// writeProgram writes a client program (a script or a Java source) into
// the test's temporary directory and returns its path.
func writeProgram(t *testing.T, name, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// runScriptJSON runs a script (python, ruby) with one JSON argument and
// decodes the JSON it prints into result, failing the test on a non-zero
// exit or undecodable output.
func runScriptJSON(ctx context.Context, t *testing.T, interpreter, script string, arg, result any) {
	t.Helper()
	a, err := json.Marshal(arg)
	if err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runCmd(ctx, t, "", clientEnv(), interpreter, script, string(a))
	if code != 0 {
		t.Fatalf("%s exit %d\nstdout:\n%s\nstderr:\n%s", filepath.Base(interpreter), code, out, errOut)
	}
	if err := json.Unmarshal([]byte(out), result); err != nil {
		t.Fatalf("bad JSON from the script: %v\n%s\nstderr:\n%s", err, out, errOut)
	}
}

// roleSecret returns the password hash PostgreSQL stores for role (a SCRAM
// verifier for roles made by pgtest.CreateRole).
func roleSecret(ctx context.Context, t *testing.T, d *pgx.Conn, role string) string {
	t.Helper()
	var v string
	if err := d.QueryRow(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = $1", role).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// withUnixSocket adds a unix socket listener to o in a fresh directory, on
// a free TCP port that names the socket, and returns the directory and
// the port.
func withUnixSocket(t *testing.T, o proxyOpts) (proxyOpts, string, int) {
	t.Helper()
	dir, err := os.MkdirTemp("", "pgr-sock-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port // the socket is named after listen.addr's port
	l.Close()
	o.addr = fmt.Sprintf("127.0.0.1:%d", port)
	o.listenExtra += fmt.Sprintf("unix_socket_dir = %q\n", dir)
	return o, dir, port
}

// holdBackend opens a client that keeps one backend in an open
// transaction; commit or roll back the transaction to release it.
func (e *env) holdBackend(ctx context.Context, t *testing.T) pgx.Tx {
	t.Helper()
	tx, err := e.connect(ctx).Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	return tx
}

// markerTable creates a one-column table (note text), dropped when the
// test ends, for a test to find whether a client's INSERT ran.
func markerTable(ctx context.Context, t *testing.T, e *env, prefix string) string {
	t.Helper()
	table := uniqueName(prefix)
	dropTable(t, e, table)
	if _, err := e.direct(ctx).Exec(ctx, "CREATE TABLE "+table+" (note text)"); err != nil {
		t.Fatal(err)
	}
	return table
}

// mustExec runs sql on c (a direct connection, usually), failing the test
// on error.
func mustExec(ctx context.Context, t *testing.T, c *pgx.Conn, sql string) {
	t.Helper()
	if _, err := c.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// pidOf returns the pid of the backend c's query runs on.
func pidOf(ctx context.Context, c *pgx.Conn) (int, error) {
	var pid int
	err := c.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid)
	return pid, err
}

// leaveBackend terminates (through d) the backend c's last query ran on and
// waits until c's queries run on another (the first may see the loss);
// it returns both pids.
func leaveBackend(ctx context.Context, t *testing.T, d, c *pgx.Conn) (oldPID, newPID int) {
	t.Helper()
	oldPID, err := pidOf(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	mustExec(ctx, t, d, fmt.Sprintf("SELECT pg_terminate_backend(%d)", oldPID))
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if pid, err := pidOf(ctx, c); err == nil && pid != oldPID {
			return oldPID, pid
		}
		if time.Now().After(deadline) {
			t.Fatal("no new backend after the old one was terminated")
		}
	}
}
