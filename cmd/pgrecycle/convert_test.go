package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgrecycle/pgrecycle/config"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files of testdata/ (convert-pgbouncer outputs)")

// convertFile runs the subcommand through run, as main does.
func convertFile(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(append([]string{convertCommand}, args...), &out, &errb)
	return out.String(), errb.String(), code
}

// samples are the pgbouncer.ini files of testdata; a sample NAME.ini is
// converted with NAME.userlist.txt when that exists, and its output is
// compared with NAME.toml.
func samples(t *testing.T) []string {
	t.Helper()
	inis, err := filepath.Glob(filepath.Join("testdata", "*.ini"))
	if err != nil {
		t.Fatal(err)
	}
	if len(inis) < 4 {
		t.Fatalf("want at least 4 sample pgbouncer.ini files in testdata, found %d", len(inis))
	}
	return inis
}

func sampleArgs(ini string) []string {
	args := []string{ini}
	if ul := strings.TrimSuffix(ini, ".ini") + ".userlist.txt"; fileExists(ul) {
		args = append(args, ul)
	}
	return args
}

func TestConvertGolden(t *testing.T) {
	for _, ini := range samples(t) {
		t.Run(filepath.Base(ini), func(t *testing.T) {
			out, stderr, code := convertFile(t, sampleArgs(ini)...)
			if code != 0 {
				t.Fatalf("exit %d, stderr:\n%s", code, stderr)
			}
			if !strings.Contains(stderr, "database(s) converted") {
				t.Errorf("stderr has no summary: %q", stderr)
			}
			if _, err := config.Parse([]byte(out), ""); err != nil {
				t.Fatalf("config.Parse refuses the output: %v\n%s", err, out)
			}
			golden := strings.TrimSuffix(ini, ".ini") + ".toml"
			if *updateGolden {
				if err := os.WriteFile(golden, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run TestConvertGolden -update to create it)", err)
			}
			if out != string(want) {
				t.Errorf("output differs from %s (go test -run TestConvertGolden -update rewrites it after review):\n%s", golden, lineDiff(string(want), out))
			}
		})
	}
}

// lineDiff shows the first differing lines, enough to find a change.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return "line " + strconv.Itoa(i+1) + ":\n  want: " + wl + "\n  got:  " + gl
		}
	}
	return "(same lines)"
}

// convertSample converts a sample and parses the result.
func convertSample(t *testing.T, name string) (*config.Config, string) {
	t.Helper()
	ini := filepath.Join("testdata", name)
	out, stderr, code := convertFile(t, sampleArgs(ini)...)
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	cfg, err := config.Parse([]byte(out), "")
	if err != nil {
		t.Fatalf("config.Parse: %v\n%s", err, out)
	}
	return cfg, out
}

func wantEqual[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func wantContains(t *testing.T, out string, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q", s)
		}
	}
}

func TestConvertHeroku(t *testing.T) {
	cfg, out := convertSample(t, "heroku.ini")
	wantEqual(t, "listen.addr", cfg.Listen.Addr, "localhost:6000")
	wantEqual(t, "listen.unix_socket_dir", cfg.Listen.UnixSocketDir, "")
	wantEqual(t, "listen.max_client_conn", cfg.Listen.MaxClientConn, 100)
	wantEqual(t, "auth.type", cfg.Auth.Type, "scram-sha-256")
	wantEqual(t, "auth.file", cfg.Auth.File, "/app/vendor/pgbouncer/users.txt")
	wantEqual(t, "pool.mode", cfg.Pool.Mode, "transaction")
	wantEqual(t, "pool.size", cfg.Pool.Size, 1)
	wantEqual(t, "pool.server_reset_query", cfg.Pool.ServerResetQuery, "")
	wantEqual(t, "pool.server_idle_timeout", cfg.Pool.ServerIdleTimeout.D(), time.Minute)
	wantEqual(t, "pool.query_wait_timeout", cfg.Pool.QueryWaitTimeout.D(), 2*time.Minute)
	wantEqual(t, "recycle.max_lifetime", cfg.Recycle.MaxLifetime.D(), 5*time.Minute)
	wantEqual(t, "recycle.lifetime_jitter", cfg.Recycle.LifetimeJitter, 0.1)
	db := cfg.Databases["database_url"]
	if db == nil {
		t.Fatalf("no database database_url: %v", cfg.Databases)
	}
	wantEqual(t, "host", db.Host, "ec2-52-0-113-7.compute-1.amazonaws.com")
	wantEqual(t, "dbname", db.DBName, "d4k2p9q1x8z7")
	wantEqual(t, "user", db.User, "u7h3v6c0")
	wantEqual(t, "sslmode", db.SSLMode, "require")
	wantEqual(t, "databases", len(cfg.Databases), 2)
	wantContains(t, out,
		"# Userlist testdata/heroku.userlist.txt checked: 3 users;",
		"# NOTE: users without a password cannot log in under scram-sha-256.\n",
		"# NOTE: under scram-sha-256, PgBouncer refused users listed with an md5 hash;",
		"# reserve_pool_size = 1\n",
		"# ignore_startup_parameters = extra_float_digits\n#   nothing to ignore: pgrecycle accepts every startup parameter",
		"# pidfile = /app/vendor/pgbouncer/pgbouncer.pid\n",
		"# server_tls_ciphers = HIGH:",
	)
}

