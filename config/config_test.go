package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

const examplePath = "../pgrecycle.example.toml"

// minimal is the smallest valid file: everything else has a default.
const minimal = "[auth]\nfile = \"userlist.txt\"\n"

func mustParse(t *testing.T, text string) *Config {
	t.Helper()
	c, err := Parse([]byte(text), "")
	if err != nil {
		t.Fatalf("Parse:\n%s\nerror: %v", text, err)
	}
	return c
}

// configErrors returns the *Error values inside err.
func configErrors(err error) []*Error {
	var out []*Error
	var walk func(error)
	walk = func(err error) {
		var e *Error
		if errors.As(err, &e) && err == error(e) {
			out = append(out, e)
			return
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
		}
	}
	walk(err)
	return out
}

func TestDefaults(t *testing.T) {
	d := Default()
	want := &Config{
		Listen: Listen{
			Addr:               "127.0.0.1:6432",
			MaxClientConn:      10000,
			ClientLoginTimeout: Duration(60 * time.Second),
			ShutdownTimeout:    Duration(30 * time.Second),
			ClientParkAfter:    Duration(500 * time.Millisecond),
			TCPKeepalive:       true,
		},
		Auth: Auth{Type: "scram-sha-256", AdminUsers: []string{}, MaxFailedLogins: 20},
		Pool: Pool{
			Mode:                  "transaction",
			Size:                  20,
			QueryWaitTimeout:      Duration(120 * time.Second),
			ServerResetQuery:      "DISCARD ALL",
			ServerConnectTimeout:  Duration(15 * time.Second),
			ServerLoginRetry:      Duration(15 * time.Second),
			ServerIdleTimeout:     Duration(600 * time.Second),
			ServerCheckQuery:      "SELECT 1",
			ServerCheckDelay:      Duration(30 * time.Second),
			MaxPreparedStatements: 200,
			MaxConcurrentConnects: 4,
			ReservePoolTimeout:    Duration(5 * time.Second),
		},
		Recycle: Recycle{
			MaxLifetime:         Duration(time.Hour),
			LifetimeJitter:      0.1,
			MemoryCheckInterval: Duration(10 * time.Second),
			MemorySource:        "contexts",
			MaxRetiringShare:    0.5,
		},
		Parameters: map[string]string{},
		Databases:  map[string]*Database{},
		Users:      map[string]*User{},
		TLS:        TLS{Mode: "disable", ClientCert: "none"},
		Health: Health{
			Enabled:               true,
			Interval:              Duration(time.Minute),
			QueryTimeout:          Duration(5 * time.Second),
			MemoryFraction:        0.8,
			GenericPlanPartitions: 10,
			XIDAgeFraction:        0.8,
			DeadTuples:            1000000,
			DeadTuplesFraction:    0.2,
			IdleInTransaction:     Duration(5 * time.Minute),
			ConnectionsFraction:   0.8,
			BypassConnections:     10,
		},
		Log: Log{Level: "info", Format: "json"},
	}
	if !reflect.DeepEqual(d, want) {
		t.Fatalf("Default() =\n%+v\nwant\n%+v", d, want)
	}
	// Default needs only auth.file to be valid.
	if err := d.Validate(); err == nil || !strings.Contains(err.Error(), "auth.file: required") {
		t.Fatalf("Default().Validate() = %v, want auth.file required", err)
	}

	// An almost empty file gives the defaults.
	c := mustParse(t, minimal)
	want.Auth.File = "userlist.txt"
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("Parse(minimal) =\n%+v\nwant\n%+v", c, want)
	}

	// A database section with only host gets the database defaults.
	c = mustParse(t, minimal+"[databases.app]\nhost = \"db1\"\n")
	got := c.Databases["app"]
	wantDB := c.NewDatabase("app", "db1")
	if !reflect.DeepEqual(got, wantDB) {
		t.Fatalf("database defaults =\n%+v\nwant\n%+v", got, wantDB)
	}
	if got.Port != 5432 || got.DBName != "app" || got.SSLMode != "prefer" || got.Pool != c.Pool || got.Recycle != c.Recycle {
		t.Fatalf("database defaults wrong: %+v", got)
	}
}

const fullFile = `
[listen]
addr = "0.0.0.0:7432"
unix_socket_dir = "/tmp/pgr"
max_client_conn = 500
client_login_timeout = "5s"
shutdown_timeout = "1m"
client_park_after = "250ms"
tcp_keepalive = false
tcp_keepidle = "30s"
tcp_keepintvl = "10s"
tcp_keepcnt = 3
tcp_user_timeout = "20s"

[auth]
type = "md5"
file = "/etc/pgrecycle/userlist.txt"
admin_users = ["postgres", "ops"]

[pool]
mode = "session"
size = 7
min_idle = 2
max_db_connections = 50
query_wait_timeout = "0"
server_reset_query = "RESET ALL"
server_reset_query_always = true
server_connect_timeout = "3s"
server_login_retry = "2s"
server_idle_timeout = "0s"
server_check_query = ""
server_check_delay = "0s"
client_idle_timeout = "1h"
idle_transaction_timeout = "30s"
max_prepared_statements = 0
max_concurrent_connects = 1
reserve_pool_size = 3
reserve_pool_timeout = "2s"

[recycle]
max_lifetime = "30m"
lifetime_jitter = 0
max_queries = 1000
max_transactions = 500
max_memory = "64MB"
memory_check_interval = "0"
memory_source = "proc"
max_retiring_share = 1

[parameters]
plan_cache_mode = "force_custom_plan"
jit = false
statement_timeout = 0
random_page_cost = 1.5
myapp.tenant = "none"
"other.Setting" = 1

[databases.app]
host = "/var/run/postgresql"
port = 5433
dbname = "application"
user = "app_owner"
password = "s3cret"
sslmode = "verify-full"
sslrootcert = "/etc/ssl/root.crt"

[databases.app.parameters]
work_mem = "64MB"
jit = true

[databases.app.pool]
size = 3

[databases.app.recycle]
max_memory = 33554432

[users.alice]
password = "alice-pw"

[users.alice.parameters]
work_mem = "128MB"

[metrics]
addr = "127.0.0.1:9930"

[health]
enabled = false
interval = "5m"
query_timeout = "2s"
user = "monitor"
memory_fraction = 0.5
generic_plan_partitions = 0
xid_age_fraction = 1.5
dead_tuples = 5000
dead_tuples_fraction = 0
idle_in_transaction = "30s"
connections_fraction = 0.9
bypass_connections = 0

[log]
level = "debug"
format = "console"
`

