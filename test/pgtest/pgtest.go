package pgtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	superUser     = "postgres"
	superPassword = "pgtest-super-secret"

	// ownerFile records the test process that owns a server directory, so a
	// later Start can tell abandoned directories from live ones.
	ownerFile = "owner.pid"
	dirPrefix = "pgtest-"

	// sharedEnv carries Main's server to Shared inside one test process.
	sharedEnv = "PGTEST_SHARED_SERVER"

	startAttempts = 5
	initdbTimeout = 2 * time.Minute
	ctlTimeout    = 90 * time.Second // pg_ctl itself waits at most 60 s (-t 60)
	logTailLines  = 40
)

// sentinel is a string error so that ErrUnavailable can be a constant.
type sentinel string

func (e sentinel) Error() string { return string(e) }

// ErrUnavailable is wrapped by errors meaning PostgreSQL cannot run on this
// machine at all (binaries or the postgres account missing), as opposed to
// a server that failed to start.
const ErrUnavailable sentinel = "pgtest: PostgreSQL cannot run here"

// Options configure a server started by Start.
type Options struct {
	// Name appears in the server's directory name, to tell servers apart.
	Name string
	// ExtraConf is appended to postgresql.conf after pgtest's own settings,
	// so it overrides them. Give values unquoted: pgtest quotes them, which
	// PostgreSQL accepts for every parameter type.
	ExtraConf map[string]string
}

// Server is a running PostgreSQL started by Start, Require or Main.
type Server struct {
	Host          string // "127.0.0.1"
	Port          int
	SocketDir     string // unix socket directory
	DataDir       string
	BinDir        string
	SuperUser     string // "postgres"
	SuperPassword string // fixed test password

	dir     string // everything the server owns lives under it
	logPath string
	shared  bool // handed out by Shared: Main owns its lifetime

	mu      sync.Mutex // serialises Stop and Restart
	stopped bool
}

// RunAs returns the command prefix that runs server processes as the
// postgres account when the caller is root (initdb and postgres refuse to
// run as root), or nil otherwise.
func RunAs() []string {
	if os.Geteuid() != 0 {
		return nil
	}
	return []string{runuserPath(), "-u", superUser, "--"}
}

func runuserPath() string {
	if p, err := exec.LookPath("runuser"); err == nil {
		return p
	}
	// sbin is often missing from PATH in minimal environments.
	for _, p := range []string{"/usr/sbin/runuser", "/sbin/runuser"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "runuser"
}

// BinDir finds the PostgreSQL server binaries: $PG_BINDIR, else the newest
// /usr/lib/postgresql/*/bin (Debian keeps them off PATH), else the directory
// of pg_ctl on $PATH.
func BinDir() (string, error) {
	if d := os.Getenv("PG_BINDIR"); d != "" {
		if err := checkBinDir(d); err != nil {
			return "", fmt.Errorf("%w: PG_BINDIR=%s: %v", ErrUnavailable, d, err)
		}
		return d, nil
	}
	if d := newestDebianBinDir(); d != "" {
		return d, nil
	}
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		d := filepath.Dir(p)
		if checkBinDir(d) == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("%w: no initdb, pg_ctl and postgres in $PG_BINDIR, "+
		"/usr/lib/postgresql/*/bin or next to pg_ctl on $PATH "+
		"(Debian: apt-get install postgresql)", ErrUnavailable)
}

func checkBinDir(dir string) error {
	for _, name := range []string{"initdb", "pg_ctl", "postgres"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			return fmt.Errorf("%s is not an executable file", filepath.Join(dir, name))
		}
	}
	return nil
}

func newestDebianBinDir() string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	var best string
	var bestVer []int
	for _, d := range dirs {
		if checkBinDir(d) != nil {
			continue
		}
		ver := parseVersion(filepath.Base(filepath.Dir(d)))
		if best == "" || versionLess(bestVer, ver) {
			best, bestVer = d, ver
		}
	}
	return best
}

// parseVersion turns "9.6" or "15" into comparable numbers; a string
// sort would put "9.6" after "15".
func parseVersion(s string) []int {
	var v []int
	for _, part := range strings.Split(s, ".") {
		n, err := strconv.Atoi(part)
		if err != nil {
			n = -1
		}
		v = append(v, n)
	}
	return v
}