func TestConvertSidecar(t *testing.T) {
	cfg, out := convertSample(t, "sidecar.ini")
	wantEqual(t, "listen.addr", cfg.Listen.Addr, "0.0.0.0:6432")
	wantEqual(t, "listen.unix_socket_dir", cfg.Listen.UnixSocketDir, "") // unix_socket_dir = (empty)
	wantEqual(t, "listen.client_login_timeout", cfg.Listen.ClientLoginTimeout.D(), 10*time.Second)
	wantEqual(t, "listen.tcp_keepidle", cfg.Listen.TCPKeepIdle.D(), 30*time.Second)
	wantEqual(t, "listen.tcp_keepintvl", cfg.Listen.TCPKeepIntvl.D(), 10*time.Second)
	wantEqual(t, "listen.tcp_keepcnt", cfg.Listen.TCPKeepCnt, 3)
	wantEqual(t, "listen.tcp_user_timeout (ms in PgBouncer)", cfg.Listen.TCPUserTimeout.D(), 45*time.Second)
	wantEqual(t, "auth.type", cfg.Auth.Type, "md5")
	wantEqual(t, "auth.admin_users", strings.Join(cfg.Auth.AdminUsers, ","), "pgbouncer_admin")
	wantEqual(t, "pool.size", cfg.Pool.Size, 15)
	wantEqual(t, "pool.min_idle", cfg.Pool.MinIdle, 5)
	wantEqual(t, "pool.max_db_connections", cfg.Pool.MaxDBConnections, 40)
	wantEqual(t, "pool.query_wait_timeout (fractional seconds)", cfg.Pool.QueryWaitTimeout.D(), 30500*time.Millisecond)
	wantEqual(t, "pool.server_connect_timeout", cfg.Pool.ServerConnectTimeout.D(), 5*time.Second)
	wantEqual(t, "pool.server_login_retry", cfg.Pool.ServerLoginRetry.D(), 3*time.Second)
	wantEqual(t, "pool.client_idle_timeout", cfg.Pool.ClientIdleTimeout.D(), 15*time.Minute)
	wantEqual(t, "pool.idle_transaction_timeout", cfg.Pool.IdleTransactionTimeout.D(), time.Minute)
	wantEqual(t, "pool.server_check_query", cfg.Pool.ServerCheckQuery, "select 1")
	wantEqual(t, "pool.server_check_delay", cfg.Pool.ServerCheckDelay.D(), 10*time.Second)
	wantEqual(t, "pool.max_prepared_statements", cfg.Pool.MaxPreparedStatements, 500)
	wantEqual(t, "recycle.max_lifetime", cfg.Recycle.MaxLifetime.D(), 30*time.Minute)
	ro := cfg.Databases["orders_ro"]
	if ro == nil {
		t.Fatal("no database orders_ro")
	}
	wantEqual(t, "orders_ro pool.mode", ro.Pool.Mode, "session")
	wantEqual(t, "orders_ro pool.size", ro.Pool.Size, 30)
	wantEqual(t, "orders_ro dbname", ro.DBName, "orders")
	wantEqual(t, "orders pool.mode (inherited)", cfg.Databases["orders"].Pool.Mode, "transaction")
	// The "*" fallback stays the fallback.
	wantEqual(t, "databases", len(cfg.Databases), 3)
	if fb := cfg.Database("any_tenant"); fb == nil || fb.Host != "pg-shared.prod.svc.cluster.local" || fb.Port != 5433 || fb.DBName != "any_tenant" {
		t.Fatalf("fallback database: %+v", fb)
	}
	wantContains(t, out,
		"# Userlist testdata/sidecar.userlist.txt checked: 4 users; 1 with a plain-text\n# password, 2 with an md5 hash, 1 with a SCRAM secret, 0 without a password.\n",
		"# stats_users = pgbouncer_stats, datadog\n",
		"# logfile = /dev/stdout\n#   pgrecycle logs to stderr",
	)
}

