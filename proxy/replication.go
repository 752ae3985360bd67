package proxy

import (
	"context"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/pgrecycle/pgrecycle/pool"
	"github.com/pgrecycle/pgrecycle/wire"
)

// Replication connections (startup parameter replication=true for a
// physical stream, =database for logical decoding) pass through: each gets
// a backend of its own, opened with the client's startup parameters, and
// bytes flow both ways unread until either side ends. A walsender serves
// one client for good (COPY BOTH streams, slots, exported snapshots), so
// there is nothing to pool; pgrecycle adds its auth, routing, client
// limits, a cancel key, SHOW CLIENTS and an orderly end at KILL or
// shutdown.

// Replication modes, as sent to the server.
const (
	replicationPhysical = "true"
	replicationLogical  = "database"
)

// replicationMode reads the replication startup parameter as PostgreSQL
// does: "database" for logical, a boolean otherwise. It returns "" for
// false and ok false for a value PostgreSQL refuses.
func replicationMode(v string) (mode string, ok bool) {
	if v == "database" {
		return replicationLogical, true
	}
	switch strings.ToLower(v) {
	case "true", "on", "yes", "1", "t", "y":
		return replicationPhysical, true
	case "false", "off", "no", "0", "f", "n":
		return "", true
	}
	return "", false
}

// replicate serves a logged-in replication client until either side ends.
// It runs on the login goroutine: replication clients are few and long
// lived.
func (s *session) replicate(mode string, client map[string]string) error {
	defer s.srv.sessionEnded(s)
	params := make(map[string]string, len(client)+1)
	for name, v := range client {
		if ce := checkParameterName(name); ce != nil {
			_ = s.sendError(ce)
			return errSessionDone
		}
		params[name] = v
	}
	params["replication"] = mode
	s.appName = client["application_name"]

	ctx, cancel := context.WithCancel(s.srv.ctx)
	if !s.loginDeadline.IsZero() {
		cancel()
		ctx, cancel = context.WithDeadline(s.srv.ctx, s.loginWaitEnd())
	}
	b, err := s.pool.OpenDedicated(ctx, params)
	cancel()
	if err != nil {
		ce := fromBackendError("FATAL", err)
		_ = s.sendError(ce)
		s.log.Warn("replication connection refused by the server", zap.String("code", ce.Code), zap.String("message", ce.Message))
		return errSessionDone
	}
	s.srv.cancels.register(s)
	s.mu.Lock()
	s.backend = b // SHOW CLIENTS shows its pid; a CancelRequest reaches it
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.backend = nil
		s.mu.Unlock()
		s.pool.CloseDedicated(b)
	}()
	if err := s.writeWelcome(b.Params, nil, b.TxStatus); err != nil {
		return err
	}
	_ = s.conn.SetDeadline(time.Time{})
	s.loggedIn = true
	s.log.Info("replication connection", zap.String("mode", mode), zap.Uint32("server_pid", b.PID))

	cause := s.relayReplication(b)
	s.log.Info("session ended",
		zap.Duration("duration", time.Since(s.started)),
		zap.String("cause", cause))
	return errSessionDone
}

// relayReplication copies the client's bytes to b on this goroutine and
// b's to the client on another, until one side ends or the session is
// told to (KILL, shutdown). It returns why it ended.
func (s *session) relayReplication(b *pool.Backend) string {
	replies := make(chan bool, 1) // whether the replies stopped between messages
	go s.relayReplicationReplies(b, replies)

	var cause string
	var tell *clientError
	buf := s.cr.TakeBuffered() // sent after the startup packet, unlikely but possible
	if len(buf) > 0 {
		if _, err := b.Conn.Write(buf); err != nil {
			cause = "server connection failed: " + err.Error()
		}
	}
	buf = make([]byte, 16<<10)
	for cause == "" {
		n, err := s.conn.Read(buf)
		if n > 0 {
			s.bytes.received.Add(int64(n))
			if _, werr := b.Conn.Write(buf[:n]); werr != nil {
				cause = "server connection failed: " + werr.Error()
				break
			}
		}
		if err == nil {
			continue
		}
		if !isTimeout(err) {
			cause = "client closed"
			break
		}
		// Cleared before the checks: whoever woke us set its flag before
		// its deadline, so a wake-up that comes after this is not lost.
		_ = s.raw.SetReadDeadline(time.Time{})
		switch {
		case s.killed.Load():
			cause, tell = "admin KILL", killedError()
		case s.srv.draining.Load():
			// Walsenders don't hold up PostgreSQL's shutdown either: a
			// stream never becomes idle.
			cause, tell = "shutdown", fatalf(codeAdminShutdown, "terminating connection: pgrecycle is shutting down")
		case len(replies) > 0:
			cause = "server closed the replication connection"
		}
	}
	_ = b.Conn.SetReadDeadline(time.Unix(1, 0))
	_ = s.raw.SetWriteDeadline(time.Now().Add(time.Second)) // a client not reading can't hold us
	between := <-replies
	if tell != nil && between {
		_ = s.sendError(tell)
	}
	return cause
}

// relayReplicationReplies copies b's bytes to the client until either
// fails, wakes the session goroutine, and reports on done whether it
// stopped between two messages.
func (s *session) relayReplicationReplies(b *pool.Backend, done chan<- bool) {
	var seen wire.Boundary
	buf := make([]byte, 32<<10)
	for {
		n, err := b.Conn.Read(buf)
		if n > 0 {
			if _, werr := s.conn.Write(buf[:n]); werr != nil {
				break
			}
			s.bytes.sent.Add(int64(n))
			seen.Advance(buf[:n])
		}
		if err != nil {
			break
		}
	}
	done <- seen.Between()
	_ = s.raw.SetReadDeadline(time.Now())
}
