package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	code := Main(m, Options{
		Name:      "pgtest-shared",
		ExtraConf: map[string]string{"work_mem": "12MB", "application_name": "it's shared"},
	})
	// The harness promises to leave no goroutine behind.
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goroutine leak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func queryString(ctx context.Context, t *testing.T, conn *pgx.Conn, sql string) string {
	t.Helper()
	var s string
	if err := conn.QueryRow(ctx, sql).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

func connect(ctx context.Context, t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func TestLifecycle(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	srv := Require(t)

	super := connect(ctx, t, srv.SuperDSN())
	if got := queryString(ctx, t, super, "SELECT current_user"); got != "postgres" {
		t.Fatalf("current_user = %q", got)
	}
	for setting, want := range map[string]string{
		"max_connections": "300", "fsync": "off", "synchronous_commit": "off",
		"full_page_writes": "off", "shared_buffers": "32MB", "listen_addresses": "127.0.0.1",
		"port": strconv.Itoa(srv.Port), "unix_socket_directories": srv.SocketDir,
	} {
		if got := queryString(ctx, t, super, "SHOW "+setting); got != want {
			t.Errorf("%s = %q, want %q", setting, got, want)
		}
	}
	if tail := srv.LogTail(20); !strings.Contains(tail, "ready to accept connections") {
		t.Errorf("log tail does not show the start:\n%s", tail)
	}

	// Names and passwords that need quoting prove the escaping.
	const role, password, db = `app "user"`, `s3cr'et pw:/@?`, "app db"
	if err := srv.CreateRole(ctx, role, password, false); err != nil {
		t.Fatal(err)
	}
	if err := srv.CreateDatabase(ctx, db, role); err != nil {
		t.Fatal(err)
	}
	var hash string
	if err := super.QueryRow(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = $1", role).Scan(&hash); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(hash, "SCRAM-SHA-256$") {
		t.Errorf("password stored as %q, want a SCRAM verifier", hash)
	}

	app := connect(ctx, t, srv.DSN(role, password, db))
	if got := queryString(ctx, t, app, "SELECT current_user || '/' || current_database()"); got != role+"/"+db {
		t.Errorf("connected as %q", got)
	}
	var pgErr *pgconn.PgError
	if c, err := pgx.Connect(ctx, srv.DSN(role, "wrong", db)); err == nil {
		_ = c.Close(ctx)
		t.Error("wrong password accepted over TCP")
	} else if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
		t.Errorf("wrong password: %v, want SQLSTATE 28P01", err)
	}
	// The unix socket is trusted: no password needed.
	sock := connect(ctx, t, fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres", srv.SocketDir, srv.Port))
	if got := queryString(ctx, t, sock, "SELECT 'ok'"); got != "ok" {
		t.Errorf("socket query = %q", got)
	}
	if err := srv.Exec(ctx, "SELECT 1; SELECT 2"); err != nil {
		t.Errorf("multi-statement Exec: %v", err)
	}
	if err := srv.Exec(ctx, "SELEC 1"); err == nil {
		t.Error("Exec of bad SQL succeeded")
	}

	for _, mode := range []string{"fast", "immediate"} {
		if err := srv.Restart(mode); err != nil {
			t.Fatalf("Restart(%s): %v", mode, err)
		}
		if _, err := app.Exec(ctx, "SELECT 1"); err == nil {
			t.Errorf("connection survived Restart(%s)", mode)
		}
		app = connect(ctx, t, srv.DSN(role, password, db))
		if got := queryString(ctx, t, app, "SELECT current_database()"); got != db {
			t.Errorf("after Restart(%s): current_database = %q", mode, got)
		}
	}
	if err := srv.Restart("bogus"); err == nil {
		t.Error("Restart(bogus) succeeded")
	}
	_ = app.Close(ctx)
	_ = super.Close(ctx)
	_ = sock.Close(ctx)

	dir := srv.dir
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("server dir %s still there after Stop (%v)", dir, err)
	}
	if err := srv.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if err := srv.Restart("fast"); err == nil {
		t.Error("Restart after Stop succeeded")
	}
}

func TestShared(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	srv := Shared(t)
	conn := connect(ctx, t, srv.SuperDSN())
	// ExtraConf from TestMain overrides defaults and survives quoting.
	if got := queryString(ctx, t, conn, "SHOW work_mem"); got != "12MB" {
		t.Errorf("work_mem = %q", got)
	}
	if got := queryString(ctx, t, conn, "SHOW application_name"); got != "it's shared" {
		// pgx sets no application_name, so the server default shows.
		t.Errorf("application_name = %q", got)
	}
	if err := srv.Stop(); err == nil {
		t.Error("Stop of the shared server succeeded")
	}
	if again := Shared(t); again.Port != srv.Port || again.DataDir != srv.DataDir {
		t.Errorf("Shared returned a different server: %+v vs %+v", again, srv)
	}
}

// The port picked for a server can be taken before postgres binds it.
func TestPortCollisionRetry(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := busy.Addr().(*net.TCPAddr).Port
	picks := 0
	srv, err := start(Options{Name: "collision"}, func() (int, error) {
		picks++
		if picks == 1 {
			return busyPort, nil
		}
		return freePort()
	})
	if errors.Is(err, ErrUnavailable) {
		skipOrFail(t, err.Error(), true)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := srv.Stop(); err != nil {
			t.Error(err)
		}
	}()
	if srv.Port == busyPort || picks != 2 {
		t.Errorf("port %d after %d picks, busy port %d", srv.Port, picks, busyPort)
	}
	if log := srv.LogTail(-1); !portCollision(log) {
		t.Errorf("log does not show the collision:\n%s", log)
	}
}

// A test binary killed before Stop leaves a running server; the next Start
// must clean it up.
func TestReapStale(t *testing.T) {
	t.Parallel()
	srv, err := Start(Options{Name: "stale"})
	if errors.Is(err, ErrUnavailable) {
		skipOrFail(t, err.Error(), true)
	}
	if err != nil {
		t.Fatal(err)
	}
	pid := postmasterPID(srv.DataDir)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(srv.dir, ownerFile), []byte(strconv.Itoa(dead.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	reapStale(filepath.Dir(srv.dir))
	if _, err := os.Stat(srv.dir); !os.IsNotExist(err) {
		t.Errorf("stale dir %s not removed (%v)", srv.dir, err)
	}
	if processAlive(pid) {
		t.Errorf("stale postmaster %d still running", pid)
	}
	if err := srv.Stop(); err != nil {
		t.Errorf("Stop after reap: %v", err)
	}
}

func TestDSN(t *testing.T) {
	s := &Server{Host: "127.0.0.1", Port: 5433}
	cfg, err := pgconn.ParseConfig(s.DSN("u@x", "p:w/?#%", "my db"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "127.0.0.1" || cfg.Port != 5433 || cfg.User != "u@x" || cfg.Password != "p:w/?#%" ||
		cfg.Database != "my db" || cfg.TLSConfig != nil {
		t.Errorf("parsed %+v", cfg)
	}
	if got, want := s.DSN("u", "", "d"), "postgres://u@127.0.0.1:5433/d?sslmode=disable"; got != want {
		t.Errorf("DSN = %q, want %q", got, want)
	}
}

func TestBinDirFromEnv(t *testing.T) {
	t.Setenv("PG_BINDIR", t.TempDir())
	if _, err := BinDir(); !errors.Is(err, ErrUnavailable) {
		t.Errorf("BinDir with an empty PG_BINDIR: %v, want ErrUnavailable", err)
	}
	if _, err := Start(Options{}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Start with an empty PG_BINDIR: %v, want ErrUnavailable", err)
	}
}

func TestVersionOrder(t *testing.T) {
	if !versionLess(parseVersion("9.6"), parseVersion("15")) || versionLess(parseVersion("16"), parseVersion("15")) {
		t.Error("version comparison is not numeric")
	}
}

func TestExtraConfValidation(t *testing.T) {
	if _, err := extraConf(map[string]string{"work_mem\nfsync": "on"}); err == nil {
		t.Error("newline in a key accepted")
	}
	if _, err := extraConf(map[string]string{"work_mem": "1MB\nfsync = on"}); err == nil {
		t.Error("newline in a value accepted")
	}
	got, err := extraConf(map[string]string{"b": "x", "a": "it's"})
	if err != nil || !strings.Contains(got, "a = 'it''s'\nb = 'x'\n") {
		t.Errorf("extraConf = %q, %v", got, err)
	}
}

// fakeTB records how skipOrFail ends a test without ending this one.
type fakeTB struct {
	testing.TB
	skipped, failed bool
}

func (f *fakeTB) Helper()              {}
func (f *fakeTB) Skipf(string, ...any) { f.skipped = true }
func (f *fakeTB) Fatal(...any)         { f.failed = true }

func TestSkipOrFail(t *testing.T) {
	for _, tc := range []struct {
		ci                  string
		unavailable         bool
		wantSkip, wantFatal bool
	}{
		{"", true, true, false},
		{"true", true, false, true},
		{"", false, false, true},
		{"false", true, true, false},
	} {
		t.Setenv("CI", tc.ci)
		f := &fakeTB{}
		skipOrFail(f, "no postgres", tc.unavailable)
		if f.skipped != tc.wantSkip || f.failed != tc.wantFatal {
			t.Errorf("CI=%q unavailable=%v: skipped=%v failed=%v", tc.ci, tc.unavailable, f.skipped, f.failed)
		}
	}
}
