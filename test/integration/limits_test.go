package integration

// Refusals and limits as clients see them: too many clients, pool wait
// timeout, unknown database, authentication, protocol negotiation, SSL
// refusal, malformed startup, login timeout.

import (
	"context"
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgrecycle/pgrecycle/test/pgtest"
)

func TestLimitsMaxClientConn(t *testing.T) {
	leakCheck(t)
	e := startProxyListen(t, proxyOpts{size: 2}, "", "max_client_conn = 3")
	ctx := testCtx(t)
	var conns []*pgx.Conn
	for i := 0; i < 3; i++ {
		c, err := pgx.Connect(ctx, e.dsn("postgres", "x", "app"))
		if err != nil {
			t.Fatalf("client %d of 3: %v", i+1, err)
		}
		conns = append(conns, c)
		t.Cleanup(func() { _ = c.Close(context.Background()) })
	}
	_, err := pgx.Connect(ctx, e.dsn("postgres", "x", "app"))
	if err == nil {
		t.Fatal("4th client accepted with max_client_conn = 3")
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "53300" {
		t.Fatalf("4th client: want SQLSTATE 53300, got %v", err)
	}
	if !strings.Contains(pgErr.Message, "max_client_conn") {
		t.Errorf("53300 message doesn't name max_client_conn: %q", pgErr.Message)
	}
	// The three are unaffected.
	for i, c := range conns {
		var n int
		if err := c.QueryRow(ctx, "SELECT 1").Scan(&n); err != nil {
			t.Fatalf("client %d: %v", i+1, err)
		}
	}
	// The operator still gets the admin console, past the limit.
	admin, err := pgx.Connect(ctx, e.dsn("admin", "x", "pgrecycle", "default_query_exec_mode=simple_protocol"))
	if err != nil {
		t.Fatalf("admin console at max_client_conn: %v", err)
	}
	if _, err := admin.Exec(ctx, "SHOW POOLS"); err != nil {
		t.Fatalf("SHOW POOLS at max_client_conn: %v", err)
	}
	_ = admin.Close(ctx)
	// A slot freed is a slot reusable; refused clients held none.
	_ = conns[0].Close(ctx)
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := pgx.Connect(ctx, e.dsn("postgres", "x", "app"))
		if err == nil {
			_ = c.Close(ctx)
			break
		}
		if sqlState(err) != "53300" || time.Now().After(deadline) {
			t.Fatalf("after one client left: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestLimitsQueryWaitTimeout(t *testing.T) {
	leakCheck(t)
	forModes(t, proxyOpts{size: 1, dbExtra: `pool.query_wait_timeout = "1s"`}, func(t *testing.T, e *env, mode string) {
		ctx := testCtx(t)
		holder := e.connect(ctx, "default_query_exec_mode=simple_protocol")
		var n int
		if err := holder.QueryRow(ctx, "SELECT 1").Scan(&n); err != nil {
			t.Fatal(err)
		}
		waiter := e.connect(ctx, "default_query_exec_mode=exec")
		if _, err := holder.Exec(ctx, "BEGIN"); err != nil {
			t.Fatal(err)
		}
		if _, err := holder.Exec(ctx, "SELECT 1"); err != nil {
			t.Fatal(err)
		}

		for _, qm := range []pgx.QueryExecMode{pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol} {
			start := time.Now()
			err := waiter.QueryRow(ctx, "SELECT 2", qm).Scan(&n)
			el := time.Since(start)
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) {
				t.Fatalf("%v: waiting client: want an ErrorResponse, got %v", qm, err)
			}
			if pgErr.Code != "57014" && pgErr.Code != "08P01" {
				t.Fatalf("%v: waiting client: want SQLSTATE 57014, got %s %q", qm, pgErr.Code, pgErr.Message)
			}
			if !strings.Contains(pgErr.Message, "query_wait_timeout") {
				t.Fatalf("%v: message doesn't name query_wait_timeout: %q", qm, pgErr.Message)
			}
			if el < 900*time.Millisecond || el > 5*time.Second {
				t.Fatalf("%v: query_wait_timeout = 1s but the error came after %s", qm, el)
			}
			if waiter.IsClosed() {
				t.Fatalf("%v: waiting client disconnected", qm)
			}
		}

		if mode == "transaction" {
			if _, err := holder.Exec(ctx, "COMMIT"); err != nil {
				t.Fatal(err)
			}
		} else {
			_ = holder.Close(ctx)
		}
		for _, qm := range []pgx.QueryExecMode{pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol} {
			if err := waiter.QueryRow(ctx, "SELECT 3", qm).Scan(&n); err != nil || n != 3 {
				t.Fatalf("%v: after the backend was freed: %d %v", qm, n, err)
			}
		}
	})
}

func TestLimitsUnknownDatabase(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{})
	ctx := testCtx(t)
	_, err := pgx.Connect(ctx, e.dsn("postgres", "x", "no_such_db"))
	if code := sqlState(err); code != "3D000" {
		t.Fatalf("unknown database: want 3D000, got %v", err)
	}
	// The proxy still serves the known one.
	c := e.connect(ctx)
	var n int
	if err := c.QueryRow(ctx, "SELECT 1").Scan(&n); err != nil {
		t.Fatal(err)
	}
}

// TestFallbackDatabase: [databases."*"] serves any database name not
// listed, as PgBouncer's "*" entry: the backend connects to the database
// the client named, with the fallback's host and settings; a name the
// server lacks gets the server's own 3D000.
func TestFallbackDatabase(t *testing.T) {
	leakCheck(t)
	pg := pgtest.Shared(t)
	ctx := testCtx(t)
	dbName := uniqueName("fb")
	if err := pg.CreateDatabase(ctx, dbName, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pg.Exec(context.Background(), "DROP DATABASE IF EXISTS "+dbName+" WITH (FORCE)") })
	e := startProxy(t, proxyOpts{extra: fmt.Sprintf("[databases.\"*\"]\nhost = %q\nport = %d\nsslmode = \"disable\"\nuser = %q\npassword = %q\n[databases.\"*\".parameters]\napplication_name = \"via_fallback\"\n",
		pg.Host, pg.Port, pg.SuperUser, pg.SuperPassword)})
	for _, name := range []string{dbName, "postgres"} {
		c, err := pgx.Connect(ctx, e.dsn("postgres", "x", name))
		if err != nil {
			t.Fatalf("database %s through the fallback: %v", name, err)
		}
		var cur, app string
		if err := c.QueryRow(ctx, "SELECT current_database(), current_setting('application_name')").Scan(&cur, &app); err != nil {
			t.Fatal(err)
		}
		c.Close(ctx)
		if cur != name || app != "via_fallback" {
			t.Fatalf("through the fallback for %s: current_database %q, application_name %q", name, cur, app)
		}
	}
	// The admin console lists the databases in use through the fallback.
	admin := e.adminConn(ctx)
	if r, ok := e.mustAdminQuery(ctx, admin, "SHOW DATABASES").find("name", dbName); !ok || r["database"] != dbName {
		t.Fatalf("SHOW DATABASES row for %s: %v", dbName, r)
	}
	// A listed database keeps its own section.
	var cur string
	if err := e.connect(ctx).QueryRow(ctx, "SELECT current_database()").Scan(&cur); err != nil || cur != "postgres" {
		t.Fatalf("app: %q, %v", cur, err)
	}
	if _, err := pgx.Connect(ctx, e.dsn("postgres", "x", "no_such_db_fb")); sqlState(err) != "3D000" {
		t.Fatalf("a database the server lacks, through the fallback: %v, want 3D000", err)
	}
}

