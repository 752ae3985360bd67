package proxy

import (
	"slices"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/pgrecycle/pgrecycle/sockio"
	"github.com/pgrecycle/pgrecycle/wire"
)

// errParked ends a session goroutine without ending the session: the
// client waits in the park set and a new goroutine resumes it.
type parkedSignal struct{}

func (parkedSignal) Error() string { return "session parked" }

var errParked error = parkedSignal{}

// parkSet holds idle clients without a goroutine each. A goroutine blocked
// in a read keeps a stack of 2-8 KiB; ten thousand mostly idle clients are
// the normal case for a pooler, so a client that has waited at the top of
// its loop (no backend attached, nothing buffered) for listen.client_park_after
// hands its socket to one epoll set and its goroutine exits. The first byte,
// a hang-up, a poke (shutdown, pause) or its idle timeout resumes it on a
// fresh goroutine.
type parkSet struct {
	w   *sockio.Watcher
	log *zap.Logger

	mu    sync.Mutex
	byTok map[uint64]*session
	next  uint64
	// backendRC: the sockets of pinned backends watched for their idle
	// clients (pinwatch.go), by token.
	backendRC map[uint64]watchedBackend

	readers sync.Pool // *wire.Reader, empty, of parked clients
}

// reader returns an empty client reader for a resumed session.
func (p *parkSet) reader(s *session) *wire.Reader {
	if r, ok := p.readers.Get().(*wire.Reader); ok && r.Reset(clientReader{s}) {
		return r
	}
	return wire.NewPooledReader(clientReader{s}, s.srv.bufs)
}

func newParkSet(log *zap.Logger) *parkSet {
	w, err := sockio.NewWatcher()
	if err != nil {
		log.Info("idle clients will not be parked", zap.Error(err))
		return nil
	}
	return &parkSet{w: w, log: log, byTok: make(map[uint64]*session), backendRC: make(map[uint64]watchedBackend)}
}

// size is the number of parked clients.
func (p *parkSet) size() int {
	if p == nil {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.byTok) - len(p.backendRC)
}

// add registers s under a fresh token and watches its socket; the caller
// holds s.mu, so a report arriving at once waits for the park to finish.
func (p *parkSet) add(s *session, rc syscall.RawConn) (uint64, error) {
	p.mu.Lock()
	p.next++
	tok := p.next &^ backendWatchBit
	p.byTok[tok] = s
	p.mu.Unlock()
	if err := p.w.Watch(rc, tok); err != nil {
		p.mu.Lock()
		delete(p.byTok, tok)
		p.mu.Unlock()
		return 0, err
	}
	return tok, nil
}

func (p *parkSet) remove(tok uint64, rc syscall.RawConn) {
	p.w.Unwatch(rc)
	p.mu.Lock()
	delete(p.byTok, tok)
	p.mu.Unlock()
}

// runParkSet delivers readiness reports and, every sweep, asks long-idle clients
// to park and wakes parked ones whose idle timeout is due. It returns when
// the watcher is closed.
func (srv *Server) runParkSet(sweep time.Duration) {
	defer srv.wg.Done()
	p := srv.parked
	ready := func(tok uint64) {
		p.mu.Lock()
		s := p.byTok[tok]
		p.mu.Unlock()
		switch {
		case s == nil:
		case tok&backendWatchBit != 0:
			s.wakeForBackend()
		default:
			s.unpark()
		}
	}
	next := time.Now().Add(sweep)
	for {
		closed, err := p.w.Wait(time.Until(next), ready)
		if closed {
			return
		}
		if err != nil {
			p.log.Warn("idle client watcher failed", zap.Error(err))
			time.Sleep(100 * time.Millisecond)
		}
		if now := time.Now(); !now.Before(next) {
			srv.sweepIdle(now)
			if d := srv.Config().Listen.ClientParkAfter.D(); d > 0 {
				sweep = parkSweep(d)
			}
			next = now.Add(sweep)
		}
	}
}

// parkSweep is how often idle clients are examined: twice per park delay,
// so a client parks after between 1 and 1.5 times the delay of idleness.
func parkSweep(after time.Duration) time.Duration { return max(after/2, 10*time.Millisecond) }

