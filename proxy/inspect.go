package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgrecycle/pgrecycle/pool"
)

// This file holds what the admin console and the metrics read about the
// Server (snapshots of sessions and pools, totals of ended sessions) and
// the operator actions (PAUSE, RESUME, RECYCLE, SHUTDOWN). Nothing here is
// on the per-message path; the hooks the session calls per transaction
// (beginWait/endWait) cost two atomic stores and one histogram observation.

// opsState is the Server's operability state. initOps prepares it.
type opsState struct {
	started time.Time

	// mu guards the totals of ended sessions, the pause and disable sets. Lock order:
	// Server.cancels.mu before mu.
	mu    sync.Mutex
	ended map[poolLabels]*sessionTotals
	// pauseAll pauses every database; paused holds single ones. resumed
	// is closed (and replaced) at every RESUME to wake held sessions.
	pauseAll  bool
	paused    map[string]bool
	resumed   chan struct{}
	pausedAny atomic.Bool
	// disableAll and disabled hold the databases whose logins DISABLE
	// refuses.
	disableAll bool
	disabled   map[string]bool

	// waits maps *pool.Pool to its *poolWaits, created at first use.
	waits sync.Map

	metrics *metricsState

	// shutdownStarted is set when the admin SHUTDOWN goroutine starts.
	shutdownStarted atomic.Bool

	closeOnce sync.Once
	done      chan struct{} // closed when Close has finished
}

// poolLabels names a pool in statistics: the database clients use and the
// backend user.
type poolLabels struct{ database, user string }

// sessionTotals are a session's counters, or sums of them.
type sessionTotals struct {
	queries, transactions int64
	received, sent        int64 // client bytes
	xactNanos             int64 // time inside transactions, from first query to ReadyForQuery 'I'
	queryNanos            int64 // time of requests, from reaching the backend to ReadyForQuery
}

func (t *sessionTotals) add(o sessionTotals) {
	t.queries += o.queries
	t.xactNanos += o.xactNanos
	t.queryNanos += o.queryNanos
	t.transactions += o.transactions
	t.received += o.received
	t.sent += o.sent
}

// poolWaits accumulates the time a pool's clients waited for a backend.
type poolWaits struct {
	labels poolLabels
	obs    interface{ Observe(float64) }
	count  atomic.Int64
	nanos  atomic.Int64
}

// initOps prepares the operability state; New calls it.
func (srv *Server) initOps() {
	o := &srv.ops
	o.started = time.Now()
	o.ended = make(map[poolLabels]*sessionTotals)
	o.paused = make(map[string]bool)
	o.disabled = make(map[string]bool)
	o.done = make(chan struct{})
	o.metrics = newMetrics(srv)
}

// Done is closed when Close has finished, whoever called it (a signal
// handler, the admin SHUTDOWN command, a test).
func (srv *Server) Done() <-chan struct{} { return srv.ops.done }

// closeOps stops the metrics HTTP server and closes Done. Close calls it
// last, once everything else is closed.
//
// The admin SHUTDOWN goroutine is not waited for here: it is the one that
// calls Close (through Shutdown) unless another caller got there first, in
// which case Shutdown sees no session left and returns at once; either
// way it ends right after Close.
func (srv *Server) closeOps() {
	srv.ops.closeOnce.Do(func() {
		srv.stopMetrics()
		close(srv.ops.done)
	})
}

// byteCounts are a session's client traffic, for SHOW STATS and the byte
// counters: clientReader counts reads, sentCounter writes.
type byteCounts struct {
	received atomic.Int64
	sent     atomic.Int64
}

// sentCounter counts the bytes written to a session's client: one atomic
// add per write system call, not per message.
type sentCounter struct {
	w      io.Writer
	count  *byteCounts
	failed *atomic.Bool // set at the first failed write
}

func (c sentCounter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.count.sent.Add(int64(n))
	if err != nil {
		c.failed.Store(true)
	}
	return n, err
}

// clientBytes returns what the session received from and sent to its
// client (see byteCounts).
func (s *session) clientBytes() (received, sent int64) {
	return s.bytes.received.Load(), s.bytes.sent.Load()
}

func (s *session) totals() sessionTotals {
	t := sessionTotals{queries: s.queries.Load(), transactions: s.transactions.Load(),
		xactNanos: s.xactNanos.Load(), queryNanos: s.queryNanos.Load()}
	t.received, t.sent = s.clientBytes()
	return t
}

// sessionEnded unregisters a session that logged in (its cancel key) and
// adds its counters to the totals of ended sessions, in one critical
// section so that a scrape never counts it twice or not at all. run defers
// it once startup has succeeded.
func (srv *Server) sessionEnded(s *session) {
	var key poolLabels
	if s.pool != nil {
		key.database, key.user = s.pool.Key()
	}
	r := srv.cancels
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sessions[s.key.pid].s == s {
		delete(r.sessions, s.key.pid)
	}
	if s.admin || s.pool == nil {
		return
	}
	srv.ops.mu.Lock()
	t := srv.ops.ended[key]
	if t == nil {
		t = &sessionTotals{}
		srv.ops.ended[key] = t
	}
	t.add(s.totals())
	srv.ops.mu.Unlock()
}