func TestFullFileRoundTrip(t *testing.T) {
	c := mustParse(t, fullFile)

	wantPool := Pool{
		Mode: "session", Size: 7, MinIdle: 2, MaxDBConnections: 50,
		QueryWaitTimeout: 0, ServerResetQuery: "RESET ALL", ServerResetQueryAlways: true,
		ServerConnectTimeout: Duration(3 * time.Second), ServerLoginRetry: Duration(2 * time.Second),
		ServerIdleTimeout: 0, ServerCheckQuery: "", ServerCheckDelay: 0,
		ClientIdleTimeout: Duration(time.Hour), IdleTransactionTimeout: Duration(30 * time.Second),
		MaxPreparedStatements: 0, MaxConcurrentConnects: 1, ReservePoolSize: 3, ReservePoolTimeout: Duration(2 * time.Second),
	}
	wantRecycle := Recycle{
		MaxLifetime: Duration(30 * time.Minute), LifetimeJitter: 0, MaxQueries: 1000,
		MaxTransactions: 500, MaxMemory: 64 << 20, MemoryCheckInterval: 0,
		MemorySource: "proc", MaxRetiringShare: 1,
	}
	appPool := wantPool
	appPool.Size = 3
	appRecycle := wantRecycle
	appRecycle.MaxMemory = 32 << 20
	global := map[string]string{
		"plan_cache_mode": "force_custom_plan", "jit": "off", "statement_timeout": "0",
		"random_page_cost": "1.5", "myapp.tenant": "none", "other.setting": "1",
	}
	want := &Config{
		Listen: Listen{
			Addr: "0.0.0.0:7432", UnixSocketDir: "/tmp/pgr", MaxClientConn: 500,
			ClientLoginTimeout: Duration(5 * time.Second), ShutdownTimeout: Duration(time.Minute),
			ClientParkAfter: Duration(250 * time.Millisecond),
			TCPKeepalive:    false, TCPKeepIdle: Duration(30 * time.Second), TCPKeepIntvl: Duration(10 * time.Second),
			TCPKeepCnt: 3, TCPUserTimeout: Duration(20 * time.Second),
		},
		Auth:       Auth{Type: "md5", File: "/etc/pgrecycle/userlist.txt", AdminUsers: []string{"postgres", "ops"}, MaxFailedLogins: 20},
		Pool:       wantPool,
		Recycle:    wantRecycle,
		Parameters: global,
		Databases: map[string]*Database{"app": {
			Name: "app", Host: "/var/run/postgresql", Port: 5433, DBName: "application",
			User: "app_owner", Password: "s3cret", SSLMode: "verify-full", SSLRootCert: "/etc/ssl/root.crt",
			Parameters: map[string]string{
				"plan_cache_mode": "force_custom_plan", "jit": "on", "statement_timeout": "0",
				"random_page_cost": "1.5", "myapp.tenant": "none", "other.setting": "1", "work_mem": "64MB",
			},
			Pool:    appPool,
			Recycle: appRecycle,
		}},
		Users: map[string]*User{"alice": {
			Password:   "alice-pw",
			Parameters: map[string]string{"work_mem": "128MB"},
		}},
		TLS:     TLS{Mode: "disable", ClientCert: "none"},
		Metrics: Metrics{Addr: "127.0.0.1:9930"},
		Health: Health{
			Enabled: false, Interval: Duration(5 * time.Minute), QueryTimeout: Duration(2 * time.Second),
			User: "monitor", MemoryFraction: 0.5, GenericPlanPartitions: 0, XIDAgeFraction: 1.5,
			DeadTuples: 5000, DeadTuplesFraction: 0, IdleInTransaction: Duration(30 * time.Second),
			ConnectionsFraction: 0.9, BypassConnections: 0,
		},
		Log: Log{Level: "debug", Format: "console"},
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("Parse(fullFile) =\n%#v\nwant\n%#v\ndiff: %v", c, want, Diff(c, want))
	}

	// Encoding and parsing again gives the same Config.
	b, err := c.TOML()
	if err != nil {
		t.Fatal(err)
	}
	again := mustParse(t, string(b))
	if !reflect.DeepEqual(c, again) {
		t.Fatalf("round trip differs: %v\n%s", Diff(c, again), b)
	}
}

func TestDatabaseOverride(t *testing.T) {
	const db = `
[databases.app]
host = "h"
[databases.app.pool]
size = 5
[databases.app.recycle]
max_queries = 100
[databases.other]
host = "h2"
`
	tests := []struct {
		name        string
		global      string
		wantMode    string
		wantGlobal  int // global pool.size
		wantLife    Duration
		wantJitter  float64
		wantQueries int64
	}{
		{"defaults", "", "transaction", 20, Duration(time.Hour), 0.1, 100},
		{"global changes are inherited", "[pool]\nmode = \"session\"\nsize = 9\n[recycle]\nmax_lifetime = \"5m\"\nlifetime_jitter = 0.2\nmax_queries = 7\n",
			"session", 9, Duration(5 * time.Minute), 0.2, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustParse(t, minimal+tt.global+db)
			app := c.Databases["app"]
			if app.Pool.Size != 5 {
				t.Errorf("app pool.size = %d, want 5 (own)", app.Pool.Size)
			}
			if app.Pool.Mode != tt.wantMode {
				t.Errorf("app pool.mode = %q, want %q (global)", app.Pool.Mode, tt.wantMode)
			}
			if c.Pool.Size != tt.wantGlobal {
				t.Errorf("global pool.size = %d, want %d (override must not leak)", c.Pool.Size, tt.wantGlobal)
			}
			if app.Recycle.MaxQueries != 100 || app.Recycle.MaxLifetime != tt.wantLife || app.Recycle.LifetimeJitter != tt.wantJitter {
				t.Errorf("app recycle = %+v, want max_queries 100, max_lifetime %v, jitter %v", app.Recycle, tt.wantLife, tt.wantJitter)
			}
			other := c.Databases["other"]
			if other.Pool != c.Pool || other.Recycle != c.Recycle {
				t.Errorf("database without overrides: pool %+v recycle %+v, want the global ones", other.Pool, other.Recycle)
			}
			// Everything except the overridden keys equals the global values.
			p := app.Pool
			p.Size = c.Pool.Size
			if p != c.Pool {
				t.Errorf("app pool differs from global beyond size: %+v vs %+v", p, c.Pool)
			}
		})
	}
}