// sweepIdle asks clients idle for client_park_after to park, and wakes
// parked clients whose client_idle_timeout (or a drain) needs their
// goroutine.
func (srv *Server) sweepIdle(now time.Time) {
	parkAfter := srv.Config().Listen.ClientParkAfter.D()
	for _, s := range srv.sessionList() {
		if s.isParked() {
			if s.parkedTimeoutDue(now) || srv.draining.Load() {
				s.unpark()
			}
			continue
		}
		if parkAfter <= 0 || !s.idleWaiting.Load() {
			continue
		}
		// The same wait seen at two more sweeps: idle for at least two
		// sweep intervals (parkAfter), at most three.
		epoch := s.idleEpoch.Load()
		if epoch != s.sweepSeen {
			s.sweepSeen, s.sweepIdle = epoch, 0
			continue
		}
		if s.sweepIdle++; s.sweepIdle < 2 {
			continue
		}
		s.sweepIdle = 0 // if it can't park after all, ask again only after as long
		s.parkAsked.Store(true)
		_ = s.raw.SetReadDeadline(now)
	}
}

// sessionList copies the session set, so per-session work (locks, system
// calls) runs without the server lock.
func (srv *Server) sessionList() []*session {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	out := make([]*session, 0, len(srv.sessions))
	for s := range srv.sessions {
		out = append(out, s)
	}
	return out
}

// ParkedClients reports how many idle clients wait without a goroutine.
func (srv *Server) ParkedClients() int { return srv.parked.size() }

// WatchedPinnedBackends reports how many clients idle on a backend they
// keep wait for it to speak through the watcher (pinwatch.go).
func (srv *Server) WatchedPinnedBackends() int {
	p := srv.parked
	if p == nil {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.backendRC)
}

// tryPark parks the session if it may: plaintext socket, no backend, nothing
// buffered, the server running. On true the calling goroutine must return
// without touching the session again.
func (s *session) tryPark() bool {
	p := s.srv.parked
	if p == nil || s.tls || s.admin || s.srv.ctx.Err() != nil || s.srv.draining.Load() ||
		s.cr.Buffered() != 0 || s.cw.Buffered() != 0 {
		return false
	}
	s.unwatchPinnedBackend()
	sc, ok := s.conn.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	// Idle clients hold no buffers: hand back what the reader and writer
	// borrowed before the goroutine goes.
	s.cw.Reset()
	s.cr.Release()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.backend != nil {
		return false
	}
	tok, err := p.add(s, rc)
	if err != nil {
		s.log.Debug("parking failed", zap.Error(err))
		return false
	}
	// The reader, with its inline buffer, is shared among parked clients;
	// the goroutine that resumes this one takes one from the pool.
	p.readers.Put(s.cr)
	s.cr = nil
	// The text of its unnamed statement stays, trimmed to size: a client
	// may bind it after any pause (PHP's pg_prepare and pg_execute of "").
	if cap(s.unnamedTail) > len(s.unnamedTail) {
		s.unnamedTail = slices.Clone(s.unnamedTail)
	}
	s.parkTok = tok
	s.parkRC = rc
	s.parkedFlag.Store(true)
	return true
}

// unpark resumes a parked session on a new goroutine; false if it was not
// parked (its goroutine is running, or another unpark won).
func (s *session) unpark() bool {
	s.mu.Lock()
	tok, rc := s.parkTok, s.parkRC
	if tok == 0 {
		s.mu.Unlock()
		return false
	}
	s.parkTok, s.parkRC = 0, nil
	s.parkedFlag.Store(false)
	s.mu.Unlock()
	s.srv.parked.remove(tok, rc)
	s.resumed = true
	go s.serve()
	return true
}

func (s *session) isParked() bool { return s.parkedFlag.Load() }

// parkedTimeoutDue reports whether a parked session's client_idle_timeout
// has passed: no read deadline fires without a goroutine waiting, so the
// sweep resumes it and the resumed read times out at once.
func (s *session) parkedTimeoutDue(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.parkTok != 0 && s.idleLimit > 0 && now.Sub(s.idleSince) >= s.idleLimit
}
