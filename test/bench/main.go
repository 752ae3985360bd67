// Command bench runs pgrecycle and PgBouncer side by side against one
// PostgreSQL with the same pool mode, pool size and client authentication,
// and writes the results to BENCHMARKS.md.
//
//	go run ./test/bench              # full run, ~15 minutes (make bench)
//	BENCH_QUICK=1 go run ./test/bench   # ~2 minutes, BENCHMARKS.md untouched
//	go run ./test/bench -serve       # start everything, print ports and pids, wait for Ctrl-C
//	go run ./test/bench -profile     # pprof CPU/heap profiles of pgrecycle run in-process
//	go run ./test/bench -report DIR  # rebuild the report of a finished run
//
// Environment (flags of the same meaning win): BENCH_TIME (seconds per
// measured run), BENCH_RUNS (repetitions), BENCH_QUICK, BENCH_IDLE (idle
// connections held in the many-clients scenario), BENCH_MANY (active
// clients there), BENCH_ALLCPUS (1 adds a column for pgrecycle with a thread per CPU),
// BENCH_SCENARIOS (comma list of latency,pooled,many,churn), BENCH_MD
// (path of the Markdown report to update, "" for none).
//
// Every process the benchmark starts (PostgreSQL, PgBouncer, pgrecycle,
// pgbench) is stopped when it exits, fails or gets SIGINT/SIGTERM/SIGHUP.
// The benchmark is not a test: CI never runs it.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pgrecycle/pgrecycle/test/bench/recipes/kit"
	"github.com/pgrecycle/pgrecycle/test/pgtest"
)

type options struct {
	seconds   int
	runs      int
	warmup    int
	quick     bool
	idle      int
	many      int
	allCPUs   bool
	scenarios map[string]bool
	md        string
	results   string
	pgrecycle string
	scale     int
	poolSize  int
	serve     bool
	report    string
	mdSet     bool
	profile   bool
	helper    string
}

func main() {
	os.Exit(realMain())
}

func envInt(name string, def int) int {
	if v := os.Getenv(name); v != "" {
		v = strings.TrimSuffix(v, "s")
		if n, err := strconv.Atoi(v); err == nil {
			return n
		}
		fmt.Fprintf(os.Stderr, "bench: ignoring %s=%q (not a number)\n", name, os.Getenv(name))
	}
	return def
}

func envBool(name string, def bool) bool {
	if v := os.Getenv(name); v != "" {
		b, err := strconv.ParseBool(v)
		if err == nil {
			return b
		}
		fmt.Fprintf(os.Stderr, "bench: ignoring %s=%q (not a boolean)\n", name, v)
	}
	return def
}

