package proxy

import (
	"syscall"
	"time"

	"github.com/pgrecycle/pgrecycle/pool"
)

// A client that keeps its backend between transactions (pin.go) often
// does so for a LISTEN: its notifications arrive while it idles, and
// nothing reads the backend then. Rather than look every few milliseconds,
// the client goroutine has the park set's watcher (park.go) watch the
// backend's socket while it waits for the client, and wake it when the
// server sends something. Where that cannot be done (no watcher, a TLS
// backend) it looks every pinnedWatchInterval instead.

// backendWatchBit marks the watch tokens of pinned backends; parked
// clients' tokens never have it.
const backendWatchBit = 1 << 63

// watchedBackend is the socket of a watched pinned backend, and which
// backend it is.
type watchedBackend struct {
	rc      syscall.RawConn
	backend uint64 // pool.Backend.ID
}

// backendWatchToken is the session's token for its backend's watch.
func (s *session) backendWatchToken() uint64 { return s.id | backendWatchBit }

// watchPinnedBackend arms a one-shot report of b's socket for the idle
// wait about to start; false when it cannot be watched.
func (s *session) watchPinnedBackend(b *pool.Backend) bool {
	p := s.srv.parked
	if p == nil {
		return false
	}
	tok := s.backendWatchToken()
	if s.backendWatched {
		p.mu.Lock()
		w := p.backendRC[tok]
		p.mu.Unlock()
		if w.backend == b.ID && w.rc != nil {
			return p.w.Watch(w.rc, tok) == nil // re-arm: the last report used it up
		}
		s.unwatchPinnedBackend() // another backend since (pipelined transactions)
	}
	sc, ok := b.Conn.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	p.mu.Lock()
	p.byTok[tok] = s
	p.backendRC[tok] = watchedBackend{rc: rc, backend: b.ID}
	p.mu.Unlock()
	s.backendWatched = true
	if err := p.w.Watch(rc, tok); err != nil {
		s.unwatchPinnedBackend()
		return false
	}
	return true
}

// unwatchPinnedBackend ends the watch: the client is active again, or no
// longer keeps that backend.
func (s *session) unwatchPinnedBackend() {
	if !s.backendWatched {
		return
	}
	s.backendWatched = false
	p := s.srv.parked
	tok := s.backendWatchToken()
	p.mu.Lock()
	w := p.backendRC[tok]
	delete(p.backendRC, tok)
	delete(p.byTok, tok)
	p.mu.Unlock()
	if w.rc != nil {
		p.w.Unwatch(w.rc)
	}
}

// wakeForBackend cuts the client goroutine's wait for its client, which
// then relays what the backend sent (onIdleDeadline, checkIdleBackend).
// A wake that comes after the wait ended is overridden by the next wait's
// deadline, or is seen as an idle check with nothing to relay.
func (s *session) wakeForBackend() {
	_ = s.raw.SetReadDeadline(time.Now())
}
