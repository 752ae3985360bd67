package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/pgrecycle/pgrecycle/test/bench/recipes/kit"
)

// pgbenchOpts is one pgbench invocation (always the built-in select-only
// script, -S, without the initial vacuum, -n).
type pgbenchOpts struct {
	clients  int
	threads  int
	seconds  int
	protocol string  // simple | extended | prepared
	connect  bool    // -C: a new connection per transaction
	sampling float64 // fraction of transactions logged for percentiles; 0 = no log
}

func (o pgbenchOpts) String() string {
	s := fmt.Sprintf("pgbench -n -S -c %d -j %d -T %d -M %s", o.clients, o.threads, o.seconds, o.protocol)
	if o.connect {
		s += " -C"
	}
	return s
}

// pgbenchResult is what a run of pgbench reports.
type pgbenchResult struct {
	TPS        float64
	LatAvgMs   float64
	ConnAvgMs  float64 // -C: average connection time
	Txns       int64
	Failed     int64
	P50Ms      float64 // from the per-transaction log, when there is one
	P99Ms      float64
	Samples    int
	ClientCPU  float64 // pgbench's own CPU seconds
	Stdout     string
	Stderr     string
	Err        error
	ExitStatus int
}

var (
	reTPS       = regexp.MustCompile(`(?m)^tps = ([0-9.]+)`)
	reLatAvg    = regexp.MustCompile(`(?m)^latency average = ([0-9.]+) ms`)
	reConnAvg   = regexp.MustCompile(`(?m)^average connection time = ([0-9.]+) ms`)
	reProcessed = regexp.MustCompile(`(?m)^number of transactions actually processed: ([0-9]+)`)
	reFailed    = regexp.MustCompile(`(?m)^number of failed transactions: ([0-9]+)`)
)

// errNoTx: pgbench ran but completed nothing. Harmless for a warm-up.
var errNoTx = errors.New("pgbench completed no transaction (did the logins take the whole -T?)")

// pgbench runs pgbench against 127.0.0.1:port and parses its report. dir
// receives the per-transaction logs.
func (e *env) pgbench(ctx context.Context, port int, o pgbenchOpts, dir string) pgbenchResult {
	args := []string{"-h", "127.0.0.1", "-p", strconv.Itoa(port), "-U", e.user,
		"-n", "-S", "-c", strconv.Itoa(o.clients), "-j", strconv.Itoa(o.threads),
		"-T", strconv.Itoa(o.seconds), "-M", o.protocol}
	if o.connect {
		args = append(args, "-C")
	}
	var prefix string
	if o.sampling > 0 {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return pgbenchResult{Err: err}
		}
		prefix = filepath.Join(dir, "txlog")
		args = append(args, "-l", "--log-prefix="+prefix)
		if o.sampling < 1 {
			args = append(args, "--sampling-rate="+strconv.FormatFloat(o.sampling, 'f', -1, 64))
		}
	}
	args = append(args, e.db)
	cmd := exec.Command(e.pgbenchBin, args...)
	cmd.Dir = e.work
	cmd.Env = append(withoutEnv(pgFreeEnv(), "PGPASSWORD", "PGSSLMODE"),
		"PGPASSWORD="+e.password, "PGSSLMODE=disable", "PGCONNECT_TIMEOUT=60")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	var r pgbenchResult
	c, err := e.reg.spawn("pgbench", cmd)
	if err != nil {
		r.Err = err
		return r
	}
	// A run never takes much longer than -T plus connecting; a hang is a bug.
	limit := time.Duration(o.seconds)*time.Second + 3*time.Minute
	wctx, cancel := context.WithTimeout(ctx, limit)
	werr := c.wait(wctx)
	cancel()
	r.Stdout, r.Stderr = stdout.String(), stderr.String()
	if ps := cmd.ProcessState; ps != nil {
		r.ExitStatus = ps.ExitCode()
		r.ClientCPU = (ps.UserTime() + ps.SystemTime()).Seconds()
	}
	if werr != nil {
		r.Err = fmt.Errorf("pgbench: %w: %s", werr, kit.LastLines(r.Stderr, 5))
	}
	r.TPS = parseFloat(reTPS, r.Stdout)
	r.LatAvgMs = parseFloat(reLatAvg, r.Stdout)
	r.ConnAvgMs = parseFloat(reConnAvg, r.Stdout)
	r.Txns = int64(parseFloat(reProcessed, r.Stdout))
	r.Failed = int64(parseFloat(reFailed, r.Stdout))
	if r.Err == nil && reProcessed.FindString(r.Stdout) == "" {
		r.Err = fmt.Errorf("pgbench printed no report: %s", kit.LastLines(r.Stderr, 5))
	}
	if r.Err == nil && r.Txns == 0 {
		// -T counts from the start, logins included: with many clients on
		// a busy machine they can take all of it.
		r.Err = errNoTx
	}
	if prefix != "" {
		lats, err := kit.ReadLatencies(prefix)
		if err != nil && r.Err == nil {
			r.Err = err
		}
		r.Samples = len(lats)
		if len(lats) > 0 {
			r.P50Ms = kit.NearestRank(lats, 0.50) / 1000
			r.P99Ms = kit.NearestRank(lats, 0.99) / 1000
		}
		// The logs can be large; the percentiles are what we keep.
		for _, f := range txLogFiles(prefix) {
			_ = os.Remove(f)
		}
	}
	return r
}

func parseFloat(re *regexp.Regexp, s string) float64 {
	m := re.FindStringSubmatch(s)
	if m == nil {
		return 0
	}
	f, _ := strconv.ParseFloat(m[1], 64)
	return f
}

func txLogFiles(prefix string) []string {
	files, _ := filepath.Glob(prefix + ".*")
	return files
}

// pgFreeEnv is our environment without the PG* variables that would
// redirect libpq.
func pgFreeEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") {
			continue
		}
		out = append(out, kv)
	}
	return out
}
