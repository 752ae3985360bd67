package config

import (
	"bytes"
	"maps"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/BurntSushi/toml"
)

// Config is the whole configuration. See the package documentation for
// what Load guarantees about it.
type Config struct {
	Listen     Listen               `toml:"listen"`
	Auth       Auth                 `toml:"auth"`
	Pool       Pool                 `toml:"pool"`
	Recycle    Recycle              `toml:"recycle"`
	Parameters map[string]string    `toml:"parameters"`
	Databases  map[string]*Database `toml:"databases"`
	Users      map[string]*User     `toml:"users"`
	Limits     Limits               `toml:"limits"`
	TLS        TLS                  `toml:"tls"`
	HBA        []HBARule            `toml:"hba"`
	Metrics    Metrics              `toml:"metrics"`
	Health     Health               `toml:"health"`
	Log        Log                  `toml:"log"`
	Path       string               `toml:"-"` // absolute path of the file loaded, "" for Parse
}

// Listen is the [listen] section: where clients connect.
type Listen struct {
	Addr               string   `toml:"addr"`                 // default "127.0.0.1:6432"; "" = no TCP listener (then unix_socket_dir required)
	UnixSocketDir      string   `toml:"unix_socket_dir"`      // default "" (off); socket file .s.PGSQL.<port>
	MaxClientConn      int      `toml:"max_client_conn"`      // default 10000
	ClientLoginTimeout Duration `toml:"client_login_timeout"` // default 60s; 0 = no limit
	ShutdownTimeout    Duration `toml:"shutdown_timeout"`     // default 30s
	ClientParkAfter    Duration `toml:"client_park_after"`    // default 500ms; 0 = never park idle clients
	SOReusePort        bool     `toml:"so_reuseport"`         // default false: let several processes share the TCP port
	TCPKeepalive       bool     `toml:"tcp_keepalive"`        // default true (client and server sockets)
	TCPKeepIdle        Duration `toml:"tcp_keepidle"`         // default 0 = OS default
	TCPKeepIntvl       Duration `toml:"tcp_keepintvl"`        // default 0 = OS default
	TCPKeepCnt         int      `toml:"tcp_keepcnt"`          // default 0 = OS default
	TCPUserTimeout     Duration `toml:"tcp_user_timeout"`     // default 0 = OS default
	// WorkerThreads is how many threads run pgrecycle's code at once
	// (GOMAXPROCS). Default 0 = half the CPUs available, at least one,
	// unless GOMAXPROCS is set in the environment.
	WorkerThreads int `toml:"worker_threads"`
}

// DefaultPort is the port of the Unix socket name when listen.addr is "".
const DefaultPort = 6432

// Port is the port of Addr, or DefaultPort when Addr is empty or has no
// numeric port (Validate refuses the latter).
func (l Listen) Port() int {
	if _, p, err := splitHostPort(l.Addr); err == nil {
		return p
	}
	return DefaultPort
}

// SocketPath is the Unix socket file clients connect to, following
// PostgreSQL's naming (DIR/.s.PGSQL.PORT) so that psql -h DIR -p PORT works;
// "" when unix_socket_dir is off.
func (l Listen) SocketPath() string {
	if l.UnixSocketDir == "" {
		return ""
	}
	return filepath.Join(l.UnixSocketDir, ".s.PGSQL."+strconv.Itoa(l.Port()))
}

// Auth is the [auth] section: how clients authenticate.
type Auth struct {
	Type       string   `toml:"type"`        // trust | plain | md5 | scram-sha-256; default "scram-sha-256"
	File       string   `toml:"file"`        // userlist.txt path, resolved against the config file's directory; required unless type = "trust"
	AdminUsers []string `toml:"admin_users"` // users allowed on the admin console; default empty
	// MaxFailedLogins is how many failed password attempts one source
	// address may make per minute before its logins are refused; 0 = no limit.
	MaxFailedLogins int `toml:"max_failed_logins"` // default 20
	// Query looks up the password hash of a user absent from the auth file
	// ($1 is the user name; it returns the name and a SCRAM verifier or md5
	// hash), run as QueryUser on the client's database; "" = off.
	Query         string   `toml:"query"`
	QueryUser     string   `toml:"query_user"`      // role for Query; its password comes from [users.NAME] or the auth file
	QueryCacheTTL Duration `toml:"query_cache_ttl"` // how long a looked-up hash is reused; default 0: looked up at every login
}

