package pool

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgrecycle/pgrecycle/config"
	"github.com/pgrecycle/pgrecycle/test/pgtest"
	"github.com/pgrecycle/pgrecycle/wire"
)

func TestAcquireInjectsStartupParameters(t *testing.T) {
	leakCheck(t)
	srv := pgtest.Shared(t)
	p := newPool(t, testOptions(t, srv, 2))

	b := acquire(t, p)
	if b.PID == 0 || len(b.SecretKey) == 0 {
		t.Errorf("backend without BackendKeyData: pid %d key %x", b.PID, b.SecretKey)
	}
	if b.TxStatus != 'I' {
		t.Errorf("new backend TxStatus %q, want 'I'", b.TxStatus)
	}
	if b.Pool() != p {
		t.Error("Backend.Pool() is not the pool")
	}
	// ParameterStatus of the server, including the injected reported one.
	for _, k := range []string{"server_version", "server_encoding", "client_encoding", "DateStyle", "integer_datetimes"} {
		if b.Params[k] == "" {
			t.Errorf("Params[%q] missing; Params = %v", k, b.Params)
		}
	}
	if got := b.Params["application_name"]; got != "pooltest" {
		t.Errorf("Params[application_name] = %q, want pooltest (injected)", got)
	}
	// Non-reported parameter injected in the StartupMessage.
	if got := queryOne(t, b, "SHOW plan_cache_mode"); got != "force_custom_plan" {
		t.Errorf("SHOW plan_cache_mode = %q, want force_custom_plan", got)
	}
	// Startup values are the session defaults: RESET ALL and DISCARD ALL
	// return to them.
	query(t, b, "SET plan_cache_mode = auto")
	if got := queryOne(t, b, "SHOW plan_cache_mode"); got != "auto" {
		t.Fatalf("SET did not apply: %q", got)
	}
	query(t, b, "RESET ALL")
	if got := queryOne(t, b, "SHOW plan_cache_mode"); got != "force_custom_plan" {
		t.Errorf("after RESET ALL plan_cache_mode = %q, want force_custom_plan", got)
	}
	query(t, b, "SET plan_cache_mode = force_generic_plan; SET application_name = 'other'")
	if got := b.Params["application_name"]; got != "other" {
		t.Errorf("SimpleQuery did not record ParameterStatus: application_name = %q", got)
	}
	query(t, b, "DISCARD ALL")
	if got := queryOne(t, b, "SHOW plan_cache_mode"); got != "force_custom_plan" {
		t.Errorf("after DISCARD ALL plan_cache_mode = %q, want force_custom_plan", got)
	}
	if got := b.Params["application_name"]; got != "pooltest" {
		t.Errorf("after DISCARD ALL application_name = %q, want pooltest", got)
	}
	p.Release(b)

	params, err := p.ServerParams(testContext(t, 10*time.Second))
	if err != nil {
		t.Fatalf("ServerParams: %v", err)
	}
	if params["server_version"] == "" || params["application_name"] != "pooltest" {
		t.Errorf("ServerParams = %v", params)
	}
	s := p.Stats()
	if s.Idle != 1 || s.Active != 0 || s.Opening != 0 || s.Waiting != 0 || len(s.Retired) != 0 {
		t.Errorf("Stats after release = %+v", s)
	}
	if s.Database != "db" || s.User != srv.SuperUser {
		t.Errorf("Stats names = %q/%q", s.Database, s.User)
	}
	// The released backend is reused.
	b2 := acquire(t, p)
	if b2 != b {
		t.Errorf("idle backend not reused: pid %d then %d", b.PID, b2.PID)
	}
	p.Release(b2)
}

func TestServerParamsOpensABackend(t *testing.T) {
	leakCheck(t)
	srv := pgtest.Shared(t)
	p := newPool(t, testOptions(t, srv, 1))
	params, err := p.ServerParams(testContext(t, 10*time.Second))
	if err != nil {
		t.Fatalf("ServerParams on a fresh pool: %v", err)
	}
	if params["server_version"] == "" {
		t.Errorf("ServerParams = %v", params)
	}
	if s := p.Stats(); s.Idle != 1 {
		t.Errorf("ServerParams left %+v, want the opened backend idle", s)
	}
}

