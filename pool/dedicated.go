package pool

import "context"

// OpenDedicated opens a backend that never joins the pool, for one client
// that keeps it for its whole session: a replication connection, whose
// walsender can serve nobody else. It logs in as the pool's backends do,
// with extra added to their startup parameters. It takes no pool slot and
// counts against no limiter: PostgreSQL's max_wal_senders bounds these,
// and a standby must not wait behind application traffic, nor starve it.
// Close it with CloseDedicated; Cancel reaches it as any backend.
func (p *Pool) OpenDedicated(ctx context.Context, extra map[string]string) (*Backend, error) {
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	return p.connectWith(ctx, extra)
}

// CloseDedicated closes a backend OpenDedicated opened: its client is gone
// or has been told why it must go.
func (p *Pool) CloseDedicated(b *Backend) { b.close(false) }