// liveSessions returns the logged-in sessions (those holding a cancel key:
// their user, database and pool are set and no longer change) and a copy
// of the totals of ended sessions, taken together.
func (srv *Server) liveSessions() ([]*session, map[poolLabels]sessionTotals) {
	r := srv.cancels
	r.mu.Lock()
	defer r.mu.Unlock()
	live := make([]*session, 0, len(r.sessions))
	for _, e := range r.sessions {
		live = append(live, e.s)
	}
	srv.ops.mu.Lock()
	ended := make(map[poolLabels]sessionTotals, len(srv.ops.ended))
	for k, t := range srv.ops.ended {
		ended[k] = *t
	}
	srv.ops.mu.Unlock()
	return live, ended
}

// clientInfo is one logged-in client in a snapshot.
type clientInfo struct {
	admin         bool
	user          string
	database      string
	pool          *pool.Pool
	labels        poolLabels
	state         string // active | idle | waiting
	remote, local net.Addr
	connected     time.Time
	waitingSince  time.Time // zero when not waiting
	appName       string
	totals        sessionTotals
	serverPID     uint32 // 0: no backend attached
}

// sessionSnapshot describes every logged-in client and the counters of
// all sessions, live and ended, by pool. self, the admin session asking,
// shows as active.
type sessionSnapshot struct {
	clients []clientInfo
	totals  map[poolLabels]sessionTotals
}

func (srv *Server) snapshotSessions(self *session) sessionSnapshot {
	live, ended := srv.liveSessions()
	snap := sessionSnapshot{clients: make([]clientInfo, 0, len(live)), totals: ended}
	labels := make(map[*pool.Pool]poolLabels)
	for _, s := range live {
		ci := clientInfo{
			admin:     s.admin,
			user:      s.user,
			remote:    s.raw.RemoteAddr(),
			local:     s.raw.LocalAddr(),
			connected: s.started,
			appName:   s.appName,
			totals:    s.totals(),
			state:     "idle",
		}
		if s.admin {
			ci.database = "pgrecycle"
			if s == self {
				ci.state = "active"
			}
		} else {
			if s.db != nil {
				ci.database = s.db.Name
			}
			ci.pool = s.pool
			if s.pool != nil {
				l, ok := labels[s.pool]
				if !ok {
					l.database, l.user = s.pool.Key()
					labels[s.pool] = l
				}
				ci.labels = l
				t := snap.totals[l]
				t.add(ci.totals)
				snap.totals[l] = t
			}
			s.mu.Lock()
			if b := s.backend; b != nil {
				ci.state = "active"
				ci.serverPID = b.PID
			}
			if v, ok := s.want["application_name"]; ok {
				ci.appName = v
			}
			s.mu.Unlock()
			if ns := s.waitingSince.Load(); ns != 0 && ci.state != "active" {
				ci.state = "waiting"
				ci.waitingSince = time.Unix(0, ns)
			}
		}
		snap.clients = append(snap.clients, ci)
	}
	slices.SortFunc(snap.clients, func(a, b clientInfo) int { return a.connected.Compare(b.connected) })
	return snap
}

// beginWait marks the session as waiting for a backend and returns when
// the wait began; pass it to endWait once Acquire returns.
func (s *session) beginWait() time.Time {
	now := time.Now()
	s.waitingSince.Store(now.UnixNano())
	return now
}

// endWait clears the waiting mark and records the wait in SHOW STATS and
// the wait-time histogram.
func (s *session) endWait(start time.Time) {
	s.waitingSince.Store(0)
	s.srv.observeWait(s.pool, time.Since(start))
}

// waitsFor returns the wait accumulator of a pool, creating it.
func (srv *Server) waitsFor(p *pool.Pool) *poolWaits {
	if w, ok := srv.ops.waits.Load(p); ok {
		return w.(*poolWaits)
	}
	var l poolLabels
	l.database, l.user = p.Key()
	w := &poolWaits{labels: l, obs: srv.ops.metrics.wait.WithLabelValues(l.database, l.user)}
	actual, _ := srv.ops.waits.LoadOrStore(p, w)
	return actual.(*poolWaits)
}

// waitTotals sums the recorded waits by pool labels.
func (srv *Server) waitTotals() map[poolLabels]struct{ count, nanos int64 } {
	out := make(map[poolLabels]struct{ count, nanos int64 })
	srv.ops.waits.Range(func(_, v any) bool {
		w := v.(*poolWaits)
		t := out[w.labels]
		t.count += w.count.Load()
		t.nanos += w.nanos.Load()
		out[w.labels] = t
		return true
	})
	return out
}