func TestAcquireFIFO(t *testing.T) {
	leakCheck(t)
	srv := pgtest.Shared(t)
	p := newPool(t, testOptions(t, srv, 1))
	held := acquire(t, p)

	const n = 3
	order := make(chan int, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			b, err := p.Acquire(ctx)
			if err != nil {
				errs <- err
				return
			}
			if b != held {
				errs <- errors.New("waiter got another backend in a pool of size 1")
			}
			order <- i
			time.Sleep(5 * time.Millisecond)
			p.Release(b)
		}()
		// Waiter i is queued before waiter i+1 starts.
		if !waitFor(5*time.Second, func() bool { return p.Stats().Waiting == i+1 }) {
			t.Fatalf("waiter %d not queued: %+v", i, p.Stats())
		}
	}
	if s := p.Stats(); s.MaxWait <= 0 || s.Active != 1 {
		t.Errorf("Stats with waiters = %+v", s)
	}
	p.Release(held)
	wg.Wait()
	close(order)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var got []int
	for i := range order {
		got = append(got, i)
	}
	if len(got) != n || got[0] != 0 || got[1] != 1 || got[2] != 2 {
		t.Errorf("waiters served in order %v, want [0 1 2]", got)
	}
	if s := p.Stats(); s.Waiting != 0 || s.Idle != 1 || len(s.Retired) != 0 {
		t.Errorf("Stats after = %+v", s)
	}
}

func TestAcquireTimeout(t *testing.T) {
	leakCheck(t)
	srv := pgtest.Shared(t)
	p := newPool(t, testOptions(t, srv, 1))
	held := acquire(t, p)

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	b, err := p.Acquire(ctx)
	el := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) || b != nil {
		t.Fatalf("Acquire on a full pool = %v, %v; want context.DeadlineExceeded", b, err)
	}
	if el < 190*time.Millisecond || el > 2*time.Second {
		t.Errorf("Acquire returned after %v, want about 200ms", el)
	}
	if s := p.Stats(); s.Waiting != 0 || s.Opening != 0 {
		t.Errorf("after the timeout Stats = %+v, want no waiter", s)
	}
	// The timed-out waiter doesn't steal the next release.
	p.Release(held)
	if s := p.Stats(); s.Idle != 1 {
		t.Errorf("after release Stats = %+v", s)
	}
	if b := acquire(t, p); b != held {
		t.Errorf("got pid %d, want the released %d", b.PID, held.PID)
	} else {
		p.Release(b)
	}
}