// scramVerifier has PostgreSQL compute a SCRAM-SHA-256 verifier.
func scramVerifier(ctx context.Context, t *testing.T, d *pgx.Conn, password string) string {
	t.Helper()
	role := uniqueName("verif")
	if _, err := d.Exec(ctx, "SET password_encryption = 'scram-sha-256'"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Exec(ctx, "CREATE ROLE "+role+" PASSWORD '"+password+"'"); err != nil {
		t.Fatal(err)
	}
	v := roleSecret(ctx, t, d, role)
	if _, err := d.Exec(ctx, "DROP ROLE "+role); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(v, "SCRAM-SHA-256$") {
		t.Fatalf("not a SCRAM verifier: %q", v)
	}
	return v
}

func TestLimitsAuthentication(t *testing.T) {
	leakCheck(t)
	const (
		good  = "Correct-Horse-7x"
		wrong = "Wr0ng-Pa55-xyzzy"
	)
	ctx := testCtx(t)
	d := directConn(ctx, t)
	sum := md5.Sum([]byte(good + "hashed"))
	users := map[string]string{
		"alice":  good,                               // plain password in the file
		"hashed": "md5" + hex.EncodeToString(sum[:]), // md5 hash
		"scram":  scramVerifier(ctx, t, d, good),     // SCRAM verifier
	}
	cases := map[string][]string{ // auth type -> users that can log in with it
		"plain":         {"alice"},
		"md5":           {"alice", "hashed"},
		"scram-sha-256": {"alice", "scram"},
	}
	for method, okUsers := range cases {
		t.Run(method, func(t *testing.T) {
			e := startProxy(t, proxyOpts{authType: method, users: users})
			ctx := testCtx(t)
			for _, u := range okUsers {
				c, err := pgx.Connect(ctx, e.dsn(u, good, "app"))
				if err != nil {
					t.Fatalf("%s with the right password: %v", u, err)
				}
				var who string
				err = c.QueryRow(ctx, "SELECT current_user").Scan(&who)
				_ = c.Close(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if who != e.pg.SuperUser {
					t.Fatalf("backend user %q, want %q (databases.app.user)", who, e.pg.SuperUser)
				}

				_, err = pgx.Connect(ctx, e.dsn(u, wrong, "app"))
				var pgErr *pgconn.PgError
				if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
					t.Fatalf("%s with a wrong password: want 28P01, got %v", u, err)
				}
				if pgErr.Severity != "FATAL" {
					t.Errorf("%s: wrong password reported as %s", u, pgErr.Severity)
				}
			}
			if _, err := pgx.Connect(ctx, e.dsn("nobody", good, "app")); sqlState(err) != "28P01" {
				t.Fatalf("unknown user: want 28P01, got %v", err)
			}
			for _, secret := range []string{good, wrong} {
				if line, ok := logsContain(e.logs, secret); ok {
					t.Fatalf("proxy log contains a password: %s", line)
				}
			}
			if e.logs.Len() == 0 {
				t.Fatal("no proxy log captured: the password check above proves nothing")
			}
		})
	}
}

// readUntilReady reads backend messages up to ReadyForQuery, returning
// the types seen.
func readUntilReady(t *testing.T, r io.Reader) []byte {
	t.Helper()
	var types []byte
	for {
		typ, body, err := readMessage(r)
		if err != nil {
			t.Fatalf("after %q: %v", types, err)
		}
		types = append(types, typ)
		switch typ {
		case 'E':
			t.Fatalf("error during startup: %v", errorFields(body))
		case 'R':
			if len(body) < 4 || binary.BigEndian.Uint32(body) != 0 {
				t.Fatalf("authentication request %v under trust", body)
			}
		case 'Z':
			return types
		}
	}
}

func TestLimitsProtocolNegotiation(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{})
	ctx := testCtx(t)

	t.Run("raw 3.2", func(t *testing.T) {
		c := e.rawDial(t, 10*time.Second)
		if _, err := c.Write(startupMessage(protoV32, "user", "postgres", "database", "app", "_pq_.pgrecycle_test", "1")); err != nil {
			t.Fatal(err)
		}
		typ, body, err := readMessage(c)
		if err != nil {
			t.Fatal(err)
		}
		if typ != 'v' {
			t.Fatalf("first answer to a 3.2 StartupMessage is %q, want NegotiateProtocolVersion 'v' (%v)", typ, errorFields(body))
		}
		if len(body) < 8 {
			t.Fatalf("short NegotiateProtocolVersion: %v", body)
		}
		if minor := binary.BigEndian.Uint32(body); minor != 0 {
			t.Fatalf("newest minor version %d, want 0", minor)
		}
		if n := binary.BigEndian.Uint32(body[4:]); n != 1 || !strings.HasPrefix(string(body[8:]), "_pq_.pgrecycle_test\x00") {
			t.Fatalf("unrecognized options: %d %q", n, body[8:])
		}
		readUntilReady(t, c)
		// Usable as 3.0.
		q := append([]byte{'Q', 0, 0, 0, 0}, "SELECT 1\x00"...)
		binary.BigEndian.PutUint32(q[1:], uint32(len(q)-1))
		if _, err := c.Write(q); err != nil {
			t.Fatal(err)
		}
		types := readUntilReady(t, c)
		if string(types) != "TDCZ" {
			t.Fatalf("SELECT 1 answered with %q", types)
		}
	})

	t.Run("raw 3.0 gets none", func(t *testing.T) {
		c := e.rawDial(t, 10*time.Second)
		if _, err := c.Write(startupMessage(protoV30, "user", "postgres", "database", "app")); err != nil {
			t.Fatal(err)
		}
		types := readUntilReady(t, c)
		if types[0] != 'R' || strings.ContainsRune(string(types), 'v') {
			t.Fatalf("3.0 startup answered with %q", types)
		}
	})

	t.Run("pgx max_protocol_version", func(t *testing.T) {
		c, err := pgx.Connect(ctx, e.dsn("postgres", "x", "app", "max_protocol_version=latest"))
		if err != nil {
			t.Fatalf("pgx asking for the latest protocol: %v", err)
		}
		defer c.Close(ctx)
		var n int
		if err := c.QueryRow(ctx, "SELECT 1").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if _, err := pgx.Connect(ctx, e.dsn("postgres", "x", "app", "min_protocol_version=3.2")); err == nil {
			t.Fatal("pgx requiring protocol 3.2 connected to a 3.0-only proxy")
		}
	})
}

