// Command manyschema runs the many-schema benchmark of issue 3: a database
// with many schemas × tables, clients touching tables of random schemas,
// through (a) PgBouncer with its defaults (transaction pooling), (b)
// pgrecycle with recycling off and (c) pgrecycle with max_memory. It samples
// the sum of RssAnon of every PostgreSQL backend serving the pooler once a
// second and reports its maximum and final value, tps and p99 latency.
//
//	go run ./test/bench/manyschema           # 3 × 60 s, writes docs/recipes/many-schemas.md and BENCHMARKS.md
//	go run ./test/bench/manyschema -quick    # 3 × 15 s, writes nothing but test/bench/results/
//
// Every process it starts (PostgreSQL, PgBouncer, pgrecycle, pgbench) is
// stopped on exit, on error and on SIGINT/SIGTERM/SIGHUP.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgrecycle/pgrecycle/test/bench/recipes/kit"
	"github.com/pgrecycle/pgrecycle/test/pgtest"
)

type options struct {
	seconds   int
	quick     bool
	schemas   int
	tables    int
	clients   int
	jobs      int
	pool      int
	maxMemory string
	interval  string
	targets   string
	zipf      float64 // 0: uniform access; else pgbench random_zipfian's parameter over schemas
	write     bool
	results   string
}

// target is one of the compared configurations.
type target struct {
	key, label string
}

var allTargets = []target{
	{"a", "(a) PgBouncer, defaults (transaction pooling)"},
	{"b", "(b) pgrecycle, recycling off"},
	{"c", "(c) pgrecycle, max_memory"},
}

// sample is one reading of the pool's backends.
type sample struct {
	at       time.Duration
	backends int
	totalKB  int64
	maxKB    int64 // largest single backend
}

// result of one target's run.
type result struct {
	target    target
	tps       float64
	p50, p99  float64 // ms
	txns      int64
	failed    int64
	samples   []sample
	distinct  int // distinct backend pids seen over the run
	err       error
	pgbenchIO string
}

func (r *result) maxTotal() (kb int64) {
	for _, s := range r.samples {
		if s.totalKB > kb {
			kb = s.totalKB
		}
	}
	return kb
}

func (r *result) maxBackend() (kb int64) {
	for _, s := range r.samples {
		if s.maxKB > kb {
			kb = s.maxKB
		}
	}
	return kb
}

func (r *result) final() sample {
	if len(r.samples) == 0 {
		return sample{}
	}
	return r.samples[len(r.samples)-1]
}

type env struct {
	procs  *kit.Procs
	pg     *pgtest.Server
	work   string
	o      options
	runAs  *syscall.Credential
	user   string
	pass   string
	db     string
	bin    string // pgrecycle
	bouncr string // pgbouncer
	pgb    string // pgbench
	script string
}

func main() { os.Exit(realMain()) }

func parseOptions() (options, error) {
	var o options
	fs := flag.NewFlagSet("manyschema", flag.ContinueOnError)
	fs.BoolVar(&o.quick, "quick", false, "15 s per target; docs are not written")
	fs.IntVar(&o.seconds, "time", 0, "seconds per target (default 60, quick 15)")
	fs.IntVar(&o.schemas, "schemas", 500, "schemas")
	fs.IntVar(&o.tables, "tables", 10, "tables per schema")
	fs.IntVar(&o.clients, "clients", 20, "pgbench clients (-c)")
	fs.IntVar(&o.jobs, "jobs", 2, "pgbench threads (-j)")
	fs.IntVar(&o.pool, "pool", 10, "pool size of both poolers")
	fs.StringVar(&o.maxMemory, "max-memory", "32MB", "max_memory of target (c)")
	fs.StringVar(&o.interval, "memory-check-interval", "1s", "memory_check_interval of target (c)")
	fs.Float64Var(&o.zipf, "zipf", 0, "0: every schema equally likely; else the skew of pgbench's random_zipfian over schemas (e.g. 1.1: a few tenants busy, a long tail rarely)")
	fs.StringVar(&o.targets, "targets", "a,b,c", "targets to run, in order: a (PgBouncer), b (pgrecycle, no recycling), c (pgrecycle, max_memory)")
	write := fs.String("write", "", "write docs/recipes/many-schemas.md and the BENCHMARKS.md section: true|false (default true, quick false)")
	fs.StringVar(&o.results, "results", "test/bench/results", "directory for raw results (gitignored)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return o, err
	}
	if o.seconds <= 0 {
		o.seconds = 60
		if o.quick {
			o.seconds = 15
		}
	}
	o.write = !o.quick
	if *write != "" {
		b, err := strconv.ParseBool(*write)
		if err != nil {
			return o, fmt.Errorf("-write: %v", err)
		}
		o.write = b
	}
	if o.zipf != 0 && (o.zipf < 1.001 || o.zipf > 1000) {
		return o, errors.New("-zipf: pgbench's random_zipfian takes 1.001 to 1000")
	}
	if o.schemas < 1 || o.tables < 1 || o.clients < 1 || o.jobs < 1 || o.pool < 1 {
		return o, errors.New("schemas, tables, clients, jobs and pool must be positive")
	}
	return o, nil
}