func TestReleaseDirtyBackendCloses(t *testing.T) {
	leakCheck(t)
	srv := pgtest.Shared(t)
	c := superConn(t, srv)
	p := newPool(t, testOptions(t, srv, 1))

	b := acquire(t, p)
	if _, status := query(t, b, "BEGIN"); status != 'T' || b.TxStatus != 'T' {
		t.Fatalf("BEGIN left status %q", status)
	}
	dirty := b.PID
	p.Release(b)
	retiredOnly(t, p, map[string]int64{"error": 1})
	if s := p.Stats(); s.Idle != 0 || s.Active != 0 {
		t.Errorf("dirty backend still counted: %+v", s)
	}
	waitPIDGone(t, c, dirty)

	b = acquire(t, p)
	if b.PID == dirty {
		t.Fatal("dirty backend handed out again")
	}
	if got := queryOne(t, b, "SELECT 1"); got != "1" || b.TxStatus != 'I' {
		t.Errorf("new backend: %q %q", got, b.TxStatus)
	}

	// Unread data from the server also makes a backend dirty.
	if err := b.W.Append(func(dst []byte) ([]byte, error) {
		const sql = "SELECT 1"
		dst = wire.AppendHeader(dst, wire.MsgQuery, len(sql)+1)
		dst = append(dst, sql...)
		return append(dst, 0), nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := b.W.Flush(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)        // the whole response arrives
	if _, _, err := b.R.Next(); err != nil { // read, not consumed
		t.Fatal(err)
	}
	if b.R.Buffered() == 0 {
		t.Fatal("nothing buffered after reading one header")
	}
	pending := b.PID
	p.Release(b)
	retiredOnly(t, p, map[string]int64{"error": 2})
	waitPIDGone(t, c, pending)

	// And so does Broken.
	b = acquire(t, p)
	b.Broken = true
	broken := b.PID
	p.Release(b)
	retiredOnly(t, p, map[string]int64{"error": 3})
	waitPIDGone(t, c, broken)
	b = acquire(t, p)
	if b.PID == dirty || b.PID == pending || b.PID == broken {
		t.Error("a closed backend was handed out")
	}
	p.Release(b)
}

// TestReleaseWaitsForCancel: a backend with a cancel request on its way
// goes back to the pool only once the cancel is delivered, so it can't
// reach the next client's query.
func TestReleaseWaitsForCancel(t *testing.T) {
	leakCheck(t)
	p := newPool(t, testOptions(t, pgtest.Shared(t), 1))
	b := acquire(t, p)
	b.HoldForCancel()
	if !b.CancelInFlight() {
		t.Fatal("CancelInFlight false after HoldForCancel")
	}
	released := make(chan struct{})
	go func() {
		defer close(released)
		p.Release(b)
	}()
	select {
	case <-released:
		t.Fatal("Release returned while a cancel was on its way")
	case <-time.After(100 * time.Millisecond):
	}
	if s := p.Stats(); s.Idle != 0 {
		t.Fatalf("the backend is idle in the pool before its cancel is delivered: %+v", s)
	}
	b.CancelDone()
	<-released
	if s := p.Stats(); s.Idle != 1 {
		t.Fatalf("after the cancel: %+v, want the backend idle", s)
	}
}

func TestDestroyCountsReason(t *testing.T) {
	leakCheck(t)
	srv := pgtest.Shared(t)
	c := superConn(t, srv)
	p := newPool(t, testOptions(t, srv, 1))
	b := acquire(t, p)
	query(t, b, "BEGIN")
	pid := b.PID
	p.Destroy(b, "client_gone")
	retiredOnly(t, p, map[string]int64{"client_gone": 1})
	waitPIDGone(t, c, pid)
	b = acquire(t, p)
	if b.PID == pid {
		t.Error("destroyed backend handed out")
	}
	p.Release(b)
}

func TestAcquireSkipsTerminatedBackend(t *testing.T) {
	leakCheck(t)
	srv := pgtest.Shared(t)
	c := superConn(t, srv)
	p := newPool(t, testOptions(t, srv, 2))

	b := acquire(t, p)
	dead := b.PID
	p.Release(b)

	// Terminated while idle, like every backend in a restart: the FATAL
	// and the EOF arrive within milliseconds, and the next Acquire, a few
	// milliseconds later, must see them.
	ctx := testContext(t, 10*time.Second)
	var ok bool
	if err := c.QueryRow(ctx, "SELECT pg_terminate_backend($1)", int32(dead)).Scan(&ok); err != nil || !ok {
		t.Fatalf("pg_terminate_backend: %v %v", ok, err)
	}
	waitPIDGone(t, c, dead)
	time.Sleep(5 * time.Millisecond)
	b = acquire(t, p)
	if b.PID == dead {
		t.Fatal("Acquire returned the terminated backend")
	}
	if got := queryOne(t, b, "SELECT 1"); got != "1" {
		t.Errorf("SELECT 1 = %q", got)
	}
	p.Release(b)
	retiredOnly(t, p, map[string]int64{"closed": 1})
	if s := p.Stats(); s.Idle != 1 || s.Active != 0 {
		t.Errorf("Stats = %+v, want one idle backend", s)
	}
}

func TestServerRestart(t *testing.T) {
	leakCheck(t)
	srv := pgtest.Require(t)
	opts := testOptions(t, srv, 2)
	opts.Pool.ServerLoginRetry = 1e9
	p := newPool(t, opts)

	b1, b2 := acquire(t, p), acquire(t, p)
	old := map[uint32]bool{b1.PID: true, b2.PID: true}
	p.Release(b1)
	p.Release(b2)

	if err := srv.Restart("fast"); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	ctx := testContext(t, 20*time.Second)
	var got []*Backend
	for range 2 {
		b, err := p.Acquire(ctx)
		if err != nil {
			t.Fatalf("Acquire after restart: %v (after %v)", err, time.Since(start))
		}
		if old[b.PID] {
			t.Fatalf("Acquire returned backend %d from before the restart", b.PID)
		}
		if v := queryOne(t, b, "SELECT 1"); v != "1" {
			t.Fatalf("SELECT 1 = %q", v)
		}
		if v := queryOne(t, b, "SHOW plan_cache_mode"); v != "force_custom_plan" {
			t.Errorf("after restart plan_cache_mode = %q", v)
		}
		got = append(got, b)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("recovering took %v", el)
	}
	for _, b := range got {
		p.Release(b)
	}
	retiredOnly(t, p, map[string]int64{"closed": 2})
	if s := p.Stats(); s.Idle != 2 {
		t.Errorf("Stats = %+v", s)
	}

	// Acquire while the server restarts: the pool retries with backoff
	// instead of failing the waiter.
	done := make(chan error, 1)
	go func() { done <- srv.Restart("fast") }()
	var n int
	for restarting := true; restarting; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			restarting = false
		default:
		}
		b, err := p.Acquire(ctx)
		if err != nil {
			t.Fatalf("Acquire during restart: %v", err)
		}
		if _, err := SimpleQuery(b, "SELECT 1", nil); err != nil || b.TxStatus != 'I' {
			// A backend that the shutdown hit while acquired: the
			// caller's query fails and it is destroyed.
			b.Broken = true
		}
		n++
		p.Release(b)
		time.Sleep(5 * time.Millisecond)
	}
	b := acquire(t, p)
	if v := queryOne(t, b, "SELECT 1"); v != "1" {
		t.Errorf("after second restart SELECT 1 = %q", v)
	}
	p.Release(b)
	t.Logf("%d acquisitions during restart; stats %+v", n, p.Stats())
}