func TestLimitsSSLRequest(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{})
	ctx := testCtx(t)

	c := e.rawDial(t, 10*time.Second)
	req := binary.BigEndian.AppendUint32(nil, 8)
	req = binary.BigEndian.AppendUint32(req, sslRequestCode)
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		t.Fatal(err)
	}
	if b[0] != 'N' {
		t.Fatalf("SSLRequest answered %q, want 'N'", b[0])
	}
	// The same connection goes on in clear text.
	if _, err := c.Write(startupMessage(protoV30, "user", "postgres", "database", "app")); err != nil {
		t.Fatal(err)
	}
	readUntilReady(t, c)

	// GSSENCRequest is answered 'N' too, and the startup goes on.
	g := e.rawDial(t, 10*time.Second)
	greq := binary.BigEndian.AppendUint32(nil, 8)
	greq = binary.BigEndian.AppendUint32(greq, 80877104)
	if _, err := g.Write(greq); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(g, b[:]); err != nil || b[0] != 'N' {
		t.Fatalf("GSSENCRequest answered %q (%v), want 'N'", b[0], err)
	}
	if _, err := g.Write(startupMessage(protoV30, "user", "postgres", "database", "app")); err != nil {
		t.Fatal(err)
	}
	readUntilReady(t, g)

	pc, err := pgx.Connect(ctx, strings.Replace(e.dsn("postgres", "x", "app"), "sslmode=disable", "sslmode=prefer", 1))
	if err != nil {
		t.Fatalf("sslmode=prefer: %v", err)
	}
	defer pc.Close(ctx)
	var n int
	if err := pc.QueryRow(ctx, "SELECT 1").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if _, err := pgx.Connect(ctx, strings.Replace(e.dsn("postgres", "x", "app"), "sslmode=disable", "sslmode=require", 1)); err == nil {
		t.Fatal("sslmode=require connected without TLS")
	}
}

