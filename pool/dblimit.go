package pool

import (
	"sync"
	"sync/atomic"
)

// DBLimiter caps the backends of all pools of one database
// (max_db_connections). Pools take a slot before they connect and give it
// back when a backend closes; a pool that found no slot is woken when one
// frees, and idle backends of the database's other pools are closed to
// make room for waiting clients.
type DBLimiter struct {
	mu    sync.Mutex
	max   int // 0 = unlimited
	used  int
	pools []*Pool
	// starved counts the pools whose waiters found no slot.
	starved atomic.Int32
}

func (l *DBLimiter) setStarved(starved bool) {
	if starved {
		l.starved.Add(1)
	} else {
		l.starved.Add(-1)
	}
}

// othersStarved reports whether a pool of the database other than p has
// clients waiting for a slot. p's lock is held.
func (l *DBLimiter) othersStarved(p *Pool) bool {
	if l == nil {
		return false
	}
	n := l.starved.Load()
	if p.starved {
		n--
	}
	return n > 0
}

// NewDBLimiter returns a limiter of max backends (0: unlimited).
func NewDBLimiter(max int) *DBLimiter { return &DBLimiter{max: max} }

// SetMax changes the limit (reload).
func (l *DBLimiter) SetMax(max int) {
	l.mu.Lock()
	l.max = max
	l.mu.Unlock()
	l.wake(nil)
}

func (l *DBLimiter) register(p *Pool) {
	l.mu.Lock()
	l.pools = append(l.pools, p)
	l.mu.Unlock()
}

func (l *DBLimiter) take() bool {
	if l == nil {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.max > 0 && l.used >= l.max {
		return false
	}
	l.used++
	return true
}

// give returns a slot and lets starved pools use it.
func (l *DBLimiter) give(from *Pool) {
	if l == nil {
		return
	}
	l.mu.Lock()
	l.used--
	l.mu.Unlock()
	l.wake(from)
}

func (l *DBLimiter) wake(except *Pool) {
	l.mu.Lock()
	pools := append([]*Pool(nil), l.pools...)
	l.mu.Unlock()
	for _, p := range pools {
		if p != except {
			p.kick()
		}
	}
	if except != nil {
		except.kick()
	}
}

// reclaim closes one idle backend of another pool of the database, for a
// pool whose clients wait for a slot.
func (l *DBLimiter) reclaim(starved *Pool) {
	l.mu.Lock()
	pools := append([]*Pool(nil), l.pools...)
	l.mu.Unlock()
	for _, p := range pools {
		if p != starved && p.closeOneIdle() {
			return
		}
	}
}

// kick starts connects for waiters, if any can start now.
func (p *Pool) kick() {
	p.mu.Lock()
	p.spawnOpenersLocked()
	p.mu.Unlock()
}

// closeOneIdle closes the least recently used idle backend, if any.
func (p *Pool) closeOneIdle() bool {
	p.mu.Lock()
	if len(p.idle) == 0 {
		p.mu.Unlock()
		return false
	}
	b := p.idle[0]
	copy(p.idle, p.idle[1:])
	p.idle[len(p.idle)-1] = nil
	p.idle = p.idle[:len(p.idle)-1]
	p.mu.Unlock()
	p.destroy(b, "max_db_connections", true)
	return true
}