func TestStartupParameters(t *testing.T) {
	c := mustParse(t, minimal+`
[parameters]
a = "global"
b = "global"
c = "global"
DateStyle = "ISO, MDY"
[databases.app]
host = "h"
[databases.app.parameters]
b = "db"
c = "db"
[users.alice.parameters]
c = "user"
datestyle = "German"
`)
	tests := []struct {
		db, user string
		want     map[string]string
	}{
		{"app", "alice", map[string]string{"a": "global", "b": "db", "c": "user", "datestyle": "German"}},
		{"app", "bob", map[string]string{"a": "global", "b": "db", "c": "db", "datestyle": "ISO, MDY"}},
		{"nope", "alice", map[string]string{"a": "global", "b": "global", "c": "user", "datestyle": "German"}},
		{"nope", "bob", map[string]string{"a": "global", "b": "global", "c": "global", "datestyle": "ISO, MDY"}},
	}
	for _, tt := range tests {
		got := c.StartupParameters(tt.db, tt.user)
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("StartupParameters(%q, %q) = %v, want %v", tt.db, tt.user, got, tt.want)
		}
		got["a"] = "changed"
		if c.Parameters["a"] != "global" {
			t.Fatal("StartupParameters returned a map shared with the Config")
		}
	}
}

func TestParameterValues(t *testing.T) {
	c := mustParse(t, minimal+`
[parameters]
jit = false
enable_seqscan = true
work_mem = "64MB"
statement_timeout = 0
lock_timeout = 1500
random_page_cost = 1.1
seq_page_cost = 2.0
search_path = "app, public"
`)
	want := map[string]string{
		"jit": "off", "enable_seqscan": "on", "work_mem": "64MB", "statement_timeout": "0",
		"lock_timeout": "1500", "random_page_cost": "1.1", "seq_page_cost": "2", "search_path": "app, public",
	}
	if !reflect.DeepEqual(c.Parameters, want) {
		t.Fatalf("parameters = %v, want %v", c.Parameters, want)
	}
}