func realMain() int {
	o, err := parseOptions()
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(os.Stderr, "manyschema: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	root, err := kit.RepoRoot()
	if err == nil {
		err = os.Chdir(root)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "manyschema: %v\n", err)
		return 1
	}
	e := &env{procs: kit.NewProcs(), o: o, user: "bench", db: "bench"}
	defer e.cleanup()
	defer func() {
		if p := recover(); p != nil {
			e.cleanup()
			panic(p)
		}
	}()
	if err := e.setup(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "manyschema: %v\n", err)
		return 1
	}
	started := time.Now()
	dir := filepath.Join(o.results, started.UTC().Format("20060102T150405Z")+"-manyschema")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fmt.Fprintf(os.Stderr, "manyschema: %v\n", err)
		return 1
	}
	var results []*result
	failed := false
	for _, key := range strings.Split(o.targets, ",") {
		var t target
		for _, a := range allTargets {
			if a.key == strings.TrimSpace(key) {
				t = a
			}
		}
		if t.key == "" {
			fmt.Fprintf(os.Stderr, "manyschema: unknown target %q\n", key)
			return 2
		}
		if t.key == "a" && e.bouncr == "" {
			fmt.Println("manyschema: PgBouncer is not installed: (a) skipped")
			continue
		}
		fmt.Printf("manyschema: %s, %d s\n", t.label, o.seconds)
		r := e.run(ctx, t, dir)
		if r.err != nil {
			failed = true
			fmt.Fprintf(os.Stderr, "manyschema: %s: %v\n", t.label, r.err)
		}
		fmt.Printf("  tps %.0f, p99 %.2f ms, RssAnon max %s final %s, %d backends used\n",
			r.tps, r.p99, mib(r.maxTotal()), mib(r.final().totalKB), r.distinct)
		results = append(results, r)
		if ctx.Err() != nil {
			break
		}
	}
	md := e.report(results, started)
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(md), 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "manyschema: %v\n", err)
	}
	fmt.Println()
	fmt.Println(md)
	fmt.Printf("manyschema: raw results in %s\n", dir)
	if failed || ctx.Err() != nil {
		return 1
	}
	if o.write {
		if err := writeDocs(o, md); err != nil {
			fmt.Fprintf(os.Stderr, "manyschema: %v\n", err)
			return 1
		}
		fmt.Println("manyschema: updated docs/recipes/many-schemas.md and BENCHMARKS.md")
	}
	return 0
}

func (e *env) cleanup() {
	e.procs.StopAll()
	if e.pg != nil {
		if err := e.pg.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "manyschema: stop PostgreSQL: %v\n", err)
		}
		e.pg = nil
	}
	if e.work != "" {
		_ = os.RemoveAll(e.work)
		e.work = ""
	}
}

