package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// scenario is one measured configuration, run against several targets.
type scenario struct {
	name    string // latency | pooled | many | churn
	variant string // e.g. "c50 extended"
	targets []string
	opts    pgbenchOpts
	warm    pgbenchOpts // unmeasured run on the same instance first
	idle    int         // idle connections held open during the run
}

// record is one measured run: a line of results.jsonl.
type record struct {
	Scenario string `json:"scenario"`
	Variant  string `json:"variant"`
	Target   string `json:"target"`
	Run      int    `json:"run"`
	Command  string `json:"command"`

	TPS       float64 `json:"tps"`
	LatAvgMs  float64 `json:"latency_avg_ms"`
	P50Ms     float64 `json:"p50_ms,omitempty"`
	P99Ms     float64 `json:"p99_ms,omitempty"`
	Samples   int     `json:"latency_samples,omitempty"`
	ConnAvgMs float64 `json:"conn_avg_ms,omitempty"`
	Txns      int64   `json:"transactions"`
	Failed    int64   `json:"failed"`

	ProxyCPUSec float64 `json:"proxy_cpu_s,omitempty"`
	CPUPer1k    float64 `json:"proxy_cpu_s_per_1k_tx,omitempty"`
	RSSKiB      int64   `json:"proxy_rss_kib,omitempty"`
	HWMKiB      int64   `json:"proxy_hwm_kib,omitempty"`
	CtxSwPerTx  float64 `json:"proxy_ctxsw_per_tx,omitempty"`

	IdleConns       int     `json:"idle_conns,omitempty"`
	IdleBaseKiB     int64   `json:"idle_base_rss_kib,omitempty"`
	IdleRSSKiB      int64   `json:"idle_rss_kib,omitempty"`
	IdlePerConnKiB  float64 `json:"idle_kib_per_conn,omitempty"`
	IdleConnectSec  float64 `json:"idle_connect_s,omitempty"`
	LoginCPUms      float64 `json:"proxy_cpu_ms_per_login,omitempty"` // measured on the idle logins
	CPUPer1kNoLogin float64 `json:"proxy_cpu_s_per_1k_tx_without_logins,omitempty"`
	IdlePingOK      int     `json:"idle_ping_ok,omitempty"`
	IdlePinged      int     `json:"idle_pinged,omitempty"`

	ClientCPUSec float64 `json:"pgbench_cpu_s"`
	LoadAvg      float64 `json:"loadavg_1m"` // at the start of the run: other work on the machine
	Error        string  `json:"error,omitempty"`
}

func (r record) bad() bool { return r.Error != "" || r.Failed > 0 }

type bench struct {
	*env
	opts       options
	started    time.Time
	finished   time.Time
	resultsDir string
	machine    machine
	scenarios  []scenario
	records    []record
	failures   int
	seqRun     int
}

func (b *bench) poolers() []string {
	t := []string{tPgrecycle}
	if b.pgbouncerBin != "" {
		t = append(t, tPgbouncer)
	}
	if b.opts.allCPUs {
		t = append(t, tPgrecycleAll)
	}
	return t
}

func (b *bench) plan() []scenario {
	o := b.opts
	var out []scenario
	if o.scenarios["latency"] {
		run := pgbenchOpts{clients: 1, threads: 1, seconds: o.seconds, protocol: "simple", sampling: 1}
		warm := run
		warm.seconds, warm.sampling = o.warmup, 0
		out = append(out, scenario{name: "latency", variant: "c1 simple",
			targets: append([]string{tDirect}, b.poolers()...), opts: run, warm: warm})
	}
	if o.scenarios["pooled"] {
		for _, proto := range []string{"simple", "extended", "prepared"} {
			for _, c := range []int{10, 50} {
				targets := b.poolers()
				if proto == "prepared" {
					// PgBouncer < 1.21 cannot serve protocol-level prepared
					// statements in transaction pooling.
					targets = removeTarget(targets, tPgbouncer)
					if b.pgbouncerBin != "" && b.pgbouncerPrepared {
						targets = b.poolers()
					}
				}
				run := pgbenchOpts{clients: c, threads: 2, seconds: o.seconds, protocol: proto, sampling: 0.1}
				warm := run
				warm.seconds, warm.sampling = o.warmup, 0
				out = append(out, scenario{name: "pooled", variant: fmt.Sprintf("c%d %s", c, proto),
					targets: targets, opts: run, warm: warm})
			}
		}
	}
	if o.scenarios["many"] {
		// pgbench's -T includes the logins of all the clients (seconds on
		// a busy 2-core machine); the reported tps excludes them.
		run := pgbenchOpts{clients: o.many, threads: 2, seconds: o.seconds + manyLoginAllowance(o), protocol: "simple", sampling: 0.1}
		warm := pgbenchOpts{clients: 10, threads: 2, seconds: o.warmup, protocol: "simple"}
		out = append(out, scenario{name: "many", variant: fmt.Sprintf("c%d + %d idle", o.many, o.idle),
			targets: b.poolers(), opts: run, warm: warm, idle: o.idle})
	}
	if o.scenarios["churn"] {
		run := pgbenchOpts{clients: 16, threads: 2, seconds: o.seconds, protocol: "simple", connect: true, sampling: 0.1}
		warm := run
		warm.seconds, warm.sampling = o.warmup, 0
		out = append(out, scenario{name: "churn", variant: "c16 -C",
			targets: append([]string{tDirect}, b.poolers()...), opts: run, warm: warm})
	}
	return out
}