func TestValidationErrors(t *testing.T) {
	db := "[databases.app]\nhost = \"h\"\n"
	tests := []struct {
		name string
		text string
		key  string // Error.Key expected among the errors
		msg  string // substring of that error's text
	}{
		{"pool size", minimal + "[pool]\nsize = 0\n", "pool.size", "config: line 4: pool.size: must be at least 1"},
		{"cert method without client certificates", "[auth]\ntype = \"cert\"\n[tls]\nmode = \"require\"\ncert_file = \"c\"\nkey_file = \"k\"\n", "tls.client_cert", "needs client certificates"},
		{"client_cert without CAs", minimal + "[tls]\nmode = \"require\"\ncert_file = \"c\"\nkey_file = \"k\"\nclient_cert = \"verify\"\n", "tls.client_ca_file", "required unless"},
		{"client_cert without TLS", minimal + "[tls]\nclient_cert = \"require\"\nclient_ca_file = \"ca\"\n", "tls.client_cert", "needs tls.mode"},
		{"pool min_idle over size", minimal + "[pool]\nsize = 2\nmin_idle = 3\n", "pool.min_idle", "must not exceed size (2)"},
		{"pool min_idle negative", minimal + "[pool]\nmin_idle = -1\n", "pool.min_idle", "must not be negative"},
		{"pool mode", minimal + "[pool]\nmode = \"statement\"\n", "pool.mode", `must be one of "session", "transaction", not "statement"`},
		{"pool max_db_connections", minimal + "[pool]\nmax_db_connections = -1\n", "pool.max_db_connections", "must not be negative"},
		{"pool max_db_client_connections", minimal + "[pool]\nmax_db_client_connections = -1\n", "pool.max_db_client_connections", "must not be negative"},
		{"limits max_user_connections", minimal + "[limits]\nmax_user_connections = -2\n", "limits.max_user_connections", "must not be negative"},
		{"user max_user_client_connections", minimal + "[users.bob]\nmax_user_client_connections = -1\n", "users.bob.max_user_client_connections", "must not be negative"},
		{"pool max_prepared_statements", minimal + "[pool]\nmax_prepared_statements = -1\n", "pool.max_prepared_statements", "must not be negative"},
		{"pool max_concurrent_connects", minimal + "[pool]\nmax_concurrent_connects = 0\n", "pool.max_concurrent_connects", "must be at least 1"},
		{"pool server_connect_timeout", minimal + "[pool]\nserver_connect_timeout = \"0s\"\n", "pool.server_connect_timeout", "greater than 0"},
		{"pool server_login_retry", minimal + "[pool]\nserver_login_retry = \"0\"\n", "pool.server_login_retry", "greater than 0"},
		{"pool type", minimal + "[pool]\nsize = \"20\"\n", "pool.size", "line 4: pool.size: wrong type: want integer, got string"},
		{"auth type", minimal + "type = \"password\"\n", "auth.type", `must be one of "trust", "plain", "md5", "scram-sha-256"`},
		{"auth file", "[auth]\ntype = \"md5\"\n", "auth.file", `required unless auth.type is "trust"`},
		{"admin user empty", minimal + "admin_users = [\"\"]\n", "auth.admin_users", "entry 1 is empty"},
		{"recycle jitter 1", minimal + "[recycle]\nlifetime_jitter = 1.0\n", "recycle.lifetime_jitter", "less than 1"},
		{"recycle jitter negative", minimal + "[recycle]\nlifetime_jitter = -0.1\n", "recycle.lifetime_jitter", "at least 0"},
		{"recycle jitter nan", minimal + "[recycle]\nlifetime_jitter = nan\n", "recycle.lifetime_jitter", "at least 0"},
		{"recycle share 0", minimal + "[recycle]\nmax_retiring_share = 0\n", "recycle.max_retiring_share", "greater than 0 and at most 1"},
		{"recycle share 1.5", minimal + "[recycle]\nmax_retiring_share = 1.5\n", "recycle.max_retiring_share", "greater than 0 and at most 1"},
		{"recycle max_queries", minimal + "[recycle]\nmax_queries = -1\n", "recycle.max_queries", "must not be negative"},
		{"recycle max_transactions", minimal + "[recycle]\nmax_transactions = -5\n", "recycle.max_transactions", "must not be negative"},
		{"recycle memory_source", minimal + "[recycle]\nmemory_source = \"rss\"\n", "recycle.memory_source", `must be one of "contexts", "proc"`},
		{"recycle bad duration", minimal + "[recycle]\nmax_lifetime = \"1 hour\"\n", "recycle.max_lifetime", `config: line 4: recycle.max_lifetime: invalid duration "1 hour"`},
		{"recycle negative duration", minimal + "[recycle]\nmax_lifetime = \"-1h\"\n", "recycle.max_lifetime", "must not be negative"},
		{"recycle duration without unit", minimal + "[recycle]\nmax_lifetime = 3600\n", "recycle.max_lifetime", `invalid duration "3600"`},
		{"recycle bad size", minimal + "[recycle]\nmax_memory = \"64XB\"\n", "recycle.max_memory", `invalid size "64XB"`},
		{"recycle negative size", minimal + "[recycle]\nmax_memory = \"-1MB\"\n", "recycle.max_memory", "must not be negative"},
		{"recycle negative integer size", minimal + "[recycle]\nmax_memory = -1\n", "recycle.max_memory", "must not be negative"},
		{"health interval", minimal + "[health]\ninterval = \"0s\"\n", "health.interval", "greater than 0"},
		{"health query_timeout", minimal + "[health]\nquery_timeout = \"0\"\n", "health.query_timeout", "greater than 0"},
		{"health memory_fraction", minimal + "[health]\nmemory_fraction = 1.5\n", "health.memory_fraction", "between 0 and 1"},
		{"health xid_age_fraction", minimal + "[health]\nxid_age_fraction = 11\n", "health.xid_age_fraction", "between 0 and 10"},
		{"health dead_tuples_fraction", minimal + "[health]\ndead_tuples_fraction = -0.1\n", "health.dead_tuples_fraction", "between 0 and 1"},
		{"health connections_fraction nan", minimal + "[health]\nconnections_fraction = nan\n", "health.connections_fraction", "between 0 and 1"},
		{"health generic_plan_partitions", minimal + "[health]\ngeneric_plan_partitions = -1\n", "health.generic_plan_partitions", "must not be negative"},
		{"health dead_tuples", minimal + "[health]\ndead_tuples = -1\n", "health.dead_tuples", "must not be negative"},
		{"health bypass_connections", minimal + "[health]\nbypass_connections = -1\n", "health.bypass_connections", "must not be negative"},
		{"health idle_in_transaction", minimal + "[health]\nidle_in_transaction = \"-1s\"\n", "health.idle_in_transaction", "must not be negative"},
		{"log level", minimal + "[log]\nlevel = \"trace\"\n", "log.level", `must be one of "debug", "info", "warn", "error"`},
		{"log format", minimal + "[log]\nformat = \"text\"\n", "log.format", `must be one of "json", "console"`},
		{"listen addr required", minimal + "[listen]\naddr = \"\"\n", "listen.addr", "required unless listen.unix_socket_dir is set"},
		{"listen addr invalid", minimal + "[listen]\naddr = \"localhost\"\n", "listen.addr", `invalid address "localhost"`},
		{"listen addr bad port", minimal + "[listen]\naddr = \":99999\"\n", "listen.addr", "invalid address"},
		{"listen max_client_conn", minimal + "[listen]\nmax_client_conn = 0\n", "listen.max_client_conn", "must be at least 1"},
		{"listen tcp_keepcnt", minimal + "[listen]\ntcp_keepcnt = -1\n", "listen.tcp_keepcnt", "must not be negative"},
		{"listen socket path too long", minimal + "[listen]\nunix_socket_dir = \"/" + strings.Repeat("d", 120) + "\"\n", "listen.unix_socket_dir", "too long"},
		{"metrics addr", minimal + "[metrics]\naddr = \"9930\"\n", "metrics.addr", "invalid address"},
		{"database host missing", minimal + "[databases.app]\nport = 5432\n", "databases.app.host", "config: line 3: databases.app.host: required"},
		{"database host empty", minimal + "[databases.app]\nhost = \"\"\n", "databases.app.host", "required"},
		{"database port", minimal + db + "port = 0\n", "databases.app.port", "between 1 and 65535"},
		{"database dbname empty", minimal + db + "dbname = \"\"\n", "databases.app.dbname", "must not be empty"},
		{"database sslmode", minimal + db + "sslmode = \"on\"\n", "databases.app.sslmode", `must be one of "disable", "allow", "prefer", "require", "verify-ca", "verify-full"`},
		{"database reserved name", minimal + "[databases.pgrecycle]\nhost = \"h\"\n", "databases.pgrecycle", "reserved for the admin console"},
		{"database not a table", minimal + "[databases]\napp = \"host=h\"\n", "databases.app", "wrong type: want table, got string"},
		{"database pool override", minimal + db + "[databases.app.pool]\nsize = 0\n", "databases.app.pool.size", "must be at least 1"},
		{"database pool override type", minimal + db + "[databases.app.pool]\nsize = \"x\"\n", "databases.app.pool.size", "wrong type: want integer, got string"},
		{"database recycle override", minimal + db + "[databases.app.recycle]\nmemory_source = \"x\"\n", "databases.app.recycle.memory_source", "must be one of"},
		{"database recycle bad duration", minimal + db + "[databases.app.recycle]\nmax_lifetime = \"soon\"\n", "databases.app.recycle.max_lifetime", "invalid duration"},
		{"database min_idle over own size", minimal + "[pool]\nmin_idle = 5\n" + db + "[databases.app.pool]\nsize = 4\n", "databases.app.pool.min_idle", "must not exceed size (4)"},
		{"parameter name", minimal + "[parameters]\n\"bad-name\" = \"x\"\n", "parameters.bad-name", "invalid parameter name"},
		{"parameter name digit", minimal + "[parameters]\n1abc = \"x\"\n", "parameters.1abc", "invalid parameter name"},
		{"parameter name space", minimal + "[parameters]\n\"a b\" = \"x\"\n", `parameters."a b"`, "invalid parameter name"},
		{"parameter reserved", minimal + "[parameters]\nuser = \"x\"\n", "parameters.user", "set by pgrecycle"},
		{"parameter array", minimal + "[parameters]\nsearch_path = [\"a\"]\n", "parameters.search_path", "want string, number or boolean, got array"},
		{"parameter dotted duplicate", minimal + "[parameters]\n\"x.y\" = 1\nx.Y = 2\n", `parameters."x.y"`, `same parameter as "x.Y"`},
		{"parameter dotted bad name", minimal + "[parameters]\nx.\"a b\" = 1\n", `parameters.x."a b"`, "invalid parameter name"},
		{"parameter datetime", minimal + "[parameters]\nx = 1979-05-27\n", "parameters.x", "got datetime"},
		{"parameter NUL", minimal + "[parameters]\nx = \"a\\u0000b\"\n", "parameters.x", "NUL"},
		{"parameter case duplicate", minimal + "[parameters]\nDateStyle = \"ISO\"\ndatestyle = \"SQL\"\n", "parameters.datestyle", "case-insensitive"},
		{"parameters not a table", minimal + "[databases.app]\nhost = \"h\"\nparameters = 5\n", "databases.app.parameters", "want table"},
		{"database parameter name", minimal + db + "[databases.app.parameters]\n\"x-y\" = 1\n", "databases.app.parameters.x-y", "invalid parameter name"},
		{"user parameter name", minimal + "[users.u.parameters]\n\"x-y\" = 1\n", "users.u.parameters.x-y", "invalid parameter name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.text), "")
			if err == nil {
				t.Fatalf("Parse succeeded, want an error for %s", tt.key)
			}
			var found bool
			for _, e := range configErrors(err) {
				if e.Key == tt.key && strings.Contains(e.Error(), tt.msg) {
					found = true
				}
			}
			if !found {
				t.Fatalf("error %q\ndoes not name key %q with %q", err, tt.key, tt.msg)
			}
			if !strings.HasPrefix(err.Error(), "config: ") {
				t.Errorf("error %q does not start with \"config: \"", err)
			}
		})
	}
}