func TestConvertMultitenant(t *testing.T) {
	cfg, out := convertSample(t, "multitenant.ini")
	wantEqual(t, "listen.addr (first of a list)", cfg.Listen.Addr, "10.20.0.5:6432")
	wantEqual(t, "listen.unix_socket_dir", cfg.Listen.UnixSocketDir, "/var/run/pgbouncer")
	wantEqual(t, "listen.so_reuseport", cfg.Listen.SOReusePort, true)
	wantEqual(t, "auth.admin_users", strings.Join(cfg.Auth.AdminUsers, ","), "postgres,ops")
	wantEqual(t, "pool.server_reset_query_always", cfg.Pool.ServerResetQueryAlways, true)
	wantEqual(t, "log.level (verbose = 1)", cfg.Log.Level, "debug")

	eu := cfg.Databases["tenants_eu"]
	wantEqual(t, "tenants_eu plan_cache_mode", eu.Parameters["plan_cache_mode"], "force_custom_plan")
	wantEqual(t, "tenants_eu statement_timeout", eu.Parameters["statement_timeout"], "5000")
	wantEqual(t, "tenants_eu pool.size", eu.Pool.Size, 40)
	wantEqual(t, "tenants_eu pool.min_idle", eu.Pool.MinIdle, 10)
	wantEqual(t, "tenants_eu password", eu.Password, "Ch4nge.me")

	us := cfg.Databases["tenants_us"]
	wantEqual(t, "tenants_us search_path", us.Parameters["search_path"], `app, public, "$user"`)
	wantEqual(t, "tenants_us timezone (SET TIME ZONE)", us.Parameters["timezone"], "UTC")
	wantEqual(t, "tenants_us plan_cache_mode (quoted)", us.Parameters["plan_cache_mode"], "force_custom_plan")
	wantEqual(t, "tenants_us port", us.Port, 5432)

	ev := cfg.Databases["events"]
	wantEqual(t, "events work_mem", ev.Parameters["work_mem"], "64MB")
	wantEqual(t, "events jit", ev.Parameters["jit"], "off")
	wantEqual(t, "events myext.tenant_mode", ev.Parameters["myext.tenant_mode"], "strict")
	wantEqual(t, "events client_encoding", ev.Parameters["client_encoding"], "UTF8")
	wantEqual(t, "events recycle.max_lifetime", ev.Recycle.MaxLifetime.D(), 10*time.Minute)
	wantEqual(t, "events pool.size", ev.Pool.Size, 5)

	rep := cfg.Databases["reporting"]
	wantEqual(t, "reporting host (first of a list)", rep.Host, "10.20.0.13")
	wantEqual(t, "reporting pool.mode", rep.Pool.Mode, "session")
	wantEqual(t, "reporting max_db_connections", rep.Pool.MaxDBConnections, 10)
	wantEqual(t, "reporting application_name", rep.Parameters["application_name"], "reporting-pool")

	bill := cfg.Databases["billing"]
	wantEqual(t, "billing pool.mode (statement)", bill.Pool.Mode, "transaction")
	wantEqual(t, "billing query_wait_timeout", bill.Pool.QueryWaitTimeout.D(), 10*time.Second)
	if len(bill.Parameters) != 0 {
		t.Errorf("billing parameters = %v, want none (its connect_query is not only SETs)", bill.Parameters)
	}
	batch := cfg.Databases["batch"]
	wantEqual(t, "batch datestyle", batch.Parameters["datestyle"], "ISO, DMY")
	wantEqual(t, "batch min_idle (clamped to size)", batch.Pool.MinIdle, 2)
	if _, ok := batch.Parameters["lock_timeout"]; ok {
		t.Error("SET LOCAL became a parameter")
	}
	crm := cfg.Databases["legacy-crm"]
	if crm == nil {
		t.Fatal("quoted database name legacy-crm missing")
	}
	wantEqual(t, "legacy-crm host", crm.Host, "/var/run/postgresql")
	wantEqual(t, "legacy-crm port", crm.Port, 5433)
	wantEqual(t, "local_admin host (PgBouncer's unix_socket_dir)", cfg.Databases["local_admin"].Host, "/var/run/pgbouncer")

	wantContains(t, out,
		"# NOTE: pool_mode = statement is not supported",
		"# [databases] billing: connect_query=SELECT set_config('app.audit', 'on', false)\n#   \"SELECT set_config('app.audit', 'on', false)\" is not a SET statement",
		"# [users] etl: pool_mode=session\n",
		"# query_timeout = 120\n#   no proxy-side query timeout",
		"# user = pgbouncer\n",
	)
}