func removeTarget(ts []string, key string) []string {
	var out []string
	for _, t := range ts {
		if t != key {
			out = append(out, t)
		}
	}
	return out
}

// pgbouncerHasPrepared reports whether PgBouncer is 1.21 or newer (the
// first version with max_prepared_statements).
func pgbouncerHasPrepared(bin string) bool {
	out, err := execOutput(bin, "--version")
	if err != nil {
		return false
	}
	var maj, min int
	if _, err := fmt.Sscanf(strings.TrimSpace(out), "PgBouncer %d.%d", &maj, &min); err != nil {
		return false
	}
	return maj > 1 || maj == 1 && min >= 21
}

// runAll runs every scenario: targets interleaved within each repetition.
func (b *bench) runAll(ctx context.Context) error {
	b.scenarios = b.plan()
	total := 0
	for _, s := range b.scenarios {
		total += len(s.targets) * b.opts.runs
	}
	fmt.Printf("bench: %d measured runs of %ds (%d repetitions, interleaved)\n", total, b.opts.seconds, b.opts.runs)
	n := 0
	for _, s := range b.scenarios {
		for run := 1; run <= b.opts.runs; run++ {
			for _, t := range s.targets {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				n++
				start := time.Now()
				rec := b.measure(ctx, s, t, run)
				if ctx.Err() != nil {
					return ctx.Err()
				}
				b.records = append(b.records, rec)
				if rec.bad() {
					b.failures++
				}
				status := fmt.Sprintf("tps %.0f", rec.TPS)
				if rec.CPUPer1k > 0 {
					status += fmt.Sprintf(", proxy CPU %.3f s/1k tx", rec.CPUPer1k)
				}
				if rec.P99Ms > 0 {
					status += fmt.Sprintf(", p50 %.3f p99 %.3f ms", rec.P50Ms, rec.P99Ms)
				}
				if rec.IdleConns > 0 {
					status += fmt.Sprintf(", %.2f KiB/idle client", rec.IdlePerConnKiB)
				}
				if rec.Failed > 0 {
					status += fmt.Sprintf(", %d FAILED", rec.Failed)
				}
				if rec.Error != "" {
					status += ", ERROR: " + rec.Error
				}
				fmt.Printf("[%3d/%d] %-7s %-22s %-22s run %d: %s (%.0fs)\n", n, total, s.name, s.variant,
					targetLabel(t), run, status, time.Since(start).Seconds())
			}
		}
	}
	return nil
}