func TestConnectRetriesTransientFailures(t *testing.T) {
	leakCheck(t)
	srv := pgtest.Shared(t)
	g := newGateProxy(t, srv)
	opts := testOptions(t, srv, 1)
	opts.Target.Port = g.Port()
	p := newPool(t, opts)

	g.dropNext.Store(3) // the next three connections are closed at once
	start := time.Now()
	b := acquire(t, p)
	el := time.Since(start)
	if got := queryOne(t, b, "SELECT 1"); got != "1" {
		t.Errorf("SELECT 1 = %q", got)
	}
	p.Release(b)
	s := p.Stats()
	if s.ConnectErrors != 3 {
		t.Errorf("ConnectErrors = %d, want 3", s.ConnectErrors)
	}
	// Backoff 50ms, 100ms, 200ms, each drawn in [b/2, b]: at least 175ms.
	if el < 150*time.Millisecond || el > 5*time.Second {
		t.Errorf("Acquire took %v; want the exponential backoff (about 175-350ms)", el)
	}
}

func TestFatalConnectErrorFailsFast(t *testing.T) {
	leakCheck(t)
	srv := pgtest.Shared(t)

	t.Run("password", func(t *testing.T) {
		opts := testOptions(t, srv, 2)
		opts.Password = "wrong password"
		p := newPool(t, opts)
		ctx := testContext(t, 10*time.Second)
		start := time.Now()
		b, err := p.Acquire(ctx)
		if err == nil {
			p.Release(b)
			t.Fatal("Acquire with a wrong password succeeded")
		}
		if el := time.Since(start); el > 3*time.Second {
			t.Errorf("Acquire failed after %v; a bad password must not be retried", el)
		}
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
			t.Errorf("err = %v (%T), want a PgError 28P01", err, err)
		}
		if s := p.Stats(); s.Waiting != 0 || s.Opening != 0 || s.ConnectErrors != 1 {
			t.Errorf("Stats = %+v", s)
		}
	})

	t.Run("parameter", func(t *testing.T) {
		opts := testOptions(t, srv, 2)
		opts.Params["nonexistent_guc"] = "1"
		p := newPool(t, opts)
		ctx := testContext(t, 10*time.Second)
		start := time.Now()
		b, err := p.Acquire(ctx)
		if err == nil {
			p.Release(b)
			t.Fatal("Acquire with an unknown startup parameter succeeded")
		}
		if el := time.Since(start); el > 3*time.Second {
			t.Errorf("Acquire failed after %v; a rejected parameter must not be retried", el)
		}
		if !strings.Contains(err.Error(), "nonexistent_guc") {
			t.Errorf("error %q does not name the parameter", err)
		}
		if s := p.Stats(); s.Waiting != 0 || s.Opening != 0 {
			t.Errorf("Stats = %+v", s)
		}
	})

	t.Run("several waiters", func(t *testing.T) {
		opts := testOptions(t, srv, 1)
		opts.Password = "wrong password"
		p := newPool(t, opts)
		errs := make(chan error, 3)
		for range 3 {
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				b, err := p.Acquire(ctx)
				if b != nil {
					p.Release(b)
				}
				errs <- err
			}()
		}
		for range 3 {
			err := <-errs
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
				t.Errorf("waiter got %v, want 28P01", err)
			}
		}
	})
}

