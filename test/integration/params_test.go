package integration

// Client-visible parameters in transaction pooling with one backend: every
// client must keep seeing its own settings although they all share it.

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

type paramView struct {
	TimeZone, AppName, DateStyle, ClientEncoding string
}

func showParams(ctx context.Context, t *testing.T, who string, c *pgx.Conn) paramView {
	t.Helper()
	var v paramView
	for _, q := range []struct {
		sql string
		dst *string
	}{
		{"SHOW TimeZone", &v.TimeZone},
		{"SHOW application_name", &v.AppName},
		{"SHOW DateStyle", &v.DateStyle},
		{"SHOW client_encoding", &v.ClientEncoding},
	} {
		if err := c.QueryRow(ctx, q.sql).Scan(q.dst); err != nil {
			t.Fatalf("%s: %s: %v", who, q.sql, err)
		}
	}
	return v
}

func expectParams(ctx context.Context, t *testing.T, who string, c *pgx.Conn, want paramView) {
	t.Helper()
	if got := showParams(ctx, t, who, c); got != want {
		t.Fatalf("%s sees %+v, want %+v", who, got, want)
	}
	if got := c.PgConn().ParameterStatus("TimeZone"); got != want.TimeZone {
		t.Fatalf("%s: ParameterStatus TimeZone = %q, want %q", who, got, want.TimeZone)
	}
	if got := c.PgConn().ParameterStatus("DateStyle"); got != want.DateStyle {
		t.Fatalf("%s: ParameterStatus DateStyle = %q, want %q", who, got, want.DateStyle)
	}
	if got := c.PgConn().ParameterStatus("application_name"); got != want.AppName {
		t.Fatalf("%s: ParameterStatus application_name = %q, want %q", who, got, want.AppName)
	}
}

func backendPID(ctx context.Context, t *testing.T, c *pgx.Conn) uint32 {
	t.Helper()
	var pid uint32
	if err := c.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	return pid
}

// beginOnBackend begins a transaction on c and returns it with the pid of
// the backend it holds.
func beginOnBackend(ctx context.Context, t *testing.T, c *pgx.Conn) (pgx.Tx, int) {
	t.Helper()
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	if err := tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	return tx, pid
}

func TestParamsTransactionModeIsolation(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{mode: "transaction", size: 1})
	ctx := testCtx(t)

	// The server's defaults, as a client that sets nothing should see them.
	var def paramView
	d := e.direct(ctx)
	for _, q := range []struct {
		sql string
		dst *string
	}{{"SHOW TimeZone", &def.TimeZone}, {"SHOW DateStyle", &def.DateStyle}} {
		if err := d.QueryRow(ctx, q.sql).Scan(q.dst); err != nil {
			t.Fatal(err)
		}
	}
	def.ClientEncoding = "UTF8"
	if def.TimeZone == "America/New_York" || def.TimeZone == "Asia/Tokyo" || def.DateStyle == "SQL, DMY" {
		t.Fatalf("server defaults %+v collide with the test's values", def)
	}

	a := e.connect(ctx, "default_query_exec_mode=exec",
		"TimeZone="+qEscape("America/New_York"),
		"application_name=a",
		"DateStyle="+qEscape("SQL, DMY"))
	b := e.connect(ctx, "default_query_exec_mode=exec")

	wantA := paramView{TimeZone: "America/New_York", AppName: "a", DateStyle: "SQL, DMY", ClientEncoding: "UTF8"}
	wantB := def

	// One backend for both: the test is about sharing it.
	if pa, pb := backendPID(ctx, t, a), backendPID(ctx, t, b); pa != pb {
		t.Fatalf("pool of one gave two backends: %d, %d", pa, pb)
	}

	for i := 0; i < 3; i++ {
		expectParams(ctx, t, "A", a, wantA)
		expectParams(ctx, t, "B", b, wantB)
	}
	// A date rendered per DateStyle, not only SHOW.
	var sa, sb string
	if err := a.QueryRow(ctx, "SELECT '2024-03-07'::date::text").Scan(&sa); err != nil {
		t.Fatal(err)
	}
	if err := b.QueryRow(ctx, "SELECT '2024-03-07'::date::text").Scan(&sb); err != nil {
		t.Fatal(err)
	}
	if sa != "07/03/2024" || sb != "2024-03-07" {
		t.Fatalf("dates: A %q (want 07/03/2024), B %q (want 2024-03-07)", sa, sb)
	}

	// A changes its TimeZone outside a transaction.
	if _, err := a.Exec(ctx, "SET TimeZone = 'Asia/Tokyo'"); err != nil {
		t.Fatal(err)
	}
	wantA.TimeZone = "Asia/Tokyo"
	for i := 0; i < 3; i++ {
		expectParams(ctx, t, "A", a, wantA)
		expectParams(ctx, t, "B", b, wantB)
	}
	// now() rendered in each client's zone.
	var hA, hB int
	if err := a.QueryRow(ctx, "SELECT extract(timezone_hour FROM now())::int").Scan(&hA); err != nil {
		t.Fatal(err)
	}
	if hA != 9 {
		t.Fatalf("A's now() is in UTC%+d, want +9 (Tokyo)", hA)
	}
	if err := b.QueryRow(ctx, "SELECT extract(timezone_hour FROM now())::int").Scan(&hB); err != nil {
		t.Fatal(err)
	}
	if hB == 9 {
		t.Fatalf("B's now() is in Tokyo time: A's setting leaked")
	}

	// SET LOCAL and a rolled-back SET do not stick.
	txB, err := b.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := txB.Exec(ctx, "SET LOCAL TimeZone = 'Europe/Paris'"); err != nil {
		t.Fatal(err)
	}
	var tz string
	if err := txB.QueryRow(ctx, "SHOW TimeZone").Scan(&tz); err != nil || tz != "Europe/Paris" {
		t.Fatalf("inside B's transaction: %q %v", tz, err)
	}
	if err := txB.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	expectParams(ctx, t, "B after SET LOCAL", b, wantB)
	expectParams(ctx, t, "A", a, wantA)

	txA, err := a.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := txA.Exec(ctx, "SET TimeZone = 'Europe/Berlin'"); err != nil {
		t.Fatal(err)
	}
	if err := txA.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	expectParams(ctx, t, "A after rolled-back SET", a, wantA)
	expectParams(ctx, t, "B", b, wantB)

	// A client that connects now sees the defaults, not A's last values.
	c := e.connect(ctx, "default_query_exec_mode=exec")
	expectParams(ctx, t, "C", c, wantB)
}

