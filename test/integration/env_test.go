package integration

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pgrecycle/pgrecycle/config"
	"github.com/pgrecycle/pgrecycle/proxy"
	"github.com/pgrecycle/pgrecycle/test/pgtest"
)

// env is a pgrecycle in front of the shared PostgreSQL.
type env struct {
	t    *testing.T
	pg   *pgtest.Server
	srv  *proxy.Server
	host string
	port int
	logs *observer.ObservedLogs
	dir  string
}

// proxyOpts describe the proxy a test wants.
type proxyOpts struct {
	mode         string // transaction (default) | session
	size         int    // pool.size, default 5
	authType     string // default trust
	users        map[string]string
	extra        string         // more TOML, appended
	dbExtra      string         // more keys in [databases.app]
	dbUser       string         // connect backends as this user ("" = postgres)
	pg           *pgtest.Server // a dedicated PostgreSQL (default: the shared one)
	listenExtra  string         // more keys in [listen]
	addr         string         // listen.addr (default 127.0.0.1:0)
	authExtra    string         // more keys in [auth]
	hostOverride string         // databases.app.host instead of the server's address
	portOverride int            // databases.app.port instead of the server's port
	sslmode      string         // databases.app.sslmode (default disable)
	loginTimeout string         // listen.client_login_timeout (default 10s)
}

// startProxy writes a TOML config, loads it the way the binary does and
// serves it on a free port.
func startProxy(t *testing.T, o proxyOpts) *env {
	t.Helper()
	pg := o.pg
	if pg == nil {
		pg = pgtest.Shared(t)
	}
	if o.mode == "" {
		o.mode = "transaction"
	}
	if o.size == 0 {
		o.size = 5
	}
	if o.addr == "" {
		o.addr = "127.0.0.1:0"
	}
	if o.loginTimeout == "" {
		o.loginTimeout = "10s"
	}
	if o.authType == "" {
		o.authType = "trust"
	}
	dir := t.TempDir()
	var authFile string
	if len(o.users) > 0 {
		var sb strings.Builder
		for u, p := range o.users {
			fmt.Fprintf(&sb, "%q %q\n", u, p)
		}
		authFile = filepath.Join(dir, "userlist.txt")
		if err := os.WriteFile(authFile, []byte(sb.String()), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	dbUser := o.dbUser
	dbAuth := fmt.Sprintf("user = %q\npassword = %q\n", pg.SuperUser, pg.SuperPassword)
	if dbUser == "-" {
		dbAuth = ""
	} else if dbUser != "" {
		dbAuth = fmt.Sprintf("user = %q\npassword = %q\n", dbUser, o.users[dbUser])
	}
	toml := fmt.Sprintf(`
[listen]
addr = %q
client_login_timeout = %q
shutdown_timeout = "2s"
%s

[auth]
type = %q
%s
admin_users = ["admin"]
%s

[pool]
mode = %q
size = %d
query_wait_timeout = "10s"
server_connect_timeout = "5s"
server_login_retry = "1s"

[parameters]
plan_cache_mode = "force_custom_plan"

[databases.app]
host = %q
port = %d
dbname = "postgres"
sslmode = "disable"
%s
%s

[log]
level = "debug"
%s
`, o.addr, o.loginTimeout, o.listenExtra, o.authType, authLine(authFile), o.authExtra, o.mode, o.size, pg.Host, pg.Port, dbAuth, o.dbExtra, o.extra)
	if o.sslmode != "" {
		toml = strings.Replace(toml, `sslmode = "disable"`, fmt.Sprintf("sslmode = %q", o.sslmode), 1)
	}
	if o.portOverride != 0 {
		toml = strings.Replace(toml, fmt.Sprintf("port = %d", pg.Port), fmt.Sprintf("port = %d", o.portOverride), 1)
	}
	if o.hostOverride != "" {
		toml = strings.Replace(toml, fmt.Sprintf("host = %q", pg.Host), fmt.Sprintf("host = %q", o.hostOverride), 1)
	}
	path := filepath.Join(dir, "pgrecycle.toml")
	if err := os.WriteFile(path, []byte(toml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("config: %v\n%s", err, toml)
	}
	core, logs := observer.New(zap.DebugLevel)
	srv, err := proxy.New(proxy.Options{Config: cfg, Logger: zap.New(core), Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	srv.Serve()
	t.Cleanup(srv.Close)
	addr := srv.Addr().(*net.TCPAddr)
	return &env{t: t, pg: pg, srv: srv, host: "127.0.0.1", port: addr.Port, logs: logs, dir: dir}
}

func authLine(path string) string {
	if path == "" {
		return ""
	}
	return fmt.Sprintf("file = %q", path)
}

// dsn is a libpq-style URL to the proxy.
func (e *env) dsn(user, password, db string, extra ...string) string {
	s := fmt.Sprintf("postgres://%s:%s@%s:%d/%s?sslmode=disable", user, password, e.host, e.port, db)
	for _, x := range extra {
		s += "&" + x
	}
	return s
}

// kv is a keyword/value DSN to the proxy, for psql and psycopg.
func (e *env) kv(user, db string) string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", e.host, e.port, user, db)
}

// connect opens a pgx connection through the proxy.
func (e *env) connect(ctx context.Context, extra ...string) *pgx.Conn {
	e.t.Helper()
	c, err := pgx.Connect(ctx, e.dsn("postgres", "x", "app", extra...))
	if err != nil {
		e.t.Fatalf("connect through pgrecycle: %v", err)
	}
	e.t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// direct opens a pgx connection straight to PostgreSQL as superuser.
func (e *env) direct(ctx context.Context) *pgx.Conn {
	e.t.Helper()
	c, err := pgx.Connect(ctx, e.pg.SuperDSN())
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// backendPIDs returns the pids of backends whose application is not a
// direct test connection, counted by pg_stat_activity.
func (e *env) backendCount(ctx context.Context) int {
	c := e.direct(ctx)
	var n int
	if err := c.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()`).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// parallel runs f n times concurrently and returns the first error.
func parallel(n int, f func(i int) error) error {
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if err := f(i); err != nil {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	return <-errs
}