func TestCloseFailsWaiters(t *testing.T) {
	leakCheck(t)
	srv := pgtest.Shared(t)
	c := superConn(t, srv)
	p := newPool(t, testOptions(t, srv, 1))
	held := acquire(t, p)

	const n = 2
	errs := make(chan error, n)
	for i := range n {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			b, err := p.Acquire(ctx)
			if b != nil {
				p.Release(b)
			}
			errs <- err
		}()
		if !waitFor(5*time.Second, func() bool { return p.Stats().Waiting == i+1 }) {
			t.Fatalf("waiter %d not queued", i)
		}
	}
	p.Close()
	for range n {
		select {
		case err := <-errs:
			if !errors.Is(err, ErrClosed) {
				t.Errorf("waiter got %v, want ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("waiter not woken by Close")
		}
	}
	if _, err := p.Acquire(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Acquire after Close = %v, want ErrClosed", err)
	}
	// A backend in use at Close is closed when released.
	pid := held.PID
	p.Release(held)
	if got := p.Stats().Retired["shutdown"]; got != 1 {
		t.Errorf("Retired[shutdown] = %d, want 1", got)
	}
	waitPIDGone(t, c, pid)
	p.Close() // twice is fine
}

func TestCloseClosesIdle(t *testing.T) {
	leakCheck(t)
	srv := pgtest.Shared(t)
	c := superConn(t, srv)
	p := newPool(t, testOptions(t, srv, 3))
	var bs []*Backend
	for range 3 {
		bs = append(bs, acquire(t, p))
	}
	for _, b := range bs {
		p.Release(b)
	}
	p.Close()
	retiredOnly(t, p, map[string]int64{"shutdown": 3})
	for _, b := range bs {
		waitPIDGone(t, c, b.PID)
	}
}

func TestCancel(t *testing.T) {
	leakCheck(t)
	srv := pgtest.Shared(t)
	c := superConn(t, srv)
	p := newPool(t, testOptions(t, srv, 1))
	b := acquire(t, p)

	type res struct {
		status byte
		err    error
	}
	done := make(chan res, 1)
	go func() {
		st, err := SimpleQuery(b, "SELECT pg_sleep(30)", nil)
		done <- res{st, err}
	}()
	ctx := testContext(t, 10*time.Second)
	if !waitFor(5*time.Second, func() bool {
		var n int
		_ = c.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND state = 'active' AND query LIKE '%pg_sleep%'", int32(b.PID)).Scan(&n)
		return n == 1
	}) {
		t.Fatal("query never became active")
	}
	if err := p.Cancel(ctx, b); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	select {
	case r := <-done:
		var qe *QueryError
		if !errors.As(r.err, &qe) || qe.Code != "57014" {
			t.Errorf("cancelled query returned %v, want 57014", r.err)
		}
		if r.status != 'I' || b.Broken {
			t.Errorf("after cancel status %q broken %v", r.status, b.Broken)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Cancel did not interrupt the query")
	}
	p.Release(b)
	if s := p.Stats(); s.Idle != 1 || len(s.Retired) != 0 {
		t.Errorf("cancelled backend not kept: %+v", s)
	}
}

// One Waiter serves wait after wait: a timeout, a stop and a handoff each
// leave it reusable, and the pool's queue clean.
func TestAcquireWithReusesWaiter(t *testing.T) {
	leakCheck(t)
	p := newPool(t, testOptions(t, pgtest.Shared(t), 1))
	held := acquire(t, p)
	w := NewWaiter()

	if _, err := p.AcquireWith(w, time.After(30*time.Millisecond), nil); !errors.Is(err, ErrWaitTimeout) {
		t.Fatalf("wait past its timeout: %v, want ErrWaitTimeout", err)
	}
	stop := make(chan struct{})
	close(stop)
	if _, err := p.AcquireWith(w, nil, stop); !errors.Is(err, ErrStopped) {
		t.Fatalf("stopped wait: %v, want ErrStopped", err)
	}
	if n := p.Stats().Waiting; n != 0 {
		t.Fatalf("%d waiters left queued after timeout and stop", n)
	}
	got := make(chan *Backend, 1)
	go func() {
		b, err := p.AcquireWith(w, nil, nil)
		if err != nil {
			t.Error(err)
		}
		got <- b
	}()
	if !waitFor(5*time.Second, func() bool { return p.Stats().Waiting == 1 }) {
		t.Fatal("reused waiter not queued")
	}
	if !p.Release(held) {
		t.Fatal("Release to a queued waiter did not report the hand-off")
	}
	b := <-got
	if b != held {
		t.Fatalf("handoff gave %v, want the released backend", b)
	}
	if p.Release(b) {
		t.Fatal("Release with nobody waiting reported a hand-off")
	}
}

// TestReservePool: once the oldest waiting client has waited
// reserve_pool_timeout, the pool opens up to reserve_pool_size backends
// above pool.size; they close at their release when nobody waits.
func TestReservePool(t *testing.T) {
	leakCheck(t)
	srv := pgtest.Shared(t)
	opts := testOptions(t, srv, 1)
	opts.Pool.ReservePoolSize = 1
	opts.Pool.ReservePoolTimeout = config.Duration(300 * time.Millisecond)
	p := newPool(t, opts)
	held := acquire(t, p)
	// The proxy ticks every pool each second; here faster.
	stop := make(chan struct{})
	ticked := make(chan struct{})
	go func() {
		defer close(ticked)
		for {
			select {
			case <-stop:
				return
			case now := <-time.After(50 * time.Millisecond):
				p.Tick(now)
			}
		}
	}()
	defer func() { close(stop); <-ticked }()

	start := time.Now()
	ctx := testContext(t, 10*time.Second)
	b, err := p.Acquire(ctx)
	if err != nil {
		t.Fatalf("Acquire with the only backend held: %v", err)
	}
	if el := time.Since(start); el < 250*time.Millisecond {
		t.Fatalf("reserve backend after %s, before reserve_pool_timeout (300ms)", el)
	}
	if b.PID == held.PID {
		t.Fatal("the held backend was handed out")
	}
	if st := p.Stats(); st.Active != 2 {
		t.Fatalf("%+v, want 2 active (size 1 + reserve 1)", st)
	}
	// A third waits: the reserve is full.
	wctx, cancel := context.WithTimeout(ctx, 700*time.Millisecond)
	defer cancel()
	if b3, err := p.Acquire(wctx); err == nil {
		p.Release(b3)
		t.Fatal("a third backend opened beyond size + reserve")
	}
	p.Release(b) // nobody waits: the reserve backend closes
	p.Release(held)
	retiredOnly(t, p, map[string]int64{"reserve": 1})
	if st := p.Stats(); st.Idle != 1 || st.Active != 0 {
		t.Fatalf("after the releases: %+v, want one idle backend", st)
	}
}
