package pool

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pgrecycle/pgrecycle/config"
	"github.com/pgrecycle/pgrecycle/test/pgtest"
	"github.com/pgrecycle/pgrecycle/wire"
)

// TestMain shares one PostgreSQL across the package's tests and checks
// that no goroutine outlives them (every pool is closed by its test).
func TestMain(m *testing.M) {
	code := pgtest.Main(m, pgtest.Options{Name: "pool"})
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goroutine leak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// leakCheck fails t if goroutines started during it survive it. Call it
// first in a test: cleanups run last-in first-out, so the pool (and any
// helper) registered later is closed before the check runs.
func leakCheck(t *testing.T) {
	t.Helper()
	opts := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		if t.Failed() {
			return
		}
		if err := goleak.Find(opts); err != nil {
			t.Errorf("goroutine leak after the pool was closed: %v", err)
		}
	})
}

func testContext(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// testLogger logs to the test and to an observer the test can inspect.
func testLogger(t *testing.T) (*zap.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(zapcore.DebugLevel)
	log := zaptest.NewLogger(t).WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
		return zapcore.NewTee(c, core)
	}))
	return log, logs
}

// testOptions are the pool options of the brief: the harness superuser on
// the postgres database, injected parameters, defaults elsewhere.
func testOptions(t *testing.T, srv *pgtest.Server, size int) Options {
	t.Helper()
	def := config.Default()
	po := def.Pool
	po.Size = size
	log, _ := testLogger(t)
	return Options{
		Database: "db",
		User:     srv.SuperUser,
		Password: srv.SuperPassword,
		Target:   config.Database{Host: srv.Host, Port: srv.Port, DBName: "postgres", SSLMode: "disable"},
		Params:   map[string]string{"plan_cache_mode": "force_custom_plan", "application_name": "pooltest"},
		Pool:     po,
		Recycle:  def.Recycle,
		Listen:   def.Listen,
		Logger:   log,
	}
}

func newPool(t *testing.T, opts Options) *Pool {
	t.Helper()
	p, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

func acquire(t *testing.T, p *Pool) *Backend {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	b, err := p.Acquire(ctx)
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	return b
}

// textColumn decodes the first column of a text-format DataRow body.
func textColumn(row []byte) (string, bool) {
	if len(row) < 6 || binary.BigEndian.Uint16(row) < 1 {
		return "", false
	}
	l := int32(binary.BigEndian.Uint32(row[2:]))
	if l < 0 || int(l) > len(row)-6 {
		return "", false
	}
	return string(row[6 : 6+l]), true
}

// query runs sql on b and returns the first column of its rows.
func query(t *testing.T, b *Backend, sql string) ([]string, byte) {
	t.Helper()
	var rows []string
	status, err := SimpleQuery(b, sql, func(body []byte) {
		v, _ := textColumn(body)
		rows = append(rows, v)
	})
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return rows, status
}

func queryOne(t *testing.T, b *Backend, sql string) string {
	t.Helper()
	rows, _ := query(t, b, sql)
	if len(rows) != 1 {
		t.Fatalf("%s: %d rows, want 1", sql, len(rows))
	}
	return rows[0]
}

// superConn is a direct connection, beside the pool, for inspecting and
// disturbing the server.
func superConn(t *testing.T, srv *pgtest.Server) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, srv.SuperDSN())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = c.Close(ctx)
	})
	return c
}

func pidExists(t *testing.T, c *pgx.Conn, pid uint32) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", int32(pid)).Scan(&n); err != nil {
		t.Fatalf("pg_stat_activity: %v", err)
	}
	return n > 0
}

// waitFor polls cond every 10ms until it holds or d has passed.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitPIDGone(t *testing.T, c *pgx.Conn, pid uint32) {
	t.Helper()
	if !waitFor(5*time.Second, func() bool { return !pidExists(t, c, pid) }) {
		t.Errorf("backend pid %d still in pg_stat_activity 5s after it was closed", pid)
	}
}