func versionLess(a, b []int) bool {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return len(a) < len(b)
}

// Start creates and starts a new server. The caller must call Stop.
func Start(opts Options) (*Server, error) {
	return start(opts, freePort)
}

func start(opts Options, pickPort func() (int, error)) (_ *Server, err error) {
	binDir, err := BinDir()
	if err != nil {
		return nil, err
	}
	conf, err := extraConf(opts.ExtraConf)
	if err != nil {
		return nil, err
	}
	owner, err := serverAccount()
	if err != nil {
		return nil, err
	}
	base, err := tempBase(owner != nil)
	if err != nil {
		return nil, err
	}
	reapStale(base)

	dir, err := os.MkdirTemp(base, dirPrefix+sanitizeName(opts.Name)+"-")
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	s := &Server{
		Host:          "127.0.0.1",
		SocketDir:     dir,
		DataDir:       filepath.Join(dir, "data"),
		BinDir:        binDir,
		SuperUser:     superUser,
		SuperPassword: superPassword,
		dir:           dir,
		logPath:       filepath.Join(dir, "server.log"),
	}
	defer func() {
		if err != nil {
			if derr := s.destroy(); derr != nil {
				err = errors.Join(err, derr)
			}
		}
	}()

	// MkdirTemp makes 0700 dirs; the postgres account and clients of the
	// socket must be able to enter it.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	pwfile := filepath.Join(dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(superPassword+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	if owner != nil {
		for _, p := range []string{dir, pwfile} {
			if err := os.Chown(p, owner.uid, owner.gid); err != nil {
				return nil, fmt.Errorf("pgtest: %w", err)
			}
		}
	}

	if err := s.run(initdbTimeout, "initdb", "-D", s.DataDir, "-U", superUser,
		"--auth-local=trust", "--auth-host=scram-sha-256", "--pwfile="+pwfile,
		"-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		return nil, err
	}
	_ = os.Remove(pwfile)

	// Replace initdb's pg_hba.conf so only what tests rely on is allowed.
	// Existing files keep their owner (postgres) when rewritten by root.
	hba := "local all all trust\n" +
		"local replication all trust\n" +
		"host all all 127.0.0.1/32 scram-sha-256\n" +
		"host replication all 127.0.0.1/32 scram-sha-256\n"
	if err := os.WriteFile(filepath.Join(s.DataDir, "pg_hba.conf"), []byte(hba), 0o600); err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	confPath := filepath.Join(s.DataDir, "postgresql.conf")
	defaults, err := os.ReadFile(confPath)
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}

	// A free port can be taken between picking and binding it: retry with
	// another one when the log says so.
	for attempt := 1; ; attempt++ {
		port, err := pickPort()
		if err != nil {
			return nil, fmt.Errorf("pgtest: pick a port: %w", err)
		}
		settings := s.baseConf(port) + conf
		if err := os.WriteFile(confPath, append(defaults[:len(defaults):len(defaults)], settings...), 0o600); err != nil {
			return nil, fmt.Errorf("pgtest: %w", err)
		}
		logStart := fileSize(s.logPath)
		startErr := s.run(ctlTimeout, "pg_ctl", "start", "-w", "-t", "60",
			"-D", s.DataDir, "-l", s.logPath)
		if startErr == nil {
			s.Port = port
			return s, nil
		}
		if attempt >= startAttempts || !portCollision(readFrom(s.logPath, logStart)) {
			return nil, fmt.Errorf("%w\nserver log:\n%s", startErr, s.LogTail(logTailLines))
		}
	}
}

func (s *Server) baseConf(port int) string {
	return fmt.Sprintf(`
# pgtest: fast and disposable, never durable
listen_addresses = '127.0.0.1'
port = %d
unix_socket_directories = %s
max_connections = 300
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = '32MB'
log_line_prefix = '%%m [%%p] %%q%%u@%%d '
`, port, quoteLiteral(s.SocketDir))
}