// measure runs one scenario once against a fresh instance of target.
func (b *bench) measure(ctx context.Context, s scenario, target string, run int) (rec record) {
	rec = record{Scenario: s.name, Variant: s.variant, Target: target, Run: run, Command: s.opts.String(), LoadAvg: loadAvg()}
	b.seqRun++
	runDir := filepath.Join(b.work, fmt.Sprintf("run-%03d", b.seqRun))
	var outputs []string
	defer func() {
		name := fmt.Sprintf("%03d-%s-%s-%s-%d.txt", b.seqRun, s.name, strings.ReplaceAll(s.variant, " ", "_"), target, run)
		body := fmt.Sprintf("%s\n%s\n\n%s\n", rec.Command, mustJSON(rec), strings.Join(outputs, "\n"))
		_ = os.WriteFile(filepath.Join(b.resultsDir, "runs", name), []byte(body), 0o644)
		_ = os.RemoveAll(runDir)
	}()
	r, err := b.start(ctx, target)
	if err != nil {
		rec.Error = err.Error()
		return rec
	}
	defer func() {
		if r.proc != nil && r.proc.exited() && rec.Error == "" {
			rec.Error = fmt.Sprintf("%s exited during the run: %v", targetLabel(target), r.proc.err)
		}
		if rec.Error != "" && r.log != "" {
			outputs = append(outputs, "--- proxy log tail ---\n"+r.logTail())
		}
		r.stop()
	}()

	w := b.pgbench(ctx, r.port, s.warm, runDir)
	outputs = append(outputs, "--- warm-up: "+s.warm.String()+" ---\n"+w.Stdout+w.Stderr)
	if w.Err != nil && !errors.Is(w.Err, errNoTx) || w.Failed > 0 {
		rec.Error = fmt.Sprintf("warm-up: %v (failed %d)", w.Err, w.Failed)
		return rec
	}
	pid := 0
	if r.proc != nil {
		pid = r.proc.pid()
	}
	var idle *idleClients
	if s.idle > 0 && pid != 0 {
		time.Sleep(500 * time.Millisecond)
		base, err := readProcStat(pid)
		if err != nil {
			rec.Error = err.Error()
			return rec
		}
		t0 := time.Now()
		idle, err = b.openIdle(ctx, r.port, s.idle, 8)
		if err != nil {
			rec.Error = err.Error()
			return rec
		}
		defer idle.close()
		rec.IdleConnectSec = time.Since(t0).Seconds()
		time.Sleep(time.Second)
		with, err := readProcStat(pid)
		if err != nil {
			rec.Error = err.Error()
			return rec
		}
		rec.LoginCPUms = float64(with.CPUTicks-base.CPUTicks) / clockTicks / float64(s.idle) * 1000
		rec.IdleConns = s.idle
		rec.IdleBaseKiB, rec.IdleRSSKiB = base.RSSKiB, with.RSSKiB
		rec.IdlePerConnKiB = float64(with.RSSKiB-base.RSSKiB) / float64(s.idle)
	}
	var before procStat
	if pid != 0 {
		if before, err = readProcStat(pid); err != nil {
			rec.Error = err.Error()
			return rec
		}
	}
	res := b.pgbench(ctx, r.port, s.opts, runDir)
	outputs = append(outputs, "--- measured: "+s.opts.String()+" ---\n"+res.Stdout+res.Stderr)
	if pid != 0 {
		after, err := readProcStat(pid)
		if err != nil {
			rec.Error = err.Error()
		} else {
			rec.ProxyCPUSec = float64(after.CPUTicks-before.CPUTicks) / clockTicks
			rec.RSSKiB, rec.HWMKiB = after.RSSKiB, after.HWMKiB
			if res.Txns > 0 {
				rec.CtxSwPerTx = float64(after.CtxSw-before.CtxSw) / float64(res.Txns)
			}
		}
	}
	rec.TPS, rec.LatAvgMs, rec.ConnAvgMs = res.TPS, res.LatAvgMs, res.ConnAvgMs
	rec.Txns, rec.Failed = res.Txns, res.Failed
	rec.P50Ms, rec.P99Ms, rec.Samples = res.P50Ms, res.P99Ms, res.Samples
	rec.ClientCPUSec = res.ClientCPU
	if rec.Txns > 0 && pid != 0 {
		rec.CPUPer1k = rec.ProxyCPUSec / float64(rec.Txns) * 1000
		if rec.LoginCPUms > 0 {
			// The active clients log in during the run; take out what
			// that many logins cost, as measured on the idle ones.
			logins := rec.LoginCPUms / 1000 * float64(s.opts.clients)
			rec.CPUPer1kNoLogin = (rec.ProxyCPUSec - logins) / float64(rec.Txns) * 1000
		}
	}
	if res.Err != nil && rec.Error == "" {
		rec.Error = res.Err.Error()
	}
	if idle != nil {
		step := s.idle / 200
		rec.IdlePingOK, rec.IdlePinged = idle.ping(ctx, step)
		if rec.IdlePingOK != rec.IdlePinged && rec.Error == "" {
			rec.Error = fmt.Sprintf("only %d of %d sampled idle connections still answer", rec.IdlePingOK, rec.IdlePinged)
		}
	}
	return rec
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// loadAvg is the 1-minute load average; the benchmark itself adds up to
// about 2 on this machine, more means something else was running.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// manyLoginAllowance is added to -T in the many-clients scenario, for the
// logins of its clients (about 5 ms of pgbench CPU each for SCRAM here).
func manyLoginAllowance(o options) int {
	return o.many / 100
}