func TestParamsStartupOptions(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{mode: "transaction", size: 1})
	ctx := testCtx(t)

	// search_path is a list: "myschema,public" is two schemas, as
	// PostgreSQL reads it from the startup packet, not one quoted name.
	opts := qEscape("-c search_path=myschema,public -c statement_timeout=1234")
	a := e.connect(ctx, "default_query_exec_mode=exec", "options="+opts)
	b := e.connect(ctx, "default_query_exec_mode=exec")
	// The same list as a startup parameter of its own (lib/pq, pgjdbc's
	// currentSchema): public is on the path, so its tables resolve.
	c := e.connect(ctx, "default_query_exec_mode=exec", "search_path="+qEscape("other, public"))

	var defPath string
	if err := e.direct(ctx).QueryRow(ctx, "SHOW search_path").Scan(&defPath); err != nil {
		t.Fatal(err)
	}

	if pa, pb := backendPID(ctx, t, a), backendPID(ctx, t, b); pa != pb {
		t.Fatalf("pool of one gave two backends: %d, %d", pa, pb)
	}
	check := func(who string, c *pgx.Conn, wantTimeout, wantPath string) {
		t.Helper()
		var st, sp string
		if err := c.QueryRow(ctx, "SHOW statement_timeout").Scan(&st); err != nil {
			t.Fatalf("%s: %v", who, err)
		}
		if err := c.QueryRow(ctx, "SHOW search_path").Scan(&sp); err != nil {
			t.Fatalf("%s: %v", who, err)
		}
		if st != wantTimeout || sp != wantPath {
			t.Fatalf("%s: statement_timeout=%q search_path=%q, want %q %q", who, st, sp, wantTimeout, wantPath)
		}
	}
	for i := 0; i < 3; i++ {
		check("A (options)", a, "1234ms", "myschema,public")
		check("B (no options)", b, "0", defPath)
		check("C (search_path parameter)", c, "0", "other, public")
		var schemas string
		if err := c.QueryRow(ctx, "SELECT array_to_string(current_schemas(false), ',')").Scan(&schemas); err != nil {
			t.Fatal(err)
		}
		if schemas != "public" {
			t.Fatalf("C: current_schemas = %q, want public (the path was taken as one name?)", schemas)
		}
	}

	// The option is in force, not only displayed: A's long query times out.
	start := time.Now()
	_, err := a.Exec(ctx, "SELECT pg_sleep(3)")
	if sqlState(err) != "57014" {
		t.Fatalf("A's pg_sleep(3) with statement_timeout=1234ms: %v", err)
	}
	if el := time.Since(start); el > 2800*time.Millisecond {
		t.Fatalf("statement_timeout not applied: query ran %s", el)
	}
	// B's identical query is not limited by A's option.
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := b.Exec(qctx, "SELECT pg_sleep(1.5)"); err != nil {
		t.Fatalf("B's pg_sleep(1.5) failed (A's statement_timeout leaked?): %v", err)
	}
	check("A again", a, "1234ms", "myschema,public")
	check("B again", b, "0", defPath)
}