// retiredOnly checks that Stats().Retired holds exactly want.
func retiredOnly(t *testing.T, p *Pool, want map[string]int64) {
	t.Helper()
	got := p.Stats().Retired
	ok := len(got) == len(want)
	for k, v := range want {
		if got[k] != v {
			ok = false
		}
	}
	if !ok {
		t.Errorf("Stats().Retired = %v, want %v", got, want)
	}
}

// gateProxy is a TCP forwarder in front of PostgreSQL that can hold new
// connections (to keep a pool's connect "opening" as long as a test
// needs) or drop the next ones (transient connect failures).
type gateProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	gate  chan struct{} // non-nil: new connections wait for it to close
	conns map[net.Conn]struct{}

	held     atomic.Int32 // connections waiting at the gate
	dropNext atomic.Int32 // close this many next connections at once
	accepted atomic.Int32
	cancels  atomic.Int32 // CancelRequests received while dropping

	done chan struct{}
	wg   sync.WaitGroup
}

func newGateProxy(t *testing.T, srv *pgtest.Server) *gateProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gateProxy{
		ln:     ln,
		target: net.JoinHostPort(srv.Host, strconv.Itoa(srv.Port)),
		conns:  make(map[net.Conn]struct{}),
		done:   make(chan struct{}),
	}
	g.wg.Add(1)
	go g.serve()
	t.Cleanup(g.Close)
	return g
}

func (g *gateProxy) Port() int { return g.ln.Addr().(*net.TCPAddr).Port }

func (g *gateProxy) Block() {
	g.mu.Lock()
	if g.gate == nil {
		g.gate = make(chan struct{})
	}
	g.mu.Unlock()
}

func (g *gateProxy) Unblock() {
	g.mu.Lock()
	if g.gate != nil {
		close(g.gate)
		g.gate = nil
	}
	g.mu.Unlock()
}

func (g *gateProxy) Close() {
	select {
	case <-g.done:
		return
	default:
	}
	close(g.done)
	_ = g.ln.Close()
	g.mu.Lock()
	for c := range g.conns {
		_ = c.Close()
	}
	g.mu.Unlock()
	g.wg.Wait()
}

func (g *gateProxy) track(c net.Conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.done:
		_ = c.Close()
		return false
	default:
	}
	g.conns[c] = struct{}{}
	return true
}

func (g *gateProxy) untrack(c net.Conn) {
	g.mu.Lock()
	delete(g.conns, c)
	g.mu.Unlock()
	_ = c.Close()
}

func (g *gateProxy) serve() {
	defer g.wg.Done()
	for {
		c, err := g.ln.Accept()
		if err != nil {
			return
		}
		g.accepted.Add(1)
		if !g.track(c) {
			continue
		}
		g.wg.Add(1)
		go g.handle(c)
	}
}

func (g *gateProxy) handle(c net.Conn) {
	defer g.wg.Done()
	defer g.untrack(c)
	var head []byte
	if g.dropNext.Load() > 0 {
		// Drop a startup, not the CancelRequest pgconn sends (on a new
		// connection) after each failed connect.
		head = make([]byte, 8)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, head); err != nil {
			return
		}
		_ = c.SetReadDeadline(time.Time{})
		if binary.BigEndian.Uint32(head[4:]) == wire.CancelRequestCode {
			g.cancels.Add(1)
			return
		}
		if n := g.dropNext.Add(-1); n >= 0 {
			return
		}
		g.dropNext.Add(1) // raced to zero: forward
	}
	g.mu.Lock()
	gate := g.gate
	g.mu.Unlock()
	if gate != nil {
		g.held.Add(1)
		select {
		case <-gate:
			g.held.Add(-1)
		case <-g.done:
			g.held.Add(-1)
			return
		}
	}
	s, err := net.Dial("tcp", g.target)
	if err != nil {
		return
	}
	if !g.track(s) {
		return
	}
	defer g.untrack(s)
	if head != nil {
		if _, err := s.Write(head); err != nil {
			return
		}
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _ = io.Copy(s, c)
		_ = s.Close()
	}()
	_, _ = io.Copy(c, s)
	_ = c.Close()
	wg.Wait()
}