// Pool holds the pooling settings: [pool] and [databases.NAME.pool].
type Pool struct {
	Mode                   string   `toml:"mode"`                      // session | transaction; default "transaction"
	Size                   int      `toml:"size"`                      // backends per (database, user); default 20, >= 1
	MinIdle                int      `toml:"min_idle"`                  // default 0, <= size
	MaxDBConnections       int      `toml:"max_db_connections"`        // default 0 = unlimited (per database, all users)
	MaxDBClientConnections int      `toml:"max_db_client_connections"` // default 0 = unlimited: clients logged in to the database
	QueryWaitTimeout       Duration `toml:"query_wait_timeout"`        // default 120s; 0 = wait forever
	ServerResetQuery       string   `toml:"server_reset_query"`        // default "DISCARD ALL"; "" = none
	ServerResetQueryAlways bool     `toml:"server_reset_query_always"` // default false: only in session mode
	ServerConnectTimeout   Duration `toml:"server_connect_timeout"`    // default 15s, > 0
	ServerLoginRetry       Duration `toml:"server_login_retry"`        // default 15s, > 0: cap of the reconnect backoff
	ServerIdleTimeout      Duration `toml:"server_idle_timeout"`       // default 600s; 0 = off
	ServerCheckQuery       string   `toml:"server_check_query"`        // default "SELECT 1"; "" = no check
	ServerCheckDelay       Duration `toml:"server_check_delay"`        // default 30s; 0 = check at every reuse
	ClientIdleTimeout      Duration `toml:"client_idle_timeout"`       // default 0 = off
	IdleTransactionTimeout Duration `toml:"idle_transaction_timeout"`  // default 0 = off
	MaxPreparedStatements  int      `toml:"max_prepared_statements"`   // default 200; 0 = disable statement mapping
	MaxConcurrentConnects  int      `toml:"max_concurrent_connects"`   // default 4, >= 1 (per pool)
	// ReservePoolSize more backends may open for a pool whose oldest
	// waiting client has waited ReservePoolTimeout (PgBouncer's reserve pool).
	ReservePoolSize    int      `toml:"reserve_pool_size"`    // default 0 = none
	ReservePoolTimeout Duration `toml:"reserve_pool_timeout"` // default 5s
}

// Recycle holds the retirement policies: [recycle] and
// [databases.NAME.recycle]. A zero limit turns its policy off.
type Recycle struct {
	MaxLifetime         Duration `toml:"max_lifetime"`          // default 1h; 0 = off
	LifetimeJitter      float64  `toml:"lifetime_jitter"`       // default 0.1; 0 <= j < 1
	MaxQueries          int64    `toml:"max_queries"`           // default 0 = off
	MaxTransactions     int64    `toml:"max_transactions"`      // default 0 = off
	MaxMemory           ByteSize `toml:"max_memory"`            // default 0 = off
	MemoryCheckInterval Duration `toml:"memory_check_interval"` // default 10s; 0 = sample at every release
	MemorySource        string   `toml:"memory_source"`         // contexts | proc; default "contexts"
	MaxRetiringShare    float64  `toml:"max_retiring_share"`    // default 0.5; 0 < x <= 1: at most this share of a pool retires at once
}