// sortedPools returns the pools ordered by database and user.
func (srv *Server) sortedPools() []*pool.Pool {
	ps := srv.poolList()
	keys := make(map[*pool.Pool]poolLabels, len(ps))
	for _, p := range ps {
		var l poolLabels
		l.database, l.user = p.Key()
		keys[p] = l
	}
	slices.SortFunc(ps, func(a, b *pool.Pool) int {
		ka, kb := keys[a], keys[b]
		if ka.database != kb.database {
			if ka.database < kb.database {
				return -1
			}
			return 1
		}
		if ka.user < kb.user {
			return -1
		}
		if ka.user > kb.user {
			return 1
		}
		return 0
	})
	return ps
}

// errUnknownDatabase refuses an admin command naming no configured database.
type errUnknownDatabase string

func (e errUnknownDatabase) Error() string {
	return fmt.Sprintf("database %q does not exist in pgrecycle's configuration", string(e))
}

func (srv *Server) checkDatabase(db string) error {
	if db == "" {
		return nil
	}
	if srv.Config().Database(db) == nil {
		return errUnknownDatabase(db)
	}
	return nil
}

// Pause holds new transactions of database db ("" = every database):
// clients wait (waitResumed) until Resume. Transactions already running
// finish; see waitPaused.
func (srv *Server) Pause(db string) error {
	if err := srv.checkDatabase(db); err != nil {
		return err
	}
	o := &srv.ops
	o.mu.Lock()
	defer o.mu.Unlock()
	if db == "" {
		o.pauseAll = true
	} else {
		o.paused[db] = true
	}
	if o.resumed == nil {
		o.resumed = make(chan struct{})
	}
	o.pausedAny.Store(true)
	return nil
}

// Resume lets the held clients of db ("" = every database) go on.
func (srv *Server) Resume(db string) error {
	o := &srv.ops
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case db == "":
		o.pauseAll = false
		clear(o.paused)
	case o.pauseAll:
		return errors.New("every database is paused: use RESUME without a database")
	case !o.paused[db]:
		if err := srv.checkDatabase(db); err != nil {
			return err
		}
		return fmt.Errorf("database %q is not paused", db)
	default:
		delete(o.paused, db)
	}
	if o.resumed != nil {
		close(o.resumed)
		o.resumed = nil
	}
	if o.pauseAll || len(o.paused) > 0 {
		o.resumed = make(chan struct{})
	} else {
		o.pausedAny.Store(false)
	}
	return nil
}

// Paused reports whether database db is paused.
func (srv *Server) Paused(db string) bool {
	if !srv.ops.pausedAny.Load() {
		return false
	}
	srv.ops.mu.Lock()
	defer srv.ops.mu.Unlock()
	return srv.ops.pauseAll || srv.ops.paused[db]
}

// waitResumed blocks while database db is paused, until RESUME or ctx is
// done (then it returns ctx.Err()). It costs one atomic load when nothing
// is paused. Sessions call it before acquiring a backend for a new
// transaction.
func (srv *Server) waitResumed(ctx context.Context, db string) error {
	o := &srv.ops
	for o.pausedAny.Load() {
		o.mu.Lock()
		if !o.pauseAll && !o.paused[db] {
			o.mu.Unlock()
			return nil
		}
		ch := o.resumed
		o.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// waitPaused waits until no backend of db's pools ("" = all pools) is in
// use, as PAUSE does before answering, or until ctx is done or db is
// resumed meanwhile.
func (srv *Server) waitPaused(ctx context.Context, db string) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		busy := 0
		for _, p := range srv.poolList() {
			if d, _ := p.Key(); db == "" || d == db {
				busy += p.Stats().Active
			}
		}
		if busy == 0 {
			return nil
		}
		if db != "" && !srv.Paused(db) || db == "" && !srv.pausedAll() {
			return errors.New("resumed while pausing")
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (srv *Server) pausedAll() bool {
	srv.ops.mu.Lock()
	defer srv.ops.mu.Unlock()
	return srv.ops.pauseAll
}

// Recycle retires every backend of database db ("" = all) gracefully:
// idle ones now, busy ones at their release. It returns how many backends
// were marked.
func (srv *Server) Recycle(db string) (int, error) {
	if err := srv.checkDatabase(db); err != nil {
		return 0, err
	}
	n := 0
	for _, p := range srv.poolList() {
		if d, _ := p.Key(); db == "" || d == db {
			n += p.RetireAll("admin")
		}
	}
	return n, nil
}

// startShutdown begins a graceful shutdown (Shutdown) on a goroutine of
// its own, for the admin SHUTDOWN command: the admin session can't run it
// itself, since Shutdown waits for every session, its own included. Done
// tells when it has finished.
func (srv *Server) startShutdown() {
	if !srv.ops.shutdownStarted.CompareAndSwap(false, true) {
		return
	}
	srv.draining.Store(true) // /healthz turns 503 at once
	go srv.Shutdown()
}
