package pool

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/pgrecycle/pgrecycle/config"
)

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
	MaxWait               time.Duration
	Retired               map[string]int64
	ConnectErrors         int64
}

// Pool holds up to Pool.Size backends for one (database, user).
type Pool struct {
	log *zap.Logger

	mu       sync.Mutex
	opts     Options
	connCfg  connectConfig
	idle     []*Backend // LIFO: the most recently used is reused first
	all      map[*Backend]struct{}
	waiters  []*waiter
	opening  int
	closed   bool
	params   map[string]string // ParameterStatus of the first backend
	nextID   uint64
	retired  map[string]int64
	connErrs int64

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
	return &Pool{
		log:     opts.Logger.With(zap.String("database", opts.Database), zap.String("user", opts.User)),
		opts:    opts,
		connCfg: cc,
		all:     make(map[*Backend]struct{}),
		retired: make(map[string]int64),
		ctx:     ctx,
		cancel:  cancel,
	}, nil
}

// Options returns the pool's current options.
func (p *Pool) Options() Options {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.opts
}

// Acquire returns an idle backend, waiting in FIFO order for one to be
// released or opened until ctx is done.
func (p *Pool) Acquire(ctx context.Context) (*Backend, error) {
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, ErrClosed
		}
		if n := len(p.idle); n > 0 && len(p.waiters) == 0 {
			b := p.idle[n-1]
			p.idle[n-1] = nil
			p.idle = p.idle[:n-1]
			b.InUse.Store(true)
			p.mu.Unlock()
			if reason := p.checkIdle(b); reason != "" {
				p.destroy(b, reason, true)
				continue
			}
			return b, nil
		}
		w := &waiter{ch: make(chan result, 1), since: time.Now()}
		p.waiters = append(p.waiters, w)
		p.spawnOpenersLocked()
		p.mu.Unlock()

		select {
		case r := <-w.ch:
			return r.b, r.err
		case <-ctx.Done():
			p.mu.Lock()
			removed := p.removeWaiterLocked(w)
			p.mu.Unlock()
			if !removed {
				// Handed over concurrently: give it back.
				if r := <-w.ch; r.b != nil {
					p.Release(r.b)
				}
			}
			return nil, ctx.Err()
		}
	}
}

func (p *Pool) removeWaiterLocked(w *waiter) bool {
	for i, x := range p.waiters {
		if x == w {
			copy(p.waiters[i:], p.waiters[i+1:])
			p.waiters[len(p.waiters)-1] = nil
			p.waiters = p.waiters[:len(p.waiters)-1]
			return true
		}
	}
	return false
}

// checkIdle decides whether an idle backend may be handed out; it returns
// the retirement reason otherwise.
func (p *Pool) checkIdle(b *Backend) string {
	if socketHasDataOrEOF(b.Conn) {
		return "closed"
	}
	now := time.Now()
	if !b.Deadline.IsZero() && now.After(b.Deadline) {
		return "lifetime"
	}
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

// Release returns a backend after use. Only a clean backend is kept.
func (p *Pool) Release(b *Backend) {
	b.InUse.Store(false)
	if b.Broken || b.TxStatus != 'I' || b.R.Buffered() > 0 || b.W.Buffered() > 0 {
		p.destroy(b, "error", false)
		return
	}
	if reason := p.retireReason(b); reason != "" {
		p.destroy(b, reason, true)
		return
	}
	b.LastUsed = time.Now()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.destroy(b, "shutdown", true)
		return
	}
	p.handOffLocked(b)
	p.mu.Unlock()
}

// handOffLocked gives b to the longest waiter, or parks it idle.
func (p *Pool) handOffLocked(b *Backend) {
	if len(p.waiters) > 0 {
		w := p.waiters[0]
		copy(p.waiters, p.waiters[1:])
		p.waiters[len(p.waiters)-1] = nil
		p.waiters = p.waiters[:len(p.waiters)-1]
		b.InUse.Store(true)
		w.ch <- result{b: b}
		return
	}
	p.idle = append(p.idle, b)
}