// Database is one [databases.NAME] section: a database clients may ask for.
type Database struct {
	Name        string            `toml:"-"`           // the section name (what clients use as dbname)
	Host        string            `toml:"host"`        // required (hostname, IP, or a directory path for a unix socket)
	Port        int               `toml:"port"`        // default 5432
	DBName      string            `toml:"dbname"`      // default: section name
	User        string            `toml:"user"`        // optional: connect as this user instead of the client's
	Password    string            `toml:"password"`    // optional
	SSLMode     string            `toml:"sslmode"`     // disable|allow|prefer|require|verify-ca|verify-full; default "prefer"
	SSLRootCert string            `toml:"sslrootcert"` // optional CA file (or "system"), resolved against the config file's directory
	Parameters  map[string]string `toml:"parameters"`  // effective after Load: global [parameters] merged with this section's (database wins)
	Pool        Pool              `toml:"pool"`        // effective after Load: global [pool] with this section's keys on top
	Recycle     Recycle           `toml:"recycle"`     // effective after Load: global [recycle] with this section's keys on top
}

// User is one [users.NAME] section: per-user overrides.
type User struct {
	Parameters map[string]string `toml:"parameters"` // override database and global parameters for this user
	Password   string            `toml:"password"`   // optional, used to log in to backends when the auth file has no plain password
	// Limits for this user; 0 = the [limits] defaults.
	MaxUserConnections       int `toml:"max_user_connections"`
	MaxUserClientConnections int `toml:"max_user_client_connections"`
}

// Limits is the [limits] section: per-user limits, counted across
// databases, for every user; [users.NAME] overrides them. (The per-database
// ones are pool.max_db_connections and pool.max_db_client_connections, the
// total listen.max_client_conn.)
type Limits struct {
	MaxUserConnections       int `toml:"max_user_connections"`        // default 0 = unlimited: backends of one backend user
	MaxUserClientConnections int `toml:"max_user_client_connections"` // default 0 = unlimited: clients logged in as one user
}

// UserLimits returns the backend and client limits of a user (0 =
// unlimited): its [users.NAME] values, else the [limits] ones.
func (c *Config) UserLimits(user string) (backends, clients int) {
	backends, clients = c.Limits.MaxUserConnections, c.Limits.MaxUserClientConnections
	if u := c.Users[user]; u != nil {
		if u.MaxUserConnections > 0 {
			backends = u.MaxUserConnections
		}
		if u.MaxUserClientConnections > 0 {
			clients = u.MaxUserClientConnections
		}
	}
	return backends, clients
}

// HBARule is one [[hba]] access rule, checked in order like pg_hba.conf:
// the first rule matching database, user and client address decides the
// authentication method, or rejects. With no rules, auth.type applies to
// everyone; with rules, a client no rule matches is rejected.
type HBARule struct {
	Database string `toml:"database"` // a database name, "pgrecycle" for the admin console, or "all"
	User     string `toml:"user"`     // a user name or "all"
	Address  string `toml:"address"`  // "all", "local" (the unix socket), an IP or a CIDR
	Method   string `toml:"method"`   // trust | plain | md5 | scram-sha-256 | reject
}

// TLS is the [tls] section: encryption toward clients. Server-side TLS is
// per database (sslmode, sslrootcert).
type TLS struct {
	Mode     string `toml:"mode"`      // disable | allow | require; default "disable"
	CertFile string `toml:"cert_file"` // PEM certificate chain; required unless mode = "disable"
	KeyFile  string `toml:"key_file"`  // PEM private key; required unless mode = "disable"
	// ClientCert asks TLS clients for a certificate: none | verify (checked
	// when given; needed by the cert method) | require (every TLS client).
	ClientCert   string `toml:"client_cert"`    // default "none"
	ClientCAFile string `toml:"client_ca_file"` // PEM CAs that sign client certificates; required unless client_cert = "none"
}

// Metrics is the [metrics] section.
type Metrics struct {
	Addr string `toml:"addr"` // Prometheus /metrics and /healthz; default "" = off; e.g. "127.0.0.1:9930"
	// Pprof serves /debug/pprof on addr too; off by default (it exposes internals).
	Pprof bool `toml:"pprof"`
}

