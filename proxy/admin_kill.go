package proxy

import (
	"context"
	"time"
)

// The operator commands PgBouncer users reach for in an incident: KILL,
// DISABLE and ENABLE, WAIT_CLOSE (RECONNECT is RECYCLE).

// Kill disconnects at once every client of database db ("" = all
// databases; admin console sessions stay) and retires every backend of
// its pools: idle ones now, the ones the killed clients held when their
// sessions end. It returns how many clients were disconnected.
func (srv *Server) Kill(db string) (int, error) {
	if err := srv.checkDatabase(db); err != nil {
		return 0, err
	}
	live, _ := srv.liveSessions()
	var killed []*session
	for _, s := range live {
		if s.admin || s.db == nil || (db != "" && s.db.Name != db) {
			continue
		}
		// The session tells its client why (57P01), as PostgreSQL's
		// pg_terminate_backend does, and ends; one that can't within
		// killGrace (a client not reading) is cut.
		s.killed.Store(true)
		s.poke()
		s.mu.Lock()
		if s.backend == nil {
			s.interruptWaitLocked() // its request must not run after
		}
		s.mu.Unlock()
		killed = append(killed, s)
	}
	if len(killed) > 0 {
		srv.wg.Add(1)
		go func() {
			defer srv.wg.Done()
			select {
			case <-time.After(killGrace):
			case <-srv.ctx.Done():
			}
			for _, s := range killed {
				s.kill()
			}
		}()
	}
	if _, err := srv.Recycle(db); err != nil {
		return len(killed), err
	}
	return len(killed), nil
}

// killGrace is how long a killed session has to end on its own.
const killGrace = time.Second

// killedError is what a client disconnected by KILL is told.
func killedError() *clientError {
	return fatalf(codeAdminShutdown, "terminating connection due to administrator command (pgrecycle KILL)")
}

// SetDisabled refuses (or, with disabled false, allows again) new logins
// to database db ("" = every database). Clients already logged in stay.
func (srv *Server) SetDisabled(db string, disabled bool) error {
	if err := srv.checkDatabase(db); err != nil {
		return err
	}
	srv.ops.mu.Lock()
	defer srv.ops.mu.Unlock()
	if db == "" {
		srv.ops.disableAll = disabled
		if !disabled {
			clear(srv.ops.disabled)
		}
		return nil
	}
	if disabled {
		srv.ops.disabled[db] = true
	} else {
		delete(srv.ops.disabled, db)
	}
	return nil
}

// loginsDisabled reports whether DISABLE holds db's logins.
func (srv *Server) loginsDisabled(db string) bool {
	srv.ops.mu.Lock()
	defer srv.ops.mu.Unlock()
	return srv.ops.disableAll || srv.ops.disabled[db]
}

// waitClosed waits until no backend of database db ("" = all) is marked
// for retirement (after RECYCLE or a reload changed its target), or ctx
// ends.
func (srv *Server) waitClosed(ctx context.Context, db string) error {
	if err := srv.checkDatabase(db); err != nil {
		return err
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		pending := false
		for _, p := range srv.poolList() {
			if d, _ := p.Key(); db != "" && d != db {
				continue
			}
			for _, b := range p.Backends() {
				pending = pending || b.RetireRequested
			}
		}
		if !pending {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}
