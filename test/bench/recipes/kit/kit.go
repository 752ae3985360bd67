// Package kit holds what the recipe benchmarks share: child processes
// killed on exit, PostgreSQL via test/pgtest, pgrecycle built from the
// tree, pgbench runs and their logs.
package kit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pgrecycle/pgrecycle/test/pgtest"
)

// Procs keeps every child so that all are killed on exit.
type Procs struct {
	mu   sync.Mutex
	live map[*exec.Cmd]chan struct{}
}

// NewProcs returns an empty set of children.
func NewProcs() *Procs { return &Procs{live: map[*exec.Cmd]chan struct{}{}} }

func (p *Procs) Start(cmd *exec.Cmd) (chan struct{}, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan struct{})
	p.mu.Lock()
	p.live[cmd] = done
	p.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		p.mu.Lock()
		delete(p.live, cmd)
		p.mu.Unlock()
		close(done)
	}()
	return done, nil
}

// stop sends SIGTERM to cmd's process group, SIGKILL after grace.
func (p *Procs) Stop(cmd *exec.Cmd, done chan struct{}, grace time.Duration) {
	select {
	case <-done:
		return
	default:
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-done:
		return
	case <-time.After(grace):
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
}

func (p *Procs) StopAll() {
	p.mu.Lock()
	all := make(map[*exec.Cmd]chan struct{}, len(p.live))
	for c, d := range p.live {
		all[c] = d
	}
	p.mu.Unlock()
	for c, d := range all {
		p.Stop(c, d, 3*time.Second)
	}
}

type Env struct {
	Name  string
	procs *Procs
	PG    *pgtest.Server
	Work  string
	User  string
	Pass  string
	DB    string
	bin   string // pgrecycle
	pgb   string // pgbench
}

func NewEnv(name string) *Env {
	return &Env{Name: name, procs: NewProcs(), User: "bench", DB: "bench"}
}

func (e *Env) Logf(format string, args ...any) {
	fmt.Printf(e.Name+": "+format+"\n", args...)
}

func (e *Env) Cleanup() {
	e.procs.StopAll()
	if e.PG != nil {
		if err := e.PG.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "%s: stop PostgreSQL: %v\n", e.Name, err)
		}
		e.PG = nil
	}
	if e.Work != "" {
		_ = os.RemoveAll(e.Work)
		e.Work = ""
	}
}

func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil &&
			strings.Contains(string(b), "module github.com/pgrecycle/pgrecycle\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run from inside the pgrecycle repository")
		}
		dir = parent
	}
}

// setup builds pgrecycle, starts PostgreSQL and creates the bench role and
// database.
func (e *Env) Setup(ctx context.Context, conf map[string]string) error {
	root, err := RepoRoot()
	if err == nil {
		err = os.Chdir(root)
	}
	if err != nil {
		return err
	}
	if e.pgb, err = exec.LookPath("pgbench"); err != nil {
		return errors.New("pgbench is not installed (Debian: apt-get install postgresql-client)")
	}
	// Under /tmp: the postgres account must be able to enter it.
	if e.Work, err = os.MkdirTemp("/tmp", "pgrecycle-"+e.Name+"-"); err != nil {
		return err
	}
	if err := os.Chmod(e.Work, 0o755); err != nil {
		return err
	}
	e.Logf("building pgrecycle")
	e.bin = filepath.Join(e.Work, "pgrecycle")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", e.bin, "./cmd/pgrecycle").CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/pgrecycle: %v\n%s", err, out)
	}
	e.Logf("starting PostgreSQL")
	if e.PG, err = pgtest.Start(pgtest.Options{Name: e.Name, ExtraConf: conf}); err != nil {
		return err
	}
	pw := make([]byte, 12)
	if _, err := rand.Read(pw); err != nil {
		return err
	}
	e.Pass = hex.EncodeToString(pw)
	if err := e.PG.CreateRole(ctx, e.User, e.Pass, false); err != nil {
		return err
	}
	if err := e.PG.CreateDatabase(ctx, e.DB, e.User); err != nil {
		return err
	}
	return e.PG.Exec(ctx, "GRANT pg_read_all_stats TO "+e.User)
}