func TestValidationAccepts(t *testing.T) {
	tests := []struct{ name, text string }{
		{"trust without file", "[auth]\ntype = \"trust\"\n"},
		{"unix socket only", minimal + "[listen]\naddr = \"\"\nunix_socket_dir = \"/tmp\"\n"},
		{"ephemeral port", minimal + "[listen]\naddr = \"127.0.0.1:0\"\n"},
		{"all interfaces", minimal + "[listen]\naddr = \":6432\"\n"},
		{"jitter 0", minimal + "[recycle]\nlifetime_jitter = 0\n"},
		{"share 1", minimal + "[recycle]\nmax_retiring_share = 1\n"},
		{"min_idle equals size", minimal + "[pool]\nsize = 3\nmin_idle = 3\n"},
		{"custom parameter", minimal + "[parameters]\n\"myext.setting_2\" = \"x\"\n_x = 1\n"},
		{"custom parameter as table", minimal + "[parameters.myext]\nsetting = 1\n[databases.app]\nhost = \"h\"\nparameters.myext.other = 2\n"},
		{"sslrootcert system", minimal + "[databases.app]\nhost = \"h\"\nsslmode = \"verify-full\"\nsslrootcert = \"system\"\n"},
		{"inline database", minimal + "[databases]\napp = { host = \"h\", pool = { size = 2 } }\n"},
		{"dotted keys", minimal + "[databases.app]\nhost = \"h\"\npool.size = 2\nrecycle.max_memory = \"1GB\"\n"},
		{"quoted database name", minimal + "[databases.\"my.db\"]\nhost = \"h\"\n"},
		{"no databases", minimal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Parse([]byte(tt.text), ""); err != nil {
				t.Fatalf("Parse: %v", err)
			}
		})
	}
}

func TestMultipleErrors(t *testing.T) {
	text := minimal + `[pool]
size = 0
mode = "x"
[log]
level = "loud"
[databases.pgrecycle]
port = 70000
`
	_, err := Parse([]byte(text), "")
	errs := configErrors(err)
	var keys []string
	for _, e := range errs {
		keys = append(keys, e.Key)
	}
	want := []string{"pool.size", "pool.mode", "log.level", "databases.pgrecycle", "databases.pgrecycle.host", "databases.pgrecycle.port"}
	if !reflect.DeepEqual(keys, want) {
		t.Fatalf("keys = %v, want %v\n%v", keys, want, err)
	}
	// One line per problem, each naming its key.
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want) {
		t.Fatalf("error has %d lines, want %d:\n%v", len(lines), len(want), err)
	}
	for i, l := range lines {
		if !strings.HasPrefix(l, "config: ") || !strings.Contains(l, want[i]) {
			t.Errorf("line %q does not name %s", l, want[i])
		}
	}
}

func TestInheritedProblemReportedOnce(t *testing.T) {
	_, err := Parse([]byte(minimal+"[pool]\nsize = 0\n[databases.a]\nhost = \"h\"\n[databases.b]\nhost = \"h\"\n"), "")
	errs := configErrors(err)
	if len(errs) != 1 || errs[0].Key != "pool.size" {
		t.Fatalf("want one error for pool.size, got %v", err)
	}
	// A database that sets the same bad value itself is reported too.
	_, err = Parse([]byte(minimal+"[pool]\nsize = 0\n[databases.a]\nhost = \"h\"\npool.size = 0\n"), "")
	if errs := configErrors(err); len(errs) != 2 || errs[1].Key != "databases.a.pool.size" {
		t.Fatalf("want errors for pool.size and databases.a.pool.size, got %v", err)
	}
}

func TestUnknownKeys(t *testing.T) {
	tests := []struct {
		name string
		text string
		want []string // whole lines of the error, in order
	}{
		{"misspelled", minimal + "[pool]\nsise = 20\n",
			[]string{`config: line 4: unknown key "pool.sise" (did you mean "pool.size"?)`}},
		{"wrong case", minimal + "[pool]\nSize = 20\n",
			[]string{`config: line 4: unknown key "pool.Size" (did you mean "pool.size"?)`}},
		{"top level", "verbose = true\n" + minimal,
			[]string{`config: line 1: unknown key "verbose"`}},
		{"unknown table reported once", minimal + "[poool]\nsize = 1\nmode = \"x\"\n",
			[]string{`config: line 3: unknown key "poool" (did you mean "pool"?)`}},
		{"in database", minimal + "[databases.app]\nhost = \"h\"\nhots = \"x\"\n",
			[]string{`config: line 5: unknown key "databases.app.hots" (did you mean "databases.app.host"?)`}},
		{"in database pool", minimal + "[databases.app]\nhost = \"h\"\n[databases.app.pool]\nsize = 2\nmax_idle = 1\n",
			[]string{`config: line 7: unknown key "databases.app.pool.max_idle" (did you mean "databases.app.pool.min_idle"?)`}},
		{"in database recycle", minimal + "[databases.app]\nhost = \"h\"\nrecycle.max_querys = 1\n",
			[]string{`config: line 5: unknown key "databases.app.recycle.max_querys" (did you mean "databases.app.recycle.max_queries"?)`}},
		{"in user", minimal + "[users.bob]\npasword = \"x\"\n",
			[]string{`config: line 4: unknown key "users.bob.pasword" (did you mean "users.bob.password"?)`}},
		{"all of them, sorted", minimal + "[log]\nlvl = \"x\"\n[pool]\nzzz = 1\naaa = 2\n[databases.app]\nhost = \"h\"\nfoo = 1\n",
			[]string{
				`config: line 4: unknown key "log.lvl"`,
				`config: line 6: unknown key "pool.zzz"`,
				`config: line 7: unknown key "pool.aaa"`,
				`config: line 10: unknown key "databases.app.foo"`,
			}},
		{"with other problems", minimal + "[pool]\nsize = 0\nsise = 2\n",
			[]string{
				`config: line 4: pool.size: must be at least 1`,
				`config: line 5: unknown key "pool.sise" (did you mean "pool.size"?)`,
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.text), "")
			if err == nil {
				t.Fatal("Parse succeeded")
			}
			if got := strings.Split(err.Error(), "\n"); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("error:\n%s\nwant:\n%s", err, strings.Join(tt.want, "\n"))
			}
			for _, e := range configErrors(err) {
				if strings.Contains(e.Error(), "unknown key") && !e.Unknown {
					t.Errorf("%v: Unknown not set", e)
				}
			}
		})
	}
}

