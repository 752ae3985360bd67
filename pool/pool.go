package pool

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/pgrecycle/pgrecycle/config"
	"github.com/pgrecycle/pgrecycle/sockio"
)

// idlePeekAfter is how long a backend must have been idle before Acquire
// checks its socket for an EOF or an unsolicited message (the FATAL of a
// restart). Under load backends come back sooner and skip the system call;
// a client querying every few milliseconds through a restart must not be
// handed a backend the server already said goodbye on.
const idlePeekAfter = time.Millisecond

// ErrClosed is returned by Acquire on a closed pool.
var ErrClosed = errors.New("pool is closed")

// Options configure one pool: a (database, user) pair.
type Options struct {
	Database string // the name clients use
	User     string // backend role
	Password string // backend password, "" when the server needs none
	Target   config.Database
	Params   map[string]string // backend startup parameters
	Pool     config.Pool
	Recycle  config.Recycle
	Listen   config.Listen // TCP keepalive settings for backend sockets
	Logger   *zap.Logger
	// Passthrough, when set, logs backends in with a client's SCRAM key or
	// md5 hash instead of Password.
	Passthrough *Passthrough
	// Limits are shared with the pools of the same database
	// (max_db_connections) and of the same backend user
	// (max_user_connections); a backend needs a slot of each.
	Limits []*Limiter
}

type result struct {
	b   *Backend
	err error
}

type waiter struct {
	ch    chan result
	since time.Time
}

// Stats is a snapshot of a pool's state for the admin console and metrics.
type Stats struct {
	Database, User        string
	Active, Idle, Opening int
	Waiting               int
	Pinned                int // kept by their clients between transactions
	MaxWait               time.Duration
	Retired               map[string]int64
	ConnectErrors         int64
}

// Pool holds up to Pool.Size backends for one (database, user).
type Pool struct {
	log *zap.Logger

	mu       sync.Mutex
	opts     Options
	snapshot atomic.Pointer[Options] // lock-free read of opts for sessions
	connCfg  connectConfig
	idle     []*Backend // LIFO: the most recently used is reused first
	all      map[*Backend]struct{}
	waiters  waitQueue
	opening  int
	// retiring counts policy retirements whose replacement is not open
	// yet; max_retiring_share bounds it.
	retiring int
	closed   bool
	// starvedOn: the limiter that left waiters without a slot, or nil.
	starvedOn *Limiter
	params    map[string]string // ParameterStatus of the newest backend
	nextID    uint64
	retired   map[string]int64
	connErrs  int64
	// lastConnErr is the error of the latest connect, nil once one
	// succeeds: why clients wait.
	lastConnErr error
	// memSource is the effective memory source: the configured one until
	// it proves unavailable, then a fallback or "off".
	memSource string
	// stmtEpoch: see StatementEpoch.
	stmtEpoch atomic.Uint64
	// keepClosedUntil: Vacate's pause of openings ahead of demand.
	keepClosedUntil time.Time
	// served: a client asked for a backend. min_idle warms only pools
	// that serve clients, not one opened for a replication login alone.
	served bool

	ctx    context.Context // cancelled by Close; bounds connects
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns a pool; it opens nothing until asked.
func New(opts Options) (*Pool, error) {
	cc, err := newConnectConfig(opts)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Pool{
		log:       opts.Logger.With(zap.String("database", opts.Database), zap.String("user", opts.User)),
		opts:      opts,
		connCfg:   cc,
		all:       make(map[*Backend]struct{}),
		retired:   make(map[string]int64),
		memSource: memSourceFor(opts.Recycle),
		ctx:       ctx,
		cancel:    cancel,
	}
	snap := opts
	p.snapshot.Store(&snap)
	for _, l := range opts.Limits {
		l.register(p)
	}
	return p, nil
}

// Options returns the pool's current options; the snapshot must not be
// modified.
func (p *Pool) Options() *Options { return p.snapshot.Load() }

// Update applies reloaded options. Pool sizes, timeouts and recycling
// apply at once; when the connection target or startup parameters changed,
// every backend retires at its next release (idle ones at the next tick).
func (p *Pool) Update(opts Options) error {
	cc, err := newConnectConfig(opts)
	if err != nil {
		return err
	}
	p.mu.Lock()
	old := p.opts
	p.opts = opts
	p.connCfg = cc
	snap := opts
	p.snapshot.Store(&snap)
	if p.memSource == memOff || old.Recycle.MemorySource != opts.Recycle.MemorySource {
		p.memSource = memSourceFor(opts.Recycle)
	}
	if !sameTarget(old, opts) {
		for b := range p.all {
			b.RetireReason.Store("reload")
			b.RetireRequested.Store(true)
		}
	}
	if old.Recycle.MaxLifetime != opts.Recycle.MaxLifetime || old.Recycle.LifetimeJitter != opts.Recycle.LifetimeJitter {
		// Open backends take the new lifetime too, from their creation:
		// those past it retire as max_retiring_share allows, not at once.
		for b := range p.all {
			b.Deadline = p.drawDeadlineLocked(b.Created)
		}
	}
	excess := p.takeExcessIdleLocked()
	p.spawnOpenersLocked()
	p.mu.Unlock()
	for _, b := range excess {
		p.destroy(b, reasonPoolSize, true)
	}
	return nil
}

// reasonPoolSize retires backends above a pool.size lowered by a reload.
const reasonPoolSize = "pool_size"

// takeExcessIdleLocked removes idle backends above pool.size from the pool
// for the caller to destroy; busy ones go at their release.
func (p *Pool) takeExcessIdleLocked() []*Backend {
	n := min(len(p.all)-p.opts.Pool.Size-p.reserveLocked(time.Now()), len(p.idle))
	if n <= 0 {
		return nil
	}
	// The least recently used are at the front.
	excess := append([]*Backend(nil), p.idle[:n]...)
	kept := copy(p.idle, p.idle[n:])
	clear(p.idle[kept:])
	p.idle = p.idle[:kept]
	return excess
}

// SetCredentials changes the password or passed-through key that new
// backends log in with, after a password rotation. Backends already open
// stay: PostgreSQL keeps sessions logged in with an old password.
func (p *Pool) SetCredentials(password string, pt *Passthrough) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.opts.Password == password && p.opts.Passthrough.equal(pt) {
		return nil
	}
	opts := p.opts
	opts.Password, opts.Passthrough = password, pt
	cc, err := newConnectConfig(opts)
	if err != nil {
		return err
	}
	p.opts, p.connCfg = opts, cc
	snap := opts
	p.snapshot.Store(&snap)
	p.log.Info("backend credentials changed; new backends use them")
	return nil
}