func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startPgrecycle starts pgrecycle in front of the bench database with the
// given pool size and extra TOML (appended at the end) and waits until it
// listens. stop ends it.
func (e *Env) StartPgrecycle(ctx context.Context, dir string, size int, extra string) (port int, stop func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, nil, err
	}
	if port, err = FreePort(); err != nil {
		return 0, nil, err
	}
	auth := filepath.Join(dir, "userlist.txt")
	if err := os.WriteFile(auth, []byte(fmt.Sprintf("%q %q\n", e.User, e.Pass)), 0o600); err != nil {
		return 0, nil, err
	}
	conf := fmt.Sprintf(`[listen]
addr = "127.0.0.1:%d"
max_client_conn = 1000

[auth]
type = "scram-sha-256"
file = %q

[pool]
mode = "transaction"
size = %d

[recycle]
max_lifetime = "0"

[databases.%s]
host = "127.0.0.1"
port = %d
dbname = %q
sslmode = "disable"

[log]
level = "info"
%s`, port, auth, size, e.DB, e.PG.Port, e.DB, extra)
	path := filepath.Join(dir, "pgrecycle.toml")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return 0, nil, err
	}
	out, err := os.Create(filepath.Join(dir, "pgrecycle.log"))
	if err != nil {
		return 0, nil, err
	}
	defer out.Close()
	cmd := exec.Command(e.bin, "-config", path)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = out, out
	done, err := e.procs.Start(cmd)
	if err != nil {
		return 0, nil, err
	}
	stop = func() { e.procs.Stop(cmd, done, 5*time.Second) }
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
		if err == nil {
			c.Close()
			return port, stop, nil
		}
		select {
		case <-done:
			b, _ := os.ReadFile(filepath.Join(dir, "pgrecycle.log"))
			return 0, nil, fmt.Errorf("pgrecycle exited:\n%s", b)
		case <-ctx.Done():
			stop()
			return 0, nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return 0, nil, fmt.Errorf("pgrecycle does not listen: %v", err)
		}
	}
}

// dsn of the bench role on the bench database at port (PostgreSQL's or
// pgrecycle's).
func (e *Env) DSN(port int) string {
	return fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable", e.User, e.Pass, port, e.DB)
}

// pgbench runs pgbench against port with args (before the database name)
// and returns its output; -l logs go under prefix.
func (e *Env) Pgbench(ctx context.Context, port int, prefix string, args ...string) (string, error) {
	all := append([]string{"-h", "127.0.0.1", "-p", strconv.Itoa(port), "-U", e.User, "-n",
		"-l", "--log-prefix=" + prefix}, args...)
	all = append(all, e.DB)
	pb := exec.Command(e.pgb, all...)
	pb.Dir = filepath.Dir(prefix)
	pb.Env = append(PgFreeEnv(), "PGPASSWORD="+e.Pass, "PGSSLMODE=disable", "PGCONNECT_TIMEOUT=60")
	var stdout, stderr bytes.Buffer
	pb.Stdout, pb.Stderr = &stdout, &stderr
	done, err := e.procs.Start(pb)
	if err != nil {
		return "", err
	}
	select {
	case <-done:
	case <-ctx.Done():
		e.procs.Stop(pb, done, time.Second)
		return "", ctx.Err()
	}
	if !pb.ProcessState.Success() {
		return stdout.String(), fmt.Errorf("pgbench failed: %s", stderr.String())
	}
	return stdout.String() + stderr.String(), nil
}

func PgFreeEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			out = append(out, kv)
		}
	}
	return out
}

// TxEntry is one line of a pgbench -l log.
type TxEntry struct {
	Client, TxNo int
	Us           float64
}

// ReadTxLogs reads pgbench's per-transaction logs PREFIX.*: "client_id
// transaction_no time ...", time in microseconds; "failed" and "skipped"
// lines are left out.
func ReadTxLogs(prefix string) ([]TxEntry, error) {
	files, err := filepath.Glob(prefix + ".*")
	if err != nil {
		return nil, err
	}
	var out []TxEntry
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) < 3 {
				continue
			}
			c, _ := strconv.Atoi(fs[0])
			n, _ := strconv.Atoi(fs[1])
			us, err := strconv.ParseFloat(fs[2], 64)
			if err != nil {
				continue
			}
			out = append(out, TxEntry{c, n, us})
		}
		err = sc.Err()
		fh.Close()
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func Percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p * float64(len(sorted)-1))
	return sorted[i]
}

func Mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	c := append([]float64(nil), xs...)
	sort.Float64s(c)
	return c[len(c)/2]
}

func ParseFloat(re *regexp.Regexp, s string) float64 {
	m := re.FindStringSubmatch(s)
	if m == nil {
		return 0
	}
	f, _ := strconv.ParseFloat(m[1], 64)
	return f
}

var ReTPS = regexp.MustCompile(`(?m)^tps = ([0-9.]+)`)

func RssAnonKB(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "RssAnon:") {
			if f := strings.Fields(line); len(f) >= 2 {
				n, _ := strconv.ParseInt(f[1], 10, 64)
				return n
			}
		}
	}
	return -1
}

// pgVersion is `postgres --version`.
func (e *Env) PGVersion() string {
	out, err := exec.Command(filepath.Join(e.PG.BinDir, "postgres"), "--version").Output()
	if err != nil {
		return "PostgreSQL"
	}
	return strings.TrimSpace(string(out))
}