func (e *env) setup(ctx context.Context) error {
	var err error
	if e.pgb, err = exec.LookPath("pgbench"); err != nil {
		return errors.New("pgbench is not installed (Debian: apt-get install postgresql-client)")
	}
	if p, err := exec.LookPath("pgbouncer"); err == nil {
		e.bouncr = p
	} else if _, err := os.Stat("/usr/sbin/pgbouncer"); err == nil {
		e.bouncr = "/usr/sbin/pgbouncer"
	}
	if os.Geteuid() == 0 {
		// PgBouncer refuses to run as root: it runs as postgres.
		u, err := user.Lookup("postgres")
		if err != nil {
			return fmt.Errorf("running as root needs a postgres account: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		e.runAs = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
	}
	// Under /tmp: the postgres account must be able to enter it.
	if e.work, err = os.MkdirTemp("/tmp", "pgrecycle-manyschema-"); err != nil {
		return err
	}
	if err := os.Chmod(e.work, 0o755); err != nil {
		return err
	}
	fmt.Println("manyschema: building pgrecycle")
	e.bin = filepath.Join(e.work, "pgrecycle")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", e.bin, "./cmd/pgrecycle").CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/pgrecycle: %v\n%s", err, out)
	}
	fmt.Println("manyschema: starting PostgreSQL")
	e.pg, err = pgtest.Start(pgtest.Options{Name: "manyschema", ExtraConf: map[string]string{
		"shared_buffers":  "256MB",
		"max_connections": "200",
	}})
	if err != nil {
		return err
	}
	pw := make([]byte, 12)
	if _, err := rand.Read(pw); err != nil {
		return err
	}
	e.pass = hex.EncodeToString(pw)
	if err := e.pg.CreateRole(ctx, e.user, e.pass, false); err != nil {
		return err
	}
	if err := e.pg.CreateDatabase(ctx, e.db, e.user); err != nil {
		return err
	}
	// memory_source "contexts" reads pg_backend_memory_contexts: PG 15+
	// allows it to members of pg_read_all_stats.
	if err := e.pg.Exec(ctx, "GRANT pg_read_all_stats TO "+e.user); err != nil {
		return err
	}
	if err := e.createSchemas(ctx); err != nil {
		return err
	}
	e.script = filepath.Join(e.work, "touch.sql")
	schema := fmt.Sprintf("random(1, %d)", e.o.schemas)
	if e.o.zipf != 0 {
		schema = fmt.Sprintf("random_zipfian(1, %d, %g)", e.o.schemas, e.o.zipf)
	}
	script := fmt.Sprintf("\\set s %s\n\\set t random(1, %d)\nSELECT touch(:s, :t);\n", schema, e.o.tables)
	return os.WriteFile(e.script, []byte(script), 0o644)
}

// createSchemas creates the schemas, one transaction per schema (a single
// one would overflow the shared lock table), on two connections, then
// touches every table once so that the catalog is in shared_buffers before
// the first measured run.
func (e *env) createSchemas(ctx context.Context) error {
	t0 := time.Now()
	fmt.Printf("manyschema: creating %d schemas × %d tables\n", e.o.schemas, e.o.tables)
	dsn := e.pg.DSN(e.user, e.pass, e.db)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	_, err = conn.Exec(ctx, `CREATE FUNCTION public.touch(s int, t int) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
	EXECUTE format('SELECT count(*) FROM %I.%I WHERE a = 1', 's' || s, 't' || t) INTO n;
	RETURN n;
END $$`)
	conn.Close(ctx)
	if err != nil {
		return err
	}
	const workers = 2
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		go func(w int) {
			c, err := pgx.Connect(ctx, dsn)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close(context.WithoutCancel(ctx))
			for s := 1 + w; s <= e.o.schemas; s += workers {
				q := fmt.Sprintf(`DO $$
BEGIN
	CREATE SCHEMA s%[1]d;
	FOR t IN 1..%[2]d LOOP
		EXECUTE format('CREATE TABLE s%[1]d.t%%s (id int PRIMARY KEY, a int, b text, c timestamptz DEFAULT now())', t);
		EXECUTE format('CREATE INDEX ON s%[1]d.t%%s (a)', t);
		EXECUTE format('INSERT INTO s%[1]d.t%%s (id, a, b) SELECT i, i %%%% 7, md5(i::text) FROM generate_series(1, 10) i', t);
	END LOOP;
END $$`, s, e.o.tables)
				if _, err := c.Exec(ctx, q); err != nil {
					errs <- fmt.Errorf("schema s%d: %w", s, err)
					return
				}
			}
			errs <- nil
		}(w)
	}
	for w := 0; w < workers; w++ {
		if err := <-errs; err != nil {
			return err
		}
	}
	conn, err = pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "ANALYZE"); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf("SELECT touch(s, t) FROM generate_series(1, %d) s, generate_series(1, %d) t",
		e.o.schemas, e.o.tables)); err != nil {
		return err
	}
	fmt.Printf("manyschema: %d tables ready in %s\n", e.o.schemas*e.o.tables, time.Since(t0).Round(time.Second))
	return nil
}