// sameTarget reports whether backends opened with a still serve b. The
// password is not part of it: a rotated password changes how new backends
// log in, not what the open ones are.
func sameTarget(a, b Options) bool {
	if a.User != b.User || a.Target.Host != b.Target.Host ||
		a.Target.Port != b.Target.Port || a.Target.DBName != b.Target.DBName ||
		a.Target.SSLMode != b.Target.SSLMode || a.Target.SSLRootCert != b.Target.SSLRootCert ||
		len(a.Params) != len(b.Params) {
		return false
	}
	for k, v := range a.Params {
		if w, ok := b.Params[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// Acquire returns an idle backend, waiting in FIFO order for one to be
// released or opened until ctx is done.
func (p *Pool) Acquire(ctx context.Context) (*Backend, error) {
	w := NewWaiter()
	b, err := p.AcquireWith(w, nil, ctx.Done())
	if err == ErrStopped {
		err = ctx.Err()
	}
	return b, err
}

// Waiter is a reusable slot for waiting on a pool, so that a wait allocates
// nothing: under load most transactions wait for a backend. A Waiter is
// used by one Acquire at a time.
type Waiter struct{ w waiter }

// NewWaiter returns a Waiter for AcquireWith.
func NewWaiter() *Waiter { return &Waiter{w: waiter{ch: make(chan result, 1)}} }

// ErrStopped is AcquireWith's error when stop was closed.
var ErrStopped = errors.New("pool: wait stopped")

// ErrInterrupted is AcquireWith's error when Interrupt ended the wait.
var ErrInterrupted = errors.New("pool: wait interrupted")

// Interrupt ends wt's wait for a backend of p with ErrInterrupted (a
// client cancelled the query that waits); it reports whether wt was
// waiting.
func (p *Pool) Interrupt(wt *Waiter) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.waiters.Remove(&wt.w) {
		return false
	}
	wt.w.ch <- result{err: ErrInterrupted}
	return true
}

// ErrWaitTimeout is AcquireWith's error when timeout fired.
var ErrWaitTimeout = context.DeadlineExceeded

// AcquireWith waits in FIFO order for a backend like Acquire, without a
// context: it gives up with ErrWaitTimeout when timeout delivers (nil:
// never) and with an error when stop is closed.
func (p *Pool) AcquireWith(wt *Waiter, timeout <-chan time.Time, stop <-chan struct{}) (*Backend, error) {
	w := &wt.w
	for {
		if b := p.TryAcquire(); b != nil {
			return b, nil
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, ErrClosed
		}
		if len(p.idle) > 0 && p.waiters.Len() == 0 {
			p.mu.Unlock() // released meanwhile: take it
			continue
		}
		w.since = time.Now()
		p.waiters.Push(w)
		p.spawnOpenersLocked()
		p.mu.Unlock()

		var err error
		select {
		case r := <-w.ch:
			return r.b, r.err
		case <-timeout:
			err = ErrWaitTimeout
		case <-stop:
			err = ErrStopped
		}
		p.mu.Lock()
		removed := p.waiters.Remove(w)
		if p.waiters.Len() <= p.opening {
			p.setStarvedLocked(nil)
		}
		p.mu.Unlock()
		if !removed {
			// Handed over concurrently: give it back (and leave the
			// channel empty for the Waiter's next use).
			if r := <-w.ch; r.b != nil {
				p.Release(r.b)
			}
		}
		return nil, err
	}
}

// TryAcquire returns an idle backend without waiting, or nil.
func (p *Pool) TryAcquire() *Backend {
	for {
		p.mu.Lock()
		p.served = true
		n := len(p.idle)
		if p.closed || n == 0 || p.waiters.Len() > 0 {
			p.mu.Unlock()
			return nil
		}
		b := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		b.InUse.Store(true)
		p.mu.Unlock()
		if reason := p.checkIdle(b); reason != "" {
			p.destroy(b, reason, reason != "closed")
			continue
		}
		return b
	}
}

// checkIdle decides whether an idle backend may be handed out; it returns
// the retirement reason otherwise.
func (p *Pool) checkIdle(b *Backend) string {
	// A backend back in the pool for a moment can't have been told much;
	// under load that skips a system call per transaction. One idle longer
	// may have died (a restart, an OOM kill) or been sent something.
	now := time.Now()
	if now.Sub(b.LastUsed) > idlePeekAfter && sockio.HasDataOrEOF(b.Conn) {
		return "closed"
	}
	// A deadline passed while idle is the tick's business (bounded by
	// max_retiring_share), not a reason to make this client wait.
	p.mu.Lock()
	delay := p.opts.Pool.ServerCheckDelay.D()
	query := p.opts.Pool.ServerCheckQuery
	p.mu.Unlock()
	if query != "" && now.Sub(b.LastUsed) > delay {
		if err := runCheck(b, query, p.opts.Pool.ServerConnectTimeout.D()); err != nil {
			p.log.Info("backend failed health check", zap.Uint32("pid", b.PID), zap.Error(err))
			return "error"
		}
		b.checkedAt = now
	}
	return ""
}

// Release returns a backend after use. Only a clean backend is kept; one
// due for retirement is closed and replaced in the background. It reports
// whether a waiting client got the backend.
func (p *Pool) Release(b *Backend) (handedOff bool) {
	b.awaitCancel()
	b.InUse.Store(false)
	if b.Broken || b.TxStatus != 'I' || b.R.Buffered() > 0 || b.W.Buffered() > 0 {
		p.destroy(b, "error", false)
		return
	}
	now := time.Now()
	b.LastUsed = now // also its replacement's, if it retires now
	if reason, value := p.retireReason(b, now); reason != "" {
		p.retire(b, reason, value...)
		return
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.destroy(b, "shutdown", true)
		return
	}
	if n := len(p.all); n > p.opts.Pool.Size {
		// Over pool.size: a reserve backend while clients still wait, or
		// one above a size a reload lowered.
		reserve := n <= p.opts.Pool.Size+p.opts.Pool.ReservePoolSize
		if !reserve || p.waiters.Len() == 0 {
			reason := reasonPoolSize
			if reserve {
				reason = "reserve"
			}
			p.mu.Unlock()
			p.destroy(b, reason, true)
			return
		}
	}
	// Sample memory when nobody waits: a waiter gets the backend now and
	// the background tick samples it later, once it is idle. A pool that
	// always has waiters never leaves a backend idle, so a sample overdue
	// by a whole interval is taken here anyway.
	if p.waiters.Len() == 0 || p.memoryOverdueLocked(b, now) {
		p.mu.Unlock()
		if p.memoryDue(b, now) {
			if retired := p.checkMemory(b); retired {
				return
			}
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			p.destroy(b, "shutdown", true)
			return
		}
	}
	if l := p.starvedNeighbourLocked(); l != nil && p.waiters.Len() == 0 {
		// max_db_connections or max_user_connections is reached and
		// another pool under it has clients waiting: they get this
		// backend's slot rather than it idling here.
		p.mu.Unlock()
		p.destroy(b, l.setting, true)
		return false
	}
	handedOff = p.handOffLocked(b)
	p.mu.Unlock()
	return handedOff
}

// checkMemory samples b and retires it when over max_memory; it reports
// whether b is gone.
func (p *Pool) checkMemory(b *Backend) bool {
	n, ok := p.sampleMemory(b)
	if b.Broken {
		p.destroy(b, "error", false)
		return true
	}
	p.mu.Lock()
	limit := int64(p.opts.Recycle.MaxMemory)
	p.mu.Unlock()
	if ok && limit > 0 && n > limit {
		p.retire(b, "memory", zap.Int64("memory_bytes", n), zap.Int64("max_memory", limit))
		return true
	}
	return false
}

// retire closes a backend for a recycling reason and opens its replacement
// ahead of demand, so clients don't wait for a new connection.
func (p *Pool) retire(b *Backend, reason string, value ...zap.Field) {
	p.destroy(b, reason, true, value...)
	p.mu.Lock()
	reserved := reason == "lifetime" || reason == "queries" || reason == "transactions"
	if (time.Now().Before(p.keepClosedUntil) || !p.replaceLocked(reserved, b.LastUsed)) && reserved {
		p.retiring--
	}
	p.mu.Unlock()
}

// replaceLocked opens one backend in the background if the pool has room.
// The new backend counts as last used at lastUsed (zero: now), so a
// replacement for a backend nobody used lately still ends at
// server_idle_timeout instead of being replaced again at each lifetime.
func (p *Pool) replaceLocked(reserved bool, lastUsed time.Time) bool {
	if p.closed || len(p.all)+p.opening >= p.opts.Pool.Size || p.opening >= max(1, p.opts.Pool.MaxConcurrentConnects) {
		return false
	}
	if p.takeSlot() != nil {
		return false
	}
	p.opening++
	p.wg.Add(1)
	go p.openAhead(reserved, lastUsed)
	return true
}

// openAhead opens a backend nobody waits for yet (a replacement or
// min_idle), retrying with backoff until it succeeds or the pool closes.
func (p *Pool) openAhead(reserved bool, lastUsed time.Time) {
	if reserved {
		defer func() {
			p.mu.Lock()
			p.retiring--
			p.mu.Unlock()
		}()
	}
	p.openWith(true, lastUsed)
}

// handOffLocked gives b to the longest waiter, or parks it idle.
func (p *Pool) handOffLocked(b *Backend) bool {
	if p.waiters.Len() > 0 {
		w := p.waiters.Pop()
		b.InUse.Store(true)
		w.ch <- result{b: b}
		return true
	}
	p.idle = append(p.idle, b)
	return false
}

// retireReason applies the recycling policies at release. Age and count
// retirements are postponed while a share of the pool is already being
// replaced (max_retiring_share), so a pool created at once doesn't
// reconnect at once; memory is a hard limit and never waits.
func (p *Pool) retireReason(b *Backend, now time.Time) (string, []zap.Field) {
	if b.RetireRequested.Load() {
		reason, _ := b.RetireReason.Load().(string)
		if reason == "" {
			reason = "admin"
		}
		return reason, nil
	}
	p.mu.Lock()
	rc := p.opts.Recycle
	deadline := b.Deadline // a reload may draw it again (Update)
	p.mu.Unlock()
	var reason string
	var value []zap.Field
	switch {
	// destroy logs age, queries and transactions: value adds the limit.
	case !deadline.IsZero() && now.After(deadline):
		reason, value = "lifetime", []zap.Field{zap.Duration("lifetime", deadline.Sub(b.Created))}
	case rc.MaxQueries > 0 && b.Queries.Load() >= rc.MaxQueries:
		reason, value = "queries", []zap.Field{zap.Int64("max_queries", rc.MaxQueries)}
	case rc.MaxTransactions > 0 && b.Transactions.Load() >= rc.MaxTransactions:
		reason, value = "transactions", []zap.Field{zap.Int64("max_transactions", rc.MaxTransactions)}
	default:
		return "", nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.reserveRetirementLocked() {
		return "", nil
	}
	return reason, value
}

// reserveRetirementLocked takes one of the max_retiring_share slots; the
// replacement's opener gives it back.
func (p *Pool) reserveRetirementLocked() bool {
	if p.retiring >= max(1, int(p.retiringShare()*float64(p.opts.Pool.Size))) {
		return false
	}
	p.retiring++
	return true
}

// Destroy closes a backend the caller holds (for example one whose client
// vanished mid-transaction) and counts it under reason.
func (p *Pool) Destroy(b *Backend, reason string) {
	b.InUse.Store(false)
	p.destroy(b, reason, !b.Broken)
}

// Vacate closes the pool's idle backends now and those in use when their
// clients release them, and opens none ahead of demand for the next pause:
// someone needs their database free of connections. It returns how many
// it closed now.
func (p *Pool) Vacate(reason string, pause time.Duration) int {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.keepClosedUntil = time.Now().Add(pause)
	for b := range p.all {
		if b.InUse.Load() && !b.RetireRequested.Load() {
			b.RetireReason.Store(reason)
			b.RetireRequested.Store(true)
		}
	}
	p.mu.Unlock()
	for _, b := range idle {
		p.destroy(b, reason, true)
	}
	return len(idle)
}

// StatementEpoch is part of the names of the prepared statements the proxy
// shares on this pool's backends; InvalidateStatements changes it.
func (p *Pool) StatementEpoch() uint64 { return p.stmtEpoch.Load() }

// InvalidateStatements makes later Parses prepare fresh statements instead
// of sharing ones already on backends: the server said a statement's
// result type changed (a table was altered). Statements clients prepared
// before keep their names, and their error, as on PostgreSQL.
func (p *Pool) InvalidateStatements() { p.stmtEpoch.Add(1) }

func (p *Pool) destroy(b *Backend, reason string, graceful bool, value ...zap.Field) {
	b.close(graceful)
	p.mu.Lock()
	if _, ok := p.all[b]; ok {
		defer p.giveSlot()
	}
	delete(p.all, b)
	p.retired[reason]++
	p.spawnOpenersLocked()
	p.mu.Unlock()
	fields := append([]zap.Field{zap.Uint32("pid", b.PID), zap.String("reason", reason),
		zap.Duration("age", time.Since(b.Created)), zap.Int64("queries", b.Queries.Load()),
		zap.Int64("transactions", b.Transactions.Load())}, value...)
	if mem, at := b.Memory(); !at.IsZero() {
		fields = append(fields, zap.Int64("last_memory_bytes", mem))
	}
	p.log.Info("backend retired", fields...)
}

// spawnOpenersLocked starts connects for waiters that no backend will serve.
func (p *Pool) spawnOpenersLocked() {
	if p.closed {
		return
	}
	limit := p.opts.Pool.MaxConcurrentConnects
	if limit < 1 {
		limit = 1
	}
	size := p.opts.Pool.Size + p.reserveLocked(time.Now())
	for p.waiters.Len() > p.opening && len(p.all)+p.opening < size && p.opening < limit {
		if l := p.takeSlot(); l != nil {
			// max_db_connections or max_user_connections reached: make
			// room from another pool's idle backends, now and as they are
			// released; a freed slot wakes this pool.
			p.setStarvedLocked(l)
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				l.reclaim(p)
			}()
			return
		}
		p.opening++
		p.wg.Add(1)
		go p.open()
	}
	if p.waiters.Len() <= p.opening {
		p.setStarvedLocked(nil)
	}
}

// reserveLocked is how many backends the pool may open above pool.size
// now: reserve_pool_size once its oldest waiting client has waited
// reserve_pool_timeout, else none.
func (p *Pool) reserveLocked(now time.Time) int {
	if p.opts.Pool.ReservePoolSize == 0 || p.waiters.Len() == 0 || now.Sub(p.waiters.Front().since) < p.opts.Pool.ReservePoolTimeout.D() {
		return 0
	}
	return p.opts.Pool.ReservePoolSize
}

// open connects one backend for the waiters, retrying with exponential
// backoff and jitter while anyone still waits.
func (p *Pool) open() { p.openWith(false, time.Time{}) }

func (p *Pool) openWith(ahead bool, lastUsed time.Time) {
	defer p.wg.Done()
	backoff := 50 * time.Millisecond
	for {
		b, err := p.connect(p.ctx)
		p.mu.Lock()
		p.opening--
		if err != nil {
			p.connErrs++
			p.lastConnErr = err
			stillNeeded := p.waiters.Len() > 0 || (ahead && len(p.all)+p.opening < p.opts.Pool.Size)
			if p.closed || !stillNeeded {
				p.mu.Unlock()
				p.giveSlot()
				return
			}
			if isFatalConnectError(err) {
				p.log.Error("cannot connect to backend", zap.Error(err))
				p.waiters.Drain(func(w *waiter) { w.ch <- result{err: err} })
				p.mu.Unlock()
				p.giveSlot()
				return
			}
			p.opening++
			maxBackoff := p.opts.Pool.ServerLoginRetry.D()
			p.mu.Unlock()
			p.log.Warn("backend connect failed, retrying", zap.Error(err), zap.Duration("backoff", backoff))
			sleep := backoff/2 + rand.N(backoff/2+1)
			select {
			case <-time.After(sleep):
			case <-p.ctx.Done():
				p.mu.Lock()
				p.opening--
				p.mu.Unlock()
				p.giveSlot()
				return
			}
			backoff *= 2
			if maxBackoff > 0 && backoff > maxBackoff {
				backoff = maxBackoff
			}
			continue
		}
		if p.closed {
			p.mu.Unlock()
			b.close(true)
			p.giveSlot()
			return
		}
		p.lastConnErr = nil
		if !lastUsed.IsZero() && lastUsed.Before(b.LastUsed) {
			b.LastUsed = lastUsed
		}
		p.nextID++
		b.ID = p.nextID
		b.pool = p
		p.all[b] = struct{}{}
		if p.params == nil || !maps.Equal(p.params, b.Params) {
			// The newest backend's view: after a server restart (a new
			// version, new defaults) clients that log in from now on
			// see what the server now says. Replaced, never changed in
			// place: sessions read the map they got without the lock.
			p.params = maps.Clone(b.Params)
		}
		b.Deadline = p.drawDeadlineLocked(b.Created)
		p.handOffLocked(b)
		p.spawnOpenersLocked()
		p.mu.Unlock()
		p.log.Debug("backend opened", zap.Uint32("pid", b.PID))
		return
	}
}

// drawDeadlineLocked picks the backend's retirement time once, at creation,
// in [max_lifetime×(1−j), max_lifetime×(1+j)], so backends created together
// don't all retire together.
func (p *Pool) drawDeadlineLocked(created time.Time) time.Time {
	lt := p.opts.Recycle.MaxLifetime.D()
	if lt <= 0 {
		return time.Time{}
	}
	j := p.opts.Recycle.LifetimeJitter
	f := 1 + j*(2*rand.Float64()-1)
	return created.Add(time.Duration(float64(lt) * f))
}

// ConnectFailing returns the error of the pool's latest backend connect
// when it failed, nil when it succeeded or none was tried.
func (p *Pool) ConnectFailing() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastConnErr
}

// ServerParams returns the ParameterStatus values of the pool's backends,
// opening one if none was opened yet.
func (p *Pool) ServerParams(ctx context.Context) (map[string]string, error) {
	p.mu.Lock()
	params := p.params
	p.mu.Unlock()
	if params != nil {
		return params, nil
	}
	b, err := p.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	p.Release(b)
	p.mu.Lock()
	params = p.params
	p.mu.Unlock()
	if params == nil {
		return nil, errors.New("no server parameters")
	}
	return params, nil
}

// Stats returns a snapshot.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := Stats{
		Database: p.opts.Database, User: p.opts.User,
		Idle: len(p.idle), Opening: p.opening, Waiting: p.waiters.Len(),
		Retired: copyCounts(p.retired), ConnectErrors: p.connErrs,
	}
	s.Active = len(p.all) - len(p.idle)
	for b := range p.all {
		if b.Pinned.Load() {
			s.Pinned++
		}
	}
	if p.waiters.Len() > 0 {
		s.MaxWait = time.Since(p.waiters.Front().since)
	}
	return s
}