// qEscape escapes a DSN query value; pgx does not turn '+' into a space.
func qEscape(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}

// Clients that log in with the same parameters share one parameter set in
// the proxy; a SET by one of them must not leak into the others.
func TestParamsSharedSetCopiedOnWrite(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{mode: "transaction", size: 1})
	ctx := testCtx(t)
	opts := []string{"default_query_exec_mode=exec", "application_name=same", "TimeZone=" + qEscape("America/New_York")}
	a := e.connect(ctx, opts...)
	b := e.connect(ctx, opts...)
	if _, err := a.Exec(ctx, "SET TimeZone = 'Asia/Tokyo'"); err != nil {
		t.Fatal(err)
	}
	var tzA, tzB string
	if err := b.QueryRow(ctx, "SHOW TimeZone").Scan(&tzB); err != nil {
		t.Fatal(err)
	}
	if err := a.QueryRow(ctx, "SHOW TimeZone").Scan(&tzA); err != nil {
		t.Fatal(err)
	}
	if tzA != "Asia/Tokyo" || tzB != "America/New_York" {
		t.Fatalf("after A's SET: A sees %q (want Asia/Tokyo), B sees %q (want America/New_York)", tzA, tzB)
	}
	// A third client with the same login gets the login's value too.
	c := e.connect(ctx, opts...)
	var tzC string
	if err := c.QueryRow(ctx, "SHOW TimeZone").Scan(&tzC); err != nil || tzC != "America/New_York" {
		t.Fatalf("new client sees %q, %v; want America/New_York", tzC, err)
	}
}

// TestParamsExplicitOverOptions: a setting given both as a startup
// parameter and in options=-c keeps the parameter's value, as on
// PostgreSQL, which applies options first (lib/pq's TestRuntimeParameters,
// found by the Go-suites sweep helper); one given only in options applies.
func TestParamsExplicitOverOptions(t *testing.T) {
	leakCheck(t)
	forModes(t, proxyOpts{size: 2}, func(t *testing.T, e *env, mode string) {
		ctx := testCtx(t)
		opts := qEscape("-c application_name=from_options -c statement_timeout=1234 -c DateStyle=SQL,DMY -c work_mem=5MB")
		c := e.connect(ctx, "default_query_exec_mode=exec", "application_name=explicit", "statement_timeout=4321",
			"datestyle="+qEscape("ISO, YMD"), "options="+opts)
		for _, want := range [][2]string{
			{"application_name", "explicit"},
			{"statement_timeout", "4321ms"},
			{"DateStyle", "ISO, YMD"},
			{"work_mem", "5MB"},
		} {
			var got string
			if err := c.QueryRow(ctx, "SHOW "+want[0]).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != want[1] {
				t.Errorf("%s = %q, want %q", want[0], got, want[1])
			}
		}
		if got := c.PgConn().ParameterStatus("application_name"); got != "explicit" {
			t.Errorf("ParameterStatus application_name = %q, want explicit", got)
		}
	})
}

// TestParamsReservedWordSettingName: a client's custom startup setting
// whose name has a reserved-word part (some.var: SOME is reserved) is
// reset on its backend before another client uses it; unquoted, that
// RESET was a syntax error, sent to the next client (postgres.js's suite,
// found by a sweep helper).
func TestParamsReservedWordSettingName(t *testing.T) {
	leakCheck(t)
	e := startProxy(t, proxyOpts{mode: "transaction", size: 1})
	ctx := testCtx(t)
	a := e.connect(ctx, "default_query_exec_mode=exec", "some.var=yay", "select.Mixed=1")
	var v string
	if err := a.QueryRow(ctx, "SELECT current_setting('some.var') || current_setting('select.mixed')").Scan(&v); err != nil || v != "yay1" {
		t.Fatalf("A: some.var and select.mixed = %q, %v; want yay1", v, err)
	}
	b := e.connect(ctx, "default_query_exec_mode=exec")
	if pa, pb := backendPID(ctx, t, a), backendPID(ctx, t, b); pa != pb {
		t.Fatalf("pool of one gave two backends: %d, %d", pa, pb)
	}
	if err := b.QueryRow(ctx, "SELECT coalesce(current_setting('some.var', true), '')").Scan(&v); err != nil || v != "" {
		t.Fatalf("B (no startup setting): some.var = %q, %v; want it reset", v, err)
	}
	if err := a.QueryRow(ctx, "SELECT current_setting('some.var')").Scan(&v); err != nil || v != "yay" {
		t.Fatalf("A again: some.var = %q, %v; want yay", v, err)
	}
}

