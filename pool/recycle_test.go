package pool

import (
	"strconv"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pgrecycle/pgrecycle/config"
	"github.com/pgrecycle/pgrecycle/test/pgtest"
)

// offlinePool is a pool that never connects, for policy unit tests.
func offlinePool(t *testing.T, size int, rc config.Recycle) *Pool {
	t.Helper()
	def := config.Default()
	po := def.Pool
	po.Size = size
	p, err := New(Options{
		Database: "db", User: "u",
		Target:  config.Database{Host: "127.0.0.1", Port: 1, DBName: "x", SSLMode: "disable"},
		Pool:    po,
		Recycle: rc,
		Listen:  def.Listen,
		Logger:  zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func TestLifetimeJitter(t *testing.T) {
	leakCheck(t)
	rc := config.Default().Recycle
	rc.MaxLifetime = config.Duration(time.Hour)
	rc.LifetimeJitter = 0.2
	p := offlinePool(t, 200, rc)

	created := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	lo, hi := time.Duration(1<<62), time.Duration(0)
	p.mu.Lock()
	for range 200 {
		d := p.drawDeadlineLocked(created).Sub(created)
		lo, hi = min(lo, d), max(hi, d)
	}
	p.mu.Unlock()
	if lo < 48*time.Minute || hi > 72*time.Minute {
		t.Errorf("deadlines in [%v, %v], want within [48m, 72m]", lo, hi)
	}
	if lo >= 52*time.Minute || hi <= 68*time.Minute {
		t.Errorf("deadlines in [%v, %v] don't spread over the range (want min < 52m, max > 68m)", lo, hi)
	}

	rc.LifetimeJitter = 0
	p = offlinePool(t, 1, rc)
	p.mu.Lock()
	for range 20 {
		if d := p.drawDeadlineLocked(created).Sub(created); d != time.Hour {
			t.Errorf("jitter 0: lifetime %v, want exactly 1h", d)
		}
	}
	p.mu.Unlock()

	rc.MaxLifetime = 0
	rc.LifetimeJitter = 0.2
	p = offlinePool(t, 1, rc)
	p.mu.Lock()
	if dl := p.drawDeadlineLocked(created); !dl.IsZero() {
		t.Errorf("max_lifetime 0: deadline %v, want zero (never)", dl)
	}
	p.mu.Unlock()
}

// TestRetireReasonShare applies max_retiring_share through retireReason:
// age and count retirements wait while the share is being replaced;
// admin requests don't.
func TestRetireReasonShare(t *testing.T) {
	leakCheck(t)
	now := time.Now()
	past := func() *Backend {
		return &Backend{Created: now.Add(-2 * time.Hour), Deadline: now.Add(-time.Hour)}
	}
	// Replacements in flight: each retirement retireReason grants
	// reserves one, so the tests set the count before each check.
	setOpening := func(p *Pool, n int) {
		p.mu.Lock()
		p.retiring = n
		p.mu.Unlock()
	}

	rc := config.Default().Recycle
	rc.MaxRetiringShare = 0.25
	rc.MaxQueries = 10
	p := offlinePool(t, 4, rc)
	defer setOpening(p, 0) // Close waits for nothing

	if r, _ := p.retireReason(past(), now); r != "lifetime" {
		t.Errorf("opening 0: reason %q, want lifetime", r)
	}
	setOpening(p, 1)
	if r, _ := p.retireReason(past(), now); r != "" {
		t.Errorf("share 0.25 of 4 with one opening: reason %q, want none (postponed)", r)
	}
	counted := &Backend{Created: now}
	counted.Queries.Add(10)
	if r, _ := p.retireReason(counted, now); r != "" {
		t.Errorf("max_queries with the share busy: reason %q, want none (postponed)", r)
	}
	admin := past()
	admin.RetireRequested.Store(true)
	if r, _ := p.retireReason(admin, now); r != "admin" {
		t.Errorf("RetireRequested with the share busy: reason %q, want admin", r)
	}
	admin.RetireReason.Store("parameters")
	if r, _ := p.retireReason(admin, now); r != "parameters" {
		t.Errorf("RetireRequested with a reason: %q, want parameters", r)
	}
	setOpening(p, 0)
	if r, _ := p.retireReason(counted, now); r != "queries" {
		t.Errorf("max_queries reached: reason %q, want queries", r)
	}
	setOpening(p, 0)
	fresh := &Backend{Created: now, Deadline: now.Add(time.Hour)}
	fresh.Queries.Add(9)
	if r, _ := p.retireReason(fresh, now); r != "" {
		t.Errorf("9 of 10 queries: reason %q, want none", r)
	}

	// Default share 0.5: two of four may be replaced at once.
	rc.MaxRetiringShare = 0.5
	p2 := offlinePool(t, 4, rc)
	defer setOpening(p2, 0)
	setOpening(p2, 1)
	if r, _ := p2.retireReason(past(), now); r != "lifetime" {
		t.Errorf("share 0.5, one opening: %q, want lifetime", r)
	}
	setOpening(p2, 2)
	if r, _ := p2.retireReason(past(), now); r != "" {
		t.Errorf("share 0.5, two opening: %q, want none", r)
	}
	// A pool of one may always replace its backend.
	p3 := offlinePool(t, 1, rc)
	if r, _ := p3.retireReason(past(), now); r != "lifetime" {
		t.Errorf("size 1: %q, want lifetime", r)
	}
}

func TestMaxQueries(t *testing.T) {
	leakCheck(t)
	srv := pgtest.Shared(t)
	c := superConn(t, srv)
	opts := testOptions(t, srv, 1)
	opts.Recycle.MaxQueries = 10
	var logs *observer.ObservedLogs
	opts.Logger, logs = testLogger(t)
	p := newPool(t, opts)

	b := acquire(t, p)
	first := b.PID
	b.Queries.Add(9)
	p.Release(b)
	b = acquire(t, p)
	if b.PID != first {
		t.Fatalf("retired after 9 of 10 queries")
	}
	b.Queries.Add(1) // the 10th
	p.Release(b)
	retiredOnly(t, p, map[string]int64{"queries": 1})
	waitPIDGone(t, c, first)
	// One line, each key once (a JSON log must not repeat one), with the limit.
	lines := logs.FilterMessage("backend retired").All()
	if len(lines) != 1 {
		t.Fatalf("%d \"backend retired\" lines, want 1", len(lines))
	}
	seen := map[string]bool{}
	for _, f := range lines[0].Context {
		if seen[f.Key] {
			t.Errorf("\"backend retired\" repeats key %q", f.Key)
		}
		seen[f.Key] = true
	}
	if got := lines[0].ContextMap(); got["reason"] != "queries" || got["queries"] != int64(10) || got["max_queries"] != int64(10) {
		t.Errorf("\"backend retired\" fields %v, want reason queries, queries 10, max_queries 10", got)
	}
	b = acquire(t, p) // the 11th query runs here
	if b.PID == first {
		t.Fatal("the backend that reached max_queries was handed out again")
	}
	if b.Queries.Load() != 0 {
		t.Errorf("new backend starts with %d queries", b.Queries.Load())
	}
	p.Release(b)
	retiredOnly(t, p, map[string]int64{"queries": 1})
}

func TestMaxTransactions(t *testing.T) {
	leakCheck(t)
	srv := pgtest.Shared(t)
	opts := testOptions(t, srv, 1)
	opts.Recycle.MaxTransactions = 5
	opts.Recycle.MaxQueries = 100
	p := newPool(t, opts)

	b := acquire(t, p)
	first := b.PID
	b.Transactions.Add(4)
	b.Queries.Add(50)
	p.Release(b)
	b = acquire(t, p)
	if b.PID != first {
		t.Fatal("retired after 4 of 5 transactions")
	}
	b.Transactions.Add(1)
	p.Release(b)
	retiredOnly(t, p, map[string]int64{"transactions": 1})
	b = acquire(t, p)
	if b.PID == first {
		t.Fatal("the backend that reached max_transactions was handed out again")
	}
	p.Release(b)
	retiredOnly(t, p, map[string]int64{"transactions": 1})
}

func idleDeadline(p *Pool) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.idle) != 1 {
		return time.Time{}, false
	}
	return p.idle[0].Deadline, true
}

func TestMaxLifetime(t *testing.T) {
	leakCheck(t)
	srv := pgtest.Shared(t)
	c := superConn(t, srv)
	opts := testOptions(t, srv, 1)
	opts.Recycle.MaxLifetime = config.Duration(300 * time.Millisecond)
	opts.Recycle.LifetimeJitter = 0
	p := newPool(t, opts)

	b := acquire(t, p)
	if got := b.Deadline.Sub(b.Created); got != 300*time.Millisecond {
		t.Errorf("deadline %v after creation, want 300ms", got)
	}
	// A transaction held open across the deadline is never interrupted.
	if _, st := query(t, b, "BEGIN"); st != 'T' {
		t.Fatalf("BEGIN: %q", st)
	}
	query(t, b, "CREATE TEMP TABLE lt (x int) ON COMMIT DROP")
	time.Sleep(time.Until(b.Deadline) + 50*time.Millisecond)
	p.Tick(time.Now())
	if _, st := query(t, b, "INSERT INTO lt VALUES (1)"); st != 'T' {
		t.Fatalf("transaction interrupted past the deadline: status %q", st)
	}
	if _, st := query(t, b, "COMMIT"); st != 'I' {
		t.Fatalf("COMMIT: %q", st)
	}
	retiredOnly(t, p, map[string]int64{})
	old := b.PID
	p.Release(b) // past its deadline: retired at release
	retiredOnly(t, p, map[string]int64{"lifetime": 1})
	waitPIDGone(t, c, old)

	// Replacement ahead: no Acquire, yet a new backend is opened.
	if !waitFor(2*time.Second, func() bool { return p.Stats().Idle == 1 }) {
		t.Fatalf("no replacement opened ahead of demand: %+v", p.Stats())
	}

	// An idle backend past its deadline is retired by Tick.
	dl, ok := idleDeadline(p)
	if !ok {
		t.Fatal("no idle backend")
	}
	p.Tick(dl.Add(-time.Millisecond))
	retiredOnly(t, p, map[string]int64{"lifetime": 1})
	time.Sleep(time.Until(dl) + 10*time.Millisecond)
	p.Tick(time.Now())
	retiredOnly(t, p, map[string]int64{"lifetime": 2})
	if !waitFor(2*time.Second, func() bool { return p.Stats().Idle == 1 }) {
		t.Fatalf("no replacement after Tick: %+v", p.Stats())
	}

	// Acquire does not make a client wait for a reconnect because an idle
	// backend's deadline passed (the tick retires it, bounded by
	// max_retiring_share); it is retired at its release instead.
	dl, _ = idleDeadline(p)
	time.Sleep(time.Until(dl) + 10*time.Millisecond)
	b = acquire(t, p)
	before := p.Stats().Retired["lifetime"]
	p.Release(b)
	if after := p.Stats().Retired["lifetime"]; after != before+1 {
		t.Errorf("backend past its deadline not retired at release: %d -> %d", before, after)
	}
	for k := range p.Stats().Retired {
		if k != "lifetime" {
			t.Errorf("retired for %q; only lifetime expected: %v", k, p.Stats().Retired)
		}
	}
}

// shareTestPool opens size backends through a gate proxy, all held, with
// a short lifetime that has passed when it returns.
func shareTestPool(t *testing.T, size int, share float64) (*Pool, *gateProxy, []*Backend) {
	t.Helper()
	srv := pgtest.Shared(t)
	g := newGateProxy(t, srv)
	opts := testOptions(t, srv, size)
	opts.Target.Port = g.Port()
	opts.Recycle.MaxLifetime = config.Duration(time.Second)
	opts.Recycle.LifetimeJitter = 0
	opts.Recycle.MaxRetiringShare = share
	opts.Pool.ServerCheckQuery = ""
	p := newPool(t, opts)
	var bs []*Backend
	for range size {
		bs = append(bs, acquire(t, p))
	}
	return p, g, bs
}

func waitPastDeadlines(bs []*Backend) {
	var last time.Time
	for _, b := range bs {
		if b.Deadline.After(last) {
			last = b.Deadline
		}
	}
	time.Sleep(time.Until(last) + 20*time.Millisecond)
}

// TestMaxRetiringShareAtRelease: with share 0.25 of 4, while one
// replacement is opening (held at the gate), releases past the deadline
// don't retire.
func TestMaxRetiringShareAtRelease(t *testing.T) {
	leakCheck(t)
	p, g, bs := shareTestPool(t, 4, 0.25)
	waitPastDeadlines(bs)
	g.Block()

	p.Release(bs[0])
	retiredOnly(t, p, map[string]int64{"lifetime": 1})
	if !waitFor(5*time.Second, func() bool { return g.held.Load() == 1 }) {
		t.Fatalf("replacement connect not started: %+v", p.Stats())
	}
	if s := p.Stats(); s.Opening != 1 {
		t.Fatalf("Stats = %+v, want one opening", s)
	}
	p.Release(bs[1])
	p.Release(bs[2])
	retiredOnly(t, p, map[string]int64{"lifetime": 1})
	if s := p.Stats(); s.Idle != 2 || s.Opening != 1 {
		t.Errorf("Stats = %+v, want 2 idle (postponed) and 1 opening", s)
	}
	// Tick doesn't retire them either while the share is busy.
	p.Tick(time.Now())
	retiredOnly(t, p, map[string]int64{"lifetime": 1})

	g.Unblock()
	if !waitFor(5*time.Second, func() bool { s := p.Stats(); return s.Opening == 0 && s.Idle == 3 }) {
		t.Fatalf("replacement did not finish: %+v", p.Stats())
	}
	// Now one more may retire.
	g.Block()
	p.Release(bs[3])
	retiredOnly(t, p, map[string]int64{"lifetime": 2})
	g.Unblock()
}

// TestMaxRetiringShareAtTick: a pool whose backends were created together
// and all passed their deadline while idle must not reconnect at once:
// one Tick retires at most max(1, share×size) of them.
func TestMaxRetiringShareAtTick(t *testing.T) {
	leakCheck(t)
	p, g, bs := shareTestPool(t, 4, 0.25)
	for _, b := range bs {
		p.Release(b)
	}
	waitPastDeadlines(bs)
	g.Block() // replacements stay "opening"

	p.Tick(time.Now())
	s := p.Stats()
	if s.Retired["lifetime"] > 1 {
		t.Errorf("one Tick retired %d of 4 backends with max_retiring_share 0.25 (limit 1); Stats %+v",
			s.Retired["lifetime"], s)
	}
	if s.Idle < 3 {
		t.Errorf("only %d idle backends left serving during the replacement, want 3", s.Idle)
	}
	g.Unblock()
}

// TestMaxRetiringShareAtAcquire: Acquire on a pool whose idle backends
// all passed their deadline must neither retire the whole pool nor make
// the client wait for a new connection.
func TestMaxRetiringShareAtAcquire(t *testing.T) {
	leakCheck(t)
	p, g, bs := shareTestPool(t, 4, 0.25)
	for _, b := range bs {
		p.Release(b)
	}
	waitPastDeadlines(bs)
	g.Block()

	ctx := testContext(t, time.Second)
	b, err := p.Acquire(ctx)
	s := p.Stats()
	if err != nil {
		t.Errorf("Acquire with 4 live (if old) backends idle: %v; Stats %+v", err, s)
	} else {
		p.Release(b)
	}
	if s.Retired["lifetime"] > 1 {
		t.Errorf("one Acquire retired %d of 4 backends with max_retiring_share 0.25 (limit 1)", s.Retired["lifetime"])
	}
	g.Unblock()
}

// memTables creates many tables once; touching all of them grows a
// backend's relation and catalog caches (with a primary key and a TOAST
// table, about 8 KB per table on PostgreSQL 15: 1,500 tables take a
// backend from about 1.3 MB to about 13 MB of memory contexts).
func memTables(t *testing.T, srv *pgtest.Server, n int) {
	t.Helper()
	ctx := testContext(t, 2*time.Minute)
	err := srv.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS memtest;
DO $$ BEGIN
  FOR i IN 1..`+strconv.Itoa(n)+` LOOP
    EXECUTE format('CREATE TABLE IF NOT EXISTS memtest.t%s (id int PRIMARY KEY, a text, b text)', i);
  END LOOP;
END $$`)
	if err != nil {
		t.Fatal(err)
	}
}

func touchTables(n int) string {
	return `DO $$ BEGIN
  FOR i IN 1..` + strconv.Itoa(n) + ` LOOP
    EXECUTE 'SELECT * FROM memtest.t' || i;
  END LOOP;
END $$`
}

// memoryLimitedPool is a one-backend pool with max_memory = 8MB, over a
// server with 1,500 tables for touchTables to fill a backend's caches.
func memoryLimitedPool(t *testing.T, interval time.Duration) (*Pool, *pgtest.Server) {
	t.Helper()
	srv := pgtest.Shared(t)
	memTables(t, srv, 1500)
	opts := testOptions(t, srv, 1)
	opts.Recycle.MaxMemory = 8 << 20
	opts.Recycle.MemoryCheckInterval = config.Duration(interval)
	opts.Recycle.MemorySource = "contexts"
	return newPool(t, opts), srv
}

func TestMaxMemoryContexts(t *testing.T) {
	leakCheck(t)
	p, srv := memoryLimitedPool(t, 0)
	c := superConn(t, srv)

	b := acquire(t, p)
	big := b.PID
	query(t, b, touchTables(1500))
	p.Release(b)
	retiredOnly(t, p, map[string]int64{"memory": 1})
	mem, at := b.Memory()
	if mem <= 8<<20 || at.IsZero() {
		t.Errorf("retired backend's sample %d bytes at %v, want > 8MB", mem, at)
	}
	t.Logf("backend after touching 1500 tables: %.1f MB", float64(mem)/(1<<20))
	waitPIDGone(t, c, big)

	// Replacement ahead, and it starts small.
	if !waitFor(2*time.Second, func() bool { return p.Stats().Idle == 1 }) {
		t.Errorf("no replacement opened ahead: %+v", p.Stats())
	}
	b = acquire(t, p)
	if b.PID == big {
		t.Fatal("memory-retired backend handed out again")
	}
	query(t, b, "SELECT 1")
	p.Release(b)
	small, at := b.Memory()
	if at.IsZero() || small <= 0 || small >= 4<<20 {
		t.Errorf("replacement's sample %d bytes at %v, want well below 8MB", small, at)
	}
	t.Logf("replacement: %.1f MB", float64(small)/(1<<20))
	retiredOnly(t, p, map[string]int64{"memory": 1})
	if s := p.Stats(); s.Idle != 1 {
		t.Errorf("Stats = %+v", s)
	}
}

// TestMaxMemoryOnTick: with memory_check_interval set, the sample is
// taken on the background tick once the interval passed, not at every
// release.
func TestMaxMemoryOnTick(t *testing.T) {
	leakCheck(t)
	p, _ := memoryLimitedPool(t, 10*time.Second)

	b := acquire(t, p)
	p.Release(b) // first release: sampled, small
	_, first := b.Memory()
	if first.IsZero() {
		t.Fatal("first release did not sample")
	}
	b = acquire(t, p)
	query(t, b, touchTables(1500))
	p.Release(b) // interval not passed: kept
	if _, at := b.Memory(); !at.Equal(first) {
		t.Errorf("sampled again before memory_check_interval")
	}
	retiredOnly(t, p, map[string]int64{})
	p.Tick(time.Now().Add(5 * time.Second))
	retiredOnly(t, p, map[string]int64{})
	p.Tick(time.Now().Add(11 * time.Second))
	retiredOnly(t, p, map[string]int64{"memory": 1})
	if mem, _ := b.Memory(); mem <= 8<<20 {
		t.Errorf("tick sample %d, want > 8MB", mem)
	}
}

func TestMemorySourceProc(t *testing.T) {
	leakCheck(t)
	srv := pgtest.Shared(t)
	opts := testOptions(t, srv, 1)
	opts.Recycle.MaxMemory = 1 << 30
	opts.Recycle.MemoryCheckInterval = 0
	opts.Recycle.MemorySource = "proc"
	p := newPool(t, opts)

	b := acquire(t, p)
	n, err := procRssAnon(b.PID)
	if err != nil || n <= 0 {
		t.Fatalf("procRssAnon(%d) = %d, %v", b.PID, n, err)
	}
	p.Release(b)
	mem, at := b.Memory()
	if at.IsZero() || mem <= 0 {
		t.Errorf("proc sample %d at %v, want > 0", mem, at)
	}
	if mem >= 64<<20 {
		t.Errorf("proc sample %d: looks like VmRSS (shared_buffers), not RssAnon", mem)
	}
	retiredOnly(t, p, map[string]int64{})

	// A low limit retires by the proc sample too.
	opts.Recycle.MaxMemory = 1
	p2 := newPool(t, opts)
	b = acquire(t, p2)
	p2.Release(b)
	retiredOnly(t, p2, map[string]int64{"memory": 1})
}

// TestMemoryContextsFallback: a role that may not read
// pg_backend_memory_contexts gets one warning, the pool falls back to
// proc (the server is local) and traffic goes on.
func TestMemoryContextsFallback(t *testing.T) {
	leakCheck(t)
	srv := pgtest.Shared(t)
	ctx := testContext(t, 30*time.Second)
	const role, pw = "pool_nopriv", "nopriv-secret"
	if err := srv.Exec(ctx, "DROP ROLE IF EXISTS "+role); err != nil { // -count > 1
		t.Fatal(err)
	}
	if err := srv.CreateRole(ctx, role, pw, false); err != nil {
		t.Fatal(err)
	}
	log, logs := testLogger(t)
	opts := testOptions(t, srv, 1)
	opts.User, opts.Password = role, pw
	opts.Logger = log
	opts.Recycle.MaxMemory = 1 << 30
	opts.Recycle.MemoryCheckInterval = 0
	opts.Recycle.MemorySource = "contexts"
	p := newPool(t, opts)

	var first uint32
	for i := range 5 {
		b := acquire(t, p)
		if i == 0 {
			first = b.PID
			// The role really lacks the privilege.
			if _, err := SimpleQuery(b, contextsQuery, nil); err == nil {
				t.Fatal("non-superuser may read pg_backend_memory_contexts; test is moot")
			} else if b.TxStatus != 'I' {
				t.Fatalf("status %q after the failed probe", b.TxStatus)
			}
		} else if b.PID != first {
			t.Errorf("backend replaced (pid %d → %d); the probe failure must not cost the backend", first, b.PID)
		}
		if got := queryOne(t, b, "SELECT current_user"); got != role {
			t.Errorf("current_user = %q", got)
		}
		p.Release(b)
		if mem, at := b.Memory(); at.IsZero() || mem <= 0 {
			t.Errorf("release %d: no proc sample after the fallback (%d at %v)", i, mem, at)
		}
	}
	warns := logs.FilterLevelExact(zapcore.WarnLevel).FilterMessageSnippet("contexts").All()
	if len(warns) != 1 {
		t.Errorf("%d warnings about memory_source contexts, want exactly 1: %v", len(warns), warns)
	} else if f := warns[0].ContextMap()["fallback"]; f != "proc" {
		t.Errorf("warning says fallback %v, want proc", f)
	}
	p.mu.Lock()
	src := p.memSource
	p.mu.Unlock()
	if src != memProc {
		t.Errorf("memSource = %q, want proc", src)
	}
	retiredOnly(t, p, map[string]int64{})
}

// TestReplacementRetries: the replacement opened ahead of a retirement
// retries with backoff when its connect fails transiently, so the pool
// is back to full strength without waiting for a client.
func TestReplacementRetries(t *testing.T) {
	leakCheck(t)
	srv := pgtest.Shared(t)
	g := newGateProxy(t, srv)
	opts := testOptions(t, srv, 1)
	opts.Target.Port = g.Port()
	opts.Recycle.MaxQueries = 1
	p := newPool(t, opts)

	b := acquire(t, p)
	b.Queries.Add(1)
	g.dropNext.Store(1) // the replacement's first connect fails
	p.Release(b)
	retiredOnly(t, p, map[string]int64{"queries": 1})
	if !waitFor(3*time.Second, func() bool { return p.Stats().Idle == 1 }) {
		t.Errorf("replacement not retried after one transient failure: %+v (no client asked, so the next one waits for a connect)", p.Stats())
	}
}

// TestTickMinIdleAndIdleTimeout: Tick keeps min_idle backends warm and
// closes those idle longer than server_idle_timeout beyond min_idle.
func TestTickMinIdleAndIdleTimeout(t *testing.T) {
	leakCheck(t)
	srv := pgtest.Shared(t)
	opts := testOptions(t, srv, 3)
	opts.Pool.MinIdle = 2
	opts.Pool.ServerIdleTimeout = config.Duration(time.Minute)
	p := newPool(t, opts)

	p.Release(acquire(t, p)) // min_idle warms pools that serve clients
	p.Tick(time.Now())
	if !waitFor(5*time.Second, func() bool { s := p.Stats(); return s.Idle == 2 && s.Opening == 0 }) {
		t.Fatalf("min_idle 2 not kept warm: %+v", p.Stats())
	}
	bs := []*Backend{acquire(t, p), acquire(t, p), acquire(t, p)}
	for _, b := range bs {
		p.Release(b)
	}
	if s := p.Stats(); s.Idle != 3 {
		t.Fatalf("Stats = %+v", s)
	}
	p.Tick(time.Now().Add(2 * time.Minute))
	retiredOnly(t, p, map[string]int64{"idle": 1})
	if s := p.Stats(); s.Idle != 2 {
		t.Errorf("after idle timeout Stats = %+v, want min_idle 2 kept", s)
	}
}

// A pool that always has a client waiting never leaves a backend idle for
// the background tick: a release samples anyway once the last sample is
// two intervals old.
func TestMaxMemoryWhileClientsAlwaysWait(t *testing.T) {
	leakCheck(t)
	p, _ := memoryLimitedPool(t, 100*time.Millisecond)

	b := acquire(t, p)
	query(t, b, touchTables(1500))
	got := make(chan *Backend, 1)
	go func() { got <- acquire(t, p) }()
	if !waitFor(5*time.Second, func() bool { return p.Stats().Waiting == 1 }) {
		t.Fatal("second client not waiting")
	}
	time.Sleep(250 * time.Millisecond) // past two intervals since b opened
	p.Release(b)
	next := <-got
	if next == b {
		t.Fatal("the oversized backend went to the waiting client unsampled")
	}
	retiredOnly(t, p, map[string]int64{"memory": 1})
	p.Release(next)
}

// TestLifetimeReplacementEndsWhenUnused: with max_lifetime shorter than
// server_idle_timeout and min_idle = 0, a backend retired for age is
// replaced ahead of demand, but the replacement inherits its predecessor's
// last use, so a pool nobody uses shrinks to nothing at server_idle_timeout
// instead of reconnecting at every lifetime forever.
func TestLifetimeReplacementEndsWhenUnused(t *testing.T) {
	leakCheck(t)
	srv := pgtest.Shared(t)
	opts := testOptions(t, srv, 2)
	opts.Recycle.MaxLifetime = config.Duration(200 * time.Millisecond)
	opts.Recycle.LifetimeJitter = 0
	opts.Pool.ServerIdleTimeout = config.Duration(time.Second)
	opts.Pool.MinIdle = 0
	p := newPool(t, opts)
	p.Release(acquire(t, p))
	lastUse := time.Now()

	for time.Since(lastUse) < 3*time.Second {
		time.Sleep(50 * time.Millisecond)
		p.Tick(time.Now())
	}
	st := p.Stats()
	if n := st.Idle + st.Active + st.Opening; n != 0 {
		t.Fatalf("%d backends 3s after the last use, server_idle_timeout 1s: %+v", n, st)
	}
	if st.Retired["idle"] != 1 {
		t.Fatalf("retired %v, want the last replacement ended as idle", st.Retired)
	}
	if n := st.Retired["lifetime"]; n < 1 || n > 6 {
		t.Fatalf("retired %v: want a few lifetime replacements within the idle timeout", st.Retired)
	}
}

// TestReloadLowersPoolSize: a reload that lowers pool.size closes idle
// backends above it at once and busy ones at their release, until the
// pool fits.
func TestReloadLowersPoolSize(t *testing.T) {
	leakCheck(t)
	srv := pgtest.Shared(t)
	c := superConn(t, srv)
	opts := testOptions(t, srv, 3)
	p := newPool(t, opts)
	b1, b2, b3 := acquire(t, p), acquire(t, p), acquire(t, p)
	idlePID := b3.PID
	p.Release(b3)

	opts.Pool.Size = 1
	if err := p.Update(opts); err != nil {
		t.Fatal(err)
	}
	if st := p.Stats(); st.Idle != 0 || st.Active != 2 {
		t.Fatalf("after lowering pool.size to 1: %+v, want the idle backend closed", st)
	}
	waitPIDGone(t, c, idlePID)
	p.Release(b1)
	retiredOnly(t, p, map[string]int64{"pool_size": 2})
	p.Release(b2)
	if st := p.Stats(); st.Idle != 1 || st.Active != 0 {
		t.Fatalf("after both releases: %+v, want one idle backend kept", st)
	}
	retiredOnly(t, p, map[string]int64{"pool_size": 2})
}

// TestReloadLowersMaxLifetime: a reload that changes recycle.max_lifetime
// reaches the backends already open: their retirement is drawn again from
// their creation time, so those past the new lifetime retire (at their
// release, or at the next tick when idle). Before, they kept the deadline
// drawn from the old value (an hour, say) until then.
func TestReloadLowersMaxLifetime(t *testing.T) {
	leakCheck(t)
	srv := pgtest.Shared(t)
	opts := testOptions(t, srv, 2)
	opts.Recycle.MaxLifetime = config.Duration(time.Hour)
	opts.Recycle.LifetimeJitter = 0
	opts.Recycle.MaxRetiringShare = 1 // both may retire at once
	p := newPool(t, opts)
	busy, idle := acquire(t, p), acquire(t, p)
	p.Release(idle)
	time.Sleep(20 * time.Millisecond)

	opts.Recycle.MaxLifetime = config.Duration(10 * time.Millisecond)
	if err := p.Update(opts); err != nil {
		t.Fatal(err)
	}
	for _, bi := range p.Backends() {
		if want := bi.Created.Add(10 * time.Millisecond); !bi.Deadline.Equal(want) {
			t.Fatalf("backend %d retires at %v after the reload, want %v", bi.PID, bi.Deadline, want)
		}
	}
	p.Tick(time.Now())
	p.Release(busy)
	if st := p.Stats(); st.Retired["lifetime"] != 2 {
		t.Fatalf("after the reload, a tick and a release: retired %v, want both for lifetime", st.Retired)
	}
}