func TestConvertTLSAuthQuery(t *testing.T) {
	cfg, out := convertSample(t, "tls-authquery.ini")
	wantEqual(t, "listen.addr (*)", cfg.Listen.Addr, ":5432")
	wantEqual(t, "tls.mode (verify-full)", cfg.TLS.Mode, "require")
	wantEqual(t, "tls.cert_file", cfg.TLS.CertFile, "/etc/pgbouncer/tls/server.crt")
	wantEqual(t, "tls.key_file", cfg.TLS.KeyFile, "/etc/pgbouncer/tls/server.key")
	wantEqual(t, "auth.file (placeholder)", cfg.Auth.File, "userlist.txt")
	// server_lifetime = 0: one use per backend.
	wantEqual(t, "recycle.max_lifetime", cfg.Recycle.MaxLifetime.D(), time.Duration(0))
	wantEqual(t, "recycle.max_transactions", cfg.Recycle.MaxTransactions, int64(1))
	// Databases come from the %include file.
	app := cfg.Databases["appdb"]
	if app == nil {
		t.Fatalf("appdb (from %%include) missing: %v", cfg.Databases)
	}
	wantEqual(t, "appdb sslmode", app.SSLMode, "verify-full")
	wantEqual(t, "appdb sslrootcert", app.SSLRootCert, "/etc/pgbouncer/tls/db-ca.crt")
	wantEqual(t, "appdb_replica sslmode", cfg.Databases["appdb_replica"].SSLMode, "verify-full")
	wantEqual(t, "auth.query", cfg.Auth.Query, "SELECT usename, passwd FROM pgbouncer.get_auth($1)")
	wantEqual(t, "auth.query_user", cfg.Auth.QueryUser, "pgbouncer_auth")
	// verify-full with a CA file: client certificates are required.
	wantEqual(t, "tls.client_cert", cfg.TLS.ClientCert, "require")
	wantEqual(t, "tls.client_ca_file", cfg.TLS.ClientCAFile, "/etc/pgbouncer/tls/clients-ca.crt")
	wantContains(t, out,
		"# auth_dbname = appdb\n#   pgrecycle runs auth.query on the database the client asks for",
		"# [peers] 1 = host=/var/run/pgbouncer-1\n",
	)
}

func TestConvertDefaults(t *testing.T) {
	// A file that sets little: PgBouncer's defaults where they differ.
	cfg, out := convertSample(t, "debian-default.ini")
	wantEqual(t, "listen.addr (listen_addr unset)", cfg.Listen.Addr, "")
	wantEqual(t, "listen.unix_socket_dir", cfg.Listen.UnixSocketDir, "/var/run/postgresql")
	wantEqual(t, "listen.max_client_conn", cfg.Listen.MaxClientConn, 100)
	wantEqual(t, "pool.mode", cfg.Pool.Mode, "session")
	wantEqual(t, "auth.type (hba)", cfg.Auth.Type, "md5")
	wantEqual(t, "recycle.max_lifetime", cfg.Recycle.MaxLifetime.D(), time.Hour)
	wantContains(t, out, "# auth_hba_file = /etc/pgbouncer/pg_hba.conf\n#   no pg_hba.conf-format file")
}