func TestSyntaxError(t *testing.T) {
	tests := []struct {
		text string
		line int
	}{
		{"[listen]\naddr = \"x\"\nmax_client_conn = \n", 3},
		{"[pool\nsize = 1\n", 2},
		{minimal + "[pool]\nsize = 1\nsize = 2\n", 5},
		{minimal + "\n\n\nx = \"unterminated\n", 6},
	}
	for _, tt := range tests {
		_, err := Parse([]byte(tt.text), "")
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("Parse(%q) = %v, want *Error", tt.text, err)
		}
		if e.Line != tt.line || !strings.HasPrefix(err.Error(), "config: line ") {
			t.Errorf("Parse(%q) = %v (line %d), want line %d", tt.text, err, e.Line, tt.line)
		}
	}
}

func TestDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		str  string
		err  bool
	}{
		{"10s", 10 * time.Second, "10s", false},
		{"1h", time.Hour, "1h", false},
		{"1m30s", 90 * time.Second, "1m30s", false},
		{"1h30m", 90 * time.Minute, "1h30m", false},
		{"90m", 90 * time.Minute, "1h30m", false},
		{"0s", 0, "0s", false},
		{"0", 0, "0s", false},
		{"250ms", 250 * time.Millisecond, "250ms", false},
		{" 5s ", 5 * time.Second, "5s", false},
		{"10", 0, "", true},
		{"1 hour", 0, "", true},
		{"10min", 0, "", true},
		{"-5s", 0, "", true},
		{"", 0, "", true},
	}
	for _, tt := range tests {
		var d Duration
		err := d.UnmarshalText([]byte(tt.in))
		if (err != nil) != tt.err {
			t.Errorf("UnmarshalText(%q) error = %v, want error %v", tt.in, err, tt.err)
			continue
		}
		if tt.err {
			continue
		}
		if d.D() != tt.want || d.String() != tt.str {
			t.Errorf("UnmarshalText(%q) = %v (%s), want %v (%s)", tt.in, d.D(), d, tt.want, tt.str)
		}
		b, _ := d.MarshalText()
		var back Duration
		if err := back.UnmarshalText(b); err != nil || back != d {
			t.Errorf("MarshalText round trip of %v: %q -> %v, %v", d, b, back, err)
		}
	}
}

func TestByteSize(t *testing.T) {
	tests := []struct {
		in   string
		want ByteSize
		str  string
		err  bool
	}{
		{"64MB", 64 << 20, "64MB", false},
		{"8MB", 8 << 20, "8MB", false},
		{"512kB", 512 << 10, "512kB", false},
		{"512KB", 512 << 10, "512kB", false},
		{"512KiB", 512 << 10, "512kB", false},
		{"1GB", 1 << 30, "1GB", false},
		{"2GiB", 2 << 30, "2GB", false},
		{"3MiB", 3 << 20, "3MB", false},
		{"1TB", 1 << 40, "1TB", false},
		{"1.5GB", 3 << 29, "1536MB", false},
		{"64 MB", 64 << 20, "64MB", false},
		{"0", 0, "0", false},
		{"0MB", 0, "0", false},
		{"123", 123, "123B", false},
		{"123B", 123, "123B", false},
		{"1024", 1024, "1kB", false},
		{"1536", 1536, "1536B", false},
		{"-1", 0, "", true},
		{"-64MB", 0, "", true},
		{"64XB", 0, "", true},
		{"MB", 0, "", true},
		{"", 0, "", true},
		{"1.5", 0, "", true},
		{"99999999999TB", 0, "", true},
	}
	for _, tt := range tests {
		var b ByteSize
		err := b.UnmarshalText([]byte(tt.in))
		if (err != nil) != tt.err {
			t.Errorf("UnmarshalText(%q) error = %v, want error %v", tt.in, err, tt.err)
			continue
		}
		if tt.err {
			continue
		}
		if b != tt.want || b.String() != tt.str {
			t.Errorf("UnmarshalText(%q) = %d (%s), want %d (%s)", tt.in, b, b, tt.want, tt.str)
		}
		m, _ := b.MarshalText()
		var back ByteSize
		if err := back.UnmarshalText(m); err != nil || back != b {
			t.Errorf("MarshalText round trip of %d: %q -> %d, %v", b, m, back, err)
		}
	}

	// From TOML: strings and integers (bytes).
	for text, want := range map[string]ByteSize{
		`max_memory = "64MB"`:  64 << 20,
		`max_memory = "512kB"`: 512 << 10,
		`max_memory = "1GB"`:   1 << 30,
		`max_memory = 1048576`: 1 << 20,
		`max_memory = "0"`:     0,
		`max_memory = 0`:       0,
	} {
		c := mustParse(t, minimal+"[recycle]\n"+text+"\n")
		if c.Recycle.MaxMemory != want {
			t.Errorf("%s: max_memory = %d, want %d", text, c.Recycle.MaxMemory, want)
		}
	}
}