func parseOptions() (options, error) {
	quick := envBool("BENCH_QUICK", false)
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.BoolVar(&o.quick, "quick", quick, "short runs, one repetition, fewer clients; BENCHMARKS.md is not updated (env BENCH_QUICK)")
	seconds := fs.Int("time", 0, "seconds per measured run (env BENCH_TIME; default 10, quick 3)")
	runs := fs.Int("runs", 0, "repetitions of each measurement (env BENCH_RUNS; default 3, quick 1)")
	idle := fs.Int("idle", 0, "idle connections held in the many-clients scenario (env BENCH_IDLE; default 10000, quick 1000)")
	many := fs.Int("many", 0, "active clients in the many-clients scenario (env BENCH_MANY; default 1000, quick 200)")
	allCPUs := fs.String("allcpus", "", "also run pgrecycle with a thread per CPU (GOMAXPROCS = CPUs, not the default half) as a third column: true|false (env BENCH_ALLCPUS; default false: it adds ~40% to the run time)")
	scen := fs.String("scenarios", os.Getenv("BENCH_SCENARIOS"), "comma list of latency,pooled,many,churn (env BENCH_SCENARIOS; default all)")
	md, mdSet := os.LookupEnv("BENCH_MD")
	fs.StringVar(&o.md, "md", md, "Markdown report to update (env BENCH_MD; default BENCHMARKS.md, quick none)")
	fs.StringVar(&o.results, "results", "test/bench/results", "directory for raw results (gitignored)")
	fs.StringVar(&o.pgrecycle, "pgrecycle", "", "pgrecycle binary (default: built from ./cmd/pgrecycle)")
	fs.IntVar(&o.scale, "scale", 10, "pgbench scale factor")
	fs.IntVar(&o.poolSize, "pool", 10, "pool size of both poolers")
	fs.BoolVar(&o.serve, "serve", false, "start PostgreSQL, pgrecycle and PgBouncer, print their ports and pids, wait for Ctrl-C (for profiling)")
	fs.BoolVar(&o.profile, "profile", false, "instead of the comparison, run pgrecycle in-process and write CPU and heap profiles (pooled -c 50 -M extended, -c 1, idle clients) to the results directory")
	fs.StringVar(&o.helper, "idle-helper", "", "internal: hold PORT:N idle connections until stdin closes")
	fs.StringVar(&o.report, "report", "", "rebuild the report of a finished run from its results directory, without running anything")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	pick := func(flagV int, env string, full, q int) int {
		if flagV > 0 {
			return flagV
		}
		def := full
		if o.quick {
			def = q
		}
		return envInt(env, def)
	}
	o.seconds = pick(*seconds, "BENCH_TIME", 10, 3)
	o.runs = pick(*runs, "BENCH_RUNS", 3, 1)
	o.idle = pick(*idle, "BENCH_IDLE", 10000, 1000)
	o.many = pick(*many, "BENCH_MANY", 1000, 200)
	o.warmup = 1
	o.allCPUs = envBool("BENCH_ALLCPUS", false)
	if *allCPUs != "" {
		b, err := strconv.ParseBool(*allCPUs)
		if err != nil {
			return o, fmt.Errorf("-allcpus: %v", err)
		}
		o.allCPUs = b
	}
	o.mdSet = mdSet || isFlagSet(fs, "md")
	if !o.mdSet {
		if o.quick {
			o.md = ""
		} else {
			o.md = "BENCHMARKS.md"
		}
	}
	// Paths the user gives are relative to where they ran us; defaults
	// are relative to the repository root, where we work.
	for name, p := range map[string]*string{"report": &o.report, "results": &o.results, "pgrecycle": &o.pgrecycle, "md": &o.md} {
		if *p != "" && (isFlagSet(fs, name) || name == "md" && o.mdSet) {
			abs, err := filepath.Abs(*p)
			if err != nil {
				return o, err
			}
			*p = abs
		}
	}
	o.scenarios = map[string]bool{}
	all := []string{"latency", "pooled", "many", "churn"}
	if strings.TrimSpace(*scen) == "" {
		for _, s := range all {
			o.scenarios[s] = true
		}
	} else {
		for _, s := range strings.Split(*scen, ",") {
			s = strings.TrimSpace(s)
			ok := false
			for _, a := range all {
				ok = ok || a == s
			}
			if !ok {
				return o, fmt.Errorf("unknown scenario %q (want %s)", s, strings.Join(all, ","))
			}
			o.scenarios[s] = true
		}
	}
	if o.seconds < 1 || o.runs < 1 || o.idle < 0 || o.many < 1 {
		return o, errors.New("time, runs and many must be positive, idle not negative")
	}
	return o, nil
}

func isFlagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func realMain() (code int) {
	o, err := parseOptions()
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 2
	}
	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stopSignals()
	go func() {
		// After the first signal, a second one kills the benchmark at once
		// (its children then get SIGKILL from the kernel: Pdeathsig).
		<-ctx.Done()
		stopSignals()
	}()

	reg := newRegistry()
	defer reg.stopAll()
	defer func() {
		if p := recover(); p != nil {
			reg.stopAll()
			panic(p)
		}
	}()

	root, err := kit.RepoRoot()
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 1
	}
	if err := os.Chdir(root); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 1
	}
	if o.helper != "" {
		return runIdleHelper(o.helper)
	}
	if o.report != "" {
		if err := rebuildReport(o.report, o.md, o.mdSet); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			return 1
		}
		return 0
	}
	e, cleanup, err := setup(ctx, reg, o)
	if cleanup != nil {
		defer cleanup()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 1
	}
	if o.serve {
		return serve(ctx, e)
	}
	if o.profile {
		dir := filepath.Join(o.results, time.Now().UTC().Format("20060102T150405Z")+"-profile")
		if err := profile(ctx, e, o, dir); err != nil {
			fmt.Fprintf(os.Stderr, "bench: profile: %v\n", err)
			return 1
		}
		fmt.Printf("bench: profiles in %s\n", dir)
		return 0
	}
	b := &bench{env: e, opts: o, started: time.Now()}
	b.resultsDir = filepath.Join(o.results, b.started.UTC().Format("20060102T150405Z"))
	if err := os.MkdirAll(filepath.Join(b.resultsDir, "runs"), 0o755); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 1
	}
	b.machine = machineInfo(ctx, e)
	runErr := b.runAll(ctx)
	b.finished = time.Now()
	if runErr != nil {
		// An interrupted run is saved with the raw results only.
		b.opts.md = ""
	}
	if werr := b.write(); werr != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", werr)
		code = 1
	}
	if runErr != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", runErr)
		return 1
	}
	if b.failures > 0 {
		fmt.Fprintf(os.Stderr, "bench: %d run(s) had errors or failed transactions; see %s\n", b.failures, b.resultsDir)
		return 1
	}
	return code
}

// setup starts PostgreSQL, creates the benchmark role and database,
// initialises pgbench's tables and builds pgrecycle.
func setup(ctx context.Context, reg *registry, o options) (*env, func(), error) {
	e := &env{reg: reg, user: "bench", db: "bench", poolSize: o.poolSize}
	e.maxClients = o.idle + o.many + 1000
	if e.maxClients < 10000 {
		e.maxClients = 10000
	}
	var err error
	if e.pgbenchBin, err = exec.LookPath("pgbench"); err != nil {
		return nil, nil, errors.New("pgbench is not installed (Debian: apt-get install postgresql-client)")
	}
	if p, err := exec.LookPath("pgbouncer"); err == nil {
		e.pgbouncerBin = p
	} else if _, err := os.Stat("/usr/sbin/pgbouncer"); err == nil {
		e.pgbouncerBin = "/usr/sbin/pgbouncer"
	} else {
		fmt.Println("bench: PgBouncer is not installed (apt-get install pgbouncer): its columns are skipped")
	}
	if e.pgbouncerBin != "" {
		e.pgbouncerPrepared = pgbouncerHasPrepared(e.pgbouncerBin)
	}
	if e.runAs, err = postgresAccount(); err != nil {
		if e.pgbouncerBin != "" {
			fmt.Printf("bench: %v: PgBouncer columns are skipped\n", err)
			e.pgbouncerBin = ""
		}
	}
	if err := raiseNofile(o.idle + o.many + 500); err != nil {
		return nil, nil, err
	}

	// Under /tmp: the postgres account must be able to enter it.
	e.work, err = os.MkdirTemp("/tmp", "pgrecycle-bench-")
	if err != nil {
		return nil, nil, err
	}
	if err := os.Chmod(e.work, 0o755); err != nil {
		return nil, nil, err
	}
	var pg *pgtest.Server
	cleanup := func() {
		reg.stopAll()
		if pg != nil {
			if err := pg.Stop(); err != nil {
				fmt.Fprintf(os.Stderr, "bench: stop PostgreSQL: %v\n", err)
			}
		}
		_ = os.RemoveAll(e.work)
	}

	if o.pgrecycle != "" {
		e.pgrecycleBin, err = filepath.Abs(o.pgrecycle)
		if err != nil {
			return nil, cleanup, err
		}
	} else {
		fmt.Println("bench: building pgrecycle")
		e.pgrecycleBin = filepath.Join(e.work, "pgrecycle")
		gobin, err := exec.LookPath("go")
		if err != nil {
			return nil, cleanup, errors.New("go is not on PATH; pass -pgrecycle BINARY")
		}
		cmd := exec.CommandContext(ctx, gobin, "build", "-o", e.pgrecycleBin, "./cmd/pgrecycle")
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, cleanup, fmt.Errorf("go build ./cmd/pgrecycle: %v\n%s", err, out)
		}
	}

	fmt.Println("bench: starting PostgreSQL")
	pg, err = pgtest.Start(pgtest.Options{Name: "bench", ExtraConf: map[string]string{
		"shared_buffers":  "256MB",
		"max_connections": "200",
	}})
	if err != nil {
		return nil, cleanup, err
	}
	e.pg = pg
	pw := make([]byte, 12)
	if _, err := rand.Read(pw); err != nil {
		return nil, cleanup, err
	}
	e.password = hex.EncodeToString(pw)
	if err := pg.CreateRole(ctx, e.user, e.password, false); err != nil {
		return nil, cleanup, err
	}
	if err := pg.CreateDatabase(ctx, e.db, e.user); err != nil {
		return nil, cleanup, err
	}
	fmt.Printf("bench: pgbench -i -s %d\n", o.scale)
	cmd := exec.CommandContext(ctx, e.pgbenchBin, "-i", "-q", "-s", strconv.Itoa(o.scale),
		"-h", "127.0.0.1", "-p", strconv.Itoa(pg.Port), "-U", e.user, e.db)
	cmd.Env = append(pgFreeEnv(), "PGPASSWORD="+e.password, "PGSSLMODE=disable")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, cleanup, fmt.Errorf("pgbench -i: %v\n%s", err, out)
	}
	return e, cleanup, nil
}