// writeTestFile puts a file in a temp dir and returns its path.
func writeTestFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConvertErrors(t *testing.T) {
	dir := t.TempDir()
	good := writeTestFile(t, dir, "good.ini", "[databases]\napp = host=db\n")
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no arguments", nil, "usage: pgrecycle convert-pgbouncer"},
		{"too many arguments", []string{good, good, good}, "usage: pgrecycle convert-pgbouncer"},
		{"missing file", []string{filepath.Join(dir, "nope.ini")}, "cannot read the PgBouncer configuration: open " + filepath.Join(dir, "nope.ini")},
		{"line without =", []string{writeTestFile(t, dir, "a.ini", "[pgbouncer]\nlisten_port 6432\n")}, "a.ini:2: syntax error"},
		{"unterminated section", []string{writeTestFile(t, dir, "b.ini", "[pgbouncer\n")}, "b.ini:1: syntax error"},
		{"unknown section", []string{writeTestFile(t, dir, "c.ini", "[pgbouncr]\n")}, "unknown section [pgbouncr]"},
		{"key before a section", []string{writeTestFile(t, dir, "d.ini", "listen_port = 1\n")}, "d.ini:1: syntax error"},
		{"bad connection string", []string{writeTestFile(t, dir, "e.ini", "[databases]\napp = host='db\n")}, "e.ini:2: app: connection string: unterminated quoted value"},
		{"empty connection value", []string{writeTestFile(t, dir, "f.ini", "[databases]\napp = host=db port=\n")}, "empty value for port"},
		{"unknown connection parameter", []string{writeTestFile(t, dir, "g.ini", "[databases]\napp = host=db colour=blue\n")}, `unknown connection parameter "colour"`},
		{"bad integer", []string{writeTestFile(t, dir, "h.ini", "[pgbouncer]\ndefault_pool_size = ten\n")}, `h.ini:2: default_pool_size: invalid integer "ten"`},
		{"bad time", []string{writeTestFile(t, dir, "i.ini", "[pgbouncer]\nserver_lifetime = 1h\n")}, `invalid time "1h": want a number of seconds`},
		{"bad auth_type", []string{writeTestFile(t, dir, "j.ini", "[pgbouncer]\nauth_type = kerberos\n")}, `unknown auth_type "kerberos"`},
		{"missing include", []string{writeTestFile(t, dir, "k.ini", "%include "+filepath.Join(dir, "nope.inc")+"\n")}, "k.ini:1: %include"},
		{"missing userlist", []string{good, filepath.Join(dir, "nope.txt")}, "cannot read the userlist"},
		{"bad userlist", []string{good, writeTestFile(t, dir, "users.txt", "\"app\" \"unterminated\n")}, "users.txt: line 1:"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, stderr, code := convertFile(t, tc.args...)
			if code != 2 {
				t.Errorf("exit %d, want 2; stderr: %s", code, stderr)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr = %q, want it to contain %q", stderr, tc.want)
			}
			if out != "" {
				t.Errorf("stdout is not empty on error:\n%s", out)
			}
		})
	}
}

func TestConvertIncludeLoop(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "loop.ini")
	writeTestFile(t, dir, "loop.ini", "%include "+p+"\n")
	_, stderr, code := convertFile(t, p)
	if code != 2 || !strings.Contains(stderr, "nested more than") {
		t.Errorf("exit %d, stderr %q: want 2 and a nesting error", code, stderr)
	}
}

func TestConvertHelp(t *testing.T) {
	_, stderr, code := convertFile(t, "-h")
	if code != 0 || !strings.Contains(stderr, "usage:") {
		t.Errorf("-h: exit %d, stderr %q", code, stderr)
	}
}