func TestRelativePaths(t *testing.T) {
	dir := t.TempDir()
	text := `
[listen]
unix_socket_dir = "run"
[auth]
file = "userlist.txt"
[databases.a]
host = "h"
sslrootcert = "certs/root.crt"
[databases.b]
host = "h"
sslrootcert = "system"
[databases.c]
host = "h"
sslrootcert = "/abs/root.crt"
`
	path := filepath.Join(dir, "pgrecycle.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	// Load through a relative path: Path must still come out absolute.
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(wd, path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Load(rel)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct{ what, got, want string }{
		{"Path", c.Path, path},
		{"auth.file", c.Auth.File, filepath.Join(dir, "userlist.txt")},
		{"listen.unix_socket_dir", c.Listen.UnixSocketDir, filepath.Join(dir, "run")},
		{"listen socket", c.Listen.SocketPath(), filepath.Join(dir, "run", ".s.PGSQL.6432")},
		{"databases.a.sslrootcert", c.Databases["a"].SSLRootCert, filepath.Join(dir, "certs/root.crt")},
		{"databases.b.sslrootcert", c.Databases["b"].SSLRootCert, "system"},
		{"databases.c.sslrootcert", c.Databases["c"].SSLRootCert, "/abs/root.crt"},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s = %q, want %q", ck.what, ck.got, ck.want)
		}
	}

	// Parse without a base directory leaves paths as written.
	p := mustParse(t, text)
	if p.Auth.File != "userlist.txt" || p.Path != "" {
		t.Errorf("Parse: auth.file = %q, Path = %q; want as written and empty", p.Auth.File, p.Path)
	}
	// An absolute auth.file is kept.
	if c := mustParse(t, "[auth]\nfile = \"/etc/u.txt\"\n"); c.Auth.File != "/etc/u.txt" {
		t.Errorf("absolute auth.file changed to %q", c.Auth.File)
	}

	if _, err := Load(filepath.Join(dir, "missing.toml")); err == nil || !strings.HasPrefix(err.Error(), "config: ") {
		t.Errorf("Load(missing) = %v, want a config: error", err)
	}
}

func TestRedactedAndClone(t *testing.T) {
	c := mustParse(t, fullFile)
	orig := mustParse(t, fullFile)

	r := c.Redacted()
	if r.Databases["app"].Password != RedactedPassword || r.Users["alice"].Password != RedactedPassword {
		t.Fatalf("Redacted left a password: %+v %+v", r.Databases["app"], r.Users["alice"])
	}
	b, err := r.TOML()
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"s3cret", "alice-pw"} {
		if strings.Contains(string(b), secret) {
			t.Errorf("redacted TOML contains %q", secret)
		}
	}
	if !reflect.DeepEqual(c, orig) {
		t.Fatalf("Redacted modified the original: %v", Diff(orig, c))
	}
	// Only passwords differ.
	if d := Diff(c, r); !reflect.DeepEqual(d, []string{"databases.app.password", "users.alice.password"}) {
		t.Errorf("Diff(original, redacted) = %v", d)
	}
	// Empty passwords stay empty.
	if e := mustParse(t, minimal+"[databases.x]\nhost = \"h\"\n").Redacted(); e.Databases["x"].Password != "" {
		t.Errorf("empty password redacted to %q", e.Databases["x"].Password)
	}

	// A clone shares nothing.
	cl := c.Clone()
	if !reflect.DeepEqual(cl, c) {
		t.Fatal("Clone differs")
	}
	cl.Auth.AdminUsers[0] = "x"
	cl.Parameters["jit"] = "x"
	cl.Databases["app"].Parameters["jit"] = "x"
	cl.Databases["app"].Pool.Size = 99
	cl.Users["alice"].Parameters["work_mem"] = "x"
	delete(cl.Databases, "app")
	if !reflect.DeepEqual(c, orig) {
		t.Fatalf("changing a clone changed the original: %v", Diff(orig, c))
	}
	var nilConfig *Config
	if nilConfig.Clone() != nil || nilConfig.Redacted() != nil {
		t.Error("nil Clone/Redacted should be nil")
	}
}

func TestDiff(t *testing.T) {
	a := mustParse(t, minimal+"[databases.app]\nhost = \"h\"\n[databases.old]\nhost = \"h\"\n")
	b := mustParse(t, minimal+"[pool]\nsize = 5\n[parameters]\njit = false\n[databases.app]\nhost = \"h2\"\n[databases.new]\nhost = \"h\"\n")
	want := []string{
		"databases.app.host",
		"databases.app.parameters.jit",
		"databases.app.pool.size",
		"databases.new",
		"databases.old",
		"parameters.jit",
		"pool.size",
	}
	if got := Diff(a, b); !reflect.DeepEqual(got, want) {
		t.Fatalf("Diff = %v, want %v", got, want)
	}
	if got := Diff(a, a.Clone()); len(got) != 0 {
		t.Fatalf("Diff of clones = %v", got)
	}
}

func TestValidateBuiltInCode(t *testing.T) {
	c := Default()
	c.Auth.Type = "trust"
	c.Databases["app"] = c.NewDatabase("app", "localhost")
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	c.Databases["app"].Pool.Size = 0
	c.Recycle.MaxMemory = -1
	c.Pool.QueryWaitTimeout = -1
	err := c.Validate()
	var keys []string
	for _, e := range configErrors(err) {
		keys = append(keys, e.Key)
		if e.Line != 0 {
			t.Errorf("%v: line set without a file", e)
		}
	}
	want := []string{"pool.query_wait_timeout", "recycle.max_memory", "databases.app.pool.size"}
	if !reflect.DeepEqual(keys, want) {
		t.Fatalf("Validate keys = %v, want %v (%v)", keys, want, err)
	}
}

func TestListenHelpers(t *testing.T) {
	tests := []struct {
		l    Listen
		port int
		sock string
	}{
		{Listen{Addr: "127.0.0.1:6432"}, 6432, ""},
		{Listen{Addr: "[::1]:7000", UnixSocketDir: "/tmp"}, 7000, "/tmp/.s.PGSQL.7000"},
		{Listen{Addr: "", UnixSocketDir: "/run/pgr"}, DefaultPort, "/run/pgr/.s.PGSQL.6432"},
	}
	for _, tt := range tests {
		if p := tt.l.Port(); p != tt.port {
			t.Errorf("%+v Port() = %d, want %d", tt.l, p, tt.port)
		}
		if s := tt.l.SocketPath(); s != tt.sock {
			t.Errorf("%+v SocketPath() = %q, want %q", tt.l, s, tt.sock)
		}
	}
}

func TestLineOf(t *testing.T) {
	text := "[pool]\nsize = 1\n\n[databases.\"my.db\"]\nhost = \"h\"\npool.size = 2\n"
	tests := []struct {
		key  toml.Key
		line int
	}{
		{toml.Key{"pool", "size"}, 2},
		{toml.Key{"pool"}, 1},
		{toml.Key{"databases", "my.db"}, 4},
		{toml.Key{"databases", "my.db", "host"}, 5},
		{toml.Key{"databases", "my.db", "pool", "size"}, 6},
		{toml.Key{"pool", "mode"}, 0},
		{toml.Key{"pool", "Size"}, 0},
	}
	for _, tt := range tests {
		if got := lineOf(text, tt.key); got != tt.line {
			t.Errorf("lineOf(%s) = %d, want %d", tt.key, got, tt.line)
		}
	}
}

