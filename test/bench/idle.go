package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// idleClients holds authenticated client connections open without using
// them: the "10,000 idle connections" of the many-clients scenario. Each
// one completes the full SCRAM login and waits at ReadyForQuery.
type idleClients struct {
	conns []*pgconn.PgConn
}

// openIdle opens n connections to the proxy at port, parallel times at
// once.
func (e *env) openIdle(ctx context.Context, port, n, parallel int) (*idleClients, error) {
	dsn := fmt.Sprintf("host=127.0.0.1 port=%d user=%s password=%s dbname=%s sslmode=disable connect_timeout=60",
		port, e.user, e.password, e.db)
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	ic := &idleClients{conns: make([]*pgconn.PgConn, n)}
	var next atomic.Int64
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for w := 0; w < parallel; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || cctx.Err() != nil {
					return
				}
				c, err := pgconn.ConnectConfig(cctx, cfg)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("idle connection %d of %d: %w", i+1, n, err)
					}
					mu.Unlock()
					cancel()
					return
				}
				ic.conns[i] = c
			}
		}()
	}
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	if firstErr != nil {
		ic.close()
		return nil, firstErr
	}
	return ic, nil
}

// ping sends an empty query on every step-th connection and returns how
// many of those answered: a proxy that dropped idle clients would
// otherwise look cheap.
func (ic *idleClients) ping(ctx context.Context, step int) (ok, tried int) {
	if step < 1 {
		step = 1
	}
	for i := 0; i < len(ic.conns); i += step {
		c := ic.conns[i]
		tried++
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if c != nil && c.Ping(pctx) == nil {
			ok++
		}
		cancel()
	}
	return ok, tried
}

func (ic *idleClients) close() {
	var wg sync.WaitGroup
	ch := make(chan *pgconn.PgConn)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range ch {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				_ = c.Close(ctx)
				cancel()
			}
		}()
	}
	for _, c := range ic.conns {
		if c != nil {
			ch <- c
		}
	}
	close(ch)
	wg.Wait()
}