func TestLimitsMalformedStartup(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{})
	// A length out of bounds is closed without an answer, as PostgreSQL
	// does ("invalid length of startup packet" goes to its log only):
	// node-postgres writes Terminate when closed before it connected, and
	// took an ErrorResponse for the server's, an unhandled 'error' that
	// crashed the application (its quick-disconnect test).
	for name, pkt := range map[string][]byte{
		"absurd length": {0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0},
		"length 4":      {0, 0, 0, 4, 0, 3, 0, 0},
		"negative":      {0xff, 0xff, 0xff, 0xf0, 0, 3, 0, 0},
		"terminate":     {'X', 0, 0, 0, 4},
	} {
		t.Run(name, func(t *testing.T) {
			c := e.rawDial(t, 5*time.Second)
			if _, err := c.Write(pkt); err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(c)
			if errors.Is(err, syscall.ECONNRESET) {
				err = nil // closed with the rest of the packet unread
			}
			if err != nil || len(got) != 0 {
				t.Fatalf("answer %q, %v; want the connection closed without one", got, err)
			}
		})
	}
	// Still serving.
	ctx := testCtx(t)
	var n int
	if err := e.connect(ctx).QueryRow(ctx, "SELECT 1").Scan(&n); err != nil {
		t.Fatal(err)
	}
}

