package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
)

// buildBinary compiles pgrecycle once for the process-level tests.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "pgrecycle")
	out, err := exec.Command("go", "build", "-ldflags", "-X main.version=9.9.9-test", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestBinary builds pgrecycle once and runs it as a process.
func TestBinary(t *testing.T) {
	bin := buildBinary(t)
	t.Run("version and config errors", func(t *testing.T) { testVersionAndConfigErrors(t, bin) })
	t.Run("signals", func(t *testing.T) { testSignals(t, bin) })
}

func testVersionAndConfigErrors(t *testing.T, bin string) {
	out, err := exec.Command(bin, "-version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "9.9.9-test") {
		t.Fatalf("-version: %v %q", err, out)
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("[auth]\ntype = \"trust\"\n[pool]\nsise = 3\n[databases.app]\nport = 5432\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config", bad)
	out, err = cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("bad config: exit %v, want 1\n%s", err, out)
	}
	for _, want := range []string{"pool.sise", "line 4", "databases.app.host"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("error output does not name %q:\n%s", want, out)
		}
	}
}

// testSignals: SIGHUP reloads (a broken file is refused and the process
// keeps running), SIGTERM drains and exits 0; systemd hears of each
// (Type=notify).
func testSignals(t *testing.T, bin string) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pgrecycle.toml")
	addr := freeAddr(t)
	withThreads := func(n int) string {
		return fmt.Sprintf("[listen]\naddr = %q\nshutdown_timeout = \"2s\"\nworker_threads = %d\n[auth]\ntype = \"trust\"\n[log]\nformat = \"console\"\n", addr, n)
	}
	good := withThreads(0)
	if err := os.WriteFile(path, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	// systemd's side of Type=notify: a datagram socket named by
	// NOTIFY_SOCKET.
	notifyPath := filepath.Join(dir, "notify")
	notifyConn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notifyConn.Close()
	waitNotify := func(prefix string) {
		t.Helper()
		buf := make([]byte, 4096)
		_ = notifyConn.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := notifyConn.Read(buf)
		if err != nil || !strings.HasPrefix(string(buf[:n]), prefix) {
			t.Fatalf("systemd notification: %q, %v; want one starting %q", buf[:n], err, prefix)
		}
	}
	cmd := exec.Command(bin, "-config", path)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GOMAXPROCS=") && !strings.HasPrefix(kv, "GOGC=") && !strings.HasPrefix(kv, "NOTIFY_SOCKET=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "NOTIFY_SOCKET="+notifyPath)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	waitLine := func(substr string) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("process ended before logging %q", substr)
				}
				if strings.Contains(l, substr) {
					return
				}
			case <-deadline:
				t.Fatalf("no log line with %q", substr)
			}
		}
	}
	// Go's default here is this test's GOMAXPROCS, unless the environment
	// set it (then the child, which has none, may differ).
	if _, set := os.LookupEnv("GOMAXPROCS"); !set {
		waitLine(fmt.Sprintf(`worker threads	{"threads": %d, "from": "half the CPUs available"`, max(1, runtime.GOMAXPROCS(0)/2)))
	}
	waitLine(fmt.Sprintf(`garbage collection	{"gogc": %d, "from": "default"}`, defaultGCPercent))
	waitLine("pgrecycle started")
	waitNotify("READY=1\nSTATUS=serving on " + addr)
	if err := os.WriteFile(path, []byte(good+"[pool]\nsise = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Process.Signal(syscall.SIGHUP)
	waitLine("reload refused")
	waitNotify("RELOADING=1\nMONOTONIC_USEC=")
	waitNotify("READY=1") // the old configuration serves on
	if err := os.WriteFile(path, []byte(withThreads(3)), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Process.Signal(syscall.SIGHUP)
	waitLine("configuration reloaded")
	waitNotify("RELOADING=1\nMONOTONIC_USEC=")
	waitNotify("READY=1")
	waitLine(`worker threads	{"threads": 3, "from": "listen.worker_threads"`)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("not serving after reloads: %v", err)
	}
	c.Close()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	waitLine("shutting down")
	waitNotify("STOPPING=1")
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
}

func TestWorkerThreads(t *testing.T) {
	for _, tc := range []struct {
		configured int
		envSet     bool
		available  int
		want       int
	}{
		{0, false, 1, 1},
		{0, false, 2, 1},
		{0, false, 3, 1},
		{0, false, 8, 4},
		{0, true, 3, 3}, // GOMAXPROCS in the environment is kept
		{6, true, 3, 6}, // the configuration wins over both
		{2, false, 16, 2},
	} {
		if got, _ := workerThreads(tc.configured, tc.envSet, tc.available); got != tc.want {
			t.Errorf("workerThreads(%d, %v, %d) = %d, want %d", tc.configured, tc.envSet, tc.available, got, tc.want)
		}
	}
}

// TestGCPercent: without GOGC in the environment the collector runs at
// defaultGCPercent; with it, the environment's value is kept.
func TestGCPercent(t *testing.T) {
	prev := debug.SetGCPercent(100)
	defer debug.SetGCPercent(prev)
	applyGCPercent(false, zap.NewNop())
	if got := debug.SetGCPercent(100); got != defaultGCPercent {
		t.Errorf("GOGC is %d without GOGC in the environment, want %d", got, defaultGCPercent)
	}
	applyGCPercent(true, zap.NewNop())
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GOGC is %d with GOGC=100 in the environment, want it kept", got)
	}
}
