package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pgrecycle/pgrecycle/test/pgtest"
)

// Target keys. "direct" is PostgreSQL itself, a reference for latency and
// connection churn.
const (
	tDirect       = "direct"
	tPgrecycle    = "pgrecycle"
	tPgbouncer    = "pgbouncer"
	tPgrecycleAll = "pgrecycle-allcpus" // pgrecycle with a thread per CPU
)

func targetLabel(key string) string {
	switch key {
	case tDirect:
		return "PostgreSQL (direct)"
	case tPgrecycle:
		return "pgrecycle"
	case tPgbouncer:
		return "PgBouncer"
	case tPgrecycleAll:
		return "pgrecycle, thread per CPU"
	}
	return key
}

// env is what every run shares: the database, the binaries, the account
// PgBouncer runs as.
type env struct {
	reg  *registry
	pg   *pgtest.Server
	work string // temporary directory, removed at exit

	pgrecycleBin string
	pgbouncerBin string // "" when PgBouncer is not installed
	// pgbouncerPrepared: PgBouncer >= 1.21 (max_prepared_statements), so it
	// can run -M prepared in transaction pooling.
	pgbouncerPrepared bool
	pgbenchBin        string

	user, password, db string
	poolSize           int
	maxClients         int

	// Account for PgBouncer, which refuses to run as root.
	runAs *syscall.Credential

	seq int // numbers the per-run directories
}

// running is one started target.
type running struct {
	key  string
	port int
	proc *child // nil for direct
	dir  string
	log  string // the proxy's log file
}

func (r *running) stop() {
	if r.proc != nil {
		r.proc.stop(5 * time.Second)
	}
}

func (r *running) logTail() string {
	b, err := os.ReadFile(r.log)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// postgresAccount returns the credential PgBouncer runs with when we are
// root (it refuses root), or nil.
func postgresAccount() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, and PgBouncer refuses root, but there is no postgres account: %w", err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("postgres account has non-numeric ids %s:%s", u.Uid, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

// start starts a fresh instance of target key. Every measured run gets its
// own instance, so peak RSS and CPU belong to that run alone.
func (e *env) start(ctx context.Context, key string) (*running, error) {
	if key == tDirect {
		return &running{key: key, port: e.pg.Port}, nil
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		e.seq++
		dir := filepath.Join(e.work, fmt.Sprintf("%03d-%s", e.seq, key))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		var r *running
		switch key {
		case tPgrecycle, tPgrecycleAll:
			r, err = e.startPgrecycle(dir, port, key == tPgrecycleAll)
		case tPgbouncer:
			r, err = e.startPgbouncer(dir, port)
		default:
			return nil, fmt.Errorf("unknown target %q", key)
		}
		if err != nil {
			return nil, err
		}
		r.key = key
		if err := waitListening(ctx, r, 20*time.Second); err != nil {
			r.stop()
			lastErr = fmt.Errorf("%s did not come up: %w\n%s", targetLabel(key), err, r.logTail())
			continue // most likely the port was taken meanwhile
		}
		return r, nil
	}
	return nil, lastErr
}

func waitListening(ctx context.Context, r *running, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port))
	for {
		if r.proc.exited() {
			return fmt.Errorf("exited: %v", r.proc.err)
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// userlist writes the PgBouncer-format auth file both poolers read: one
// user with a plain password, which they also use to log in to PostgreSQL.
func (e *env) userlist(dir string) (string, error) {
	p := filepath.Join(dir, "userlist.txt")
	line := fmt.Sprintf("%q %q\n", e.user, e.password)
	return p, os.WriteFile(p, []byte(line), 0o600)
}

// pgrecycleConfig writes pgrecycle's configuration for a listener on port
// and returns its path.
func (e *env) pgrecycleConfig(dir string, port int) (string, error) {
	auth, err := e.userlist(dir)
	if err != nil {
		return "", err
	}
	conf := fmt.Sprintf(`# written by test/bench
[listen]
addr = "127.0.0.1:%d"
max_client_conn = %d
client_login_timeout = "60s"
shutdown_timeout = "1s"

[auth]
type = "scram-sha-256"
file = %q

[pool]
mode = "transaction"
size = %d
query_wait_timeout = "120s"

[databases.%s]
host = "127.0.0.1"
port = %d
dbname = %q
sslmode = "disable"

[log]
level = "warn"
`, port, e.maxClients, auth, e.poolSize, e.db, e.pg.Port, e.db)
	path := filepath.Join(dir, "pgrecycle.toml")
	return path, os.WriteFile(path, []byte(conf), 0o644)
}

func (e *env) startPgrecycle(dir string, port int, allCPUs bool) (*running, error) {
	path, err := e.pgrecycleConfig(dir, port)
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "pgrecycle.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own descriptor
	cmd := exec.Command(e.pgrecycleBin, "-config", path)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = withoutEnv(os.Environ(), "GOMAXPROCS")
	if allCPUs {
		cmd.Env = append(cmd.Env, "GOMAXPROCS="+strconv.Itoa(runtime.NumCPU()))
	}
	c, err := e.reg.spawn("pgrecycle", cmd)
	if err != nil {
		return nil, err
	}
	return &running{port: port, proc: c, dir: dir, log: logPath}, nil
}

func (e *env) startPgbouncer(dir string, port int) (*running, error) {
	auth, err := e.userlist(dir)
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "pgbouncer.log")
	// Settings chosen to match pgrecycle's: transaction pooling, the same
	// pool size, SCRAM for clients from a plain-password userlist, no TLS
	// to the server, no per-connection log lines (pgrecycle logs at warn).
	ini := fmt.Sprintf(`; written by test/bench
[databases]
%s = host=127.0.0.1 port=%d dbname=%s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
pidfile =
logfile = %s
auth_type = scram-sha-256
auth_file = %s
pool_mode = transaction
default_pool_size = %d
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = %d
max_db_connections = 0
server_tls_sslmode = disable
client_tls_sslmode = disable
query_wait_timeout = 120
client_login_timeout = 60
server_lifetime = 3600
log_connections = 0
log_disconnections = 0
log_stats = 0
`, e.db, e.pg.Port, e.db, port, logPath, auth, e.poolSize, e.maxClients)
	if e.pgbouncerPrepared {
		ini += "max_prepared_statements = 200\n" // pgrecycle's default
	}
	path := filepath.Join(dir, "pgbouncer.ini")
	if err := os.WriteFile(path, []byte(ini), 0o644); err != nil {
		return nil, err
	}
	if e.runAs != nil {
		// PgBouncer reads the userlist and writes its log into dir as the
		// postgres account.
		for _, p := range []string{dir, auth} {
			if err := os.Chown(p, int(e.runAs.Uid), int(e.runAs.Gid)); err != nil {
				return nil, err
			}
		}
	}
	outPath := filepath.Join(dir, "pgbouncer.out")
	outf, err := os.Create(outPath)
	if err != nil {
		return nil, err
	}
	defer outf.Close()
	cmd := exec.Command(e.pgbouncerBin, path)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = outf, outf
	if e.runAs != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: e.runAs}
	}
	c, err := e.reg.spawn("pgbouncer", cmd)
	if err != nil {
		return nil, err
	}
	return &running{port: port, proc: c, dir: dir, log: logPath}, nil
}

func withoutEnv(env []string, names ...string) []string {
	var out []string
next:
	for _, kv := range env {
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}
