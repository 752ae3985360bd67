package pool

import (
	"cmp"
	"slices"
	"time"
)

// Read-only snapshots of pool internals for the admin console and metrics,
// plus the admin's RECYCLE. Everything here takes p.mu briefly and copies;
// nothing is on the hot path.

// BackendInfo describes one open backend at the time of a snapshot.
type BackendInfo struct {
	ID           uint64
	PID          uint32
	InUse        bool
	Created      time.Time
	Deadline     time.Time // zero: no lifetime limit
	Queries      int64
	Transactions int64
	// MemoryBytes and MemoryAt are the last memory sample; MemoryAt is
	// zero when the backend was never sampled.
	MemoryBytes int64
	MemoryAt    time.Time
	// RetireRequested is set when the backend retires at its next release.
	RetireRequested bool
}

// State is "active" for a backend lent to a client (or being checked by
// the pool), "idle" otherwise.
func (bi BackendInfo) State() string {
	if bi.InUse {
		return "active"
	}
	return "idle"
}

// Key returns the (database, user) the pool serves.
func (p *Pool) Key() (database, user string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.opts.Database, p.opts.User
}

// Backends returns a snapshot of the pool's open backends (those being
// opened are counted by Stats().Opening, not listed), oldest first.
func (p *Pool) Backends() []BackendInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]BackendInfo, 0, len(p.all))
	for b := range p.all {
		bi := BackendInfo{
			ID:              b.ID,
			PID:             b.PID,
			InUse:           b.InUse.Load(),
			Created:         b.Created,
			Deadline:        b.Deadline,
			Queries:         b.Queries.Load(),
			Transactions:    b.Transactions.Load(),
			RetireRequested: b.RetireRequested.Load(),
		}
		bi.MemoryBytes, bi.MemoryAt = b.Memory()
		out = append(out, bi)
	}
	slices.SortFunc(out, func(a, b BackendInfo) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// RetireAll marks every open backend of the pool for retirement under
// reason: idle ones are closed now (and replaced ahead of demand), those
// in use retire when their client releases them. It returns how many
// backends were marked.
func (p *Pool) RetireAll(reason string) int {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return 0
	}
	n := 0
	for b := range p.all {
		if !b.RetireRequested.Load() {
			b.RetireReason.Store(reason)
			b.RetireRequested.Store(true)
		}
		n++
	}
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, b := range idle {
		r, _ := b.RetireReason.Load().(string)
		if r == "" {
			r = reason
		}
		p.retire(b, r)
	}
	return n
}