func TestExampleFile(t *testing.T) {
	c, err := Load(examplePath)
	if err != nil {
		t.Fatalf("example file: %v", err)
	}

	// It shows the defaults.
	d := Default()
	if c.Listen != d.Listen || c.Pool != d.Pool || c.Recycle != d.Recycle || c.Metrics != d.Metrics || c.Health != d.Health || c.Log != d.Log {
		t.Errorf("example global sections differ from the defaults: %v", Diff(d, c))
	}
	if c.Auth.Type != d.Auth.Type || len(c.Auth.AdminUsers) != 0 {
		t.Errorf("example auth differs from the defaults: %+v", c.Auth)
	}
	app := c.Databases["app"]
	if app == nil {
		t.Fatal("example has no databases.app")
	}
	wantApp := c.NewDatabase("app", app.Host)
	if !reflect.DeepEqual(app, wantApp) {
		t.Errorf("example databases.app differs from the defaults:\n%+v\nwant\n%+v", app, wantApp)
	}

	// It shows every key of the schema.
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	md, err := toml.Decode(string(data), &m)
	if err != nil {
		t.Fatal(err)
	}
	for _, leaf := range schemaLeaves() {
		if !exampleShows(md.Keys(), leaf) {
			t.Errorf("example file does not show %s", leaf)
		}
	}

	// The commented recommendations (lines "#[table]" and "#key = ...") are
	// valid and do what they say.
	uncomment := regexp.MustCompile(`(?m)^#(\[|[a-z_]+ *=)`)
	text := uncomment.ReplaceAllString(string(data), "$1")
	r := mustParse(t, text)
	tenants, events := r.Databases["tenants"], r.Databases["events"]
	if tenants == nil || events == nil {
		t.Fatalf("recommended databases missing after uncommenting: %v", Diff(c, r))
	}
	if tenants.Recycle.MaxQueries == 0 || tenants.Recycle.MaxMemory == 0 {
		t.Errorf("tenants recycle = %+v, want max_queries and max_memory set", tenants.Recycle)
	}
	if tenants.Pool != r.Pool {
		t.Errorf("tenants pool should be the global one")
	}
	if got := r.StartupParameters("events", "someone")["plan_cache_mode"]; got != "force_custom_plan" {
		t.Errorf("events plan_cache_mode = %q, want force_custom_plan", got)
	}
	if _, ok := r.StartupParameters("app", "someone")["plan_cache_mode"]; ok {
		t.Error("plan_cache_mode leaked to databases.app")
	}
}

// exampleShows reports whether keys hold the schema leaf pattern ("*"
// matching any name). The contents of a parameters table are free, so the
// table itself is enough; a database's pool and recycle keys are the global
// ones again, shown in [pool] and [recycle].
func exampleShows(keys []toml.Key, pattern toml.Key) bool {
	if pattern[len(pattern)-1] == "*" {
		pattern = pattern[:len(pattern)-1]
	}
	alts := []toml.Key{pattern}
	if len(pattern) > 3 && pattern[0] == "databases" && (pattern[2] == "pool" || pattern[2] == "recycle") {
		alts = append(alts, pattern[2:])
	}
	for _, k := range keys {
		for _, p := range alts {
			if matchKey(k, p) {
				return true
			}
		}
	}
	return false
}

func matchKey(k, pattern toml.Key) bool {
	if len(k) != len(pattern) {
		return false
	}
	for i := range k {
		if pattern[i] != "*" && pattern[i] != k[i] {
			return false
		}
	}
	return true
}

func TestFallbackDatabase(t *testing.T) {
	c := mustParse(t, minimal+`
[databases.app]
host = "h1"
[databases."*"]
host = "h2"
[databases."*".pool]
size = 3
`)
	if d := c.Database("app"); d == nil || d.Host != "h1" || d.DBName != "app" {
		t.Fatalf("listed database: %+v", d)
	}
	d := c.Database("tenant_7")
	if d == nil || d.Name != "tenant_7" || d.DBName != "tenant_7" || d.Host != "h2" || d.Pool.Size != 3 {
		t.Fatalf("through the fallback: %+v", d)
	}
	if d == c.Databases["*"] || c.Databases["*"].Name != "*" {
		t.Fatal("the fallback section was modified")
	}
	c = mustParse(t, minimal+"[databases.\"*\"]\nhost = \"h\"\ndbname = \"fixed\"\n")
	if d := c.Database("x"); d == nil || d.DBName != "fixed" {
		t.Fatalf("fallback with its own dbname: %+v", d)
	}
	c = mustParse(t, minimal+"[databases.app]\nhost = \"h\"\n")
	if d := c.Database("other"); d != nil {
		t.Fatalf("no fallback: %+v", d)
	}
}

func TestUserLimits(t *testing.T) {
	c, err := Parse([]byte(`
[auth]
type = "trust"
[limits]
max_user_connections = 10
max_user_client_connections = 100
[users.batch]
max_user_connections = 2
[users.web]
max_user_client_connections = 7
`), "")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		user              string
		backends, clients int
	}{
		{"batch", 2, 100},
		{"web", 10, 7},
		{"other", 10, 100},
	} {
		if b, cl := c.UserLimits(tc.user); b != tc.backends || cl != tc.clients {
			t.Errorf("UserLimits(%q) = %d, %d; want %d, %d", tc.user, b, cl, tc.backends, tc.clients)
		}
	}
}

// TestPhysicalReplicationTarget: a physical replication client's
// "replication" goes to [databases.replication], else to the one server
// every section points at; nowhere when they point at different servers.
func TestPhysicalReplicationTarget(t *testing.T) {
	c := mustParse(t, minimal+"[databases.app]\nhost = \"h1\"\n[databases.reports]\nhost = \"h1\"\ndbname = \"r\"\n")
	if d := c.PhysicalReplicationTarget(ReplicationDatabase); d == nil || d.Name != "app" || d.Host != "h1" {
		t.Fatalf("one server: %+v, want the first section", d)
	}
	if d := c.PhysicalReplicationTarget("reports"); d == nil || d.Name != "reports" {
		t.Fatalf("a named database (PostgreSQL 17 clients send their dbname): %+v", d)
	}
	c = mustParse(t, minimal+"[databases.app]\nhost = \"h1\"\n[databases.other]\nhost = \"h2\"\n")
	if d := c.PhysicalReplicationTarget(ReplicationDatabase); d != nil {
		t.Fatalf("two servers: %+v, want none", d)
	}
	c = mustParse(t, minimal+"[databases.app]\nhost = \"h1\"\n[databases.other]\nhost = \"h2\"\n[databases.replication]\nhost = \"h2\"\ndbname = \"postgres\"\n")
	if d := c.PhysicalReplicationTarget(ReplicationDatabase); d == nil || d.Name != "replication" || d.Host != "h2" {
		t.Fatalf("a replication section: %+v", d)
	}
	c = mustParse(t, minimal+"[databases.\"*\"]\nhost = \"h3\"\n")
	if d := c.PhysicalReplicationTarget(ReplicationDatabase); d == nil || d.Host != "h3" || d.Name != ReplicationDatabase {
		t.Fatalf("only the fallback: %+v", d)
	}
}