// Small inputs, each checked for one mapping.
func TestConvertMappings(t *testing.T) {
	cases := []struct {
		name, ini string
		check     func(t *testing.T, c *config.Config)
	}{
		{"listen on every address", "[pgbouncer]\nlisten_addr = *\nlisten_port = 7000\n[databases]\na = host=h\n", func(t *testing.T, c *config.Config) {
			wantEqual(t, "addr", c.Listen.Addr, ":7000")
			wantEqual(t, "unix_socket_dir (PgBouncer's default is only suggested)", c.Listen.UnixSocketDir, "")
		}},
		{"IPv6 listen address", "[pgbouncer]\nlisten_addr = ::1\n[databases]\na = host=h\n", func(t *testing.T, c *config.Config) {
			wantEqual(t, "addr", c.Listen.Addr, "[::1]:6432")
		}},
		{"no listen_addr: socket only", "[databases]\na = host=h\n", func(t *testing.T, c *config.Config) {
			wantEqual(t, "addr", c.Listen.Addr, "")
			wantEqual(t, "unix_socket_dir", c.Listen.UnixSocketDir, "/tmp")
		}},
		{"auth_type any", "[pgbouncer]\nlisten_addr=*\nauth_type = any\n[databases]\na = host=h user=u password=p\n", func(t *testing.T, c *config.Config) {
			wantEqual(t, "auth.type", c.Auth.Type, "trust")
			wantEqual(t, "auth.file", c.Auth.File, "")
		}},
		{"auth_type pam", "[pgbouncer]\nlisten_addr=*\nauth_type = pam\n[databases]\na = host=h\n", func(t *testing.T, c *config.Config) {
			wantEqual(t, "auth.type", c.Auth.Type, "scram-sha-256")
			wantEqual(t, "auth.file", c.Auth.File, "userlist.txt")
		}},
		{"auth_user without auth_query", "[pgbouncer]\nlisten_addr=*\nauth_user = lookup\nauth_file = users.txt\n[databases]\na = host=h\n", func(t *testing.T, c *config.Config) {
			wantEqual(t, "auth.query_user", c.Auth.QueryUser, "lookup")
			if !strings.Contains(c.Auth.Query, "FROM pg_authid WHERE rolname=$1") {
				t.Errorf("auth.query = %q, want PgBouncer's default", c.Auth.Query)
			}
		}},
		{"statement mode", "[pgbouncer]\nlisten_addr=*\npool_mode = statement\n[databases]\na = host=h\n", func(t *testing.T, c *config.Config) {
			wantEqual(t, "pool.mode", c.Pool.Mode, "transaction")
		}},
		{"sub-second times", "[pgbouncer]\nlisten_addr=*\nserver_check_delay = 0.25\nquery_wait_timeout = 0\n[databases]\na = host=h\n", func(t *testing.T, c *config.Config) {
			wantEqual(t, "server_check_delay", c.Pool.ServerCheckDelay.D(), 250*time.Millisecond)
			wantEqual(t, "query_wait_timeout", c.Pool.QueryWaitTimeout.D(), time.Duration(0))
		}},
		{"zero connect timeout and login retry", "[pgbouncer]\nlisten_addr=*\nserver_connect_timeout = 0\nserver_login_retry = 0\n[databases]\na = host=h\n", func(t *testing.T, c *config.Config) {
			wantEqual(t, "server_connect_timeout", c.Pool.ServerConnectTimeout.D(), 15*time.Second)
			wantEqual(t, "server_login_retry", c.Pool.ServerLoginRetry.D(), time.Second)
		}},
		{"global min_pool_size over a small pool", "[pgbouncer]\nlisten_addr=*\nmin_pool_size = 8\n[databases]\nsmall = host=h pool_size=3\nbig = host=h\n", func(t *testing.T, c *config.Config) {
			wantEqual(t, "small min_idle", c.Databases["small"].Pool.MinIdle, 3)
			wantEqual(t, "big min_idle", c.Databases["big"].Pool.MinIdle, 8)
		}},
		{"later definitions win", "[pgbouncer]\nlisten_addr=*\ndefault_pool_size = 5\ndefault_pool_size = 7\n[databases]\na = host=one\na = host=two\n", func(t *testing.T, c *config.Config) {
			wantEqual(t, "pool.size", c.Pool.Size, 7)
			wantEqual(t, "a host", c.Databases["a"].Host, "two")
		}},
		{"database name that needs quoting", "[pgbouncer]\nlisten_addr=*\n[databases]\n\"my.db\" = host=h\n", func(t *testing.T, c *config.Config) {
			if c.Databases["my.db"] == nil {
				t.Errorf("databases = %v, want my.db", c.Databases)
			}
		}},
		{"client TLS without files", "[pgbouncer]\nlisten_addr=*\nclient_tls_sslmode = require\n[databases]\na = host=h\n", func(t *testing.T, c *config.Config) {
			wantEqual(t, "tls.mode", c.TLS.Mode, "disable")
		}},
		{"client TLS allow", "[pgbouncer]\nlisten_addr=*\nclient_tls_sslmode = prefer\nclient_tls_cert_file = c.pem\nclient_tls_key_file = k.pem\n[databases]\na = host=h\n", func(t *testing.T, c *config.Config) {
			wantEqual(t, "tls.mode", c.TLS.Mode, "allow")
		}},
		{"the admin console's name", "[pgbouncer]\nlisten_addr=*\n[databases]\npgrecycle = host=h\nother = host=h\n", func(t *testing.T, c *config.Config) {
			if _, ok := c.Databases["pgrecycle"]; ok {
				t.Error("a database named pgrecycle was written")
			}
		}},
		{"unknown setting is listed, not fatal", "[pgbouncer]\nlisten_addr=*\nfuture_setting = 1\n[databases]\na = host=h\n", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := writeTestFile(t, t.TempDir(), "pgbouncer.ini", tc.ini)
			out, stderr, code := convertFile(t, p)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			c, err := config.Parse([]byte(out), "")
			if err != nil {
				t.Fatalf("config.Parse: %v\n%s", err, out)
			}
			if tc.check != nil {
				tc.check(t, c)
			}
		})
	}
}