// raiseNofile lifts the soft descriptor limit to the hard one and checks
// that it covers want (the busiest process, the pooler, holds every idle
// and active client); children
// (pgbench, the poolers) inherit it, as an explicit Setrlimit disables Go's
// restoring of the original limit in children.
func raiseNofile(want int) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return fmt.Errorf("raise the descriptor limit: %w", err)
		}
	}
	if int(lim.Cur) < want {
		return fmt.Errorf("the descriptor limit is %d, the many-clients scenario needs about %d: "+
			"raise it (ulimit -Hn) or lower BENCH_IDLE/BENCH_MANY", lim.Cur, want)
	}
	return nil
}

// serve starts one instance of each pooler and waits for a signal, so that
// a profiler or strace can be attached by hand.
func serve(ctx context.Context, e *env) int {
	keys := []string{tPgrecycle}
	if e.pgbouncerBin != "" {
		keys = append(keys, tPgbouncer)
	}
	fmt.Printf("PostgreSQL: port %d (user %s, password %s, database %s)\n", e.pg.Port, e.user, e.password, e.db)
	for _, k := range keys {
		r, err := e.start(ctx, k)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			return 1
		}
		defer r.stop()
		fmt.Printf("%s: port %d pid %d dir %s\n", targetLabel(k), r.port, r.proc.pid(), r.dir)
	}
	fmt.Printf("try: PGPASSWORD=%s PGSSLMODE=disable pgbench -n -S -c 50 -j 2 -T 30 -M extended -h 127.0.0.1 -p PORT -U %s %s\n", e.password, e.user, e.db)
	fmt.Println("Ctrl-C stops everything")
	<-ctx.Done()
	return 0
}

// machine describes where the numbers come from.
type machine struct {
	Date       string `json:"date"`
	CPU        string `json:"cpu"`
	Cores      int    `json:"cores"`
	Kernel     string `json:"kernel"`
	Go         string `json:"go"`
	PostgreSQL string `json:"postgresql"`
	PgBouncer  string `json:"pgbouncer"`
	Pgbench    string `json:"pgbench"`
	Pgrecycle  string `json:"pgrecycle"`
}

func machineInfo(ctx context.Context, e *env) machine {
	m := machine{Date: time.Now().UTC().Format("2006-01-02 15:04 UTC"), Cores: runtime.NumCPU()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	first := func(name string, args ...string) string {
		out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
		if err != nil {
			return "unknown"
		}
		line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		return strings.TrimSpace(line)
	}
	m.Go = first("go", "version")
	m.PostgreSQL = first(filepath.Join(e.pg.BinDir, "postgres"), "--version")
	m.Pgbench = first(e.pgbenchBin, "--version")
	if e.pgbouncerBin != "" {
		m.PgBouncer = first(e.pgbouncerBin, "--version")
	} else {
		m.PgBouncer = "not installed"
	}
	m.Pgrecycle = first("git", "describe", "--tags", "--always", "--dirty")
	return m
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