// Tick retires idle backends past their deadline or idle timeout, samples
// the memory of idle backends that are due, and keeps min_idle warm. The
// proxy calls it periodically.
func (p *Pool) Tick(now time.Time) {
	p.mu.Lock()
	idleTimeout := p.opts.Pool.ServerIdleTimeout.D()
	minIdle := p.opts.Pool.MinIdle
	var victims, probe []*Backend
	var reasons []string
	kept := p.idle[:0]
	for _, b := range p.idle {
		switch {
		case b.RetireRequested.Load():
			r, _ := b.RetireReason.Load().(string)
			if r == "" {
				r = "admin"
			}
			victims, reasons = append(victims, b), append(reasons, r)
		// Idle first: a backend unused for server_idle_timeout is not
		// replaced, whatever its age.
		case idleTimeout > 0 && now.Sub(b.LastUsed) > idleTimeout && len(p.all)-len(victims) > minIdle:
			victims, reasons = append(victims, b), append(reasons, "idle")
		case !b.Deadline.IsZero() && now.After(b.Deadline) && p.reserveRetirementLocked():
			victims, reasons = append(victims, b), append(reasons, "lifetime")
		case p.opts.Recycle.MaxMemory > 0 && p.memSource != memOff && memorySampleDue(b, now, p.opts.Recycle.MemoryCheckInterval.D()):
			probe = append(probe, b)
			b.InUse.Store(true)
		default:
			kept = append(kept, b)
		}
	}
	for i := len(kept); i < len(p.idle); i++ {
		p.idle[i] = nil
	}
	p.idle = kept
	p.mu.Unlock()
	for i, b := range victims {
		if reasons[i] == "idle" {
			p.destroy(b, reasons[i], true)
		} else {
			p.retire(b, reasons[i])
		}
	}
	for _, b := range probe {
		b.InUse.Store(false)
		if p.checkMemory(b) {
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			p.destroy(b, "shutdown", true)
			continue
		}
		p.handOffLocked(b)
		p.mu.Unlock()
	}
	p.mu.Lock()
	p.spawnOpenersLocked() // the reserve, once the oldest waiter has waited long enough
	for p.served && len(p.idle)+p.opening < minIdle && len(p.all)+p.opening < p.opts.Pool.Size && !p.closed && !now.Before(p.keepClosedUntil) {
		if !p.replaceLocked(false, time.Time{}) {
			break
		}
	}
	p.mu.Unlock()
}

func (p *Pool) retiringShare() float64 {
	if s := p.opts.Recycle.MaxRetiringShare; s > 0 {
		return s
	}
	return 0.5
}

func memorySampleDue(b *Backend, now time.Time, interval time.Duration) bool {
	_, at := b.Memory()
	return at.IsZero() || now.Sub(at) >= interval
}

func memSourceFor(rc config.Recycle) string {
	if rc.MemorySource == memProc {
		return memProc
	}
	return memContexts
}

// Close closes idle backends, fails waiters and waits for connects to end.
// Backends in use are closed when released.
func (p *Pool) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.wg.Wait()
		return
	}
	p.closed = true
	p.setStarvedLocked(nil)
	idle := p.idle
	p.idle = nil
	p.waiters.Drain(func(w *waiter) { w.ch <- result{err: ErrClosed} })
	p.mu.Unlock()
	p.cancel()
	for _, b := range idle {
		p.destroy(b, "shutdown", true)
	}
	p.wg.Wait()
}

func copyCounts(m map[string]int64) map[string]int64 {
	c := make(map[string]int64, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// String names the pool in logs.
func (p *Pool) String() string { return fmt.Sprintf("%s/%s", p.opts.Database, p.opts.User) }