func TestConnectQueryParameters(t *testing.T) {
	cases := []struct {
		q      string
		want   map[string]string
		reason string // substring of the reason; "" = converted
	}{
		{"SET plan_cache_mode = force_custom_plan; SET statement_timeout = 5000", map[string]string{"plan_cache_mode": "force_custom_plan", "statement_timeout": "5000"}, ""},
		{"set Statement_Timeout to '5s';", map[string]string{"statement_timeout": "5s"}, ""},
		{"SET SESSION work_mem = '64MB'", map[string]string{"work_mem": "64MB"}, ""},
		{"SET search_path = tenant_1, public", map[string]string{"search_path": "tenant_1, public"}, ""},
		{"SET search_path TO 'My Schema', public", map[string]string{"search_path": `"My Schema", public`}, ""},
		{"SET TIME ZONE 'Europe/Paris'", map[string]string{"timezone": "Europe/Paris"}, ""},
		{"SET SCHEMA 'app'", map[string]string{"search_path": "app"}, ""},
		{"SET NAMES 'UTF8'", map[string]string{"client_encoding": "UTF8"}, ""},
		{"SET random_page_cost = 1.1; SET extra_float_digits = -3", map[string]string{"random_page_cost": "1.1", "extra_float_digits": "-3"}, ""},
		{"SET application_name = 'it''s'", map[string]string{"application_name": "it's"}, ""},
		{"SET myext.mode = on", map[string]string{"myext.mode": "on"}, ""},
		{"SET work_mem TO DEFAULT; SET jit = off", map[string]string{"jit": "off"}, ""},
		{"SET work_mem TO DEFAULT", nil, "sets nothing"},
		{"SELECT 1", nil, "is not a SET statement"},
		{"SET LOCAL statement_timeout = 1", nil, "SET LOCAL"},
		{"SET ROLE app_rw", nil, "changes the role"},
		{"SET SESSION AUTHORIZATION app", nil, "role"},
		{"SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", nil, "one transaction"},
		{"SET x = $1", nil, "dollar"},
		{"SET a = 1 -- comment", nil, "comment"},
		{"SET a = E'\\n'", nil, "prefixed string"},
		{"SET a = 'open", nil, "unterminated"},
		{"SET a =", nil, "cannot read"},
		{"SET a = 1 2", nil, "cannot read"},
		{"SET user = x", nil, "cannot send"},
		{"SET jit = off; SELECT pg_sleep(0)", nil, "SELECT pg_sleep(0)"},
	}
	for _, tc := range cases {
		got, reason := connectQueryParameters(tc.q)
		if tc.reason != "" {
			if !strings.Contains(reason, tc.reason) {
				t.Errorf("%q: reason %q, want it to contain %q (got %v)", tc.q, reason, tc.reason, got)
			}
			continue
		}
		if reason != "" {
			t.Errorf("%q: not converted: %s", tc.q, reason)
			continue
		}
		m := map[string]string{}
		for _, p := range got {
			m[p.Key] = p.Value
		}
		if len(m) != len(tc.want) {
			t.Errorf("%q: got %v, want %v", tc.q, m, tc.want)
			continue
		}
		for k, v := range tc.want {
			if m[k] != v {
				t.Errorf("%q: %s = %q, want %q", tc.q, k, m[k], v)
			}
		}
	}
}