func TestLimitsClientLoginTimeout(t *testing.T) {
	leakCheck(t)
	e := startProxyListen(t, proxyOpts{}, "1s", "")
	for name, send := range map[string][]byte{
		"nothing":         nil,
		"partial startup": {0, 0, 0, 40, 0, 3, 0, 0},
	} {
		t.Run(name, func(t *testing.T) {
			c := e.rawDial(t, 10*time.Second)
			if send != nil {
				if _, err := c.Write(send); err != nil {
					t.Fatal(err)
				}
			}
			start := time.Now()
			var err error
			for err == nil {
				// An ErrorResponse is welcome; the close is required.
				_, _, err = readMessage(c)
			}
			el := time.Since(start)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("not disconnected within %s (client_login_timeout = 1s)", el)
			}
			if el < 800*time.Millisecond || el > 4*time.Second {
				t.Fatalf("disconnected after %s, client_login_timeout = 1s", el)
			}
		})
	}
	// A normal login is not affected.
	ctx := testCtx(t)
	c := e.connect(ctx)
	time.Sleep(1200 * time.Millisecond)
	var n int
	if err := c.QueryRow(ctx, "SELECT 1").Scan(&n); err != nil {
		t.Fatalf("logged-in client cut by the login timeout: %v", err)
	}
}

// TestLoginWaitEndsBeforeLoginTimeout: a login that must wait for a backend
// (here to check a startup option while the only backend is busy) is told
// why with a FATAL before client_login_timeout closes its socket, instead
// of losing the connection without a word when query_wait_timeout (10s
// here) is the longer of the two.
func TestLoginWaitEndsBeforeLoginTimeout(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{mode: "transaction", size: 1, loginTimeout: "2s"})
	ctx := testCtx(t)
	tx := e.holdBackend(ctx, t)
	defer func() { _ = tx.Rollback(ctx) }()
	start := time.Now()
	c, err := pgx.Connect(ctx, e.dsn("postgres", "x", "app", "options="+qEscape("-c statement_timeout=1234")))
	if err == nil {
		_ = c.Close(ctx)
		t.Fatal("login succeeded while the only backend was held")
	}
	el := time.Since(start)
	if sqlState(err) != "08006" || !strings.Contains(err.Error(), "client_login_timeout") {
		t.Fatalf("after %s: %v; want FATAL 08006 naming client_login_timeout", el, err)
	}
	if el > 2500*time.Millisecond {
		t.Fatalf("told after %s, past client_login_timeout (2s)", el)
	}
}

// TestLoginSettingsCheckedOnce: startup settings a pool's backend accepted
// once are not checked again at each login, so a driver that sends the
// same options every time (pgjdbc, asyncpg, an options string in the DSN)
// logs in while every backend is busy; the settings still apply once it
// gets one. A value never checked still needs a backend, and a bad one is
// still refused.
func TestLoginSettingsCheckedOnce(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{mode: "transaction", size: 1, loginTimeout: "2s"})
	ctx := testCtx(t)
	opts := "options=" + qEscape("-c statement_timeout=1234 -c search_path=app_a,public")
	first, err := pgx.Connect(ctx, e.dsn("postgres", "x", "app", opts, "application_name=first"))
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close(ctx)
	tx, err := first.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}

	// The only backend is held: the same settings log in anyway.
	second, err := pgx.Connect(ctx, e.dsn("postgres", "x", "app", opts, "application_name=second"))
	if err != nil {
		t.Fatalf("login with settings already checked, all backends busy: %v", err)
	}
	defer second.Close(ctx)
	// Settings never checked still wait for a backend.
	other := "options=" + qEscape("-c statement_timeout=4321")
	if c, err := pgx.Connect(ctx, e.dsn("postgres", "x", "app", other)); err == nil {
		_ = c.Close(ctx)
		t.Fatal("login with unchecked settings succeeded while the only backend was held")
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	var st, sp, app string
	if err := second.QueryRow(ctx, "SELECT current_setting('statement_timeout'), current_setting('search_path'), current_setting('application_name')").Scan(&st, &sp, &app); err != nil {
		t.Fatal(err)
	}
	if st != "1234ms" || sp != "app_a,public" || app != "second" {
		t.Fatalf("second client: statement_timeout=%q search_path=%q application_name=%q, want 1234ms, app_a,public, second", st, sp, app)
	}
	if got := second.PgConn().ParameterStatus("application_name"); got != "second" {
		t.Fatalf("second client's ParameterStatus application_name = %q", got)
	}
	bad := "options=" + qEscape("-c statement_timeout=soon")
	for i := 0; i < 2; i++ {
		if c, err := pgx.Connect(ctx, e.dsn("postgres", "x", "app", bad)); sqlState(err) != "22023" {
			if c != nil {
				_ = c.Close(ctx)
			}
			t.Fatalf("login %d with statement_timeout=soon: %v, want 22023", i+1, err)
		}
	}
}

