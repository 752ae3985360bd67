package proxy

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/pgrecycle/pgrecycle/pool"
	"github.com/pgrecycle/pgrecycle/wire"
)

// cancelKey is the BackendKeyData the proxy hands a client in place of a
// real backend's, so a cancel can be routed to whichever backend the client
// uses at that moment.
type cancelKey struct {
	pid    uint32
	secret [4]byte
}

// cancelRegistry maps proxy-issued keys to live sessions. The secret is
// kept beside the session, so a lookup racing a login never reads a
// session's fields while they are being written.
type cancelRegistry struct {
	mu       sync.Mutex
	sessions map[uint32]registeredKey
	// delivering holds the sessions a cancel is being delivered for, and
	// whether another arrived for it meanwhile (coalesce).
	delivering map[*session]bool
	// waits holds how to end the waits that have no pool waiter to
	// interrupt (a database paused): rare, so kept here rather than in
	// every session.
	waits map[*session]context.CancelFunc
}

type registeredKey struct {
	s      *session
	secret [4]byte
}

func newCancelRegistry() *cancelRegistry {
	return &cancelRegistry{sessions: make(map[uint32]registeredKey), delivering: make(map[*session]bool),
		waits: make(map[*session]context.CancelFunc)}
}

// holdWait records how a cancel ends s's wait until dropWait.
func (r *cancelRegistry) holdWait(s *session, cancel context.CancelFunc) {
	r.mu.Lock()
	r.waits[s] = cancel
	r.mu.Unlock()
}

func (r *cancelRegistry) dropWait(s *session) {
	r.mu.Lock()
	delete(r.waits, s)
	r.mu.Unlock()
}

// cancelWait ends s's held wait, if any.
func (r *cancelRegistry) cancelWait(s *session) {
	r.mu.Lock()
	cancel := r.waits[s]
	r.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// register issues a fresh unique key for s and stores it in s.key while
// holding the lock that readers of the registry take.
func (r *cancelRegistry) register(s *session) cancelKey {
	var k cancelKey
	var b [8]byte
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		_, _ = rand.Read(b[:])
		k.pid = binary.BigEndian.Uint32(b[:4]) & 0x7fffffff
		copy(k.secret[:], b[4:])
		if _, taken := r.sessions[k.pid]; k.pid != 0 && !taken {
			r.sessions[k.pid] = registeredKey{s: s, secret: k.secret}
			s.key = k
			return k
		}
	}
}

func (r *cancelRegistry) unregister(k cancelKey) {
	r.mu.Lock()
	delete(r.sessions, k.pid)
	r.mu.Unlock()
}

// lookup finds the session for a key, comparing secrets in constant time.
func (r *cancelRegistry) lookup(pid uint32, secret []byte) *session {
	r.mu.Lock()
	e, ok := r.sessions[pid]
	r.mu.Unlock()
	if !ok {
		return nil
	}
	if subtle.ConstantTimeCompare(secret, e.secret[:]) != 1 {
		return nil
	}
	return e.s
}

// coalesce reports whether a cancel for s should be delivered now: false
// when one is being delivered, which then delivers once more when done.
// A burst of cancels for one query (a driver's retries, a client gone
// wild) costs PostgreSQL two, not one connection each, and never queues
// behind the session's lock.
func (r *cancelRegistry) coalesce(s *session) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, busy := r.delivering[s]; busy {
		r.delivering[s] = true
		return false
	}
	r.delivering[s] = false
	return true
}

// delivered ends a delivery for s; true when another cancel arrived
// during it, to be delivered now.
func (r *cancelRegistry) delivered(s *session) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.delivering[s] {
		r.delivering[s] = false
		return true
	}
	delete(r.delivering, s)
	return false
}

// handleCancel forwards a client's CancelRequest to the backend its session
// is using.
func (srv *Server) handleCancel(pid uint32, secret []byte) {
	s := srv.cancels.lookup(pid, secret)
	if s == nil {
		srv.ops.metrics.cancels.WithLabelValues("unknown").Inc()
		srv.log.Debug("cancel request for unknown key")
		return
	}
	srv.cancelSession(s)
}

// cancelSession cancels what s runs or waits for, coalescing a burst.
func (srv *Server) cancelSession(s *session) {
	if !srv.cancels.coalesce(s) {
		srv.ops.metrics.cancels.WithLabelValues("coalesced").Inc()
		return
	}
	for {
		srv.deliverCancel(s)
		if !srv.cancels.delivered(s) {
			return
		}
	}
}

// deliverCancel cancels what s runs now: its query on a backend, or its
// wait for one. The backend is held for the cancel (HoldForCancel) rather
// than the session locked: it can't go to another client before the cancel
// is delivered (in transaction pooling its client keeps it meanwhile), and
// the session's replies flow, however slowly the server takes the cancel.
func (srv *Server) deliverCancel(s *session) {
	s.mu.Lock()
	b := s.backend
	if b == nil {
		// Not on a backend yet: the query waits for one, and the cancel
		// ends that wait, as PostgreSQL would end the query.
		s.interruptWaitLocked()
		s.mu.Unlock()
		srv.ops.metrics.cancels.WithLabelValues("wait").Inc()
		return
	}
	b.HoldForCancel()
	s.mu.Unlock()
	srv.ops.metrics.cancels.WithLabelValues("forwarded").Inc()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if err := b.Pool().Cancel(ctx, b); err != nil {
		s.log.Warn("cancel request failed", zap.Error(err))
	}
	cancel()
	b.CancelDone()
	s.releaseAfterCancel(b)
}

// interruptWaitLocked ends the session's wait for a backend, if it waits:
// in the pool's queue, or for a RESUME. Callers hold s.mu.
func (s *session) interruptWaitLocked() {
	if s.waitingOn != nil {
		s.pool.Interrupt(s.waitingOn)
	} else {
		s.srv.cancels.cancelWait(s)
	}
}

// ownNotification gives a NotificationResponse that b's own session sent
// (a client notifying a channel it listens on) the process ID the client
// knows, its cancel key's, rather than the backend's: clients tell their
// own notifications apart by comparing the two (libpq's PQbackendPID,
// asyncpg's get_server_pid). msg is rewritten in place.
func (s *session) ownNotification(b *pool.Backend, msg []byte) {
	if len(msg) >= wire.HeaderLen+4 && binary.BigEndian.Uint32(msg[wire.HeaderLen:]) == b.PID {
		binary.BigEndian.PutUint32(msg[wire.HeaderLen:], s.key.pid)
	}
}