// Health is the [health] section: the database health advisor. On every
// interval it samples each configured database from a dedicated connection
// of its own (never a client's backend) and reports what crosses a
// threshold in SHOW HEALTH, the pgrecycle_health_* metrics and a warning
// in the log. A threshold of 0 turns its check off.
type Health struct {
	Enabled      bool     `toml:"enabled"`       // default true
	Interval     Duration `toml:"interval"`      // default 60s, > 0: time between two samples of a database
	QueryTimeout Duration `toml:"query_timeout"` // default 5s, > 0: statement_timeout of the advisor's queries
	// User is the role the advisor connects as; "" = the database's user,
	// else auth.query_user. Its password comes from [users.NAME] or the
	// auth file. Databases with none of them are not sampled.
	User                  string   `toml:"user"`
	MemoryFraction        float64  `toml:"memory_fraction"`         // default 0.8, 0..1: sampled backend memory against max_memory (largest) and pool.size × max_memory (total)
	GenericPlanPartitions int      `toml:"generic_plan_partitions"` // default 10: report generic plans of statements on partitioned tables with at least this many partitions
	XIDAgeFraction        float64  `toml:"xid_age_fraction"`        // default 0.8, 0..10: age(datfrozenxid) against autovacuum_freeze_max_age
	DeadTuples            int64    `toml:"dead_tuples"`             // default 1000000: dead tuples of a table
	DeadTuplesFraction    float64  `toml:"dead_tuples_fraction"`    // default 0.2, 0..1: ... and at least this share of its tuples
	IdleInTransaction     Duration `toml:"idle_in_transaction"`     // default 5m: age of the oldest session idle in a transaction
	ConnectionsFraction   float64  `toml:"connections_fraction"`    // default 0.8, 0..1: client backends against max_connections - superuser_reserved_connections
	BypassConnections     int      `toml:"bypass_connections"`      // default 10: client backends of a pooled database that don't come through pgrecycle
}

// Log is the [log] section.
type Log struct {
	Level  string `toml:"level"`  // debug|info|warn|error; default "info"
	Format string `toml:"format"` // json|console; default "json"
}

// Default values that other packages may want to name.
const (
	DefaultDatabasePort = 5432
	DefaultSSLMode      = "prefer"
	// AdminDatabase is the virtual database of the admin console; no
	// [databases] section may use the name.
	AdminDatabase = "pgrecycle"
	// PgBouncerAdminDatabase also reaches the admin console unless a
	// [databases] section takes the name: monitoring tools written for
	// PgBouncer (exporters, agents) connect to it.
	PgBouncerAdminDatabase = "pgbouncer"
)

// IsAdminDatabase reports whether a client asking for database name gets
// the admin console.
func (c *Config) IsAdminDatabase(name string) bool {
	return name == AdminDatabase || (name == PgBouncerAdminDatabase && c.Databases[name] == nil)
}

// Default returns a Config holding every default and no databases. It is
// not valid as is: auth.file must be set (or auth.type = "trust").
func Default() *Config {
	return &Config{
		Listen: Listen{
			Addr:               "127.0.0.1:6432",
			MaxClientConn:      10000,
			ClientLoginTimeout: Duration(60e9),
			ShutdownTimeout:    Duration(30e9),
			ClientParkAfter:    Duration(500 * time.Millisecond),
			TCPKeepalive:       true,
		},
		Auth: Auth{
			Type:            "scram-sha-256",
			AdminUsers:      []string{},
			MaxFailedLogins: 20,
		},
		Pool: Pool{
			Mode:                  "transaction",
			Size:                  20,
			QueryWaitTimeout:      Duration(120e9),
			ServerResetQuery:      "DISCARD ALL",
			ServerConnectTimeout:  Duration(15e9),
			ServerLoginRetry:      Duration(15e9),
			ServerIdleTimeout:     Duration(600e9),
			ServerCheckQuery:      "SELECT 1",
			ServerCheckDelay:      Duration(30e9),
			MaxPreparedStatements: 200,
			MaxConcurrentConnects: 4,
			ReservePoolTimeout:    Duration(5e9),
		},
		Recycle: Recycle{
			MaxLifetime:         Duration(3600e9),
			LifetimeJitter:      0.1,
			MemoryCheckInterval: Duration(10e9),
			MemorySource:        "contexts",
			MaxRetiringShare:    0.5,
		},
		Parameters: map[string]string{},
		Databases:  map[string]*Database{},
		Users:      map[string]*User{},
		TLS:        TLS{Mode: "disable", ClientCert: "none"},
		Health:     DefaultHealth(),
		Log:        Log{Level: "info", Format: "json"},
	}
}