func TestParseConnString(t *testing.T) {
	got, err := parseConnString("host=db  port=5433 connect_query='SET a = ''x''; SET b = 1'  user=u")
	if err != nil {
		t.Fatal(err)
	}
	want := []connParam{{"host", "db"}, {"port", "5433"}, {"connect_query", "SET a = 'x'; SET b = 1"}, {"user", "u"}}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("pair %d = %v, want %v", i, got[i], want[i])
		}
	}
	for _, bad := range []string{"host", "=x", "host=", "host='x", "host=x port"} {
		if _, err := parseConnString(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestTOMLString(t *testing.T) {
	cases := map[string]string{
		`plain`:       `"plain"`,
		`a"b\c`:       `"a\"b\\c"`,
		"tab\there":   `"tab\there"`,
		"bell\x07":    `"bell\u0007"`,
		"unicode ×±é": `"unicode ×±é"`,
	}
	for in, want := range cases {
		if got := tomlString(in); got != want {
			t.Errorf("tomlString(%q) = %s, want %s", in, got, want)
		}
	}
}

// convertedSamples are the [pgbouncer] settings the converter maps, with a
// value each; noEquivalent lists the others.
var convertedSamples = map[string]string{
	"listen_addr": "*", "listen_port": "6432", "unix_socket_dir": "/tmp", "max_client_conn": "100",
	"client_login_timeout": "60", "so_reuseport": "1", "tcp_keepalive": "1", "tcp_keepidle": "30",
	"tcp_keepintvl": "10", "tcp_keepcnt": "3", "tcp_user_timeout": "1000", "auth_type": "md5",
	"auth_file": "/etc/pgbouncer/userlist.txt", "auth_user": "lookup", "auth_query": "SELECT 1",
	"admin_users": "admin", "pool_mode": "session", "default_pool_size": "20", "min_pool_size": "1",
	"max_db_connections": "50", "query_wait_timeout": "120", "server_reset_query": "DISCARD ALL",
	"server_reset_query_always": "0", "server_connect_timeout": "15", "server_login_retry": "15",
	"server_idle_timeout": "600", "server_check_query": "select 1", "server_check_delay": "30",
	"client_idle_timeout": "0", "idle_transaction_timeout": "0", "max_prepared_statements": "200",
	"server_lifetime": "3600", "server_tls_sslmode": "prefer", "server_tls_ca_file": "/ca.crt",
	"client_tls_sslmode": "require", "client_tls_cert_file": "/c.crt", "client_tls_key_file": "/c.key",
	"verbose": "1",
}

// Every setting the converter knows is mapped without being listed as
// unknown, and docs/migrating-from-pgbouncer.md names each of them.
func TestConvertKnowsEverySetting(t *testing.T) {
	var ini strings.Builder
	ini.WriteString("[pgbouncer]\n")
	// Converted only in some cases (TLS files with a TLS mode, server TLS
	// with a database, auth_query with auth_user), listed otherwise.
	conditional := []string{"client_tls_cert_file", "client_tls_key_file", "server_tls_sslmode", "server_tls_ca_file", "auth_query"}
	for k, v := range convertedSamples {
		if _, dup := noEquivalent[k]; dup && !slices.Contains(conditional, k) {
			t.Errorf("%s is both converted and listed as having no equivalent", k)
		}
		ini.WriteString(k + " = " + v + "\n")
	}
	ini.WriteString("[databases]\napp = host=db\n")
	p := writeTestFile(t, t.TempDir(), "all.ini", ini.String())
	out, stderr, code := convertFile(t, p)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if _, err := config.Parse([]byte(out), ""); err != nil {
		t.Fatalf("config.Parse: %v\n%s", err, out)
	}
	if strings.Contains(out, "not a setting this converter knows") {
		t.Errorf("a converted setting is listed as unknown:\n%s", out)
	}
	if _, tail, ok := strings.Cut(out, "with no pgrecycle equivalent"); ok {
		t.Errorf("converted settings listed as having no equivalent:%s", tail)
	}

	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "migrating-from-pgbouncer.md"))
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range convertedSamples {
		keys = append(keys, k)
	}
	for k := range noEquivalent {
		keys = append(keys, k)
	}
	for _, k := range keys {
		if !strings.Contains(string(doc), "`"+k+"`") {
			t.Errorf("docs/migrating-from-pgbouncer.md does not mention `%s`", k)
		}
	}
}