// retireReason applies the recycling policies at release.
func (p *Pool) retireReason(b *Backend) string {
	p.mu.Lock()
	rc := p.opts.Recycle
	p.mu.Unlock()
	if !b.Deadline.IsZero() && time.Now().After(b.Deadline) {
		return "lifetime"
	}
	if rc.MaxQueries > 0 && b.Queries.Load() >= rc.MaxQueries {
		return "queries"
	}
	if rc.MaxTransactions > 0 && b.Transactions.Load() >= rc.MaxTransactions {
		return "transactions"
	}
	return ""
}

// Destroy closes a backend the caller holds (for example one whose client
// vanished mid-transaction) and counts it under reason.
func (p *Pool) Destroy(b *Backend, reason string) {
	b.InUse.Store(false)
	p.destroy(b, reason, !b.Broken)
}

func (p *Pool) destroy(b *Backend, reason string, graceful bool) {
	b.close(graceful)
	p.mu.Lock()
	delete(p.all, b)
	p.retired[reason]++
	p.spawnOpenersLocked()
	p.mu.Unlock()
	p.log.Info("backend closed", zap.Uint32("pid", b.PID), zap.String("reason", reason),
		zap.Duration("age", time.Since(b.Created)), zap.Int64("queries", b.Queries.Load()),
		zap.Int64("transactions", b.Transactions.Load()))
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
	for len(p.waiters) > p.opening && len(p.all)+p.opening < p.opts.Pool.Size && p.opening < limit {
		p.opening++
		p.wg.Add(1)
		go p.open()
	}
}

// open connects one backend for the waiters, retrying with exponential
// backoff and jitter while anyone still waits.
func (p *Pool) open() {
	defer p.wg.Done()
	backoff := 50 * time.Millisecond
	for {
		b, err := p.connect(p.ctx)
		p.mu.Lock()
		p.opening--
		if err != nil {
			p.connErrs++
			if p.closed || len(p.waiters) == 0 {
				p.mu.Unlock()
				return
			}
			if isFatalConnectError(err) {
				p.log.Error("cannot connect to backend", zap.Error(err))
				for _, w := range p.waiters {
					w.ch <- result{err: err}
				}
				p.waiters = nil
				p.mu.Unlock()
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
			return
		}
		p.nextID++
		b.ID = p.nextID
		b.pool = p
		p.all[b] = struct{}{}
		if p.params == nil {
			p.params = copyMap(b.Params)
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
		Idle: len(p.idle), Opening: p.opening, Waiting: len(p.waiters),
		Retired: copyCounts(p.retired), ConnectErrors: p.connErrs,
	}
	s.Active = len(p.all) - len(p.idle)
	if len(p.waiters) > 0 {
		s.MaxWait = time.Since(p.waiters[0].since)
	}
	return s
}

// Tick retires idle backends past their deadline or idle timeout. The
// proxy calls it periodically.
func (p *Pool) Tick(now time.Time) {
	p.mu.Lock()
	idleTimeout := p.opts.Pool.ServerIdleTimeout.D()
	var victims []*Backend
	var reasons []string
	kept := p.idle[:0]
	for _, b := range p.idle {
		switch {
		case !b.Deadline.IsZero() && now.After(b.Deadline):
			victims, reasons = append(victims, b), append(reasons, "lifetime")
		case idleTimeout > 0 && now.Sub(b.LastUsed) > idleTimeout:
			victims, reasons = append(victims, b), append(reasons, "idle")
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
		p.destroy(b, reasons[i], true)
	}
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
	idle := p.idle
	p.idle = nil
	for _, w := range p.waiters {
		w.ch <- result{err: ErrClosed}
	}
	p.waiters = nil
	p.mu.Unlock()
	p.cancel()
	for _, b := range idle {
		p.destroy(b, "shutdown", true)
	}
	p.wg.Wait()
}

func copyMap(m map[string]string) map[string]string {
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
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