// TestParamsLongApplicationName: a startup application_name longer than
// PostgreSQL keeps is cut to 63 bytes (whole characters) with the NOTICE
// PostgreSQL gives at login, in the welcome as in SHOW (tokio-postgres's
// notices test).
func TestParamsLongApplicationName(t *testing.T) {
	leakCheck(t)
	forModes(t, proxyOpts{size: 1}, func(t *testing.T, e *env, mode string) {
		ctx := testCtx(t)
		for _, tc := range []struct{ name, want string }{
			{strings.Repeat("x", 65), strings.Repeat("x", 63)},
			{strings.Repeat("é", 40), strings.Repeat("é", 31)}, // 2 bytes each: 62 kept
		} {
			var notices []*pgconn.Notice
			c := e.mustConnect(ctx, func(cfg *pgx.ConnConfig) {
				cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices = append(notices, n) }
			}, "application_name="+qEscape(tc.name))
			want := `identifier "` + tc.name + `" will be truncated to "` + tc.want + `"`
			if len(notices) != 1 || notices[0].Code != "42622" || notices[0].Message != want {
				t.Fatalf("login notices %+v, want one 42622 %q", notices, want)
			}
			if got := c.PgConn().ParameterStatus("application_name"); got != tc.want {
				t.Fatalf("ParameterStatus application_name = %q, want %q", got, tc.want)
			}
			if tc.want[0] == 'x' { // the server shows non-ASCII as '?'
				var shown string
				if err := c.QueryRow(ctx, "SHOW application_name").Scan(&shown); err != nil || shown != tc.want {
					t.Fatalf("SHOW application_name = %q, %v; want %q", shown, err, tc.want)
				}
			}
		}
	})
}

// TestParamsFollowServerChanges: the server's parameters that clients are
// told at login come from the pool's newest backend, so after the server's
// defaults change (a restart with a new version or configuration) clients
// that log in later see the new values, as they would directly; before,
// the first backend's stayed until pgrecycle restarted (asyncpg's
// test_server_version_01 after a minor upgrade).
func TestParamsFollowServerChanges(t *testing.T) {
	leakCheck(t)
	ctx := testCtx(t)
	// A role of its own, whose default the test changes, so no other
	// test sees it.
	role, pw := poolRole(ctx, t)
	e := startProxy(t, proxyOpts{mode: "transaction", size: 1, dbUser: role, users: map[string]string{role: pw}})
	d := e.direct(ctx)
	a := e.connect(ctx)
	if tz := a.PgConn().ParameterStatus("TimeZone"); tz == "" || tz == "Asia/Tokyo" {
		t.Fatalf("first client's TimeZone = %q", tz)
	}
	if _, err := d.Exec(ctx, "ALTER ROLE "+role+" SET TimeZone = 'Asia/Tokyo'"); err != nil {
		t.Fatal(err)
	}
	// The old backend is gone; the next query opens one with the new
	// default.
	leaveBackend(ctx, t, d, a)
	b := e.connect(ctx)
	var tz string
	if err := b.QueryRow(ctx, "SHOW TimeZone").Scan(&tz); err != nil {
		t.Fatal(err)
	}
	if got := b.PgConn().ParameterStatus("TimeZone"); got != "Asia/Tokyo" || tz != "Asia/Tokyo" {
		t.Fatalf("client logged in after the change: ParameterStatus TimeZone %q, SHOW %q; want Asia/Tokyo", got, tz)
	}
	// The client logged in before keeps what it was told, on any backend.
	first := a.PgConn().ParameterStatus("TimeZone")
	if err := a.QueryRow(ctx, "SHOW TimeZone").Scan(&tz); err != nil || tz != first {
		t.Fatalf("client logged in before the change: SHOW TimeZone %q, %v; want %q", tz, err, first)
	}
}