// DefaultHealth returns the [health] defaults.
func DefaultHealth() Health {
	return Health{
		Enabled:               true,
		Interval:              Duration(60 * time.Second),
		QueryTimeout:          Duration(5 * time.Second),
		MemoryFraction:        0.8,
		GenericPlanPartitions: 10,
		XIDAgeFraction:        0.8,
		DeadTuples:            1000000,
		DeadTuplesFraction:    0.2,
		IdleInTransaction:     Duration(5 * time.Minute),
		ConnectionsFraction:   0.8,
		BypassConnections:     10,
	}
}

// NewDatabase returns a Database named name that inherits c's global pool,
// recycle and parameters, as Load would build it from a section holding
// only host. It is for code (tests, tools) that builds a Config by hand.
func (c *Config) NewDatabase(name, host string) *Database {
	return &Database{
		Name:       name,
		Host:       host,
		Port:       DefaultDatabasePort,
		DBName:     name,
		SSLMode:    DefaultSSLMode,
		Parameters: maps.Clone(c.Parameters),
		Pool:       c.Pool,
		Recycle:    c.Recycle,
	}
}

// FallbackDatabase is the section name ([databases."*"]) that serves any
// database name not listed, as PgBouncer's "*" entry does.
const FallbackDatabase = "*"

// Database returns the section that serves database name: its own, or
// one made from the fallback section (its dbname, or else name itself),
// or nil when neither exists.
func (c *Config) Database(name string) *Database {
	if d := c.Databases[name]; d != nil || name == FallbackDatabase {
		return d
	}
	f := c.Databases[FallbackDatabase]
	if f == nil {
		return nil
	}
	d := *f
	d.Name = name
	if d.DBName == "" {
		d.DBName = name
	}
	return &d
}

// ReplicationDatabase is the database name a physical replication client
// sends: PostgreSQL ignores it (a physical stream is the whole cluster),
// and pg_basebackup and pg_receivewal before PostgreSQL 17 send it
// whatever their connection string says.
const ReplicationDatabase = "replication"

// PhysicalReplicationTarget routes a physical replication connection that
// named database: a section of that name when there is one (or the
// fallback's), else, for "replication", any section when all of them
// point at one server, since the stream does not depend on the
// database. Nil when the servers differ and nothing names one.
func (c *Config) PhysicalReplicationTarget(database string) *Database {
	if d := c.Databases[database]; d != nil || database != ReplicationDatabase {
		return c.Database(database)
	}
	var first *Database
	for _, name := range slices.Sorted(maps.Keys(c.Databases)) {
		d := c.Databases[name]
		if first == nil {
			first = d
			continue
		}
		if d.Host != first.Host || d.Port != first.Port {
			return nil
		}
	}
	if first != nil && first.Name == FallbackDatabase {
		return c.Database(database)
	}
	return first
}

// StartupParameters returns a new map of the parameters to send in the
// StartupMessage of a backend for (db, user): global < database < user.
// Unknown db or user names contribute nothing.
func (c *Config) StartupParameters(db, user string) map[string]string {
	out := make(map[string]string, len(c.Parameters))
	maps.Copy(out, c.Parameters)
	if d := c.Database(db); d != nil {
		maps.Copy(out, d.Parameters)
	}
	if u := c.Users[user]; u != nil {
		maps.Copy(out, u.Parameters)
	}
	return out
}