// TestConnectFailureExplained: when the database refuses connections, a
// client that waited for a backend is told why in the error's detail, not
// only that it waited.
func TestConnectFailureExplained(t *testing.T) {
	leakCheck(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	e := startProxy(t, proxyOpts{loginTimeout: "2s", portOverride: closedPort})
	ctx := testCtx(t)
	c, err := pgx.Connect(ctx, e.dsn("postgres", "x", "app"))
	if err == nil {
		_ = c.Close(ctx)
		t.Fatal("login succeeded with the database down")
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "08006" {
		t.Fatalf("login with the database down: %v, want FATAL 08006", err)
	}
	if !strings.Contains(pgErr.Detail, "connection attempt to the database server failed") || !strings.Contains(pgErr.Detail, "refused") {
		t.Fatalf("detail %q does not say the server refuses connections", pgErr.Detail)
	}
}

// TestLoginTimeoutTold: a client that sent its startup packet and then
// stalls at the password prompt is told, with FATAL 08006 naming
// client_login_timeout, before the connection is closed.
func TestLoginTimeoutTold(t *testing.T) {
	leakCheck(t)
	e := startProxyListen(t, proxyOpts{authType: "scram-sha-256", users: map[string]string{"alice": "alice-pw"}}, "1s", "")
	c := e.rawDial(t, 10*time.Second)
	if _, err := c.Write(startupMessage(3<<16, "user", "alice", "database", "app")); err != nil {
		t.Fatal(err)
	}
	var fields map[byte]string
	for {
		typ, body, err := readMessage(c)
		if err != nil {
			t.Fatalf("closed without an ErrorResponse: %v", err)
		}
		if typ == 'E' {
			fields = errorFields(body)
			break
		}
	}
	if fields['C'] != "08006" || !strings.Contains(fields['M'], "client_login_timeout") {
		t.Fatalf("error %v, want 08006 naming client_login_timeout", fields)
	}
}

// TestLongPasswordPlainAuth: with auth.type = "plain" a password of 65,000
// characters (PostgreSQL accepts up to 64 KiB) logs in; a password message
// over 64 KiB gets 08P01. Before, anything larger than the read buffer was
// dropped without a word.
func TestLongPasswordPlainAuth(t *testing.T) {
	leakCheck(t)
	long := strings.Repeat("p", 65000)
	e := startProxy(t, proxyOpts{authType: "plain", users: map[string]string{"longpw": long}})
	ctx := testCtx(t)
	c, err := pgx.Connect(ctx, e.dsn("longpw", long, "app"))
	if err != nil {
		t.Fatalf("65,000-character password: %v", err)
	}
	c.Close(ctx)
	_, err = pgx.Connect(ctx, e.dsn("longpw", strings.Repeat("p", 70000), "app"))
	if sqlState(err) != "08P01" {
		t.Fatalf("password message over 64 KiB: %v, want 08P01", err)
	}
}

// TestUserAndClientLimits: limits.max_user_connections caps one user's
// backends across databases (an idle backend of the user's other pool
// makes room), [users.NAME] max_user_client_connections and
// pool.max_db_client_connections refuse logins past them with 53300.
func TestUserAndClientLimits(t *testing.T) {
	leakCheck(t)
	ctx := testCtx(t)
	pg := pgtest.Shared(t)
	users := map[string]string{"ul_a": "ul_a-pw", "ul_b": "ul_b-pw"}
	for u, pw := range users {
		_ = pg.Exec(ctx, "DROP ROLE IF EXISTS "+u)
		if err := pg.CreateRole(ctx, u, pw, false); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for u := range users {
			_ = pg.Exec(context.Background(), "DROP ROLE IF EXISTS "+u)
		}
	})
	extra := fmt.Sprintf(`
[databases.app2]
host = %q
port = %d
dbname = "postgres"
sslmode = "disable"
[databases.app2.pool]
max_db_client_connections = 2
query_wait_timeout = "1s"

[limits]
max_user_connections = 2

[users.ul_b]
max_user_client_connections = 1

[[hba]]
database = "pgrecycle"
user = "admin"
address = "all"
method = "trust"
[[hba]]
database = "all"
user = "all"
address = "all"
method = "md5"
`, pg.Host, pg.Port)
	e := startProxy(t, proxyOpts{size: 5, authType: "md5", dbUser: "-", users: users, extra: extra})
	dumpLogsOnFailure(t, e)

	// ul_a holds two backends of database app: its limit.
	held := holdTransactions(ctx, t, 2, e.dsn("ul_a", "ul_a-pw", "app"))
	// A third backend of ul_a, on another database, waits: its login needs
	// one and fails at app2's query_wait_timeout.
	if _, err := pgx.Connect(ctx, e.dsn("ul_a", "ul_a-pw", "app2")); err == nil || !strings.Contains(err.Error(), "query_wait_timeout") {
		t.Fatalf("third backend of ul_a over max_user_connections = 2: %v", err)
	}
	// Another user is not held back by ul_a's limit.
	b1, err := pgx.Connect(ctx, e.dsn("ul_b", "ul_b-pw", "app2"))
	if err != nil {
		t.Fatalf("ul_b while ul_a is at its limit: %v", err)
	}
	defer b1.Close(context.Background())
	// ul_b may have one client: the second is refused, naming the limit.
	_, err = pgx.Connect(ctx, e.dsn("ul_b", "ul_b-pw", "app"))
	if sqlState(err) != "53300" || !strings.Contains(err.Error(), "max_user_client_connections = 1") {
		t.Fatalf("second client of ul_b: %v, want 53300 naming max_user_client_connections", err)
	}
	// Once ul_a's transactions end, its idle backends of app make room
	// for its pool of app2.
	for _, tx := range held {
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	a2, err := pgx.Connect(ctx, e.dsn("ul_a", "ul_a-pw", "app2"))
	if err != nil {
		t.Fatalf("ul_a on app2 after its app backends went idle: %v", err)
	}
	defer a2.Close(context.Background())
	if _, err := a2.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	d := e.direct(ctx)
	defer d.Close(ctx)
	var n int
	if err := d.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE usename = 'ul_a'").Scan(&n); err != nil || n > 2 {
		t.Fatalf("%d backends of ul_a (%v), max_user_connections = 2", n, err)
	}
	ut := e.mustPsqlAdmin(ctx, "SHOW USERS")
	sameCols(t, "SHOW USERS", ut.cols, "name", "max_user_connections", "current_connections",
		"max_user_client_connections", "current_client_connections")
	if r, ok := ut.find("name", "ul_a"); !ok || r["max_user_connections"] != "2" || r["current_connections"] != "2" ||
		r["current_client_connections"] != "3" {
		t.Errorf("SHOW USERS, ul_a:\n%s", ut)
	}
	if r, ok := ut.find("name", "ul_b"); !ok || r["max_user_client_connections"] != "1" || r["current_client_connections"] != "1" {
		t.Errorf("SHOW USERS, ul_b:\n%s", ut)
	}
	dbs := e.mustPsqlAdmin(ctx, "SHOW DATABASES")
	if r, ok := dbs.find("name", "app2"); !ok || r["max_client_connections"] != "2" || r["current_client_connections"] != "2" {
		t.Errorf("SHOW DATABASES, app2:\n%s", dbs)
	}
	// app2 has two clients (b1, a2): its max_db_client_connections.
	_, err = pgx.Connect(ctx, e.dsn("ul_a", "ul_a-pw", "app2"))
	if sqlState(err) != "53300" || !strings.Contains(err.Error(), "max_db_client_connections = 2") {
		t.Fatalf("third client of app2: %v, want 53300 naming max_db_client_connections", err)
	}
	// A client that leaves frees its place.
	_ = b1.Close(ctx)
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := pgx.Connect(ctx, e.dsn("ul_b", "ul_b-pw", "app"))
		if err == nil {
			_ = c.Close(ctx)
			break
		}
		if sqlState(err) != "53300" || time.Now().After(deadline) {
			t.Fatalf("ul_b after its client left: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
