package proxy

import (
	"time"

	"github.com/pgrecycle/pgrecycle/sockio"
)

// A client that disappears while pgrecycle isn't reading its socket goes
// unnoticed until pgrecycle next writes to it: while it waits for a
// backend, and in transaction pooling while its query runs (its goroutine
// then reads the backend). Its query would still run after it left (twice,
// if the application retried elsewhere), and hold a backend meanwhile.
// Once a second the server looks at such clients' sockets, one poll each,
// and cancels the request of those gone: the wait ends, or the server
// stops the query; the session then ends (clientLost).

// goneCheckAfter is how long a query runs before its client is looked at.
const goneCheckAfter = time.Second

func (srv *Server) sweepGoneClients(now time.Time) {
	for _, s := range srv.sessionList() {
		// The atomics first: set only after the login, they order the
		// reads of what the login wrote (txMode, log).
		waiting := s.waitingSince.Load() != 0
		start := s.queryStart.Load()
		busy := start != 0 && now.UnixNano()-start >= int64(goneCheckAfter) && s.txMode
		if !waiting && !busy || s.clientGone.Load() || !sockio.PeerClosed(s.raw) {
			continue
		}
		s.clientGone.Store(true)
		s.log.Info("client gone while its request waited for a backend or ran: cancelling the request")
		srv.wg.Add(1)
		go func() {
			defer srv.wg.Done()
			srv.cancelSession(s)
		}()
	}
}