// Clone returns a deep copy of c: nothing is shared with c.
func (c *Config) Clone() *Config {
	if c == nil {
		return nil
	}
	n := *c
	n.Auth.AdminUsers = slices.Clone(c.Auth.AdminUsers)
	n.Parameters = maps.Clone(c.Parameters)
	if c.Databases != nil {
		n.Databases = make(map[string]*Database, len(c.Databases))
		for k, d := range c.Databases {
			if d == nil {
				n.Databases[k] = nil
				continue
			}
			dd := *d
			dd.Parameters = maps.Clone(d.Parameters)
			n.Databases[k] = &dd
		}
	}
	if c.Users != nil {
		n.Users = make(map[string]*User, len(c.Users))
		for k, u := range c.Users {
			if u == nil {
				n.Users[k] = nil
				continue
			}
			uu := *u
			uu.Parameters = maps.Clone(u.Parameters)
			n.Users[k] = &uu
		}
	}
	return &n
}

// RedactedPassword replaces passwords in Redacted copies.
const RedactedPassword = "***"

// Redacted returns a deep copy of c with every non-empty password replaced
// by RedactedPassword, for SHOW CONFIG and logs. Empty passwords stay empty
// so the copy still tells which are set.
func (c *Config) Redacted() *Config {
	n := c.Clone()
	if n == nil {
		return nil
	}
	for _, d := range n.Databases {
		if d != nil && d.Password != "" {
			d.Password = RedactedPassword
		}
	}
	for _, u := range n.Users {
		if u != nil && u.Password != "" {
			u.Password = RedactedPassword
		}
	}
	return n
}

// TOML encodes c as a TOML document that Parse reads back to an equal
// Config (databases carry their full effective pool, recycle and
// parameters). Use c.Redacted().TOML() for anything shown to people.
func (c *Config) TOML() ([]byte, error) {
	var b bytes.Buffer
	if err := toml.NewEncoder(&b).Encode(c); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Diff returns the sorted dotted keys whose values differ between a and b,
// for logging a reload and deciding what to apply. A database or user that
// exists on one side only appears as "databases.NAME" / "users.NAME";
// otherwise the keys are leaves ("databases.app.pool.size",
// "parameters.jit").
func Diff(a, b *Config) []string {
	var out []string
	diffValue(reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem(), nil, &out)
	sort.Strings(out)
	return out
}

func diffValue(a, b reflect.Value, path toml.Key, out *[]string) {
	switch a.Kind() {
	case reflect.Pointer:
		if a.IsNil() || b.IsNil() {
			if a.IsNil() != b.IsNil() {
				*out = append(*out, path.String())
			}
			return
		}
		diffValue(a.Elem(), b.Elem(), path, out)
	case reflect.Struct:
		t := a.Type()
		for i := range t.NumField() {
			name := tomlName(t.Field(i))
			if name == "" {
				continue
			}
			diffValue(a.Field(i), b.Field(i), append(path[:len(path):len(path)], name), out)
		}
	case reflect.Map:
		keys := map[string]bool{}
		for _, k := range a.MapKeys() {
			keys[k.String()] = true
		}
		for _, k := range b.MapKeys() {
			keys[k.String()] = true
		}
		for k := range keys {
			kv := reflect.ValueOf(k)
			av, bv := a.MapIndex(kv), b.MapIndex(kv)
			p := append(path[:len(path):len(path)], k)
			if !av.IsValid() || !bv.IsValid() {
				*out = append(*out, p.String())
				continue
			}
			diffValue(av, bv, p, out)
		}
	case reflect.Slice:
		// nil and empty lists mean the same in a config file.
		if a.Len() == 0 && b.Len() == 0 {
			return
		}
		fallthrough
	default:
		if !reflect.DeepEqual(a.Interface(), b.Interface()) {
			*out = append(*out, path.String())
		}
	}
}