func extraConf(m map[string]string) (string, error) {
	if len(m) == 0 {
		return "", nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys) // deterministic files make failures reproducible
	var b strings.Builder
	b.WriteString("# pgtest: Options.ExtraConf\n")
	for _, k := range keys {
		v := m[k]
		if !validConfName(k) || strings.ContainsAny(v, "\n\r") {
			return "", fmt.Errorf("pgtest: invalid ExtraConf entry %q = %q", k, v)
		}
		fmt.Fprintf(&b, "%s = %s\n", k, quoteLiteral(v))
	}
	return b.String(), nil
}

func validConfName(k string) bool {
	if k == "" {
		return false
	}
	for _, r := range k {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

func portCollision(log string) bool {
	return strings.Contains(log, "could not bind") ||
		strings.Contains(log, "Address already in use") ||
		strings.Contains(log, "another postmaster already running on port")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

type account struct{ uid, gid int }

// serverAccount returns the account server processes run as when we are
// root, or nil when they run as ourselves.
func serverAccount() (*account, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(superUser)
	if err != nil {
		return nil, fmt.Errorf("%w: running as root and PostgreSQL refuses root, "+
			"but there is no %q account to run it as: %v", ErrUnavailable, superUser, err)
	}
	if _, err := os.Stat(runuserPath()); err != nil {
		return nil, fmt.Errorf("%w: running as root and runuser is missing: %v", ErrUnavailable, err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("pgtest: account %q has non-numeric ids %s:%s", superUser, u.Uid, u.Gid)
	}
	return &account{uid: uid, gid: gid}, nil
}

// tempBase picks the parent of server directories. When the server runs as
// another account every ancestor must be traversable by it, which a private
// $TMPDIR (say /root/tmp) is not; /tmp is the usual way out.
func tempBase(otherAccount bool) (string, error) {
	base := os.TempDir()
	if !otherAccount || traversable(base) {
		return base, nil
	}
	if traversable("/tmp") {
		return "/tmp", nil
	}
	return "", fmt.Errorf("%w: %s is not traversable by the %s account; set TMPDIR",
		ErrUnavailable, base, superUser)
}

func traversable(dir string) bool {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	for {
		fi, err := os.Stat(dir)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return false
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return true
		}
		dir = parent
	}
}

func sanitizeName(name string) string {
	var b strings.Builder
	for _, r := range name {
		if b.Len() >= 24 { // unix socket paths are limited to ~107 bytes
			break
		}
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "pg"
	}
	return b.String()
}

// run runs a PostgreSQL binary from BinDir as the server account.
func (s *Server) run(timeout time.Duration, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	argv := append(RunAs(), filepath.Join(s.BinDir, name))
	argv = append(argv, args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = s.dir // the server account may not be able to enter our cwd
	cmd.Env = childEnv()
	// pg_ctl's postmaster must not keep our output pipe open (it writes to
	// the -l file); bound the wait in case some child still does.
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("pgtest: %s %s: %w\n%s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// childEnv drops the caller's PG* and locale variables, which would
// otherwise change what initdb and pg_ctl do.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LANG=C", "LC_ALL=C")
}

// Stop stops the server immediately (no checkpoint: the data is thrown
// away) and removes its directory. Calling it again does nothing.
func (s *Server) Stop() error {
	if s.shared {
		return errors.New("pgtest: the shared server is stopped by pgtest.Main, not by tests")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil
	}
	s.stopped = true
	return s.destroy()
}

func (s *Server) destroy() error {
	var errs []error
	if pid := postmasterPID(s.DataDir); pid > 0 && processAlive(pid) {
		if err := s.run(ctlTimeout, "pg_ctl", "stop", "-m", "immediate", "-w", "-t", "60", "-D", s.DataDir); err != nil {
			// A postmaster that died on its own is not a stop failure.
			if processAlive(pid) {
				errs = append(errs, err)
			}
		}
	}
	if err := os.RemoveAll(s.dir); err != nil {
		errs = append(errs, fmt.Errorf("pgtest: %w", err))
	}
	return errors.Join(errs...)
}

// Restart restarts the server on the same port with pg_ctl's shutdown mode
// "fast" (clean) or "immediate" (crash and recovery), waiting until it
// accepts connections again.
func (s *Server) Restart(mode string) error {
	switch mode {
	case "smart", "fast", "immediate":
	default:
		return fmt.Errorf("pgtest: unknown shutdown mode %q (want fast or immediate)", mode)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return errors.New("pgtest: restart of a stopped server")
	}
	if err := s.run(ctlTimeout*2, "pg_ctl", "restart", "-m", mode, "-w", "-t", "60",
		"-D", s.DataDir, "-l", s.logPath); err != nil {
		return fmt.Errorf("%w\nserver log:\n%s", err, s.LogTail(logTailLines))
	}
	return nil
}

// DSN returns a URL connection string for TCP on the loopback address.
// An empty password is left out.
func (s *Server) DSN(user, password, db string) string {
	u := url.URL{
		Scheme:   "postgres",
		Host:     net.JoinHostPort(s.Host, strconv.Itoa(s.Port)),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	if password != "" {
		u.User = url.UserPassword(user, password)
	} else {
		u.User = url.User(user)
	}
	return u.String()
}

// SuperDSN is the DSN of the superuser on the postgres database.
func (s *Server) SuperDSN() string {
	return s.DSN(s.SuperUser, s.SuperPassword, "postgres")
}

// Exec runs sql (several statements allowed) as the superuser on its own
// connection, closed before returning.
func (s *Server) Exec(ctx context.Context, sql string) error {
	return s.exec(ctx, sql, sql)
}

// exec hides the statement behind label in errors, so passwords stay out
// of test output.
func (s *Server) exec(ctx context.Context, label, sql string) error {
	conn, err := pgx.Connect(ctx, s.SuperDSN())
	if err != nil {
		return fmt.Errorf("pgtest: connect as %s: %w", s.SuperUser, err)
	}
	defer func() {
		// Close even when ctx is already done, but never wait long.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	// Without arguments pgx uses the simple protocol, so sql may hold
	// several statements.
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("pgtest: %s: %w", label, err)
	}
	return nil
}

// CreateRole creates a LOGIN role with a SCRAM-SHA-256 password (none if
// password is empty: such a role can only use the trusted unix socket).
func (s *Server) CreateRole(ctx context.Context, name, password string, superuser bool) error {
	q := "CREATE ROLE " + pgx.Identifier{name}.Sanitize() + " LOGIN"
	if superuser {
		q += " SUPERUSER"
	}
	if password != "" {
		q = "SET password_encryption = 'scram-sha-256'; " + q + " PASSWORD " + quoteLiteral(password)
	}
	return s.exec(ctx, "create role "+name, q)
}

// CreateDatabase creates a database owned by owner (the superuser if empty).
func (s *Server) CreateDatabase(ctx context.Context, name, owner string) error {
	q := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize()
	if owner != "" {
		q += " OWNER " + pgx.Identifier{owner}.Sanitize()
	}
	return s.exec(ctx, q, q)
}

// LogTail returns the last n lines of the server log, for failure reports.
func (s *Server) LogTail(n int) string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return fmt.Sprintf("(pgtest: cannot read server log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if n >= 0 && len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// quoteLiteral quotes a string for SQL and postgresql.conf alike
// (standard_conforming_strings is on, so only quotes need doubling).
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

func readFrom(path string, off int64) string {
	b, err := os.ReadFile(path)
	if err != nil || off > int64(len(b)) {
		return ""
	}
	return string(b[off:])
}

func postmasterPID(dataDir string) int {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return 0
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		return 0
	}
	return pid
}

func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// reapStale removes server directories whose owning test process is gone
// (killed by a timeout or a panic before Stop), stopping their postmaster
// first. Errors are ignored: reaping is best effort and never blocks a test.
func reapStale(base string) {
	dirs, _ := filepath.Glob(filepath.Join(base, dirPrefix+"*"))
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue // not ours, or still being created
		}
		owner, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || processAlive(owner) {
			continue
		}
		dataDir := filepath.Join(dir, "data")
		if pid := postmasterPID(dataDir); pid > 0 && processAlive(pid) {
			// Only signal a process that really is this directory's
			// postmaster: its pid may have been reused since.
			if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid)); err != nil || cwd != dataDir {
				continue
			}
			_ = syscall.Kill(pid, syscall.SIGQUIT) // = pg_ctl stop -m immediate
			for i := 0; i < 100 && processAlive(pid); i++ {
				time.Sleep(100 * time.Millisecond)
			}
			if processAlive(pid) {
				continue
			}
		}
		_ = os.RemoveAll(dir)
	}
}

// inCI reports whether a missing PostgreSQL must fail rather than skip.
func inCI() bool {
	ci, _ := strconv.ParseBool(os.Getenv("CI"))
	return ci
}

// skipOrFail ends a test that cannot get its server.
func skipOrFail(t testing.TB, msg string, unavailable bool) {
	t.Helper()
	if unavailable && !inCI() {
		t.Skipf("%s (skipped; with CI=true this fails)", msg)
		return
	}
	t.Fatal(msg)
}

// Require starts a server for one test and stops it when the test ends.
// Without PostgreSQL it skips the test, or fails it when CI=true.
func Require(t testing.TB) *Server {
	t.Helper()
	return RequireWith(t, Options{Name: t.Name()})
}

// RequireWith is Require with options.
func RequireWith(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.Name == "" {
		opts.Name = t.Name()
	}
	srv, err := Start(opts)
	if err != nil {
		skipOrFail(t, err.Error(), errors.Is(err, ErrUnavailable))
		return nil
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("PostgreSQL log (last %d lines):\n%s", logTailLines, srv.LogTail(logTailLines))
		}
		if err := srv.Stop(); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return srv
}

// sharedState is what Main passes to Shared.
type sharedState struct {
	PID         int // guards against a value inherited from a parent test
	Err         string
	Unavailable bool

	Host, SocketDir, DataDir, BinDir, SuperUser, SuperPassword, Dir, LogPath string
	Port                                                                     int
}

// Main starts one server for a test package, runs its tests and stops the
// server; tests get it with Shared. Use it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, pgtest.Options{Name: "proxy"})) }
//
// If PostgreSQL is unavailable the tests still run, and those calling Shared
// skip (or fail when CI=true). When a test fails, the end of the server log
// is printed to stderr.
func Main(m *testing.M, opts Options) int {
	if opts.Name == "" {
		opts.Name = "shared"
	}
	st := sharedState{PID: os.Getpid()}
	srv, err := Start(opts)
	if err != nil {
		st.Err = err.Error()
		st.Unavailable = errors.Is(err, ErrUnavailable)
	} else {
		st.Host, st.Port, st.SocketDir, st.DataDir, st.BinDir = srv.Host, srv.Port, srv.SocketDir, srv.DataDir, srv.BinDir
		st.SuperUser, st.SuperPassword, st.Dir, st.LogPath = srv.SuperUser, srv.SuperPassword, srv.dir, srv.logPath
	}
	b, err := json.Marshal(st)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
		return 1
	}
	if err := os.Setenv(sharedEnv, string(b)); err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
		return 1
	}
	defer os.Unsetenv(sharedEnv)

	code := m.Run()
	if srv != nil {
		if code != 0 {
			fmt.Fprintf(os.Stderr, "pgtest: shared PostgreSQL log (last %d lines):\n%s\n", logTailLines, srv.LogTail(logTailLines))
		}
		if err := srv.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "%v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// Shared returns the package's server started by Main. Stop on it is an
// error (Main owns it); Restart works but disturbs every test using it.
func Shared(t testing.TB) *Server {
	t.Helper()
	var st sharedState
	raw, ok := os.LookupEnv(sharedEnv)
	if !ok || json.Unmarshal([]byte(raw), &st) != nil || st.PID != os.Getpid() {
		t.Fatal("pgtest.Shared: no shared server in this test binary; add " +
			"func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, pgtest.Options{})) }")
		return nil
	}
	if st.Err != "" {
		skipOrFail(t, st.Err, st.Unavailable)
		return nil
	}
	srv := &Server{
		Host: st.Host, Port: st.Port, SocketDir: st.SocketDir, DataDir: st.DataDir, BinDir: st.BinDir,
		SuperUser: st.SuperUser, SuperPassword: st.SuperPassword,
		dir: st.Dir, logPath: st.LogPath, shared: true,
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("shared PostgreSQL log (last %d lines):\n%s", logTailLines, srv.LogTail(logTailLines))
		}
	})
	return srv
}
