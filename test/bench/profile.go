package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/pgrecycle/pgrecycle/config"
	"github.com/pgrecycle/pgrecycle/proxy"
)

// profile runs pgrecycle inside this process, with the configuration the
// benchmark gives the standalone binary, so that runtime/pprof sees it
// without a debug endpoint in the proxy:
//
//   - a CPU profile and allocations per transaction under each workload of
//     profileWorkloads;
//   - a heap profile and the heap and stack bytes per idle client, with the
//     idle connections held by a helper process so that they do not count.
//
// Results go to dir: *.pprof files (go tool pprof -top FILE) and summary.txt.
func profile(ctx context.Context, e *env, o options, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	cdir := filepath.Join(e.work, "profile")
	if err := os.MkdirAll(cdir, 0o755); err != nil {
		return err
	}
	path, err := e.pgrecycleConfig(cdir, port)
	if err != nil {
		return err
	}
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	srv, err := proxy.New(proxy.Options{Config: cfg, Logger: zap.NewNop(), Version: "bench-profile"})
	if err != nil {
		return err
	}
	if err := srv.Listen(); err != nil {
		return err
	}
	srv.Serve()
	defer srv.Close()

	var summary strings.Builder
	logf := func(format string, args ...any) {
		line := fmt.Sprintf(format, args...)
		fmt.Println(line)
		summary.WriteString(line + "\n")
	}
	logf("in-process pgrecycle on port %d, GOMAXPROCS=%d, %s", port, runtime.GOMAXPROCS(0), runtime.Version())

	prevAllocs := ""
	for _, w := range profileWorkloads(o) {
		warm := w
		warm.seconds, warm.sampling = o.warmup, 0
		if r := e.pgbench(ctx, port, warm, cdir); r.Err != nil && !errors.Is(r.Err, errNoTx) {
			return fmt.Errorf("warm-up %s: %w", warm, r.Err)
		}
		name := fmt.Sprintf("cpu-c%d-%s", w.clients, w.protocol)
		f, err := os.Create(filepath.Join(dir, name+".pprof"))
		if err != nil {
			return err
		}
		var ms0, ms1 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		ru0 := selfCPU()
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return err
		}
		r := e.pgbench(ctx, port, w, cdir)
		pprof.StopCPUProfile()
		cpu := selfCPU() - ru0
		runtime.ReadMemStats(&ms1)
		f.Close()
		if r.Err != nil {
			return fmt.Errorf("%s: %w", w, r.Err)
		}
		tx := float64(r.Txns)
		logf("\n%s: tps %.0f, %d failed", w, r.TPS, r.Failed)
		logf("  process CPU %.3f s per 1,000 tx (the benchmark's own share is negligible)", cpu.Seconds()/tx*1000)
		logf("  heap allocations: %.1f objects and %.0f bytes per transaction; %d GCs (%.1f per 1,000 tx)",
			float64(ms1.Mallocs-ms0.Mallocs)/tx, float64(ms1.TotalAlloc-ms0.TotalAlloc)/tx,
			ms1.NumGC-ms0.NumGC, float64(ms1.NumGC-ms0.NumGC)/tx*1000)
		logf("  CPU profile: %s; top functions (cumulative):\n%s", f.Name(), pprofTopArgs(f.Name(), 40, "-cum"))
		// Allocation sites since the process started (sampled): the run
		// dominates, the -base of the previous file isolates it.
		ap := filepath.Join(dir, "allocs-"+strings.TrimPrefix(name, "cpu-")+".pprof")
		if af, err := os.Create(ap); err == nil {
			_ = pprof.Lookup("allocs").WriteTo(af, 0)
			af.Close()
			args := []string{"-sample_index=alloc_objects"}
			if prevAllocs != "" {
				args = append(args, "-base="+prevAllocs)
			}
			logf("  allocation sites (objects, sampled): %s\n%s", ap, pprofTopArgs(ap, 20, args...))
			prevAllocs = ap
		}
	}

	if o.idle > 0 {
		runtime.GC()
		var ms0, ms1 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		g0 := runtime.NumGoroutine()
		stop, err := e.idleHelper(ctx, port, o.idle)
		if err != nil {
			return err
		}
		time.Sleep(time.Second)
		runtime.GC()
		runtime.ReadMemStats(&ms1)
		g1 := runtime.NumGoroutine()
		hp := filepath.Join(dir, "heap-idle.pprof")
		if f, err := os.Create(hp); err == nil {
			_ = pprof.Lookup("heap").WriteTo(f, 0)
			f.Close()
		}
		stop()
		n := float64(o.idle)
		logf("\n%d idle clients (held by a helper process): per idle client, after a GC:", o.idle)
		logf("  goroutines %.2f", float64(g1-g0)/n)
		logf("  heap in use %.0f bytes, stacks in use %.0f bytes, all memory from the OS (Sys) %.0f bytes",
			float64(int64(ms1.HeapInuse)-int64(ms0.HeapInuse))/n, float64(int64(ms1.StackInuse)-int64(ms0.StackInuse))/n,
			float64(int64(ms1.Sys)-int64(ms0.Sys))/n)
		logf("  heap profile (in-use space, whole process): %s; top:\n%s", hp, pprofTopArgs(hp, 25, "-sample_index=inuse_space"))
	}
	return os.WriteFile(filepath.Join(dir, "summary.txt"), []byte(summary.String()), 0o644)
}