// startPooler writes the configuration of target t, starts it and waits
// until it listens.
func (e *env) startPooler(ctx context.Context, t target, dir string) (*exec.Cmd, chan struct{}, int, error) {
	port, err := kit.FreePort()
	if err != nil {
		return nil, nil, 0, err
	}
	auth := filepath.Join(dir, "userlist.txt")
	if err := os.WriteFile(auth, []byte(fmt.Sprintf("%q %q\n", e.user, e.pass)), 0o600); err != nil {
		return nil, nil, 0, err
	}
	var cmd *exec.Cmd
	out, err := os.Create(filepath.Join(dir, "pooler.log"))
	if err != nil {
		return nil, nil, 0, err
	}
	defer out.Close()
	switch t.key {
	case "a":
		// PgBouncer's defaults except what it needs to run here: the
		// pool size of both poolers, the SCRAM userlist, no unix socket.
		ini := fmt.Sprintf(`[databases]
%s = host=127.0.0.1 port=%d dbname=%s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = scram-sha-256
auth_file = %s
pool_mode = transaction
default_pool_size = %d
max_client_conn = 1000
`, e.db, e.pg.Port, e.db, port, auth, e.o.pool)
		path := filepath.Join(dir, "pgbouncer.ini")
		if err := os.WriteFile(path, []byte(ini), 0o644); err != nil {
			return nil, nil, 0, err
		}
		cmd = exec.Command(e.bouncr, path)
		if e.runAs != nil {
			for _, p := range []string{dir, auth} {
				if err := os.Chown(p, int(e.runAs.Uid), int(e.runAs.Gid)); err != nil {
					return nil, nil, 0, err
				}
			}
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: e.runAs}
		}
	default:
		recycle := "max_lifetime = \"0\"\n"
		if t.key == "c" {
			recycle += fmt.Sprintf("max_memory = %q\nmemory_check_interval = %q\nmemory_source = \"contexts\"\n", e.o.maxMemory, e.o.interval)
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
%s
[databases.%s]
host = "127.0.0.1"
port = %d
dbname = %q
sslmode = "disable"

[log]
level = "info"
`, port, auth, e.o.pool, recycle, e.db, e.pg.Port, e.db)
		path := filepath.Join(dir, "pgrecycle.toml")
		if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
			return nil, nil, 0, err
		}
		cmd = exec.Command(e.bin, "-config", path)
	}
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = out, out
	done, err := e.procs.Start(cmd)
	if err != nil {
		return nil, nil, 0, err
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
		if err == nil {
			c.Close()
			return cmd, done, port, nil
		}
		select {
		case <-done:
			b, _ := os.ReadFile(filepath.Join(dir, "pooler.log"))
			return nil, nil, 0, fmt.Errorf("%s exited:\n%s", t.label, b)
		case <-ctx.Done():
			e.procs.Stop(cmd, done, time.Second)
			return nil, nil, 0, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			e.procs.Stop(cmd, done, time.Second)
			return nil, nil, 0, fmt.Errorf("%s does not listen: %v", t.label, err)
		}
	}
}

// sampler reads RssAnon of every client backend of the benchmark role once
// a second until ctx ends.
func (e *env) sampler(ctx context.Context, conn *pgx.Conn, start time.Time, pids map[int]bool) []sample {
	var out []sample
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		s := sample{at: time.Since(start)}
		rows, err := conn.Query(ctx, `SELECT pid FROM pg_stat_activity
WHERE usename = $1 AND datname = $2 AND backend_type = 'client backend'`, e.user, e.db)
		if err == nil {
			var list []int
			for rows.Next() {
				var pid int
				if rows.Scan(&pid) == nil {
					list = append(list, pid)
				}
			}
			rows.Close()
			for _, pid := range list {
				kb := kit.RssAnonKB(pid)
				if kb < 0 {
					continue // exited meanwhile
				}
				pids[pid] = true
				s.backends++
				s.totalKB += kb
				if kb > s.maxKB {
					s.maxKB = kb
				}
			}
			out = append(out, s)
		}
		select {
		case <-ctx.Done():
			return out
		case <-tick.C:
		}
	}
}

var (
	reTPS       = regexp.MustCompile(`(?m)^tps = ([0-9.]+)`)
	reProcessed = regexp.MustCompile(`(?m)^number of transactions actually processed: ([0-9]+)`)
	reFailed    = regexp.MustCompile(`(?m)^number of failed transactions: ([0-9]+)`)
)

func (e *env) run(ctx context.Context, t target, results string) *result {
	r := &result{target: t}
	dir := filepath.Join(e.work, "run-"+t.key)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		r.err = err
		return r
	}
	// Start from no backend of the benchmark role.
	super, err := pgx.Connect(ctx, e.pg.SuperDSN())
	if err != nil {
		r.err = err
		return r
	}
	defer super.Close(context.WithoutCancel(ctx))
	for i := 0; i < 100; i++ {
		var n int
		if err := super.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE usename = $1", e.user).Scan(&n); err != nil || n == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	cmd, done, port, err := e.startPooler(ctx, t, dir)
	if err != nil {
		r.err = err
		return r
	}
	defer func() {
		e.procs.Stop(cmd, done, 5*time.Second)
		if b, err := os.ReadFile(filepath.Join(dir, "pooler.log")); err == nil {
			_ = os.WriteFile(filepath.Join(results, t.key+"-pooler.log"), b, 0o644)
		}
	}()

	prefix := filepath.Join(dir, "txlog")
	pb := exec.Command(e.pgb, "-h", "127.0.0.1", "-p", strconv.Itoa(port), "-U", e.user,
		"-n", "-M", "simple", "-f", e.script, "-c", strconv.Itoa(e.o.clients), "-j", strconv.Itoa(e.o.jobs),
		"-T", strconv.Itoa(e.o.seconds), "-l", "--log-prefix="+prefix, e.db)
	pb.Dir = dir
	pb.Env = append(kit.PgFreeEnv(), "PGPASSWORD="+e.pass, "PGSSLMODE=disable", "PGCONNECT_TIMEOUT=60")
	var stdout, stderr bytes.Buffer
	pb.Stdout, pb.Stderr = &stdout, &stderr

	sctx, stopSampling := context.WithCancel(ctx)
	pids := map[int]bool{}
	samples := make(chan []sample, 1)
	start := time.Now()
	go func() { samples <- e.sampler(sctx, super, start, pids) }()
	pbDone, err := e.procs.Start(pb)
	if err != nil {
		stopSampling()
		<-samples
		r.err = err
		return r
	}
	select {
	case <-pbDone:
	case <-ctx.Done():
		e.procs.Stop(pb, pbDone, time.Second)
	case <-time.After(time.Duration(e.o.seconds)*time.Second + 3*time.Minute):
		e.procs.Stop(pb, pbDone, time.Second)
	}
	stopSampling()
	r.samples = <-samples
	r.distinct = len(pids)
	r.pgbenchIO = stdout.String() + stderr.String()
	_ = os.WriteFile(filepath.Join(results, t.key+"-pgbench.txt"), []byte(r.pgbenchIO), 0o644)
	writeSamples(filepath.Join(results, t.key+"-rssanon.csv"), r.samples)
	if ctx.Err() != nil {
		r.err = ctx.Err()
		return r
	}
	if pb.ProcessState == nil || !pb.ProcessState.Success() {
		r.err = fmt.Errorf("pgbench failed: %s", kit.LastLines(stderr.String(), 5))
	}
	r.tps = kit.ParseFloat(reTPS, stdout.String())
	r.txns = int64(kit.ParseFloat(reProcessed, stdout.String()))
	r.failed = int64(kit.ParseFloat(reFailed, stdout.String()))
	lats, err := kit.ReadLatencies(prefix)
	removeTxLogs(prefix)
	if err != nil && r.err == nil {
		r.err = err
	}
	if len(lats) > 0 {
		r.p50 = kit.NearestRank(lats, 0.50) / 1000
		r.p99 = kit.NearestRank(lats, 0.99) / 1000
	}
	return r
}

func writeSamples(path string, ss []sample) {
	var b strings.Builder
	b.WriteString("seconds,backends,total_rssanon_kb,max_backend_rssanon_kb\n")
	for _, s := range ss {
		fmt.Fprintf(&b, "%.1f,%d,%d,%d\n", s.at.Seconds(), s.backends, s.totalKB, s.maxKB)
	}
	_ = os.WriteFile(path, []byte(b.String()), 0o644)
}

func mib(kb int64) string { return fmt.Sprintf("%.0f MiB", float64(kb)/1024) }

// report renders the results as Markdown: the main table, the memory over
// time, the verdict against the goal and the run's settings.
func (e *env) report(rs []*result, started time.Time) string {
	var b strings.Builder
	o := e.o
	b.WriteString("| target | tps | p99 latency | sum of backends' RssAnon: max | final | largest backend | backends used | failed tx |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rs {
		label := r.target.label
		if r.target.key == "c" {
			label = fmt.Sprintf("(c) pgrecycle, max_memory = %q, check every %s", o.maxMemory, o.interval)
		}
		fmt.Fprintf(&b, "| %s | %.0f | %.2f ms | %s | %s | %s | %d | %d |\n", label, r.tps, r.p99,
			mib(r.maxTotal()), mib(r.final().totalKB), mib(r.maxBackend()), r.distinct, r.failed)
	}
	// Memory over time, at six points of the run.
	step := o.seconds / 6
	if step < 1 {
		step = 1
	}
	b.WriteString("\nSum of the pool's backends' RssAnon over the run:\n\n| target |")
	var marks []int
	for s := step; s <= o.seconds; s += step {
		marks = append(marks, s)
		fmt.Fprintf(&b, " %d s |", s)
	}
	b.WriteString("\n|---|")
	for range marks {
		b.WriteString("---:|")
	}
	b.WriteString("\n")
	for _, r := range rs {
		fmt.Fprintf(&b, "| (%s) |", r.target.key)
		for _, m := range marks {
			var at *sample
			for i := range r.samples {
				if r.samples[i].at <= time.Duration(m)*time.Second+500*time.Millisecond {
					at = &r.samples[i]
				}
			}
			if at == nil {
				b.WriteString(" – |")
			} else {
				fmt.Fprintf(&b, " %s |", mib(at.totalKB))
			}
		}
		b.WriteString("\n")
	}
	var a, c *result
	for _, r := range rs {
		switch r.target.key {
		case "a":
			a = r
		case "c":
			c = r
		}
	}
	if c != nil {
		bound := int64(o.pool) * parseMB(o.maxMemory) * 1024
		fmt.Fprintf(&b, "\nGoal of issue 3: with (c), the total stays near pool.size × max_memory = %d × %s = %s",
			o.pool, o.maxMemory, mib(bound))
		if a != nil && a.tps > 0 {
			fmt.Fprintf(&b, " while tps stays within 5%% of PgBouncer's: (c) max %s (%.2f× the bound), tps %.2f× PgBouncer's.\n",
				mib(c.maxTotal()), float64(c.maxTotal())/float64(bound), c.tps/a.tps)
		} else {
			fmt.Fprintf(&b, ": (c) max %s (%.2f× the bound).\n", mib(c.maxTotal()), float64(c.maxTotal())/float64(bound))
		}
	}
	pgv := ""
	if out, err := exec.Command(filepath.Join(e.pg.BinDir, "postgres"), "--version").Output(); err == nil {
		pgv = strings.TrimSpace(string(out))
	}
	bv := ""
	if e.bouncr != "" {
		if out, err := exec.Command(e.bouncr, "--version").Output(); err == nil {
			bv = strings.SplitN(strings.TrimSpace(string(out)), "\n", 2)[0]
		}
	}
	fmt.Fprintf(&b, "\nRun of %s: %d schemas × %d tables (each with a primary key, an index and 10 rows); "+
		"pgbench -M simple -c %d -j %d -T %d running `SELECT touch(:s, :t)` on %s; pool size %d; "+
		"RssAnon from /proc/<pid>/status of every backend of the benchmark role, sampled every second. "+
		"%s, %s, %d CPUs, Go %s.\n",
		started.UTC().Format("2006-01-02"), o.schemas, o.tables, o.clients, o.jobs, o.seconds, o.access(), o.pool,
		pgv, bv, runtime.NumCPU(), strings.TrimPrefix(runtime.Version(), "go"))
	return b.String()
}

func parseMB(s string) int64 {
	s = strings.TrimSpace(strings.ToUpper(s))
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "GB"):
		mult, s = 1024, strings.TrimSuffix(s, "GB")
	case strings.HasSuffix(s, "MB"):
		s = strings.TrimSuffix(s, "MB")
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	return n * mult
}

const (
	recipePath  = "docs/recipes/many-schemas.md"
	benchPath   = "BENCHMARKS.md"
	sectionHead = "## Many schemas (recycling)"
)

// access describes how the benchmark picks a schema, for the report.
func (o options) access() string {
	if o.zipf == 0 {
		return "a random schema (all equally likely) and table"
	}
	return fmt.Sprintf("a schema drawn by `random_zipfian(1, %d, %g)` (a few busy tenants, a long tail) and a random table", o.schemas, o.zipf)
}

// markers name the block of the docs that a run replaces: uniform and
// skewed access keep a table each.
func (o options) markers() (begin, end string) {
	name := "manyschema"
	if o.zipf != 0 {
		name = "manyschema-zipfian"
	}
	return "<!-- " + name + ":begin -->", "<!-- " + name + ":end -->"
}

// writeDocs puts the table between the run's markers in the recipe and in
// the BENCHMARKS.md section; a block missing from a file is appended to it.
func writeDocs(o options, md string) error {
	begin, end := o.markers()
	block := begin + "\n" + md + end
	recipeAppend := ""
	if o.zipf != 0 {
		recipeAppend = "\n### Skewed access\n\n" + block + "\n"
	}
	if err := replaceBlock(recipePath, begin, end, block, recipeAppend); err != nil {
		return err
	}
	section := "\n" + sectionHead + "\n\n" +
		"Tenant-per-schema databases make every PostgreSQL backend cache the catalog of each table it touches; " +
		"see [docs/recipes/many-schemas.md](docs/recipes/many-schemas.md). Reproduce with `make bench-manyschema` (~5 minutes).\n\n" +
		block + "\n"
	if o.zipf != 0 {
		section = "\n" + block + "\n"
	}
	return replaceBlock(benchPath, begin, end, block, section)
}

func replaceBlock(path, begin, end, block, appendIfMissing string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(b)
	i := strings.Index(s, begin)
	j := strings.Index(s, end)
	switch {
	case i >= 0 && j > i:
		s = s[:i] + block + s[j+len(end):]
	case appendIfMissing != "":
		s = strings.TrimRight(s, "\n") + "\n" + appendIfMissing
	default:
		return fmt.Errorf("%s has no %s … %s markers", path, begin, end)
	}
	return os.WriteFile(path, []byte(s), 0o644)
}

// removeTxLogs deletes pgbench's per-transaction logs once read: at 20
// clients for 60 s they are large, and only the percentiles are kept.
func removeTxLogs(prefix string) {
	files, _ := filepath.Glob(prefix + ".*")
	for _, f := range files {
		_ = os.Remove(f)
	}
}
