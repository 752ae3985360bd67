package pool

import (
	"sync"
	"sync/atomic"
)

// Limiter caps the backends of a group of pools: all pools of one
// database (max_db_connections) or of one backend user
// (max_user_connections). Pools take a slot of each of their limiters
// before they connect and give it back when a backend closes; a pool that
// found no slot is woken when one frees, and idle backends of the group's
// other pools are closed to make room for waiting clients.
type Limiter struct {
	setting string // the configuration key, the reason of what it closes
	mu      sync.Mutex
	max     int // 0 = unlimited
	used    int
	pools   []*Pool
	// starved counts the pools whose waiters found no slot.
	starved atomic.Int32
}

func (l *Limiter) setStarved(starved bool) {
	if starved {
		l.starved.Add(1)
	} else {
		l.starved.Add(-1)
	}
}

// othersStarved reports whether a pool of the group other than p has
// clients waiting for a slot. p's lock is held.
func (l *Limiter) othersStarved(p *Pool) bool {
	n := l.starved.Load()
	if p.starvedOn == l {
		n--
	}
	return n > 0
}

// NewLimiter returns a limiter of max backends (0: unlimited); setting is
// the configuration key that sets max.
func NewLimiter(setting string, max int) *Limiter { return &Limiter{setting: setting, max: max} }

// Usage returns the limit (0: none) and the slots in use.
func (l *Limiter) Usage() (max, used int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.max, l.used
}

// SetMax changes the limit (reload).
func (l *Limiter) SetMax(max int) {
	l.mu.Lock()
	l.max = max
	l.mu.Unlock()
	l.wake(nil)
}

func (l *Limiter) register(p *Pool) {
	l.mu.Lock()
	l.pools = append(l.pools, p)
	l.mu.Unlock()
}

func (l *Limiter) take() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.max > 0 && l.used >= l.max {
		return false
	}
	l.used++
	return true
}

// untake returns a slot just taken, before anyone could miss it.
func (l *Limiter) untake() {
	l.mu.Lock()
	l.used--
	l.mu.Unlock()
}

// give returns a slot and lets starved pools use it.
func (l *Limiter) give(from *Pool) {
	l.mu.Lock()
	l.used--
	l.mu.Unlock()
	l.wake(from)
}

func (l *Limiter) wake(except *Pool) {
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

// reclaim closes one idle backend of another pool of the group, for a
// pool whose clients wait for a slot.
func (l *Limiter) reclaim(starved *Pool) {
	l.mu.Lock()
	pools := append([]*Pool(nil), l.pools...)
	l.mu.Unlock()
	for _, p := range pools {
		if p != starved && p.closeOneIdle(l.setting) {
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
func (p *Pool) closeOneIdle(reason string) bool {
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
	p.destroy(b, reason, true)
	return true
}

// takeSlot takes a slot of each of the pool's limiters. When one refuses,
// the slots taken are given back and the refusing limiter returned.
func (p *Pool) takeSlot() *Limiter {
	for i, l := range p.opts.Limits {
		if !l.take() {
			for _, t := range p.opts.Limits[:i] {
				t.untake()
			}
			return l
		}
	}
	return nil
}

// giveSlot gives back a backend's slot of each limiter.
func (p *Pool) giveSlot() {
	for _, l := range p.opts.Limits {
		l.give(p)
	}
}

// starvedNeighbourLocked returns a limiter under which another pool has
// clients waiting for a slot, or nil.
func (p *Pool) starvedNeighbourLocked() *Limiter {
	for _, l := range p.opts.Limits {
		if l.othersStarved(p) {
			return l
		}
	}
	return nil
}

// setStarvedLocked records which limiter, if any, leaves this pool's
// waiters without a slot.
func (p *Pool) setStarvedLocked(on *Limiter) {
	if p.starvedOn == on {
		return
	}
	if p.starvedOn != nil {
		p.starvedOn.setStarved(false)
	}
	p.starvedOn = on
	if on != nil {
		on.setStarved(true)
	}
}