// profileWorkloads: the latency floor and the pooled scenario the issue
// singles out.
func profileWorkloads(o options) []pgbenchOpts {
	return []pgbenchOpts{
		{clients: 1, threads: 1, seconds: o.seconds, protocol: "simple"},
		{clients: 50, threads: 2, seconds: o.seconds, protocol: "extended"},
	}
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func pprofTopArgs(file string, n int, extra ...string) string {
	args := append([]string{"tool", "pprof", "-top", "-nodecount=" + strconv.Itoa(n)}, extra...)
	args = append(args, file)
	out, err := exec.Command("go", args...).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("(go tool pprof: %v)", err)
	}
	return string(out)
}

// idleHelper starts this program again as a helper holding n idle client
// connections to port, and returns once they are all logged in. stop
// closes them and waits for the helper.
func (e *env) idleHelper(ctx context.Context, port, n int) (stop func(), err error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "-idle-helper", fmt.Sprintf("%d:%d", port, n))
	cmd.Env = append(pgFreeEnv(), "BENCH_HELPER_USER="+e.user, "BENCH_HELPER_PASSWORD="+e.password, "BENCH_HELPER_DB="+e.db)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	c, err := e.reg.spawn("idle helper", cmd)
	if err != nil {
		return nil, err
	}
	stop = func() {
		stdin.Close()
		select {
		case <-c.done:
		case <-time.After(30 * time.Second):
			c.stop(time.Second)
		}
	}
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err == nil && strings.TrimSpace(line) != "ready" {
			err = errors.New(strings.TrimSpace(line))
		}
		ready <- err
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case err := <-ready:
		if err != nil {
			stop()
			return nil, fmt.Errorf("idle helper: %w", err)
		}
		return stop, nil
	case <-ctx.Done():
		stop()
		return nil, ctx.Err()
	}
}

// runIdleHelper is the helper's side: "-idle-helper PORT:N". It prints
// "ready" once all connections are up (or the error) and holds them until
// stdin closes.
func runIdleHelper(arg string) int {
	p, n, ok := strings.Cut(arg, ":")
	port, err1 := strconv.Atoi(p)
	count, err2 := strconv.Atoi(n)
	if !ok || err1 != nil || err2 != nil {
		fmt.Println("bad -idle-helper argument", arg)
		return 2
	}
	e := &env{user: os.Getenv("BENCH_HELPER_USER"), password: os.Getenv("BENCH_HELPER_PASSWORD"), db: os.Getenv("BENCH_HELPER_DB")}
	ctx := context.Background()
	ic, err := e.openIdle(ctx, port, count, 8)
	if err != nil {
		fmt.Println(strings.ReplaceAll(err.Error(), "\n", " "))
		return 1
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	ic.close()
	return 0
}
